package generate

import (
	"math"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/meshplane/meshplane/internal/model"
)

// Clusters that depend on one service port alone. Each is a pure function of
// its arguments (and, for sidecars, of nothing about the proxy), so a cache
// keyed by (service, port, model version) can build it once and hand the same
// message to every proxy.

// grpcCluster is the cluster a proxyless gRPC client uses for svc's port: EDS
// over ADS, round robin. grpc-go resolves endpoints only through EDS, so a
// headless service gets an EDS cluster too.
func grpcCluster(svc *model.Service, port model.ServicePort) *clusterv3.Cluster {
	name := OutboundClusterName(port.Port, "", svc.Hostname)
	if isDNS(svc) {
		// grpc-go resolves names with LOGICAL_DNS (one name), not STRICT_DNS.
		return dnsCluster(name, svc, port, clusterv3.Cluster_LOGICAL_DNS)
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource, ServiceName: name},
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		ConnectTimeout:       connectTimeout,
	}
}

// outboundCluster is the cluster an Envoy (sidecar or gateway) uses for svc's
// port: EDS over ADS, round robin, HTTP/2 to the endpoints for HTTP2 and gRPC
// ports. A headless service has no VIP to balance behind, so its cluster
// forwards to the address the client dialled (ORIGINAL_DST) and has no
// endpoints resource.
func outboundCluster(svc *model.Service, port model.ServicePort) *clusterv3.Cluster {
	name := OutboundClusterName(port.Port, "", svc.Hostname)
	c := &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: connectTimeout,
	}
	switch {
	case isDNS(svc):
		typ := clusterv3.Cluster_STRICT_DNS
		if svc.Resolution == model.ResolutionDNSRoundRobin {
			typ = clusterv3.Cluster_LOGICAL_DNS
		}
		c = dnsCluster(name, svc, port, typ)
	case !svc.UsesEDS():
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		c.LbPolicy = clusterv3.Cluster_CLUSTER_PROVIDED
	default:
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource, ServiceName: name}
		c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	}
	if port.Protocol == model.ProtocolHTTP2 || port.Protocol == model.ProtocolGRPC {
		c.TypedExtensionProtocolOptions = http2Options
	}
	c.CircuitBreakers = defaultCircuitBreakers
	return c
}

// defaultCircuitBreakers lift Envoy's default limits (1024 connections,
// pending and active requests, 3 concurrent retries), which would throttle a
// busy service with no DestinationRule asking for it, as Istio does.
var defaultCircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{defaultThresholds}}

var defaultThresholds = &clusterv3.CircuitBreakers_Thresholds{
	Priority:           corev3.RoutingPriority_DEFAULT,
	MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
	MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
	MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
	MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
	TrackRemaining:     true,
}

// hasEndpoints reports whether an Envoy's cluster for svc uses EDS, i.e.
// whether it needs a ClusterLoadAssignment.
func hasEndpoints(svc *model.Service) bool { return svc.UsesEDS() }

// grpcHasEndpoints is hasEndpoints for proxyless gRPC, which resolves even
// a headless Service's endpoints through EDS.
func grpcHasEndpoints(svc *model.Service) bool { return svc.ServiceEntry == "" || svc.UsesEDS() }

// grpcSkips reports whether proxyless gRPC cannot use svc at all: a
// ServiceEntry that forwards to the dialled address (resolution NONE).
func grpcSkips(svc *model.Service) bool {
	return svc.ServiceEntry != "" && svc.Resolution == model.ResolutionNone
}

// isDNS reports whether svc's endpoints are names proxies resolve.
func isDNS(svc *model.Service) bool {
	return svc.ServiceEntry != "" && (svc.Resolution == model.ResolutionDNS || svc.Resolution == model.ResolutionDNSRoundRobin)
}

// dnsCluster resolves the names of svc's endpoints (STRICT_DNS: all of them;
// LOGICAL_DNS: the first), with the endpoints inline.
func dnsCluster(name string, svc *model.Service, port model.ServicePort, typ clusterv3.Cluster_DiscoveryType) *clusterv3.Cluster {
	var lbs []*endpointv3.LbEndpoint
	for _, ep := range svc.Endpoints {
		p, ok := ep.Ports[port.Name]
		if !ok {
			p = port.Port
		}
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
			Endpoint: &endpointv3.Endpoint{Address: socketAddress(ep.Address, p)},
		}})
		if typ == clusterv3.Cluster_LOGICAL_DNS {
			break
		}
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: typ},
		ConnectTimeout:       connectTimeout,
		LbPolicy:             clusterv3.Cluster_ROUND_ROBIN,
		DnsLookupFamily:      clusterv3.Cluster_V4_PREFERRED,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
		},
	}
}

// passthroughCluster forwards to the original destination (ALLOW_ANY). HTTP
// requests keep the protocol the client spoke.
func passthroughCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                          PassthroughCluster,
		ClusterDiscoveryType:          &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:                      clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:                connectTimeout,
		TypedExtensionProtocolOptions: downstreamProtocolOptions,
	}
}

// blackHoleCluster has no endpoints: connections to it are closed and
// requests get 503 (REGISTRY_ONLY).
func blackHoleCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 BlackHoleCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       connectTimeout,
	}
}

// inboundCluster reaches the workload's port on loopback.
func inboundCluster(port int32, protocol model.Protocol) *clusterv3.Cluster {
	name := InboundClusterName(port)
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       connectTimeout,
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
						Address: socketAddress("127.0.0.1", port),
					}},
				}},
			}},
		},
	}
	switch protocol {
	case model.ProtocolHTTP2, model.ProtocolGRPC:
		c.TypedExtensionProtocolOptions = http2Options
	case model.ProtocolHTTP:
		c.TypedExtensionProtocolOptions = downstreamProtocolOptions
	}
	return c
}

// inboundPassthroughCluster forwards inbound connections for undeclared ports
// to the workload's own address. It binds to 127.0.0.6 (::6 for IPv6 pods),
// the source the capture rules let through, so the connection is not
// redirected back to the proxy.
func inboundPassthroughCluster(ipv6 bool) *clusterv3.Cluster {
	source := "127.0.0.6"
	if ipv6 {
		source = "::6"
	}
	return &clusterv3.Cluster{
		Name:                 InboundPassthroughCluster,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       connectTimeout,
		UpstreamBindConfig: &corev3.BindConfig{SourceAddress: &corev3.SocketAddress{
			Address:       source,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}},
	}
}
