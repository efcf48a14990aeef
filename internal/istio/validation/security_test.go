package validation

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// securityObject renders a security.istio.io/v1 object of kind in namespace bookinfo with spec
// (written unindented).
func securityObject(kind, name, spec string) string {
	return strings.Replace(object(kind, name, spec), "networking.istio.io/v1", "security.istio.io/v1", 1)
}

func peerAuthentication(spec string) string {
	return securityObject("PeerAuthentication", "default", spec)
}
func authorizationPolicy(spec string) string {
	return securityObject("AuthorizationPolicy", "policy", spec)
}
func requestAuthentication(spec string) string {
	return securityObject("RequestAuthentication", "jwt", spec)
}

// testECPrivateKey is a P-256 key pair written as a JWK with its private half (d), generated
// for these tests.
const testECPrivateKey = `{"kty": "EC", "crv": "P-256", "x": "vRLLqOT0g0jUPFjya9WKoWLcuT40J7ifKKt85j-6qMo", ` +
	`"y": "eN2nf5P6LRfrrWQtUVbhzoYBjWMcKgBtcZdvvTIbqB0", "d": "FLqA8jq2IHXhR97kOedXuI2rIjQwKLypew3hFzFFmWM"}`

// testJWKS is a key set with one RSA public key, generated for these tests.
const testJWKS = `{"keys": [{"kty": "RSA", "kid": "test", "alg": "RS256", "use": "sig", "e": "AQAB", ` +
	`"n": "ncYZYEREhUaOso1Vq8B9OBBcXnCkprOPTDzcnsLPX_hyveXEFV8tQA9nGUZgv_P-zGUrzuqf6-ZyFyOE4CfunqBuaYg3aSutW9d899TN0piQOEPjAasQ1v0RaphYaSw9e0DXAw_nDkCnu-qRmKs0-d02p48O96lzCcmLhRRT4HKRuwoL3hCisIP7f76mKMFOsKN1dK1ZfTsr-O4bDTHTh60eu5uEqWOqh60phPM_NU3-XW1wbQMMPHcd4jiSHGuldZln5sMF_0kEiNmP-KZ6yVY4CksCcu5A-jFTVOBYKET9iM8SgSMGcK5-FMxlhCPyqeFblXkKgyBUCqloZJH9Cw"}]}`

func TestValidatePeerAuthentication(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "namespace-wide STRICT",
			yaml: peerAuthentication(`mtls: {mode: STRICT}`),
		},
		{
			name: "empty spec: inherit everything",
			yaml: peerAuthentication(`{}`),
		},
		{
			name: "workload-specific with port-level exceptions",
			yaml: peerAuthentication(`selector:
  matchLabels: {app: reviews}
mtls: {mode: STRICT}
portLevelMtls:
  "8080": {mode: PERMISSIVE}
  "9090": {mode: DISABLE}`),
		},
		{
			name:        "port-level mTLS without a selector",
			yaml:        peerAuthentication(`portLevelMtls: {"8080": {mode: DISABLE}}`),
			want:        []string{"MP0103 spec.portLevelMtls"},
			wantMessage: "port-level mTLS needs a selector with matchLabels",
		},
		{
			name: "port-level mTLS with a selector without labels",
			yaml: peerAuthentication(`selector: {}
portLevelMtls: {"8080": {mode: DISABLE}}`),
			want: []string{"MP0153 spec.selector", "MP0103 spec.portLevelMtls"},
		},
		{
			name: "port out of range, and an entry that changes nothing",
			yaml: peerAuthentication(`selector: {matchLabels: {app: reviews}}
portLevelMtls:
  "0": {mode: DISABLE}
  "70000": {mode: DISABLE}
  "8080": {}`),
			want: []string{"MP0109 spec.portLevelMtls[0]", "MP0109 spec.portLevelMtls[70000]", "MP0153 spec.portLevelMtls[8080].mode"},
		},
		{
			name: "selector with a wildcard, an empty key and a label no pod can carry",
			yaml: peerAuthentication(`selector:
  matchLabels: {app: "review*", "": x, "bad key": v1}`),
			want:        []string{"MP0101 spec.selector.matchLabels", "MP0101 spec.selector.matchLabels[app]", "MP0153 spec.selector.matchLabels[bad key]"},
			wantMessage: "label keys must not be empty",
		},
	})
}

