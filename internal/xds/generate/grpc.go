package generate

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// grpcResources is a proxyless gRPC application's configuration.
//
// Client side, for every port of every service: an API listener and a route
// configuration for each name a client may dial (ServiceHosts + ":port"), the
// EDS cluster outbound|port||fqdn and its endpoints.
//
// Server side, for every endpoint port at the proxy's IP: the listeners
// xds.NewGRPCServer asks for when it listens on that IP, on 0.0.0.0 or on ::
// (":port" is reported as "[::]:port", or "0.0.0.0:port" on IPv4-only hosts),
// named from GRPCServerListenerTemplate.
//
// GenerateGRPC builds the same resources for a list of listener names only.
func grpcResources(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	ns := proxyNamespace(proxy)
	nPorts, nHosts := 0, 0
	for _, svc := range world.Services {
		nPorts += len(svc.Ports)
		h := 3
		if svc.Namespace == ns {
			h = 4
		}
		nHosts += h * len(svc.Ports)
	}
	ip := proxyIP(proxy)
	serverPorts := workloadPorts(world, ip)

	clusters := make([]types.Resource, 0, nPorts)
	endpoints := make([]types.Resource, 0, nPorts)
	listeners := make([]types.Resource, 0, nHosts+3*len(serverPorts))
	routes := make([]types.Resource, 0, nHosts)

	client := routeClient{namespace: ns, grpc: true}
	if world.UsesSourceLabels() && proxy.Workload != nil {
		client.labels = proxy.Workload.Labels
	}
	for _, svc := range world.Services {
		if grpcSkips(svc) {
			continue
		}
		hosts := ServiceHosts(svc, ns)
		dr := world.DestinationRule(svc.Hostname, ns)
		vs := virtualServiceFor(world, svc, ns)
		st := serviceTLSFor(world, svc)
		for _, port := range svc.Ports {
			clusters = append(clusters, ruleClusters(svc, port, dr, true, grpcCluster, st)...)
			if grpcHasEndpoints(svc) {
				endpoints = append(endpoints, loadAssignment(svc, port))
			}
			if dr != nil {
				endpoints = append(endpoints, ruleLoadAssignments(svc, port, dr)...)
			}
			cluster := OutboundClusterName(port.Port, "", svc.Hostname)
			for _, h := range hosts {
				name := hostPort(h, port.Port)
				l, err := grpcClientListener(name)
				if err != nil {
					return nil, err
				}
				listeners = append(listeners, l)
				routes = append(routes, grpcRouteFor(world, vs, svc, port.Port, name, h, cluster, client))
			}
		}
	}

	serverHosts := grpcServerHosts(ip)
	serverPorts, _ = inboundModes(world, proxy, serverPorts)
	meshSources := meshSourceIPs(world)
	for _, wp := range serverPorts {
		for _, host := range serverHosts {
			l, err := grpcServerListener(host, wp.Port, wp.MTLS, meshSources, inboundSecurityFor(world, proxy))
			if err != nil {
				return nil, err
			}
			listeners = append(listeners, l)
		}
	}

	return xds.Resources{
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: endpoints,
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    routes,
	}, nil
}

// grpcServerHosts are the addresses a server on ip may report as listening:
// ip itself, and the IPv4 and IPv6 wildcards.
func grpcServerHosts(ip string) []string {
	switch ip {
	case "0.0.0.0", "::":
		return []string{"0.0.0.0", "::"}
	}
	return []string{ip, "0.0.0.0", "::"}
}
