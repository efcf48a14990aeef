package generate

import (
	"fmt"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

func TestGRPCClientListenerNames(t *testing.T) {
	w := fixtureWorld(true)
	same := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	other := mustGenerate(t, w, &model.Proxy{ID: "x.other", Type: model.ProxyGRPC, Namespace: "other", IP: "10.9.9.9"})

	for _, name := range []string{
		"web.shop.svc.cluster.local:9090", "web.shop.svc:9090", "web.shop:9090", "web:9090",
		"web.shop.svc.cluster.local:80", "web:80",
		"db.data.svc.cluster.local:5432", "db.data:5432",
		"cache.data.svc.cluster.local:6379", // headless: still EDS for gRPC
	} {
		if find[*listenerv3.Listener](same, resourcev3.ListenerType, name) == nil {
			t.Errorf("same namespace: no listener %q", name)
		}
	}
	// Short names only for clients in the service's namespace.
	for _, name := range []string{"db:5432", "cache:6379"} {
		if find[*listenerv3.Listener](same, resourcev3.ListenerType, name) != nil {
			t.Errorf("client in shop got %q, a short name of a data service", name)
		}
	}
	if find[*listenerv3.Listener](other, resourcev3.ListenerType, "web:9090") != nil {
		t.Error("client in namespace other got web:9090")
	}
	if find[*listenerv3.Listener](other, resourcev3.ListenerType, "web.shop:9090") == nil {
		t.Error("client in namespace other lacks web.shop:9090")
	}
	// 4 names per port of a same-namespace service, 3 otherwise.
	if n, want := len(same[resourcev3.ListenerType]), 4*3+3*6; n != want {
		t.Errorf("client in shop: %d listeners, want %d: %q", n, want, resourceNames(same[resourcev3.ListenerType]))
	}
}

func TestGRPCClientListenerShape(t *testing.T) {
	w := fixtureWorld(true)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	const name = "web.shop.svc.cluster.local:9090"
	const cluster = "outbound|9090||web.shop.svc.cluster.local"

	l := find[*listenerv3.Listener](res, resourcev3.ListenerType, name)
	if l.GetAddress() != nil || len(l.GetFilterChains()) != 0 {
		t.Errorf("API listener has an address or filter chains: %v", l)
	}
	hcm := new(hcmv3.HttpConnectionManager)
	if err := l.GetApiListener().GetApiListener().UnmarshalTo(hcm); err != nil {
		t.Fatalf("api_listener is not an HttpConnectionManager: %v", err)
	}
	if hcm.GetRds().GetConfigSource().GetAds() == nil {
		t.Error("RDS config source is not ADS")
	}
	if got := hcm.GetRds().GetRouteConfigName(); got != name {
		t.Errorf("route_config_name = %q, want %q", got, name)
	}
	checkClientFilters(t, hcm)

	rc := find[*routev3.RouteConfiguration](res, resourcev3.RouteType, name)
	if rc == nil || len(rc.GetVirtualHosts()) != 1 {
		t.Fatalf("route configuration %q: %v", name, rc)
	}
	vh := rc.GetVirtualHosts()[0]
	if want := []string{"web.shop.svc.cluster.local", name}; !slices.Equal(vh.GetDomains(), want) {
		t.Errorf("domains = %q, want %q", vh.GetDomains(), want)
	}
	if len(vh.GetRoutes()) != 1 || vh.GetRoutes()[0].GetMatch().GetPrefix() != "/" || vh.GetRoutes()[0].GetRoute().GetCluster() != cluster {
		t.Errorf("routes = %v, want / → %s", vh.GetRoutes(), cluster)
	}

	c := find[*clusterv3.Cluster](res, resourcev3.ClusterType, cluster)
	if c.GetType() != clusterv3.Cluster_EDS || c.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil || c.GetLbPolicy() != clusterv3.Cluster_ROUND_ROBIN {
		t.Errorf("cluster is not EDS over ADS with round robin: %v", c)
	}
	if c.GetTransportSocket() != nil || len(c.GetTransportSocketMatches()) != 0 {
		t.Error("cluster has a transport socket; grpc-go rejects one without certificate providers")
	}
	if find[*endpointv3.ClusterLoadAssignment](res, resourcev3.EndpointType, cluster) == nil {
		t.Errorf("no endpoints for %s", cluster)
	}
}

func TestEndpointHealth(t *testing.T) {
	w := fixtureWorld(true)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	cla := find[*endpointv3.ClusterLoadAssignment](res, resourcev3.EndpointType, "outbound|80||web.shop.svc.cluster.local")
	got := map[string]corev3.HealthStatus{}
	for _, l := range cla.GetEndpoints() {
		if l.GetLocality() == nil {
			t.Error("locality without id: grpc-go rejects it")
		}
		if l.GetLoadBalancingWeight().GetValue() == 0 {
			t.Error("locality without weight: grpc-go ignores it")
		}
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			if sa.GetPortValue() != 8080 {
				t.Errorf("%s: port %d, want the target port 8080", sa.GetAddress(), sa.GetPortValue())
			}
			got[sa.GetAddress()] = e.GetHealthStatus()
		}
	}
	want := map[string]corev3.HealthStatus{
		"10.1.0.1": corev3.HealthStatus_HEALTHY,   // ready
		"10.1.0.5": corev3.HealthStatus_HEALTHY,   // ready, other zone
		"10.1.0.2": corev3.HealthStatus_UNHEALTHY, // not ready
		"10.1.0.3": corev3.HealthStatus_DRAINING,  // terminating, serving
		"10.1.0.4": corev3.HealthStatus_UNHEALTHY, // terminating, not serving
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("health = %v, want %v", got, want)
	}
	// Two zones, sorted; each locality's weight is its endpoint count.
	var zones []string
	for _, l := range cla.GetEndpoints() {
		zones = append(zones, l.GetLocality().GetZone())
		if int(l.GetLoadBalancingWeight().GetValue()) != len(l.GetLbEndpoints()) {
			t.Errorf("zone %s: weight %d for %d endpoints", l.GetLocality().GetZone(), l.GetLoadBalancingWeight().GetValue(), len(l.GetLbEndpoints()))
		}
	}
	if !slices.Equal(zones, []string{"us-east1-b", "us-east1-c"}) {
		t.Errorf("localities = %q", zones)
	}
}

