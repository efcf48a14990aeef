package server

import (
	"strings"
	"sync"
)

// resultDiff is what changed from an older typeResult to a newer one of the
// same type.
type resultDiff struct {
	// changed are the positions in the newer result's list of the entries
	// that are new or whose digest differs, in name order.
	changed []int
	// removed are the names the older result has and the newer one not,
	// sorted.
	removed []string
}

// diffMemo keeps a result's diffs from a few older results, keyed by their
// ids (not pointers: a memo must not keep older results alive). Every proxy
// holding the same pair of results shares one diff, so a change is compared
// once per push, not once per proxy.
type diffMemo struct {
	mu sync.Mutex
	m  map[uint64]*resultDiff
}

// maxDiffs bounds a result's memo: proxies converge on few distinct older
// results (those of the last rounds).
const maxDiffs = 8

// diffFrom returns what changed from old to tr (old may be nil: everything).
func (tr *typeResult) diffFrom(old *typeResult) *resultDiff {
	if old == nil {
		d := &resultDiff{changed: make([]int, len(tr.list))}
		for i := range tr.list {
			d.changed[i] = i
		}
		return d
	}
	tr.diffs.mu.Lock()
	d := tr.diffs.m[old.id]
	tr.diffs.mu.Unlock()
	if d != nil {
		return d
	}
	d = compareResults(old, tr)
	tr.diffs.mu.Lock()
	if tr.diffs.m == nil || len(tr.diffs.m) >= maxDiffs {
		tr.diffs.m = map[uint64]*resultDiff{}
	}
	tr.diffs.m[old.id] = d
	tr.diffs.mu.Unlock()
	return d
}

// compareResults walks both name-sorted lists once.
func compareResults(old, cur *typeResult) *resultDiff {
	d := &resultDiff{}
	i, j := 0, 0
	for i < len(old.list) || j < len(cur.list) {
		switch {
		case j == len(cur.list):
			d.removed = append(d.removed, old.list[i].name)
			i++
		case i == len(old.list):
			d.changed = append(d.changed, j)
			j++
		default:
			switch c := strings.Compare(old.list[i].name, cur.list[j].name); {
			case c < 0:
				d.removed = append(d.removed, old.list[i].name)
				i++
			case c > 0:
				d.changed = append(d.changed, j)
				j++
			default:
				if old.list[i].digest != cur.list[j].digest {
					d.changed = append(d.changed, j)
				}
				i++
				j++
			}
		}
	}
	return d
}
