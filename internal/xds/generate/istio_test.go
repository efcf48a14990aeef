package generate

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

func generateChecked(t *testing.T, w *model.World, p *model.Proxy) xds.Resources {
	t.Helper()
	res, err := Generate(w, p)
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(res); err != nil {
		t.Fatalf("%s: %v", p.ID, err)
	}
	if err := CheckReferences(res); err != nil {
		t.Fatalf("%s: %v", p.ID, err)
	}
	return res
}

func vhostRoutes(t *testing.T, res xds.Resources, routeConfig, vhost string) []*routev3.Route {
	t.Helper()
	rc, _ := byName(res, resourcev3.RouteType, routeConfig).(*routev3.RouteConfiguration)
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == vhost {
			return vh.GetRoutes()
		}
	}
	t.Fatalf("route configuration %q has no virtual host %q", routeConfig, vhost)
	return nil
}

func routeNames(routes []*routev3.Route) []string {
	var out []string
	for _, r := range routes {
		out = append(out, r.GetName())
	}
	return out
}

// TestVirtualServiceSidecar: a sidecar's routes for web follow its
// VirtualService: the header match to subset v2 (hashing on x-user, as the
// v2 subset's policy says), then on port 80 only the /api prefix split
// 90/10 with the unknown subset v9 dropped, a 2 s timeout, 3 retries, a 10%
// delay and a header set, then the rest to v1.
func TestVirtualServiceSidecar(t *testing.T) {
	w := istioWorld()
	res := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))

	routes := vhostRoutes(t, res, "80", "web.shop.svc.cluster.local:80")
	if got, want := routeNames(routes), []string{"shop/web.http[0].jason", "shop/web.http[1]", "shop/web.http[2]"}; !slices.Equal(got, want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	jason := routes[0]
	if h := jason.GetMatch().GetHeaders(); len(h) != 1 || h[0].GetName() != "end-user" || h[0].GetStringMatch().GetExact() != "jason" {
		t.Errorf("jason match: %v", jason.GetMatch())
	}
	if c := jason.GetRoute().GetCluster(); c != "outbound|80|v2|web.shop.svc.cluster.local" {
		t.Errorf("jason cluster %q", c)
	}
	if hp := jason.GetRoute().GetHashPolicy(); len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-user" {
		t.Errorf("jason hash policy %v", hp)
	}
	api := routes[1]
	if api.GetMatch().GetPrefix() != "/api" {
		t.Errorf("api match %v", api.GetMatch())
	}
	wc := api.GetRoute().GetWeightedClusters().GetClusters()
	if len(wc) != 2 || wc[0].GetName() != "outbound|80|v1|web.shop.svc.cluster.local" || wc[0].GetWeight().GetValue() != 90 ||
		wc[1].GetName() != "outbound|80|v2|web.shop.svc.cluster.local" || wc[1].GetWeight().GetValue() != 10 {
		t.Errorf("api weighted clusters %v", wc)
	}
	ra := api.GetRoute()
	if ra.GetTimeout().AsDuration() != 2*time.Second || ra.GetRetryPolicy().GetNumRetries().GetValue() != 3 ||
		ra.GetRetryPolicy().GetPerTryTimeout().AsDuration() != 500*time.Millisecond || ra.GetRetryPolicy().GetRetryOn() != defaultRetryOn {
		t.Errorf("api timeout/retries: %v %v", ra.GetTimeout(), ra.GetRetryPolicy())
	}
	fault := &faultv3.HTTPFault{}
	if err := api.GetTypedPerFilterConfig()[faultFilterName].UnmarshalTo(fault); err != nil {
		t.Fatalf("api fault config: %v", err)
	}
	if fault.GetDelay().GetFixedDelay().AsDuration() != 7*time.Second || fault.GetDelay().GetPercentage().GetNumerator() != 100000 {
		t.Errorf("api fault %v", fault)
	}
	if h := api.GetRequestHeadersToAdd(); len(h) != 1 || h[0].GetHeader().GetKey() != "x-canary" {
		t.Errorf("api headers %v", h)
	}

	// Port 9090: the port-80 match does not apply.
	if got, want := routeNames(vhostRoutes(t, res, "9090", "web.shop.svc.cluster.local:9090")), []string{"shop/web.http[0].jason", "shop/web.http[2]"}; !slices.Equal(got, want) {
		t.Errorf("9090 routes %v, want %v", got, want)
	}

	// Subset clusters carry their policy; subset endpoints only their pods.
	for _, sub := range []string{"", "v1", "v2"} {
		c, _ := byName(res, resourcev3.ClusterType, OutboundClusterName(80, sub, "web.shop.svc.cluster.local")).(*clusterv3.Cluster)
		if c == nil {
			t.Fatalf("no cluster for subset %q", sub)
		}
		th := c.GetCircuitBreakers().GetThresholds()
		if len(th) != 1 || th[0].GetMaxConnections().GetValue() != 100 || th[0].GetMaxPendingRequests().GetValue() != 10 ||
			th[0].GetMaxRequests().GetValue() != 50 || c.GetConnectTimeout().AsDuration() != 3*time.Second {
			t.Errorf("subset %q: circuit breakers %v, connect timeout %v", sub, th, c.GetConnectTimeout())
		}
		if c.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 3 || c.GetOutlierDetection().GetMaxEjectionPercent().GetValue() != 50 {
			t.Errorf("subset %q: outlier detection %v", sub, c.GetOutlierDetection())
		}
		wantLB := clusterv3.Cluster_ROUND_ROBIN
		if sub == "v2" {
			wantLB = clusterv3.Cluster_RING_HASH
		}
		if c.GetLbPolicy() != wantLB {
			t.Errorf("subset %q: lb %v, want %v", sub, c.GetLbPolicy(), wantLB)
		}
	}
	cla, _ := byName(res, resourcev3.EndpointType, "outbound|80|v1|web.shop.svc.cluster.local").(*endpointv3.ClusterLoadAssignment)
	all, _ := byName(res, resourcev3.EndpointType, "outbound|80||web.shop.svc.cluster.local").(*endpointv3.ClusterLoadAssignment)
	if n, m := countEndpoints(cla), countEndpoints(all); n == 0 || n >= m {
		t.Errorf("subset v1 has %d endpoints of %d", n, m)
	}

	// sourceLabels: only the canary client gets the direct response.
	canary := &model.Proxy{ID: "canary", Type: model.ProxySidecar, Namespace: "shop", IP: "10.1.9.9",
		Workload: &model.Workload{Name: "canary", Namespace: "shop", IP: "10.1.9.9", Labels: map[string]string{"app": "canary-client"}}}
	got := vhostRoutes(t, generateChecked(t, w, canary), "8081", "cache.data.svc.cluster.local:8081")
	if len(got) != 1 || got[0].GetDirectResponse().GetStatus() != 418 {
		t.Errorf("canary client routes for cache: %v", got)
	}
	if got := vhostRoutes(t, res, "8081", "cache.data.svc.cluster.local:8081"); len(got) != 1 || got[0].GetRoute().GetCluster() == "" {
		t.Errorf("other client routes for cache: %v", got)
	}
}

