package generate

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	rbacv3 "github.com/envoyproxy/go-control-plane/envoy/config/rbac/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	rbacnetv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/rbac/v3"
	uritemplatev3 "github.com/envoyproxy/go-control-plane/envoy/extensions/path/match/uri_template/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	security "istio.io/api/security/v1beta1"

	"github.com/meshplane/meshplane/internal/model"
)

// AuthorizationPolicy (security.istio.io) → Envoy RBAC, as Istio translates
// it for the inbound side of a workload.
//
// Which policies apply (applicableAuthz): those of the root namespace
// without a selector (mesh-wide), those of the workload's namespace without
// a selector, and those of either namespace whose selector matches the
// workload's labels. A policy with targetRef(s) attaches to a Gateway or a
// waypoint's Service, never to a sidecar or a gRPC server, and is skipped.
//
// Each Istio rule becomes one RBAC policy named ns[<ns>]-policy[<name>]-rule[<i>]:
// its from entries the policy's principals, its to entries its permissions,
// its when conditions ANDed into every principal or permission (as Istio
// splits them). The filters run CUSTOM (ext_authz, istio_extauthz.go), AUDIT
// (action LOG, so that denied requests are audited too, as in Istio), DENY,
// then ALLOW; an ALLOW filter is present whenever an ALLOW policy applies,
// even without rules, so that "no rule matches" denies.
//
// Where a field cannot be honoured (HTTP attributes on a TCP port, JWT or
// SNI attributes on a gRPC server, a value that does not parse), Istio's
// rule applies and errs on the side of denying: an ALLOW rule using it is
// left out (less is allowed), a DENY, AUDIT or CUSTOM rule drops the
// condition (it matches more).

// authzTarget is where a generated RBAC config is enforced; it decides which
// attributes can be honoured.
type authzTarget int

const (
	// targetHTTP is Envoy's HTTP RBAC filter: every attribute.
	targetHTTP authzTarget = iota
	// targetTCP is Envoy's network RBAC filter: connection attributes only.
	targetTCP
	// targetGRPC is grpc-go's HTTP RBAC filter (gRFC A41): no dynamic
	// metadata (JWT claims), no SNI, no URI templates, no grpc-* or :scheme
	// header matchers.
	targetGRPC
)

func (t authzTarget) String() string {
	switch t {
	case targetTCP:
		return "TCP"
	case targetGRPC:
		return "proxyless gRPC"
	}
	return "HTTP"
}

// Filter names. Instances get distinct names: grpc-go refuses an HTTP filter
// list with a name twice.
const (
	authzAuditFilterName  = "istio.authorization.audit"
	authzDenyFilterName   = "istio.authorization.deny"
	authzAllowFilterName  = "istio.authorization.allow"
	authzCustomFilterName = "istio.authorization.custom." // + provider
	// tcpRBACStatPrefix is Istio's stat prefix of the network RBAC filter.
	tcpRBACStatPrefix = "tcp."
)

// applicableAuthz returns the AuthorizationPolicies that apply to a workload
// of namespace ns with labels (nil when the workload is unknown: then only
// policies without a selector apply), in namespace/name order.
func applicableAuthz(w *model.World, ns string, labels map[string]string) []*model.AuthorizationPolicy {
	var out []*model.AuthorizationPolicy
	for _, ap := range w.Config.AuthorizationPolicies {
		targeted := ap.Spec.GetTargetRef() != nil || len(ap.Spec.GetTargetRefs()) > 0
		if policyApplies(w.Mesh.RootNamespace, ap.Namespace, ap.Spec.GetSelector().GetMatchLabels(), targeted, ns, labels) {
			out = append(out, ap)
		}
	}
	return out
}

// policyApplies is Istio's attachment rule for AuthorizationPolicy and
// RequestAuthentication: a policy of the workload's namespace or of the
// root namespace, without a selector or with one matching the labels (a
// root-namespace selector matches workloads of every namespace).
func policyApplies(root, policyNS string, selector map[string]string, targeted bool, ns string, labels map[string]string) bool {
	if targeted || policyNS != ns && (root == "" || policyNS != root) {
		return false
	}
	return len(selector) == 0 || labels != nil && model.LabelsMatch(selector, labels)
}

func workloadLabels(wl *model.Workload) map[string]string {
	if wl == nil {
		return nil
	}
	return wl.Labels
}