func TestEndpointDuplicateAddressKeepsBestHealth(t *testing.T) {
	w := fixtureWorld(true)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	cla := find[*endpointv3.ClusterLoadAssignment](res, resourcev3.EndpointType, "outbound|50051||greeter.shop.svc.cluster.local")
	seen := map[string]corev3.HealthStatus{}
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			a := e.GetEndpoint().GetAddress().GetSocketAddress().GetAddress()
			if _, dup := seen[a]; dup {
				t.Errorf("address %s listed twice: grpc-go NACKs that", a)
			}
			seen[a] = e.GetHealthStatus()
		}
	}
	if seen["10.1.0.8"] != corev3.HealthStatus_HEALTHY {
		t.Errorf("10.1.0.8 = %v, want HEALTHY (ready in one of its two slices)", seen["10.1.0.8"])
	}
}

func TestGRPCServerListeners(t *testing.T) {
	w := fixtureWorld(true)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0"))
	want := map[string]string{ // name → socket address
		"xds.meshplane.io/grpc/lds/inbound/10.1.0.7:50051": "10.1.0.7",
		"xds.meshplane.io/grpc/lds/inbound/0.0.0.0:50051":  "0.0.0.0",
		"xds.meshplane.io/grpc/lds/inbound/[::]:50051":     "::",
	}
	var got []string
	for _, r := range res[resourcev3.ListenerType] {
		l := r.(*listenerv3.Listener)
		if l.GetApiListener() != nil {
			continue
		}
		got = append(got, l.GetName())
		addr, ok := want[l.GetName()]
		if !ok {
			t.Errorf("unexpected server listener %q", l.GetName())
			continue
		}
		checkGRPCServerListener(t, l, addr, 50051)
	}
	if len(got) != len(want) {
		t.Errorf("server listeners %q, want %d", got, len(want))
	}
	if n := GRPCServerListenerName("10.1.0.7", 50051); n != fmt.Sprintf(GRPCServerListenerTemplate, "10.1.0.7:50051") {
		t.Errorf("GRPCServerListenerName = %q", n)
	}

	// A client-only proxy gets no server listeners.
	client := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	for _, r := range client[resourcev3.ListenerType] {
		if r.(*listenerv3.Listener).GetApiListener() == nil {
			t.Errorf("client-only proxy got server listener %q", ResourceName(r))
		}
	}
}

func TestGRPCServerListenersIPv6(t *testing.T) {
	svc := &model.Service{
		Name: "v6", Namespace: "ns", Hostname: "v6.ns.svc.cluster.local", ClusterIP: "fd00::10",
		Ports: []model.ServicePort{{Name: "grpc", Port: 8080, Protocol: model.ProtocolGRPC}},
		Endpoints: []*model.Endpoint{
			{Address: "fd00:0::7", Ports: map[string]int32{"grpc": 9000}, Ready: true}, // not canonical on purpose
		},
	}
	w := model.NewWorld(model.MeshConfig{}, []*model.Service{svc}, nil)
	res := mustGenerate(t, w, &model.Proxy{ID: "p", Type: model.ProxyGRPC, Namespace: "ns", IP: "fd00::7"})
	name := "xds.meshplane.io/grpc/lds/inbound/[fd00::7]:9000"
	l := find[*listenerv3.Listener](res, resourcev3.ListenerType, name)
	if l == nil {
		t.Fatalf("no listener %q in %q", name, resourceNames(res[resourcev3.ListenerType]))
	}
	checkGRPCServerListener(t, l, "fd00::7", 9000)
	if err := Validate(res); err != nil {
		t.Error(err)
	}
}

