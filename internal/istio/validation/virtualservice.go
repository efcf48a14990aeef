package validation

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// meshGateway is the reserved gateway name for the sidecars of the mesh.
const meshGateway = "mesh"

func (v *validator) virtualService(spec *networkingv1alpha3.VirtualService) {
	specPath := field.NewPath("spec")
	boundToMesh := len(spec.Gateways) == 0 || slices.Contains(spec.Gateways, meshGateway)

	hostsPath := specPath.Child("hosts")
	if len(spec.Hosts) == 0 && (len(spec.Gateways) > 0 || len(spec.Tcp) > 0 || len(spec.Tls) > 0) {
		v.required(hostsPath, "a VirtualService needs at least one host; only a delegate VirtualService (HTTP routes only, no gateways) may have none")
	}
	hostsValid := true
	for i, host := range spec.Hosts {
		switch {
		case host == "*" && boundToMesh:
			v.invalid(CodeInvalidHost, hostsPath.Index(i), host, `the wildcard host "*" is only allowed when the VirtualService is bound to gateways, not to the mesh`)
			hostsValid = false
		case isIPAddress(host):
		case hostNameProblem(host) != "":
			hostsValid = false
			fallthrough
		default:
			v.host(hostsPath.Index(i), host)
		}
	}
	for i, host := range spec.Hosts {
		if !hostsValid {
			break // overlaps between invalid hosts would only repeat the problem
		}
		for j := range i {
			if hostsOverlap(spec.Hosts[j], host) {
				v.invalid(CodeDuplicateEntry, hostsPath.Index(i), host, "host %q overlaps hosts[%d] %q of the same VirtualService", host, j, spec.Hosts[j])
				break
			}
		}
	}
	for i, gateway := range spec.Gateways {
		v.gatewayReference(specPath.Child("gateways").Index(i), gateway)
	}

	if len(spec.Http) == 0 && len(spec.Tcp) == 0 && len(spec.Tls) == 0 {
		v.required(specPath.Child("http"), "a VirtualService needs at least one http, tcp or tls route")
	}
	delegate := len(spec.Hosts) == 0
	for i, route := range spec.Http {
		if route == nil {
			v.required(specPath.Child("http").Index(i), "an HTTP route must not be empty")
			continue
		}
		v.httpRoute(specPath.Child("http").Index(i), route, delegate)
	}
	for i, route := range spec.Tls {
		if route == nil {
			v.required(specPath.Child("tls").Index(i), "a TLS route must not be empty")
			continue
		}
		v.tlsRoute(specPath.Child("tls").Index(i), route, spec.Hosts)
	}
	for i, route := range spec.Tcp {
		if route == nil {
			v.required(specPath.Child("tcp").Index(i), "a TCP route must not be empty")
			continue
		}
		v.tcpRoute(specPath.Child("tcp").Index(i), route)
	}
	v.exportTo(specPath.Child("exportTo"), spec.ExportTo, false)

	v.unreachableRules(specPath.Child("http"), rulesOf(spec.Http, (*networkingv1alpha3.HTTPRoute).GetMatch))
	v.unreachableRules(specPath.Child("tls"), rulesOf(spec.Tls, (*networkingv1alpha3.TLSRoute).GetMatch))
	v.unreachableRules(specPath.Child("tcp"), rulesOf(spec.Tcp, (*networkingv1alpha3.TCPRoute).GetMatch))
}

// gatewayReference checks the form of a gateway name: "mesh", "namespace/name" or "name" (in
// the VirtualService's namespace). Gateway names are DNS labels.
func (v *validator) gatewayReference(path *field.Path, reference string) {
	if reference == meshGateway {
		return
	}
	if namespace, name, ok := strings.Cut(reference, "/"); ok {
		if !isDNSLabel(namespace) || !isDNSLabel(name) {
			v.invalid(CodeInvalidField, path, reference, "gateway %q must be namespace/name with both parts DNS labels", reference)
		}
		return
	}
	if !isDNSLabel(reference) && hostNameProblem(reference) != "" {
		v.invalid(CodeInvalidField, path, reference, "gateway %q must be \"mesh\", a gateway name, or namespace/name", reference)
	}
}