// authzPolicies are the RBAC policies of the AuthorizationPolicies that
// apply to one workload port, by action.
type authzPolicies struct {
	audit, deny, allow map[string]*rbacv3.Policy
	// allowApplies: some ALLOW policy applies (then requests matching no
	// allow policy are denied, even when allow is empty).
	allowApplies bool
	// custom holds the CUSTOM rules by provider name.
	custom map[string]map[string]*rbacv3.Policy
}

// buildAuthzPolicies translates the AuthorizationPolicies applying to the
// workload for target; port is the destination port the filters guard (0:
// unknown, then port conditions are left to Envoy).
func buildAuthzPolicies(w *model.World, ns string, wl *model.Workload, port uint32, target authzTarget) authzPolicies {
	var out authzPolicies
	add := func(m *map[string]*rbacv3.Policy, name string, p *rbacv3.Policy) {
		if *m == nil {
			*m = map[string]*rbacv3.Policy{}
		}
		(*m)[name] = p
	}
	for _, ap := range applicableAuthz(w, ns, workloadLabels(wl)) {
		action := ap.Spec.GetAction()
		if action == security.AuthorizationPolicy_ALLOW {
			out.allowApplies = true
		}
		b := ruleBuilder{target: target, trustDomain: w.Mesh.TrustDomain, policyNS: ap.Namespace, port: port, strict: action == security.AuthorizationPolicy_ALLOW}
		for i, r := range ap.Spec.GetRules() {
			p, ok := b.policy(r)
			if !ok {
				continue
			}
			name := authzPolicyName(ap.Namespace, ap.Name, i)
			switch action {
			case security.AuthorizationPolicy_ALLOW:
				add(&out.allow, name, p)
			case security.AuthorizationPolicy_DENY:
				add(&out.deny, name, p)
			case security.AuthorizationPolicy_AUDIT:
				add(&out.audit, name, p)
			case security.AuthorizationPolicy_CUSTOM:
				provider := ap.Spec.GetProvider().GetName()
				if out.custom == nil {
					out.custom = map[string]map[string]*rbacv3.Policy{}
				}
				m := out.custom[provider]
				add(&m, name, p)
				out.custom[provider] = m
			}
		}
	}
	return out
}

func authzPolicyName(ns, name string, rule int) string {
	return "ns[" + ns + "]-policy[" + name + "]-rule[" + strconv.Itoa(rule) + "]"
}

