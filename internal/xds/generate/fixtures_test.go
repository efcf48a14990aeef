package generate

import (
	"slices"

	"github.com/meshplane/meshplane/internal/model"
)

// Fixture worlds. NewWorld sorts its inputs in place, so every call builds
// fresh values.

const (
	clientIP  = "10.1.0.100" // shop/client-0, in no Service
	webIP     = "10.1.0.1"   // shop/web-0, behind web (80→8080, 9090)
	greeterIP = "10.1.0.7"   // shop/greeter-0, behind greeter (50051)
	gatewayIP = "10.1.2.1"   // mesh-gateways/ingress-0, behind ingress
)

var (
	zoneB = model.Locality{Region: "us-east1", Zone: "us-east1-b"}
	zoneC = model.Locality{Region: "us-east1", Zone: "us-east1-c"}
)

// fixtureWorld has, in namespaces shop, data and mesh-gateways:
//   - web (HTTP 80 → 8080, gRPC 9090): endpoints ready (two zones), not
//     ready, terminating but serving, terminating and not serving;
//   - greeter (gRPC 50051): two ready endpoints, one of them listed twice;
//   - db (TCP 5432);
//   - cache, headless (TCP 6379, HTTP 8081);
//   - ingress, the gateway's Service (80 → 8080, 443 → 8443, 15021).
func fixtureWorld(allowAny bool) *model.World {
	return fixtureWorldOf(allowAny)
}

// fixtureWorldOf is fixtureWorld with only the named services (all when none
// is named) and all the workloads.
func fixtureWorldOf(allowAny bool, only ...string) *model.World {
	web := &model.Service{
		Name: "web", Namespace: "shop", Hostname: "web.shop.svc.cluster.local",
		ClusterIP: "10.96.0.10",
		Ports: []model.ServicePort{
			{Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC},
			{Name: "http-web", Port: 80, Protocol: model.ProtocolHTTP},
		},
		Endpoints: []*model.Endpoint{
			{Address: "10.1.0.5", Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Ready: true, Serving: true, Pod: "web-4", Locality: zoneC},
			{Address: webIP, Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Ready: true, Serving: true, Pod: "web-0", Locality: zoneB, ServiceAccount: "web"},
			{Address: "10.1.0.2", Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Pod: "web-1", Locality: zoneB},
			{Address: "10.1.0.3", Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Serving: true, Terminating: true, Pod: "web-2", Locality: zoneB},
			{Address: "10.1.0.4", Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Terminating: true, Pod: "web-3", Locality: zoneB},
		},
	}
	greeter := &model.Service{
		Name: "greeter", Namespace: "shop", Hostname: "greeter.shop.svc.cluster.local",
		ClusterIP: "10.96.0.30",
		Ports:     []model.ServicePort{{Name: "grpc", Port: 50051, Protocol: model.ProtocolGRPC}},
		Endpoints: []*model.Endpoint{
			{Address: greeterIP, Ports: map[string]int32{"grpc": 50051}, Ready: true, Serving: true, Pod: "greeter-0", Locality: zoneB},
			{Address: "10.1.0.8", Ports: map[string]int32{"grpc": 50051}, Ready: true, Serving: true, Pod: "greeter-1", Locality: zoneB},
			// The same address from a second EndpointSlice, not ready there.
			{Address: "10.1.0.8", Ports: map[string]int32{"grpc": 50051}, Pod: "greeter-1b", Locality: zoneB},
		},
	}
	db := &model.Service{
		Name: "db", Namespace: "data", Hostname: "db.data.svc.cluster.local",
		ClusterIP: "10.96.0.20",
		Ports:     []model.ServicePort{{Name: "tcp-db", Port: 5432, Protocol: model.ProtocolTCP}},
		Endpoints: []*model.Endpoint{
			{Address: "10.1.1.1", Ports: map[string]int32{"tcp-db": 5432}, Ready: true, Serving: true, Pod: "db-0"},
		},
	}
	cache := &model.Service{
		Name: "cache", Namespace: "data", Hostname: "cache.data.svc.cluster.local",
		Ports: []model.ServicePort{
			{Name: "tcp-redis", Port: 6379, Protocol: model.ProtocolTCP},
			{Name: "http-admin", Port: 8081, Protocol: model.ProtocolHTTP},
		},
		Endpoints: []*model.Endpoint{
			{Address: "10.1.1.5", Ports: map[string]int32{"tcp-redis": 6379, "http-admin": 8081}, Ready: true, Serving: true, Pod: "cache-0"},
			{Address: "10.1.1.6", Ports: map[string]int32{"tcp-redis": 6379, "http-admin": 8081}, Ready: true, Serving: true, Pod: "cache-1"},
		},
	}
	ingress := &model.Service{
		Name: "ingress", Namespace: "mesh-gateways", Hostname: "ingress.mesh-gateways.svc.cluster.local",
		ClusterIP: "10.96.0.50",
		Ports: []model.ServicePort{
			{Name: "http", Port: 80, Protocol: model.ProtocolHTTP},
			{Name: "https", Port: 443, Protocol: model.ProtocolHTTPS},
			{Name: "status-port", Port: 15021, Protocol: model.ProtocolUnknown},
		},
		Endpoints: []*model.Endpoint{
			{Address: gatewayIP, Ports: map[string]int32{"http": 8080, "https": 8443, "status-port": 15021}, Ready: true, Serving: true, Pod: "ingress-0"},
		},
	}
	workloads := []*model.Workload{
		{Name: "client-0", Namespace: "shop", IP: clientIP, ServiceAccount: "client"},
		{Name: "web-0", Namespace: "shop", IP: webIP, ServiceAccount: "web"},
		{Name: "greeter-0", Namespace: "shop", IP: greeterIP, ServiceAccount: "greeter"},
		{Name: "ingress-0", Namespace: "mesh-gateways", IP: gatewayIP, ServiceAccount: "ingress"},
	}
	mesh := model.MeshConfig{TrustDomain: "cluster.local", DomainSuffix: "cluster.local", OutboundAllowAny: allowAny}
	services := []*model.Service{web, greeter, db, cache, ingress}
	if len(only) > 0 {
		services = slices.DeleteFunc(services, func(s *model.Service) bool { return !slices.Contains(only, s.Name) })
	}
	return model.NewWorld(mesh, services, workloads)
}

