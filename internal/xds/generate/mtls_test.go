package generate

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"

	"github.com/meshplane/meshplane/internal/model"
)

const meshRootNS = "meshplane-system"

var meshLabels = map[string]string{model.TLSModeLabel: model.TLSModeIstio}

// mtlsWorld is the mTLS fixture:
//   - web (shop; HTTP 80 → 8080, gRPC 9090): two endpoints whose pods run a
//     mesh proxy (service accounts web and web-canary);
//   - greeter (shop; gRPC 50051): one meshed endpoint, one without a proxy;
//   - legacy (legacy; HTTP 80): meshed, but its namespace says DISABLE;
//   - api (shop; HTTP 80): meshed, a DestinationRule forces ISTIO_MUTUAL
//     with its own subjectAltNames; db (data; TCP 5432): a rule says DISABLE.
//
// AuthorizationPolicies: greeter only takes calls from shop/client; web
// denies /admin/*.
//
// PeerAuthentications: mesh-wide STRICT; legacy namespace DISABLE; web's
// pods PERMISSIVE on port 9090 only (app=web selector); greeter's pods
// (app=greeter) PERMISSIVE.
func mtlsWorld() *model.World {
	meshed := func(app string) map[string]string {
		return map[string]string{model.TLSModeLabel: model.TLSModeIstio, "app": app}
	}
	web := &model.Service{
		Name: "web", Namespace: "shop", Hostname: "web.shop.svc.cluster.local", ClusterIP: "10.96.0.10",
		Ports: []model.ServicePort{
			{Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC},
			{Name: "http-web", Port: 80, Protocol: model.ProtocolHTTP},
		},
		Endpoints: []*model.Endpoint{
			{Address: webIP, Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Ready: true, Serving: true, Pod: "web-0", ServiceAccount: "web", Labels: meshed("web")},
			{Address: "10.1.0.2", Ports: map[string]int32{"http-web": 8080, "grpc-api": 9090}, Ready: true, Serving: true, Pod: "web-1", ServiceAccount: "web-canary", Labels: meshed("web")},
		},
	}
	greeter := &model.Service{
		Name: "greeter", Namespace: "shop", Hostname: "greeter.shop.svc.cluster.local", ClusterIP: "10.96.0.30",
		Ports: []model.ServicePort{{Name: "grpc", Port: 50051, Protocol: model.ProtocolGRPC}},
		Endpoints: []*model.Endpoint{
			{Address: greeterIP, Ports: map[string]int32{"grpc": 50051}, Ready: true, Serving: true, Pod: "greeter-0", ServiceAccount: "greeter", Labels: meshed("greeter")},
			{Address: "10.1.0.8", Ports: map[string]int32{"grpc": 50051}, Ready: true, Serving: true, Pod: "greeter-1", Labels: map[string]string{"app": "greeter"}},
		},
	}
	legacy := &model.Service{
		Name: "legacy", Namespace: "legacy", Hostname: "legacy.legacy.svc.cluster.local", ClusterIP: "10.96.0.40",
		Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}},
		Endpoints: []*model.Endpoint{
			{Address: "10.1.3.1", Ports: map[string]int32{"http": 8080}, Ready: true, Serving: true, Pod: "legacy-0", ServiceAccount: "legacy", Labels: meshed("legacy")},
		},
	}
	api := &model.Service{
		Name: "api", Namespace: "shop", Hostname: "api.shop.svc.cluster.local", ClusterIP: "10.96.0.60",
		Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}},
		Endpoints: []*model.Endpoint{
			{Address: "10.1.0.20", Ports: map[string]int32{"http": 8080}, Ready: true, Serving: true, Pod: "api-0", ServiceAccount: "api", Labels: meshed("api")},
		},
	}
	db := &model.Service{
		Name: "db", Namespace: "data", Hostname: "db.data.svc.cluster.local", ClusterIP: "10.96.0.20",
		Ports: []model.ServicePort{{Name: "tcp-db", Port: 5432, Protocol: model.ProtocolTCP}},
		Endpoints: []*model.Endpoint{
			{Address: "10.1.1.1", Ports: map[string]int32{"tcp-db": 5432}, Ready: true, Serving: true, Pod: "db-0", ServiceAccount: "db", Labels: meshed("db")},
		},
	}
	workloads := []*model.Workload{
		{Name: "client-0", Namespace: "shop", IP: clientIP, ServiceAccount: "client", Labels: meshed("client")},
		{Name: "web-0", Namespace: "shop", IP: webIP, ServiceAccount: "web", Labels: meshed("web")},
		{Name: "web-1", Namespace: "shop", IP: "10.1.0.2", ServiceAccount: "web-canary", Labels: meshed("web")},
		{Name: "greeter-0", Namespace: "shop", IP: greeterIP, ServiceAccount: "greeter", Labels: meshed("greeter")},
		{Name: "greeter-1", Namespace: "shop", IP: "10.1.0.8", Labels: map[string]string{"app": "greeter"}},
		{Name: "legacy-0", Namespace: "legacy", IP: "10.1.3.1", ServiceAccount: "legacy", Labels: meshed("legacy")},
		{Name: "ingress-0", Namespace: "mesh-gateways", IP: gatewayIP, ServiceAccount: "ingress"},
	}
	mode := func(m security.PeerAuthentication_MutualTLS_Mode) *security.PeerAuthentication_MutualTLS {
		return &security.PeerAuthentication_MutualTLS{Mode: m}
	}
	cfg := model.Config{
		PeerAuthentications: []*model.PeerAuthentication{
			{Meta: model.Meta{Name: "default", Namespace: meshRootNS, CreationUnix: 1}, Spec: &security.PeerAuthentication{Mtls: mode(security.PeerAuthentication_MutualTLS_STRICT)}},
			{Meta: model.Meta{Name: "default", Namespace: "legacy", CreationUnix: 2}, Spec: &security.PeerAuthentication{Mtls: mode(security.PeerAuthentication_MutualTLS_DISABLE)}},
			{Meta: model.Meta{Name: "web-grpc", Namespace: "shop", CreationUnix: 3}, Spec: &security.PeerAuthentication{
				Selector:      &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "web"}},
				PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{9090: mode(security.PeerAuthentication_MutualTLS_PERMISSIVE)},
			}},
			{Meta: model.Meta{Name: "greeter", Namespace: "shop", CreationUnix: 4}, Spec: &security.PeerAuthentication{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "greeter"}},
				Mtls:     mode(security.PeerAuthentication_MutualTLS_PERMISSIVE),
			}},
		},
		AuthorizationPolicies: []*model.AuthorizationPolicy{
			{Meta: model.Meta{Name: "greeter-callers", Namespace: "shop", CreationUnix: 7}, Spec: &security.AuthorizationPolicy{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "greeter"}},
				Action:   security.AuthorizationPolicy_ALLOW,
				Rules: []*security.Rule{{From: []*security.Rule_From{{Source: &security.Source{
					Principals: []string{"cluster.local/ns/shop/sa/client"},
				}}}}},
			}},
			{Meta: model.Meta{Name: "no-admin", Namespace: "shop", CreationUnix: 8}, Spec: &security.AuthorizationPolicy{
				Selector: &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": "web"}},
				Action:   security.AuthorizationPolicy_DENY,
				Rules:    []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Paths: []string{"/admin/*"}}}}}},
			}},
		},
		DestinationRules: []*model.DestinationRule{
			{Meta: model.Meta{Name: "api", Namespace: "shop", CreationUnix: 5}, Spec: &networking.DestinationRule{
				Host: "api",
				TrafficPolicy: &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{
					Mode: networking.ClientTLSSettings_ISTIO_MUTUAL, SubjectAltNames: []string{"spiffe://cluster.local/ns/shop/sa/api"},
				}},
			}},
			{Meta: model.Meta{Name: "db", Namespace: "data", CreationUnix: 6}, Spec: &networking.DestinationRule{
				Host:          "db.data.svc.cluster.local",
				TrafficPolicy: &networking.TrafficPolicy{Tls: &networking.ClientTLSSettings{Mode: networking.ClientTLSSettings_DISABLE}},
			}},
		},
	}
	mesh := model.MeshConfig{TrustDomain: "cluster.local", DomainSuffix: "cluster.local", OutboundAllowAny: true, RootNamespace: meshRootNS}
	return model.NewWorldWithConfig(mesh, []*model.Service{web, greeter, legacy, api, db}, workloads, cfg)
}