func countEndpoints(cla *endpointv3.ClusterLoadAssignment) int {
	n := 0
	for _, l := range cla.GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

// TestVirtualServiceGRPC: a proxyless client's route configuration for
// greeter carries the abort fault (gRPC status UNAVAILABLE, 50%) for the
// x-fail header, then the 70/30 split with a max stream duration (gRPC's
// timeout) and retries on unavailable; its clusters are least-request.
func TestVirtualServiceGRPC(t *testing.T) {
	w := istioWorld()
	res := generateChecked(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	const name = "greeter.shop.svc.cluster.local:50051"
	routes := vhostRoutes(t, res, name, name)
	if len(routes) != 2 {
		t.Fatalf("routes %v", routeNames(routes))
	}
	fault := &faultv3.HTTPFault{}
	if err := routes[0].GetTypedPerFilterConfig()[faultFilterName].UnmarshalTo(fault); err != nil {
		t.Fatal(err)
	}
	if fault.GetAbort().GetGrpcStatus() != 14 || fault.GetAbort().GetPercentage().GetNumerator() != 500000 {
		t.Errorf("abort %v", fault.GetAbort())
	}
	ra := routes[1].GetRoute()
	if ra.GetTimeout() != nil || ra.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration() != time.Second {
		t.Errorf("gRPC timeout: timeout %v, max stream duration %v", ra.GetTimeout(), ra.GetMaxStreamDuration())
	}
	if ra.GetRetryPolicy().GetRetryOn() != "unavailable" || ra.GetRetryPolicy().GetNumRetries().GetValue() != 2 {
		t.Errorf("retries %v", ra.GetRetryPolicy())
	}
	if wc := ra.GetWeightedClusters().GetClusters(); len(wc) != 2 || wc[0].GetWeight().GetValue() != 70 {
		t.Errorf("weights %v", wc)
	}
	c, _ := byName(res, resourcev3.ClusterType, "outbound|50051|all|greeter.shop.svc.cluster.local").(*clusterv3.Cluster)
	if c.GetLbPolicy() != clusterv3.Cluster_LEAST_REQUEST {
		t.Errorf("greeter subset cluster lb %v", c.GetLbPolicy())
	}
	// Nothing gRPC cannot do: no header rewrites, no CORS.
	for _, r := range routes {
		if len(r.GetRequestHeadersToAdd()) > 0 || r.GetTypedPerFilterConfig()[corsFilterName] != nil {
			t.Errorf("route %s carries what grpc-go does not support", r.GetName())
		}
	}
}

// TestServiceEntries: a DNS entry becomes a STRICT_DNS cluster resolving
// its host (LOGICAL_DNS for gRPC) with an HTTP virtual host for its name
// only; a STATIC entry an EDS cluster whose endpoints are its addresses on
// their target ports, reachable by its address; a NONE wildcard entry an
// original-destination cluster for sidecars and nothing for gRPC.
func TestServiceEntries(t *testing.T) {
	w := istioWorld()
	res := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))

	c, _ := byName(res, resourcev3.ClusterType, "outbound|443||api.example.com").(*clusterv3.Cluster)
	if c.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Fatalf("api.example.com cluster: %v", c)
	}
	if sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress(); sa.GetAddress() != "api.example.com" || sa.GetPortValue() != 443 {
		t.Errorf("api.example.com endpoint %v", sa)
	}
	rc, _ := byName(res, resourcev3.RouteType, "80").(*routev3.RouteConfiguration)
	var found bool
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == "api.example.com:80" {
			found = true
			if !slices.Equal(vh.GetDomains(), []string{"api.example.com", "api.example.com:80"}) {
				t.Errorf("api.example.com domains %v", vh.GetDomains())
			}
		}
	}
	if !found {
		t.Error("no virtual host for api.example.com on port 80")
	}

	legacy, _ := byName(res, resourcev3.ClusterType, "outbound|8080||legacy.internal").(*clusterv3.Cluster)
	if legacy.GetType() != clusterv3.Cluster_EDS {
		t.Fatalf("legacy cluster %v", legacy)
	}
	cla, _ := byName(res, resourcev3.EndpointType, "outbound|8080||legacy.internal").(*endpointv3.ClusterLoadAssignment)
	var eps []string
	for _, l := range cla.GetEndpoints() {
		for _, e := range l.GetLbEndpoints() {
			sa := e.GetEndpoint().GetAddress().GetSocketAddress()
			eps = append(eps, sa.GetAddress()+":"+itoa(int32(sa.GetPortValue())))
		}
	}
	if !slices.Equal(eps, []string{"10.9.0.1:9081", "10.9.0.2:9080"}) {
		t.Errorf("legacy endpoints %v", eps)
	}
	if wiki, _ := byName(res, resourcev3.ClusterType, "outbound|443||*.wikipedia.org").(*clusterv3.Cluster); wiki.GetType() != clusterv3.Cluster_ORIGINAL_DST {
		t.Errorf("wikipedia cluster %v", wiki)
	}

	g := generateChecked(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	if byName(g, resourcev3.ClusterType, "outbound|443||*.wikipedia.org") != nil || byName(g, resourcev3.ListenerType, "*.wikipedia.org:443") != nil {
		t.Error("gRPC client got the NONE entry")
	}
	if c, _ := byName(g, resourcev3.ClusterType, "outbound|443||api.example.com").(*clusterv3.Cluster); c.GetType() != clusterv3.Cluster_LOGICAL_DNS {
		t.Errorf("gRPC api.example.com cluster %v", c)
	}
	if byName(g, resourcev3.EndpointType, "outbound|443||api.example.com") != nil {
		t.Error("gRPC client got EDS for a DNS entry")
	}
}

