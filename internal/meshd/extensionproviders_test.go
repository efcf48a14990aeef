package meshd

import (
	"strings"
	"testing"
	"time"

	"github.com/meshplane/meshplane/internal/model"
)

const extensionProvidersConfig = `
extensionProviders:
- name: opa-http
  envoyExtAuthzHttp:
    service: authz-system/opa
    port: 8181
    timeout: 0.5s
    pathPrefix: /check
    failOpen: true
    statusOnError: "503"
    includeRequestHeadersInCheck: [authorization, "x-ext-*"]
    includeAdditionalHeadersInCheck: {x-mesh: meshplane}
    includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true}
    headersToUpstreamOnAllow: [x-user-id]
    headersToDownstreamOnAllow: [set-cookie]
    headersToDownstreamOnDeny: ["*-reason"]
- name: opa-grpc
  envoyExtAuthzGrpc:
    service: opa.authz-system.svc.cluster.local
    port: 9191
    timeout: 200ms
`

func TestExtensionProviders(t *testing.T) {
	cfg, err := ParseMeshConfig([]byte(extensionProvidersConfig), "")
	if err != nil {
		t.Fatal(err)
	}
	got := cfg.ExtAuthzProviders()
	h, ok := got.Lookup("opa-http")
	if !ok || h.GRPC || h.Service != "authz-system/opa" || h.Port != 8181 || h.Timeout != 500*time.Millisecond ||
		h.PathPrefix != "/check" || !h.FailOpen || h.StatusOnError != 503 || h.IncludeRequestBodyInCheck == nil ||
		h.IncludeRequestBodyInCheck.MaxRequestBytes != 4096 || len(h.IncludeRequestHeadersInCheck) != 2 ||
		h.IncludeAdditionalHeadersInCheck["x-mesh"] != "meshplane" || h.HeadersToUpstreamOnAllow[0] != "x-user-id" ||
		h.HeadersToDownstreamOnAllow[0] != "set-cookie" || h.HeadersToDownstreamOnDeny[0] != "*-reason" {
		t.Errorf("opa-http = %+v", h)
	}
	g, ok := got.Lookup("opa-grpc")
	if !ok || !g.GRPC || g.Service != "opa.authz-system.svc.cluster.local" || g.Port != 9191 || g.Timeout != 200*time.Millisecond {
		t.Errorf("opa-grpc = %+v", g)
	}
	again, _ := ParseMeshConfig([]byte(extensionProvidersConfig), "")
	if !again.ExtAuthzProviders().Equal(got) {
		t.Error("the same config gives providers that are not Equal")
	}
	if (&MeshConfig{}).ExtAuthzProviders() != nil {
		t.Error("no providers should be nil")
	}
	var none *model.ExtAuthzProviders
	if _, ok := none.Lookup("x"); ok || !none.Equal(nil) {
		t.Error("nil providers find something")
	}
}

func TestExtensionProvidersRefused(t *testing.T) {
	for _, tc := range []struct {
		name, doc string
		want      []string
	}{
		{"no kind", "extensionProviders: [{name: a}]", []string{"extensionProviders[0]: exactly one of envoyExtAuthzHttp and envoyExtAuthzGrpc"}},
		{"two kinds", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: ns/a, port: 1}, envoyExtAuthzGrpc: {service: ns/a, port: 1}}]",
			[]string{"exactly one of"}},
		{"unsupported Istio kind", "extensionProviders: [{name: a, zipkin: {service: z, port: 9411}}]",
			[]string{`unknown field "extensionProviders[0].zipkin"`}},
		{"unknown Istio field", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: ns/a, port: 1, includeHeadersInCheck: [x]}}]",
			[]string{`unknown field "extensionProviders[0].envoyExtAuthzHttp.includeHeadersInCheck"`}},
		{"name", "extensionProviders: [{name: Bad_Name, envoyExtAuthzGrpc: {service: ns/a, port: 1}}]", []string{`extensionProviders[0].name "Bad_Name"`}},
		{"no name", "extensionProviders: [{envoyExtAuthzGrpc: {service: ns/a, port: 1}}]", []string{"extensionProviders[0].name is required"}},
		{"duplicate name", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: ns/a, port: 1}}, {name: a, envoyExtAuthzGrpc: {service: ns/b, port: 1}}]",
			[]string{`extensionProviders[1].name "a" is used twice`}},
		{"short service", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: opa, port: 1}}]",
			[]string{`extensionProviders[0].envoyExtAuthzGrpc.service "opa" must be <namespace>/<host> or a fully qualified host`}},
		{"port", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: ns/a, port: 70000}}]",
			[]string{"extensionProviders[0].envoyExtAuthzHttp.port 70000"}},
		{"timeout", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: ns/a, port: 1, timeout: 0s}}]",
			[]string{"timeout 0s must be positive"}},
		{"path prefix", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: ns/a, port: 1, pathPrefix: check}}]",
			[]string{`pathPrefix "check" must start with /`}},
		{"status", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: ns/a, port: 1, statusOnError: \"999\"}}]",
			[]string{`statusOnError "999"`}},
		{"header", "extensionProviders: [{name: a, envoyExtAuthzHttp: {service: ns/a, port: 1, headersToUpstreamOnAllow: [\"a b\"]}}]",
			[]string{`headersToUpstreamOnAllow[0] "a b" is not a header name`}},
		{"body", "extensionProviders: [{name: a, envoyExtAuthzGrpc: {service: ns/a, port: 1, includeRequestBodyInCheck: {packAsBytes: true}}}]",
			[]string{"includeRequestBodyInCheck.maxRequestBytes must be positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseMeshConfig([]byte(tc.doc), "")
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}