// fixtureProxy is the proxy of the fixture workload ns/pod.
func fixtureProxy(w *model.World, typ model.ProxyType, ns, pod string) *model.Proxy {
	wl := w.Workload(ns, pod)
	return &model.Proxy{
		ID: pod + "." + ns, Type: typ, Namespace: ns, Pod: pod, IP: wl.IP, Workload: wl,
	}
}

// goldenCase is one table entry of the golden test.
type goldenCase struct {
	name  string
	world func() *model.World
	proxy func(*model.World) *model.Proxy
}

var goldenCases = []goldenCase{
	{
		name:  "grpc-client",
		world: func() *model.World { return fixtureWorld(true) },
		proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxyGRPC, "shop", "client-0") },
	},
	{
		name:  "grpc-server",
		world: func() *model.World { return fixtureWorldOf(true, "greeter") },
		proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0") },
	},
	{
		name:  "sidecar-allow-any",
		world: func() *model.World { return fixtureWorld(true) },
		proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxySidecar, "shop", "web-0") },
	},
	{
		name:  "sidecar-registry-only",
		world: func() *model.World { return fixtureWorld(false) },
		proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxySidecar, "shop", "web-0") },
	},
	{
		name:  "sidecar-istio",
		world: istioWorld,
		proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxySidecar, "shop", "client-0") },
	},
	{
		name:  "grpc-client-istio",
		world: istioWorld,
		proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxyGRPC, "shop", "client-0") },
	},
	{
		name:  "gateway-istio",
		world: gatewayWorld,
		proxy: func(w *model.World) *model.Proxy {
			return fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0")
		},
	},
	{
		name:  "gateway",
		world: func() *model.World { return fixtureWorld(true) },
		proxy: func(w *model.World) *model.Proxy {
			return fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0")
		},
	},
}
