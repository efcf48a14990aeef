package generate

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

func sidecarOf(t *testing.T, allowAny bool) xds.Resources {
	t.Helper()
	w := fixtureWorld(allowAny)
	return mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "web-0"))
}

func TestSidecarOutboundTrafficPolicy(t *testing.T) {
	for _, tc := range []struct {
		allowAny     bool
		fallback     string
		absent       string
		catchAllName string
	}{
		{true, PassthroughCluster, BlackHoleCluster, "allow_any"},
		{false, BlackHoleCluster, PassthroughCluster, "block_all"},
	} {
		res := sidecarOf(t, tc.allowAny)
		c := find[*clusterv3.Cluster](res, resourcev3.ClusterType, tc.fallback)
		if c == nil {
			t.Fatalf("allowAny=%v: no %s", tc.allowAny, tc.fallback)
		}
		if find[*clusterv3.Cluster](res, resourcev3.ClusterType, tc.absent) != nil {
			t.Errorf("allowAny=%v: unexpected %s", tc.allowAny, tc.absent)
		}
		switch tc.fallback {
		case PassthroughCluster:
			if c.GetType() != clusterv3.Cluster_ORIGINAL_DST || c.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
				t.Errorf("PassthroughCluster is not ORIGINAL_DST/CLUSTER_PROVIDED: %v", c)
			}
		case BlackHoleCluster:
			if c.GetType() != clusterv3.Cluster_STATIC || len(c.GetLoadAssignment().GetEndpoints()) != 0 {
				t.Errorf("BlackHoleCluster is not STATIC without endpoints: %v", c)
			}
		}

		vo := find[*listenerv3.Listener](res, resourcev3.ListenerType, VirtualOutboundListener)
		if vo == nil {
			t.Fatal("no virtualOutbound")
		}
		if sa := vo.GetAddress().GetSocketAddress(); sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != OutboundCapturePort {
			t.Errorf("virtualOutbound on %v", sa)
		}
		if !vo.GetUseOriginalDst().GetValue() {
			t.Error("virtualOutbound lacks use_original_dst")
		}
		if got := tcpClusters(t, vo); !slices.Equal(got, []string{tc.fallback}) {
			t.Errorf("allowAny=%v: virtualOutbound → %q, want %s", tc.allowAny, got, tc.fallback)
		}
		// A TCP-only port falls back to the same cluster for unknown IPs.
		db := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_5432")
		if got := tcpClusters(t, db); !slices.Equal(got, []string{"outbound|5432||db.data.svc.cluster.local", tc.fallback}) {
			t.Errorf("allowAny=%v: 0.0.0.0_5432 → %q", tc.allowAny, got)
		}
		// Unknown Host headers on an HTTP port.
		rc := find[*routev3.RouteConfiguration](res, resourcev3.RouteType, "80")
		last := rc.GetVirtualHosts()[len(rc.GetVirtualHosts())-1]
		if last.GetName() != tc.catchAllName || !slices.Equal(last.GetDomains(), []string{"*"}) {
			t.Errorf("allowAny=%v: catch-all virtual host %q %q", tc.allowAny, last.GetName(), last.GetDomains())
		}
		if tc.allowAny && last.GetRoutes()[0].GetRoute().GetCluster() != PassthroughCluster {
			t.Error("allow_any does not route to PassthroughCluster")
		}
		if !tc.allowAny && last.GetRoutes()[0].GetDirectResponse().GetStatus() != 502 {
			t.Error("block_all does not answer 502")
		}
	}
}

