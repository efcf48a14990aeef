package generate

import (
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshplane/meshplane/internal/model"
)

// grpcClientListener is the API listener grpc-go asks for when a channel dials
// xds:///<name>: an HttpConnectionManager that fetches the route
// configuration of the same name over ADS, with the router filter. It
// depends on name alone.
func grpcClientListener(name string) (*listenerv3.Listener, error) {
	hcm, err := pack(rdsHCM(name, name, grpcClientFilters))
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:        name,
		ApiListener: &listenerv3.ApiListener{ApiListener: hcm},
	}, nil
}

// grpcServerListener is the listener an xds.NewGRPCServer listening on
// host:port asks for (named by GRPCServerListenerTemplate): that socket
// address, no listener filters (grpc-go rejects them), and one filter chain
// whose HttpConnectionManager has an inline route configuration accepting
// every RPC with a NonForwardingAction after the authorization filters
// grpc-go honours (RBAC); mesh mTLS on the chain as the
// port's PeerAuthentication mode says (the server's xDS credentials use
// their fallback on a chain without TLS).
func grpcServerListener(host string, port int32, mode model.MTLSMode, meshSources []string, sec inboundSecurity) (*listenerv3.Listener, error) {
	name := GRPCServerListenerName(host, port)
	rc := &routev3.RouteConfiguration{
		Name: InboundClusterName(port),
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    "inbound|grpc|" + itoa(port),
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:   "default",
				Match:  prefixSlash,
				Action: &routev3.Route_NonForwardingAction{NonForwardingAction: &routev3.NonForwardingAction{}},
			}},
		}},
	}
	authz, err := sec.httpFilters(uint32(port))
	if err != nil {
		return nil, err
	}
	hcm := inlineHCM(name, rc)
	hcm.HttpFilters = append(authz, routerFilter)
	f, err := hcmFilter(hcm)
	if err != nil {
		return nil, err
	}
	plain := &listenerv3.FilterChain{Name: InboundClusterName(port), Filters: []*listenerv3.Filter{f}}
	mtls := &listenerv3.FilterChain{
		Name:            InboundClusterName(port) + "-mtls",
		Filters:         []*listenerv3.Filter{f},
		TransportSocket: meshDownstreamTLS(true),
	}
	var chains []*listenerv3.FilterChain
	switch mode {
	case model.MTLSDisable:
		chains = []*listenerv3.FilterChain{plain}
	case model.MTLSStrict:
		chains = []*listenerv3.FilterChain{mtls}
	default:
		// grpc-go cannot tell TLS from plaintext on a connection (it drops
		// chains matching transport_protocol "tls"), so PERMISSIVE is told
		// by the client's address: mesh workloads, which originate mTLS on
		// their own, must use it; anyone else talks plaintext.
		if len(meshSources) == 0 {
			chains = []*listenerv3.FilterChain{plain}
			break
		}
		match := &listenerv3.FilterChainMatch{}
		for _, ip := range meshSources {
			if r := hostCIDR(ip); r != nil {
				match.SourcePrefixRanges = append(match.SourcePrefixRanges, r)
			}
		}
		mtls.FilterChainMatch = match
		chains = []*listenerv3.FilterChain{mtls, plain}
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(host, port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains:     chains,
	}, nil
}

// meshSourceIPs are the addresses of the workloads that run a mesh proxy,
// sorted: the clients a PERMISSIVE proxyless server expects mTLS from.
func meshSourceIPs(world *model.World) []string {
	var out []string
	for _, wl := range world.Workloads {
		if wl.IP != "" && wl.Labels[model.TLSModeLabel] == model.TLSModeIstio {
			out = append(out, wl.IP)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
