package generate

import (
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	jwtv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/jwt_authn/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/emptypb"
	security "istio.io/api/security/v1beta1"

	"github.com/meshplane/meshplane/internal/jwks"
	"github.com/meshplane/meshplane/internal/model"
)

// RequestAuthentication (security.istio.io) → Envoy's jwt_authn filter, as
// Istio configures it: one provider per JWT rule of every
// RequestAuthentication that applies to the workload (policyApplies), keys
// inlined (from the rule's jwks, else the key set meshd fetched for its
// jwksUri, model.Config.JWKS). A request with a token that does not verify
// is refused (401); a request without a token passes (unless a rule says
// presence: REQUIRED), and AuthorizationPolicies decide what it may do. The
// verified payload is kept in the filter's dynamic metadata under
// "payload", where requestPrincipals and request.auth.* match.

const (
	jwtAuthnFilterName    = "envoy.filters.http.jwt_authn"
	jwtPayloadMetadataKey = "payload"
)

// unusableJWKS stands for a key set meshd does not have (not fetched yet,
// the fetch failed, invalid inline keys, no jwksUri): a valid RSA public key
// whose private half nobody has, so every token of that issuer is refused
// while requests without one still pass, as Istio does.
const unusableJWKS = `{"keys":[{"kty":"RSA","kid":"meshplane-unavailable-key-set","alg":"RS256","use":"sig","e":"AQAB",` +
	`"n":"uSow-VQt121WpKaBIE042l1MmdhTlrrMbbES-zTwToXvUHW-g3U3fwFV0pmj084CrTIQ9LPze1yECjxnqAqMOZTIGKf9d1nyv0qrKeTNLD31P5MJZ97Mkemv-Yf8xcltq3kSYcdAuM5fvrog6jnnhAASZomWy4Vtn91745yE5xRo2NYeB-6o4vEFPHZsGLPSswc1mt4ucc10ZNc3CBQBKZDr61oHP54asWdTenSz41vvn2fK6WwHg9XC4o6FeUhyN0f-3a9hho2laRZqLy_FQ5sOSsO50YrVeMb7drn13tQgje-FvWOcgmHZf0yIBZBZ0aOEk_ojbKBfZuZEnl3GqQ"}]}`

// applicableRequestAuthns returns the RequestAuthentications that apply to
// a workload of namespace ns with labels (nil: unknown workload), in
// namespace/name order.
func applicableRequestAuthns(w *model.World, ns string, labels map[string]string) []*model.RequestAuthentication {
	var out []*model.RequestAuthentication
	for _, ra := range w.Config.RequestAuthentications {
		targeted := ra.Spec.GetTargetRef() != nil || len(ra.Spec.GetTargetRefs()) > 0
		if policyApplies(w.Mesh.RootNamespace, ra.Namespace, ra.Spec.GetSelector().GetMatchLabels(), targeted, ns, labels) {
			out = append(out, ra)
		}
	}
	return out
}

// jwtAuthnFilter is the jwt_authn filter of a workload, or nil when no
// RequestAuthentication with rules applies to it.
func jwtAuthnFilter(w *model.World, ns string, wl *model.Workload) (*hcmv3.HttpFilter, error) {
	if len(w.Config.RequestAuthentications) == 0 {
		return nil, nil
	}
	providers := map[string]*jwtv3.JwtProvider{}
	var optional, required []string
	for _, ra := range applicableRequestAuthns(w, ns, workloadLabels(wl)) {
		for i, r := range ra.Spec.GetJwtRules() {
			name := ra.Namespace + "/" + ra.Name + "/" + strconv.Itoa(i)
			providers[name] = jwtProvider(w, r)
			if r.GetPresence() == security.JWTRule_REQUIRED {
				required = append(required, name)
			} else {
				optional = append(optional, name)
			}
		}
	}
	if len(providers) == 0 {
		return nil, nil
	}
	return httpFilter(jwtAuthnFilterName, &jwtv3.JwtAuthentication{
		Providers: providers,
		Rules: []*jwtv3.RequirementRule{{
			Match:           prefixSlash,
			RequirementType: &jwtv3.RequirementRule_Requires{Requires: jwtRequirement(optional, required)},
		}},
		BypassCorsPreflight: true,
	})
}