func (v *validator) httpRoute(path *field.Path, route *networkingv1alpha3.HTTPRoute, inDelegate bool) {
	hasRoute := len(route.Route) > 0
	switch {
	case route.Delegate != nil:
		if inDelegate {
			v.forbidden(path.Child("delegate"), "a delegate VirtualService cannot delegate again")
		}
		if hasRoute {
			v.forbidden(path.Child("route"), "a rule with delegate hands routing to the delegate VirtualService, so it cannot have route")
		}
		if route.Redirect != nil {
			v.forbidden(path.Child("redirect"), "a rule with delegate hands routing to the delegate VirtualService, so it cannot have redirect")
		}
	case route.Redirect != nil:
		if hasRoute {
			v.forbidden(path.Child("redirect"), "redirect cannot be used together with route: a rule either redirects or routes")
		}
		if route.DirectResponse != nil {
			v.forbidden(path.Child("directResponse"), "directResponse cannot be used together with redirect")
		}
		if route.Fault != nil {
			v.forbidden(path.Child("fault"), "fault cannot be used together with redirect: redirected requests are not forwarded")
		}
		if route.Rewrite != nil {
			v.forbidden(path.Child("rewrite"), "rewrite cannot be used together with redirect: redirected requests are not forwarded")
		}
	case route.DirectResponse != nil:
		if hasRoute {
			v.forbidden(path.Child("directResponse"), "directResponse cannot be used together with route: a rule either answers itself or routes")
		}
		if route.Fault != nil {
			v.forbidden(path.Child("fault"), "fault cannot be used together with directResponse: such requests are not forwarded")
		}
		if route.Rewrite != nil {
			v.forbidden(path.Child("rewrite"), "rewrite cannot be used together with directResponse: such requests are not forwarded")
		}
	case !hasRoute:
		v.required(path.Child("route"), "an HTTP rule needs route, redirect, directResponse or delegate")
	}
	if route.Mirror != nil && len(route.Mirrors) > 0 {
		v.forbidden(path.Child("mirrors"), "mirror and mirrors cannot be used together; list every mirror under mirrors")
	}

	for i, match := range route.Match {
		if match != nil {
			v.httpMatch(path.Child("match").Index(i), match)
		}
	}
	v.routeDestinations(path.Child("route"), httpDestinations(route.Route))
	v.duration(path.Child("timeout"), route.Timeout)
	v.retries(path.Child("retries"), route.Retries)
	v.fault(path.Child("fault"), route.Fault)

	if route.Mirror != nil {
		v.destination(path.Child("mirror"), route.Mirror)
	}
	// mirrorPercent is deprecated in favour of mirrorPercentage, and still accepted.
	if percent := route.MirrorPercent.GetValue(); percent > 100 {
		v.invalid(CodeInvalidPercentage, path.Child("mirrorPercent"), percent, "percentage %d is not in 0-100", percent)
	}
	v.percentage(path.Child("mirrorPercentage"), route.MirrorPercentage)
	for i, mirror := range route.Mirrors {
		mirrorPath := path.Child("mirrors").Index(i)
		if mirror == nil {
			continue
		}
		if mirror.Destination == nil {
			v.required(mirrorPath.Child("destination"), "a mirror needs a destination")
		} else {
			v.destination(mirrorPath.Child("destination"), mirror.Destination)
		}
		v.percentage(mirrorPath.Child("percentage"), mirror.Percentage)
	}

	v.redirect(path.Child("redirect"), route.Redirect, route.Match)
	if response := route.DirectResponse; response != nil && (response.Status < 200 || response.Status > 599) {
		v.invalid(CodeInvalidStatusCode, path.Child("directResponse", "status"), response.Status, "directResponse status %d is not in 200-599", response.Status)
	}
	v.rewrite(path.Child("rewrite"), route.Rewrite)
	v.corsPolicy(path.Child("corsPolicy"), route.CorsPolicy)
}