func init() {
	goldenCases = append(goldenCases,
		goldenCase{name: "sidecar-mtls", world: mtlsWorld, proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxySidecar, "shop", "web-0") }},
		goldenCase{name: "grpc-mtls-server", world: mtlsWorld, proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0") }},
		goldenCase{name: "grpc-mtls-client", world: mtlsWorld, proxy: func(w *model.World) *model.Proxy { return fixtureProxy(w, model.ProxyGRPC, "shop", "client-0") }},
	)
}

// inboundChain finds the chain of the virtual inbound listener for port (0:
// the passthrough) and transport protocol.
func inboundChain(l *listenerv3.Listener, port uint32, transport string) *listenerv3.FilterChain {
	for _, fc := range l.GetFilterChains() {
		m := fc.GetFilterChainMatch()
		if m.GetDestinationPort().GetValue() == port && m.GetTransportProtocol() == transport {
			return fc
		}
	}
	return nil
}

func downstreamTLS(t *testing.T, fc *listenerv3.FilterChain) *tlsv3.DownstreamTlsContext {
	t.Helper()
	if fc.GetTransportSocket() == nil {
		return nil
	}
	ctx := new(tlsv3.DownstreamTlsContext)
	if err := fc.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func clusterUpstreamTLS(t *testing.T, c *clusterv3.Cluster) *tlsv3.UpstreamTlsContext {
	t.Helper()
	if c.GetTransportSocket() == nil {
		return nil
	}
	ctx := new(tlsv3.UpstreamTlsContext)
	if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	return ctx
}

func TestSidecarInboundFollowsPeerAuthentication(t *testing.T) {
	w := mtlsWorld()
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "web-0"))
	vi := find[*listenerv3.Listener](res, resourcev3.ListenerType, VirtualInboundListener)

	// 8080: mesh-wide STRICT. TLS requires a client certificate; plaintext
	// goes to the black hole, never to the workload.
	strict := inboundChain(vi, 8080, "tls")
	if ctx := downstreamTLS(t, strict); ctx == nil || !ctx.GetRequireClientCertificate().GetValue() {
		t.Fatalf("8080 tls chain: %v", strict)
	}
	if got := tcpClusters(t, &listenerv3.Listener{FilterChains: []*listenerv3.FilterChain{inboundChain(vi, 8080, "raw_buffer")}}); !slices.Equal(got, []string{BlackHoleCluster}) {
		t.Errorf("8080 plaintext → %q, want the black hole", got)
	}
	if find[*clusterv3.Cluster](res, resourcev3.ClusterType, BlackHoleCluster) == nil {
		t.Errorf("STRICT chains refer to %s, which the proxy lacks", BlackHoleCluster)
	}
	// 9090: port-level PERMISSIVE. Both chains reach the workload.
	if ctx := downstreamTLS(t, inboundChain(vi, 9090, "tls")); ctx == nil {
		t.Errorf("9090 has no mTLS chain")
	}
	if plain := inboundChain(vi, 9090, "raw_buffer"); plain == nil || plain.GetTransportSocket() != nil {
		t.Errorf("9090 plaintext chain: %v", plain)
	}
	// Other ports: the workload's mode, STRICT.
	if got := tcpClusters(t, &listenerv3.Listener{FilterChains: []*listenerv3.FilterChain{inboundChain(vi, 0, "raw_buffer")}}); !slices.Equal(got, []string{BlackHoleCluster}) {
		t.Errorf("passthrough plaintext → %q", got)
	}

	// legacy: DISABLE. One plaintext chain per port, no TLS inspector.
	res = mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "legacy", "legacy-0"))
	vi = find[*listenerv3.Listener](res, resourcev3.ListenerType, VirtualInboundListener)
	for _, fc := range vi.GetFilterChains() {
		if fc.GetTransportSocket() != nil || fc.GetFilterChainMatch().GetTransportProtocol() != "" {
			t.Errorf("DISABLE chain %q: %v", fc.GetName(), fc)
		}
	}
	for _, lf := range vi.GetListenerFilters() {
		if lf.GetName() == "envoy.filters.listener.tls_inspector" {
			t.Errorf("DISABLE listener inspects TLS")
		}
	}
}