// inboundSecurityHTTPFilters are the HTTP filters an inbound HTTP chain of a
// sidecar runs before the router, for the workload port port (the
// destination port of the chain): jwt_authn (RequestAuthentication), then
// for each CUSTOM provider an RBAC filter in shadow mode and the ext_authz
// filter it enables, then the AUDIT, DENY and ALLOW RBAC filters. Nil when
// no policy applies.
//
// ns is the proxy's namespace (proxyNamespace); wl its workload, or nil when
// meshd does not know it: then policies with a selector do not apply. w is
// the world the proxy's clusters come from (scoped by its Sidecar): an
// ext_authz provider whose Service it does not see cannot be called, and
// its CUSTOM rules deny instead.
func inboundSecurityHTTPFilters(w *model.World, ns string, wl *model.Workload, port uint32) ([]*hcmv3.HttpFilter, error) {
	var filters []*hcmv3.HttpFilter
	jwt, err := jwtAuthnFilter(w, ns, wl)
	if err != nil {
		return nil, err
	}
	if jwt != nil {
		filters = append(filters, jwt)
	}
	if len(w.Config.AuthorizationPolicies) == 0 {
		return filters, nil
	}
	pol := buildAuthzPolicies(w, ns, wl, port, targetHTTP)
	deny := pol.deny
	for _, provider := range sortedKeys(pol.custom) {
		rules := pol.custom[provider]
		ext, err := extAuthzHTTPFilters(w, provider, rules)
		if err != nil {
			return nil, err
		}
		if ext == nil {
			deny = withUnusableCustom(deny, rules)
			continue
		}
		filters = append(filters, ext...)
	}
	for _, r := range enforcedRBAC(pol.audit, deny, pol.allow, pol.allowApplies) {
		f, err := httpFilter(r.name, &rbachttpv3.RBAC{Rules: r.rules})
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	return filters, nil
}

// inboundSecurityNetworkFilters are the network filters an inbound TCP
// chain of a sidecar runs before tcp_proxy, for the workload port port: the
// RBAC of the AuthorizationPolicies with connection attributes only (ALLOW
// rules using HTTP attributes are left out, DENY/AUDIT rules drop them), and
// for CUSTOM policies whose provider speaks gRPC a shadow RBAC filter and
// the network ext_authz filter. CUSTOM policies of an HTTP provider do not
// apply to TCP traffic (as in Istio). Nil when no policy applies; see
// inboundSecurityHTTPFilters for ns, wl and w.
func inboundSecurityNetworkFilters(w *model.World, ns string, wl *model.Workload, port uint32) ([]*listenerv3.Filter, error) {
	if len(w.Config.AuthorizationPolicies) == 0 {
		return nil, nil
	}
	pol := buildAuthzPolicies(w, ns, wl, port, targetTCP)
	var filters []*listenerv3.Filter
	deny := pol.deny
	for _, provider := range sortedKeys(pol.custom) {
		rules := pol.custom[provider]
		ext, usable, err := extAuthzNetworkFilters(w, provider, rules)
		if err != nil {
			return nil, err
		}
		if !usable {
			deny = withUnusableCustom(deny, rules)
			continue
		}
		filters = append(filters, ext...)
	}
	for _, r := range enforcedRBAC(pol.audit, deny, pol.allow, pol.allowApplies) {
		f, err := networkFilter(r.name, &rbacnetv3.RBAC{StatPrefix: tcpRBACStatPrefix, Rules: r.rules})
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	return filters, nil
}

// namedRBAC is the rule set of one enforcing RBAC filter.
type namedRBAC struct {
	name  string
	rules *rbacv3.RBAC
}

// enforcedRBAC are the AUDIT, DENY and ALLOW filters' rule sets, in that
// order, leaving out AUDIT and DENY without policies (they would do
// nothing) and ALLOW when no ALLOW policy applies (an empty ALLOW set denies
// everything).
func enforcedRBAC(audit, deny, allow map[string]*rbacv3.Policy, allowApplies bool) []namedRBAC {
	var out []namedRBAC
	if len(audit) > 0 {
		out = append(out, namedRBAC{authzAuditFilterName, &rbacv3.RBAC{Action: rbacv3.RBAC_LOG, Policies: audit}})
	}
	if len(deny) > 0 {
		out = append(out, namedRBAC{authzDenyFilterName, &rbacv3.RBAC{Action: rbacv3.RBAC_DENY, Policies: deny}})
	}
	if allowApplies {
		out = append(out, namedRBAC{authzAllowFilterName, &rbacv3.RBAC{Action: rbacv3.RBAC_ALLOW, Policies: allow}})
	}
	return out
}

// unusableCustomSuffix marks, in the DENY filter, the CUSTOM rules whose
// provider cannot be called: requests they match are denied rather than let
// through unchecked (Istio does the same for a bad CUSTOM provider).
const unusableCustomSuffix = "-custom-provider-unavailable"

func withUnusableCustom(deny, custom map[string]*rbacv3.Policy) map[string]*rbacv3.Policy {
	out := make(map[string]*rbacv3.Policy, len(deny)+len(custom))
	for k, v := range deny {
		out[k] = v
	}
	for k, v := range custom {
		out[k+unusableCustomSuffix] = v
	}
	return out
}

func httpFilter(name string, m proto.Message) (*hcmv3.HttpFilter, error) {
	a, err := pack(m)
	if err != nil {
		return nil, err
	}
	return &hcmv3.HttpFilter{Name: name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: a}}, nil
}

func networkFilter(name string, m proto.Message) (*listenerv3.Filter, error) {
	a, err := pack(m)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ruleBuilder translates the rules of one policy for one target.
type ruleBuilder struct {
	target      authzTarget
	trustDomain string
	policyNS    string // default namespace of serviceAccounts
	port        uint32 // destination port guarded; 0: unknown
	// strict: a condition that cannot be honoured drops the whole rule
	// (ALLOW); otherwise it drops the condition or the value (DENY, AUDIT,
	// CUSTOM), so the rule matches more.
	strict bool
}

// errUnsupported: the attribute cannot be honoured on this target.
var errUnsupported = errors.New("not supported here")

// condition is one attribute of a rule with its values and negated values.
type condition struct {
	key               string // Istio attribute name, e.g. source.ip, request.headers[x]
	values, notValues []string
}

// policy builds the RBAC policy of rule r; ok is false when the rule is
// left out (it cannot be honoured and the builder is strict, or it can
// never match on this port).
func (b ruleBuilder) policy(r *security.Rule) (*rbacv3.Policy, bool) {
	if r == nil {
		return nil, false
	}
	var whenPrincipal, whenPermission []condition
	for _, c := range r.GetWhen() {
		cond := condition{key: c.GetKey(), values: c.GetValues(), notValues: c.GetNotValues()}
		if cond.key == "destination.port" {
			switch b.portVerdict(cond) {
			case portNever:
				return nil, false
			case portAlways:
				continue
			case portInvalid: // only a strict builder reports it
				return nil, false
			}
		}
		if isPermissionKey(cond.key) {
			whenPermission = append(whenPermission, cond)
		} else {
			whenPrincipal = append(whenPrincipal, cond)
		}
	}

	var principals []*rbacv3.Principal
	froms := r.GetFrom()
	if len(froms) == 0 {
		froms = []*security.Rule_From{{}}
	}
	for _, f := range froms {
		p, err := b.principal(append(sourceConditions(f.GetSource()), whenPrincipal...))
		if err != nil {
			return nil, false
		}
		principals = append(principals, p)
	}

	var permissions []*rbacv3.Permission
	tos := r.GetTo()
	if len(tos) == 0 {
		tos = []*security.Rule_To{{}}
	}
	for _, t := range tos {
		op := t.GetOperation()
		conds := operationConditions(op)
		if v := b.portVerdict(condition{key: "destination.port", values: op.GetPorts(), notValues: op.GetNotPorts()}); v == portNever {
			continue // this operation cannot match on this port
		} else if v == portInvalid {
			return nil, false
		} else if v != portUnknown {
			conds = slices.DeleteFunc(conds, func(c condition) bool { return c.key == "destination.port" })
		}
		p, err := b.permission(append(conds, whenPermission...))
		if err != nil {
			return nil, false
		}
		permissions = append(permissions, p)
	}
	if len(permissions) == 0 {
		return nil, false // no operation can match on this port
	}
	return &rbacv3.Policy{Permissions: permissions, Principals: principals}, true
}

// sourceConditions are a from entry's fields, in a fixed order.
func sourceConditions(s *security.Source) []condition {
	if s == nil {
		return nil
	}
	all := []condition{
		{"source.principal", s.GetPrincipals(), s.GetNotPrincipals()},
		{"request.auth.principal", s.GetRequestPrincipals(), s.GetNotRequestPrincipals()},
		{"source.namespace", s.GetNamespaces(), s.GetNotNamespaces()},
		{"source.serviceAccount", s.GetServiceAccounts(), s.GetNotServiceAccounts()},
		{"source.trustDomain", s.GetTrustDomains(), s.GetNotTrustDomains()},
		{"source.ip", s.GetIpBlocks(), s.GetNotIpBlocks()},
		{"remote.ip", s.GetRemoteIpBlocks(), s.GetNotRemoteIpBlocks()},
	}
	return slices.DeleteFunc(all, func(c condition) bool { return len(c.values) == 0 && len(c.notValues) == 0 })
}

// operationConditions are a to entry's fields, in a fixed order.
func operationConditions(o *security.Operation) []condition {
	if o == nil {
		return nil
	}
	all := []condition{
		{"request.host", o.GetHosts(), o.GetNotHosts()},
		{"request.method", o.GetMethods(), o.GetNotMethods()},
		{"request.path", o.GetPaths(), o.GetNotPaths()},
		{"destination.port", o.GetPorts(), o.GetNotPorts()},
	}
	return slices.DeleteFunc(all, func(c condition) bool { return len(c.values) == 0 && len(c.notValues) == 0 })
}

// isPermissionKey reports whether a when key is about the destination or
// the request (a permission), not the client (a principal).
func isPermissionKey(key string) bool {
	switch key {
	case "destination.ip", "destination.port", "connection.sni":
		return true
	}
	return false
}

// portVerdict evaluates a port condition against the builder's port.
type portVerdictKind int

const (
	portUnknown portVerdictKind = iota // no port, or no condition: leave it to Envoy
	portAlways                         // satisfied on this port
	portNever                          // cannot be satisfied on this port
	portInvalid                        // a value is not a port
)

func (b ruleBuilder) portVerdict(c condition) portVerdictKind {
	if len(c.values) == 0 && len(c.notValues) == 0 {
		return portUnknown
	}
	parse := func(vs []string) (ports []uint32, invalid bool) {
		for _, v := range vs {
			p, err := parsePort(v)
			if err != nil {
				invalid = true
				continue
			}
			ports = append(ports, p)
		}
		return ports, invalid
	}
	values, badValues := parse(c.values)
	notValues, badNot := parse(c.notValues)
	if (badValues || badNot) && b.strict {
		return portInvalid
	}
	if b.port == 0 {
		return portUnknown
	}
	// Lenient: invalid values are dropped; a values list left empty no
	// longer restricts (the condition matches more).
	if len(values) > 0 && !slices.Contains(values, b.port) || slices.Contains(notValues, b.port) {
		return portNever
	}
	return portAlways
}

func parsePort(v string) (uint32, error) {
	p, err := strconv.ParseUint(v, 10, 16)
	if err != nil {
		return 0, fmt.Errorf("invalid port %q", v)
	}
	return uint32(p), nil
}

// principal ANDs the conditions into one principal (any when there are
// none). An error means the rule is left out (strict builder only).
func (b ruleBuilder) principal(conds []condition) (*rbacv3.Principal, error) {
	var and []*rbacv3.Principal
	for _, c := range conds {
		gen := b.principalGenerator(c.key)
		ors, err := translate(b, c.values, gen)
		if err != nil {
			return nil, err
		}
		if len(ors) > 0 {
			and = append(and, orPrincipal(ors))
		}
		nots, err := translate(b, c.notValues, gen)
		if err != nil {
			return nil, err
		}
		if len(nots) > 0 {
			and = append(and, &rbacv3.Principal{Identifier: &rbacv3.Principal_NotId{NotId: orPrincipal(nots)}})
		}
	}
	switch len(and) {
	case 0:
		return anyPrincipal, nil
	case 1:
		return and[0], nil
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_AndIds{AndIds: &rbacv3.Principal_Set{Ids: and}}}, nil
}

// permission ANDs the conditions into one permission (any when none).
func (b ruleBuilder) permission(conds []condition) (*rbacv3.Permission, error) {
	var and []*rbacv3.Permission
	for _, c := range conds {
		gen := b.permissionGenerator(c.key)
		ors, err := translate(b, c.values, gen)
		if err != nil {
			return nil, err
		}
		if len(ors) > 0 {
			and = append(and, orPermission(ors))
		}
		nots, err := translate(b, c.notValues, gen)
		if err != nil {
			return nil, err
		}
		if len(nots) > 0 {
			and = append(and, &rbacv3.Permission{Rule: &rbacv3.Permission_NotRule{NotRule: orPermission(nots)}})
		}
	}
	switch len(and) {
	case 0:
		return anyPermission, nil
	case 1:
		return and[0], nil
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_AndRules{AndRules: &rbacv3.Permission_Set{Rules: and}}}, nil
}

// translate turns each value into a matcher. A value that cannot be
// honoured fails the rule when strict, else it is dropped (and a condition
// left without values drops out of the AND).
func translate[T interface {
	proto.Message
	ValidateAll() error
}](b ruleBuilder, values []string, gen func(string) (T, error)) ([]T, error) {
	out := make([]T, 0, len(values))
	for _, v := range values {
		m, err := gen(v)
		if err == nil {
			// What Envoy would refuse (a header name it does not accept)
			// must not take the listener down with it.
			err = m.ValidateAll()
		}
		if err != nil {
			if b.strict {
				return nil, err
			}
			continue
		}
		out = append(out, m)
	}
	return out, nil
}

var (
	anyPrincipal  = &rbacv3.Principal{Identifier: &rbacv3.Principal_Any{Any: true}}
	anyPermission = &rbacv3.Permission{Rule: &rbacv3.Permission_Any{Any: true}}
)

func orPrincipal(ps []*rbacv3.Principal) *rbacv3.Principal {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_OrIds{OrIds: &rbacv3.Principal_Set{Ids: ps}}}
}

func orPermission(ps []*rbacv3.Permission) *rbacv3.Permission {
	if len(ps) == 1 {
		return ps[0]
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_OrRules{OrRules: &rbacv3.Permission_Set{Rules: ps}}}
}

// unsupported reports key as not honoured on the builder's target.
func unsupported[T any](key string, target authzTarget) func(string) (T, error) {
	return func(string) (T, error) {
		var zero T
		return zero, fmt.Errorf("%s: %w on %s", key, errUnsupported, target)
	}
}

// attributeSupported reports whether target can honour an attribute key
// (unknown keys are supported nowhere).
func attributeSupported(key string, target authzTarget) bool {
	switch {
	case key == "source.principal", key == "source.namespace", key == "source.serviceAccount", key == "source.trustDomain",
		key == "source.ip", key == "remote.ip", key == "destination.ip", key == "destination.port":
		return true
	case key == "connection.sni":
		return target != targetGRPC
	case key == "request.host", key == "request.method", key == "request.path":
		return target != targetTCP
	case strings.HasPrefix(key, "request.headers["):
		if target == targetTCP {
			return false
		}
		if target == targetGRPC {
			// grpc-go refuses the whole filter for these (gRFC A41).
			name, ok := bracketed(strings.TrimPrefix(key, "request.headers"))
			name = strings.ToLower(name)
			return ok && name != ":scheme" && !strings.HasPrefix(name, "grpc-")
		}
		return true
	case key == "request.auth.principal", key == "request.auth.audiences", key == "request.auth.presenter",
		strings.HasPrefix(key, "request.auth.claims["):
		return target == targetHTTP
	}
	return false
}

// principalGenerator is how one value of a principal attribute becomes a
// matcher on b's target.
func (b ruleBuilder) principalGenerator(key string) func(string) (*rbacv3.Principal, error) {
	if !attributeSupported(key, b.target) {
		return unsupported[*rbacv3.Principal](key, b.target)
	}
	switch key {
	case "source.principal":
		return func(v string) (*rbacv3.Principal, error) {
			return authenticated(spiffeMatcher(b.withTrustDomain(v))), nil
		}
	case "source.namespace":
		return func(v string) (*rbacv3.Principal, error) {
			return authenticated(regexMatcher(".*/ns/" + segmentRegex(v) + "/.*")), nil
		}
	case "source.serviceAccount":
		return func(v string) (*rbacv3.Principal, error) {
			ns, sa, ok := strings.Cut(v, "/")
			if !ok {
				ns, sa = b.policyNS, v
			}
			if ns == "" || sa == "" || strings.ContainsAny(sa, "/*") || strings.Contains(ns, "*") {
				return nil, fmt.Errorf("invalid service account %q", v)
			}
			// Any trust domain, optional extra path segments, as Istio.
			return authenticated(regexMatcher("spiffe://.+/ns/" + regexp.QuoteMeta(ns) + "/(.+/)?sa/" + regexp.QuoteMeta(sa) + "(/.+)?")), nil
		}
	case "source.trustDomain":
		return func(v string) (*rbacv3.Principal, error) {
			return authenticated(regexMatcher("spiffe://" + segmentRegex(v) + "/.*")), nil
		}
	case "source.ip":
		return func(v string) (*rbacv3.Principal, error) {
			r, err := cidrRange(v)
			if err != nil {
				return nil, err
			}
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_DirectRemoteIp{DirectRemoteIp: r}}, nil
		}
	case "remote.ip":
		return func(v string) (*rbacv3.Principal, error) {
			r, err := cidrRange(v)
			if err != nil {
				return nil, err
			}
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_RemoteIp{RemoteIp: r}}, nil
		}
	case "request.auth.principal":
		return requestPrincipal
	case "request.auth.audiences":
		return claimPrincipal([]string{"aud"})
	case "request.auth.presenter":
		return claimPrincipal([]string{"azp"})
	}
	if name, ok := bracketed(strings.TrimPrefix(key, "request.headers")); ok && strings.HasPrefix(key, "request.headers[") {
		return func(v string) (*rbacv3.Principal, error) {
			return &rbacv3.Principal{Identifier: &rbacv3.Principal_Header{Header: authzHeaderMatcher(name, v, false)}}, nil
		}
	}
	if strings.HasPrefix(key, "request.auth.claims[") {
		claims, ok := claimPath(strings.TrimPrefix(key, "request.auth.claims"))
		if ok {
			return claimPrincipal(claims)
		}
	}
	return func(string) (*rbacv3.Principal, error) { return nil, fmt.Errorf("unknown attribute %q", key) }
}

