package generate

import (
	"slices"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/meshplane/meshplane/internal/model"
)

// reservedPorts are bound by every Envoy of the mesh (capture ports, and the
// bootstrap's status and Prometheus listeners): no generated listener may
// take them, so services on these ports reach sidecars only through the
// virtual outbound listener's fallback.
var reservedPorts = [...]int32{OutboundCapturePort, InboundCapturePort, 15021, 15090}

func isReserved(port int32) bool { return slices.Contains(reservedPorts[:], port) }

// outboundClusters returns an Envoy's cluster for every port of every
// service, and the endpoints of those that use EDS, as the DestinationRules
// that apply to clients in clientNS shape them (subset clusters included).
// It depends on the proxy only through its namespace: sidecars and gateways
// share it, and so could a cache.
func outboundClusters(world *model.World, clientNS string) (clusters, endpoints []types.Resource) {
	n := 0
	for _, svc := range world.Services {
		n += len(svc.Ports)
	}
	clusters = make([]types.Resource, 0, n+2)
	endpoints = make([]types.Resource, 0, n)
	for _, svc := range world.Services {
		dr := world.DestinationRule(svc.Hostname, clientNS)
		st := serviceTLSFor(world, svc)
		for _, port := range svc.Ports {
			clusters = append(clusters, ruleClusters(svc, port, dr, false, outboundCluster, st)...)
			if hasEndpoints(svc) {
				endpoints = append(endpoints, loadAssignment(svc, port))
			}
			if dr != nil {
				endpoints = append(endpoints, ruleLoadAssignments(svc, port, dr)...)
			}
		}
	}
	return clusters, endpoints
}

// outboundPort gathers the services listening on one port number, by how a
// sidecar routes them: HTTP-ish ports by Host header, the others by
// destination IP. Both lists keep the world's order (by hostname).
type outboundPort struct {
	Port int32
	HTTP []*model.Service
	TCP  []*model.Service
}

// outboundPorts lists, sorted by port, every service port number of the world
// except the reserved ones. It does not depend on the proxy.
func outboundPorts(world *model.World) []outboundPort {
	var ports []outboundPort
	index := map[int32]int{}
	for _, svc := range world.Services {
		for _, sp := range svc.Ports {
			if isReserved(sp.Port) {
				continue
			}
			i, ok := index[sp.Port]
			if !ok {
				i = len(ports)
				index[sp.Port] = i
				ports = append(ports, outboundPort{Port: sp.Port})
			}
			if sp.Protocol.IsHTTP() {
				ports[i].HTTP = append(ports[i].HTTP, svc)
			} else {
				ports[i].TCP = append(ports[i].TCP, svc)
			}
		}
	}
	slices.SortFunc(ports, func(a, b outboundPort) int { return int(a.Port) - int(b.Port) })
	return ports
}
