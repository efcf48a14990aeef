package generate

import (
	"maps"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// A DestinationRule shapes the clusters of the Service it names, for the
// clients it applies to (model.World.DestinationRule: by client namespace
// and exportTo): its traffic policy (load balancing, connection pool,
// outlier detection) on the Service's clusters, and one more cluster per
// subset, outbound|<port>|<subset>|<fqdn>, with the subset's policy and only
// the endpoints whose labels match the subset's.

// policy is a traffic policy resolved for one port and subset: the
// subset's settings over the rule's, port-level settings over the policy
// they belong to (as Istio merges them).
type policy struct {
	lb      *networking.LoadBalancerSettings
	pool    *networking.ConnectionPoolSettings
	outlier *networking.OutlierDetection
}

func (p *policy) apply(tp *networking.TrafficPolicy, port int32) {
	if tp == nil {
		return
	}
	p.set(tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection())
	for _, pl := range tp.GetPortLevelSettings() {
		if int32(pl.GetPort().GetNumber()) == port {
			p.set(pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection())
		}
	}
}

func (p *policy) set(lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings, outlier *networking.OutlierDetection) {
	if lb != nil {
		p.lb = lb
	}
	if pool != nil {
		p.pool = pool
	}
	if outlier != nil {
		p.outlier = outlier
	}
}

// policyFor resolves dr's policy (dr may be nil) for a port and subset.
func policyFor(dr *model.DestinationRule, port int32, subset string) policy {
	var p policy
	if dr == nil {
		return p
	}
	p.apply(dr.Spec.GetTrafficPolicy(), port)
	if s := findSubset(dr, subset); s != nil {
		p.apply(s.GetTrafficPolicy(), port)
	}
	return p
}

func (p policy) empty() bool { return p.lb == nil && p.pool == nil && p.outlier == nil }

// ruleClusters returns svc's clusters for port under dr (nil: none): the
// Service's cluster with the rule's policy, then one per subset, sorted by
// name. base builds the cluster without any rule (outboundCluster or
// grpcCluster); subset clusters use EDS even for headless Services (their
// endpoints are a selection).
func ruleClusters(svc *model.Service, port model.ServicePort, dr *model.DestinationRule, grpc bool,
	base func(*model.Service, model.ServicePort) *clusterv3.Cluster,
) []types.Resource {
	c := base(svc, port)
	if p := policyFor(dr, port.Port, ""); !p.empty() {
		c = withPolicy(c, p, grpc)
	}
	out := []types.Resource{c}
	if dr == nil || isDNS(svc) {
		// Subsets select endpoints by labels; resolved names have none.
		return out
	}
	for _, s := range dr.Spec.GetSubsets() {
		if s.GetName() == "" {
			continue
		}
		name := OutboundClusterName(port.Port, s.GetName(), svc.Hostname)
		sc := cloneCluster(base(svc, port))
		sc.Name = name
		sc.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		sc.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource, ServiceName: name}
		if sc.LbPolicy == clusterv3.Cluster_CLUSTER_PROVIDED {
			sc.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
		}
		if p := policyFor(dr, port.Port, s.GetName()); !p.empty() {
			sc = withPolicy(sc, p, grpc)
		}
		out = append(out, sc)
	}
	sortByName(out)
	return out
}

// ruleLoadAssignments are the endpoints of dr's subset clusters for port.
func ruleLoadAssignments(svc *model.Service, port model.ServicePort, dr *model.DestinationRule) []types.Resource {
	if isDNS(svc) {
		return nil
	}
	var out []types.Resource
	for _, s := range dr.Spec.GetSubsets() {
		if s.GetName() == "" {
			continue
		}
		labels := s.GetLabels()
		out = append(out, loadAssignmentOf(OutboundClusterName(port.Port, s.GetName(), svc.Hostname), svc, port,
			func(ep *model.Endpoint) bool { return labelsMatch(labels, ep.Labels) }))
	}
	return out
}

