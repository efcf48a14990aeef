package generate

import (
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/meshplane/meshplane/internal/model"
)

// sidecarRoute is the route configuration "<port>" of a sidecar in namespace
// clientNS: a virtual host per HTTP service on the port ("<fqdn>:<port>")
// answering for every name a client may use (ServiceHosts and the cluster IP,
// each with and without ":<port>") and routing to outbound|<port>||<fqdn>,
// then a catch-all: allow_any → PassthroughCluster, or block_all → 502.
// A domain two services would share goes to the first by hostname; Envoy
// rejects duplicates. A VirtualService for the mesh covering a Service
// replaces its default route (istio_route.go). It depends on the port, the
// services, the world's configuration and the client (its namespace, and
// its labels when a VirtualService matches on sourceLabels).
func sidecarRoute(world *model.World, port int32, services []*model.Service, client routeClient, allowAny bool) *routev3.RouteConfiguration {
	clientNS := client.namespace
	seen := make(map[string]bool, len(services)*10)
	vhosts := make([]*routev3.VirtualHost, 0, len(services)+1)
	portSuffix := ":" + itoa(port)
	for _, svc := range services {
		hosts := ServiceHosts(svc, clientNS)
		domains := make([]string, 0, 2*len(hosts)+2)
		add := func(host, withPort string) {
			for _, d := range [2]string{host, withPort} {
				if !seen[d] {
					seen[d] = true
					domains = append(domains, d)
				}
			}
		}
		for _, h := range hosts {
			add(h, h+portSuffix)
		}
		if svc.ClusterIP != "" {
			add(svc.ClusterIP, hostPort(svc.ClusterIP, port))
		}
		if len(domains) == 0 {
			continue
		}
		vhosts = append(vhosts, &routev3.VirtualHost{
			Name:    svc.Hostname + portSuffix,
			Domains: domains,
			Routes:  serviceRoutes(world, svc, port, client),
		})
	}
	vhosts = append(vhosts, catchAllVirtualHost(allowAny))
	return &routev3.RouteConfiguration{
		Name:             SidecarRouteName(port),
		VirtualHosts:     vhosts,
		ValidateClusters: falseValue,
	}
}

// serviceRoutes are the routes of svc's virtual host on port: its
// VirtualService's, or the default route to its cluster (with Istio's
// default retries and the hash policy its DestinationRule asks for).
func serviceRoutes(world *model.World, svc *model.Service, port int32, client routeClient) []*routev3.Route {
	if vs := virtualServiceFor(world, svc, client.namespace); vs != nil {
		if routes := virtualServiceRoutes(world, vs, svc, port, client); len(routes) > 0 {
			return routes
		}
	}
	return []*routev3.Route{{
		Name:  "default",
		Match: prefixSlash,
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: OutboundClusterName(port, "", svc.Hostname)},
			Timeout:          noTimeout,
			RetryPolicy:      defaultRetryPolicy,
			HashPolicy:       routeHashPolicy(world, svc, "", port, client),
		}},
	}}
}

// sidecarClient is who a sidecar's routes are for; its labels matter only
// when some VirtualService matches on sourceLabels.
func sidecarClient(world *model.World, proxy *model.Proxy) routeClient {
	c := routeClient{namespace: proxyNamespace(proxy)}
	if world.UsesSourceLabels() && proxy.Workload != nil {
		c.labels = proxy.Workload.Labels
	}
	return c
}

// catchAllVirtualHost answers for hosts no service claims.
func catchAllVirtualHost(allowAny bool) *routev3.VirtualHost {
	if allowAny {
		return &routev3.VirtualHost{
			Name:    "allow_any",
			Domains: []string{"*"},
			Routes:  []*routev3.Route{routeTo(PassthroughCluster)},
		}
	}
	return &routev3.VirtualHost{
		Name:    "block_all",
		Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Name:   "block_all",
			Match:  prefixSlash,
			Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 502}},
		}},
	}
}
