package generate

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/tls_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// A gateway proxy serves what the Gateways selecting its workload declare
// (model.World.GatewaysFor). Servers sharing a port number share one
// listener, on the port the gateway's Service sends that number to:
//
//   - HTTP servers: one plain filter chain whose routes ("http.<port>") are
//     the HTTP routes of the VirtualServices bound to the Gateway, a
//     virtual host per host they share with the server; httpsRedirect makes
//     the virtual host require TLS;
//   - HTTPS servers terminating TLS (SIMPLE, MUTUAL): a filter chain per
//     server matched by SNI (its hosts), with the certificate of its
//     credentialName (a TLS Secret in the gateway's namespace, sent over
//     SDS as "kubernetes://<name>"; MUTUAL also verifies clients against
//     the Secret's ca.crt, "kubernetes://<name>-cacert"), and routes
//     "https.<port>.<server index>";
//   - TLS PASSTHROUGH servers: a filter chain per VirtualService TLS route
//     matched by SNI, proxying the connection to its destination;
//   - TCP servers: the first matching VirtualService TCP route.
//
// What cannot be built (a Secret that does not exist, a destination that
// does not resolve) leaves that piece out; the rest is served.

// gatewayServer is one server of a Gateway.
type gatewayServer struct {
	gateway *model.Gateway
	index   int
	server  *networking.Server
}

func (g gatewayServer) ref() string { return g.gateway.Namespace + "/" + g.gateway.Name }

