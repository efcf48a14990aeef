package generate

import (
	"maps"
	"slices"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	commonfaultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	previoushostsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/retry/host/previous_hosts/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	networking "istio.io/api/networking/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// A VirtualService bound to the mesh replaces the default route of the
// virtual host of every Service its hosts cover, on every port its matches
// allow. This file translates its HTTP routes to Envoy routes, for Envoy
// sidecars and for proxyless gRPC clients (which honour a subset: matches,
// weighted destinations, timeouts, retries, faults and hash policies; the
// rest is left out of their routes, and meshctl analyze reports it).
//
// What cannot be honoured is skipped piece by piece, never the whole
// configuration: a destination whose host or port resolves to nothing, or
// whose subset no DestinationRule defines, is dropped from the route (the
// remaining destinations keep their weights); a route left without
// destinations is dropped; a match that can never apply to this client (a
// port, sourceLabels or sourceNamespace that is not its) is dropped.

// routeClient is who the routes are for.
type routeClient struct {
	namespace string
	labels    map[string]string // the workload's, when known
	grpc      bool              // proxyless gRPC: its subset of features
	// gateway is the Gateway ("ns/name") the routes are for; empty for
	// the mesh (sidecars and proxyless clients).
	gateway string
}

// boundTo reports whether a match's gateways (none: the VirtualService's)
// include the client's gateway, named "ns/name" or, in the
// VirtualService's namespace, "name".
func (c routeClient) boundTo(gateways []string, vsNamespace string) bool {
	if len(gateways) == 0 {
		return true
	}
	for _, g := range gateways {
		switch {
		case c.gateway == "" && g == "mesh":
			return true
		case c.gateway != "" && (g == c.gateway || vsNamespace+"/"+g == c.gateway):
			return true
		}
	}
	return false
}

// Well-known HTTP filter names, as Envoy and grpc-go know them.
const (
	faultFilterName = "envoy.filters.http.fault"
	corsFilterName  = "envoy.filters.http.cors"
)

// defaultRetryOn is Istio's retryOn when a VirtualService sets attempts but
// not retryOn. grpc-go keeps the gRPC codes it knows (unavailable,
// cancelled) and ignores the rest.
const defaultRetryOn = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"

// virtualServiceFor returns the VirtualService (oldest first, as Istio
// picks among conflicting ones) that covers svc for a client in clientNS,
// and nil if none does.
func virtualServiceFor(world *model.World, svc *model.Service, clientNS string) *model.VirtualService {
	for _, vs := range world.VirtualServicesFor("mesh", clientNS) {
		for _, h := range vs.Spec.GetHosts() {
			if model.HostMatches(world.QualifyHost(h, vs.Namespace), svc.Hostname) {
				return vs
			}
		}
	}
	return nil
}

// virtualServiceRoutes translates vs's HTTP routes for svc's virtual host on
// port. It returns nil when no route applies (the caller keeps the default
// route).
func virtualServiceRoutes(world *model.World, vs *model.VirtualService, svc *model.Service, port int32, client routeClient) []*routev3.Route {
	var out []*routev3.Route
	for i, hr := range vs.Spec.GetHttp() {
		if d := hr.GetDelegate(); d != nil {
			out = append(out, delegateRoutes(world, vs, i, hr, svc, port, client)...)
			continue
		}
		out = append(out, httpRouteRoutes(world, vs, hr, hr.GetMatch(), routeName(vs, hr, i, 0), svc, port, client)...)
	}
	return out
}

// httpRouteRoutes translates one HTTP route with the given matches (its
// own, or merged with a delegating route's): an Envoy route per match that
// applies, named name (then name.match[j]).
func httpRouteRoutes(world *model.World, vs *model.VirtualService, hr *networking.HTTPRoute, matches []*networking.HTTPMatchRequest,
	name string, svc *model.Service, port int32, client routeClient,
) []*routev3.Route {
	action, ok := routeAction(world, vs, hr, svc, port, client)
	if !ok {
		return nil
	}
	if len(matches) == 0 {
		matches = []*networking.HTTPMatchRequest{nil}
	}
	var out []*routev3.Route
	for j, m := range matches {
		rm, ok := routeMatch(m, port, client, vs.Namespace)
		if !ok {
			continue
		}
		r := &routev3.Route{Name: name, Match: rm}
		if j > 0 {
			r.Name += ".match[" + itoa(int32(j)) + "]"
		}
		action(r)
		out = append(out, r)
	}
	return out
}

// delegateRoutes are the routes of the VirtualService a root route
// delegates to (same namespace unless named): each of its HTTP routes under
// the root route's matches, a delegate's match narrowing the root's (its
// uri, scheme, method and authority replace the root's; headers, query
// parameters and withoutHeaders add up). Destinations resolve in the
// delegate's namespace. A delegate with hosts of its own, a missing one, or
// a delegate that delegates again gives nothing, as in Istio.
func delegateRoutes(world *model.World, root *model.VirtualService, i int, hr *networking.HTTPRoute, svc *model.Service, port int32, client routeClient) []*routev3.Route {
	ns := hr.GetDelegate().GetNamespace()
	if ns == "" {
		ns = root.Namespace
	}
	var delegate *model.VirtualService
	for _, vs := range world.Config.VirtualServices {
		if vs.Namespace == ns && vs.Name == hr.GetDelegate().GetName() {
			delegate = vs
		}
	}
	if delegate == nil || len(delegate.Spec.GetHosts()) > 0 {
		return nil
	}
	rootMatches := hr.GetMatch()
	if len(rootMatches) == 0 {
		rootMatches = []*networking.HTTPMatchRequest{nil}
	}
	var out []*routev3.Route
	for k, dr := range delegate.Spec.GetHttp() {
		if dr.GetDelegate() != nil {
			continue
		}
		var merged []*networking.HTTPMatchRequest
		for _, rm := range rootMatches {
			dms := dr.GetMatch()
			if len(dms) == 0 {
				dms = []*networking.HTTPMatchRequest{nil}
			}
			for _, dm := range dms {
				merged = append(merged, mergeMatch(rm, dm))
			}
		}
		name := routeName(root, hr, i, 0) + "/" + routeName(delegate, dr, k, 0)
		out = append(out, httpRouteRoutes(world, delegate, dr, merged, name, svc, port, client)...)
	}
	return out
}

// mergeMatch narrows a root match by a delegate's (either may be nil).
func mergeMatch(root, delegate *networking.HTTPMatchRequest) *networking.HTTPMatchRequest {
	if root == nil {
		return delegate
	}
	if delegate == nil {
		return root
	}
	m := proto.Clone(root).(*networking.HTTPMatchRequest)
	if delegate.GetUri() != nil {
		m.Uri = delegate.GetUri()
	}
	if delegate.GetScheme() != nil {
		m.Scheme = delegate.GetScheme()
	}
	if delegate.GetMethod() != nil {
		m.Method = delegate.GetMethod()
	}
	if delegate.GetAuthority() != nil {
		m.Authority = delegate.GetAuthority()
	}
	union := func(a, b map[string]*networking.StringMatch) map[string]*networking.StringMatch {
		if len(b) == 0 {
			return a
		}
		out := maps.Clone(a)
		if out == nil {
			out = map[string]*networking.StringMatch{}
		}
		maps.Copy(out, b)
		return out
	}
	m.Headers = union(m.Headers, delegate.GetHeaders())
	m.QueryParams = union(m.QueryParams, delegate.GetQueryParams())
	m.WithoutHeaders = union(m.WithoutHeaders, delegate.GetWithoutHeaders())
	if delegate.GetPort() != 0 {
		m.Port = delegate.GetPort()
	}
	if delegate.GetIgnoreUriCase() {
		m.IgnoreUriCase = true
	}
	return m
}

// routeName names a route after its VirtualService and position, stable as
// long as the VirtualService is.
func routeName(vs *model.VirtualService, hr *networking.HTTPRoute, i, j int) string {
	name := vs.Namespace + "/" + vs.Name + ".http[" + itoa(int32(i)) + "]"
	if hr.GetName() != "" {
		name += "." + hr.GetName()
	}
	if j > 0 {
		name += ".match[" + itoa(int32(j)) + "]"
	}
	return name
}

// routeMatch translates one match; false when it cannot apply here.
func routeMatch(m *networking.HTTPMatchRequest, port int32, client routeClient, vsNamespace string) (*routev3.RouteMatch, bool) {
	rm := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}}
	if m == nil {
		return rm, true
	}
	if m.GetPort() != 0 && int32(m.GetPort()) != port {
		return nil, false
	}
	if m.GetSourceNamespace() != "" && m.GetSourceNamespace() != client.namespace {
		return nil, false
	}
	for k, v := range m.GetSourceLabels() {
		if client.labels[k] != v {
			return nil, false
		}
	}
	if !client.boundTo(m.GetGateways(), vsNamespace) {
		return nil, false
	}
	if u := m.GetUri(); u != nil {
		switch {
		case u.GetExact() != "":
			rm.PathSpecifier = &routev3.RouteMatch_Path{Path: u.GetExact()}
		case u.GetPrefix() != "":
			rm.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: u.GetPrefix()}
		case u.GetRegex() != "":
			rm.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: u.GetRegex()}}
		}
	}
	if m.GetIgnoreUriCase() {
		rm.CaseSensitive = wrapperspb.Bool(false)
	}
	pseudo := []struct {
		name string
		sm   *networking.StringMatch
	}{{":method", m.GetMethod()}, {":authority", m.GetAuthority()}, {":scheme", m.GetScheme()}}
	for _, p := range pseudo {
		if p.sm != nil {
			rm.Headers = append(rm.Headers, headerMatcher(p.name, p.sm, false))
		}
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetHeaders()[name], false))
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetWithoutHeaders())) {
		rm.Headers = append(rm.Headers, headerMatcher(name, m.GetWithoutHeaders()[name], true))
	}
	for _, name := range slices.Sorted(maps.Keys(m.GetQueryParams())) {
		qm := &routev3.QueryParameterMatcher{Name: name}
		if sm := stringMatcher(m.GetQueryParams()[name]); sm != nil {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_StringMatch{StringMatch: sm}
		} else {
			qm.QueryParameterMatchSpecifier = &routev3.QueryParameterMatcher_PresentMatch{PresentMatch: true}
		}
		rm.QueryParameters = append(rm.QueryParameters, qm)
	}
	return rm, true
}