func TestSidecarOutboundListeners(t *testing.T) {
	res := sidecarOf(t, true)
	var names []string
	for _, r := range res[resourcev3.ListenerType] {
		l := r.(*listenerv3.Listener)
		names = append(names, l.GetName())
		if l.GetName() == VirtualOutboundListener || l.GetName() == VirtualInboundListener {
			continue
		}
		if l.GetBindToPort() == nil || l.GetBindToPort().GetValue() {
			t.Errorf("%s: bind_to_port is not false", l.GetName())
		}
	}
	want := []string{"0.0.0.0_443", "0.0.0.0_50051", "0.0.0.0_5432", "0.0.0.0_6379", "0.0.0.0_80", "0.0.0.0_8081", "0.0.0.0_9090", VirtualInboundListener, VirtualOutboundListener}
	if !slices.Equal(names, want) {
		t.Errorf("listeners %q, want %q (sorted; no 15021: reserved)", names, want)
	}

	// HTTP ports use RDS named by the port.
	l := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_80")
	hcm := new(hcmv3.HttpConnectionManager)
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if hcm.GetRds().GetRouteConfigName() != "80" || hcm.GetRds().GetConfigSource().GetAds() == nil {
		t.Errorf("0.0.0.0_80: RDS %v", hcm.GetRds())
	}

	// TCP services are matched by cluster IP, headless ones by endpoint IPs.
	db := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_5432")
	if got := prefixes(db.GetFilterChains()[0]); !slices.Equal(got, []string{"10.96.0.20/32"}) {
		t.Errorf("db chain matches %q", got)
	}
	cache := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_6379")
	if got := prefixes(cache.GetFilterChains()[0]); !slices.Equal(got, []string{"10.1.1.5/32", "10.1.1.6/32"}) {
		t.Errorf("headless cache chain matches %q", got)
	}
}

func TestSidecarRouteDomains(t *testing.T) {
	res := sidecarOf(t, true)
	rc := find[*routev3.RouteConfiguration](res, resourcev3.RouteType, "80")
	vh := findVirtualHost(rc, "web.shop.svc.cluster.local:80")
	if vh == nil {
		t.Fatalf("no virtual host for web:80 in %v", rc)
	}
	want := []string{
		"web.shop.svc.cluster.local", "web.shop.svc.cluster.local:80",
		"web.shop.svc", "web.shop.svc:80",
		"web.shop", "web.shop:80",
		"web", "web:80",
		"10.96.0.10", "10.96.0.10:80",
	}
	if !slices.Equal(vh.GetDomains(), want) {
		t.Errorf("domains %q, want %q", vh.GetDomains(), want)
	}
	if c := vh.GetRoutes()[0].GetRoute().GetCluster(); c != "outbound|80||web.shop.svc.cluster.local" {
		t.Errorf("routes to %q", c)
	}
	if vh.GetRoutes()[0].GetRoute().GetTimeout().AsDuration() != 0 {
		t.Error("route keeps Envoy's default 15s timeout; long gRPC streams would be cut")
	}
	// No short name for a service of another namespace.
	ing := findVirtualHost(rc, "ingress.mesh-gateways.svc.cluster.local:80")
	if slices.Contains(ing.GetDomains(), "ingress") {
		t.Errorf("short name of a service in another namespace: %q", ing.GetDomains())
	}
	// Only HTTP ports have route configurations.
	if got := resourceNames(res[resourcev3.RouteType]); !slices.Equal(got, []string{"50051", "80", "8081", "9090"}) {
		t.Errorf("routes %q", got)
	}
}

func TestSidecarRouteDuplicateDomains(t *testing.T) {
	// Two services claiming the same cluster IP (a stale world): the domain
	// stays with the first, Envoy would reject the duplicate.
	a := &model.Service{Name: "a", Namespace: "ns", Hostname: "a.ns.svc.cluster.local", ClusterIP: "10.0.0.1",
		Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}}}
	b := &model.Service{Name: "b", Namespace: "ns", Hostname: "b.ns.svc.cluster.local", ClusterIP: "10.0.0.1",
		Ports: []model.ServicePort{{Name: "http", Port: 80, Protocol: model.ProtocolHTTP}}}
	w := model.NewWorld(model.MeshConfig{OutboundAllowAny: true}, []*model.Service{a, b}, nil)
	res := mustGenerate(t, w, &model.Proxy{ID: "p", Type: model.ProxySidecar, Namespace: "ns", IP: "10.1.0.1"})
	rc := find[*routev3.RouteConfiguration](res, resourcev3.RouteType, "80")
	seen := map[string]string{}
	for _, vh := range rc.GetVirtualHosts() {
		for _, d := range vh.GetDomains() {
			if other, dup := seen[d]; dup {
				t.Errorf("domain %q in %s and %s", d, other, vh.GetName())
			}
			seen[d] = vh.GetName()
		}
	}
	if seen["10.0.0.1"] != "a.ns.svc.cluster.local:80" {
		t.Errorf("10.0.0.1 went to %q", seen["10.0.0.1"])
	}
	if err := Validate(res); err != nil {
		t.Error(err)
	}
}