func TestValidateAuthorizationPolicy(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "ALLOW with sources, operations and conditions",
			yaml: authorizationPolicy(`selector: {matchLabels: {app: reviews}}
action: ALLOW
rules:
- from:
  - source:
      principals: ["cluster.local/ns/bookinfo/sa/productpage", "*/sa/frontend"]
      namespaces: ["bookinfo", "team-*"]
      ipBlocks: ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
  to:
  - operation:
      methods: [GET, HEAD]
      paths: ["/reviews/*", "*.json", "/api/{*}/items/{**}", "/health"]
      ports: ["9080"]
      hosts: ["reviews.bookinfo.svc.cluster.local", "*.example.com"]
  when:
  - key: request.headers[x-user-group]
    values: [admins]
  - key: source.ip
    notValues: ["10.1.0.0/16"]
  - key: request.auth.claims[groups]
    values: [dev]
  - key: destination.port
    values: ["9080"]
  - key: experimental.envoy.filters.network.mysql_proxy[db.table]
    values: ["[update]"]
- {}`),
		},
		{
			name: "DENY naming its ports",
			yaml: authorizationPolicy(`action: DENY
rules:
- to:
  - operation: {ports: ["8080"], methods: [POST]}`),
		},
		{
			name: "AUDIT",
			yaml: authorizationPolicy(`action: AUDIT
rules:
- to:
  - operation: {paths: ["/payments/*"]}`),
		},
		{
			name: "CUSTOM with a provider",
			yaml: authorizationPolicy(`action: CUSTOM
provider: {name: opa}
rules:
- to:
  - operation: {paths: ["/admin/*"]}`),
		},
		{
			name: "AUDIT without rules audits nothing",
			yaml: authorizationPolicy(`action: AUDIT`),
			want: []string{"MP0153 spec.rules"},
		},
		{
			name:        "ALLOW without rules denies everything",
			yaml:        authorizationPolicy(`action: ALLOW`),
			want:        []string{"MP0155 spec.rules"},
			wantMessage: "an ALLOW policy without rules matches no request",
		},
		{
			name: "DENY and CUSTOM without rules are never triggered",
			yaml: authorizationPolicy(`action: DENY
rules: []`),
			want:        []string{"MP0102 spec.rules"},
			wantMessage: "a DENY policy without rules is never triggered",
		},
		{
			name: "CUSTOM needs a provider name and cannot match on identities",
			yaml: authorizationPolicy(`action: CUSTOM
rules:
- from:
  - source: {principals: ["cluster.local/ns/a/sa/b"], ipBlocks: ["10.0.0.1"]}
  when:
  - key: request.auth.claims[iss]
    values: [issuer]
  - key: source.ip
    values: ["10.0.0.1"]`),
			want: []string{
				"MP0102 spec.provider.name",
				"MP0103 spec.rules[0].from[0].source.principals",
				"MP0103 spec.rules[0].when[0].key",
			},
		},
		{
			name: "provider without action CUSTOM",
			yaml: authorizationPolicy(`action: DENY
provider: {name: opa}
rules: [{}]`),
			want:        []string{"MP0103 spec.provider"},
			wantMessage: "provider is only used with action CUSTOM, and the action is DENY",
		},
		{
			name: "selector and targetRefs together; target references Istio refuses",
			yaml: authorizationPolicy(`selector: {matchLabels: {app: reviews}}
targetRefs:
- {kind: Gateway, group: gateway.networking.k8s.io, name: edge}
- {kind: Deployment, group: apps, name: reviews, namespace: other}
- {kind: Service, name: ""}
rules: [{}]`),
			want: []string{
				"MP0103 spec.targetRefs",
				"MP0101 spec.targetRefs[1].kind",
				"MP0101 spec.targetRefs[1].namespace",
				"MP0102 spec.targetRefs[2].name",
			},
		},
		{
			name: "empty source and operation, empty values, bad addresses and ports",
			yaml: authorizationPolicy(`rules:
- from:
  - source: {}
  - source: {namespaces: [""], ipBlocks: ["10.0.0.300", "10.0.0.0/33"], remoteIpBlocks: [example.com]}
  to:
  - operation: {}
  - operation: {ports: ["http", "70000", "0"], methods: [""]}`),
			want: []string{
				"MP0102 spec.rules[0].from[0].source",
				"MP0101 spec.rules[0].from[1].source.namespaces[0]",
				"MP0101 spec.rules[0].from[1].source.ipBlocks[0]",
				"MP0101 spec.rules[0].from[1].source.ipBlocks[1]",
				"MP0101 spec.rules[0].from[1].source.remoteIpBlocks[0]",
				"MP0102 spec.rules[0].to[0].operation",
				"MP0109 spec.rules[0].to[1].operation.ports[0]",
				"MP0109 spec.rules[0].to[1].operation.ports[1]",
				"MP0153 spec.rules[0].to[1].operation.ports[2]",
				"MP0101 spec.rules[0].to[1].operation.methods[0]",
			},
		},
		{
			name: "from and to entries without source or operation",
			yaml: authorizationPolicy(`rules:
- from: [{}]
  to: [{}]`),
			want: []string{"MP0102 spec.rules[0].from[0].source", "MP0102 spec.rules[0].to[0].operation"},
		},
		{
			name: "serviceAccounts with principals",
			yaml: authorizationPolicy(`rules:
- from:
  - source: {serviceAccounts: [bookinfo/productpage], principals: ["cluster.local/ns/a/sa/b"]}`),
			want: []string{"MP0103 spec.rules[0].from[0].source.principals"},
		},
		{
			name: "wildcards in the middle are matched literally",
			yaml: authorizationPolicy(`rules:
- from:
  - source: {principals: ["cluster.local/*/sa/web"], namespaces: ["team-*-prod", "*-dev*"]}
  to:
  - operation: {paths: ["/api/*/items", "*"], hosts: ["api.*.com", "*.example.com"]}`),
			want: []string{
				"MP0156 spec.rules[0].from[0].source.principals[0]",
				"MP0156 spec.rules[0].from[0].source.namespaces[0]",
				"MP0156 spec.rules[0].from[0].source.namespaces[1]",
				"MP0156 spec.rules[0].to[0].operation.paths[0]",
				"MP0156 spec.rules[0].to[0].operation.hosts[0]",
			},
			wantMessage: `"cluster.local/*/sa/web" has a "*" Istio matches literally`,
		},
		{
			name: "path templates Envoy cannot use",
			yaml: authorizationPolicy(`rules:
- to:
  - operation:
      paths: ["/{**}/foo/{*}", "/foo/{*}.txt", "/*/baz/{*}", "/foo/{name}/{*}"]
      notPaths: ["/foo/{*}/bar/{**}"]`),
			want: []string{
				"MP0101 spec.rules[0].to[0].operation.paths[0]",
				"MP0101 spec.rules[0].to[0].operation.paths[1]",
				"MP0101 spec.rules[0].to[0].operation.paths[2]",
				"MP0101 spec.rules[0].to[0].operation.paths[3]",
			},
			wantMessage: `path template "/{**}/foo/{*}" has an operator after {**}`,
		},
		{
			name: "conditions Istio refuses",
			yaml: authorizationPolicy(`rules:
- when:
  - key: request.header[x-user]
    values: [a]
  - key: request.headers
    values: [a]
  - key: destination.labels[app]
    values: [reviews]
  - key: source.ip
    values: [not-an-ip]
  - key: destination.port
    notValues: ["65536"]
  - key: source.namespace
  - key: connection.sni
    values: [""]`),
			want: []string{
				"MP0113 spec.rules[0].when[0].key",
				"MP0113 spec.rules[0].when[1].key",
				"MP0113 spec.rules[0].when[2].key",
				"MP0113 spec.rules[0].when[3].values[0]",
				"MP0113 spec.rules[0].when[4].notValues[0]",
				"MP0113 spec.rules[0].when[5]",
				"MP0113 spec.rules[0].when[6].values[0]",
			},
			wantMessage: "unknown key request.header[x-user]; the keys are request.headers[<name>], source.ip",
		},
		{
			name: "DENY rules with HTTP attributes only",
			yaml: authorizationPolicy(`action: DENY
rules:
- to:
  - operation: {methods: [DELETE]}
- from:
  - source: {requestPrincipals: ["*"]}
- from:
  - source: {namespaces: [legacy]}
- from:
  - source: {namespaces: [legacy]}
  to:
  - operation: {paths: ["/admin/*"], ports: ["8080"]}`),
			want:        []string{"MP0157 spec.rules[0]", "MP0157 spec.rules[1]"},
			wantMessage: "this DENY rule matches HTTP attributes only and names no port",
		},
		{
			name: "dry-run annotation",
			yaml: strings.Replace(authorizationPolicy(`action: AUDIT
rules: [{}]`), "  namespace: bookinfo\n", "  namespace: bookinfo\n  annotations: {istio.io/dry-run: \"yes\"}\n", 1),
			want: []string{
				"MP0101 metadata.annotations[istio.io/dry-run]",
				"MP0103 metadata.annotations[istio.io/dry-run]",
			},
		},
	})
}

