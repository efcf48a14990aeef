package generate

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// cacheWorlds is a sequence of worlds as discovery produces them: unchanged
// Services keep their pointers from one world to the next.
type cacheWorlds struct {
	worlds []*model.World
	names  []string
}

func (cw *cacheWorlds) add(name string, mesh model.MeshConfig, services []*model.Service, workloads []*model.Workload) *model.World {
	w := model.NewWorld(mesh, slices.Clone(services), slices.Clone(workloads))
	cw.worlds = append(cw.worlds, w)
	cw.names = append(cw.names, name)
	return w
}

func serviceNamed(w *model.World, name string) *model.Service {
	for _, s := range w.Services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func buildCacheWorlds() *cacheWorlds {
	cw := &cacheWorlds{}
	w0 := fixtureWorld(true)
	cw.worlds, cw.names = append(cw.worlds, w0), append(cw.names, "initial")

	// An endpoint added to web: a new web, the others unchanged.
	web := *serviceNamed(w0, "web")
	web.Endpoints = append(slices.Clone(web.Endpoints), &model.Endpoint{
		Address: "10.1.0.9", Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Ready: true, Serving: true, Pod: "web-5", Locality: zoneB,
	})
	services := slices.DeleteFunc(slices.Clone(w0.Services), func(s *model.Service) bool { return s.Name == "web" })
	services = append(services, &web)
	w1 := cw.add("endpoint added", w0.Mesh, services, w0.Workloads)

	// A Service added, in data, HTTP on 80 (shared with web) and TCP 7000.
	api := &model.Service{
		Name: "api", Namespace: "data", Hostname: "api.data.svc.cluster.local", ClusterIP: "10.96.0.60",
		Ports: []model.ServicePort{
			{Name: "http", Port: 80, Protocol: model.ProtocolHTTP},
			{Name: "tcp", Port: 7000, Protocol: model.ProtocolTCP},
		},
		Endpoints: []*model.Endpoint{{Address: "10.1.1.9", Ports: map[string]int32{"http": 8080, "tcp": 7000}, Ready: true, Serving: true}},
	}
	w2 := cw.add("service added", w1.Mesh, append(slices.Clone(w1.Services), api), w1.Workloads)

	// db removed.
	services = slices.DeleteFunc(slices.Clone(w2.Services), func(s *model.Service) bool { return s.Name == "db" })
	w3 := cw.add("service removed", w2.Mesh, services, w2.Workloads)

	// REGISTRY_ONLY: same Services, other mesh config.
	mesh := w3.Mesh
	mesh.OutboundAllowAny = false
	w4 := cw.add("registry only", mesh, w3.Services, w3.Workloads)

	// Nothing changed but the world (a resync).
	cw.add("resync", w4.Mesh, w4.Services, w4.Workloads)

	// Istio configuration: VirtualServices and DestinationRules, then a
	// changed VirtualService with the same Services.
	w6 := istioWorld()
	cw.worlds, cw.names = append(cw.worlds, w6), append(cw.names, "istio config")
	cfg := w6.Config
	cfg.VirtualServices = cfg.VirtualServices[1:]
	cw.worlds = append(cw.worlds, model.NewWorldWithConfig(w6.Mesh, w6.Services, w6.Workloads, cfg))
	cw.names = append(cw.names, "istio config, a VirtualService removed")
	cw.worlds, cw.names = append(cw.worlds, sidecarWorld()), append(cw.names, "sidecar resources")
	cw.worlds, cw.names = append(cw.worlds, gatewayWorld()), append(cw.names, "gateway resources")
	cw.worlds, cw.names = append(cw.worlds, mtlsWorld()), append(cw.names, "mesh mTLS")
	return cw
}

// cacheProxies are proxies of every type, in several namespaces and IP
// families.
func cacheProxies(w *model.World) []*model.Proxy {
	return []*model.Proxy{
		fixtureProxy(w, model.ProxySidecar, "shop", "web-0"),
		fixtureProxy(w, model.ProxySidecar, "shop", "client-0"),
		{ID: "data-sidecar", Type: model.ProxySidecar, Namespace: "data", IP: "10.1.1.5"},
		{ID: "v6-sidecar", Type: model.ProxySidecar, Namespace: "data", IP: "fd00::5"},
		{ID: "no-ip-sidecar", Type: model.ProxySidecar, Namespace: "other"},
		fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"),
		fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0"),
		{ID: "data-grpc", Type: model.ProxyGRPC, Namespace: "data", IP: "10.1.1.9"},
		{ID: "v6-grpc", Type: model.ProxyGRPC, Namespace: "data", IP: "fd00::9"},
		fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0"),
		{ID: "canary-sidecar", Type: model.ProxySidecar, Namespace: "shop", IP: "10.1.9.9",
			Workload: &model.Workload{Name: "canary", Namespace: "shop", IP: "10.1.9.9", Labels: map[string]string{"app": "canary-client"}}},
	}
}

func byName(res xds.Resources, t resourcev3.Type, name string) types.Resource {
	for _, r := range res[t] {
		if ResourceName(r) == name {
			return r
		}
	}
	return nil
}

// TestCacheEqualsGenerate: for every proxy type across a sequence of worlds,
// the cached generator's output is Generate's, resource for resource and in
// the same order.
func TestCacheEqualsGenerate(t *testing.T) {
	cw := buildCacheWorlds()
	c := NewCache()
	for i, w := range cw.worlds {
		for _, p := range cacheProxies(w) {
			want, err := Generate(w, p)
			if err != nil {
				t.Fatalf("%s: Generate(%s): %v", cw.names[i], p.ID, err)
			}
			// Twice: the second call is served from the cache.
			for pass := range 2 {
				got, err := c.Generate(w, p)
				if err != nil {
					t.Fatalf("%s: Cache.Generate(%s): %v", cw.names[i], p.ID, err)
				}
				assertSameResources(t, fmt.Sprintf("%s/%s/pass %d", cw.names[i], p.ID, pass), got, want)
			}
		}
	}
}

func assertSameResources(t *testing.T, what string, got, want xds.Resources) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d types, want %d", what, len(got), len(want))
	}
	for typ, ws := range want {
		gs, ok := got[typ]
		if !ok {
			t.Fatalf("%s: no %s", what, typ)
		}
		if len(gs) != len(ws) {
			t.Fatalf("%s: %d %s, want %d: %v vs %v", what, len(gs), typ, len(ws), names(gs), names(ws))
		}
		for i := range ws {
			if ResourceName(gs[i]) != ResourceName(ws[i]) {
				t.Fatalf("%s: %s #%d is %q, want %q", what, typ, i, ResourceName(gs[i]), ResourceName(ws[i]))
			}
			if !proto.Equal(gs[i], ws[i]) {
				t.Fatalf("%s: %s %q differs:\n got %v\nwant %v", what, typ, ResourceName(ws[i]), gs[i], ws[i])
			}
		}
	}
}