// sidecarWorld is istioWorld with two Sidecar resources: data's default
// (its own namespace and shop's web only, REGISTRY_ONLY) and one in shop
// for app=canary-client workloads (only the data namespace).
func sidecarWorld() *model.World {
	w := istioWorld()
	cfg := w.Config
	cfg.Sidecars = []*model.Sidecar{
		{Meta: model.Meta{Name: "default", Namespace: "data"}, Spec: &networking.Sidecar{
			Egress:                []*networking.IstioEgressListener{{Hosts: []string{"./*", "shop/web.shop.svc.cluster.local"}}},
			OutboundTrafficPolicy: &networking.OutboundTrafficPolicy{Mode: networking.OutboundTrafficPolicy_REGISTRY_ONLY},
		}},
		{Meta: model.Meta{Name: "canary", Namespace: "shop"}, Spec: &networking.Sidecar{
			WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "canary-client"}},
			Egress:           []*networking.IstioEgressListener{{Hosts: []string{"data/*"}}},
		}},
	}
	var services []*model.Service
	for _, s := range w.Services {
		if s.ServiceEntry == "" {
			services = append(services, s)
		}
	}
	return model.NewWorldWithConfig(w.Mesh, services, w.Workloads, cfg)
}

func clusterNames(res xds.Resources) []string {
	var out []string
	for _, r := range res[resourcev3.ClusterType] {
		if n := ResourceName(r); strings.HasPrefix(n, "outbound|") {
			out = append(out, n)
		}
	}
	return out
}