// permissionGenerator is principalGenerator for request and destination
// attributes.
func (b ruleBuilder) permissionGenerator(key string) func(string) (*rbacv3.Permission, error) {
	if !attributeSupported(key, b.target) {
		return unsupported[*rbacv3.Permission](key, b.target)
	}
	switch key {
	case "request.host":
		return func(v string) (*rbacv3.Permission, error) {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeaderMatcher(":authority", v, true)}}, nil
		}
	case "request.method":
		return func(v string) (*rbacv3.Permission, error) {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_Header{Header: authzHeaderMatcher(":method", v, false)}}, nil
		}
	case "request.path":
		return b.pathPermission
	case "destination.port":
		return func(v string) (*rbacv3.Permission, error) {
			p, err := parsePort(v)
			if err != nil {
				return nil, err
			}
			return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationPort{DestinationPort: p}}, nil
		}
	case "destination.ip":
		return func(v string) (*rbacv3.Permission, error) {
			r, err := cidrRange(v)
			if err != nil {
				return nil, err
			}
			return &rbacv3.Permission{Rule: &rbacv3.Permission_DestinationIp{DestinationIp: r}}, nil
		}
	case "connection.sni":
		return func(v string) (*rbacv3.Permission, error) {
			return &rbacv3.Permission{Rule: &rbacv3.Permission_RequestedServerName{RequestedServerName: authzStringMatcher(v, false)}}, nil
		}
	}
	return func(string) (*rbacv3.Permission, error) { return nil, fmt.Errorf("unknown attribute %q", key) }
}

