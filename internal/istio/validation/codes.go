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
			"a Gateway server without port or hosts, or TLS settings without a certificate."}
	CodeConflictingFields = Code{"MP0103", "ConflictingFields", Error,
		"Fields that cannot be used together, such as redirect or directResponse together with route."}
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

	CodeRouteWeightsNotHundred = Code{"MP0151", "RouteWeightsNotHundred", Warning,
		"Destination weights do not add up to 100. Istio accepts this and splits traffic in proportion to the weights, " +
			"which is rarely what the author meant; a single destination with a weight other than 100 gets all traffic anyway."}
	CodeUnreachableRoute = Code{"MP0152", "UnreachableRoute", Warning,
		"A route rule or match can never be used: an earlier rule without match conditions takes every request, " +
			"or the same match appears earlier in the VirtualService."}
	CodeIneffectiveConfig = Code{"MP0153", "IneffectiveConfig", Warning,
		"A setting is accepted but does nothing: an abort without httpStatus or grpcStatus, a delay without fixedDelay, " +
			"a ServiceEntry without ports, a STATIC ServiceEntry without endpoints."}
	CodePartialWildcardHost = Code{"MP0154", "PartialWildcardHost", Warning,
		"A host such as \"*foo.example.com\" has a wildcard that is not a whole label. Istio admits it in VirtualService, " +
			"DestinationRule and ServiceEntry hosts (matching by suffix) but it is not a DNS wildcard, and Gateway and " +
			"Sidecar hosts refuse it (an error there)."}

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
)

// Codes lists every code in ID order; `meshctl analyze --list-codes` prints it.
var Codes = []Code{
	CodeParseError, CodeSchemaError, CodeUnknownKind, CodeDuplicateObject,
	CodeInvalidField, CodeMissingField, CodeConflictingFields, CodeInvalidRouteWeights, CodeInvalidRegex,
	CodeInvalidDuration, CodeInvalidHost, CodeDuplicateEntry, CodeInvalidPort, CodeInvalidPercentage,
	CodeInvalidStatusCode,
	CodeRouteWeightsNotHundred, CodeUnreachableRoute, CodeIneffectiveConfig, CodePartialWildcardHost,
	CodeReferencedSubsetNotFound, CodeDestinationHostNotFound, CodeReferencedGatewayNotFound,
	CodeConflictingVirtualServiceHosts, CodeSubsetSelectsNoWorkloads,
}