func TestSidecarClusters(t *testing.T) {
	res := sidecarOf(t, true)
	web80 := find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|80||web.shop.svc.cluster.local")
	if web80.GetType() != clusterv3.Cluster_EDS || web80.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		t.Errorf("web:80 is not EDS over ADS: %v", web80)
	}
	if web80.GetTypedExtensionProtocolOptions() != nil {
		t.Error("HTTP/1 cluster has protocol options")
	}
	web9090 := find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|9090||web.shop.svc.cluster.local")
	checkHTTP2(t, web9090)

	// Headless: ORIGINAL_DST, and no endpoints resource.
	cache := find[*clusterv3.Cluster](res, resourcev3.ClusterType, "outbound|6379||cache.data.svc.cluster.local")
	if cache.GetType() != clusterv3.Cluster_ORIGINAL_DST || cache.GetLbPolicy() != clusterv3.Cluster_CLUSTER_PROVIDED {
		t.Errorf("headless cluster: %v", cache)
	}
	if find[*endpointv3.ClusterLoadAssignment](res, resourcev3.EndpointType, cache.GetName()) != nil {
		t.Error("headless cluster has an endpoints resource")
	}
	// Every EDS cluster has endpoints and go-control-plane finds the snapshot
	// consistent.
	snap, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource(res))
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("go-control-plane Consistent: %v", err)
	}
}

func TestSidecarInbound(t *testing.T) {
	res := sidecarOf(t, true)
	vi := find[*listenerv3.Listener](res, resourcev3.ListenerType, VirtualInboundListener)
	if sa := vi.GetAddress().GetSocketAddress(); sa.GetAddress() != "0.0.0.0" || sa.GetPortValue() != InboundCapturePort {
		t.Errorf("virtualInbound on %v", sa)
	}
	// PERMISSIVE (no PeerAuthentication): the TLS inspector tells mesh mTLS
	// from plaintext (mtls_test.go covers the modes).
	if len(vi.GetListenerFilters()) != 2 || vi.GetListenerFilters()[0].GetName() != "envoy.filters.listener.original_dst" ||
		vi.GetListenerFilters()[1].GetName() != "envoy.filters.listener.tls_inspector" {
		t.Errorf("virtualInbound listener filters %v", vi.GetListenerFilters())
	}
	// web-0 serves 8080 (http-web) and 9090 (grpc-api).
	var ports []uint32
	for _, fc := range vi.GetFilterChains() {
		if p := fc.GetFilterChainMatch().GetDestinationPort(); p != nil && fc.GetFilterChainMatch().GetTransportProtocol() == "raw_buffer" {
			ports = append(ports, p.GetValue())
			hcm := new(hcmv3.HttpConnectionManager)
			if err := fc.GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
				t.Fatalf("port %d: %v", p.GetValue(), err)
			}
			want := InboundClusterName(int32(p.GetValue()))
			if c := hcm.GetRouteConfig().GetVirtualHosts()[0].GetRoutes()[0].GetRoute().GetCluster(); c != want {
				t.Errorf("port %d → %q, want %q", p.GetValue(), c, want)
			}
		}
	}
	if !slices.Equal(ports, []uint32{8080, 9090}) {
		t.Errorf("inbound chains for ports %v, want [8080 9090]", ports)
	}
	for _, p := range []int32{8080, 9090} {
		c := find[*clusterv3.Cluster](res, resourcev3.ClusterType, InboundClusterName(p))
		if c == nil {
			t.Fatalf("no %s", InboundClusterName(p))
		}
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		if c.GetType() != clusterv3.Cluster_STATIC || sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != uint32(p) {
			t.Errorf("%s: %v", c.GetName(), c)
		}
	}
	checkHTTP2(t, find[*clusterv3.Cluster](res, resourcev3.ClusterType, InboundClusterName(9090)))

	// A TCP workload port gets a TCP proxy chain; a proxy whose IP no
	// endpoint has gets only the passthrough.
	w := fixtureWorld(true)
	db := mustGenerate(t, w, &model.Proxy{ID: "db-0.data", Type: model.ProxySidecar, Namespace: "data", IP: "10.1.1.1"})
	vi = find[*listenerv3.Listener](db, resourcev3.ListenerType, VirtualInboundListener)
	if got := tcpClusters(t, vi); !slices.Equal(got, []string{"inbound|5432||", "inbound|5432||", InboundPassthroughCluster, InboundPassthroughCluster}) {
		t.Errorf("db inbound → %q", got)
	}
	client := mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "client-0"))
	vi = find[*listenerv3.Listener](client, resourcev3.ListenerType, VirtualInboundListener)
	if got := tcpClusters(t, vi); !slices.Equal(got, []string{InboundPassthroughCluster, InboundPassthroughCluster}) {
		t.Errorf("client inbound → %q", got)
	}
}