// withTrustDomain rewrites a principal of the "cluster.local" trust domain
// (Istio's name for the mesh's own) to the mesh's trust domain.
func (b ruleBuilder) withTrustDomain(principal string) string {
	td := b.trustDomain
	if td == "" || td == model.DefaultTrustDomain {
		return principal
	}
	parts := strings.Split(principal, "/")
	if len(parts) == 5 && parts[0] == model.DefaultTrustDomain {
		parts[0] = td
		return strings.Join(parts, "/")
	}
	return principal
}

// pathPermission matches the request path (without the query): exact,
// "prefix*", "*suffix", "*" (any), or an Istio path template with {*} (one
// segment) and {**} (any number of segments, last).
func (b ruleBuilder) pathPermission(v string) (*rbacv3.Permission, error) {
	if strings.Contains(v, "{*}") || strings.Contains(v, "{**}") {
		template, regex, err := pathTemplate(v)
		if err != nil {
			return nil, err
		}
		if b.target == targetGRPC {
			// grpc-go has no URI template matcher: the same as a regex.
			return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
				Rule: &matcherv3.PathMatcher_Path{Path: regexMatcher(regex)}}}}, nil
		}
		cfg, err := pack(&uritemplatev3.UriTemplateMatchConfig{PathTemplate: template})
		if err != nil {
			return nil, err
		}
		return &rbacv3.Permission{Rule: &rbacv3.Permission_UriTemplate{UriTemplate: &corev3.TypedExtensionConfig{
			Name: "envoy.path.match.uri_template.uri_template_matcher", TypedConfig: cfg}}}, nil
	}
	return &rbacv3.Permission{Rule: &rbacv3.Permission_UrlPath{UrlPath: &matcherv3.PathMatcher{
		Rule: &matcherv3.PathMatcher_Path{Path: authzStringMatcher(v, false)}}}}, nil
}

