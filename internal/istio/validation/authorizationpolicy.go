package validation

import (
	"fmt"
	"strconv"
	"strings"

	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// dryRunAnnotation makes an ALLOW or DENY policy log its decisions instead of enforcing them.
const dryRunAnnotation = "istio.io/dry-run"

func (v *validator) authorizationPolicy(spec *securityv1beta1.AuthorizationPolicy, annotations map[string]string) {
	specPath := field.NewPath("spec")
	rulesPath := specPath.Child("rules")
	v.policyTargets(specPath, spec.Selector, spec.TargetRef, spec.TargetRefs)

	action := spec.Action
	switch action {
	case securityv1beta1.AuthorizationPolicy_CUSTOM:
		if len(spec.Rules) == 0 {
			v.required(rulesPath, "a CUSTOM policy without rules is never triggered; add an empty rule {} to send every request to the provider")
		} else if spec.GetProvider().GetName() == "" {
			v.required(specPath.Child("provider", "name"),
				"a CUSTOM policy needs the name of the extension provider (meshConfig.extensionProviders) that decides")
		}
	case securityv1beta1.AuthorizationPolicy_DENY:
		if len(spec.Rules) == 0 {
			v.required(rulesPath, "a DENY policy without rules is never triggered; add an empty rule {} to deny every request")
		}
	case securityv1beta1.AuthorizationPolicy_AUDIT:
		if len(spec.Rules) == 0 {
			v.warn(CodeIneffectiveConfig, rulesPath, "", "an AUDIT policy without rules audits nothing; add an empty rule {} to audit every request")
		}
	default: // ALLOW
		if len(spec.Rules) == 0 {
			v.warn(CodeAllowNothingPolicy, rulesPath, "",
				"an ALLOW policy without rules matches no request: the workloads it applies to refuse every request that no other ALLOW policy allows")
		}
	}
	if spec.GetProvider() != nil && action != securityv1beta1.AuthorizationPolicy_CUSTOM {
		v.forbidden(specPath.Child("provider"), "provider is only used with action CUSTOM, and the action is %s", action)
	}
	if value, ok := annotations[dryRunAnnotation]; ok {
		path := field.NewPath("metadata", "annotations").Key(dryRunAnnotation)
		if _, err := strconv.ParseBool(value); err != nil {
			v.invalid(CodeInvalidField, path, value, "%s must be \"true\" or \"false\", not %q", dryRunAnnotation, value)
		}
		if action != securityv1beta1.AuthorizationPolicy_ALLOW && action != securityv1beta1.AuthorizationPolicy_DENY {
			v.forbidden(path, "%s only works with action ALLOW or DENY, and the action is %s", dryRunAnnotation, action)
		}
	}
	for i, rule := range spec.Rules {
		if rule != nil {
			v.authorizationRule(rulesPath.Index(i), rule, action)
		}
	}
}

func (v *validator) authorizationRule(path *field.Path, rule *securityv1beta1.Rule, action securityv1beta1.AuthorizationPolicy_Action) {
	custom := action == securityv1beta1.AuthorizationPolicy_CUSTOM
	// Whether the rule has sources and operations, and whether they say anything a TCP
	// connection shows (peer identity, addresses, ports).
	var sources, operations, tcpSource, tcpOperation bool
	for i, from := range rule.From {
		sourcePath := path.Child("from").Index(i).Child("source")
		if from.GetSource() == nil {
			v.required(sourcePath, "each from entry needs a source")
			continue
		}
		sources = true
		tcpSource = v.source(sourcePath, from.Source, custom) || tcpSource
	}
	for i, to := range rule.To {
		operationPath := path.Child("to").Index(i).Child("operation")
		if to.GetOperation() == nil {
			v.required(operationPath, "each to entry needs an operation")
			continue
		}
		operations = true
		tcpOperation = v.operation(operationPath, to.Operation) || tcpOperation
	}
	for i, condition := range rule.When {
		if condition != nil {
			v.condition(path.Child("when").Index(i), condition, custom)
		}
	}
	// As Istio warns: without HTTP, the HTTP parts of a DENY rule are left out, which widens it.
	if action == securityv1beta1.AuthorizationPolicy_DENY && (sources && !operations && !tcpSource || operations && !tcpOperation) {
		v.warn(CodeHTTPOnlyDenyRule, path, "",
			"this DENY rule matches HTTP attributes only and names no port: on TCP ports Istio applies it without them, "+
				"denying all traffic the rest of the rule matches; list the ports it is for in to.operation.ports")
	}
}

// valueKind says how the entries of one list of a source or operation are checked.
type valueKind int

const (
	plainValue    valueKind = iota // anything but empty
	wildcardValue                  // "*" only as the whole value, a prefix or a suffix
	ipValue                        // an IP address or a CIDR range
	portValue                      // a port number
	pathValue                      // a wildcardValue, or a path template with {*} and {**}
)

// valueList is one list field of a source or operation.
type valueList struct {
	name   string
	values []string
	kind   valueKind
	// tcp: the attribute is known on a TCP connection, not only to HTTP.
	tcp bool
	// notWithCustom: Istio refuses it in CUSTOM policies.
	notWithCustom bool
}

// source checks a rule's source; tcp reports whether it names attributes a TCP connection shows.
func (v *validator) source(path *field.Path, source *securityv1beta1.Source, custom bool) (tcp bool) {
	lists := []valueList{
		{"principals", source.Principals, wildcardValue, true, true},
		{"notPrincipals", source.NotPrincipals, wildcardValue, true, true},
		{"requestPrincipals", source.RequestPrincipals, wildcardValue, false, true},
		{"notRequestPrincipals", source.NotRequestPrincipals, wildcardValue, false, true},
		{"namespaces", source.Namespaces, wildcardValue, true, true},
		{"notNamespaces", source.NotNamespaces, wildcardValue, true, true},
		{"serviceAccounts", source.ServiceAccounts, plainValue, true, false},
		{"notServiceAccounts", source.NotServiceAccounts, plainValue, true, false},
		{"ipBlocks", source.IpBlocks, ipValue, true, false},
		{"notIpBlocks", source.NotIpBlocks, ipValue, true, false},
		{"remoteIpBlocks", source.RemoteIpBlocks, ipValue, true, false},
		{"notRemoteIpBlocks", source.NotRemoteIpBlocks, ipValue, true, false},
		{"trustDomains", source.TrustDomains, plainValue, true, false},
		{"notTrustDomains", source.NotTrustDomains, plainValue, true, false},
	}
	if !v.valueLists(path, lists, custom) {
		v.required(path, "a source needs at least one of principals, requestPrincipals, namespaces, serviceAccounts, "+
			"ipBlocks, remoteIpBlocks, trustDomains or their not* forms")
	}
	if len(source.ServiceAccounts) > 0 || len(source.NotServiceAccounts) > 0 {
		for _, l := range lists {
			switch l.name {
			case "principals", "notPrincipals", "namespaces", "notNamespaces":
				if len(l.values) > 0 {
					v.forbidden(path.Child(l.name), "%s cannot be used together with serviceAccounts or notServiceAccounts", l.name)
				}
			}
		}
	}
	for _, l := range lists {
		tcp = tcp || l.tcp && len(l.values) > 0
	}
	return tcp
}

// operation checks a rule's operation; tcp reports whether it names ports.
func (v *validator) operation(path *field.Path, operation *securityv1beta1.Operation) (tcp bool) {
	lists := []valueList{
		{name: "hosts", values: operation.Hosts, kind: wildcardValue},
		{name: "notHosts", values: operation.NotHosts, kind: wildcardValue},
		{name: "ports", values: operation.Ports, kind: portValue, tcp: true},
		{name: "notPorts", values: operation.NotPorts, kind: portValue, tcp: true},
		{name: "methods", values: operation.Methods, kind: plainValue},
		{name: "notMethods", values: operation.NotMethods, kind: plainValue},
		{name: "paths", values: operation.Paths, kind: pathValue},
		{name: "notPaths", values: operation.NotPaths, kind: pathValue},
	}
	if !v.valueLists(path, lists, false) {
		v.required(path, "an operation needs at least one of hosts, ports, methods, paths or their not* forms")
	}
	return len(operation.Ports) > 0 || len(operation.NotPorts) > 0
}

// valueLists checks every entry of lists; any reports whether some list has entries.
func (v *validator) valueLists(path *field.Path, lists []valueList, custom bool) (any bool) {
	for _, l := range lists {
		if len(l.values) == 0 {
			continue
		}
		any = true
		listPath := path.Child(l.name)
		if custom && l.notWithCustom {
			v.forbidden(listPath, "%s is not supported with action CUSTOM", l.name)
		}
		for i, value := range l.values {
			v.policyValue(listPath.Index(i), l.kind, value)
		}
	}
	return any
}

func (v *validator) policyValue(path *field.Path, kind valueKind, value string) {
	if value == "" {
		v.invalid(CodeInvalidField, path, value, "values must not be empty")
		return
	}
	switch kind {
	case ipValue:
		if !isIPOrCIDR(value) {
			v.invalid(CodeInvalidField, path, value, "%q is not an IP address or a CIDR range such as 10.0.0.0/8", value)
		}
	case portValue:
		port, err := strconv.ParseUint(value, 10, 32)
		switch {
		case err != nil:
			v.invalid(CodeInvalidPort, path, value, "%q is not a port number", value)
		case port > 65535:
			v.invalid(CodeInvalidPort, path, value, "port %d is not in 1-65535", port)
		case port == 0:
			v.warn(CodeIneffectiveConfig, path, value, "port 0 matches no connection")
		}
	case pathValue:
		if isPathTemplate(value) {
			if problem := pathTemplateProblem(value); problem != "" {
				v.invalid(CodeInvalidField, path, value, "%s", problem)
			}
			return
		}
		v.wildcard(path, value)
	case wildcardValue:
		v.wildcard(path, value)
	}
}

// wildcard warns about a "*" that Istio will match literally: one "*" is a wildcard as the whole
// value, its first character or its last; any other is a character to match.
func (v *validator) wildcard(path *field.Path, value string) {
	switch n := strings.Count(value, "*"); {
	case n == 0, value == "*":
	case n == 1 && (value[0] == '*' || value[len(value)-1] == '*'):
	default:
		v.warn(CodeMisplacedWildcard, path, value,
			"%q has a \"*\" Istio matches literally: only one \"*\", as the whole value, its first or its last character, is a wildcard", value)
	}
}

// Path template operators (Envoy's URI templates): one path segment, any number of them.
const (
	anySegment  = "{*}"
	anySegments = "{**}"
)

func isPathTemplate(path string) bool {
	return strings.Contains(path, anySegment) || strings.Contains(path, anySegments)
}

// pathTemplateProblem says what is wrong with a path template, or "": an operator must be a
// whole segment, "*", "{" and "}" may appear only in operators, and {**} must be the last one.
func pathTemplateProblem(path string) string {
	sawAnySegments := false
	for _, segment := range strings.Split(path, "/") {
		switch segment {
		case anySegment, anySegments:
			if sawAnySegments {
				return fmt.Sprintf("path template %q has an operator after {**}, which must be the last one", path)
			}
			sawAnySegments = segment == anySegments
		default:
			if strings.ContainsAny(segment, "*{}") {
				return fmt.Sprintf("path template %q has a segment %q: in a template, \"*\", \"{\" and \"}\" may only appear as "+
					"a whole segment {*} or {**} (named variables are not supported)", path, segment)
			}
		}
	}
	return ""
}

// conditionKeys are the attributes a `when` condition can test, and what their values are.
var conditionKeys = map[string]valueKind{
	"source.ip":              ipValue,
	"remote.ip":              ipValue,
	"source.namespace":       plainValue,
	"source.principal":       plainValue,
	"request.auth.principal": plainValue,
	"request.auth.audiences": plainValue,
	"request.auth.presenter": plainValue,
	"destination.ip":         ipValue,
	"destination.port":       portValue,
	"connection.sni":         plainValue,
}

// conditionMapKeys are the attributes written name[entry], with an example of each.
var conditionMapKeys = []struct{ prefix, example string }{
	{"request.headers", "request.headers[x-user-id]"},
	{"request.auth.claims", "request.auth.claims[groups]"},
	{"experimental.envoy.filters.", "experimental.envoy.filters.network.mysql_proxy[db.table]"},
}

// knownConditionKeys lists the keys for messages.
const knownConditionKeys = "request.headers[<name>], source.ip, remote.ip, source.namespace, source.principal, " +
	"request.auth.principal, request.auth.audiences, request.auth.presenter, request.auth.claims[<name>], " +
	"destination.ip, destination.port, connection.sni, experimental.envoy.filters.<filter>[<key>]"

// replacedConditionKeys are attributes Istio refuses, with what to use instead.
var replacedConditionKeys = map[string]string{
	"destination.namespace": "the policy's own namespace (metadata.namespace) decides that",
	"destination.labels":    "the policy's selector decides that",
	"destination.name":      "it was only supported by the v1alpha1 RBAC API; use the selector",
	"destination.user":      "it was only supported by the v1alpha1 RBAC API; use the selector",
}

func (v *validator) condition(path *field.Path, condition *securityv1beta1.Condition, custom bool) {
	key := condition.Key
	keyPath := path.Child("key")
	if key == "" {
		v.invalid(CodeInvalidCondition, keyPath, key, "a condition needs a key")
		return
	}
	kind, known := conditionKeys[key]
	if !known {
		name, _, _ := strings.Cut(key, "[")
		if replacement, replaced := replacedConditionKeys[name]; replaced {
			v.invalid(CodeInvalidCondition, keyPath, key, "key %s is not supported: %s", key, replacement)
			return
		}
		for _, mapKey := range conditionMapKeys {
			if strings.HasPrefix(key, mapKey.prefix) {
				known = true
				if !isMapAttribute(key) {
					v.invalid(CodeInvalidCondition, keyPath, key, "key %s must end with the entry's name in brackets, as in %s", key, mapKey.example)
					return
				}
			}
		}
		if !known {
			v.invalid(CodeInvalidCondition, keyPath, key, "unknown key %s; the keys are %s", key, knownConditionKeys)
			return
		}
	}
	if custom && (key == "source.namespace" || key == "source.principal" || strings.HasPrefix(key, "request.auth.")) {
		v.forbidden(keyPath, "key %s is not supported with action CUSTOM", key)
	}
	if len(condition.Values) == 0 && len(condition.NotValues) == 0 {
		v.invalid(CodeInvalidCondition, path, "", "a condition on %s needs values or notValues", key)
		return
	}
	for _, list := range []struct {
		name   string
		values []string
	}{{"values", condition.Values}, {"notValues", condition.NotValues}} {
		for i, value := range list.values {
			if problem := conditionValueProblem(kind, value); problem != "" {
				v.invalid(CodeInvalidCondition, path.Child(list.name).Index(i), value, "%s is %s", key, problem)
			}
		}
	}
}

// isMapAttribute reports whether key is written name[entry], with a name and an entry.
func isMapAttribute(key string) bool {
	open := strings.IndexByte(key, '[')
	return open > 0 && strings.HasSuffix(key, "]") && open < len(key)-2
}

// conditionValueProblem says why value does not fit a condition key whose values are of kind, or
// "" when it does; it completes "<key> is ...".
func conditionValueProblem(kind valueKind, value string) string {
	if value == "" {
		return "compared with an empty value, which is not allowed"
	}
	switch kind {
	case ipValue:
		if !isIPOrCIDR(value) {
			return fmt.Sprintf("an IP address or CIDR range, not %q", value)
		}
	case portValue:
		if port, err := strconv.ParseUint(value, 10, 32); err != nil || port > 65535 {
			return fmt.Sprintf("a port number, not %q", value)
		}
	}
	return ""
}