func TestAutomaticMTLSClusters(t *testing.T) {
	w := mtlsWorld()
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))

	// web: both endpoints meshed → mTLS to endpoints with the label, SANs
	// of both service accounts; the endpoints carry the match metadata.
	web := find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|80||web.shop.svc.cluster.local")
	if len(web.GetTransportSocketMatches()) != 2 || web.GetTransportSocket() != nil {
		t.Fatalf("web cluster: %v", web)
	}
	ctx := new(tlsv3.UpstreamTlsContext)
	if err := web.GetTransportSocketMatches()[0].GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
		t.Fatal(err)
	}
	var sans []string
	for _, m := range ctx.GetCommonTlsContext().GetCombinedValidationContext().GetDefaultValidationContext().GetMatchTypedSubjectAltNames() {
		sans = append(sans, m.GetMatcher().GetExact())
	}
	if want := []string{"spiffe://cluster.local/ns/shop/sa/web", "spiffe://cluster.local/ns/shop/sa/web-canary"}; !slices.Equal(sans, want) {
		t.Errorf("web SANs %q, want %q", sans, want)
	}
	if ctx.GetSni() != "outbound_.80_._.web.shop.svc.cluster.local" {
		t.Errorf("web SNI %q", ctx.GetSni())
	}
	cla := find[*endpointv3.ClusterLoadAssignment](res, resourcev3.EndpointType, "outbound|80||web.shop.svc.cluster.local")
	for _, lb := range cla.GetEndpoints()[0].GetLbEndpoints() {
		if lb.GetMetadata().GetFilterMetadata()[transportSocketMatchKey].GetFields()["tlsMode"].GetStringValue() != model.TLSModeIstio {
			t.Errorf("web endpoint %v lacks the tlsMode match", lb.GetEndpoint().GetAddress())
		}
	}

	// legacy: its namespace says DISABLE → no automatic mTLS.
	legacy := find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|80||legacy.legacy.svc.cluster.local")
	if legacy.GetTransportSocket() != nil || len(legacy.GetTransportSocketMatches()) > 0 {
		t.Errorf("legacy cluster originates TLS: %v", legacy)
	}
	// api: ISTIO_MUTUAL from the rule, with the rule's SANs.
	api := clusterUpstreamTLS(t, find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|80||api.shop.svc.cluster.local"))
	if api == nil || api.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs()[0].GetName() != SecretWorkloadCert {
		t.Fatalf("api cluster: %v", api)
	}
	// db: the rule's DISABLE wins over automatic mTLS.
	db := find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|5432||db.data.svc.cluster.local")
	if db.GetTransportSocket() != nil || len(db.GetTransportSocketMatches()) > 0 {
		t.Errorf("db cluster originates TLS: %v", db)
	}
}