// pathSegmentRE are the characters a literal segment of a URI template may
// hold (RFC 3986 pchar, percent-encoded octets included).
var pathSegmentRE = regexp.MustCompile(`^[A-Za-z0-9\-._~!$&'()+,;=:@%]*$`)

// pathTemplate converts an Istio path template into Envoy's URI template
// syntax ({*} → *, {**} → **) and an equivalent regex. Each operator must
// be a whole segment, {**} only the last one, as Envoy requires.
func pathTemplate(v string) (template, regex string, err error) {
	if !strings.HasPrefix(v, "/") {
		return "", "", fmt.Errorf("path template %q must start with /", v)
	}
	segments := strings.Split(v[1:], "/")
	tmpl := make([]string, len(segments))
	re := make([]string, len(segments))
	for i, s := range segments {
		switch s {
		case "{*}":
			tmpl[i], re[i] = "*", "[^/]+"
		case "{**}":
			if i != len(segments)-1 {
				return "", "", fmt.Errorf("path template %q: {**} must be the last segment", v)
			}
			tmpl[i], re[i] = "**", ".*"
		default:
			if !pathSegmentRE.MatchString(s) {
				return "", "", fmt.Errorf("path template %q: invalid segment %q", v, s)
			}
			tmpl[i], re[i] = s, regexp.QuoteMeta(s)
		}
	}
	return "/" + strings.Join(tmpl, "/"), "/" + strings.Join(re, "/"), nil
}