func (v *validator) httpMatch(path *field.Path, match *networkingv1alpha3.HTTPMatchRequest) {
	v.stringMatch(path.Child("uri"), match.Uri, true)
	v.stringMatch(path.Child("scheme"), match.Scheme, false)
	v.stringMatch(path.Child("method"), match.Method, false)
	v.stringMatch(path.Child("authority"), match.Authority, false)
	for _, name := range sortedKeys(match.Headers) {
		if name == "" {
			v.invalid(CodeInvalidField, path.Child("headers"), name, "header names must not be empty")
		}
		v.stringMatch(path.Child("headers").Key(name), match.Headers[name], false)
	}
	for _, name := range sortedKeys(match.WithoutHeaders) {
		// regex "*" means "header present", it is not parsed as a regex.
		if header := match.WithoutHeaders[name]; header.GetRegex() != "*" {
			v.stringMatch(path.Child("withoutHeaders").Key(name), header, false)
		}
	}
	for _, name := range sortedKeys(match.QueryParams) {
		v.stringMatch(path.Child("queryParams").Key(name), match.QueryParams[name], false)
	}
	if match.Port != 0 {
		v.port(path.Child("port"), match.Port)
	}
	v.labels(path.Child("sourceLabels"), match.SourceLabels)
	for i, gateway := range match.Gateways {
		v.gatewayReference(path.Child("gateways").Index(i), gateway)
	}
	if match.SourceNamespace != "" && !isDNSLabel(match.SourceNamespace) {
		v.invalid(CodeInvalidField, path.Child("sourceNamespace"), match.SourceNamespace, "sourceNamespace %q is not a namespace name", match.SourceNamespace)
	}
}

// weightedDestination is a route entry of any route type.
type weightedDestination struct {
	destination *networkingv1alpha3.Destination
	weight      int32
}

func httpDestinations(route []*networkingv1alpha3.HTTPRouteDestination) []*weightedDestination {
	out := make([]*weightedDestination, len(route))
	for i, d := range route {
		if d != nil {
			out[i] = &weightedDestination{d.Destination, d.Weight}
		}
	}
	return out
}

func l4Destinations(route []*networkingv1alpha3.RouteDestination) []*weightedDestination {
	out := make([]*weightedDestination, len(route))
	for i, d := range route {
		if d != nil {
			out[i] = &weightedDestination{d.Destination, d.Weight}
		}
	}
	return out
}

// routeDestinations checks the destinations of one rule and their weights. Istio sends each
// destination weight/total of the traffic, so only a total of 0 (nowhere to send anything) is
// an error; a total other than 100 is legal but rarely meant.
func (v *validator) routeDestinations(path *field.Path, destinations []*weightedDestination) {
	var total int64
	negative := false
	for i, d := range destinations {
		if d == nil {
			v.required(path.Index(i), "a route entry must not be empty")
			continue
		}
		if d.destination == nil {
			v.required(path.Index(i).Child("destination"), "every route entry needs a destination")
		} else {
			v.destination(path.Index(i).Child("destination"), d.destination)
		}
		if d.weight < 0 {
			v.invalid(CodeInvalidRouteWeights, path.Index(i).Child("weight"), d.weight, "weight %d is negative; weights are 0 or more", d.weight)
			negative = true
		}
		total += int64(d.weight)
	}
	if negative || len(destinations) == 0 || slices.Contains(destinations, nil) {
		return
	}
	switch {
	case len(destinations) > 1 && total == 0:
		v.invalid(CodeInvalidRouteWeights, path, total,
			"the weights of the %d destinations add up to 0, so there is nowhere to send traffic; give them weights that add up to 100", len(destinations))
	case len(destinations) > 1 && total != 100:
		v.warn(CodeRouteWeightsNotHundred, path, total,
			"the weights of the %d destinations add up to %d, not 100; Istio splits traffic in proportion, giving each destination weight/%d of it", len(destinations), total, total)
	case len(destinations) == 1 && destinations[0].weight != 0 && destinations[0].weight != 100:
		v.warn(CodeRouteWeightsNotHundred, path.Index(0).Child("weight"), destinations[0].weight,
			"the only destination gets all traffic, so weight %d has no effect; use 100 or leave it out", destinations[0].weight)
	}
}

