package generate

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// gatewayResources is an Envoy gateway's configuration. When Gateway
// resources select it, its listeners, routes and secrets are theirs
// (istio_gateway.go). Otherwise: a listener for every
// HTTP port of the gateway's own Service (the services with an endpoint at
// the proxy's IP), on the endpoint (target) port Envoy listens on, with an
// empty route configuration "http.<port>"; and, so that routes can point
// somewhere once they exist, the same outbound clusters and endpoints a
// sidecar gets. Ports of other protocols get no listener until the traffic
// issue brings TCP and TLS routes; reserved proxy ports (15021, 15090, ...)
// never do.
func gatewayResources(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	ip := proxyIP(proxy)
	wildcard := wildcardFor(ip)
	clusters, endpoints := outboundClusters(world, proxyNamespace(proxy))
	if l, r, secrets, ok, err := istioGatewayResources(world, proxy, wildcard); err != nil {
		return nil, err
	} else if ok {
		return xds.Resources{
			resourcev3.ClusterType:  clusters,
			resourcev3.EndpointType: endpoints,
			resourcev3.ListenerType: l,
			resourcev3.RouteType:    r,
			resourcev3.SecretType:   mergeSecrets(secrets, ruleSecrets(world, proxyNamespace(proxy))),
		}, nil
	}

	ports := workloadPorts(world, ip)
	listeners := make([]types.Resource, 0, len(ports))
	routes := make([]types.Resource, 0, len(ports))
	for _, wp := range ports {
		if isReserved(wp.Port) || !wp.Protocol.IsHTTP() {
			continue
		}
		l, err := gatewayListener(wildcard, wp.Port)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		routes = append(routes, gatewayRoute(wp.Port))
	}
	return xds.Resources{
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: endpoints,
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    routes,
	}, nil
}
