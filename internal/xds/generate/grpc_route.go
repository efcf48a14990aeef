package generate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

// grpcClientRoute is the route configuration behind the API listener name
// (= host:port): one virtual host answering for host and host:port (grpc-go
// matches the dialled authority, host:port, against the domains), routing
// every method to cluster. It depends on its arguments alone.
func grpcClientRoute(name, host, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{host, name},
			Routes: []*routev3.Route{{
				Name:  "default",
				Match: prefixSlash,
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
				}},
			}},
		}},
	}
}
