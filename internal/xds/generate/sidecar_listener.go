package generate

import (
	"fmt"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshplane/meshplane/internal/model"
)

// virtualOutboundListener takes every connection iptables redirects to
// OutboundCapturePort and, with use_original_dst, hands it to the listener of
// its original destination port; connections no listener claims go to
// fallback (PassthroughCluster or BlackHoleCluster).
func virtualOutboundListener(wildcard, fallback string) (*listenerv3.Listener, error) {
	fc, err := tcpChain(fallback, fallback, nil)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:             VirtualOutboundListener,
		Address:          socketAddress(wildcard, OutboundCapturePort),
		UseOriginalDst:   trueValue,
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{fc},
	}, nil
}

// sidecarOutboundListener is the listener for one outbound port
// ("0.0.0.0_<port>", not bound: it receives connections from the virtual
// outbound listener). TCP services are matched by destination IP: the cluster
// IP, or for a headless service its endpoint addresses (an address two
// services share goes to the first by hostname: Envoy rejects two chains with
// the same match). Everything else goes, when HTTP services use the port, to
// an HttpConnectionManager with RDS route configuration "<port>", else to
// fallback.
//
// A TCP Service covered by a VirtualService with TCP routes (routes) goes
// where the first applicable route sends it.
func sidecarOutboundListener(op outboundPort, wildcard, fallback string, routes tcpRoutes) (*listenerv3.Listener, error) {
	chains := make([]*listenerv3.FilterChain, 0, len(op.TCP)+1)
	inspectTLS := false
	seen := make(map[string]bool, len(op.TCP)) // prefixes already matched
	for _, svc := range op.TCP {
		var ranges []*corev3.CidrRange
		addr := func(ip string) {
			r := hostCIDR(ip)
			if r == nil || seen[r.AddressPrefix] {
				return
			}
			seen[r.AddressPrefix] = true
			ranges = append(ranges, r)
		}
		if svc.ClusterIP != "" {
			addr(svc.ClusterIP)
		} else {
			for _, ep := range svc.Endpoints {
				addr(ep.Address)
			}
		}
		cluster := OutboundClusterName(op.Port, "", svc.Hostname)
		match := &listenerv3.FilterChainMatch{PrefixRanges: ranges}
		if len(ranges) == 0 {
			// No address to match (a ServiceEntry host without addresses):
			// TLS carries the name the client asked for.
			if !speaksTLS(svc, op.Port) || svc.Hostname == "" {
				continue
			}
			match = &listenerv3.FilterChainMatch{ServerNames: []string{svc.Hostname}}
			inspectTLS = true
		}
		tlsChains, err := routes.tlsChains(svc, op.Port, match)
		if err != nil {
			return nil, err
		}
		if len(tlsChains) > 0 {
			// By SNI first; other connections to the Service fall through to
			// its default chain below.
			chains = append(chains, tlsChains...)
			inspectTLS = true
			if len(ranges) == 0 && slices.ContainsFunc(tlsChains, func(fc *listenerv3.FilterChain) bool {
				return slices.Contains(fc.GetFilterChainMatch().GetServerNames(), svc.Hostname)
			}) {
				continue // a route took the Service's own name: no default chain
			}
		}
		if f, err := routes.filter(svc, op.Port, cluster); err != nil {
			return nil, err
		} else if f != nil {
			chains = append(chains, &listenerv3.FilterChain{Name: cluster, FilterChainMatch: match, Filters: []*listenerv3.Filter{f}})
			continue
		}
		fc, err := tcpChain(cluster, cluster, match)
		if err != nil {
			return nil, err
		}
		chains = append(chains, fc)
	}
	if len(op.HTTP) > 0 {
		f, err := hcmFilter(rdsHCM(OutboundListenerName(op.Port), SidecarRouteName(op.Port), envoyOutboundFilters))
		if err != nil {
			return nil, err
		}
		chains = append(chains, &listenerv3.FilterChain{Name: "http", Filters: []*listenerv3.Filter{f}})
	} else {
		fc, err := tcpChain(fallback, fallback, nil)
		if err != nil {
			return nil, err
		}
		chains = append(chains, fc)
	}
	l := &listenerv3.Listener{
		Name:             OutboundListenerName(op.Port),
		Address:          socketAddress(wildcard, op.Port),
		BindToPort:       falseValue,
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     chains,
	}
	if inspectTLS {
		l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspectorFilter}
	}
	return l, nil
}