func TestProxylessMTLS(t *testing.T) {
	w := mtlsWorld()
	client := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "client-0"))

	// web: every endpoint meshed → the cluster's one transport socket is
	// mesh TLS through the bootstrap's certificate provider.
	ctx := clusterUpstreamTLS(t, find[*clusterv3.Cluster](client, resourcev3.ClusterType, "outbound|9090||web.shop.svc.cluster.local"))
	if ctx == nil {
		t.Fatal("web: no TLS for proxyless client")
	}
	common := ctx.GetCommonTlsContext()
	if common.GetTlsCertificateProviderInstance().GetInstanceName() != CertProviderInstance ||
		common.GetValidationContext().GetCaCertificateProviderInstance().GetCertificateName() != SecretRootCA ||
		len(common.GetValidationContext().GetMatchSubjectAltNames()) != 2 {
		t.Errorf("web TLS for grpc-go: %v", common)
	}
	// greeter: one endpoint without a proxy → plaintext (one transport
	// socket for all endpoints).
	if ctx := clusterUpstreamTLS(t, find[*clusterv3.Cluster](client, resourcev3.ClusterType, "outbound|50051||greeter.shop.svc.cluster.local")); ctx != nil {
		t.Errorf("greeter: mTLS to an endpoint without a proxy")
	}

	// greeter-0 serves PERMISSIVE: mTLS from mesh workloads' addresses,
	// plaintext from anyone else (grpc-go cannot sniff TLS).
	server := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0"))
	l := find[*listenerv3.Listener](server, resourcev3.ListenerType, GRPCServerListenerName(greeterIP, 50051))
	if len(l.GetFilterChains()) != 2 {
		t.Fatalf("PERMISSIVE server chains: %v", l.GetFilterChains())
	}
	var sources []string
	for _, r := range l.GetFilterChains()[0].GetFilterChainMatch().GetSourcePrefixRanges() {
		sources = append(sources, r.GetAddressPrefix())
	}
	if want := []string{"10.1.0.1", clientIP, "10.1.0.2", greeterIP, "10.1.3.1"}; !slices.Equal(sources, want) {
		t.Errorf("mTLS sources %q, want the meshed workloads %q", sources, want)
	}
	if downstreamTLS(t, l.GetFilterChains()[0]) == nil || l.GetFilterChains()[1].GetTransportSocket() != nil {
		t.Errorf("PERMISSIVE chains: %v", l.GetFilterChains())
	}

	// web-0 as a proxyless server: 9090 PERMISSIVE by port, others STRICT.
	web := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "web-0"))
	strict := find[*listenerv3.Listener](web, resourcev3.ListenerType, GRPCServerListenerName(webIP, 8080))
	if len(strict.GetFilterChains()) != 1 || !downstreamTLS(t, strict.GetFilterChains()[0]).GetRequireClientCertificate().GetValue() {
		t.Errorf("STRICT server: %v", strict.GetFilterChains())
	}
}

