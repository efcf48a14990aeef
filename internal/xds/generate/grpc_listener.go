package generate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
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
// every RPC with a NonForwardingAction. No transport socket: the server uses
// its fallback credentials until the security issue brings mTLS.
func grpcServerListener(host string, port int32) (*listenerv3.Listener, error) {
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
	f, err := hcmFilter(inlineHCM(name, rc))
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:             name,
		Address:          socketAddress(host, port),
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Name:    InboundClusterName(port),
			Filters: []*listenerv3.Filter{f},
		}},
	}, nil
}