// stringMatcher is Istio's value syntax: "*" any non-empty value, "*x" a
// suffix, "x*" a prefix, else the exact value.
func authzStringMatcher(v string, ignoreCase bool) *matcherv3.StringMatcher {
	switch {
	case v == "*":
		return regexMatcher(".+")
	case strings.HasPrefix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Suffix{Suffix: v[1:]}, IgnoreCase: ignoreCase}
	case strings.HasSuffix(v, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: v[:len(v)-1]}, IgnoreCase: ignoreCase}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}, IgnoreCase: ignoreCase}
}

func regexMatcher(re string) *matcherv3.StringMatcher {
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
}

// segmentRegex quotes v for a regex matching one path segment of a SPIFFE
// ID, each "*" matching anything within the segment (never a "/": a
// wildcard namespace or trust domain must not reach into another segment).
func segmentRegex(v string) string {
	parts := strings.Split(v, "*")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p)
	}
	return strings.Join(parts, "[^/]*")
}

// spiffeMatcher matches the SPIFFE URI of an Istio principal
// ("<trust domain>/ns/<ns>/sa/<sa>", with Istio's wildcards).
func spiffeMatcher(principal string) *matcherv3.StringMatcher {
	const prefix = "spiffe://"
	switch {
	case principal == "*":
		return regexMatcher(".+")
	case strings.HasPrefix(principal, "*"):
		return regexMatcher(regexp.QuoteMeta(prefix) + ".*" + regexp.QuoteMeta(principal[1:]))
	case strings.HasSuffix(principal, "*"):
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: prefix + principal[:len(principal)-1]}}
	}
	return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: prefix + principal}}
}

