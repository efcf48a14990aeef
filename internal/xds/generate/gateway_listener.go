package generate

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

// gatewayListener is a gateway's HTTP listener on port ("0.0.0.0_<port>",
// bound): an HttpConnectionManager fetching route configuration
// "http.<port>" over ADS. A gateway is the edge, so the client address is
// the connection's (use_remote_address), not a header the client wrote.
func gatewayListener(wildcard string, port int32) (*listenerv3.Listener, error) {
	hcm := rdsHCM(OutboundListenerName(port), GatewayRouteName(port), httpFilters)
	hcm.UseRemoteAddress = trueValue
	f, err := hcmFilter(hcm)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Listener{
		Name:             OutboundListenerName(port),
		Address:          socketAddress(wildcard, port),
		TrafficDirection: corev3.TrafficDirection_OUTBOUND,
		FilterChains:     []*listenerv3.FilterChain{{Name: "http", Filters: []*listenerv3.Filter{f}}},
	}, nil
}