// TestSidecarScoping: a Sidecar's egress hosts decide which Services (and
// VirtualServices) a proxy gets, and its outbound traffic policy replaces
// the mesh's; a workload-selector Sidecar wins over the namespace's; a
// proxy with no Sidecar sees everything.
func TestSidecarScoping(t *testing.T) {
	w := sidecarWorld()
	data := &model.Proxy{ID: "data-sidecar", Type: model.ProxySidecar, Namespace: "data", IP: "10.1.1.5"}
	res := generateChecked(t, w, data)
	for _, name := range clusterNames(res) {
		if !strings.HasSuffix(name, ".data.svc.cluster.local") && !strings.HasSuffix(name, "|web.shop.svc.cluster.local") &&
			!strings.HasSuffix(name, "|legacy.internal") {
			t.Errorf("data sidecar got cluster %s", name)
		}
	}
	if byName(res, resourcev3.ClusterType, "outbound|80|v1|web.shop.svc.cluster.local") == nil {
		t.Error("data sidecar lacks web's subset cluster")
	}
	if byName(res, resourcev3.ClusterType, BlackHoleCluster) == nil || byName(res, resourcev3.ClusterType, PassthroughCluster) != nil {
		t.Error("data sidecar is not REGISTRY_ONLY")
	}
	if rs := vhostRoutes(t, res, "80", "web.shop.svc.cluster.local:80"); len(rs) != 3 {
		t.Errorf("data sidecar: web's VirtualService routes %v", routeNames(rs))
	}

	canary := &model.Proxy{ID: "canary", Type: model.ProxySidecar, Namespace: "shop", IP: "10.1.9.9",
		Workload: &model.Workload{Name: "canary", Namespace: "shop", IP: "10.1.9.9", Labels: map[string]string{"app": "canary-client"}}}
	for _, name := range clusterNames(generateChecked(t, w, canary)) {
		if !strings.Contains(name, ".data.svc.cluster.local") && !strings.HasSuffix(name, "|legacy.internal") {
			t.Errorf("canary sidecar got cluster %s", name)
		}
	}
	all := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	if len(clusterNames(all)) <= len(clusterNames(res)) {
		t.Errorf("unscoped sidecar has %d clusters, scoped %d", len(clusterNames(all)), len(clusterNames(res)))
	}
}

