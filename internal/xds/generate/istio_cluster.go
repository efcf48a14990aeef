package generate

import (
	"maps"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
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
	tls     *networking.ClientTLSSettings
}

func (p *policy) apply(tp *networking.TrafficPolicy, port int32) {
	if tp == nil {
		return
	}
	p.set(tp.GetLoadBalancer(), tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetTls())
	for _, pl := range tp.GetPortLevelSettings() {
		if int32(pl.GetPort().GetNumber()) == port {
			p.set(pl.GetLoadBalancer(), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetTls())
		}
	}
}

func (p *policy) set(lb *networking.LoadBalancerSettings, pool *networking.ConnectionPoolSettings, outlier *networking.OutlierDetection, tls *networking.ClientTLSSettings) {
	if tls != nil {
		p.tls = tls
	}
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

func (p policy) empty() bool { return p.lb == nil && p.pool == nil && p.outlier == nil && p.tls == nil }

// ruleClusters returns svc's clusters for port under dr (nil: none): the
// Service's cluster with the rule's policy, then one per subset, sorted by
// name. base builds the cluster without any rule (outboundCluster or
// grpcCluster); subset clusters use EDS even for headless Services (their
// endpoints are a selection).
func ruleClusters(svc *model.Service, port model.ServicePort, dr *model.DestinationRule, grpc bool,
	base func(*model.Service, model.ServicePort) *clusterv3.Cluster, st serviceTLS,
) []types.Resource {
	c := base(svc, port)
	p := policyFor(dr, port.Port, "")
	if !p.empty() {
		c = withPolicy(c, p, grpc)
	}
	c = secureCluster(c, st, p.tls, grpc)
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
		p := policyFor(dr, port.Port, s.GetName())
		if !p.empty() {
			sc = withPolicy(sc, p, grpc)
		}
		out = append(out, secureCluster(sc, st, p.tls, grpc))
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
			func(ep *model.Endpoint) bool { return model.LabelsMatch(labels, ep.Labels) }))
	}
	return out
}