// speaksTLS reports whether svc's port carries TLS from the client.
func speaksTLS(svc *model.Service, port int32) bool {
	for _, sp := range svc.Ports {
		if sp.Port == port {
			return sp.Protocol == model.ProtocolTLS || sp.Protocol == model.ProtocolHTTPS
		}
	}
	return false
}

// virtualInboundListener takes every connection iptables redirects to
// InboundCapturePort. The original_dst listener filter restores the original
// destination, so a filter chain per workload port (matched on destination
// port) sends it to inbound|<port>||: HTTP ports through an
// HttpConnectionManager, the others through a TCP proxy. Connections to
// other ports pass through to the workload unchanged.
func virtualInboundListener(wildcard string, ports []workloadPort, passthrough model.MTLSMode, sec inboundSecurity) (*listenerv3.Listener, error) {
	chains := make([]*listenerv3.FilterChain, 0, 2*len(ports)+2)
	for _, wp := range ports {
		cluster := InboundClusterName(wp.Port)
		var filters []*listenerv3.Filter
		if wp.Protocol.IsHTTP() {
			rc := &routev3.RouteConfiguration{
				Name: cluster,
				VirtualHosts: []*routev3.VirtualHost{{
					Name:    "inbound|http|" + itoa(wp.Port),
					Domains: []string{"*"},
					Routes:  []*routev3.Route{routeTo(cluster)},
				}},
			}
			authz, err := sec.httpFilters(uint32(wp.Port))
			if err != nil {
				return nil, err
			}
			hcm := inlineHCM("inbound_0.0.0.0_"+itoa(wp.Port), rc)
			hcm.HttpFilters = append(authz, routerFilter)
			// Paths are matched by authorization rules: /a/../admin must
			// be seen as /admin.
			hcm.NormalizePath = trueValue
			f, err := hcmFilter(hcm)
			if err != nil {
				return nil, err
			}
			filters = []*listenerv3.Filter{f}
		} else {
			authz, err := sec.networkFilters(uint32(wp.Port))
			if err != nil {
				return nil, err
			}
			f, err := tcpProxyFilter(cluster)
			if err != nil {
				return nil, err
			}
			filters = append(authz, f)
		}
		port := wrapperspb.UInt32(uint32(wp.Port))
		pc, err := inboundChains(cluster, port, wp.MTLS, filters)
		if err != nil {
			return nil, err
		}
		chains = append(chains, pc...)
	}
	authz, err := sec.networkFilters(0)
	if err != nil {
		return nil, err
	}
	f, err := tcpProxyFilter(InboundPassthroughCluster)
	if err != nil {
		return nil, err
	}
	pc, err := inboundChains(InboundPassthroughCluster, nil, passthrough, append(authz, f))
	if err != nil {
		return nil, err
	}
	chains = append(chains, pc...)
	listenerFilters := []*listenerv3.ListenerFilter{originalDstFilter}
	if slices.ContainsFunc(ports, func(wp workloadPort) bool { return wp.MTLS != model.MTLSDisable }) ||
		passthrough != model.MTLSDisable {
		listenerFilters = append(listenerFilters, tlsInspectorFilter)
	}
	return &listenerv3.Listener{
		Name:             VirtualInboundListener,
		Address:          socketAddress(wildcard, InboundCapturePort),
		ListenerFilters:  listenerFilters,
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains:     chains,
	}, nil
}