// TestTLSOrigination: a DestinationRule's SIMPLE TLS (port level) makes the
// external host's cluster originate TLS with SNI = host and the CA file;
// MUTUAL with credentialName fetches the client certificate and the CA over
// SDS, whose secrets the sidecar gets from its namespace; gRPC clients get
// no transport socket.
func TestTLSOrigination(t *testing.T) {
	w := istioWorld()
	res := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	upstream := func(name string) *tlsv3.UpstreamTlsContext {
		t.Helper()
		c, _ := byName(res, resourcev3.ClusterType, name).(*clusterv3.Cluster)
		ctx := &tlsv3.UpstreamTlsContext{}
		if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
			t.Fatalf("%s: no TLS transport socket: %v", name, err)
		}
		return ctx
	}
	ext := upstream("outbound|443||api.example.com")
	if ext.GetSni() != "api.example.com" || ext.GetCommonTlsContext().GetValidationContext().GetTrustedCa().GetFilename() != "/etc/ssl/certs/ca-certificates.crt" {
		t.Errorf("api.example.com TLS %v", ext)
	}
	if c, _ := byName(res, resourcev3.ClusterType, "outbound|80||api.example.com").(*clusterv3.Cluster); c.GetTransportSocket() != nil {
		t.Error("port 80 of api.example.com originates TLS")
	}
	leg := upstream("outbound|8080||legacy.internal")
	if sds := leg.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs(); len(sds) != 1 || sds[0].GetName() != "kubernetes://legacy-client" {
		t.Errorf("legacy client certificate %v", sds)
	}
	if ca := leg.GetCommonTlsContext().GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); ca.GetName() != "kubernetes://legacy-client-cacert" {
		t.Errorf("legacy CA %v", ca)
	}
	if got := names(res[resourcev3.SecretType]); !slices.Equal(got, []string{"kubernetes://legacy-client", "kubernetes://legacy-client-cacert"}) {
		t.Errorf("secrets %v", got)
	}
	// In another namespace the Secret does not exist: the reference stays
	// (connections fail rather than go out in plain text), no secret.
	data := generateChecked(t, w, &model.Proxy{ID: "data-sidecar", Type: model.ProxySidecar, Namespace: "data", IP: "10.1.1.5"})
	if len(data[resourcev3.SecretType]) != 0 {
		t.Errorf("data sidecar got secrets %v", names(data[resourcev3.SecretType]))
	}
	g := generateChecked(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	if c, _ := byName(g, resourcev3.ClusterType, "outbound|8080||legacy.internal").(*clusterv3.Cluster); c.GetTransportSocket() != nil {
		t.Error("gRPC cluster has a transport socket")
	}
}

// TestGRPCUnsupported: what gRPC clients do not get is listed with its
// field: the fixture's header operations on web and its rule's consecutive
// 5xx ejection.
func TestGRPCUnsupported(t *testing.T) {
	got := map[string]bool{}
	for _, u := range GRPCUnsupported(istioWorld(), "shop") {
		got[u.Kind+" "+u.Namespace+"/"+u.Name+" "+u.Field] = true
	}
	for _, want := range []string{
		"VirtualService shop/web spec.http[1].headers",
		"DestinationRule shop/web spec.trafficPolicy.outlierDetection",
		"DestinationRule shop/web spec.trafficPolicy.connectionPool",
		"DestinationRule shop/legacy-mtls spec.trafficPolicy.tls",
		"DestinationRule shop/example-tls spec.trafficPolicy.portLevelSettings[0].tls",
	} {
		if !got[want] {
			t.Errorf("missing %q in %v", want, got)
		}
	}
	if got["VirtualService shop/greeter spec.http[0].headers"] {
		t.Error("greeter reported for headers it does not set")
	}
}

