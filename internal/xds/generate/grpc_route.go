package generate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshplane/meshplane/internal/model"
)

// grpcRouteFor is the route configuration behind the API listener name for
// svc's port: the VirtualService's routes when vs (may be nil) has some
// for it, else grpcClientRoute (with the DestinationRule's hash policy).
func grpcRouteFor(world *model.World, vs *model.VirtualService, svc *model.Service, port int32, name, host, cluster string, client routeClient) *routev3.RouteConfiguration {
	var routes []*routev3.Route
	if vs != nil {
		routes = virtualServiceRoutes(world, vs, svc, port, client)
	}
	hp := routeHashPolicy(world, svc, "", port, client)
	if len(routes) == 0 && hp == nil {
		return grpcClientRoute(name, host, cluster)
	}
	if len(routes) == 0 {
		routes = []*routev3.Route{{
			Name:  "default",
			Match: prefixSlash,
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
				HashPolicy:       hp,
			}},
		}}
	}
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    name,
			Domains: []string{host, name},
			Routes:  routes,
		}},
	}
}

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
