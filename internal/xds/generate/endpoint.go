package generate

import (
	"cmp"
	"slices"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshplane/meshplane/internal/model"
)

// loadAssignment is the endpoints resource of svc's port, shared by Envoys and
// proxyless gRPC clients: one LbEndpoint per endpoint address that has the
// port, grouped by locality (sorted by region, zone, sub-zone; addresses in
// model order inside). It depends on (svc, port) alone.
//
// Health: HEALTHY when ready; DRAINING when terminating but still serving;
// UNHEALTHY otherwise. Envoy and grpc-go send traffic only to HEALTHY (and
// UNKNOWN) endpoints. An address listed twice (two EndpointSlices) appears
// once, with the better health, because grpc-go rejects duplicate addresses.
//
// Endpoints whose workload runs a mesh proxy carry the transport socket
// match metadata of automatic mTLS (secureCluster).
//
// Every locality carries a load_balancing_weight (its endpoint count): grpc-go
// ignores localities without one; Envoy ignores it unless locality-weighted
// balancing is on.
func loadAssignment(svc *model.Service, port model.ServicePort) *endpointv3.ClusterLoadAssignment {
	return loadAssignmentOf(OutboundClusterName(port.Port, "", svc.Hostname), svc, port, nil)
}

// loadAssignmentOf is the endpoints resource named name of svc's port,
// holding the endpoints keep accepts (all when keep is nil): a subset's.
func loadAssignmentOf(name string, svc *model.Service, port model.ServicePort, keep func(*model.Endpoint) bool) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}

	type candidate struct {
		ep     *model.Endpoint
		port   int32
		health corev3.HealthStatus
	}
	cands := make([]candidate, 0, len(svc.Endpoints))
	sameLocality := true
	for _, ep := range svc.Endpoints {
		p, ok := ep.Ports[port.Name]
		if !ok || p <= 0 || p > 65535 || ep.Address == "" || keep != nil && !keep(ep) {
			continue
		}
		h := endpointHealth(ep)
		// Endpoints are sorted by address, so a duplicate is among the last
		// candidates with the same address.
		dup := false
		for i := len(cands) - 1; i >= 0 && cands[i].ep.Address == ep.Address; i-- {
			if cands[i].port == p {
				if healthRank(h) < healthRank(cands[i].health) {
					cands[i].health = h
				}
				dup = true
				break
			}
		}
		if dup {
			continue
		}
		if len(cands) > 0 && cands[0].ep.Locality != ep.Locality {
			sameLocality = false
		}
		cands = append(cands, candidate{ep: ep, port: p, health: h})
	}
	if len(cands) == 0 {
		return cla
	}
	if !sameLocality {
		slices.SortStableFunc(cands, func(a, b candidate) int {
			return compareLocality(a.ep.Locality, b.ep.Locality)
		})
	}

	lbEndpoints := make([]*endpointv3.LbEndpoint, len(cands))
	for i, c := range cands {
		lbEndpoints[i] = &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(c.ep.Address, c.port),
			}},
			HealthStatus: c.health,
		}
		if c.ep.MeshTLS() {
			// Envoy picks the cluster's "tlsMode-istio" transport socket.
			lbEndpoints[i].Metadata = meshTLSEndpointMetadata
		}
	}
	for start := 0; start < len(cands); {
		end := start + 1
		for end < len(cands) && cands[end].ep.Locality == cands[start].ep.Locality {
			end++
		}
		l := cands[start].ep.Locality
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:            &corev3.Locality{Region: l.Region, Zone: l.Zone, SubZone: l.SubZone},
			LbEndpoints:         lbEndpoints[start:end:end],
			LoadBalancingWeight: wrapperspb.UInt32(uint32(end - start)),
		})
		start = end
	}
	return cla
}

// endpointHealth maps EndpointSlice conditions to an xDS health status.
func endpointHealth(ep *model.Endpoint) corev3.HealthStatus {
	switch {
	case ep.Ready:
		return corev3.HealthStatus_HEALTHY
	case ep.Terminating && ep.Serving:
		return corev3.HealthStatus_DRAINING
	default:
		return corev3.HealthStatus_UNHEALTHY
	}
}

func healthRank(h corev3.HealthStatus) int {
	switch h {
	case corev3.HealthStatus_HEALTHY:
		return 0
	case corev3.HealthStatus_DRAINING:
		return 1
	default:
		return 2
	}
}

func compareLocality(a, b model.Locality) int {
	return cmp.Or(cmp.Compare(a.Region, b.Region), cmp.Compare(a.Zone, b.Zone), cmp.Compare(a.SubZone, b.SubZone))
}