// TestDelegateVirtualService: a root route delegating to a VirtualService
// without hosts gets the delegate's routes under its match: the delegate's
// header match added to the root's prefix, its catch-all under the prefix
// alone; the root's other routes follow.
func TestDelegateVirtualService(t *testing.T) {
	base := fixtureWorld(true)
	prefix := func(p string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: p}}
	}
	web := &networking.Destination{Host: "web", Port: &networking.PortSelector{Number: 80}}
	cfg := model.Config{VirtualServices: []*model.VirtualService{
		{Meta: model.Meta{Name: "web-root", Namespace: "shop"}, Spec: &networking.VirtualService{
			Hosts: []string{"web"},
			Http: []*networking.HTTPRoute{
				{Match: []*networking.HTTPMatchRequest{{Uri: prefix("/v2")}}, Delegate: &networking.Delegate{Name: "web-v2"}},
				{Route: []*networking.HTTPRouteDestination{{Destination: web}}},
			},
		}},
		{Meta: model.Meta{Name: "web-v2", Namespace: "shop"}, Spec: &networking.VirtualService{
			Http: []*networking.HTTPRoute{
				{
					Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{"x-test": {MatchType: &networking.StringMatch_Exact{Exact: "a"}}}}},
					Route: []*networking.HTTPRouteDestination{{Destination: web}},
					Fault: &networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{ErrorType: &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 503}}},
				},
				{Route: []*networking.HTTPRouteDestination{{Destination: web}}},
			},
		}},
	}}
	w := model.NewWorldWithConfig(base.Mesh, base.Services, base.Workloads, cfg)
	res := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	routes := vhostRoutes(t, res, "80", "web.shop.svc.cluster.local:80")
	want := []string{"shop/web-root.http[0]/shop/web-v2.http[0]", "shop/web-root.http[0]/shop/web-v2.http[1]", "shop/web-root.http[1]"}
	if got := routeNames(routes); !slices.Equal(got, want) {
		t.Fatalf("routes %v, want %v", got, want)
	}
	if m := routes[0].GetMatch(); m.GetPrefix() != "/v2" || len(m.GetHeaders()) != 1 || m.GetHeaders()[0].GetName() != "x-test" {
		t.Errorf("first delegated match %v", m)
	}
	if routes[0].GetTypedPerFilterConfig()[faultFilterName] == nil {
		t.Error("the delegate's fault is lost")
	}
	if m := routes[1].GetMatch(); m.GetPrefix() != "/v2" || len(m.GetHeaders()) != 0 {
		t.Errorf("second delegated match %v", m)
	}
}

