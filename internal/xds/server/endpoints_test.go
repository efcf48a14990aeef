package server

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds/generate"
)

// endpointWorld has three ClusterIP Services and one headless Service; the
// sidecar "a" (10.0.0.1) is an endpoint of svc-0. eps maps a Service index
// to its endpoint addresses.
func endpointWorld(eps map[int][]string) *model.World {
	var services []*model.Service
	for i := range 4 {
		svc := &model.Service{
			Name: fmt.Sprintf("svc-%d", i), Namespace: "ns",
			Hostname:  model.Hostname(fmt.Sprintf("svc-%d", i), "ns", "cluster.local"),
			ClusterIP: fmt.Sprintf("10.96.0.%d", i+1),
			Ports: []model.ServicePort{
				{Name: "http-web", Port: 80, Protocol: model.ProtocolHTTP},
				{Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC},
			},
		}
		if i == 3 {
			svc.ClusterIP = ""
		}
		for _, ip := range eps[i] {
			svc.Endpoints = append(svc.Endpoints, &model.Endpoint{
				Address: ip, Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090},
				Ready: true, Serving: true,
			})
		}
		services = append(services, svc)
	}
	workloads := []*model.Workload{
		{Name: "a", Namespace: "ns", IP: "10.0.0.1", ServiceAccount: "default"},
		{Name: "b", Namespace: "ns", IP: "10.0.0.2", ServiceAccount: "default"},
		{Name: "g", Namespace: "ns", IP: "10.0.0.3", ServiceAccount: "default"},
	}
	return model.NewWorld(model.MeshConfig{TrustDomain: "cluster.local", OutboundAllowAny: true}, services, workloads)
}

// withServices returns a world sharing base's Services except those in
// replace (by index), as discovery builds successive worlds.
func withServices(base *model.World, replace map[int]*model.Service) *model.World {
	services := slices.Clone(base.Services)
	for i, svc := range replace {
		services[i] = svc
	}
	return model.NewWorld(base.Mesh, services, base.Workloads)
}

func withEndpoints(svc *model.Service, ips ...string) *model.Service {
	out := *svc
	out.Endpoints = nil
	for _, ip := range ips {
		out.Endpoints = append(out.Endpoints, &model.Endpoint{
			Address: ip, Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Ready: true, Serving: true,
		})
	}
	return &out
}