func TestValidateRequestAuthentication(t *testing.T) {
	runValidationCases(t, []validationCase{
		{
			name: "issuers with a JWKS URI and an inline key set",
			yaml: requestAuthentication(`selector: {matchLabels: {app: reviews}}
jwtRules:
- issuer: https://accounts.example.com
  audiences: [reviews]
  jwksUri: https://accounts.example.com/.well-known/jwks.json
  fromHeaders: [{name: x-jwt-assertion, prefix: "Bearer "}]
  fromParams: [access_token]
  fromCookies: [session]
  outputPayloadToHeader: x-jwt-payload
  outputClaimToHeaders: [{header: x-user-id, claim: sub}]
  forwardOriginalToken: true
  timeout: 5s
- issuer: testing@secure.istio.io
  jwks: '` + testJWKS + `'`),
		},
		{
			name: "targetRefs for a gateway",
			yaml: requestAuthentication(`targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: edge}]
jwtRules:
- {issuer: "https://accounts.example.com", jwksUri: "http://keys.internal:8080/jwks"}`),
		},
		{
			name:        "a rule without issuer",
			yaml:        requestAuthentication(`jwtRules: [{jwksUri: "https://accounts.example.com/jwks"}]`),
			want:        []string{"MP0102 spec.jwtRules[0].issuer"},
			wantMessage: "a JWT rule needs the issuer",
		},
		{
			name: "jwks and jwksUri together",
			yaml: requestAuthentication(`jwtRules:
- issuer: https://accounts.example.com
  jwksUri: https://accounts.example.com/jwks
  jwks: '` + testJWKS + `'`),
			want: []string{"MP0103 spec.jwtRules[0].jwks"},
		},
		{
			name: "JWKS URIs that cannot be fetched",
			yaml: requestAuthentication(`jwtRules:
- {issuer: a, jwksUri: "/.well-known/jwks.json"}
- {issuer: b, jwksUri: "ftp://keys.example.com/jwks"}
- {issuer: c, jwksUri: "https:///jwks"}
- {issuer: d, jwksUri: "https://keys example.com/jwks"}`),
			want: []string{
				"MP0112 spec.jwtRules[0].jwksUri",
				"MP0112 spec.jwtRules[1].jwksUri",
				"MP0112 spec.jwtRules[2].jwksUri",
				"MP0112 spec.jwtRules[3].jwksUri",
			},
			wantMessage: `jwksUri "/.well-known/jwks.json" must be an absolute http:// or https:// URL`,
		},
		{
			name: "inline key sets that are not",
			yaml: requestAuthentication(`jwtRules:
- {issuer: a, jwks: "not json"}
- {issuer: b, jwks: '{"kty": "RSA", "e": "AQAB", "n": "AQAB"}'}
- {issuer: c, jwks: '{"keys": [{"kty": "RSA", "e": "AQAB"}]}'}
- {issuer: d, jwks: '{"keys": []}'}
- {issuer: e, jwks: '{"issuer": "e"}'}`),
			want: []string{
				"MP0112 spec.jwtRules[0].jwks",
				"MP0112 spec.jwtRules[1].jwks",
				"MP0112 spec.jwtRules[2].jwks",
				"MP0153 spec.jwtRules[3].jwks",
				"MP0112 spec.jwtRules[4].jwks",
			},
		},
		{
			name: "key types a proxy does not know are skipped",
			yaml: requestAuthentication(`jwtRules:
- {issuer: a, jwks: '{"keys": [{"kty": "future-kty", "use": "sig"}]}'}
- {issuer: b, jwks: '{"keys": [{"kty": "future-kty"}, {"kty": "oct", "k": "c2VjcmV0"}]}'}`),
			want:        []string{"MP0153 spec.jwtRules[0].jwks"},
			wantMessage: "jwks has no key a proxy can use",
		},
		{
			name: "a private key in an inline key set",
			yaml: requestAuthentication(`jwtRules:
- issuer: a
  jwks: '{"keys": [` + testECPrivateKey + `]}'`),
			want:        []string{"MP0158 spec.jwtRules[0].jwks"},
			wantMessage: "jwks keys[0] hold private keys",
		},
		{
			name: "header names",
			yaml: requestAuthentication(`jwtRules:
- issuer: a
  jwksUri: https://a.example.com/jwks
  fromHeaders: [{name: ""}, {name: "x jwt"}]
  outputPayloadToHeader: "x-payload:"
  outputClaimToHeaders: [{header: "x.user", claim: sub}, {header: x-group}]`),
			want: []string{
				"MP0102 spec.jwtRules[0].fromHeaders[0].name",
				"MP0153 spec.jwtRules[0].fromHeaders[1].name",
				"MP0153 spec.jwtRules[0].outputPayloadToHeader",
				"MP0101 spec.jwtRules[0].outputClaimToHeaders[0].header",
				"MP0102 spec.jwtRules[0].outputClaimToHeaders[1].claim",
			},
		},
		{
			name: "empty entries and a timeout Envoy cannot use",
			yaml: requestAuthentication(`jwtRules:
- issuer: a
  jwksUri: https://a.example.com/jwks
  audiences: [""]
  fromParams: [""]
  fromCookies: [""]
  timeout: 500us`),
			want: []string{
				"MP0101 spec.jwtRules[0].audiences[0]",
				"MP0101 spec.jwtRules[0].fromParams[0]",
				"MP0101 spec.jwtRules[0].fromCookies[0]",
				"MP0106 spec.jwtRules[0].timeout",
			},
		},
	})
}

