package generate

import (
	"fmt"

	rbachttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	security "istio.io/api/security/v1beta1"

	"github.com/meshplane/meshplane/internal/model"
)

// Proxyless gRPC servers enforce Envoy's HTTP RBAC filter as grpc-go
// implements it (gRFC A41): ALLOW and DENY actions over principals
// (authenticated peer URI SANs, remote IPs, headers, the method's path) and
// permissions (headers, path, destination IP and port). grpc-go has neither
// jwt_authn nor a usable ext_authz filter, ignores an RBAC filter whose
// action is LOG, matches no dynamic metadata and sees no SNI, and refuses
// the whole listener for a URI template matcher or a grpc-* header matcher.
// So, for gRPC servers:
//   - RequestAuthentication: no token is verified; requestPrincipals and
//     request.auth.* cannot match: an ALLOW rule using them is left out, a
//     DENY rule drops the condition (it denies regardless of the token);
//   - CUSTOM: the external authorizer cannot be called; requests the rules
//     match are denied;
//   - AUDIT: nothing is logged;
//   - connection.sni and grpc-*/:scheme header conditions: as requestPrincipals;
//   - path templates become the equivalent regex.
// GRPCUnsupported lists each of these per object.

// grpcServerSecurityHTTPFilters are the HTTP filters of a proxyless gRPC
// server's listener on port, before the router: the DENY RBAC filter (with
// the CUSTOM rules, which deny here) and the ALLOW one. Nil when no policy
// applies; see inboundSecurityHTTPFilters for ns, wl and w.
func grpcServerSecurityHTTPFilters(w *model.World, ns string, wl *model.Workload, port uint32) ([]*hcmv3.HttpFilter, error) {
	if len(w.Config.AuthorizationPolicies) == 0 {
		return nil, nil
	}
	pol := buildAuthzPolicies(w, ns, wl, port, targetGRPC)
	deny := pol.deny
	for _, provider := range sortedKeys(pol.custom) {
		deny = withUnusableCustom(deny, pol.custom[provider])
	}
	var filters []*hcmv3.HttpFilter
	for _, r := range enforcedRBAC(nil, deny, pol.allow, pol.allowApplies) { // grpc-go ignores AUDIT (LOG)
		f, err := httpFilter(r.name, &rbachttpv3.RBAC{Rules: r.rules})
		if err != nil {
			return nil, err
		}
		filters = append(filters, f)
	}
	return filters, nil
}

// grpcSecurityUnsupported lists what proxyless gRPC servers of namespace ns
// do not get of the AuthorizationPolicies and RequestAuthentications that
// may apply to them: those of ns and of the root namespace, with or without
// a selector (which workloads a selector picks is not known here).
func grpcSecurityUnsupported(w *model.World, ns string) []Unsupported {
	var out []Unsupported
	mayApply := func(policyNS string, targeted bool) bool {
		return !targeted && (policyNS == ns || w.Mesh.RootNamespace != "" && policyNS == w.Mesh.RootNamespace)
	}
	for _, ap := range w.Config.AuthorizationPolicies {
		if !mayApply(ap.Namespace, ap.Spec.GetTargetRef() != nil || len(ap.Spec.GetTargetRefs()) > 0) {
			continue
		}
		add := func(field, msg string) {
			out = append(out, Unsupported{Kind: "AuthorizationPolicy", Namespace: ap.Namespace, Name: ap.Name, Field: field, Message: msg})
		}
		action := ap.Spec.GetAction()
		switch action {
		case security.AuthorizationPolicy_CUSTOM:
			add("spec.action", "CUSTOM (external authorization) is not supported by proxyless gRPC servers; requests its rules match are denied")
		case security.AuthorizationPolicy_AUDIT:
			add("spec.action", "AUDIT is not supported by proxyless gRPC servers; nothing is logged")
			continue
		}
		effect := "the condition is ignored for gRPC servers, so the rule matches more requests"
		if action == security.AuthorizationPolicy_ALLOW {
			effect = "the rule is left out for gRPC servers (it allows nothing there)"
		}
		for i, r := range ap.Spec.GetRules() {
			for j, f := range r.GetFrom() {
				if s := f.GetSource(); len(s.GetRequestPrincipals()) > 0 || len(s.GetNotRequestPrincipals()) > 0 {
					add(fmt.Sprintf("spec.rules[%d].from[%d].source.requestPrincipals", i, j),
						"request principals need JWT validation, which proxyless gRPC servers do not have; "+effect)
				}
			}
			for k, c := range r.GetWhen() {
				if attributeSupported(c.GetKey(), targetHTTP) && !attributeSupported(c.GetKey(), targetGRPC) {
					add(fmt.Sprintf("spec.rules[%d].when[%d]", i, k), fmt.Sprintf("%s cannot be matched by proxyless gRPC servers; %s", c.GetKey(), effect))
				}
			}
		}
	}
	for _, ra := range w.Config.RequestAuthentications {
		if !mayApply(ra.Namespace, ra.Spec.GetTargetRef() != nil || len(ra.Spec.GetTargetRefs()) > 0) || len(ra.Spec.GetJwtRules()) == 0 {
			continue
		}
		out = append(out, Unsupported{Kind: "RequestAuthentication", Namespace: ra.Namespace, Name: ra.Name, Field: "spec.jwtRules",
			Message: "JWT validation is not supported by proxyless gRPC servers: tokens are not verified, and request principals never match there"})
	}
	return out
}