func (v *validator) destination(path *field.Path, destination *networkingv1alpha3.Destination) {
	switch destination.Host {
	case "":
		v.required(path.Child("host"), "a destination needs a host")
	case "*":
		v.invalid(CodeInvalidHost, path.Child("host"), destination.Host, `a destination host cannot be "*"`)
	default:
		v.host(path.Child("host"), destination.Host)
	}
	if destination.Subset != "" && !isDNSLabel(destination.Subset) {
		v.invalid(CodeInvalidField, path.Child("subset"), destination.Subset, "subset name %q is not a DNS label", destination.Subset)
	}
	if destination.Port != nil {
		v.port(path.Child("port", "number"), destination.Port.Number)
	}
}

// retryOnPolicies are the retry conditions Envoy understands (x-envoy-retry-on and
// x-envoy-retry-grpc-on); HTTP status codes are accepted too.
var retryOnPolicies = map[string]bool{
	"5xx": true, "gateway-error": true, "reset": true, "reset-before-request": true, "connect-failure": true,
	"retriable-4xx": true, "refused-stream": true, "retriable-status-codes": true, "retriable-headers": true,
	"envoy-ratelimited": true, "http3-post-connect-failure": true,
	"cancelled": true, "deadline-exceeded": true, "internal": true, "resource-exhausted": true, "unavailable": true,
}

func (v *validator) retries(path *field.Path, retries *networkingv1alpha3.HTTPRetry) {
	if retries == nil {
		return
	}
	if retries.Attempts < 0 {
		v.invalid(CodeInvalidField, path.Child("attempts"), retries.Attempts, "attempts %d is negative", retries.Attempts)
	}
	if retries.Attempts == 0 && (retries.PerTryTimeout != nil || retries.RetryOn != "" || retries.RetryRemoteLocalities != nil) {
		v.forbidden(path.Child("attempts"), "attempts 0 disables retries, so perTryTimeout, retryOn and retryRemoteLocalities cannot be set; set attempts or remove them")
	}
	v.duration(path.Child("perTryTimeout"), retries.PerTryTimeout)
	v.duration(path.Child("backoff"), retries.Backoff)
	if retries.RetryOn != "" {
		for _, policy := range strings.Split(retries.RetryOn, ",") {
			if code, err := strconv.Atoi(policy); err == nil && http.StatusText(code) != "" {
				continue
			}
			if !retryOnPolicies[policy] {
				v.invalid(CodeInvalidField, path.Child("retryOn"), retries.RetryOn,
					"%q is not a retry condition Envoy knows (such as 5xx, gateway-error, connect-failure, refused-stream, retriable-4xx, unavailable, or an HTTP status code)", policy)
			}
		}
	}
}

// grpcStatuses are the status names of the gRPC specification.
var grpcStatuses = map[string]bool{
	"OK": true, "CANCELLED": true, "UNKNOWN": true, "INVALID_ARGUMENT": true, "DEADLINE_EXCEEDED": true,
	"NOT_FOUND": true, "ALREADY_EXISTS": true, "PERMISSION_DENIED": true, "RESOURCE_EXHAUSTED": true,
	"FAILED_PRECONDITION": true, "ABORTED": true, "OUT_OF_RANGE": true, "UNIMPLEMENTED": true, "INTERNAL": true,
	"UNAVAILABLE": true, "DATA_LOSS": true, "UNAUTHENTICATED": true,
}

