package server

import (
	"slices"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

// TestInterner: the same names in any order and with duplicates are one
// shared set; a repeated subscription keeps its set without a new
// reference; the last release forgets a set; addedSince is computed once
// per pair of sets.
func TestInterner(t *testing.T) {
	in := newInterner()
	a := in.intern([]string{"x", "y", "z"}, nil)
	b := in.intern([]string{"z", "x", "y", "x"}, nil)
	if a != b || a.refs != 2 {
		t.Fatalf("same names: sets %p and %p, refs %d; want one set, 2 refs", a, b, a.refs)
	}
	if got := in.intern([]string{"y", "z", "x"}, a); got != a || a.refs != 2 {
		t.Errorf("a repeated subscription: %p refs %d, want %p with 2 refs", got, a.refs, a)
	}
	c := in.intern([]string{"x", "y"}, a)
	if c == a || c.len() != 2 || !c.has("x") || c.has("z") {
		t.Errorf("a different subscription shares or lacks names: %v", c.names)
	}
	if got := a.addedSince(c); !slices.Equal(got, []string{"z"}) {
		t.Errorf("added from {x y} to {x y z}: %v", got)
	}
	if got, again := c.addedSince(a), c.addedSince(a); len(got) != 0 || len(again) != 0 {
		t.Errorf("added from {x y z} to {x y}: %v", got)
	}
	in.release(a)
	in.release(b)
	if d := in.intern([]string{"x", "y", "z"}, nil); d == a {
		t.Error("a released set came back")
	}
	if got := in.intern(nil, nil); got.len() != 0 {
		t.Errorf("empty subscription: %v", got.names)
	}
}

// TestStreamsShareSubscriptions: Envoy-like streams naming the same EDS
// resources hold one name set between them.
func TestStreamsShareSubscriptions(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	h.srv.Update(testWorld(3, 1))
	a := newSotw(t, h.addr, node(sidecarA, nil))
	a.syncEnvoy()
	b := newSotw(t, h.addr, node("sidecar~10.0.0.2~b.ns~ns.svc.cluster.local", nil))
	b.syncEnvoy()
	edsNames := a.names[resourcev3.EndpointType]
	key := h.srv.names.keyOf(edsNames)
	eventually(t, "one EDS name set held by both streams", func() bool {
		h.srv.names.mu.Lock()
		defer h.srv.names.mu.Unlock()
		set := h.srv.names.sets[key]
		// Each stream's watch holds it twice: as its subscription and as
		// what it was last sent for.
		return set != nil && set.refs == 4 && len(h.srv.names.sets) <= 4
	})
}