func checkGRPCServerListener(t *testing.T, l *listenerv3.Listener, addr string, port uint32) {
	t.Helper()
	sa := l.GetAddress().GetSocketAddress()
	if sa.GetAddress() != addr || sa.GetPortValue() != port {
		t.Errorf("%s: address %s:%d, want %s:%d", l.GetName(), sa.GetAddress(), sa.GetPortValue(), addr, port)
	}
	if len(l.GetListenerFilters()) != 0 {
		t.Errorf("%s: listener filters (grpc-go rejects them)", l.GetName())
	}
	if l.GetUseOriginalDst().GetValue() {
		t.Errorf("%s: use_original_dst (grpc-go rejects it)", l.GetName())
	}
	if len(l.GetFilterChains()) != 1 {
		t.Fatalf("%s: %d filter chains, want 1", l.GetName(), len(l.GetFilterChains()))
	}
	fc := l.GetFilterChains()[0]
	if fc.GetFilterChainMatch() != nil || fc.GetTransportSocket() != nil {
		t.Errorf("%s: filter chain match or transport socket set: %v", l.GetName(), fc)
	}
	if len(fc.GetFilters()) != 1 {
		t.Fatalf("%s: %d filters, want the HttpConnectionManager only", l.GetName(), len(fc.GetFilters()))
	}
	hcm := new(hcmv3.HttpConnectionManager)
	if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatalf("%s: %v", l.GetName(), err)
	}
	checkRouterOnly(t, hcm)
	rc := hcm.GetRouteConfig()
	if rc == nil {
		t.Fatalf("%s: no inline route configuration", l.GetName())
	}
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			if r.GetNonForwardingAction() == nil {
				t.Errorf("%s: route %q is not a NonForwardingAction", l.GetName(), r.GetName())
			}
		}
	}
	if len(rc.GetVirtualHosts()) != 1 || !slices.Equal(rc.GetVirtualHosts()[0].GetDomains(), []string{"*"}) {
		t.Errorf("%s: want one virtual host for *, got %v", l.GetName(), rc.GetVirtualHosts())
	}
}

// checkRouterOnly: the HTTP filters are exactly the router, which grpc-go
// requires last and terminal.
// checkClientFilters: a gRPC client's connection manager runs the fault
// filter (per-route faults) and ends with the router, the filters grpc-go
// knows.
func checkClientFilters(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	fs := hcm.GetHttpFilters()
	if len(fs) != 2 || !fs[0].GetTypedConfig().MessageIs(&faultv3.HTTPFault{}) || !fs[1].GetTypedConfig().MessageIs(&routerv3.Router{}) {
		t.Errorf("http filters = %v, want fault then router", fs)
	}
	checkNoXFF(t, hcm)
}

// checkRouterOnly: a server's connection manager runs the router alone.
func checkRouterOnly(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	fs := hcm.GetHttpFilters()
	if len(fs) != 1 || !fs[0].GetTypedConfig().MessageIs(&routerv3.Router{}) {
		t.Errorf("http filters = %v, want the router only", fs)
	}
	checkNoXFF(t, hcm)
}

func checkNoXFF(t *testing.T, hcm *hcmv3.HttpConnectionManager) {
	t.Helper()
	if hcm.GetXffNumTrustedHops() != 0 || len(hcm.GetOriginalIpDetectionExtensions()) != 0 {
		t.Error("xff_num_trusted_hops or original_ip_detection_extensions set: grpc-go NACKs them")
	}
}

// TestGRPCSnapshotConsistency pins a go-control-plane limitation the server
// must work around: Snapshot.Consistent does not follow API listeners, so a
// proxyless gRPC snapshot looks inconsistent to it (routes "unreferenced").
// CheckReferences does follow them.
func TestGRPCSnapshotConsistency(t *testing.T) {
	w := fixtureWorld(true)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	if err := CheckReferences(res); err != nil {
		t.Fatal(err)
	}
	snap, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource(res))
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err == nil {
		t.Log("go-control-plane's Consistent now follows API listeners; the server may use it for gRPC proxies too")
	} else {
		t.Logf("as expected, go-control-plane's Consistent rejects API-listener routes: %v", shorten(err.Error()))
	}
}

// find returns the resource of type typ named name, or nil.
func find[T types.Resource](res xds.Resources, typ resourcev3.Type, name string) T {
	var zero T
	for _, r := range res[typ] {
		if ResourceName(r) == name {
			return r.(T)
		}
	}
	return zero
}

func shorten(s string) string {
	if len(s) > 200 {
		return s[:200] + "…"
	}
	return s
}