func authenticated(m *matcherv3.StringMatcher) *rbacv3.Principal {
	return &rbacv3.Principal{Identifier: &rbacv3.Principal_Authenticated_{Authenticated: &rbacv3.Principal_Authenticated{PrincipalName: m}}}
}

// headerMatcher is Istio's header syntax: "*" present, "*x" suffix, "x*"
// prefix, else exact.
func authzHeaderMatcher(name, v string, ignoreCase bool) *routev3.HeaderMatcher {
	if v == "*" {
		return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}}
	}
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: authzStringMatcher(v, ignoreCase)}}
}

// cidrRange parses an IP address or a CIDR block.
func cidrRange(v string) (*corev3.CidrRange, error) {
	if p, err := netip.ParsePrefix(v); err == nil {
		return &corev3.CidrRange{AddressPrefix: p.Addr().String(), PrefixLen: wrapperspb.UInt32(uint32(p.Bits()))}, nil
	}
	if r := hostCIDR(v); r != nil {
		return r, nil
	}
	return nil, fmt.Errorf("invalid IP address or CIDR block %q", v)
}

// bracketed returns the name of "[name]".
func bracketed(s string) (string, bool) {
	if len(s) < 3 || s[0] != '[' || s[len(s)-1] != ']' || strings.ContainsAny(s[1:len(s)-1], "[]") {
		return "", false
	}
	return s[1 : len(s)-1], true
}

// claimPath parses "[a]" or "[a][b]..." (nested claims).
func claimPath(s string) ([]string, bool) {
	var claims []string
	for s != "" {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return nil, false
		}
		name, ok := bracketed(s[:end+1])
		if !ok {
			return nil, false
		}
		claims = append(claims, name)
		s = s[end+1:]
	}
	return claims, len(claims) > 0
}