// TestSidecarTCPRoutes: a VirtualService's TCP route replaces a TCP
// Service's default chain in the sidecar's listener with its weighted
// destinations.
func TestSidecarTCPRoutes(t *testing.T) {
	base := fixtureWorld(true)
	cfg := model.Config{VirtualServices: []*model.VirtualService{{Meta: model.Meta{Name: "db", Namespace: "data"}, Spec: &networking.VirtualService{
		Hosts: []string{"db.data.svc.cluster.local"},
		Tcp: []*networking.TCPRoute{{
			Match: []*networking.L4MatchAttributes{{Port: 5432}},
			Route: []*networking.RouteDestination{
				{Destination: &networking.Destination{Host: "db.data.svc.cluster.local"}, Weight: 80},
				{Destination: &networking.Destination{Host: "cache.data.svc.cluster.local", Port: &networking.PortSelector{Number: 6379}}, Weight: 20},
			},
		}},
	}}}}
	w := model.NewWorldWithConfig(base.Mesh, base.Services, base.Workloads, cfg)
	res := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	l, _ := byName(res, resourcev3.ListenerType, "0.0.0.0_5432").(*listenerv3.Listener)
	var tp tcpproxyv3.TcpProxy
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil {
		t.Fatal(err)
	}
	wc := tp.GetWeightedClusters().GetClusters()
	if len(wc) != 2 || wc[0].GetName() != "outbound|5432||db.data.svc.cluster.local" || wc[0].GetWeight() != 80 ||
		wc[1].GetName() != "outbound|6379||cache.data.svc.cluster.local" || wc[1].GetWeight() != 20 {
		t.Errorf("db chain %v", &tp)
	}
	// The cached generator agrees.
	got, err := NewCache().Generate(w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	if err != nil {
		t.Fatal(err)
	}
	assertSameResources(t, "tcp routes", got, res)
}

// TestServiceEntryExportTo: an entry exported to its own namespace only
// reaches proxies of that namespace.
func TestServiceEntryExportTo(t *testing.T) {
	base := fixtureWorld(true)
	cfg := model.Config{ServiceEntries: []*model.ServiceEntry{{Meta: model.Meta{Name: "private", Namespace: "data"}, Spec: &networking.ServiceEntry{
		Hosts: []string{"private.example.com"}, ExportTo: []string{"."},
		Ports:      []*networking.ServicePort{{Number: 443, Name: "tls", Protocol: "TLS"}},
		Resolution: networking.ServiceEntry_DNS,
	}}}}
	w := model.NewWorldWithConfig(base.Mesh, base.Services, base.Workloads, cfg)
	const cluster = "outbound|443||private.example.com"
	data := &model.Proxy{ID: "data-sidecar", Type: model.ProxySidecar, Namespace: "data", IP: "10.1.1.5"}
	shop := fixtureProxy(w, model.ProxySidecar, "shop", "client-0")
	if byName(generateChecked(t, w, data), resourcev3.ClusterType, cluster) == nil {
		t.Error("the data namespace does not see its own entry")
	}
	if byName(generateChecked(t, w, shop), resourcev3.ClusterType, cluster) != nil {
		t.Error("the shop namespace sees data's private entry")
	}
	c := NewCache()
	for _, p := range []*model.Proxy{data, shop} {
		got, err := c.Generate(w, p)
		if err != nil {
			t.Fatal(err)
		}
		assertSameResources(t, p.ID, got, generateChecked(t, w, p))
	}
}

// TestIstioDefaults: what Istio does where the configuration is silent. A
// route without retries gets two retries (none for gRPC clients, and none
// with attempts 0); numeric retryOn entries are status codes; a fault
// without a percentage injects nothing; clusters lift Envoy's circuit
// breaker defaults; outlier detection without consecutive5xxErrors keeps
// Envoy's and disables panic mode; a TLS ServiceEntry host without
// addresses is matched by SNI; gRPC clients match sourceLabels too.
func TestIstioDefaults(t *testing.T) {
	w := istioWorld()
	res := generateChecked(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	def := vhostRoutes(t, res, "80", "ingress.mesh-gateways.svc.cluster.local:80")[0].GetRoute().GetRetryPolicy()
	if def.GetNumRetries().GetValue() != 2 || !slices.Equal(def.GetRetriableStatusCodes(), []uint32{503}) || len(def.GetRetryHostPredicate()) != 1 {
		t.Errorf("default route retries %v", def)
	}
	if rp := vhostRoutes(t, res, "80", "web.shop.svc.cluster.local:80")[0].GetRoute().GetRetryPolicy(); rp != def {
		t.Errorf("a VirtualService route without retries: %v", rp)
	}
	g := generateChecked(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))
	if rp := vhostRoutes(t, g, "greeter.shop.svc.cluster.local:50051", "greeter.shop.svc.cluster.local:50051")[0].GetRoute().GetRetryPolicy(); rp != nil {
		t.Errorf("gRPC default retries %v", rp)
	}
	if on, codes := retryConditions("5xx,503,gateway-error,504"); on != "5xx,gateway-error,retriable-status-codes" || !slices.Equal(codes, []uint32{503, 504}) {
		t.Errorf("retryConditions: %q %v", on, codes)
	}
	if f := faultConfig(&networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{ErrorType: &networking.HTTPFaultInjection_Abort_HttpStatus{HttpStatus: 500}}}); f.GetAbort().GetPercentage().GetNumerator() != 0 {
		t.Errorf("abort without percentage: %v", f)
	}
	db, _ := byName(res, resourcev3.ClusterType, "outbound|5432||db.data.svc.cluster.local").(*clusterv3.Cluster)
	if th := db.GetCircuitBreakers().GetThresholds(); len(th) != 1 || th[0].GetMaxRequests().GetValue() != 1<<32-1 {
		t.Errorf("default circuit breakers %v", th)
	}
	web, _ := byName(res, resourcev3.ClusterType, "outbound|80||web.shop.svc.cluster.local").(*clusterv3.Cluster)
	if th := web.GetCircuitBreakers().GetThresholds()[0]; th.GetMaxConnections().GetValue() != 100 || th.GetMaxRetries().GetValue() != 1<<32-1 {
		t.Errorf("rule circuit breakers keep the lifted defaults for what they do not set: %v", th)
	}
	if p := web.GetCommonLbConfig().GetHealthyPanicThreshold(); p == nil || p.GetValue() != 0 {
		t.Errorf("panic threshold %v, want 0", p)
	}
	od := outlierDetection(&networking.OutlierDetection{ConsecutiveGatewayErrors: wrapperspb.UInt32(3)})
	if od.GetConsecutive_5Xx() != nil || od.GetEnforcingConsecutive_5Xx() != nil || od.GetEnforcingConsecutiveGatewayFailure().GetValue() != 100 {
		t.Errorf("gateway-errors-only outlier detection %v", od)
	}
	l, _ := byName(res, resourcev3.ListenerType, "0.0.0.0_443").(*listenerv3.Listener)
	var sni bool
	for _, fc := range l.GetFilterChains() {
		if slices.Equal(fc.GetFilterChainMatch().GetServerNames(), []string{"api.example.com"}) {
			sni = true
		}
	}
	if !sni || len(l.GetListenerFilters()) != 1 {
		t.Errorf("no SNI chain for api.example.com on 443: %v", l)
	}

	// sourceLabels for a gRPC client: the canary route applies to it only.
	base := fixtureWorld(true)
	sw := model.NewWorldWithConfig(base.Mesh, base.Services, base.Workloads, model.Config{VirtualServices: []*model.VirtualService{{
		Meta: model.Meta{Name: "greeter-canary", Namespace: "shop"}, Spec: &networking.VirtualService{
			Hosts: []string{"greeter"},
			Http: []*networking.HTTPRoute{{
				Match: []*networking.HTTPMatchRequest{{SourceLabels: map[string]string{"app": "canary-client"}}},
				Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "greeter"}}},
			}},
		}}}})
	canary := &model.Proxy{ID: "canary-grpc", Type: model.ProxyGRPC, Namespace: "shop", IP: "10.1.9.8",
		Workload: &model.Workload{Name: "c", Namespace: "shop", IP: "10.1.9.8", Labels: map[string]string{"app": "canary-client"}}}
	const name = "greeter.shop.svc.cluster.local:50051"
	routes := vhostRoutes(t, generateChecked(t, sw, canary), name, name)
	plain := vhostRoutes(t, generateChecked(t, sw, fixtureProxy(sw, model.ProxyGRPC, "shop", "client-0")), name, name)
	if len(routes) != 1 || routes[0].GetName() != "shop/greeter-canary.http[0]" || len(plain) != 1 || plain[0].GetName() != "default" {
		t.Errorf("gRPC sourceLabels: canary %v, other %v", routeNames(routes), routeNames(plain))
	}
	got, err := NewCache().Generate(sw, canary)
	if err != nil {
		t.Fatal(err)
	}
	assertSameResources(t, "gRPC sourceLabels", got, generateChecked(t, sw, canary))
}

