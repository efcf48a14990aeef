package generate

import (
	"slices"
	"strconv"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rawbufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/raw_buffer/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// Mesh mTLS. Certificates never travel in xDS: Envoy fetches them from
// mesh-agent over SDS (the bootstrap's SDSClusterName cluster, secrets
// SecretWorkloadCert and SecretRootCA), and proxyless gRPC reads them through
// the certificate provider instance CertProviderInstance of its bootstrap
// (mesh-agent's files). Names match Istio's, so Istio's proxies and
// bootstraps work unchanged.
const (
	SDSClusterName       = "sds-grpc"
	SecretWorkloadCert   = "default"
	SecretRootCA         = "ROOTCA"
	CertProviderInstance = "default"

	// transportSocketMatchKey is the endpoint metadata filter Envoy reads to
	// pick a cluster's transport_socket_matches entry.
	transportSocketMatchKey = "envoy.transport_socket_match"
)

// agentSDS fetches secrets from mesh-agent's SDS server.
var agentSDS = &corev3.ConfigSource{
	ResourceApiVersion: corev3.ApiVersion_V3,
	ConfigSourceSpecifier: &corev3.ConfigSource_ApiConfigSource{ApiConfigSource: &corev3.ApiConfigSource{
		ApiType:             corev3.ApiConfigSource_GRPC,
		TransportApiVersion: corev3.ApiVersion_V3,
		GrpcServices: []*corev3.GrpcService{{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: SDSClusterName},
		}}},
	}},
}

// meshTLSEndpointMetadata marks an endpoint whose workload terminates mesh
// mTLS, for the "tlsMode-istio" transport socket match.
var meshTLSEndpointMetadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
	transportSocketMatchKey: {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(model.TLSModeIstio)}},
}}

// meshCommonTLS presents the workload certificate and trusts the mesh root;
// sans (exact SPIFFE URIs, or one "prefix:" entry) restrict the peer, when
// given. grpc-go reads match_subject_alt_names and provider instances only.
func meshCommonTLS(grpc bool, sans []string) *tlsv3.CommonTlsContext {
	validation := &tlsv3.CertificateValidationContext{}
	for _, san := range sans {
		m := &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: san}}
		if p, ok := strings.CutPrefix(san, "prefix:"); ok {
			m = &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: p}}
		}
		if grpc {
			validation.MatchSubjectAltNames = append(validation.MatchSubjectAltNames, m)
		} else {
			validation.MatchTypedSubjectAltNames = append(validation.MatchTypedSubjectAltNames,
				&tlsv3.SubjectAltNameMatcher{SanType: tlsv3.SubjectAltNameMatcher_URI, Matcher: m})
		}
	}
	if grpc {
		validation.CaCertificateProviderInstance = &tlsv3.CertificateProviderPluginInstance{
			InstanceName: CertProviderInstance, CertificateName: SecretRootCA,
		}
		return &tlsv3.CommonTlsContext{
			TlsCertificateProviderInstance: &tlsv3.CertificateProviderPluginInstance{
				InstanceName: CertProviderInstance, CertificateName: SecretWorkloadCert,
			},
			ValidationContextType: &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: validation},
		}
	}
	return &tlsv3.CommonTlsContext{
		TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: SecretWorkloadCert, SdsConfig: agentSDS}},
		ValidationContextType: &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         validation,
				ValidationContextSdsSecretConfig: &tlsv3.SdsSecretConfig{Name: SecretRootCA, SdsConfig: agentSDS},
			},
		},
	}
}

// meshUpstreamTLS originates mesh mTLS to a cluster's endpoints.
func meshUpstreamTLS(grpc bool, sans []string, sni string) *corev3.TransportSocket {
	ctx := &tlsv3.UpstreamTlsContext{CommonTlsContext: meshCommonTLS(grpc, sans)}
	if !grpc {
		ctx.Sni = sni
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustPack(ctx)},
	}
}

// meshDownstreamTLS terminates mesh mTLS on an inbound filter chain: the
// client must present a certificate of the mesh CA (its identity is checked
// by authorization policies, not here).
func meshDownstreamTLS(grpc bool) *corev3.TransportSocket {
	ctx := &tlsv3.DownstreamTlsContext{
		CommonTlsContext:         meshCommonTLS(grpc, nil),
		RequireClientCertificate: wrapperspb.Bool(true),
	}
	return &corev3.TransportSocket{
		Name:       wellknown.TransportSocketTLS,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustPack(ctx)},
	}
}

var rawBufferSocket = &corev3.TransportSocket{
	Name:       wellknown.TransportSocketRawBuffer,
	ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustPack(&rawbufferv3.RawBuffer{})},
}

// meshSNI is Istio's SNI for mesh traffic to a cluster:
// outbound_.<port>_.<subset>_.<host>.
func meshSNI(cluster string) string {
	parts := strings.SplitN(cluster, "|", 4)
	if len(parts) != 4 {
		return ""
	}
	return "outbound_." + parts[1] + "_." + parts[2] + "_." + parts[3]
}

