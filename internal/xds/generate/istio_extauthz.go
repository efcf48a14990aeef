package generate

import (
	"fmt"
	"slices"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	extauthzv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/ext_authz/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	extauthznetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/ext_authz/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/meshplane/meshplane/internal/model"
)

// CUSTOM AuthorizationPolicies → ext_authz, as Istio does it: per provider
// an RBAC filter holding the CUSTOM rules as shadow rules (never enforced;
// a match only records the policy's name in the filter's dynamic metadata)
// and the ext_authz filter, enabled by that metadata, so that only the
// requests a CUSTOM rule matches are sent to the external authorizer. The
// shadow rules' stat prefix (one per provider) prefixes the metadata key,
// which keeps the verdicts of several providers apart.
//
// The authorizer is called through the outbound cluster of its Service,
// outbound|<port>||<fqdn>. A provider that is not configured, whose Service
// the proxy does not see or whose port the Service does not have, cannot be
// called: its CUSTOM rules deny the requests they match instead.

// Namespaces of the RBAC filters' dynamic metadata (fixed by Envoy,
// whatever the filter instance is named).
const (
	rbacHTTPMetadataNamespace    = "envoy.filters.http.rbac"
	rbacNetworkMetadataNamespace = "envoy.filters.network.rbac"
)

const (
	extAuthzFilterName = "istio.ext_authz." // + provider
	// extAuthzHTTPTimeout is the check timeout of an HTTP provider that
	// sets none (Envoy requires one; Istio's placeholder).
	extAuthzHTTPTimeout = 600 * time.Second
)

// extAuthzShadowPrefix is the shadow rules' stat prefix of a provider's
// CUSTOM RBAC filter.
func extAuthzShadowPrefix(provider string) string {
	return "istio_ext_authz_" + statSafe(provider) + "_"
}

// statSafe maps a name onto the characters of a stat name segment.
func statSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// extAuthzEnabled matches requests a CUSTOM rule of provider matched: the
// shadow engine recorded the policy that matched.
func extAuthzEnabled(metadataNamespace, provider string) *matcherv3.MetadataMatcher {
	return &matcherv3.MetadataMatcher{
		Filter: metadataNamespace,
		Path: []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{
			Key: extAuthzShadowPrefix(provider) + "shadow_effective_policy_id",
		}}},
		Value: &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_PresentMatch{PresentMatch: true}},
	}
}

// extAuthzTarget is a provider resolved against the proxy's world.
type extAuthzTarget struct {
	model.ExtAuthzProvider
	host, cluster string
}

// resolveExtAuthz finds provider in the mesh config and its Service in w;
// the error says why it cannot be called.
func resolveExtAuthz(w *model.World, provider string) (extAuthzTarget, error) {
	p, ok := w.Mesh.ExtAuthz.Lookup(provider)
	if !ok {
		return extAuthzTarget{}, fmt.Errorf("extension provider %q is not in the mesh config", provider)
	}
	host := p.Service
	if ns, h, ok := strings.Cut(p.Service, "/"); ok {
		host = w.QualifyHost(h, ns)
	} else if strings.Contains(host, ".") {
		host = w.QualifyHost(host, "")
	} else {
		return extAuthzTarget{}, fmt.Errorf("extension provider %q: service %q is neither <namespace>/<host> nor a fully qualified host", provider, p.Service)
	}
	svc := w.ServiceByHostname(host)
	if svc == nil || strings.HasPrefix(host, "*") {
		return extAuthzTarget{}, fmt.Errorf("extension provider %q: service %q is not a Service this proxy sees", provider, p.Service)
	}
	if !slices.ContainsFunc(svc.Ports, func(sp model.ServicePort) bool { return uint32(sp.Port) == p.Port }) {
		return extAuthzTarget{}, fmt.Errorf("extension provider %q: service %q has no port %d", provider, p.Service, p.Port)
	}
	return extAuthzTarget{ExtAuthzProvider: p, host: host, cluster: OutboundClusterName(int32(p.Port), "", host)}, nil
}