func names(rs []types.Resource) []string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = ResourceName(r)
	}
	return out
}

// TestCacheSharesResources: proxies of one world get the same messages for
// what does not depend on them, and an unchanged Service keeps its messages
// from one world to the next; a changed one gets new ones.
func TestCacheSharesResources(t *testing.T) {
	cw := buildCacheWorlds()
	c := NewCache()
	gen := func(w *model.World, p *model.Proxy) xds.Resources {
		t.Helper()
		res, err := c.Generate(w, p)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	w0, w1 := cw.worlds[0], cw.worlds[1]
	const (
		dbCluster  = "outbound|5432||db.data.svc.cluster.local"
		webCluster = "outbound|80||web.shop.svc.cluster.local"
		greeterCl  = "outbound|50051||greeter.shop.svc.cluster.local"
		greeterLis = "greeter.shop.svc.cluster.local:50051"
	)

	// Within a world, across proxies of one type and across types.
	ps := cacheProxies(w0)
	webSidecar, clientSidecar, dataSidecar, grpcClient, grpcServer, gateway := ps[0], ps[1], ps[2], ps[5], ps[6], ps[9]
	a, b, g := gen(w0, webSidecar), gen(w0, clientSidecar), gen(w0, gateway)
	for _, typ := range []resourcev3.Type{resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, name := range []string{dbCluster, webCluster} {
			ra, rb, rg := byName(a, typ, name), byName(b, typ, name), byName(g, typ, name)
			if ra == nil || ra != rb || ra != rg {
				t.Errorf("%s %s: not one shared message across sidecars and gateway (%p %p %p)", typ, name, ra, rb, rg)
			}
		}
	}
	if ra, rb := byName(a, resourcev3.RouteType, "80"), byName(b, resourcev3.RouteType, "80"); ra == nil || ra != rb {
		t.Errorf("route 80: not shared by two sidecars of one namespace")
	}
	if ra, rd := byName(a, resourcev3.RouteType, "80"), byName(gen(w0, dataSidecar), resourcev3.RouteType, "80"); ra == rd {
		t.Errorf("route 80: shared by sidecars of two namespaces (short names differ)")
	}
	if la, lb := byName(a, resourcev3.ListenerType, "0.0.0.0_80"), byName(b, resourcev3.ListenerType, "0.0.0.0_80"); la == nil || la != lb {
		t.Errorf("listener 0.0.0.0_80: not shared by two IPv4 sidecars")
	}
	gc, gs := gen(w0, grpcClient), gen(w0, grpcServer)
	for _, tn := range [][2]string{
		{resourcev3.ClusterType, greeterCl},
		{resourcev3.EndpointType, greeterCl},
		{resourcev3.ListenerType, greeterLis},
		{resourcev3.RouteType, greeterLis},
		{resourcev3.ListenerType, "greeter:50051"},
	} {
		if rc, rs := byName(gc, tn[0], tn[1]), byName(gs, tn[0], tn[1]); rc == nil || rc != rs {
			t.Errorf("%s %s: not shared by two gRPC proxies", tn[0], tn[1])
		}
	}
	if rc, rs := byName(gc, resourcev3.EndpointType, greeterCl), byName(a, resourcev3.EndpointType, greeterCl); rc != rs {
		t.Errorf("endpoints %s: not shared by gRPC proxies and sidecars", greeterCl)
	}

	// Across worlds: db unchanged keeps its messages, web (an endpoint
	// added) gets new endpoints.
	a1 := gen(w1, webSidecar)
	gc1 := gen(w1, grpcClient)
	for _, tn := range [][2]string{
		{resourcev3.ClusterType, dbCluster},
		{resourcev3.EndpointType, dbCluster},
	} {
		if r0, r1 := byName(a, tn[0], tn[1]), byName(a1, tn[0], tn[1]); r0 == nil || r0 != r1 {
			t.Errorf("%s %s: unchanged Service, new message in the next world", tn[0], tn[1])
		}
	}
	if r0, r1 := byName(gc, resourcev3.ListenerType, greeterLis), byName(gc1, resourcev3.ListenerType, greeterLis); r0 == nil || r0 != r1 {
		t.Errorf("gRPC listener %s: unchanged Service, new message in the next world", greeterLis)
	}
	if r0, r1 := byName(a, resourcev3.EndpointType, webCluster), byName(a1, resourcev3.EndpointType, webCluster); r0 == r1 || proto.Equal(r0, r1) {
		t.Errorf("endpoints %s: not rebuilt for a changed Service", webCluster)
	}

	// The returned slices are the proxy's own: sorting or truncating them
	// does not touch the cache.
	a1[resourcev3.ClusterType] = a1[resourcev3.ClusterType][:0:0]
	slices.Reverse(a1[resourcev3.EndpointType])
	want, _ := Generate(w1, webSidecar)
	assertSameResources(t, "after the caller modified its slices", gen(w1, webSidecar), want)
}

// TestCacheDropsRemovedServices: Services that no retained world has are
// forgotten, and only the last worlds keep their state.
func TestCacheDropsRemovedServices(t *testing.T) {
	cw := buildCacheWorlds()
	c := NewCache()
	db := serviceNamed(cw.worlds[0], "db")
	for i, w := range cw.worlds {
		for _, p := range cacheProxies(w) {
			if _, err := c.Generate(w, p); err != nil {
				t.Fatal(err)
			}
		}
		c.mu.Lock()
		_, hasDB := c.services[db]
		nWorlds, nServices := len(c.worlds), len(c.services)
		c.mu.Unlock()
		if nWorlds > retainedWorlds {
			t.Errorf("%s: %d worlds retained", cw.names[i], nWorlds)
		}
		// db is in worlds 0-2; world 3 drops it, and world 4 no longer
		// retains world 2.
		if wantDB := i <= 3; hasDB != wantDB {
			t.Errorf("%s: db entry kept = %v, want %v", cw.names[i], hasDB, wantDB)
		}
		live := map[*model.Service]bool{}
		for _, w := range cw.worlds[max(0, i-retainedWorlds+1) : i+1] {
			for _, s := range w.Services {
				live[s] = true
			}
		}
		if nServices > len(live) {
			t.Errorf("%s: %d Service entries, only %d Services in the retained worlds", cw.names[i], nServices, len(live))
		}
	}
}

// TestCacheConcurrent builds every proxy of every world from many goroutines
// (run with -race) and checks the outputs against Generate.
func TestCacheConcurrent(t *testing.T) {
	cw := buildCacheWorlds()
	c := NewCache()
	for i, w := range cw.worlds {
		proxies := cacheProxies(w)
		var wg sync.WaitGroup
		results := make([]xds.Resources, 4*len(proxies))
		errs := make([]error, len(results))
		for j := range results {
			wg.Go(func() { results[j], errs[j] = c.Generate(w, proxies[j%len(proxies)]) })
		}
		wg.Wait()
		for j, res := range results {
			if errs[j] != nil {
				t.Fatal(errs[j])
			}
			p := proxies[j%len(proxies)]
			want, _ := Generate(w, p)
			assertSameResources(t, cw.names[i]+"/"+p.ID, res, want)
		}
	}
}

// BenchmarkCacheGenerate is a push round of the benchmark world through a
// Cache: a new world with one Service's endpoints changed, then 200 proxies
// (over 10 namespaces) built from it.
func BenchmarkCacheGenerate(b *testing.B) {
	for _, typ := range []model.ProxyType{model.ProxySidecar, model.ProxyGRPC} {
		b.Run(string(typ), func(b *testing.B) {
			w := benchWorld()
			c := NewCache()
			proxies := make([]*model.Proxy, 200)
			for i := range proxies {
				proxies[i] = &model.Proxy{ID: fmt.Sprint(i), Type: typ, Namespace: fmt.Sprintf("ns-%d", i%10), IP: fmt.Sprintf("10.1.0.%d", i%250+1)}
			}
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				services := slices.Clone(w.Services)
				changed := *services[n%len(services)]
				changed.Endpoints = slices.Clone(changed.Endpoints)
				ep := *changed.Endpoints[0]
				ep.Ready = !ep.Ready
				changed.Endpoints[0] = &ep
				services[n%len(services)] = &changed
				n++
				w = model.NewWorld(w.Mesh, services, nil)
				for _, p := range proxies {
					if _, err := c.Generate(w, p); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
