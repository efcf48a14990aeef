package server

import (
	"errors"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"testing"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

func newTestServer(t *testing.T, gen xds.Generator) *Server {
	t.Helper()
	s, err := New(Options{Generator: gen, Logger: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestConsistency: our check agrees with Snapshot.Consistent() on Envoy
// snapshots, and accepts proxyless-gRPC snapshots (api_listener → RDS),
// which Snapshot.Consistent() rejects.
func TestConsistency(t *testing.T) {
	s := newTestServer(t, testGenerator(""))
	w := testWorld(3, 1)
	for _, typ := range []model.ProxyType{model.ProxySidecar, model.ProxyGRPC} {
		res, err := testGenerator("")(w, &model.Proxy{ID: "p", Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.assemble("p", res, nil)
		if err != nil {
			t.Fatalf("%s: %v", typ, err)
		}
		// go-control-plane's own check, for comparison.
		orig, err := cache.NewSnapshot("v", map[resourcev3.Type][]types.Resource(a.resources))
		if err != nil {
			t.Fatal(err)
		}
		gcpErr := orig.Consistent()
		if typ == model.ProxySidecar && gcpErr != nil {
			t.Errorf("sidecar: Snapshot.Consistent(): %v", gcpErr)
		}
		if typ == model.ProxyGRPC && gcpErr == nil {
			t.Errorf("grpc: Snapshot.Consistent() accepts api_listener snapshots now; consistent() could use it")
		}
		for _, rt := range xds.Types {
			if got := len(a.types[rt].anys); got != 3 {
				t.Errorf("%s %s: %d resources", typ, rt, got)
			}
		}
	}
}

// TestHashing: versions are content hashes per type, independent of the
// generator's order and of object identity; a change to one type changes
// only that type's version.
func TestHashing(t *testing.T) {
	s := newTestServer(t, testGenerator(""))
	gen := testGenerator("")
	p := &model.Proxy{ID: "p", Type: model.ProxySidecar}
	res1, _ := gen(testWorld(3, 1), p)
	res2, _ := gen(testWorld(3, 1), p)
	// Reverse one type's order: same content, same version.
	l := res2[resourcev3.ClusterType]
	for i, j := 0, len(l)-1; i < j; i, j = i+1, j-1 {
		l[i], l[j] = l[j], l[i]
	}
	a1, err := s.assemble("p", res1, nil)
	if err != nil {
		t.Fatal(err)
	}
	a2, err := s.assemble("p", res2, newMemo(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range xds.Types {
		if a1.versions[typ] != a2.versions[typ] || a1.versions[typ] == "" {
			t.Errorf("%s: %q vs %q", typ, a1.versions[typ], a2.versions[typ])
		}
	}
	res3, _ := gen(testWorld(3, 2), p)
	a3, err := s.assemble("p", res3, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range xds.Types {
		changed := a3.versions[typ] != a1.versions[typ]
		if changed != (typ == resourcev3.EndpointType) {
			t.Errorf("%s: changed=%v", typ, changed)
		}
	}
	// Delta versions are the per-resource digests.
	old := a1.types[resourcev3.EndpointType]
	for _, r := range a3.types[resourcev3.EndpointType].delta() {
		if r.Version == "" || r.Version == old.list[old.index[r.Name]].digest {
			t.Errorf("EDS %s: delta version %q unchanged", r.Name, r.Version)
		}
	}
	// And what changed is found once per pair of results.
	d := a3.types[resourcev3.EndpointType].diffFrom(old)
	if len(d.changed) != 3 || len(d.removed) != 0 {
		t.Errorf("EDS diff: %d changed, %v removed; want 3, none", len(d.changed), d.removed)
	}
	if d2 := a3.types[resourcev3.EndpointType].diffFrom(old); d2 != d {
		t.Errorf("EDS diff computed twice")
	}
}

// TestRepair: a listener whose route is invalid goes with it; valid ones stay.
func TestRepair(t *testing.T) {
	s := newTestServer(t, testGenerator(""))
	res, _ := testGenerator("")(testWorld(2, 1), &model.Proxy{ID: "p", Type: model.ProxyGRPC})
	res[resourcev3.RouteType] = res[resourcev3.RouteType][1:] // svc-0's route missing
	a, err := s.assemble("p", res, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := len(a.resources[resourcev3.ListenerType]); got != 1 {
		t.Errorf("listeners: %d, want 1", got)
	}
	if got := len(a.resources[resourcev3.ClusterType]); got != 2 {
		t.Errorf("clusters: %d, want 2", got)
	}
}

// TestMemo: a resource shared between proxies is checked once.
func TestMemo(t *testing.T) {
	res, _ := testGenerator("")(testWorld(1, 1), &model.Proxy{ID: "p"})
	m := newMemo(nil)
	r := res[resourcev3.ClusterType][0]
	c1, c2 := m.check(r), m.check(r)
	if c1 != c2 || c1.err != nil || c1.digest == "" {
		t.Errorf("check twice: %p %p %v", c1, c2, c1.err)
	}
	other, _ := testGenerator("")(testWorld(1, 1), &model.Proxy{ID: "q"})
	if c3 := m.check(other[resourcev3.ClusterType][0]); c3 == c1 || c3.digest != c1.digest {
		t.Errorf("an equal resource at another address: %p (digest %s), want a new check with digest %s", c3, c3.digest, c1.digest)
	}
}

// The validator given in Options (meshd passes one that also checks packed
// configs) decides what is pushed.
func TestMemoUsesTheGivenValidator(t *testing.T) {
	res, _ := testGenerator("")(testWorld(1, 1), &model.Proxy{ID: "p"})
	refused := errors.New("refused by the deep validator")
	calls := 0
	m := newMemo(func(types.Resource) error { calls++; return refused })
	r := res[resourcev3.ClusterType][0]
	if c := m.check(r); !errors.Is(c.err, refused) {
		t.Fatalf("err %v, want the validator's", c.err)
	}
	m.check(r)
	if calls != 1 {
		t.Fatalf("validator called %d times for one resource of one world", calls)
	}
}