func (v *validator) fault(path *field.Path, fault *networkingv1alpha3.HTTPFaultInjection) {
	if fault == nil {
		return
	}
	if fault.Abort == nil && fault.Delay == nil {
		v.required(path, "fault injection needs abort or delay")
	}
	if abort := fault.Abort; abort != nil {
		abortPath := path.Child("abort")
		v.percentage(abortPath.Child("percentage"), abort.Percentage)
		switch errorType := abort.ErrorType.(type) {
		case *networkingv1alpha3.HTTPFaultInjection_Abort_HttpStatus:
			if errorType.HttpStatus < 200 || errorType.HttpStatus > 599 {
				v.invalid(CodeInvalidStatusCode, abortPath.Child("httpStatus"), errorType.HttpStatus, "abort httpStatus %d is not in 200-599", errorType.HttpStatus)
			}
		case *networkingv1alpha3.HTTPFaultInjection_Abort_GrpcStatus:
			if !grpcStatuses[errorType.GrpcStatus] {
				v.invalid(CodeInvalidField, abortPath.Child("grpcStatus"), errorType.GrpcStatus, "%q is not a gRPC status; use a name such as UNAVAILABLE or NOT_FOUND", errorType.GrpcStatus)
			}
		case *networkingv1alpha3.HTTPFaultInjection_Abort_Http2Error:
			v.invalid(CodeInvalidField, abortPath.Child("http2Error"), errorType.Http2Error, "http2Error aborts are not supported; use httpStatus or grpcStatus")
		default:
			v.warn(CodeIneffectiveConfig, abortPath, "", "abort has neither httpStatus nor grpcStatus, so it is left out and nothing is aborted")
		}
	}
	if delay := fault.Delay; delay != nil {
		delayPath := path.Child("delay")
		v.percentage(delayPath.Child("percentage"), delay.Percentage)
		// percent is deprecated in favour of percentage, and still accepted.
		if percent := delay.GetPercent(); percent < 0 || percent > 100 {
			v.invalid(CodeInvalidPercentage, delayPath.Child("percent"), percent, "percentage %d is not in 0-100", percent)
		}
		switch delayType := delay.HttpDelayType.(type) {
		case *networkingv1alpha3.HTTPFaultInjection_Delay_FixedDelay:
			v.duration(delayPath.Child("fixedDelay"), delayType.FixedDelay)
		case *networkingv1alpha3.HTTPFaultInjection_Delay_ExponentialDelay:
			v.invalid(CodeInvalidField, delayPath.Child("exponentialDelay"), "", "exponentialDelay is not supported; use fixedDelay")
		default:
			v.warn(CodeIneffectiveConfig, delayPath, "", "delay has no fixedDelay, so it is left out and nothing is delayed")
		}
	}
}