func TestPathTemplateProblem(t *testing.T) {
	for path, valid := range map[string]bool{
		"/foo/{*}":          true,
		"/foo/{**}":         true,
		"/foo/{**}/":        true,
		"/foo/{*}/bar/{**}": true,
		"/{*}/{*}/x":        true,
		"/{**}/{*}":         false,
		"/{**}/{**}":        false,
		"/foo/{*}.txt":      false,
		"/*/baz/{*}":        false,
		"/**/baz/{*}":       false,
		"/foo/{bar}/{*}":    false,
		"/foo/{}/{*}":       false,
		"/foo/{x=*}/{*}":    false,
	} {
		if !isPathTemplate(path) {
			t.Errorf("%q is not taken for a template", path)
		}
		if got := pathTemplateProblem(path) == ""; got != valid {
			t.Errorf("pathTemplateProblem(%q) = %q, want valid=%v", path, pathTemplateProblem(path), valid)
		}
	}
}

func TestAnalyzePeerAuthentications(t *testing.T) {
	const rootNamespace = "meshplane-system"
	pa := func(namespace, name, created, spec string) string {
		meta := "{name: " + name + ", namespace: " + namespace
		if created != "" {
			meta += ", creationTimestamp: " + created
		}
		return "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: " + meta + "}\nspec: " + spec + "\n---\n"
	}
	tests := []struct {
		name        string
		yaml        string
		want        []string
		wantMessage string
	}{
		{
			name: "one policy per level, whatever their names",
			yaml: pa(rootNamespace, "mesh-strict", "", "{mtls: {mode: STRICT}}") +
				pa("bookinfo", "default", "", "{mtls: {mode: PERMISSIVE}}") +
				pa("frontend", "default", "", "{mtls: {mode: PERMISSIVE}}") +
				pa("bookinfo", "reviews", "", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}") +
				pa("bookinfo", "ratings", "", "{selector: {matchLabels: {app: ratings}}, mtls: {mode: STRICT}}") +
				// Selectors that select none of the workloads given are not a finding.
				pa("bookinfo", "ghost", "", "{selector: {matchLabels: {app: ghost}}}") +
				pa("bookinfo", "phantom", "", "{selector: {matchLabels: {app: phantom}}}"),
		},
		{
			name: "two mesh-wide policies: the oldest applies",
			yaml: pa(rootNamespace, "a-newer", "2026-03-01T00:00:00Z", "{mtls: {mode: PERMISSIVE}}") +
				pa(rootNamespace, "z-older", "2025-01-01T00:00:00Z", "{mtls: {mode: STRICT}}"),
			want:        []string{"MP1006 PeerAuthentication meshplane-system/a-newer "},
			wantMessage: "PeerAuthentication meshplane-system/z-older (case.yaml:",
		},
		{
			name: "two namespace-wide policies without creation times: by name",
			yaml: pa("bookinfo", "default", "", "{mtls: {mode: STRICT}}") +
				pa("bookinfo", "permissive", "", "{mtls: {mode: PERMISSIVE}}"),
			want:        []string{"MP1006 PeerAuthentication bookinfo/permissive "},
			wantMessage: "is the oldest namespace-wide PeerAuthentication of namespace bookinfo, so Istio applies it and ignores this one",
		},
		{
			name: "the same selector twice",
			yaml: pa("bookinfo", "reviews", "2025-01-01T00:00:00Z", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}") +
				pa("bookinfo", "reviews-again", "2025-02-01T00:00:00Z", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: DISABLE}}"),
			want:        []string{"MP1006 PeerAuthentication bookinfo/reviews-again spec.selector.matchLabels"},
			wantMessage: "has the same selector and is older",
		},
		{
			name: "different selectors for one workload",
			yaml: pa("bookinfo", "reviews", "2025-01-01T00:00:00Z", "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}}") +
				pa("bookinfo", "reviews-v2", "2025-02-01T00:00:00Z", "{selector: {matchLabels: {version: v2}}, mtls: {mode: DISABLE}}"),
			want:        []string{"MP1006 PeerAuthentication bookinfo/reviews-v2 spec.selector.matchLabels"},
			wantMessage: "also selects Pod reviews-v2-7d9f and is older",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded := config.LoadBytes("case.yaml", []byte(platform+"---\n"+tt.yaml), config.Options{})
			if len(loaded.Problems) > 0 {
				t.Fatalf("fixture does not load cleanly: %+v", loaded.Problems)
			}
			findings := AnalyzeWith(loaded.Objects, Options{RootNamespace: rootNamespace})
			var got []string
			for _, f := range findings {
				got = append(got, f.Code.ID+" "+f.Object()+" "+f.Field)
			}
			if want := slices.Sorted(slices.Values(tt.want)); !slices.Equal(got, want) {
				t.Fatalf("findings:\n  got  %q\n  want %q\n%s", got, want, formatFindings(findings))
			}
			if tt.wantMessage != "" && !strings.Contains(findings[0].Message, tt.wantMessage) {
				t.Errorf("message %q does not contain %q", findings[0].Message, tt.wantMessage)
			}
		})
	}
}

// The root namespace only changes the words: conflicts are found in any namespace.
func TestAnalyzeNamesMeshWidePoliciesOnlyInTheRootNamespace(t *testing.T) {
	input := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: strict, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
`
	loaded := config.LoadBytes("case.yaml", []byte(input), config.Options{})
	for root, want := range map[string]string{
		"":             "oldest namespace-wide PeerAuthentication of namespace istio-system",
		"istio-system": "oldest mesh-wide PeerAuthentication (root namespace istio-system)",
	} {
		findings := AnalyzeWith(loaded.Objects, Options{RootNamespace: root})
		if len(findings) != 1 || !strings.Contains(findings[0].Message, want) {
			t.Errorf("root namespace %q: findings\n%s\nwant one saying %q", root, formatFindings(findings), want)
		}
	}
}
