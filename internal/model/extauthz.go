package model

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// ExtAuthzProvider is an external authorizer of the mesh config
// (extensionProviders) that CUSTOM AuthorizationPolicies name: Envoy's
// ext_authz check over HTTP or gRPC (envoy.service.auth.v3.Authorization).
type ExtAuthzProvider struct {
	Name string
	// Service is "<namespace>/<host>" (a short host is a Service of that
	// namespace) or a fully qualified host; Port is the Service port the
	// authorizer listens on.
	Service string
	Port    uint32
	// GRPC selects the gRPC check protocol, else the HTTP one.
	GRPC bool
	// Timeout of a check; 0 is Envoy's default for gRPC (200 ms) and 600 s
	// for HTTP (Envoy requires one; a DestinationRule's timeout is the
	// real bound, as in Istio).
	Timeout time.Duration
	// FailOpen lets requests through when the authorizer cannot be reached.
	FailOpen bool
	// StatusOnError is the HTTP status returned when the check fails and
	// FailOpen is false; 0 is Envoy's default (403).
	StatusOnError uint32
	// IncludeRequestBodyInCheck buffers the request body into the check;
	// nil sends none.
	IncludeRequestBodyInCheck *ExtAuthzBody

	// The rest applies to the HTTP protocol only.

	// PathPrefix is prepended to the request path in the check request.
	PathPrefix string
	// IncludeRequestHeadersInCheck are the client headers copied into the
	// check request ("x-*" prefix and "*-x" suffix forms allowed).
	IncludeRequestHeadersInCheck []string
	// IncludeAdditionalHeadersInCheck are added to the check request.
	IncludeAdditionalHeadersInCheck map[string]string
	// HeadersToUpstreamOnAllow are copied from the authorizer's answer to
	// the request when it allows it; HeadersToDownstreamOnAllow to the
	// client's response then; HeadersToDownstreamOnDeny to the client's
	// response when it denies it.
	HeadersToUpstreamOnAllow   []string
	HeadersToDownstreamOnAllow []string
	HeadersToDownstreamOnDeny  []string
}

// ExtAuthzBody says how much of the request body a check carries.
type ExtAuthzBody struct {
	MaxRequestBytes     uint32
	AllowPartialMessage bool
	PackAsBytes         bool
}

// ExtAuthzProviders are the mesh config's external authorizers, sorted by
// name. A MeshConfig holds them by pointer so that it stays comparable with
// ==; build them once per mesh config load and keep the previous pointer
// when Equal, so an unchanged config does not look changed. Immutable.
type ExtAuthzProviders struct {
	list []ExtAuthzProvider
}

// NewExtAuthzProviders sorts a copy of providers by name; nil when there
// are none.
func NewExtAuthzProviders(providers []ExtAuthzProvider) *ExtAuthzProviders {
	if len(providers) == 0 {
		return nil
	}
	list := slices.Clone(providers)
	slices.SortStableFunc(list, func(a, b ExtAuthzProvider) int { return strings.Compare(a.Name, b.Name) })
	return &ExtAuthzProviders{list: list}
}

// Lookup finds a provider by name. p may be nil.
func (p *ExtAuthzProviders) Lookup(name string) (ExtAuthzProvider, bool) {
	if p == nil {
		return ExtAuthzProvider{}, false
	}
	i, ok := slices.BinarySearchFunc(p.list, name, func(e ExtAuthzProvider, n string) int { return strings.Compare(e.Name, n) })
	if !ok {
		return ExtAuthzProvider{}, false
	}
	return p.list[i], true
}

// List is the providers, sorted by name; do not modify it. p may be nil.
func (p *ExtAuthzProviders) List() []ExtAuthzProvider {
	if p == nil {
		return nil
	}
	return p.list
}

// Equal reports whether p and q hold the same providers. Either may be nil.
func (p *ExtAuthzProviders) Equal(q *ExtAuthzProviders) bool {
	return slices.EqualFunc(p.List(), q.List(), func(a, b ExtAuthzProvider) bool {
		return a.Name == b.Name && a.Service == b.Service && a.Port == b.Port && a.GRPC == b.GRPC &&
			a.Timeout == b.Timeout && a.FailOpen == b.FailOpen && a.StatusOnError == b.StatusOnError &&
			equalBody(a.IncludeRequestBodyInCheck, b.IncludeRequestBodyInCheck) && a.PathPrefix == b.PathPrefix &&
			slices.Equal(a.IncludeRequestHeadersInCheck, b.IncludeRequestHeadersInCheck) &&
			maps.Equal(a.IncludeAdditionalHeadersInCheck, b.IncludeAdditionalHeadersInCheck) &&
			slices.Equal(a.HeadersToUpstreamOnAllow, b.HeadersToUpstreamOnAllow) &&
			slices.Equal(a.HeadersToDownstreamOnAllow, b.HeadersToDownstreamOnAllow) &&
			slices.Equal(a.HeadersToDownstreamOnDeny, b.HeadersToDownstreamOnDeny)
	})
}

func equalBody(a, b *ExtAuthzBody) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