func (v *validator) redirect(path *field.Path, redirect *networkingv1alpha3.HTTPRedirect, matches []*networkingv1alpha3.HTTPMatchRequest) {
	if redirect == nil {
		return
	}
	if redirect.Uri != "" && redirect.PrefixRewrite != "" {
		v.forbidden(path.Child("prefixRewrite"), "uri and prefixRewrite cannot be used together")
	}
	if redirect.PrefixRewrite != "" {
		for i, match := range matches {
			if match.GetUri() != nil && match.GetUri().GetMatchType() != nil {
				if _, prefix := match.GetUri().GetMatchType().(*networkingv1alpha3.StringMatch_Prefix); !prefix {
					v.forbidden(path.Child("prefixRewrite"), "prefixRewrite needs every uri match to be a prefix match, and match[%d].uri is not", i)
				}
			}
		}
	}
	if redirect.Uri == "" && redirect.PrefixRewrite == "" && redirect.Authority == "" && redirect.RedirectPort == nil && redirect.Scheme == "" {
		v.required(path, "redirect needs at least one of uri, prefixRewrite, authority, scheme or port")
	}
	if redirect.RedirectCode != 0 && (redirect.RedirectCode < 300 || redirect.RedirectCode > 399) {
		v.invalid(CodeInvalidStatusCode, path.Child("redirectCode"), redirect.RedirectCode, "redirectCode %d is not a redirect status (300-399)", redirect.RedirectCode)
	}
	if redirect.Scheme != "" && redirect.Scheme != "http" && redirect.Scheme != "https" {
		v.invalid(CodeInvalidField, path.Child("scheme"), redirect.Scheme, `redirect scheme must be "http" or "https"`)
	}
	if port := redirect.GetPort(); port > 65535 {
		v.port(path.Child("port"), port)
	}
}

func (v *validator) rewrite(path *field.Path, rewrite *networkingv1alpha3.HTTPRewrite) {
	if rewrite == nil {
		return
	}
	if rewrite.Uri != "" && rewrite.UriRegexRewrite != nil {
		v.forbidden(path.Child("uriRegexRewrite"), "uri and uriRegexRewrite cannot be used together")
	}
	if rewrite.Uri == "" && rewrite.UriRegexRewrite == nil && rewrite.Authority == "" {
		v.required(path, "rewrite needs uri, uriRegexRewrite or authority")
	}
	if regexRewrite := rewrite.UriRegexRewrite; regexRewrite != nil {
		if regexRewrite.Match == "" {
			v.required(path.Child("uriRegexRewrite", "match"), "uriRegexRewrite needs the regex to match")
		} else {
			v.regex(path.Child("uriRegexRewrite", "match"), regexRewrite.Match)
		}
		if regexRewrite.Rewrite == "" {
			v.required(path.Child("uriRegexRewrite", "rewrite"), "uriRegexRewrite needs the replacement")
		}
	}
}

func (v *validator) corsPolicy(path *field.Path, policy *networkingv1alpha3.CorsPolicy) {
	if policy == nil {
		return
	}
	for i, origin := range policy.AllowOrigins {
		if origin.GetMatchType() == nil {
			v.required(path.Child("allowOrigins").Index(i), "an allowed origin needs exact, prefix or regex")
			continue
		}
		v.stringMatch(path.Child("allowOrigins").Index(i), origin, false)
	}
	v.duration(path.Child("maxAge"), policy.MaxAge)
}

func (v *validator) tlsRoute(path *field.Path, route *networkingv1alpha3.TLSRoute, hosts []string) {
	if len(route.Match) == 0 {
		v.required(path.Child("match"), "a TLS route needs at least one match with sniHosts")
	}
	for i, match := range route.Match {
		matchPath := path.Child("match").Index(i)
		if match == nil {
			continue
		}
		if len(match.SniHosts) == 0 {
			v.required(matchPath.Child("sniHosts"), "a TLS match needs at least one SNI host")
		}
		for j, sni := range match.SniHosts {
			if problem := hostNameProblem(sni); problem != "" {
				v.invalid(CodeInvalidHost, matchPath.Child("sniHosts").Index(j), sni, "%s", problem)
			} else if !slices.ContainsFunc(hosts, func(host string) bool { return hostCovers(host, sni) }) {
				v.invalid(CodeInvalidHost, matchPath.Child("sniHosts").Index(j), sni,
					"SNI host %q is not one of the VirtualService's hosts (%s) or covered by their wildcards", sni, strings.Join(hosts, ", "))
			}
		}
		v.l4Match(matchPath, match.DestinationSubnets, match.Port, match.SourceLabels, match.Gateways)
	}
	if len(route.Route) == 0 {
		v.required(path.Child("route"), "a TLS route needs at least one destination")
	}
	v.routeDestinations(path.Child("route"), l4Destinations(route.Route))
}