// cloneCluster copies c (a DestinationRule's clusters are built once per
// Service and rule, so the copy is not on a per-proxy path).
func cloneCluster(c *clusterv3.Cluster) *clusterv3.Cluster {
	return proto.Clone(c).(*clusterv3.Cluster)
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
		// Limits the pool sets replace the defaults (Envoy's for gRPC, the
		// lifted ones for Envoy clusters); the others stay.
		th := &clusterv3.CircuitBreakers_Thresholds{Priority: corev3.RoutingPriority_DEFAULT}
		if ths := c.GetCircuitBreakers().GetThresholds(); len(ths) > 0 {
			th = proto.Clone(ths[0]).(*clusterv3.CircuitBreakers_Thresholds)
		}
		set := false
		limit := func(dst **wrapperspb.UInt32Value, v int32) {
			if v > 0 {
				*dst = wrapperspb.UInt32(uint32(v))
				set = true
			}
		}
		limit(&th.MaxConnections, pool.GetTcp().GetMaxConnections())
		limit(&th.MaxPendingRequests, pool.GetHttp().GetHttp1MaxPendingRequests())
		limit(&th.MaxRequests, pool.GetHttp().GetHttp2MaxRequests())
		limit(&th.MaxRetries, pool.GetHttp().GetMaxRetries())
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
	if ts := upstreamTLS(p.tls, c.Name); ts != nil && !grpc {
		c.TransportSocket = ts
	}
	if od := p.outlier; od != nil {
		c.OutlierDetection = outlierDetection(od)
		if !grpc {
			// minHealthPercent defaults to 0 (no panic mode), not Envoy's
			// 50%: with few pods, panic would send to ejected ones.
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: float64(max(od.GetMinHealthPercent(), 0))}}
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
		// Unset keeps Envoy's defaults (5, enforced), as the API documents.
		out.Consecutive_5Xx = wrapperspb.UInt32(five.GetValue())
		out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(100)
		if five.GetValue() == 0 {
			out.EnforcingConsecutive_5Xx = wrapperspb.UInt32(0)
		}
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

// upstreamTLS originates TLS to a cluster's endpoints (SIMPLE: verify the
// server; MUTUAL: also present a client certificate). Certificates come
// from files on the proxy (clientCertificate, privateKey, caCertificates)
// or, with credentialName, from a TLS Secret of the proxy's namespace over
// SDS ("kubernetes://<name>", CA "kubernetes://<name>-cacert"). DISABLE
// gives none; ISTIO_MUTUAL is the mesh's own mTLS (secureCluster).
// Proxyless gRPC takes certificates from its bootstrap's providers, not
// from clusters, so it gets none either.
func upstreamTLS(t *networking.ClientTLSSettings, cluster string) *corev3.TransportSocket {
	if t == nil || t.GetMode() != networking.ClientTLSSettings_SIMPLE && t.GetMode() != networking.ClientTLSSettings_MUTUAL {
		return nil
	}
	common := &tlsv3.CommonTlsContext{}
	validation := &tlsv3.CertificateValidationContext{}
	for _, san := range t.GetSubjectAltNames() {
		validation.MatchTypedSubjectAltNames = append(validation.MatchTypedSubjectAltNames, &tlsv3.SubjectAltNameMatcher{
			SanType: tlsv3.SubjectAltNameMatcher_DNS,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}},
		})
	}
	if name := t.GetCredentialName(); name != "" {
		secret := "kubernetes://" + name
		if t.GetMode() == networking.ClientTLSSettings_MUTUAL {
			common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{{Name: secret, SdsConfig: adsSource}}
		}
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         validation,
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: secret + "-cacert", SdsConfig: adsSource},
			},
		}
	} else {
		if t.GetMode() == networking.ClientTLSSettings_MUTUAL && t.GetClientCertificate() != "" {
			common.TlsCertificates = []*tlsv3.TlsCertificate{{
				CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.GetClientCertificate()}},
				PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: t.GetPrivateKey()}},
			}}
		}
		if ca := t.GetCaCertificates(); ca != "" {
			validation.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: ca}}
		}
		if validation.TrustedCa != nil || len(validation.MatchTypedSubjectAltNames) > 0 {
			common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: validation}
		}
	}
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: common, Sni: t.GetSni()}
	if ctx.Sni == "" {
		// outbound|port|subset|host: the host is what the server expects.
		if i := strings.LastIndexByte(cluster, '|'); i >= 0 && !strings.HasPrefix(cluster[i+1:], "*") {
			ctx.Sni = cluster[i+1:]
		}
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustPack(ctx)},
	}
}

// ruleSecrets are the SDS secrets the DestinationRules visible from ns
// name with credentialName, that exist in ns: "kubernetes://<name>" (for
// MUTUAL) and "kubernetes://<name>-cacert" (its ca.crt).
func ruleSecrets(world *model.World, ns string) []types.Resource {
	seen := map[string]bool{}
	var out []types.Resource
	add := func(t *networking.ClientTLSSettings) {
		name := t.GetCredentialName()
		if name == "" || seen[name] || t.GetMode() != networking.ClientTLSSettings_SIMPLE && t.GetMode() != networking.ClientTLSSettings_MUTUAL {
			return
		}
		seen[name] = true
		cred := world.Credential(ns, name)
		if cred == nil {
			return
		}
		if r := tlsCertificateSecret("kubernetes://"+name, cred); r != nil {
			out = append(out, r)
		}
		if len(cred.CA) > 0 {
			out = append(out, validationSecret("kubernetes://"+name+"-cacert", cred))
		}
	}
	visit := func(tp *networking.TrafficPolicy) {
		add(tp.GetTls())
		for _, pl := range tp.GetPortLevelSettings() {
			add(pl.GetTls())
		}
	}
	for _, dr := range world.Config.DestinationRules {
		if !model.Exported(dr.Spec.GetExportTo(), dr.Namespace, ns) {
			continue
		}
		visit(dr.Spec.GetTrafficPolicy())
		for _, s := range dr.Spec.GetSubsets() {
			visit(s.GetTrafficPolicy())
		}
	}
	sortByName(out)
	return out
}
