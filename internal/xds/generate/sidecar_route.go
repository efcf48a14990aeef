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
// rejects duplicates. It depends on the port, the services and clientNS.
func sidecarRoute(port int32, services []*model.Service, clientNS string, allowAny bool) *routev3.RouteConfiguration {
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
			Routes:  []*routev3.Route{routeTo(OutboundClusterName(port, "", svc.Hostname))},
		})
	}
	vhosts = append(vhosts, catchAllVirtualHost(allowAny))
	return &routev3.RouteConfiguration{
		Name:             SidecarRouteName(port),
		VirtualHosts:     vhosts,
		ValidateClusters: falseValue,
	}
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