// istioGatewayResources is a gateway proxy's listeners, routes and secrets
// from the Gateways selecting it; ok false when none does (the caller then
// serves the gateway's own Service ports without routes).
func istioGatewayResources(world *model.World, proxy *model.Proxy, wildcard string) (listeners, routes, secrets []types.Resource, ok bool, err error) {
	if proxy.Workload == nil {
		return nil, nil, nil, false, nil
	}
	gateways := world.GatewaysFor(proxy.Workload.Labels)
	if len(gateways) == 0 {
		return nil, nil, nil, false, nil
	}
	ns := proxyNamespace(proxy)
	sec := inboundSecurityFor(world, proxy)
	byPort := map[int32][]gatewayServer{}
	for _, g := range gateways {
		for i, s := range g.Spec.GetServers() {
			if s.GetPort().GetNumber() == 0 {
				continue
			}
			byPort[int32(s.GetPort().GetNumber())] = append(byPort[int32(s.GetPort().GetNumber())], gatewayServer{g, i, s})
		}
	}
	seenSecrets := map[string]bool{}
	addSecret := func(name string, build func() types.Resource) {
		if seenSecrets[name] {
			return
		}
		if r := build(); r != nil {
			seenSecrets[name] = true
			secrets = append(secrets, r)
		}
	}
	for _, number := range slices.Sorted(maps.Keys(byPort)) {
		servers := byPort[number]
		target := gatewayTargetPort(world, proxyIP(proxy), number)
		// The gateway's workload is what AuthorizationPolicies and
		// RequestAuthentications select; its listening port is the
		// policies' port.
		httpAuthz, err := sec.httpFilters(uint32(target))
		if err != nil {
			return nil, nil, nil, false, err
		}
		tcpAuthz, err := sec.networkFilters(uint32(target))
		if err != nil {
			return nil, nil, nil, false, err
		}
		var chains []*listenerv3.FilterChain
		sniChains := false
		isHTTP := func(gs gatewayServer) bool {
			return model.ProtocolOf("", gs.server.GetPort().GetProtocol()).IsHTTP()
		}
		// Plain HTTP servers of a port share one chain and one route
		// configuration.
		if httpServers := slices.DeleteFunc(slices.Clone(servers), func(gs gatewayServer) bool { return !isHTTP(gs) }); len(httpServers) > 0 {
			rc := gatewayHTTPRoutes(world, GatewayRouteName(number), number, httpServers, ns)
			routes = append(routes, rc)
			f, err := hcmFilter(gatewayHCM(OutboundListenerName(target), rc.GetName(), httpAuthz))
			if err != nil {
				return nil, nil, nil, false, err
			}
			chains = append(chains, &listenerv3.FilterChain{Name: "http", Filters: []*listenerv3.Filter{f}})
		}
		for _, gs := range servers {
			protocol := model.ProtocolOf("", gs.server.GetPort().GetProtocol())
			tls := gs.server.GetTls()
			terminate := tls != nil && (tls.GetMode() == networking.ServerTLSSettings_SIMPLE || tls.GetMode() == networking.ServerTLSSettings_MUTUAL)
			switch {
			case isHTTP(gs):
				// in the shared chain above
			case terminate:
				cred := world.Credential(ns, tls.GetCredentialName())
				if cred == nil {
					continue // no certificate to serve: the server is left out
				}
				certName := "kubernetes://" + tls.GetCredentialName()
				addSecret(certName, func() types.Resource { return tlsCertificateSecret(certName, cred) })
				ctx := &tlsv3.DownstreamTlsContext{CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: certName, SdsConfig: adsSource}},
				}}
				if tls.GetMode() == networking.ServerTLSSettings_MUTUAL {
					if len(cred.CA) == 0 {
						continue
					}
					caName := certName + "-cacert"
					addSecret(caName, func() types.Resource { return validationSecret(caName, cred) })
					ctx.CommonTlsContext.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContextSdsSecretConfig{
						ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: caName, SdsConfig: adsSource},
					}
					ctx.RequireClientCertificate = wrapperspb.Bool(true)
				}
				ts, err := pack(ctx)
				if err != nil {
					return nil, nil, nil, false, err
				}
				chainName := fmt.Sprintf("https.%d.%d", number, len(chains))
				var f *listenerv3.Filter
				if protocol == model.ProtocolHTTPS {
					rc := gatewayHTTPRoutes(world, chainName, number, []gatewayServer{gs}, ns)
					routes = append(routes, rc)
					f, err = hcmFilter(gatewayHCM(OutboundListenerName(target), rc.GetName(), httpAuthz))
				} else {
					f, err = gatewayTCPFilter(world, gs, number, ns, chainName)
				}
				if err != nil {
					return nil, nil, nil, false, err
				}
				if f == nil {
					continue
				}
				sniChains = true
				filters := []*listenerv3.Filter{f}
				if protocol != model.ProtocolHTTPS {
					filters = append(slices.Clone(tcpAuthz), f)
				}
				chains = append(chains, &listenerv3.FilterChain{
					Name:             chainName,
					FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: serverNames(gs.server.GetHosts())},
					Filters:          filters,
					TransportSocket: &corev3.TransportSocket{
						Name:       wellknown.TransportSocketTLS,
						ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: ts},
					},
				})
			case tls != nil && tls.GetMode() == networking.ServerTLSSettings_PASSTHROUGH:
				pc, err := passthroughChains(world, gs, number, ns)
				if err != nil {
					return nil, nil, nil, false, err
				}
				sniChains = sniChains || len(pc) > 0
				for _, fc := range pc {
					fc.Filters = append(slices.Clone(tcpAuthz), fc.Filters...)
				}
				chains = append(chains, pc...)
			default: // TCP
				f, err := gatewayTCPFilter(world, gs, number, ns, fmt.Sprintf("tcp.%d", number))
				if err != nil {
					return nil, nil, nil, false, err
				}
				if f != nil {
					chains = append(chains, &listenerv3.FilterChain{Name: fmt.Sprintf("tcp.%d", number), Filters: append(slices.Clone(tcpAuthz), f)})
				}
			}
		}
		if len(chains) == 0 {
			continue
		}
		l := &listenerv3.Listener{
			Name:             OutboundListenerName(target),
			Address:          socketAddress(wildcard, target),
			TrafficDirection: corev3.TrafficDirection_OUTBOUND,
			FilterChains:     chains,
		}
		if sniChains {
			l.ListenerFilters = []*listenerv3.ListenerFilter{tlsInspectorFilter}
		}
		listeners = append(listeners, l)
	}
	sortByName(listeners)
	sortByName(routes)
	sortByName(secrets)
	return listeners, routes, secrets, true, nil
}

var tlsInspectorFilter = &listenerv3.ListenerFilter{
	Name:       wellknown.TlsInspector,
	ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustPack(&tlsinspectorv3.TlsInspector{})},
}