// extAuthzHTTPFilters are the shadow RBAC and ext_authz filters of one
// provider's CUSTOM rules; nil when the provider cannot be called.
func extAuthzHTTPFilters(w *model.World, provider string, rules map[string]*rbacv3.Policy) ([]*hcmv3.HttpFilter, error) {
	t, err := resolveExtAuthz(w, provider)
	if err != nil {
		return nil, nil
	}
	cfg := &extauthzv3.ExtAuthz{
		TransportApiVersion:   corev3.ApiVersion_V3,
		FailureModeAllow:      t.FailOpen,
		StatusOnError:         httpStatus(t.StatusOnError),
		WithRequestBody:       bufferSettings(t.IncludeRequestBodyInCheck),
		FilterEnabledMetadata: extAuthzEnabled(rbacHTTPMetadataNamespace, provider),
	}
	if t.GRPC {
		cfg.Services = &extauthzv3.ExtAuthz_GrpcService{GrpcService: t.grpcService()}
	} else {
		timeout := t.Timeout
		if timeout <= 0 {
			timeout = extAuthzHTTPTimeout
		}
		svc := &extauthzv3.HttpService{
			ServerUri: &corev3.HttpUri{
				Uri:              "http://" + hostPort(t.host, int32(t.Port)), // required; the cluster decides where it goes
				HttpUpstreamType: &corev3.HttpUri_Cluster{Cluster: t.cluster},
				Timeout:          durationpb.New(timeout),
			},
			PathPrefix: t.PathPrefix,
		}
		if len(t.IncludeAdditionalHeadersInCheck) > 0 {
			req := &extauthzv3.AuthorizationRequest{}
			for _, k := range sortedKeys(t.IncludeAdditionalHeadersInCheck) {
				req.HeadersToAdd = append(req.HeadersToAdd, &corev3.HeaderValue{Key: k, Value: t.IncludeAdditionalHeadersInCheck[k]})
			}
			svc.AuthorizationRequest = req
		}
		if len(t.HeadersToUpstreamOnAllow) > 0 || len(t.HeadersToDownstreamOnAllow) > 0 || len(t.HeadersToDownstreamOnDeny) > 0 {
			svc.AuthorizationResponse = &extauthzv3.AuthorizationResponse{
				AllowedUpstreamHeaders:        headerNames(t.HeadersToUpstreamOnAllow),
				AllowedClientHeadersOnSuccess: headerNames(t.HeadersToDownstreamOnAllow),
				AllowedClientHeaders:          headerNames(t.HeadersToDownstreamOnDeny),
			}
		}
		cfg.Services = &extauthzv3.ExtAuthz_HttpService{HttpService: svc}
		cfg.AllowedHeaders = headerNames(t.IncludeRequestHeadersInCheck)
	}
	if cfg.ValidateAll() != nil {
		return nil, nil // settings Envoy would refuse: deny instead
	}
	shadow, err := httpFilter(authzCustomFilterName+provider, &rbachttpv3.RBAC{
		ShadowRules:           &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: rules},
		ShadowRulesStatPrefix: extAuthzShadowPrefix(provider),
	})
	if err != nil {
		return nil, err
	}
	ext, err := httpFilter(extAuthzFilterName+provider, cfg)
	if err != nil {
		return nil, err
	}
	return []*hcmv3.HttpFilter{shadow, ext}, nil
}

// extAuthzNetworkFilters are extAuthzHTTPFilters for a TCP chain: only a
// gRPC provider can check a connection. usable is false when the provider
// cannot be called (its rules then deny); an HTTP provider gives no filters
// and usable true: its CUSTOM rules do not apply to TCP (Istio).
func extAuthzNetworkFilters(w *model.World, provider string, rules map[string]*rbacv3.Policy) (filters []*listenerv3.Filter, usable bool, err error) {
	t, err := resolveExtAuthz(w, provider)
	if err != nil {
		return nil, false, nil
	}
	if !t.GRPC {
		return nil, true, nil
	}
	cfg := &extauthznetv3.ExtAuthz{
		StatPrefix:            tcpRBACStatPrefix,
		GrpcService:           t.grpcService(),
		FailureModeAllow:      t.FailOpen,
		TransportApiVersion:   corev3.ApiVersion_V3,
		FilterEnabledMetadata: extAuthzEnabled(rbacNetworkMetadataNamespace, provider),
	}
	if cfg.ValidateAll() != nil {
		return nil, false, nil
	}
	shadow, err := networkFilter(authzCustomFilterName+provider, &rbacnetv3.RBAC{
		StatPrefix:            tcpRBACStatPrefix,
		ShadowRules:           &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: rules},
		ShadowRulesStatPrefix: extAuthzShadowPrefix(provider),
	})
	if err != nil {
		return nil, false, err
	}
	ext, err := networkFilter(extAuthzFilterName+provider, cfg)
	if err != nil {
		return nil, false, err
	}
	return []*listenerv3.Filter{shadow, ext}, true, nil
}

// grpcService calls the authorizer over the ADS-fed cluster. The authority
// is the Service's host: the cluster name's "|" is not valid there.
func (t extAuthzTarget) grpcService() *corev3.GrpcService {
	g := &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{
		ClusterName: t.cluster,
		Authority:   t.host,
	}}}
	if t.Timeout > 0 {
		g.Timeout = durationpb.New(t.Timeout)
	}
	return g
}

func httpStatus(code uint32) *typev3.HttpStatus {
	if _, ok := typev3.StatusCode_name[int32(code)]; !ok || code == 0 {
		return nil
	}
	return &typev3.HttpStatus{Code: typev3.StatusCode(code)}
}

func bufferSettings(b *model.ExtAuthzBody) *extauthzv3.BufferSettings {
	if b == nil {
		return nil
	}
	return &extauthzv3.BufferSettings{MaxRequestBytes: b.MaxRequestBytes, AllowPartialMessage: b.AllowPartialMessage, PackAsBytes: b.PackAsBytes}
}

// headerNames matches header names in Istio's syntax ("x-*" prefix, "*-x"
// suffix), case-insensitively; nil for none.
func headerNames(names []string) *matcherv3.ListStringMatcher {
	if len(names) == 0 {
		return nil
	}
	l := &matcherv3.ListStringMatcher{}
	for _, n := range names {
		l.Patterns = append(l.Patterns, authzStringMatcher(n, true))
	}
	return l
}