// inboundChains are the filter chains of one inbound port (nil: any other
// port), by its PeerAuthentication mode: DISABLE takes every connection in
// plaintext; PERMISSIVE terminates mesh mTLS when the client speaks TLS
// (the TLS inspector tells) and takes plaintext otherwise; STRICT terminates
// mesh mTLS and refuses plaintext (sent to the black hole, so it never
// reaches the workload). filters end with the chain's terminal filter.
//
// The TLS chain requires a client certificate of the mesh CA; TLS the
// application itself speaks to the port is refused unless the port is
// DISABLE (portLevelMtls), since Meshplane tells mesh mTLS by transport
// only, not by Istio's ALPN markers.
func inboundChains(name string, port *wrapperspb.UInt32Value, mode model.MTLSMode, filters []*listenerv3.Filter) ([]*listenerv3.FilterChain, error) {
	if mode == model.MTLSDisable {
		var match *listenerv3.FilterChainMatch
		if port != nil {
			match = &listenerv3.FilterChainMatch{DestinationPort: port}
		}
		return []*listenerv3.FilterChain{{Name: name, FilterChainMatch: match, Filters: filters}}, nil
	}
	tlsChain := &listenerv3.FilterChain{
		Name:             name + "-mtls",
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: port, TransportProtocol: "tls"},
		Filters:          filters,
		TransportSocket:  meshDownstreamTLS(false),
	}
	plain := &listenerv3.FilterChain{
		Name:             name,
		FilterChainMatch: &listenerv3.FilterChainMatch{DestinationPort: port, TransportProtocol: "raw_buffer"},
		Filters:          filters,
	}
	if mode == model.MTLSStrict {
		refuse, err := tcpProxyFilter(BlackHoleCluster)
		if err != nil {
			return nil, err
		}
		plain.Name = name + "-plaintext-refused"
		plain.Filters = []*listenerv3.Filter{refuse}
	}
	return []*listenerv3.FilterChain{tlsChain, plain}, nil
}

// inboundSecurity builds the authorization (and request authentication)
// filters of one proxy's inbound chains: the policies that apply to its
// workload (istio_authz.go) in the proxy's view of the world.
type inboundSecurity struct {
	world *model.World
	ns    string
	wl    *model.Workload
	grpc  bool
}

func inboundSecurityFor(world *model.World, proxy *model.Proxy) inboundSecurity {
	return inboundSecurity{world: world, ns: proxyNamespace(proxy), wl: proxy.Workload, grpc: proxy.Type == model.ProxyGRPC}
}

// applies reports whether any authorization or request authentication may
// shape the filters (else they are empty for every proxy).
func (s inboundSecurity) applies() bool {
	return len(s.world.Config.AuthorizationPolicies) > 0 || len(s.world.Config.RequestAuthentications) > 0
}

// key identifies what the filters depend on beyond the world: the proxy's
// namespace and labels.
func (s inboundSecurity) key() string {
	if !s.applies() {
		return ""
	}
	var labels map[string]string
	if s.wl != nil {
		labels = s.wl.Labels
	}
	return s.ns + "\x00" + labelsKey(labels)
}

func (s inboundSecurity) httpFilters(port uint32) ([]*hcmv3.HttpFilter, error) {
	if !s.applies() {
		return nil, nil
	}
	if s.grpc {
		return grpcServerSecurityHTTPFilters(s.world, s.ns, s.wl, port)
	}
	return inboundSecurityHTTPFilters(s.world, s.ns, s.wl, port)
}

func (s inboundSecurity) networkFilters(port uint32) ([]*listenerv3.Filter, error) {
	if !s.applies() {
		return nil, nil
	}
	return inboundSecurityNetworkFilters(s.world, s.ns, s.wl, port)
}

// refusesPlaintext reports whether some inbound chain is STRICT (its
// plaintext goes to BlackHoleCluster).
func refusesPlaintext(ports []workloadPort, passthrough model.MTLSMode) bool {
	return passthrough == model.MTLSStrict ||
		slices.ContainsFunc(ports, func(wp workloadPort) bool { return wp.MTLS == model.MTLSStrict })
}

