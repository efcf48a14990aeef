package validation

import "fmt"

// Severity of a finding.
type Severity int

const (
	// Warning: the configuration is accepted and works, but almost certainly not as its author
	// meant (a route that can never match, weights that do not add up to 100, a setting that
	// has no effect). `meshctl analyze` exits 0 with warnings only.
	Warning Severity = iota + 1
	// Error: the API server or Istio's admission webhook rejects the object, or the mesh would
	// fail the traffic it describes (a route to a subset nobody defines answers 503).
	Error
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "Warning"
	case Error:
		return "Error"
	default:
		return fmt.Sprintf("Severity(%d)", int(s))
	}
}

// Code identifies one kind of finding. An ID keeps its meaning once released, so users can
// search for it and scripts can filter on it; new findings get new IDs.
type Code struct {
	ID       string
	Name     string
	Severity Severity
	// Description says what the finding means and how to fix it.
	Description string
}

// String renders "MP1001 ReferencedSubsetNotFound".
func (c Code) String() string { return c.ID + " " + c.Name }

// The codes. MP00xx: reading the input. MP01xx: one object on its own, what an admission
// webhook can check (Validate; errors are what it would reject, warnings what it would admit with
// a warning). MP10xx: objects in the context of the others (Analyze).
//
// Where Istio admits an object, our validation admits it too, so existing Istio YAML keeps
// working: mistakes Istio accepts are warnings here, not errors.
var (
	CodeParseError = Code{"MP0001", "ParseError", Error,
		"A file is not valid YAML or JSON, or a document in it is not an object with apiVersion and kind."}
	CodeSchemaError = Code{"MP0002", "SchemaError", Error,
		"A field is unknown (often a typo, the message suggests the intended name), has the wrong type, " +
			"an unknown enum value, or is a second member of a one-of (loadBalancer simple and consistentHash, " +
			"two consistentHash keys, abort httpStatus and grpcStatus); or the apiVersion is not served. " +
			"The API server rejects such objects; Istio's own decoding would silently drop the field."}
	CodeUnknownKind = Code{"MP0003", "UnknownKind", Warning,
		"The object's kind is not one meshctl checks; it is ignored."}
	CodeDuplicateObject = Code{"MP0004", "DuplicateObject", Warning,
		"The same kind, namespace and name is defined more than once in the input; applying it keeps only the last one."}

	CodeInvalidField = Code{"MP0101", "InvalidField", Error,
		"A field has a value Istio rejects (an invalid name, label, policy, protocol, address, ...)."}
	CodeMissingField = Code{"MP0102", "MissingField", Error,
		"A required field is missing or empty, such as a VirtualService without hosts or routes, a subset without a name, " +
			"a Gateway server without port or hosts, TLS settings without a certificate, a JWT rule without issuer, or a " +
			"DENY or CUSTOM AuthorizationPolicy without rules."}
	CodeConflictingFields = Code{"MP0103", "ConflictingFields", Error,
		"Fields that cannot be used together, such as redirect or directResponse together with route, a policy's selector " +
			"together with targetRefs, a provider on an AuthorizationPolicy whose action is not CUSTOM, or jwks together " +
			"with jwksUri."}
	CodeInvalidRouteWeights = Code{"MP0104", "InvalidRouteWeights", Error,
		"A destination weight is negative, or the weights of several destinations add up to 0, so no traffic can be routed."}
	CodeInvalidRegex = Code{"MP0105", "InvalidRegex", Error,
		"A regex does not compile as RE2, the syntax Envoy uses (Go's regexp package implements the same syntax)."}
	CodeInvalidDuration = Code{"MP0106", "InvalidDuration", Error,
		"A duration (timeout, perTryTimeout, fixedDelay, interval, ...) is shorter than 1ms or not a whole number of milliseconds."}
	CodeInvalidHost = Code{"MP0107", "InvalidHost", Error,
		"A host is not a DNS name (optionally with a leading \"*.\" wildcard), is a wildcard where none is allowed, " +
			"or a Sidecar/Gateway host is not in namespace/host form."}
	CodeDuplicateEntry = Code{"MP0108", "DuplicateEntry", Error,
		"A name that must be unique appears twice: subset names in a DestinationRule, hosts of a VirtualService, " +
			"port names or numbers."}
	CodeInvalidPort = Code{"MP0109", "InvalidPort", Error,
		"A port number is outside 1-65535."}
	CodeInvalidPercentage = Code{"MP0110", "InvalidPercentage", Error,
		"A percentage (fault injection, mirroring, outlier ejection) is outside 0-100."}
	CodeInvalidStatusCode = Code{"MP0111", "InvalidStatusCode", Error,
		"An HTTP status is out of range: fault abort and directResponse need 200-599, redirects 300-399."}
	CodeInvalidJWKS = Code{"MP0112", "InvalidJWKS", Error,
		"A RequestAuthentication JWT rule's inline jwks is not a JSON Web Key Set (an object with a \"keys\" list of " +
			"valid keys), or its jwksUri is not an absolute http:// or https:// URL with a host. Tokens of that issuer " +
			"could never be verified."}
	CodeInvalidCondition = Code{"MP0113", "InvalidCondition", Error,
		"An AuthorizationPolicy `when` condition has a key Istio does not know (request.headers[<name>], source.ip, " +
			"remote.ip, source.namespace, source.principal, request.auth.principal, request.auth.audiences, " +
			"request.auth.presenter, request.auth.claims[<name>], destination.ip, destination.port, connection.sni, " +
			"experimental.envoy.filters.<path>[<key>]), neither values nor notValues, an empty value, or a value that " +
			"does not fit its key (an IP address or CIDR for *.ip, a port for destination.port)."}

	CodeRouteWeightsNotHundred = Code{"MP0151", "RouteWeightsNotHundred", Warning,
		"Destination weights do not add up to 100. Istio accepts this and splits traffic in proportion to the weights, " +
			"which is rarely what the author meant; a single destination with a weight other than 100 gets all traffic anyway."}
	CodeUnreachableRoute = Code{"MP0152", "UnreachableRoute", Warning,
		"A route rule or match can never be used: an earlier rule without match conditions takes every request, " +
			"or the same match appears earlier in the VirtualService."}
	CodeIneffectiveConfig = Code{"MP0153", "IneffectiveConfig", Warning,
		"A setting is accepted but does nothing: an abort without httpStatus or grpcStatus, a delay without fixedDelay, " +
			"a ServiceEntry without ports, a STATIC ServiceEntry without endpoints, a policy selector without labels " +
			"(it selects the whole namespace, like no selector), a port-level mTLS mode UNSET."}
	CodePartialWildcardHost = Code{"MP0154", "PartialWildcardHost", Warning,
		"A host such as \"*foo.example.com\" has a wildcard that is not a whole label. Istio admits it in VirtualService, " +
			"DestinationRule and ServiceEntry hosts (matching by suffix) but it is not a DNS wildcard, and Gateway and " +
			"Sidecar hosts refuse it (an error there)."}
	CodeAllowNothingPolicy = Code{"MP0155", "AllowNothingPolicy", Warning,
		"An ALLOW AuthorizationPolicy without rules matches no request, so the workloads it selects refuse every request " +
			"that no other ALLOW policy allows. That is how Istio spells \"allow nothing\"; if it is not what was meant, " +
			"add the rules that should be allowed (an empty rule {} allows everything)."}
	CodeMisplacedWildcard = Code{"MP0156", "MisplacedWildcard", Warning,
		"A value in an AuthorizationPolicy (principal, namespace, host, path, ...) has a \"*\" that is not a wildcard: " +
			"Istio reads one \"*\" as the whole value, its first character or its last as one, and matches any other " +
			"literally, which is rarely meant. (A path template uses {*} or {**} instead.)"}
	CodeHTTPOnlyDenyRule = Code{"MP0157", "HTTPOnlyDenyRule", Warning,
		"A DENY rule matches on HTTP attributes only (methods, paths, hosts, request principals, ...) and names no port. " +
			"On TCP ports HTTP attributes cannot be seen, so Istio applies the rule without them there: it denies all " +
			"TCP traffic the rest of the rule matches. Name the ports the rule is meant for."}
	CodePrivateKeyInJWKS = Code{"MP0158", "PrivateKeyInJWKS", Warning,
		"A RequestAuthentication's inline jwks holds the private half of an asymmetric key (RSA, EC, OKP). Proxies " +
			"only need the public half to verify tokens, and every proxy the policy applies to receives the jwks: " +
			"anyone who can read a proxy's configuration could sign tokens. Publish the public keys only."}

	CodeReferencedSubsetNotFound = Code{"MP1001", "ReferencedSubsetNotFound", Error,
		"A route or mirror names a subset that no DestinationRule for the destination host defines; " +
			"requests to it fail with 503. Define the subset or fix the name."}
	CodeDestinationHostNotFound = Code{"MP1002", "DestinationHostNotFound", Error,
		"A route or mirror destination host matches no Service (by FQDN, name.namespace, or short name in the " +
			"VirtualService's namespace) and no ServiceEntry host in the input."}
	CodeReferencedGatewayNotFound = Code{"MP1003", "ReferencedGatewayNotFound", Error,
		"A VirtualService names a Gateway (namespace/name, or name in its own namespace) that is not in the input. " +
			"\"mesh\" always exists."}
	CodeConflictingVirtualServiceHosts = Code{"MP1004", "ConflictingVirtualServiceHosts", Warning,
		"Two VirtualServices define the same host for the same gateway (or both for the mesh); Istio merges them " +
			"in an order that is hard to predict. Merge them into one."}
	CodeSubsetSelectsNoWorkloads = Code{"MP1005", "SubsetSelectsNoWorkloads", Warning,
		"A DestinationRule subset's labels match none of the service's pods or Deployment templates in the input, " +
			"so traffic to the subset has no endpoints. Only checked when the input contains workloads of the service."}
	CodeConflictingPeerAuthentications = Code{"MP1006", "ConflictingPeerAuthentications", Warning,
		"Several PeerAuthentications apply at the same level: more than one without a selector in a namespace " +
			"(namespace-wide; mesh-wide in the root namespace), or more than one with a selector for the same workload. " +
			"Istio applies the oldest and ignores the others. Merge them into one, or delete the extra ones."}
)

// Codes lists every code in ID order; `meshctl analyze --list-codes` prints it.
var Codes = []Code{
	CodeParseError, CodeSchemaError, CodeUnknownKind, CodeDuplicateObject,
	CodeInvalidField, CodeMissingField, CodeConflictingFields, CodeInvalidRouteWeights, CodeInvalidRegex,
	CodeInvalidDuration, CodeInvalidHost, CodeDuplicateEntry, CodeInvalidPort, CodeInvalidPercentage,
	CodeInvalidStatusCode, CodeInvalidJWKS, CodeInvalidCondition,
	CodeRouteWeightsNotHundred, CodeUnreachableRoute, CodeIneffectiveConfig, CodePartialWildcardHost,
	CodeAllowNothingPolicy, CodeMisplacedWildcard, CodeHTTPOnlyDenyRule, CodePrivateKeyInJWKS,
	CodeReferencedSubsetNotFound, CodeDestinationHostNotFound, CodeReferencedGatewayNotFound,
	CodeConflictingVirtualServiceHosts, CodeSubsetSelectsNoWorkloads, CodeConflictingPeerAuthentications,
}
