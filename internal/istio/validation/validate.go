// Package validation checks Istio configuration objects, the networking.istio.io kinds and the
// security.istio.io ones (PeerAuthentication, AuthorizationPolicy, RequestAuthentication): each
// object on its own (Validate, what an admission webhook can decide from the object alone) and
// all objects together (Analyze: references between them and to Services and workloads,
// policies that compete). Findings carry stable codes, listed with their meaning in codes.go.
//
// The rules follow what Istio itself enforces, learnt from its documentation and webhook, and
// what Envoy would reject. Where Istio admits a suspicious object (weights that do not add up to
// 100, a rule that can never match, an abort without a status), it is a warning here, so that
// existing Istio configuration keeps being accepted.
package validation

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8svalidation "k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// Validate returns what is wrong with one Istio configuration object on its own: the errors for
// which an admission webhook rejects it. Objects of other types have no errors.
func Validate(obj runtime.Object) field.ErrorList {
	errs, _ := ValidateWithWarnings(obj)
	return errs
}

// ValidateWithWarnings is Validate plus the warnings an admission webhook returns while
// admitting the object (AdmissionResponse.Warnings).
func ValidateWithWarnings(obj runtime.Object) (errs, warnings field.ErrorList) {
	for _, issue := range validateObject(obj) {
		if issue.code.Severity == Error {
			errs = append(errs, issue.err)
		} else {
			warnings = append(warnings, issue.err)
		}
	}
	return errs, warnings
}

// issue is a field error with the code it is reported under.
type issue struct {
	code Code
	err  *field.Error
}

// message is the text shown after the field path: the detail, which our checks always write
// as a whole sentence, or apimachinery's rendering when there is none.
func (i issue) message() string {
	if i.err.Detail != "" {
		return i.err.Detail
	}
	return i.err.ErrorBody()
}

func validateObject(obj runtime.Object) []issue {
	var v validator
	switch o := obj.(type) {
	case *networkingv1.VirtualService:
		v.namespace = o.Namespace
		v.virtualService(&o.Spec)
	case *networkingv1.DestinationRule:
		v.namespace = o.Namespace
		v.destinationRule(&o.Spec)
	case *networkingv1.Gateway:
		v.namespace = o.Namespace
		v.gateway(o.Name, &o.Spec)
	case *networkingv1.ServiceEntry:
		v.namespace = o.Namespace
		v.serviceEntry(&o.Spec)
	case *networkingv1.Sidecar:
		v.namespace = o.Namespace
		v.sidecar(&o.Spec)
	case *securityv1.PeerAuthentication:
		v.namespace = o.Namespace
		v.peerAuthentication(&o.Spec)
	case *securityv1.AuthorizationPolicy:
		v.namespace = o.Namespace
		v.authorizationPolicy(&o.Spec, o.Annotations)
	case *securityv1.RequestAuthentication:
		v.namespace = o.Namespace
		v.requestAuthentication(&o.Spec)
	}
	return v.issues
}

// validator collects the issues of one object.
type validator struct {
	namespace string
	issues    []issue
}

func (v *validator) add(code Code, err *field.Error) {
	v.issues = append(v.issues, issue{code: code, err: err})
}

// invalid reports a field whose value is wrong.
func (v *validator) invalid(code Code, path *field.Path, value any, format string, args ...any) {
	v.add(code, field.Invalid(path, value, fmt.Sprintf(format, args...)))
}

// required reports a field that is missing or empty.
func (v *validator) required(path *field.Path, format string, args ...any) {
	v.add(CodeMissingField, field.Required(path, fmt.Sprintf(format, args...)))
}

// forbidden reports a field that may not be set, given the others.
func (v *validator) forbidden(path *field.Path, format string, args ...any) {
	v.add(CodeConflictingFields, field.Forbidden(path, fmt.Sprintf(format, args...)))
}

// warn reports a warning.
func (v *validator) warn(code Code, path *field.Path, value any, format string, args ...any) {
	v.add(code, field.Invalid(path, value, fmt.Sprintf(format, args...)))
}

