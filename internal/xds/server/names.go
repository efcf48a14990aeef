package server

import (
	"hash/maphash"
	"slices"
	"sync"
)

// nameSet is the set of resource names a stream subscribed to for one type.
// Sets are immutable and interned: streams naming the same resources share
// one set (2000 sidecars each naming the same 2000 EDS clusters hold one set,
// not 2000), and a watch whose subscription did not change keeps the same
// pointer, which is what the response logic compares.
type nameSet struct {
	id    uint64
	key   setKey
	names map[string]struct{}
	refs  int // watches holding the set; guarded by interner.mu

	// added memoizes addedSince by the older set's id.
	addedMu sync.Mutex
	added   map[uint64][]string
}

// setKey is an order-independent fingerprint of a set of distinct names:
// their number and two sums and a xor of 64-bit hashes under two random
// seeds. Sets with the same key are taken to be the same set: a SotW client
// repeats its whole subscription (thousands of names) on every ACK, and
// comparing the fingerprint costs two hashes per name where comparing the
// sets would cost a map lookup per name. Two different sets of names
// collide with a probability around 2^-128 (the seeds are random per
// process, so nobody can choose names that collide).
type setKey struct {
	sum1, sum2, xor uint64
	n               int
}

func (s *nameSet) has(name string) bool {
	if s == nil {
		return false
	}
	_, ok := s.names[name]
	return ok
}

func (s *nameSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.names)
}

// interner holds the name sets in use.
type interner struct {
	mu           sync.Mutex
	seed1, seed2 maphash.Seed
	sets         map[setKey]*nameSet
	ids          uint64

	// changes memoizes change: delta streams moving from one set by the
	// same subscribe/unsubscribe lists (every sidecar subscribing to a new
	// Service's endpoints) share one computation.
	changes map[changeKey]*nameSet
}

type changeKey struct {
	from       uint64
	sub, unsub setKey
}

// maxChanges bounds the change memo; it is cleared when full.
const maxChanges = 1024

func newInterner() *interner {
	return &interner{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), sets: map[setKey]*nameSet{},
		changes: map[changeKey]*nameSet{}}
}

// change returns the set from with sub added and unsub removed ("*" is
// not a name and is ignored), with one more reference, built once per
// (from, sub, unsub).
func (in *interner) change(from *nameSet, sub, unsub []string) *nameSet {
	sub = slices.DeleteFunc(slices.Clone(sub), func(n string) bool { return n == "*" })
	unsub = slices.DeleteFunc(slices.Clone(unsub), func(n string) bool { return n == "*" })
	var fromID uint64
	if from != nil {
		fromID = from.id
	}
	k := changeKey{from: fromID, sub: in.keyOf(distinct(sub)), unsub: in.keyOf(distinct(unsub))}
	in.mu.Lock()
	if s := in.changes[k]; s != nil {
		if cur := in.sets[s.key]; cur != nil {
			s = cur
		} else {
			in.sets[s.key] = s // released since; it comes back
		}
		s.refs++
		in.mu.Unlock()
		return s
	}
	in.mu.Unlock()
	names := make([]string, 0, from.len()+len(sub))
	drop := make(map[string]struct{}, len(unsub))
	for _, n := range unsub {
		drop[n] = struct{}{}
	}
	if from != nil {
		for n := range from.names {
			if _, gone := drop[n]; !gone {
				names = append(names, n)
			}
		}
	}
	for _, n := range sub {
		if _, gone := drop[n]; !gone && !from.has(n) {
			names = append(names, n)
		}
	}
	s := in.intern(names, nil)
	in.mu.Lock()
	if len(in.changes) >= maxChanges {
		clear(in.changes)
	}
	in.changes[k] = s
	in.mu.Unlock()
	return s
}

// keyOf fingerprints names, which are distinct.
func (in *interner) keyOf(names []string) setKey {
	k := setKey{n: len(names)}
	for _, n := range names {
		h1 := maphash.String(in.seed1, n)
		k.sum1 += h1
		k.xor ^= h1 * 0x9e3779b97f4a7c15
		k.sum2 += maphash.String(in.seed2, n)
	}
	return k
}

// same reports whether s holds the distinct names (see setKey).
func (s *nameSet) same(k setKey) bool { return s != nil && s.key == k }

// addedSince returns the names of s that prev (another set, or nil) lacks,
// computed once per pair: every stream whose subscription moved from prev to
// s shares the answer.
func (s *nameSet) addedSince(prev *nameSet) []string {
	if prev == nil {
		out := make([]string, 0, len(s.names))
		for n := range s.names {
			out = append(out, n)
		}
		return out
	}
	s.addedMu.Lock()
	defer s.addedMu.Unlock()
	if out, ok := s.added[prev.id]; ok {
		return out
	}
	var out []string
	for n := range s.names {
		if !prev.has(n) {
			out = append(out, n)
		}
	}
	if s.added == nil || len(s.added) >= maxDiffs {
		s.added = map[uint64][]string{}
	}
	s.added[prev.id] = out
	return out
}

// intern returns the shared set of names with one more reference; prev (may
// be nil) is returned as is, with no new reference, when it already holds
// exactly these names. Duplicate names count once.
func (in *interner) intern(names []string, prev *nameSet) *nameSet {
	// The common request repeats its stream's subscription: checked
	// without building anything (a duplicate changes the key's sums).
	k := in.keyOf(names)
	if prev.same(k) {
		return prev
	}
	if d := distinct(names); len(d) != len(names) {
		names, k = d, in.keyOf(d)
		if prev.same(k) {
			return prev
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if s := in.sets[k]; s != nil {
		s.refs++
		return s
	}
	in.ids++
	s := &nameSet{id: in.ids, key: k, names: make(map[string]struct{}, len(names)), refs: 1}
	for _, n := range names {
		s.names[n] = struct{}{}
	}
	in.sets[k] = s
	return s
}

// retain adds a reference to s (may be nil).
func (in *interner) retain(s *nameSet) {
	if s == nil {
		return
	}
	in.mu.Lock()
	s.refs++
	in.mu.Unlock()
}

// release drops a reference; the last one forgets the set.
func (in *interner) release(s *nameSet) {
	if s == nil {
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	s.refs--
	if s.refs <= 0 && in.sets[s.key] == s {
		delete(in.sets, s.key)
	}
}

// distinct returns names without duplicates, names itself when it has none.
func distinct(names []string) []string {
	if len(names) < 2 {
		return names
	}
	seen := make(map[string]struct{}, len(names))
	for i, n := range names {
		if _, dup := seen[n]; dup {
			out := append([]string(nil), names[:i]...)
			for _, m := range names[i+1:] {
				if _, dup := seen[m]; !dup {
					seen[m] = struct{}{}
					out = append(out, m)
				}
			}
			return out
		}
		seen[n] = struct{}{}
	}
	return names
}