// TestEndpointPushEqualsFullBuild: after endpoint-only changes, every
// proxy's configuration (sidecars, a gateway, a gRPC client) is exactly what
// a full build of the new world gives; proxies the change cannot reach
// beyond EDS keep their other results untouched (the fast path ran), the
// sidecar that is itself an endpoint of the changed Service is rebuilt (its
// inbound side changed), and a change to the headless Service or to the
// Service's ports takes the full path.
func TestEndpointPushEqualsFullBuild(t *testing.T) {
	gens := generate.NewCache()
	s, err := New(Options{Generator: gens.Generate, Endpoints: gens.LoadAssignments, Validate: generate.ValidateResource, Logger: logr.Discard()})
	if err != nil {
		t.Fatal(err)
	}
	proxies := []model.Proxy{
		{ID: "a", Type: model.ProxySidecar, Namespace: "ns", Pod: "a", IP: "10.0.0.1"},
		{ID: "b", Type: model.ProxySidecar, Namespace: "ns", Pod: "b", IP: "10.0.0.2"},
		{ID: "g", Type: model.ProxyRouter, Namespace: "ns", Pod: "g", IP: "10.0.0.3"},
		{ID: "c", Type: model.ProxyGRPC, Namespace: "ns", Pod: "c", IP: "10.0.0.9"},
	}
	for _, ident := range proxies {
		s.proxies[ident.ID] = newProxyState(ident)
	}
	push := func(w *model.World) {
		s.Update(w)
		s.pushAll(time.Now())
	}
	// full is what a fresh build of w gives the proxy.
	full := func(w *model.World, ident model.Proxy) map[resourcev3.Type]string {
		res, err := generate.NewCache().Generate(w, resolve(w, &ident))
		if err != nil {
			t.Fatal(err)
		}
		a, err := s.assemble(ident.ID, res, nil)
		if err != nil {
			t.Fatal(err)
		}
		return a.versions
	}
	check := func(step string, w *model.World) {
		t.Helper()
		for _, ident := range proxies {
			got := s.proxies[ident.ID].last.Load()
			if want := full(w, ident); !maps.Equal(got.versions, want) {
				t.Errorf("%s: proxy %s: versions %v, want %v", step, ident.ID, got.versions, want)
			}
			if got.world != w {
				t.Errorf("%s: proxy %s is not at the new world", step, ident.ID)
			}
		}
	}
	snapshot := func() map[string]*setState {
		out := map[string]*setState{}
		for id, p := range s.proxies {
			out[id] = p.last.Load()
		}
		return out
	}

	w0 := endpointWorld(map[int][]string{0: {"10.0.0.1", "10.1.0.2"}, 1: {"10.1.1.1"}, 2: {"10.1.2.1"}, 3: {"10.1.3.1"}})
	push(w0)
	check("initial", w0)

	// svc-1 gains an endpoint: nobody is an endpoint of svc-1, so every
	// proxy takes the fast path.
	before := snapshot()
	w1 := withServices(w0, map[int]*model.Service{1: withEndpoints(w0.Services[1], "10.1.1.1", "10.1.1.2")})
	if s.planEndpointPush(w0, w1) == nil {
		t.Fatal("no endpoint plan for an endpoint-only change")
	}
	push(w1)
	check("svc-1 endpoint added", w1)
	for id, prev := range before {
		cur := s.proxies[id].last.Load()
		if cur.versions[resourcev3.EndpointType] == prev.versions[resourcev3.EndpointType] {
			t.Errorf("proxy %s: EDS unchanged", id)
		}
		for _, typ := range []resourcev3.Type{resourcev3.ClusterType, resourcev3.ListenerType, resourcev3.RouteType} {
			if cur.types[typ] != prev.types[typ] {
				t.Errorf("proxy %s: %s rebuilt, want the fast path to keep it", id, typ)
			}
		}
	}

	// svc-0 loses the endpoint 10.0.0.1, which is sidecar a itself: a's
	// inbound listener goes, so a is rebuilt; b keeps its listeners.
	before = snapshot()
	w2 := withServices(w1, map[int]*model.Service{0: withEndpoints(w1.Services[0], "10.1.0.2")})
	push(w2)
	check("svc-0 lost sidecar a", w2)
	if s.proxies["a"].last.Load().versions[resourcev3.ListenerType] == before["a"].versions[resourcev3.ListenerType] {
		t.Errorf("sidecar a: listeners unchanged after it stopped being an endpoint")
	}
	if s.proxies["b"].last.Load().types[resourcev3.ListenerType] != before["b"].types[resourcev3.ListenerType] {
		t.Errorf("sidecar b: listeners rebuilt")
	}

	// The headless Service's endpoints are in the sidecars' listeners: no
	// plan, a full round.
	w3 := withServices(w2, map[int]*model.Service{3: withEndpoints(w2.Services[3], "10.1.3.1", "10.1.3.2")})
	if s.planEndpointPush(w2, w3) != nil {
		t.Error("an endpoint plan for a headless Service")
	}
	push(w3)
	check("headless endpoint added", w3)

	// A port change is not an endpoint change.
	svc := withEndpoints(w3.Services[2], "10.1.2.1")
	svc.Ports = append(slices.Clone(svc.Ports), model.ServicePort{Name: "http-admin", Port: 8081, Protocol: model.ProtocolHTTP})
	w4 := withServices(w3, map[int]*model.Service{2: svc})
	if s.planEndpointPush(w3, w4) != nil {
		t.Error("an endpoint plan for a port change")
	}
	push(w4)
	check("port added", w4)

	// Several endpoint rounds in a row, then a full one: still equal.
	w5 := withServices(w4, map[int]*model.Service{1: withEndpoints(w4.Services[1], "10.1.1.3")})
	push(w5)
	check("svc-1 replaced endpoints", w5)
	w6 := withServices(w5, map[int]*model.Service{1: withEndpoints(w5.Services[1]), 2: withEndpoints(w5.Services[2], "10.1.2.9")})
	push(w6)
	check("svc-1 emptied, svc-2 moved", w6)
	w7 := model.NewWorld(model.MeshConfig{TrustDomain: "cluster.local"}, w6.Services, w6.Workloads)
	push(w7)
	check("mesh config changed", w7)

	// A DestinationRule with a subset of svc-1: a full round; then an
	// endpoint of that subset appears: the subset's endpoints are patched
	// too.
	dr := &model.DestinationRule{Meta: model.Meta{Name: "svc-1", Namespace: "ns"}, Spec: &networking.DestinationRule{
		Host:    "svc-1",
		Subsets: []*networking.Subset{{Name: "canary", Labels: map[string]string{"track": "canary"}}},
	}}
	w8 := model.NewWorldWithConfig(w7.Mesh, w7.Services, w7.Workloads, model.Config{DestinationRules: []*model.DestinationRule{dr}})
	if s.planEndpointPush(w7, w8) != nil {
		t.Error("an endpoint plan for a configuration change")
	}
	push(w8)
	check("destination rule added", w8)
	canary := withEndpoints(w8.Services[1], "10.1.1.7")
	canary.Endpoints[0].Labels = map[string]string{"track": "canary"}
	w9 := model.NewWorldWithConfig(w8.Mesh, slices.Concat(w8.Services[:1], []*model.Service{canary}, w8.Services[2:]), w8.Workloads, w8.Config)
	if s.planEndpointPush(w8, w9) == nil {
		t.Fatal("no endpoint plan for an endpoint change under a DestinationRule")
	}
	push(w9)
	check("canary endpoint added", w9)
}

// TestEndpointDebounce: an endpoint-only change is pushed after the short
// EndpointQuiet window; any other change waits for Quiet.
func TestEndpointDebounce(t *testing.T) {
	gens := generate.NewCache()
	s, err := New(Options{Generator: gens.Generate, Endpoints: gens.LoadAssignments, Logger: logr.Discard(),
		Debounce: Debounce{Quiet: 600 * time.Millisecond, Max: 5 * time.Second, EndpointQuiet: 10 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Start(ctx)
	roundAfter := func(w *model.World) time.Duration {
		t.Helper()
		before := s.rounds.Load()
		start := time.Now()
		s.Update(w)
		for s.rounds.Load() == before {
			if time.Since(start) > 5*time.Second {
				t.Fatal("no push round")
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}
	w0 := endpointWorld(map[int][]string{0: {"10.1.0.1"}, 1: {"10.1.1.1"}})
	roundAfter(w0)
	w1 := withServices(w0, map[int]*model.Service{1: withEndpoints(w0.Services[1], "10.1.1.1", "10.1.1.2")})
	if d := roundAfter(w1); d > 400*time.Millisecond {
		t.Errorf("endpoint-only change pushed after %v, want about 10ms", d)
	}
	w2 := model.NewWorld(model.MeshConfig{TrustDomain: "other"}, w1.Services, w1.Workloads)
	if d := roundAfter(w2); d < 550*time.Millisecond {
		t.Errorf("mesh config change pushed after %v, want the 600ms quiet window", d)
	}
}
