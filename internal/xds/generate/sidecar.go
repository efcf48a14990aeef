package generate

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// sidecarResources is an Envoy sidecar's configuration.
//
// Outbound: the virtual listener on 15001 (use_original_dst; unclaimed
// traffic to PassthroughCluster under ALLOW_ANY, BlackHoleCluster under
// REGISTRY_ONLY); a listener "0.0.0.0_<port>" per service port number, with
// TCP services matched by destination IP and HTTP ones routed by RDS "<port>";
// a route configuration per HTTP port; a cluster per service port
// (outbound|<port>||<fqdn>, EDS, or ORIGINAL_DST for headless services) and
// its endpoints.
//
// Inbound: the virtual listener on 15006 with a filter chain per port the
// workload serves (from the endpoints at the proxy's IP) to inbound|<port>||
// (STATIC, 127.0.0.1:<port>), and a passthrough for the other ports.
func sidecarResources(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	ns := proxyNamespace(proxy)
	ip := proxyIP(proxy)
	wildcard := wildcardFor(ip)
	allowAny := world.Mesh.OutboundAllowAny

	clusters, endpoints := outboundClusters(world, ns)
	fallback := BlackHoleCluster
	if allowAny {
		fallback = PassthroughCluster
		clusters = append(clusters, passthroughCluster())
	} else {
		clusters = append(clusters, blackHoleCluster())
	}

	ports := outboundPorts(world)
	listeners := make([]types.Resource, 0, len(ports)+2)
	routes := make([]types.Resource, 0, len(ports))
	l, err := virtualOutboundListener(wildcard, fallback)
	if err != nil {
		return nil, err
	}
	listeners = append(listeners, l)
	for _, op := range ports {
		l, err := sidecarOutboundListener(op, wildcard, fallback, tcpRoutes{world, ns})
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		if len(op.HTTP) > 0 {
			routes = append(routes, sidecarRoute(world, op.Port, op.HTTP, sidecarClient(world, proxy), allowAny))
		}
	}

	inbound, passthroughMode := inboundModes(world, proxy, workloadPorts(world, ip))
	l, err = virtualInboundListener(wildcard, inbound, passthroughMode, inboundSecurityFor(world, proxy))
	if err != nil {
		return nil, err
	}
	listeners = append(listeners, l)
	for _, wp := range inbound {
		clusters = append(clusters, inboundCluster(wp.Port, wp.Protocol))
	}
	clusters = append(clusters, inboundPassthroughCluster(isIPv6(ip)))
	if allowAny && refusesPlaintext(inbound, passthroughMode) {
		clusters = append(clusters, blackHoleCluster())
	}

	res := xds.Resources{
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: endpoints,
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    routes,
	}
	if secrets := ruleSecrets(world, ns); len(secrets) > 0 {
		res[resourcev3.SecretType] = secrets
	}
	return res, nil
}