// An endpoint change that alters a Service's mesh mTLS facts (a pod gains
// the proxy label) changes its clusters: the endpoint-only push must
// decline it, so the server rebuilds.
func TestEndpointPushDeclinesMTLSChanges(t *testing.T) {
	w := mtlsWorld()
	greeter := serviceNamed(w, "greeter")
	c := NewCache()
	if _, ok := c.LoadAssignments(w, greeter, greeter); !ok {
		t.Fatal("unchanged Service declined")
	}
	moved := *greeter
	moved.Endpoints = slices.Clone(greeter.Endpoints)
	ep := *moved.Endpoints[1]
	ep.Ready = false
	moved.Endpoints[1] = &ep
	if _, ok := c.LoadAssignments(w, greeter, &moved); !ok {
		t.Error("a readiness change was declined")
	}
	ep2 := ep
	ep2.Labels = meshLabels
	moved.Endpoints[1] = &ep2
	if _, ok := c.LoadAssignments(w, greeter, &moved); ok {
		t.Error("an endpoint gaining the mesh proxy label was pushed as endpoints only")
	}
}

// The authorization filters reach the inbound HTTP chains of sidecars
// (before the router) and the listeners of proxyless servers; TCP chains get
// the network filter.
func TestInboundChainsCarryAuthorization(t *testing.T) {
	w := mtlsWorld()
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "web-0"))
	vi := find[*listenerv3.Listener](res, resourcev3.ListenerType, VirtualInboundListener)
	for _, transport := range []string{"tls", "raw_buffer"} {
		fc := inboundChain(vi, 9090, transport)
		hcm := new(hcmv3.HttpConnectionManager)
		if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, f := range hcm.GetHttpFilters() {
			names = append(names, f.GetName())
		}
		if len(names) < 2 || names[len(names)-1] != "envoy.filters.http.router" || !slices.Contains(names, "istio.authorization.deny") {
			t.Errorf("9090/%s HTTP filters %q: want the DENY policy before the router", transport, names)
		}
	}

	server := mustGenerate(t, w, fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0"))
	l := find[*listenerv3.Listener](server, resourcev3.ListenerType, GRPCServerListenerName(greeterIP, 50051))
	for _, fc := range l.GetFilterChains() {
		hcm := new(hcmv3.HttpConnectionManager)
		if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
			t.Fatal(err)
		}
		if fs := hcm.GetHttpFilters(); len(fs) != 2 || fs[0].GetName() != "istio.authorization.allow" {
			t.Errorf("greeter chain %q filters %v: want the ALLOW policy before the router", fc.GetName(), fs)
		}
	}
}