// labelsMatch reports whether have carries every label of want.
func labelsMatch(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// cloneCluster copies the top level of c (its sub-messages stay shared,
// and are never modified).
func cloneCluster(c *clusterv3.Cluster) *clusterv3.Cluster {
	out := &clusterv3.Cluster{
		Name:                          c.Name,
		ClusterDiscoveryType:          c.ClusterDiscoveryType,
		EdsClusterConfig:              c.EdsClusterConfig,
		ConnectTimeout:                c.ConnectTimeout,
		LbPolicy:                      c.LbPolicy,
		TypedExtensionProtocolOptions: c.TypedExtensionProtocolOptions,
	}
	return out
}

// withPolicy returns a copy of c with the policy applied. grpc-go knows
// ROUND_ROBIN, LEAST_REQUEST and RING_HASH (not MAGLEV or RANDOM: those
// stay round robin for it), max_requests of the circuit breakers, and
// outlier detection.
func withPolicy(c *clusterv3.Cluster, p policy, grpc bool) *clusterv3.Cluster {
	c = cloneCluster(c)
	if lb := p.lb; lb != nil {
		if ch := lb.GetConsistentHash(); ch != nil {
			switch {
			case ch.GetMaglev() != nil && !grpc:
				c.LbPolicy = clusterv3.Cluster_MAGLEV
				if n := ch.GetMaglev().GetTableSize(); n > 0 {
					c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(n)}}
				}
			default:
				c.LbPolicy = clusterv3.Cluster_RING_HASH
				size := ch.GetRingHash().GetMinimumRingSize()
				if size == 0 {
					size = ch.GetMinimumRingSize()
				}
				if size > 0 {
					c.LbConfig = &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(size)}}
				}
			}
		} else {
			switch lb.GetSimple() {
			case networking.LoadBalancerSettings_LEAST_CONN, networking.LoadBalancerSettings_LEAST_REQUEST:
				c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
			case networking.LoadBalancerSettings_RANDOM:
				if !grpc {
					c.LbPolicy = clusterv3.Cluster_RANDOM
				}
			case networking.LoadBalancerSettings_ROUND_ROBIN, networking.LoadBalancerSettings_UNSPECIFIED:
				if c.LbPolicy != clusterv3.Cluster_CLUSTER_PROVIDED {
					c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
				}
			}
		}
	}
	if pool := p.pool; pool != nil {
		th := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
		set := false
		u32 := func(v int32) *wrapperspb.UInt32Value {
			if v <= 0 {
				return nil
			}
			set = true
			return wrapperspb.UInt32(uint32(v))
		}
		th.MaxConnections = u32(pool.GetTcp().GetMaxConnections())
		th.MaxPendingRequests = u32(pool.GetHttp().GetHttp1MaxPendingRequests())
		th.MaxRequests = u32(pool.GetHttp().GetHttp2MaxRequests())
		th.MaxRetries = u32(pool.GetHttp().GetMaxRetries())
		if set {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
		}
		if t := pool.GetTcp().GetConnectTimeout(); t != nil {
			c.ConnectTimeout = durationpb.New(t.AsDuration())
		}
		if !grpc {
			common := &corev3.HttpProtocolOptions{}
			if n := pool.GetHttp().GetMaxRequestsPerConnection(); n > 0 {
				common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(n))
			}
			if t := pool.GetHttp().GetIdleTimeout(); t != nil {
				common.IdleTimeout = durationpb.New(t.AsDuration())
			}
			if common.MaxRequestsPerConnection != nil || common.IdleTimeout != nil {
				c.TypedExtensionProtocolOptions = withCommonHTTPOptions(c.TypedExtensionProtocolOptions, common)
			}
		}
	}
	if od := p.outlier; od != nil {
		c.OutlierDetection = outlierDetection(od)
		if mh := od.GetMinHealthPercent(); mh > 0 && !grpc {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(mh)}}
		}
	}
	return c
}