// inboundModes sets the PeerAuthentication mode of each of the proxy's
// workload ports and returns the mode of its other ports.
func inboundModes(world *model.World, proxy *model.Proxy, ports []workloadPort) ([]workloadPort, model.MTLSMode) {
	if !world.UsesPeerAuthentication() {
		return ports, model.MTLSPermissive
	}
	ns := proxyNamespace(proxy)
	var labels map[string]string
	if proxy.Workload != nil {
		labels = proxy.Workload.Labels
	}
	out := slices.Clone(ports)
	for i := range out {
		out[i].MTLS = world.PeerAuthenticationMode(ns, labels, uint32(out[i].Port))
	}
	return out, world.PeerAuthenticationMode(ns, labels, 0)
}

// wildcardFor is the any-address of the proxy's IP family.
func wildcardFor(ip string) string {
	if isIPv6(ip) {
		return "::"
	}
	return "0.0.0.0"
}

// tcpRoutes are the mesh VirtualServices' TCP routes as a client namespace
// sees them; the zero value has none.
type tcpRoutes struct {
	world *model.World
	ns    string
}

// tlsChains are the filter chains of the TLS routes covering svc on port:
// each match's SNI hosts (within the Service's own chain match) proxied to
// the route's destinations.
func (r tcpRoutes) tlsChains(svc *model.Service, port int32, base *listenerv3.FilterChainMatch) ([]*listenerv3.FilterChain, error) {
	if r.world == nil {
		return nil, nil
	}
	vs := virtualServiceFor(r.world, svc, r.ns)
	if vs == nil {
		return nil, nil
	}
	var out []*listenerv3.FilterChain
	for i, tr := range vs.Spec.GetTls() {
		for j, m := range tr.GetMatch() {
			if !r.l4Applies(m.GetPort(), m.GetGateways(), m.GetSourceNamespace(), m.GetSourceLabels(), vs.Namespace, port) || len(m.GetSniHosts()) == 0 {
				continue
			}
			name := fmt.Sprintf("%s/%s.tls[%d].match[%d]", vs.Namespace, vs.Name, i, j)
			f, err := tcpRouteFilter(r.world, vs, tr.GetRoute(), port, r.ns, name)
			if err != nil {
				return nil, err
			}
			if f == nil {
				continue
			}
			match := &listenerv3.FilterChainMatch{PrefixRanges: base.GetPrefixRanges(), ServerNames: slices.Sorted(slices.Values(m.GetSniHosts()))}
			out = append(out, &listenerv3.FilterChain{Name: name, FilterChainMatch: match, Filters: []*listenerv3.Filter{f}})
		}
	}
	return out, nil
}

// filter is the tcp_proxy the first TCP route covering svc on port sends
// to, or nil (the default: svc's own cluster).
func (r tcpRoutes) filter(svc *model.Service, port int32, stat string) (*listenerv3.Filter, error) {
	if r.world == nil {
		return nil, nil
	}
	vs := virtualServiceFor(r.world, svc, r.ns)
	if vs == nil {
		return nil, nil
	}
	for _, tr := range vs.Spec.GetTcp() {
		applies := len(tr.GetMatch()) == 0
		for _, m := range tr.GetMatch() {
			if r.l4Applies(m.GetPort(), m.GetGateways(), m.GetSourceNamespace(), m.GetSourceLabels(), vs.Namespace, port) {
				applies = true
			}
		}
		if applies {
			return tcpRouteFilter(r.world, vs, tr.GetRoute(), port, r.ns, stat)
		}
	}
	return nil, nil
}

// l4Applies reports whether a TCP or TLS match applies to this namespace's
// sidecars on port: its port (none: any), gateways (the mesh), source
// namespace; source labels are not matched on shared listeners, so such a
// match never applies.
func (r tcpRoutes) l4Applies(matchPort uint32, gateways []string, sourceNS string, sourceLabels map[string]string, vsNamespace string, port int32) bool {
	return (matchPort == 0 || int32(matchPort) == port) && routeClient{namespace: r.ns}.boundTo(gateways, vsNamespace) &&
		(sourceNS == "" || sourceNS == r.ns) && len(sourceLabels) == 0
}