func TestSidecarIPv6(t *testing.T) {
	svc := &model.Service{
		Name: "v6", Namespace: "ns", Hostname: "v6.ns.svc.cluster.local", ClusterIP: "fd00::10",
		Ports:     []model.ServicePort{{Name: "tcp", Port: 5000, Protocol: model.ProtocolTCP}, {Name: "http", Port: 80, Protocol: model.ProtocolHTTP}},
		Endpoints: []*model.Endpoint{{Address: "fd00::7", Ports: map[string]int32{"tcp": 5000, "http": 8080}, Ready: true}},
	}
	w := model.NewWorld(model.MeshConfig{}, []*model.Service{svc}, nil)
	res := mustGenerate(t, w, &model.Proxy{ID: "p", Type: model.ProxySidecar, Namespace: "ns", IP: "fd00::7"})
	if err := Validate(res); err != nil {
		t.Fatal(err)
	}
	l := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_5000")
	if got := prefixes(l.GetFilterChains()[0]); !slices.Equal(got, []string{"fd00::10/128"}) {
		t.Errorf("IPv6 cluster IP matched as %q", got)
	}
	if a := l.GetAddress().GetSocketAddress().GetAddress(); a != "::" {
		t.Errorf("IPv6 proxy listens on %q", a)
	}
	rc := find[*routev3.RouteConfiguration](res, resourcev3.RouteType, "80")
	if d := rc.GetVirtualHosts()[0].GetDomains(); !slices.Contains(d, "[fd00::10]:80") {
		t.Errorf("domains %q lack [fd00::10]:80", d)
	}
}

func TestGateway(t *testing.T) {
	w := fixtureWorld(true)
	res := mustGenerate(t, w, fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0"))
	// The ingress Service: http 80→8080 gets a listener on 8080; https
	// (no TLS routes yet) and the reserved status port 15021 do not.
	if got := resourceNames(res[resourcev3.ListenerType]); !slices.Equal(got, []string{"0.0.0.0_8080"}) {
		t.Fatalf("listeners %q", got)
	}
	l := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_8080")
	if l.GetBindToPort() != nil && !l.GetBindToPort().GetValue() {
		t.Error("gateway listener not bound")
	}
	hcm := new(hcmv3.HttpConnectionManager)
	if err := l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if hcm.GetRds().GetRouteConfigName() != "http.8080" {
		t.Errorf("RDS %q", hcm.GetRds().GetRouteConfigName())
	}
	rc := find[*routev3.RouteConfiguration](res, resourcev3.RouteType, "http.8080")
	if rc == nil || len(rc.GetVirtualHosts()) != 0 {
		t.Errorf("route http.8080: %v", rc)
	}
	if len(res[resourcev3.ClusterType]) == 0 {
		t.Error("gateway has no clusters")
	}
	snap, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource(res))
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Consistent(); err != nil {
		t.Errorf("go-control-plane Consistent: %v", err)
	}

	// A gateway no Service selects gets no listeners, and valid output.
	lone := mustGenerate(t, w, &model.Proxy{ID: "lone", Type: model.ProxyRouter, IP: "10.9.9.9"})
	if n := len(lone[resourcev3.ListenerType]); n != 0 {
		t.Errorf("lone gateway: %d listeners", n)
	}
}