// jwtProvider is one JWT rule as a provider. A rule Envoy would refuse (a
// header name it does not accept) becomes a provider that refuses its
// issuer's tokens, so that it cannot take the listener down.
func jwtProvider(w *model.World, r *security.JWTRule) *jwtv3.JwtProvider {
	keys := unusableJWKS
	switch {
	case r.GetJwks() != "":
		if jwks.Validate([]byte(r.GetJwks())) == nil {
			keys = r.GetJwks()
		}
	case r.GetJwksUri() != "":
		if fetched := w.Config.JWKS[r.GetJwksUri()]; fetched != "" {
			keys = fetched // validated by the fetcher
		}
	}
	p := &jwtv3.JwtProvider{
		Issuer:               r.GetIssuer(),
		Audiences:            r.GetAudiences(),
		Forward:              r.GetForwardOriginalToken(),
		FromParams:           r.GetFromParams(),
		FromCookies:          r.GetFromCookies(),
		ForwardPayloadHeader: r.GetOutputPayloadToHeader(),
		PayloadInMetadata:    jwtPayloadMetadataKey,
		// Space-separated claims become lists, so that a rule can match
		// one scope of many (Istio: scope and permission, plus the rule's).
		NormalizePayloadInMetadata: &jwtv3.JwtProvider_NormalizePayload{
			SpaceDelimitedClaims: spaceDelimitedClaims(r.GetSpaceDelimitedClaims()),
		},
		JwksSourceSpecifier: inlineJWKS(keys),
	}
	for _, h := range r.GetFromHeaders() {
		p.FromHeaders = append(p.FromHeaders, &jwtv3.JwtHeader{Name: h.GetName(), ValuePrefix: h.GetPrefix()})
	}
	for _, c := range r.GetOutputClaimToHeaders() {
		p.ClaimToHeaders = append(p.ClaimToHeaders, &jwtv3.JwtClaimToHeader{HeaderName: c.GetHeader(), ClaimName: c.GetClaim()})
	}
	if p.ValidateAll() != nil {
		return &jwtv3.JwtProvider{Issuer: r.GetIssuer(), PayloadInMetadata: jwtPayloadMetadataKey, JwksSourceSpecifier: inlineJWKS(unusableJWKS)}
	}
	return p
}

func inlineJWKS(keys string) *jwtv3.JwtProvider_LocalJwks {
	return &jwtv3.JwtProvider_LocalJwks{LocalJwks: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: keys}}}
}

func spaceDelimitedClaims(extra []string) []string {
	out := append([]string{"scope", "permission"}, extra...)
	slices.Sort(out)
	return slices.Compact(out)
}

// jwtRequirement is Istio's requirement: each optional provider verifies
// its token or finds none (a token of another issuer counts as none), and
// alternatively any one provider verifies alone (providers sharing a
// header); every required provider must verify.
func jwtRequirement(optional, required []string) *jwtv3.JwtRequirement {
	provider := func(name string) *jwtv3.JwtRequirement {
		return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_ProviderName{ProviderName: name}}
	}
	anyOf := func(rs ...*jwtv3.JwtRequirement) *jwtv3.JwtRequirement {
		return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAny{RequiresAny: &jwtv3.JwtRequirementOrList{Requirements: rs}}}
	}
	allOf := func(rs ...*jwtv3.JwtRequirement) *jwtv3.JwtRequirement {
		return &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_RequiresAll{RequiresAll: &jwtv3.JwtRequirementAndList{Requirements: rs}}}
	}
	providerOrMissing := func(name string) *jwtv3.JwtRequirement {
		return anyOf(provider(name), &jwtv3.JwtRequirement{RequiresType: &jwtv3.JwtRequirement_AllowMissing{AllowMissing: &emptypb.Empty{}}})
	}
	var parts []*jwtv3.JwtRequirement
	for _, name := range required {
		parts = append(parts, provider(name))
	}
	switch len(optional) {
	case 0:
	case 1:
		parts = append(parts, providerOrMissing(optional[0]))
	default:
		var alone, each []*jwtv3.JwtRequirement
		for _, name := range optional {
			alone = append(alone, provider(name))
			each = append(each, providerOrMissing(name))
		}
		parts = append(parts, anyOf(append(alone, allOf(each...))...))
	}
	if len(parts) == 1 {
		return parts[0]
	}
	return allOf(parts...)
}