// serviceTLS is what decides the mesh mTLS of a Service's clusters: the
// mode its namespace (or the mesh) declares, whether its endpoints' workloads
// run a mesh proxy, and their identities.
type serviceTLS struct {
	// disabled: a namespace- or mesh-wide PeerAuthentication says DISABLE, so
	// clients do not originate mTLS on their own (as Istio infers it).
	disabled bool
	// anyMesh, allMesh: some / every endpoint carries the tlsMode label.
	anyMesh, allMesh bool
	// sans are the SPIFFE URIs of the endpoints' service accounts, sorted;
	// a trust-domain prefix when no endpoint names one.
	sans []string
}

// serviceTLSFor reads svc's mesh mTLS facts from world. It depends on the
// world's PeerAuthentications and mesh config and on svc's endpoints.
func serviceTLSFor(world *model.World, svc *model.Service) serviceTLS {
	st := serviceTLS{allMesh: len(svc.Endpoints) > 0}
	for _, ep := range svc.Endpoints {
		if !ep.MeshTLS() {
			st.allMesh = false
			continue
		}
		st.anyMesh = true
		if ep.ServiceAccount != "" {
			st.sans = append(st.sans, spiffeID(world.Mesh.TrustDomain, svc.Namespace, ep.ServiceAccount))
		}
	}
	slices.Sort(st.sans)
	st.sans = slices.Compact(st.sans)
	if len(st.sans) == 0 {
		st.sans = []string{"prefix:spiffe://" + trustDomain(world) + "/"}
	}
	st.disabled = world.UsesPeerAuthentication() &&
		world.PeerAuthenticationMode(svc.Namespace, nil, 0) == model.MTLSDisable
	return st
}

// key identifies the facts, for caches and for telling whether an endpoint
// change altered clusters.
func (st serviceTLS) key() string {
	return strconv.FormatBool(st.disabled) + strconv.FormatBool(st.anyMesh) + strconv.FormatBool(st.allMesh) +
		"\x00" + strings.Join(st.sans, "\x00")
}

// auto reports whether clients originate mesh mTLS on their own (automatic
// mTLS): to the endpoints that run a mesh proxy for Envoy, which picks the
// transport socket per endpoint, and only when all of them do for gRPC,
// whose clusters have one transport socket.
func (st serviceTLS) auto(grpc bool) bool {
	if st.disabled || !st.anyMesh {
		return false
	}
	return !grpc || st.allMesh
}

// affectsClusters reports whether st changes any cluster (automatically or
// through a rule's ISTIO_MUTUAL).
func (st serviceTLS) affectsClusters(world *model.World) bool {
	return st.anyMesh || len(world.Config.DestinationRules) > 0
}

func spiffeID(trustDomain, ns, sa string) string {
	if trustDomain == "" {
		trustDomain = model.DefaultTrustDomain
	}
	return "spiffe://" + trustDomain + "/ns/" + ns + "/sa/" + sa
}

func trustDomain(world *model.World) string {
	if world.Mesh.TrustDomain == "" {
		return model.DefaultTrustDomain
	}
	return world.Mesh.TrustDomain
}

// secureCluster returns c, or a copy of it with the mesh's mTLS:
// DestinationRule tls ISTIO_MUTUAL forces it (with the rule's
// subjectAltNames, if any); other tls modes were applied by the rule
// already; without tls, automatic mTLS applies. Clusters that forward to
// the dialled address or to resolved names are left alone unless forced:
// their endpoints carry no labels to tell.
func secureCluster(c *clusterv3.Cluster, st serviceTLS, tls *networking.ClientTLSSettings, grpc bool) *clusterv3.Cluster {
	switch {
	case tls.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL:
		sans := st.sans
		if len(tls.GetSubjectAltNames()) > 0 {
			sans = tls.GetSubjectAltNames()
		}
		c = cloneCluster(c)
		c.TransportSocket = meshUpstreamTLS(grpc, sans, meshSNI(c.Name))
		return c
	case tls != nil || !st.auto(grpc) || c.GetType() != clusterv3.Cluster_EDS:
		return c
	}
	c = cloneCluster(c)
	ts := meshUpstreamTLS(grpc, st.sans, meshSNI(c.Name))
	if grpc {
		c.TransportSocket = ts
		return c
	}
	c.TransportSocketMatches = []*clusterv3.Cluster_TransportSocketMatch{
		{
			Name:            "tlsMode-" + model.TLSModeIstio,
			Match:           &structpb.Struct{Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(model.TLSModeIstio)}},
			TransportSocket: ts,
		},
		{Name: "tlsMode-disabled", Match: &structpb.Struct{}, TransportSocket: rawBufferSocket},
	}
	return c
}