// TestSidecarTLSRoutes: a VirtualService's TLS route sends connections to
// the Service's address with a given SNI to its destination; other
// connections keep the Service's own chain; the listener inspects TLS.
func TestSidecarTLSRoutes(t *testing.T) {
	base := fixtureWorld(true)
	cfg := model.Config{VirtualServices: []*model.VirtualService{{Meta: model.Meta{Name: "ingress-sni", Namespace: "mesh-gateways"}, Spec: &networking.VirtualService{
		Hosts: []string{"ingress.mesh-gateways.svc.cluster.local"},
		Tls: []*networking.TLSRoute{{
			Match: []*networking.TLSMatchAttributes{{Port: 443, SniHosts: []string{"a.example.com"}}},
			Route: []*networking.RouteDestination{{Destination: &networking.Destination{Host: "db.data.svc.cluster.local"}}},
		}},
	}}}}
	w := model.NewWorldWithConfig(base.Mesh, base.Services, base.Workloads, cfg)
	p := fixtureProxy(w, model.ProxySidecar, "shop", "client-0")
	res := generateChecked(t, w, p)
	l, _ := byName(res, resourcev3.ListenerType, "0.0.0.0_443").(*listenerv3.Listener)
	var sni, plain *listenerv3.FilterChain
	for _, fc := range l.GetFilterChains() {
		switch {
		case slices.Equal(fc.GetFilterChainMatch().GetServerNames(), []string{"a.example.com"}):
			sni = fc
		case fc.GetName() == "outbound|443||ingress.mesh-gateways.svc.cluster.local":
			plain = fc
		}
	}
	if sni == nil || plain == nil || len(l.GetListenerFilters()) != 1 {
		t.Fatalf("chains %v, listener filters %v", l.GetFilterChains(), l.GetListenerFilters())
	}
	var tp tcpproxyv3.TcpProxy
	if err := sni.GetFilters()[0].GetTypedConfig().UnmarshalTo(&tp); err != nil || tp.GetCluster() != "outbound|5432||db.data.svc.cluster.local" {
		t.Errorf("SNI chain proxies to %v (%v)", tp.GetCluster(), err)
	}
	if got := sni.GetFilterChainMatch().GetPrefixRanges(); len(got) != 1 || got[0].GetAddressPrefix() != "10.96.0.50" {
		t.Errorf("SNI chain is not limited to the Service's address: %v", got)
	}
	got, err := NewCache().Generate(w, p)
	if err != nil {
		t.Fatal(err)
	}
	assertSameResources(t, "tls routes", got, res)
}