func (v *validator) tcpRoute(path *field.Path, route *networkingv1alpha3.TCPRoute) {
	for i, match := range route.Match {
		if match != nil {
			v.l4Match(path.Child("match").Index(i), match.DestinationSubnets, match.Port, match.SourceLabels, match.Gateways)
		}
	}
	if len(route.Route) == 0 {
		v.required(path.Child("route"), "a TCP route needs at least one destination")
	}
	v.routeDestinations(path.Child("route"), l4Destinations(route.Route))
}

func (v *validator) l4Match(path *field.Path, subnets []string, port uint32, sourceLabels map[string]string, gateways []string) {
	for i, subnet := range subnets {
		if !isIPOrCIDR(subnet) {
			v.invalid(CodeInvalidField, path.Child("destinationSubnets").Index(i), subnet, "%q is not an IP address or CIDR prefix", subnet)
		}
	}
	if port != 0 {
		v.port(path.Child("port"), port)
	}
	v.labels(path.Child("sourceLabels"), sourceLabels)
	for i, gateway := range gateways {
		v.gatewayReference(path.Child("gateways").Index(i), gateway)
	}
}

// rule is what unreachable-rule detection needs to know about one route rule.
type rule struct {
	present bool // false for a null entry, which is reported elsewhere
	// matchKeys identify each match's conditions; "" is a match without conditions.
	matchKeys []string
}

// takesEverything reports whether the rule matches every request: it has no match, or one of
// its matches (which are alternatives) has no conditions.
func (r rule) takesEverything() bool {
	return len(r.matchKeys) == 0 || slices.Contains(r.matchKeys, "")
}

// matchKey encodes a match's conditions, leaving out its name and other fields that do not
// change what it matches; two matches with the same key match the same requests.
func matchKey(match proto.Message) string {
	if match == nil {
		return ""
	}
	clone := proto.Clone(match)
	if http, ok := clone.(*networkingv1alpha3.HTTPMatchRequest); ok {
		http.Name = ""
		http.StatPrefix = ""
		if http.Uri == nil {
			http.IgnoreUriCase = false
		}
	}
	encoded, err := proto.MarshalOptions{Deterministic: true}.Marshal(clone)
	if err != nil {
		return "unencodable"
	}
	return string(encoded)
}

// rulesOf lists the rules of one route kind (HTTP, TLS or TCP) with their
// match keys; nil routes are absent.
func rulesOf[R interface{ comparable }, M proto.Message](routes []R, matches func(R) []M) []rule {
	rules := make([]rule, len(routes))
	var none R
	for i, route := range routes {
		if route == none {
			continue
		}
		rules[i].present = true
		for _, match := range matches(route) {
			rules[i].matchKeys = append(rules[i].matchKeys, matchKey(match))
		}
	}
	return rules
}

// unreachableRules warns about rules and matches that can never be used, because rules are
// tried in order and the first match wins: every rule after one that takes every request, and
// every match that an earlier match repeats exactly.
func (v *validator) unreachableRules(path *field.Path, rules []rule) {
	catchAll := -1
	firstSeen := map[string]*field.Path{}
	for i, r := range rules {
		if !r.present {
			continue
		}
		if catchAll >= 0 {
			v.warn(CodeUnreachableRoute, path.Index(i), "",
				"this rule can never match: %s before it has no match conditions and takes every request", path.Index(catchAll))
			continue
		}
		if r.takesEverything() {
			catchAll = i
			continue
		}
		for j, key := range r.matchKeys {
			matchPath := path.Index(i).Child("match").Index(j)
			if first, ok := firstSeen[key]; ok {
				v.warn(CodeUnreachableRoute, matchPath, "", "this match can never be used: %s is the same match and comes first", first)
				continue
			}
			firstSeen[key] = matchPath
		}
	}
}
