package server

import (
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// TestMemoRotate: an entry used since the last rotate survives the next one
// (same check, validated once); one unused for a whole round is evicted and
// checked afresh if it comes back.
func TestMemoRotate(t *testing.T) {
	res, _ := testGenerator("")(testWorld(2, 1), &model.Proxy{ID: "p"})
	calls := map[types.Resource]int{}
	var mu sync.Mutex
	m := newMemo(func(r types.Resource) error { mu.Lock(); calls[r]++; mu.Unlock(); return nil })
	r1, r2 := res[resourcev3.ClusterType][0], res[resourcev3.ClusterType][1]

	c1 := m.check(r1)
	m.check(r2)
	if kept, dropped := m.rotate(); kept != 2 || dropped != 0 {
		t.Errorf("round 1: kept %d dropped %d, want 2, 0", kept, dropped)
	}
	// Round 2 uses r1 only.
	if c := m.check(r1); c != c1 {
		t.Errorf("round 2: r1 checked afresh")
	}
	if kept, dropped := m.rotate(); kept != 1 || dropped != 1 {
		t.Errorf("round 2: kept %d dropped %d, want 1, 1", kept, dropped)
	}
	if n := m.len(); n != 1 {
		t.Errorf("after round 2: %d entries, want 1", n)
	}
	// Round 3: r1 again (still the same check), r2 back (a new one).
	if c := m.check(r1); c != c1 {
		t.Errorf("round 3: r1 checked afresh")
	}
	m.check(r2)
	if calls[r1] != 1 || calls[r2] != 2 {
		t.Errorf("validations: r1 %d (want 1), r2 %d (want 2: evicted in between)", calls[r1], calls[r2])
	}
	// A round with nothing evicts everything within two rotations.
	m.rotate()
	m.rotate()
	if n := m.len(); n != 0 {
		t.Errorf("after two empty rounds: %d entries", n)
	}
}

// sharingGenerator is a generator in the manner of generate.Cache: each
// Service's resources are built once per Service pointer and handed to every
// proxy of every world that has the Service.
type sharingGenerator struct {
	mu    sync.Mutex
	bySvc map[*model.Service]xds.Resources
}

func (g *sharingGenerator) generate(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := xds.Resources{}
	for _, svc := range world.Services {
		res, ok := g.bySvc[svc]
		if !ok {
			one := model.NewWorld(world.Mesh, []*model.Service{svc}, nil)
			var err error
			if res, err = testGenerator("")(one, &model.Proxy{ID: "shared", Type: model.ProxyGRPC}); err != nil {
				return nil, err
			}
			g.bySvc[svc] = res
		}
		for t, rs := range res {
			out[t] = append(out[t], rs...)
		}
	}
	return out, nil
}

// TestMemoAcrossWorlds: with a generator that shares resources across
// proxies and worlds, each resource is validated (and hashed) once in its
// life, however many proxies and push rounds use it, and the memo holds only
// the resources the last rounds used.
func TestMemoAcrossWorlds(t *testing.T) {
	var (
		mu    sync.Mutex
		calls = map[types.Resource]int{}
		total int
	)
	validate := func(r types.Resource) error {
		mu.Lock()
		defer mu.Unlock()
		calls[r]++
		total++
		return validateAll(r)
	}
	gen := &sharingGenerator{bySvc: map[*model.Service]xds.Resources{}}
	s, err := New(Options{Generator: gen.generate, Validate: validate, Logger: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, id := range []string{"p1", "p2", "p3"} {
		s.proxies[id] = newProxyState(model.Proxy{ID: id, Type: model.ProxyGRPC, Namespace: "ns"})
	}
	round := func(w *model.World) {
		t.Helper()
		s.Update(w)
		s.pushAll(time.Now())
		for _, id := range []string{"p1", "p2", "p3"} {
			if s.proxies[id].last.Load() == nil {
				t.Fatalf("proxy %s has no snapshot", id)
			}
		}
	}
	const perService = 4 // cluster, endpoints, listener, route

	w1 := testWorld(3, 1)
	round(w1)
	if total != 3*perService {
		t.Errorf("world 1: %d validations for 3 proxies, want %d (once per resource)", total, 3*perService)
	}

	// World 2: svc-2 gets an endpoint (a new pointer), the others are the
	// same pointers. Only svc-2's resources are validated.
	changed := *w1.Services[2]
	changed.Endpoints = append(changed.Endpoints[:1:1], &model.Endpoint{
		Address: "10.1.2.9", Ports: map[string]int32{"grpc-api": 8080}, Ready: true, Serving: true,
	})
	w2 := model.NewWorld(w1.Mesh, []*model.Service{w1.Services[0], w1.Services[1], &changed}, w1.Workloads)
	before := total
	round(w2)
	if got := total - before; got != perService {
		t.Errorf("world 2: %d validations, want %d (the changed Service's)", got, perService)
	}
	for r, n := range calls {
		if n != 1 {
			t.Errorf("%s validated %d times", xdsName(r), n)
		}
	}
	if n := s.memo.len(); n != 3*perService {
		t.Errorf("after world 2: memo holds %d entries, want %d (svc-2's old resources evicted)", n, 3*perService)
	}

	// World 3: svc-1 removed. Nothing new to validate; its entries go.
	w3 := model.NewWorld(w1.Mesh, []*model.Service{w1.Services[0], &changed}, w1.Workloads)
	before = total
	round(w3)
	if got := total - before; got != 0 {
		t.Errorf("world 3: %d validations, want 0", got)
	}
	if n := s.memo.len(); n != 2*perService {
		t.Errorf("after world 3: memo holds %d entries, want %d", n, 2*perService)
	}
}

func xdsName(r types.Resource) string {
	if n, ok := r.(interface{ GetName() string }); ok && n.GetName() != "" {
		return n.GetName()
	}
	if n, ok := r.(interface{ GetClusterName() string }); ok {
		return n.GetClusterName()
	}
	return "?"
}