// duration checks a duration Envoy is given: Istio requires at least 1ms and whole milliseconds.
func (v *validator) duration(path *field.Path, d *durationpb.Duration) {
	if d == nil {
		return
	}
	value := d.AsDuration()
	switch {
	case value < time.Millisecond:
		v.invalid(CodeInvalidDuration, path, value.String(), "must be at least 1ms, not %s", value)
	case value%time.Millisecond != 0:
		v.invalid(CodeInvalidDuration, path, value.String(), "must be a whole number of milliseconds, not %s", value)
	}
}

// port checks a port number.
func (v *validator) port(path *field.Path, number uint32) {
	if number < 1 || number > 65535 {
		v.invalid(CodeInvalidPort, path, number, "port %d is not in 1-65535", number)
	}
}

// percentage checks an Istio Percent: 0, or 0.0001 to 100.
func (v *validator) percentage(path *field.Path, percent *networkingv1alpha3.Percent) {
	if percent == nil {
		return
	}
	if value := percent.GetValue(); value < 0 || value > 100 {
		v.invalid(CodeInvalidPercentage, path.Child("value"), value, "percentage %g is not in 0-100", value)
	} else if value > 0 && value < 0.0001 {
		v.invalid(CodeInvalidPercentage, path.Child("value"), value, "percentage %g is below the smallest Envoy supports, 0.0001", value)
	}
}

// maxRegexLength is Istio's limit: Envoy bounds RE2 program size, which is always larger than
// the length, so Istio caps the length.
const maxRegexLength = 1024

// regex checks a regular expression Envoy compiles with RE2; Go's regexp implements RE2 syntax.
func (v *validator) regex(path *field.Path, expression string) {
	if expression == "" {
		v.invalid(CodeInvalidRegex, path, expression, "regex must not be empty")
		return
	}
	if len(expression) > maxRegexLength {
		v.invalid(CodeInvalidRegex, path, "", "regex is %d characters long, Istio allows at most %d", len(expression), maxRegexLength)
		return
	}
	if _, err := regexp.Compile(expression); err != nil {
		v.invalid(CodeInvalidRegex, path, expression, "invalid RE2 regex %q: %s", expression, strings.TrimPrefix(err.Error(), "error parsing regexp: "))
	}
}

// stringMatch checks an exact/prefix/regex match. An empty prefix is allowed only for URIs
// (Envoy's path match accepts it, its string matcher does not).
func (v *validator) stringMatch(path *field.Path, match *networkingv1alpha3.StringMatch, emptyPrefixAllowed bool) {
	switch m := match.GetMatchType().(type) {
	case *networkingv1alpha3.StringMatch_Regex:
		v.regex(path.Child("regex"), m.Regex)
	case *networkingv1alpha3.StringMatch_Prefix:
		if m.Prefix == "" && !emptyPrefixAllowed {
			v.invalid(CodeInvalidField, path.Child("prefix"), "", "prefix must not be empty")
		}
	}
}

// labels checks Kubernetes label keys and values (subset labels, selectors).
func (v *validator) labels(path *field.Path, labels map[string]string) {
	for _, key := range sortedKeys(labels) {
		for _, msg := range k8svalidation.IsQualifiedName(key) {
			v.invalid(CodeInvalidField, path.Key(key), key, "invalid label key %q: %s", key, msg)
		}
		for _, msg := range k8svalidation.IsValidLabelValue(labels[key]) {
			v.invalid(CodeInvalidField, path.Key(key), labels[key], "invalid label value %q: %s", labels[key], msg)
		}
	}
}

// exportTo checks visibility entries: ".", "*", "~" or a namespace, each once.
func (v *validator) exportTo(path *field.Path, entries []string, allowNone bool) {
	seen := map[string]int{}
	for i, entry := range entries {
		key := entry
		if entry == "." {
			key = v.namespace
		}
		if first, ok := seen[key]; ok {
			v.invalid(CodeDuplicateEntry, path.Index(i), entry, "%q is listed twice (also exportTo[%d])", entry, first)
			continue
		}
		seen[key] = i
		if entry == "." || entry == "*" || (entry == "~" && allowNone) {
			continue
		}
		if !isDNSLabel(entry) {
			v.invalid(CodeInvalidField, path.Index(i), entry, "exportTo entries are \".\", \"*\" or a namespace name, not %q", entry)
		}
	}
}