// headerMatcher matches a header by an Istio StringMatch; an empty one
// means "present". Header names are lower case on the wire.
func headerMatcher(name string, sm *networking.StringMatch, invert bool) *routev3.HeaderMatcher {
	hm := &routev3.HeaderMatcher{Name: strings.ToLower(name), InvertMatch: invert}
	if s := stringMatcher(sm); s != nil {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_StringMatch{StringMatch: s}
	} else {
		hm.HeaderMatchSpecifier = &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}
	}
	return hm
}

func stringMatcher(sm *networking.StringMatch) *matcherv3.StringMatcher {
	switch {
	case sm == nil:
		return nil
	case sm.GetExact() != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: sm.GetExact()}}
	case sm.GetPrefix() != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: sm.GetPrefix()}}
	case sm.GetRegex() != "":
		return &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: sm.GetRegex()}}}
	}
	return nil
}

// routeAction translates what a route does (forward, redirect, respond) and
// its policies; false when nothing is left to do (no destination resolves).
func routeAction(world *model.World, vs *model.VirtualService, hr *networking.HTTPRoute, svc *model.Service, port int32, client routeClient) (func(*routev3.Route), bool) {
	switch {
	case hr.GetRedirect() != nil:
		if client.grpc {
			return nil, false
		}
		redirect := redirectAction(hr.GetRedirect())
		return func(r *routev3.Route) {
			r.Action = &routev3.Route_Redirect{Redirect: redirect}
			addHeaderOps(r, hr.GetHeaders())
		}, true
	case hr.GetDirectResponse() != nil:
		if client.grpc {
			return nil, false
		}
		dr := hr.GetDirectResponse()
		action := &routev3.DirectResponseAction{Status: dr.GetStatus()}
		if b := dr.GetBody(); b != nil {
			if s := b.GetString_(); s != "" {
				action.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: s}}
			} else if len(b.GetBytes()) > 0 {
				action.Body = &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b.GetBytes()}}
			}
		}
		return func(r *routev3.Route) {
			r.Action = &routev3.Route_DirectResponse{DirectResponse: action}
			addHeaderOps(r, hr.GetHeaders())
		}, true
	}

	var clusters []*routev3.WeightedCluster_ClusterWeight
	var hashPolicy []*routev3.RouteAction_HashPolicy
	mixedHash := false
	for _, d := range hr.GetRoute() {
		name, dstSvc, ok := destinationCluster(world, vs, d.GetDestination(), port, client.namespace)
		if !ok {
			continue
		}
		weight := d.GetWeight()
		if len(hr.GetRoute()) == 1 {
			weight = 100
		}
		if weight <= 0 {
			continue
		}
		cw := &routev3.WeightedCluster_ClusterWeight{Name: name, Weight: wrapperspb.UInt32(uint32(weight))}
		if !client.grpc {
			if h := d.GetHeaders(); h != nil {
				cw.RequestHeadersToAdd = headerValues(h.GetRequest())
				cw.RequestHeadersToRemove = h.GetRequest().GetRemove()
				cw.ResponseHeadersToAdd = headerValues(h.GetResponse())
				cw.ResponseHeadersToRemove = h.GetResponse().GetRemove()
			}
		}
		hp := routeHashPolicy(world, dstSvc, d.GetDestination().GetSubset(), port, client)
		if len(clusters) == 0 {
			hashPolicy = hp
		} else if !sameHashPolicy(hashPolicy, hp) {
			mixedHash = true
		}
		clusters = append(clusters, cw)
	}
	if mixedHash {
		// Destinations that hash differently (or not at all): a route has
		// one hash policy, so none applies, as in Istio.
		hashPolicy = nil
	}
	if len(clusters) == 0 {
		return nil, false
	}
	ra := &routev3.RouteAction{HashPolicy: hashPolicy}
	if len(clusters) == 1 {
		ra.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: clusters[0].Name}
	} else {
		ra.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{Clusters: clusters}}
	}

	timeout := noTimeout
	if t := hr.GetTimeout(); t != nil {
		timeout = durationpb.New(t.AsDuration())
	}
	if client.grpc {
		if hr.GetTimeout() != nil {
			ra.MaxStreamDuration = &routev3.RouteAction_MaxStreamDuration{MaxStreamDuration: timeout}
		}
	} else {
		ra.Timeout = timeout
	}
	switch rp := retryPolicy(hr.GetRetries()); {
	case rp != nil:
		ra.RetryPolicy = rp
	case hr.GetRetries() == nil && !client.grpc:
		ra.RetryPolicy = defaultRetryPolicy
	}
	if !client.grpc {
		ra.RequestMirrorPolicies = mirrorPolicies(world, vs, hr, svc, port, client.namespace)
		if rw := hr.GetRewrite(); rw != nil {
			if rw.GetUri() != "" {
				ra.PrefixRewrite = rw.GetUri()
			}
			if rr := rw.GetUriRegexRewrite(); rr != nil && rr.GetMatch() != "" {
				ra.RegexRewrite = &matcherv3.RegexMatchAndSubstitute{
					Pattern:      &matcherv3.RegexMatcher{Regex: rr.GetMatch()},
					Substitution: rr.GetRewrite(),
				}
				ra.PrefixRewrite = ""
			}
			if rw.GetAuthority() != "" {
				ra.HostRewriteSpecifier = &routev3.RouteAction_HostRewriteLiteral{HostRewriteLiteral: rw.GetAuthority()}
			}
		}
	}
	perFilter := map[string]*anypb.Any{}
	if f := faultConfig(hr.GetFault()); f != nil {
		perFilter[faultFilterName] = mustPack(f)
	}
	if !client.grpc {
		if c := corsConfig(hr.GetCorsPolicy()); c != nil {
			perFilter[corsFilterName] = mustPack(c)
		}
	}
	single := len(clusters) == 1
	return func(r *routev3.Route) {
		r.Action = &routev3.Route_Route{Route: ra}
		if len(perFilter) > 0 {
			r.TypedPerFilterConfig = perFilter
		}
		if client.grpc {
			return
		}
		addHeaderOps(r, hr.GetHeaders())
		if single { // a single destination's header operations belong to the route
			cw := clusters[0]
			r.RequestHeadersToAdd = append(r.RequestHeadersToAdd, cw.RequestHeadersToAdd...)
			r.RequestHeadersToRemove = append(r.RequestHeadersToRemove, cw.RequestHeadersToRemove...)
			r.ResponseHeadersToAdd = append(r.ResponseHeadersToAdd, cw.ResponseHeadersToAdd...)
			r.ResponseHeadersToRemove = append(r.ResponseHeadersToRemove, cw.ResponseHeadersToRemove...)
		}
	}, true
}