// gatewayHCM is a gateway's connection manager: the edge, so the client
// address is the connection's (use_remote_address). The authorization
// filters (request authentication, RBAC, ext_authz) run first, as in Istio:
// nothing reaches CORS, fault injection or the routes unless allowed; paths
// are normalized for their path rules.
func gatewayHCM(statPrefix, routeName string, authz []*hcmv3.HttpFilter) *hcmv3.HttpConnectionManager {
	hcm := rdsHCM(statPrefix, routeName, envoyOutboundFilters)
	hcm.UseRemoteAddress = trueValue
	if len(authz) > 0 {
		hcm.HttpFilters = append(slices.Clone(authz), envoyOutboundFilters...)
		hcm.NormalizePath = trueValue
	}
	return hcm
}

// gatewayTargetPort is the port Envoy listens on for a server's port
// number: the target port the gateway's Service maps it to (from the
// endpoint at the proxy's IP), else the number itself.
func gatewayTargetPort(world *model.World, ip string, number int32) int32 {
	for _, svc := range world.Services {
		for _, sp := range svc.Ports {
			if sp.Port != number {
				continue
			}
			for _, ep := range svc.Endpoints {
				if sameIP(ep.Address, ip) {
					if p, ok := ep.Ports[sp.Name]; ok && p > 0 {
						return p
					}
				}
			}
		}
	}
	return number
}

// serverHosts are a server's hosts without their namespace part.
func serverHosts(hosts []string) []string {
	out := make([]string, 0, len(hosts))
	for _, h := range hosts {
		if _, host, ok := strings.Cut(h, "/"); ok {
			h = host
		}
		out = append(out, h)
	}
	return out
}

// serverNames are the SNI names a server answers: its hosts, none for "*".
func serverNames(hosts []string) []string {
	var out []string
	for _, h := range serverHosts(hosts) {
		if h == "*" {
			return nil
		}
		out = append(out, h)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// gatewayHTTPRoutes builds route configuration name: a virtual host per
// host shared by a server and a VirtualService bound to its Gateway.
func gatewayHTTPRoutes(world *model.World, name string, port int32, servers []gatewayServer, ns string) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: name, ValidateClusters: falseValue}
	seen := map[string]bool{}
	for _, gs := range servers {
		client := routeClient{namespace: ns, gateway: gs.ref()}
		redirect := gs.server.GetTls().GetHttpsRedirect()
		for _, vs := range world.VirtualServicesFor(gs.ref(), ns) {
			for _, host := range gatewayHostsOf(vs, gs.server.GetHosts()) {
				if seen[host] {
					continue
				}
				routes := virtualServiceRoutes(world, vs, nil, port, client)
				if len(routes) == 0 {
					continue
				}
				seen[host] = true
				vh := &routev3.VirtualHost{
					Name:    host + ":" + itoa(port),
					Domains: []string{host, host + ":" + itoa(port)},
					Routes:  routes,
				}
				if redirect {
					vh.RequireTls = routev3.VirtualHost_ALL
				}
				rc.VirtualHosts = append(rc.VirtualHosts, vh)
			}
		}
	}
	slices.SortFunc(rc.VirtualHosts, func(a, b *routev3.VirtualHost) int { return strings.Compare(a.Name, b.Name) })
	return rc
}

// gatewayHostsOf are the VirtualService's hosts a server with serverHosts
// (maybe "ns/host", maybe wildcards) answers for.
func gatewayHostsOf(vs *model.VirtualService, hosts []string) []string {
	var out []string
	for _, h := range vs.Spec.GetHosts() {
		for _, sh := range hosts {
			nsPart, host, qualified := strings.Cut(sh, "/")
			if !qualified {
				host, nsPart = sh, "*"
			}
			if nsPart != "*" && nsPart != "." && nsPart != vs.Namespace {
				continue
			}
			if model.HostMatches(host, h) || model.HostMatches(h, host) {
				out = append(out, h)
				break
			}
		}
	}
	return out
}