// TestSharedResourcesIdentical: clusters and endpoints do not depend on the
// proxy, so any two Envoys get byte-identical ones (what lets a cache share them).
func TestSharedResourcesIdentical(t *testing.T) {
	w := fixtureWorld(true)
	a := mustGenerate(t, w, fixtureProxy(w, model.ProxySidecar, "shop", "web-0"))
	b := mustGenerate(t, w, fixtureProxy(w, model.ProxyRouter, "mesh-gateways", "ingress-0"))
	for _, typ := range []resourcev3.Type{resourcev3.ClusterType, resourcev3.EndpointType} {
		for _, r := range b[typ] {
			other := find[types.Resource](a, typ, ResourceName(r))
			if other == nil {
				t.Errorf("sidecar lacks %s", ResourceName(r))
				continue
			}
			if string(marshalOrFail(t, r)) != string(marshalOrFail(t, other)) {
				t.Errorf("%s differs between a sidecar and a gateway", ResourceName(r))
			}
		}
	}
}

func tcpClusters(t *testing.T, l *listenerv3.Listener) []string {
	t.Helper()
	var out []string
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			tp := new(tcpproxyv3.TcpProxy)
			if f.GetTypedConfig().MessageIs(tp) {
				if err := f.GetTypedConfig().UnmarshalTo(tp); err != nil {
					t.Fatal(err)
				}
				out = append(out, tp.GetCluster())
			}
		}
	}
	return out
}

func prefixes(fc *listenerv3.FilterChain) []string {
	var out []string
	for _, r := range fc.GetFilterChainMatch().GetPrefixRanges() {
		out = append(out, r.GetAddressPrefix()+"/"+itoa(int32(r.GetPrefixLen().GetValue())))
	}
	return out
}

func findVirtualHost(rc *routev3.RouteConfiguration, name string) *routev3.VirtualHost {
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == name {
			return vh
		}
	}
	return nil
}

func checkHTTP2(t *testing.T, c *clusterv3.Cluster) {
	t.Helper()
	a := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey]
	o := new(httpv3.HttpProtocolOptions)
	if a == nil || a.UnmarshalTo(o) != nil || o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
		t.Errorf("%s: no explicit HTTP/2 protocol options", c.GetName())
	}
}

func TestSidecarTCPChainsUnique(t *testing.T) {
	// Two TCP services on one port with the same VIP (a stale world), and a
	// headless one listing an address twice and sharing one with the first.
	mk := func(name, vip string, eps ...string) *model.Service {
		s := &model.Service{Name: name, Namespace: "ns", Hostname: name + ".ns.svc.cluster.local", ClusterIP: vip,
			Ports: []model.ServicePort{{Name: "tcp", Port: 9000, Protocol: model.ProtocolTCP}}}
		for _, ep := range eps {
			s.Endpoints = append(s.Endpoints, &model.Endpoint{Address: ep, Ports: map[string]int32{"tcp": 9000}, Ready: true})
		}
		return s
	}
	w := model.NewWorld(model.MeshConfig{}, []*model.Service{
		mk("a", "10.0.0.1"), mk("b", "10.0.0.1"), mk("h", "", "10.0.0.1", "10.1.0.1", "10.1.0.1"),
	}, nil)
	res := mustGenerate(t, w, &model.Proxy{ID: "p", Type: model.ProxySidecar, Namespace: "ns"})
	l := find[*listenerv3.Listener](res, resourcev3.ListenerType, "0.0.0.0_9000")
	var all []string
	for _, fc := range l.GetFilterChains() {
		all = append(all, prefixes(fc)...)
	}
	if !slices.Equal(all, []string{"10.0.0.1/32", "10.1.0.1/32"}) {
		t.Errorf("prefixes %q, want each once", all)
	}
	if err := Validate(res); err != nil {
		t.Error(err)
	}
}