// dnsLabel is a DNS label as Istio checks it: letters of either case (DNS is case-insensitive),
// digits and '-', starting and ending with a letter or digit. Kubernetes object names are
// stricter (lowercase), and are checked by the API server.
var dnsLabel = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)

// isDNSLabel reports whether name is a DNS label of at most 63 characters: how Istio checks
// host labels, subset and port names.
func isDNSLabel(name string) bool { return len(name) <= 63 && dnsLabel.MatchString(name) }

// hostNameProblem says what is wrong with a host name, or "" if it is valid: a DNS name of
// labels (see isDNSLabel; a short name is a single label), optionally starting with a "*."
// wildcard or being just "*", with an optional trailing dot and a top-level label that is not
// all digits (that would be an IP address). Like Istio, it also accepts a partial wildcard in
// the first label ("*foo.example.com"), which callers warn about or refuse, see
// isPartialWildcard.
func hostNameProblem(host string) string {
	switch {
	case host == "":
		return "host must not be empty"
	case len(host) > 255:
		return fmt.Sprintf("host %q is longer than 255 characters", host)
	case host == "*":
		return ""
	}
	rest := strings.TrimSuffix(host, ".")
	if after, ok := strings.CutPrefix(rest, "*."); ok {
		rest = after
	}
	labels := strings.Split(rest, ".")
	if isPartialWildcard(host) {
		labels[0] = strings.TrimPrefix(strings.TrimPrefix(labels[0], "*"), "-")
	}
	for _, label := range labels {
		if strings.Contains(label, "*") {
			return fmt.Sprintf("host %q has a wildcard that is not in its first label", host)
		}
		if !isDNSLabel(label) {
			return fmt.Sprintf("host %q is not a DNS name: label %q must be at most 63 letters, digits and '-', starting and ending with a letter or digit", host, label)
		}
	}
	if last := labels[len(labels)-1]; strings.Trim(last, "0123456789") == "" {
		return fmt.Sprintf("host %q is not a DNS name: the top-level label %q is all digits", host, last)
	}
	return ""
}

// isPartialWildcard reports a host whose first label is a wildcard with more after it, such as
// "*foo.example.com" (a whole-label wildcard is "*.example.com").
func isPartialWildcard(host string) bool {
	return strings.HasPrefix(host, "*") && host != "*" && !strings.HasPrefix(host, "*.")
}

// host checks a host of a VirtualService, DestinationRule, ServiceEntry or destination, where
// Istio admits partial wildcards.
func (v *validator) host(path *field.Path, host string) {
	if problem := hostNameProblem(host); problem != "" {
		v.invalid(CodeInvalidHost, path, host, "%s", problem)
	} else if isPartialWildcard(host) {
		v.warn(CodePartialWildcardHost, path, host,
			"host %q has a partial wildcard; it matches by suffix in Istio but is not a DNS wildcard, and Gateways and Sidecars refuse it; use %q if that is meant",
			host, "*."+strings.TrimPrefix(strings.TrimPrefix(host, "*"), "."))
	}
}

func isIPAddress(s string) bool {
	_, err := netip.ParseAddr(s)
	return err == nil
}

// isIPOrCIDR accepts an address or a prefix ("10.0.0.0/8").
func isIPOrCIDR(s string) bool {
	if strings.Contains(s, "/") {
		_, err := netip.ParsePrefix(s)
		return err == nil
	}
	return isIPAddress(s)
}

// protocols Istio knows (case-insensitive), from its port protocol list.
var protocols = map[string]bool{
	"HTTP": true, "HTTPS": true, "HTTP2": true, "HTTP_PROXY": true, "GRPC": true, "GRPC-WEB": true,
	"TCP": true, "TLS": true, "UDP": true, "MONGO": true, "REDIS": true, "MYSQL": true,
}

func isKnownProtocol(protocol string) bool { return protocols[strings.ToUpper(protocol)] }

func isHTTPProtocol(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}

func isTLSProtocol(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "HTTPS", "TLS":
		return true
	}
	return false
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for key := range m {
		keys = append(keys, key)
	}
	slices.Sort(keys)
	return keys
}