// jwtClaim matches a claim of the verified JWT payload (nested claims by
// path), as a string or as one element of a list.
func jwtClaim(claims []string, m *matcherv3.StringMatcher) *rbacv3.Principal {
	str := &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}}
	return jwtMetadata(claims, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_OrMatch{OrMatch: &matcherv3.OrMatcher{ValueMatchers: []*matcherv3.ValueMatcher{
		str,
		{MatchPattern: &matcherv3.ValueMatcher_ListMatch{ListMatch: &matcherv3.ListMatcher{MatchPattern: &matcherv3.ListMatcher_OneOf{OneOf: str}}}},
	}}}})
}

// jwtMetadata matches the value at a claim path of the verified payload.
func jwtMetadata(claims []string, value *matcherv3.ValueMatcher) *rbacv3.Principal {
	path := []*matcherv3.MetadataMatcher_PathSegment{{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: jwtPayloadMetadataKey}}}
	for _, c := range claims {
		path = append(path, &matcherv3.MetadataMatcher_PathSegment{Segment: &matcherv3.MetadataMatcher_PathSegment_Key{Key: c}})
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Metadata{Metadata: &matcherv3.MetadataMatcher{
		Filter: jwtAuthnFilterName,
		Path:   path,
		Value:  value,
	}}}
}

// claimPrincipal matches values of a JWT claim (request.auth.claims[...],
// audiences, presenter), in Istio's value syntax.
func claimPrincipal(claims []string) func(string) (*rbacv3.Principal, error) {
	return func(v string) (*rbacv3.Principal, error) { return jwtClaim(claims, authzStringMatcher(v, false)), nil }
}

// requestPrincipal matches "<iss>/<sub>" of the verified JWT (the issuer
// may hold slashes: the subject is after the last one), with Istio's
// wildcards: "*" any, "*/<sub>" any issuer, "<iss>/*" any subject, and
// prefix/suffix forms.
func requestPrincipal(v string) (*rbacv3.Principal, error) {
	anyValue := regexMatcher(".+")
	exact := func(s string) *matcherv3.StringMatcher {
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: s}}
	}
	i := strings.LastIndexByte(v, '/')
	iss, sub := v, ""
	if i >= 0 {
		iss, sub = v[:i], v[i+1:]
	}
	var matchIss, matchSub *matcherv3.StringMatcher
	switch {
	case v == "*":
		matchIss, matchSub = anyValue, anyValue
	case strings.HasPrefix(v, "*") && i >= 0:
		matchIss, matchSub = authzStringMatcher(iss, false), exact(sub)
	case strings.HasPrefix(v, "*"):
		matchIss, matchSub = anyValue, authzStringMatcher(v, false)
	case strings.HasSuffix(v, "*") && i >= 0:
		matchIss, matchSub = exact(iss), authzStringMatcher(sub, false)
	case strings.HasSuffix(v, "*"):
		matchIss, matchSub = authzStringMatcher(v, false), anyValue
	default:
		matchIss, matchSub = exact(iss), exact(sub)
	}
	claim := func(name string, m *matcherv3.StringMatcher) *rbacv3.Principal {
		return jwtMetadata([]string{name}, &matcherv3.ValueMatcher{MatchPattern: &matcherv3.ValueMatcher_StringMatch{StringMatch: m}})
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: []*rbacv3.Principal{
		claim("iss", matchIss),
		claim("sub", matchSub),
	}}}}, nil
}