// destinationCluster resolves a route destination to the cluster name
// outbound|port|subset|fqdn, or false when its host, port or subset does not
// resolve. A destination without a port on a Service with several ports
// takes the port of the route being built (routePort) when the Service has
// it.
func destinationCluster(world *model.World, vs *model.VirtualService, d *networking.Destination, routePort int32, clientNS string) (string, *model.Service, bool) {
	host := world.QualifyHost(d.GetHost(), vs.Namespace)
	svc := world.ServiceByHostname(host)
	if svc == nil {
		return "", nil, false
	}
	port, ok := destinationPort(svc, d.GetPort().GetNumber(), routePort)
	if !ok {
		return "", nil, false
	}
	if subset := d.GetSubset(); subset != "" {
		if findSubset(world.DestinationRule(svc.Hostname, clientNS), subset) == nil {
			return "", nil, false
		}
	}
	return OutboundClusterName(port, d.GetSubset(), svc.Hostname), svc, true
}

// destinationPort picks a destination's port: the one named, else the
// Service's only port, else the route's port if the Service has it.
func destinationPort(svc *model.Service, named uint32, routePort int32) (int32, bool) {
	has := func(p int32) bool {
		return slices.ContainsFunc(svc.Ports, func(sp model.ServicePort) bool { return sp.Port == p })
	}
	switch {
	case named != 0:
		return int32(named), has(int32(named))
	case len(svc.Ports) == 1:
		return svc.Ports[0].Port, true
	case has(routePort):
		return routePort, true
	}
	return 0, false
}

