package meshd

import (
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// ExtensionProvider is an external authorizer that CUSTOM
// AuthorizationPolicies name (spec.provider.name), in the shape of Istio's
// meshConfig.extensionProviders: exactly one of envoyExtAuthzHttp and
// envoyExtAuthzGrpc. Istio's other provider kinds (tracing, access logs)
// are not accepted.
type ExtensionProvider struct {
	// Name is what policies refer to: a DNS label, unique.
	Name              string                     `json:"name"`
	EnvoyExtAuthzHTTP *EnvoyExtAuthzHTTPProvider `json:"envoyExtAuthzHttp,omitempty"`
	EnvoyExtAuthzGRPC *EnvoyExtAuthzGRPCProvider `json:"envoyExtAuthzGrpc,omitempty"`
}

// EnvoyExtAuthzHTTPProvider checks requests with Envoy's HTTP ext_authz
// protocol.
type EnvoyExtAuthzHTTPProvider struct {
	// Service is "<namespace>/<host>" or a fully qualified host.
	Service string `json:"service"`
	Port    uint32 `json:"port"`
	// Timeout of a check; 600s when unset.
	Timeout *metav1.Duration `json:"timeout,omitempty"`
	// PathPrefix is prepended to the request path in the check; starts with /.
	PathPrefix string `json:"pathPrefix,omitempty"`
	// FailOpen lets requests through when the authorizer is unreachable.
	FailOpen bool `json:"failOpen,omitempty"`
	// StatusOnError is the HTTP status ("403") of a failed check.
	StatusOnError string `json:"statusOnError,omitempty"`
	// IncludeRequestHeadersInCheck are client headers sent along ("x-*"
	// prefix and "*-x" suffix forms allowed).
	IncludeRequestHeadersInCheck    []string          `json:"includeRequestHeadersInCheck,omitempty"`
	IncludeAdditionalHeadersInCheck map[string]string `json:"includeAdditionalHeadersInCheck,omitempty"`
	IncludeRequestBodyInCheck       *BodyInCheck      `json:"includeRequestBodyInCheck,omitempty"`
	HeadersToUpstreamOnAllow        []string          `json:"headersToUpstreamOnAllow,omitempty"`
	HeadersToDownstreamOnAllow      []string          `json:"headersToDownstreamOnAllow,omitempty"`
	HeadersToDownstreamOnDeny       []string          `json:"headersToDownstreamOnDeny,omitempty"`
}

// EnvoyExtAuthzGRPCProvider checks requests and connections with Envoy's
// gRPC ext_authz protocol (envoy.service.auth.v3.Authorization).
type EnvoyExtAuthzGRPCProvider struct {
	// Service is "<namespace>/<host>" or a fully qualified host.
	Service string `json:"service"`
	Port    uint32 `json:"port"`
	// Timeout of a check; Envoy's default (200ms) when unset.
	Timeout                   *metav1.Duration `json:"timeout,omitempty"`
	FailOpen                  bool             `json:"failOpen,omitempty"`
	StatusOnError             string           `json:"statusOnError,omitempty"`
	IncludeRequestBodyInCheck *BodyInCheck     `json:"includeRequestBodyInCheck,omitempty"`
}

// BodyInCheck sends (part of) the request body in the check.
type BodyInCheck struct {
	MaxRequestBytes     uint32 `json:"maxRequestBytes"`
	AllowPartialMessage bool   `json:"allowPartialMessage,omitempty"`
	PackAsBytes         bool   `json:"packAsBytes,omitempty"`
}

var (
	dnsLabelRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	headerNameRE = regexp.MustCompile(`^\*?[!#$%&'*+\-.^_` + "`" + `|~0-9A-Za-z]+\*?$`)
)

// validateExtensionProviders appends the problems of c.ExtensionProviders.
func (c *MeshConfig) validateExtensionProviders(bad func(format string, args ...any)) {
	seen := map[string]bool{}
	for i, p := range c.ExtensionProviders {
		at := fmt.Sprintf("extensionProviders[%d]", i)
		switch {
		case p.Name == "":
			bad("%s.name is required", at)
		case len(p.Name) > 63 || !dnsLabelRE.MatchString(p.Name):
			bad("%s.name %q must be a DNS label (lower-case letters, digits and '-')", at, p.Name)
		case seen[p.Name]:
			bad("%s.name %q is used twice", at, p.Name)
		}
		seen[p.Name] = true
		switch h, g := p.EnvoyExtAuthzHTTP, p.EnvoyExtAuthzGRPC; {
		case h == nil && g == nil, h != nil && g != nil:
			bad("%s: exactly one of envoyExtAuthzHttp and envoyExtAuthzGrpc must be set", at)
		case h != nil:
			at += ".envoyExtAuthzHttp"
			validateService(bad, at, h.Service, h.Port, h.Timeout, h.StatusOnError, h.IncludeRequestBodyInCheck)
			if h.PathPrefix != "" && !strings.HasPrefix(h.PathPrefix, "/") {
				bad("%s.pathPrefix %q must start with /", at, h.PathPrefix)
			}
			for _, f := range []struct {
				field string
				names []string
			}{
				{"includeRequestHeadersInCheck", h.IncludeRequestHeadersInCheck},
				{"headersToUpstreamOnAllow", h.HeadersToUpstreamOnAllow},
				{"headersToDownstreamOnAllow", h.HeadersToDownstreamOnAllow},
				{"headersToDownstreamOnDeny", h.HeadersToDownstreamOnDeny},
			} {
				for j, n := range f.names {
					if !headerNameRE.MatchString(n) {
						bad("%s.%s[%d] %q is not a header name", at, f.field, j, n)
					}
				}
			}
			for _, k := range slices.Sorted(maps.Keys(h.IncludeAdditionalHeadersInCheck)) {
				if !headerNameRE.MatchString(k) || strings.Contains(k, "*") {
					bad("%s.includeAdditionalHeadersInCheck: %q is not a header name", at, k)
				}
			}
		default:
			validateService(bad, at+".envoyExtAuthzGrpc", g.Service, g.Port, g.Timeout, g.StatusOnError, g.IncludeRequestBodyInCheck)
		}
	}
}

func validateService(bad func(string, ...any), at, service string, port uint32, timeout *metav1.Duration, status string, body *BodyInCheck) {
	if ns, host, ok := strings.Cut(service, "/"); ok {
		if !dnsLabelRE.MatchString(ns) || host == "" || strings.ContainsAny(host, "/*") {
			bad("%s.service %q must be <namespace>/<host> or a fully qualified host", at, service)
		}
	} else if !strings.Contains(service, ".") || strings.Contains(service, "*") {
		bad("%s.service %q must be <namespace>/<host> or a fully qualified host", at, service)
	}
	if port == 0 || port > 65535 {
		bad("%s.port %d must be between 1 and 65535", at, port)
	}
	if timeout != nil && timeout.Duration <= 0 {
		bad("%s.timeout %s must be positive", at, timeout.Duration)
	}
	if status != "" {
		if code, err := strconv.Atoi(status); err != nil || typev3.StatusCode_name[int32(code)] == "" || code == 0 {
			bad("%s.statusOnError %q is not an HTTP status Envoy can return", at, status)
		}
	}
	if body != nil && body.MaxRequestBytes == 0 {
		bad("%s.includeRequestBodyInCheck.maxRequestBytes must be positive", at)
	}
}

// ExtAuthzProviders is the model of the extension providers (nil when
// there are none). Call it once per loaded config.
func (c *MeshConfig) ExtAuthzProviders() *model.ExtAuthzProviders {
	var out []model.ExtAuthzProvider
	for _, p := range c.ExtensionProviders {
		m := model.ExtAuthzProvider{Name: p.Name}
		if h := p.EnvoyExtAuthzHTTP; h != nil {
			m.Service, m.Port, m.Timeout, m.FailOpen = h.Service, h.Port, duration(h.Timeout), h.FailOpen
			m.StatusOnError, m.IncludeRequestBodyInCheck = statusCode(h.StatusOnError), body(h.IncludeRequestBodyInCheck)
			m.PathPrefix = h.PathPrefix
			m.IncludeRequestHeadersInCheck = h.IncludeRequestHeadersInCheck
			m.IncludeAdditionalHeadersInCheck = h.IncludeAdditionalHeadersInCheck
			m.HeadersToUpstreamOnAllow = h.HeadersToUpstreamOnAllow
			m.HeadersToDownstreamOnAllow = h.HeadersToDownstreamOnAllow
			m.HeadersToDownstreamOnDeny = h.HeadersToDownstreamOnDeny
		} else if g := p.EnvoyExtAuthzGRPC; g != nil {
			m.GRPC = true
			m.Service, m.Port, m.Timeout, m.FailOpen = g.Service, g.Port, duration(g.Timeout), g.FailOpen
			m.StatusOnError, m.IncludeRequestBodyInCheck = statusCode(g.StatusOnError), body(g.IncludeRequestBodyInCheck)
		}
		out = append(out, m)
	}
	return model.NewExtAuthzProviders(out)
}

func duration(d *metav1.Duration) time.Duration {
	if d == nil {
		return 0
	}
	return d.Duration
}

func statusCode(s string) uint32 {
	code, _ := strconv.Atoi(s) // validated
	return uint32(code)
}

func body(b *BodyInCheck) *model.ExtAuthzBody {
	if b == nil {
		return nil
	}
	return &model.ExtAuthzBody{MaxRequestBytes: b.MaxRequestBytes, AllowPartialMessage: b.AllowPartialMessage, PackAsBytes: b.PackAsBytes}
}