// outlierDetection translates Istio's settings; enforcing percentages are
// 100 for what is configured and success-rate ejection is off, as Istio
// sets them.
func outlierDetection(od *networking.OutlierDetection) *clusterv3.OutlierDetection {
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	five := od.GetConsecutive_5XxErrors()
	if five == nil && od.GetConsecutiveErrors() > 0 {
		five = wrapperspb.UInt32(uint32(od.GetConsecutiveErrors()))
	}
	if five != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(five.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
		if five.GetValue() == 0 {
			out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
		}
	} else {
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
	}
	if g := od.GetConsecutiveGatewayErrors(); g != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(g.GetValue())
		if g.GetValue() > 0 {
			out.EnforcingConsecutiveGatewayFailure = wrapperspb.UInt32(100)
		}
	}
	if l := od.GetConsecutiveLocalOriginFailures(); l != nil && od.GetSplitExternalLocalOriginErrors() {
		out.SplitExternalLocalOriginErrors = true
		out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(l.GetValue())
		out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
	}
	if t := od.GetInterval(); t != nil {
		out.Interval = durationpb.New(t.AsDuration())
	}
	if t := od.GetBaseEjectionTime(); t != nil {
		out.BaseEjectionTime = durationpb.New(t.AsDuration())
	}
	if p := od.GetMaxEjectionPercent(); p > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(p))
	}
	if fp := od.GetFailurePercentageThreshold(); fp != nil {
		out.FailurePercentageThreshold = wrapperspb.UInt32(fp.GetValue())
		out.EnforcingFailurePercentage = wrapperspb.UInt32(100)
	}
	return out
}

// withCommonHTTPOptions returns protocol options with common set, keeping
// the upstream protocol of the existing ones (never modifying them).
func withCommonHTTPOptions(existing map[string]*anypb.Any, common *corev3.HttpProtocolOptions) map[string]*anypb.Any {
	opts := &httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
			UseDownstreamProtocolConfig: &httpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		},
	}
	if a, ok := existing[httpProtocolOptionsKey]; ok {
		prev := &httpv3.HttpProtocolOptions{}
		if a.UnmarshalTo(prev) == nil {
			opts.UpstreamProtocolOptions = prev.UpstreamProtocolOptions
		}
	} else {
		// A cluster without options speaks HTTP/1.1 upstream.
		opts.UpstreamProtocolOptions = &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
			},
		}
	}
	opts.CommonHttpProtocolOptions = common
	out := maps.Clone(existing)
	if out == nil {
		out = map[string]*anypb.Any{}
	}
	out[httpProtocolOptionsKey] = mustPack(opts)
	return out
}

// routeHashPolicy is the hash policy a route to svc's port (and subset)
// needs when its DestinationRule balances by consistent hash; nil
// otherwise. grpc-go hashes on headers only.
func routeHashPolicy(world *model.World, svc *model.Service, subset string, port int32, client routeClient) []*routev3.RouteAction_HashPolicy {
	if svc == nil {
		return nil
	}
	ch := policyFor(world.DestinationRule(svc.Hostname, client.namespace), port, subset).lb.GetConsistentHash()
	if ch == nil {
		return nil
	}
	var hp *routev3.RouteAction_HashPolicy
	switch {
	case ch.GetHttpHeaderName() != "":
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{
			Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: ch.GetHttpHeaderName()}}}
	case client.grpc:
		return nil
	case ch.GetHttpCookie() != nil:
		ck := ch.GetHttpCookie()
		c := &routev3.RouteAction_HashPolicy_Cookie{Name: ck.GetName(), Path: ck.GetPath()}
		if ck.GetTtl() != nil {
			c.Ttl = durationpb.New(ck.GetTtl().AsDuration())
		}
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: c}}
	case ch.GetUseSourceIp():
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{
			ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}
	case ch.GetHttpQueryParameterName() != "":
		hp = &routev3.RouteAction_HashPolicy{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{
			QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: ch.GetHttpQueryParameterName()}}}
	default:
		return nil
	}
	return []*routev3.RouteAction_HashPolicy{hp}
}