func findSubset(dr *model.DestinationRule, name string) *networking.Subset {
	if dr == nil {
		return nil
	}
	for _, s := range dr.Spec.GetSubsets() {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

func redirectAction(rd *networking.HTTPRedirect) *routev3.RedirectAction {
	a := &routev3.RedirectAction{HostRedirect: rd.GetAuthority()}
	if rd.GetUri() != "" {
		a.PathRewriteSpecifier = &routev3.RedirectAction_PathRedirect{PathRedirect: rd.GetUri()}
	}
	if rd.GetScheme() != "" {
		a.SchemeRewriteSpecifier = &routev3.RedirectAction_SchemeRedirect{SchemeRedirect: rd.GetScheme()}
	}
	if p := rd.GetPort(); p != 0 {
		a.PortRedirect = p
	}
	switch rd.GetRedirectCode() {
	case 302:
		a.ResponseCode = routev3.RedirectAction_FOUND
	case 303:
		a.ResponseCode = routev3.RedirectAction_SEE_OTHER
	case 307:
		a.ResponseCode = routev3.RedirectAction_TEMPORARY_REDIRECT
	case 308:
		a.ResponseCode = routev3.RedirectAction_PERMANENT_REDIRECT
	default:
		a.ResponseCode = routev3.RedirectAction_MOVED_PERMANENTLY
	}
	return a
}

// defaultRetryPolicy is what an Envoy route gets when its VirtualService
// says nothing about retries (or there is none), as Istio does: two
// retries of connection failures, refused streams and 503s, each on
// another host when there is one. "retries: {attempts: 0}" turns it off.
// Proxyless gRPC clients get no default (grpc-go's own policy applies).
var defaultRetryPolicy = &routev3.RetryPolicy{
	RetryOn:              defaultRetryOn,
	NumRetries:           wrapperspb.UInt32(2),
	RetriableStatusCodes: []uint32{503},
	RetryHostPredicate: []*routev3.RetryPolicy_RetryHostPredicate{{
		Name:       "envoy.retry_host_predicates.previous_hosts",
		ConfigType: &routev3.RetryPolicy_RetryHostPredicate_TypedConfig{TypedConfig: mustPack(&previoushostsv3.PreviousHostsPredicate{})},
	}},
	HostSelectionRetryMaxAttempts: 5,
}

// retryConditions splits Istio's retryOn into Envoy's retry_on and
// retriable_status_codes: numeric entries are status codes (and turn on
// retriable-status-codes); empty is Istio's default, which retries 503s.
func retryConditions(retryOn string) (string, []uint32) {
	if retryOn == "" {
		return defaultRetryOn, []uint32{503}
	}
	var conds []string
	var codes []uint32
	for _, c := range strings.Split(retryOn, ",") {
		c = strings.TrimSpace(c)
		if n, err := strconv.ParseUint(c, 10, 32); err == nil {
			codes = append(codes, uint32(n))
			continue
		}
		if c != "" && !slices.Contains(conds, c) {
			conds = append(conds, c)
		}
	}
	if len(codes) > 0 && !slices.Contains(conds, "retriable-status-codes") {
		conds = append(conds, "retriable-status-codes")
	}
	return strings.Join(conds, ","), codes
}

// retryPolicy is nil when retries are unset or attempts is 0 (retries off).
func retryPolicy(r *networking.HTTPRetry) *routev3.RetryPolicy {
	if r == nil || r.GetAttempts() <= 0 {
		return nil
	}
	rp := &routev3.RetryPolicy{NumRetries: wrapperspb.UInt32(uint32(r.GetAttempts()))}
	rp.RetryOn, rp.RetriableStatusCodes = retryConditions(r.GetRetryOn())
	if t := r.GetPerTryTimeout(); t != nil {
		rp.PerTryTimeout = durationpb.New(t.AsDuration())
	}
	return rp
}

// fractionOf converts an Istio percentage (0–100, nil = 100, as for
// mirrors) to Envoy's.
func fractionOf(p *networking.Percent) *typev3.FractionalPercent {
	v := 100.0
	if p != nil {
		v = p.GetValue()
	}
	return &typev3.FractionalPercent{Numerator: uint32(v*10000 + 0.5), Denominator: typev3.FractionalPercent_MILLION}
}

// faultFraction is a fault's share of requests: its percentage, else the
// deprecated integer percent; unspecified means none, as the API says.
func faultFraction(p *networking.Percent, deprecatedPercent int32) *typev3.FractionalPercent {
	if p == nil {
		return &typev3.FractionalPercent{Numerator: uint32(max(deprecatedPercent, 0)) * 10000, Denominator: typev3.FractionalPercent_MILLION}
	}
	return fractionOf(p)
}

func faultConfig(f *networking.HTTPFaultInjection) *faultv3.HTTPFault {
	if f == nil {
		return nil
	}
	out := &faultv3.HTTPFault{}
	if d := f.GetDelay(); d != nil && d.GetFixedDelay() != nil {
		out.Delay = &commonfaultv3.FaultDelay{
			FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(d.GetFixedDelay().AsDuration())},
			Percentage:         faultFraction(d.GetPercentage(), d.GetPercent()),
		}
	}
	if a := f.GetAbort(); a != nil {
		abort := &faultv3.FaultAbort{Percentage: faultFraction(a.GetPercentage(), 0)}
		switch {
		case a.GetHttpStatus() != 0:
			abort.ErrorType = &faultv3.FaultAbort_HttpStatus{HttpStatus: uint32(a.GetHttpStatus())}
		case a.GetGrpcStatus() != "":
			code, ok := grpcCode(a.GetGrpcStatus())
			if !ok {
				return nilIfEmpty(out)
			}
			abort.ErrorType = &faultv3.FaultAbort_GrpcStatus{GrpcStatus: uint32(code)}
		default:
			return nilIfEmpty(out)
		}
		out.Abort = abort
	}
	return nilIfEmpty(out)
}

func nilIfEmpty(f *faultv3.HTTPFault) *faultv3.HTTPFault {
	if f.Delay == nil && f.Abort == nil {
		return nil
	}
	return f
}

// grpcCode parses a gRPC status name ("UNAVAILABLE") or number.
func grpcCode(s string) (codes.Code, bool) {
	var c codes.Code
	if err := c.UnmarshalJSON([]byte(`"` + strings.ToUpper(s) + `"`)); err == nil {
		return c, true
	}
	if err := c.UnmarshalJSON([]byte(s)); err == nil {
		return c, true
	}
	return 0, false
}

func corsConfig(c *networking.CorsPolicy) *corsv3.CorsPolicy {
	if c == nil {
		return nil
	}
	out := &corsv3.CorsPolicy{
		AllowMethods:  strings.Join(c.GetAllowMethods(), ","),
		AllowHeaders:  strings.Join(c.GetAllowHeaders(), ","),
		ExposeHeaders: strings.Join(c.GetExposeHeaders(), ","),
	}
	for _, o := range c.GetAllowOrigins() {
		if sm := stringMatcher(o); sm != nil {
			out.AllowOriginStringMatch = append(out.AllowOriginStringMatch, sm)
		}
	}
	if d := c.GetMaxAge(); d != nil {
		out.MaxAge = itoa(int32(d.AsDuration().Seconds()))
	}
	if b := c.GetAllowCredentials(); b != nil {
		out.AllowCredentials = wrapperspb.Bool(b.GetValue())
	}
	return out
}

// mirrorPolicies are the route's mirror (deprecated single form, with
// mirrorPercentage) and mirrors, for those whose destination resolves.
func mirrorPolicies(world *model.World, vs *model.VirtualService, hr *networking.HTTPRoute, svc *model.Service, port int32, clientNS string) []*routev3.RouteAction_RequestMirrorPolicy {
	var out []*routev3.RouteAction_RequestMirrorPolicy
	add := func(d *networking.Destination, pct *networking.Percent) {
		name, _, ok := destinationCluster(world, vs, d, port, clientNS)
		if !ok {
			return
		}
		out = append(out, &routev3.RouteAction_RequestMirrorPolicy{
			Cluster:         name,
			RuntimeFraction: &corev3.RuntimeFractionalPercent{DefaultValue: fractionOf(pct)},
		})
	}
	if m := hr.GetMirror(); m != nil {
		add(m, hr.GetMirrorPercentage())
	}
	for _, m := range hr.GetMirrors() {
		add(m.GetDestination(), m.GetPercentage())
	}
	return out
}

// addHeaderOps adds a route's request and response header operations.
func addHeaderOps(r *routev3.Route, h *networking.Headers) {
	if h == nil {
		return
	}
	r.RequestHeadersToAdd = headerValues(h.GetRequest())
	r.RequestHeadersToRemove = h.GetRequest().GetRemove()
	r.ResponseHeadersToAdd = headerValues(h.GetResponse())
	r.ResponseHeadersToRemove = h.GetResponse().GetRemove()
}

// headerValues: set overwrites, add appends; sorted by header name.
func headerValues(ops *networking.Headers_HeaderOperations) []*corev3.HeaderValueOption {
	if ops == nil {
		return nil
	}
	var out []*corev3.HeaderValueOption
	for _, k := range slices.Sorted(maps.Keys(ops.GetSet())) {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: ops.GetSet()[k]},
			AppendAction: corev3.HeaderValueOption_OVERWRITE_IF_EXISTS_OR_ADD,
		})
	}
	for _, k := range slices.Sorted(maps.Keys(ops.GetAdd())) {
		out = append(out, &corev3.HeaderValueOption{
			Header:       &corev3.HeaderValue{Key: k, Value: ops.GetAdd()[k]},
			AppendAction: corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD,
		})
	}
	return out
}

func sameHashPolicy(a, b []*routev3.RouteAction_HashPolicy) bool {
	return slices.EqualFunc(a, b, func(x, y *routev3.RouteAction_HashPolicy) bool { return proto.Equal(x, y) })
}
