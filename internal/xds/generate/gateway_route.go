package generate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// gatewayRoute is a gateway's route configuration "http.<port>". It is empty
// (every request gets 404) until Gateway and VirtualService routes arrive
// with the traffic-management issue.
func gatewayRoute(port int32) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: GatewayRouteName(port), ValidateClusters: falseValue}
}