// passthroughChains route TLS connections by SNI to the destinations of
// the VirtualServices' TLS routes bound to the server's Gateway.
func passthroughChains(world *model.World, gs gatewayServer, port int32, ns string) ([]*listenerv3.FilterChain, error) {
	client := routeClient{namespace: ns, gateway: gs.ref()}
	var out []*listenerv3.FilterChain
	for _, vs := range world.VirtualServicesFor(gs.ref(), ns) {
		for i, tr := range vs.Spec.GetTls() {
			for _, m := range tr.GetMatch() {
				if m.GetPort() != 0 && int32(m.GetPort()) != port || !client.boundTo(m.GetGateways(), vs.Namespace) {
					continue
				}
				f, err := tcpRouteFilter(world, vs, tr.GetRoute(), port, ns, fmt.Sprintf("%s/%s.tls[%d]", vs.Namespace, vs.Name, i))
				if err != nil || f == nil {
					return out, err
				}
				out = append(out, &listenerv3.FilterChain{
					Name:             fmt.Sprintf("%s/%s.tls[%d]", vs.Namespace, vs.Name, i),
					FilterChainMatch: &listenerv3.FilterChainMatch{ServerNames: slices.Sorted(slices.Values(m.GetSniHosts()))},
					Filters:          []*listenerv3.Filter{f},
				})
			}
		}
	}
	return out, nil
}

// gatewayTCPFilter proxies a TCP (or TLS-terminated) server's connections to
// the first VirtualService TCP route bound to its Gateway; nil if none.
func gatewayTCPFilter(world *model.World, gs gatewayServer, port int32, ns, stat string) (*listenerv3.Filter, error) {
	client := routeClient{namespace: ns, gateway: gs.ref()}
	for _, vs := range world.VirtualServicesFor(gs.ref(), ns) {
		for _, tr := range vs.Spec.GetTcp() {
			applies := len(tr.GetMatch()) == 0
			for _, m := range tr.GetMatch() {
				if (m.GetPort() == 0 || int32(m.GetPort()) == port) && client.boundTo(m.GetGateways(), vs.Namespace) {
					applies = true
				}
			}
			if applies {
				return tcpRouteFilter(world, vs, tr.GetRoute(), port, ns, stat)
			}
		}
	}
	return nil, nil
}

// tcpRouteFilter is a tcp_proxy to a route's destinations (weighted when
// several); nil when none resolves.
func tcpRouteFilter(world *model.World, vs *model.VirtualService, dests []*networking.RouteDestination, port int32, ns, stat string) (*listenerv3.Filter, error) {
	var clusters []*tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight
	for _, d := range dests {
		name, _, ok := destinationCluster(world, vs, d.GetDestination(), port, ns)
		if !ok {
			continue
		}
		w := uint32(d.GetWeight())
		if len(dests) == 1 {
			w = 100
		}
		if w == 0 {
			continue
		}
		clusters = append(clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: name, Weight: w})
	}
	if len(clusters) == 0 {
		return nil, nil
	}
	tp := &tcpproxyv3.TcpProxy{StatPrefix: stat}
	if len(clusters) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: clusters[0].Name}
	} else {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: &tcpproxyv3.TcpProxy_WeightedCluster{Clusters: clusters}}
	}
	a, err := pack(tp)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{Name: wellknown.TCPProxy, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}, nil
}

// tlsCertificateSecret is a gateway's certificate, for SDS.
func tlsCertificateSecret(name string, cred *model.Credential) types.Resource {
	if len(cred.Cert) == 0 || len(cred.Key) == 0 {
		return nil
	}
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
		CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cred.Cert}},
		PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cred.Key}},
	}}}
}

// validationSecret is the CA a MUTUAL server verifies clients with.
func validationSecret(name string, cred *model.Credential) types.Resource {
	return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
		TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: cred.CA}},
	}}}
}

// mergeSecrets joins two sorted secret lists, once per name.
func mergeSecrets(a, b []types.Resource) []types.Resource {
	out := slices.Clone(a)
	for _, r := range b {
		if !slices.ContainsFunc(out, func(x types.Resource) bool { return ResourceName(x) == ResourceName(r) }) {
			out = append(out, r)
		}
	}
	sortByName(out)
	return out
}
