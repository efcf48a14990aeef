package server

import (
	"hash/maphash"
	"sync"
)

// nameSet is the set of resource names a stream subscribed to for one type.
// Sets are immutable and interned: streams naming the same resources share
// one set (2000 sidecars each naming the same 2000 EDS clusters hold one set,
// not 2000), and a watch whose subscription did not change keeps the same
// pointer, which is what the response logic compares.
type nameSet struct {
	key   setKey
	names map[string]struct{}
	refs  int // watches holding the set; guarded by interner.mu
}

// setKey is an order-independent fingerprint of a set of names; sets with
// the same key are compared name by name.
type setKey struct {
	sum, xor uint64
	n        int
}

func (s *nameSet) has(name string) bool {
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
	mu   sync.Mutex
	seed maphash.Seed
	sets map[setKey][]*nameSet
}

func newInterner() *interner {
	return &interner{seed: maphash.MakeSeed(), sets: map[setKey][]*nameSet{}}
}

// keyOf fingerprints names, which are distinct.
func (in *interner) keyOf(names []string) setKey {
	k := setKey{n: len(names)}
	for _, n := range names {
		h := maphash.String(in.seed, n)
		k.sum += h
		k.xor ^= h * 0x9e3779b97f4a7c15
	}
	return k
}

// same reports whether s holds exactly the distinct names.
func (s *nameSet) same(k setKey, names []string) bool {
	if s == nil || s.key != k {
		return false
	}
	for _, n := range names {
		if !s.has(n) {
			return false
		}
	}
	return true
}

// intern returns the shared set of names with one more reference; prev (may
// be nil) is returned as is, with no new reference, when it already holds
// exactly these names. Duplicate names count once.
func (in *interner) intern(names []string, prev *nameSet) *nameSet {
	// The common request repeats its stream's subscription: checked
	// without building anything (a duplicate changes the key's sums).
	k := in.keyOf(names)
	if prev.same(k, names) {
		return prev
	}
	if d := distinct(names); len(d) != len(names) {
		names, k = d, in.keyOf(d)
		if prev.same(k, names) {
			return prev
		}
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	for _, s := range in.sets[k] {
		if s.same(k, names) {
			s.refs++
			return s
		}
	}
	s := &nameSet{key: k, names: make(map[string]struct{}, len(names)), refs: 1}
	for _, n := range names {
		s.names[n] = struct{}{}
	}
	in.sets[k] = append(in.sets[k], s)
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
	if s.refs > 0 {
		return
	}
	list := in.sets[s.key]
	for i, x := range list {
		if x == s {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(in.sets, s.key)
	} else {
		in.sets[s.key] = list
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
