package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

const multiDocument = `# reviews routing, comment before the first document
---
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
    timeout: 1m30s
---
---
# an empty document above, a comment here
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata:
  name: reviews
  namespace: bookinfo
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
---
apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - port: 9080
    name: http
`

func TestLoadBytesSplitsDocumentsAndRemembersLines(t *testing.T) {
	result := LoadBytes("bookinfo.yaml", []byte(multiDocument), Options{})
	if len(result.Problems) != 0 {
		t.Fatalf("problems: %+v", result.Problems)
	}
	want := []struct {
		kind, apiVersion, ref string
		line                  int
	}{
		{"VirtualService", "networking.istio.io/v1alpha3", "default/reviews", 3},
		{"DestinationRule", "networking.istio.io/v1beta1", "bookinfo/reviews", 19},
		{"Service", "v1", "default/reviews", 31},
	}
	if len(result.Objects) != len(want) {
		t.Fatalf("got %d objects, want %d", len(result.Objects), len(want))
	}
	for i, w := range want {
		got := result.Objects[i]
		if got.Kind != w.kind || got.APIVersion != w.apiVersion || got.Ref() != w.ref || got.Source != (Source{"bookinfo.yaml", w.line}) {
			t.Errorf("object %d = %s %s %s at %s, want %s %s %s at bookinfo.yaml:%d",
				i, got.Kind, got.APIVersion, got.Ref(), got.Source, w.kind, w.apiVersion, w.ref, w.line)
		}
	}

	vs, ok := result.Objects[0].Object.(*networkingv1.VirtualService)
	if !ok {
		t.Fatalf("v1alpha3 VirtualService decoded as %T, want the v1 type", result.Objects[0].Object)
	}
	if vs.APIVersion != "networking.istio.io/v1" {
		t.Errorf("TypeMeta apiVersion = %q, want networking.istio.io/v1", vs.APIVersion)
	}
	if got := vs.Spec.Http[0].Route[0].Destination.Subset; got != "v1" {
		t.Errorf("subset = %q, want v1", got)
	}
	if got := vs.Spec.Http[0].Timeout.AsDuration(); got != 90*time.Second {
		t.Errorf("timeout = %v, want 1m30s (Go duration syntax, as Istio's decoder accepts)", got)
	}
	if _, ok := result.Objects[1].Object.(*networkingv1.DestinationRule); !ok {
		t.Errorf("v1beta1 DestinationRule decoded as %T", result.Objects[1].Object)
	}
	if _, ok := result.Objects[2].Object.(*corev1.Service); !ok {
		t.Errorf("Service decoded as %T", result.Objects[2].Object)
	}

	// Field lines: a written field points at itself, a missing one at its closest parent.
	for path, line := range map[string]int{
		"spec.http[0].route[0].destination.subset": 14,
		"spec.http[0].timeout":                     15,
		"spec.http[0].route[0].weight":             12, // not written: the route entry
		"spec.gateways":                            7,  // not written: spec
		"":                                         3,
	} {
		if got := result.Objects[0].LineOf(path); got != line {
			t.Errorf("LineOf(%q) = %d, want %d", path, got, line)
		}
	}
	if got := result.Objects[1].LineOf("spec.subsets[0].labels[version]"); got != 29 {
		t.Errorf("LineOf(map key) = %d, want 29", got)
	}
}

func TestLoadBytesReportsSchemaProblemsWithPathsAndLines(t *testing.T) {
	tests := []struct {
		name        string
		yaml        string
		wantField   string
		wantLine    int
		wantMessage string
	}{
		{
			name: "misspelled field, with a suggestion",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destinaton:
        host: reviews
`,
			wantField:   "spec.http[0].route[0].destinaton",
			wantLine:    9,
			wantMessage: `unknown field "destinaton", did you mean "destination"?`,
		},
		{
			name: "wrong case of a known field",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
    retries:
      attempts: 3
      perTryTimeOut: 2s
`,
			wantField:   "spec.http[0].retries.perTryTimeOut",
			wantLine:    13,
			wantMessage: `unknown field "perTryTimeOut", did you mean "perTryTimeout"?`,
		},
		{
			name: "string where an integer belongs",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination:
        host: reviews
      weight: "50"
`,
			wantField:   "spec.http[0].route[0].weight",
			wantLine:    11,
			wantMessage: "must be an integer",
		},
		{
			name: "negative port in an unsigned field",
			yaml: `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  servers:
  - port:
      number: -80
      name: http
      protocol: HTTP
    hosts: ["*"]
`,
			wantField:   "spec.servers[0].port.number",
			wantLine:    8,
			wantMessage: "must be between 0 and 4294967295",
		},
		{
			name: "unknown enum value",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBBIN
`,
			wantField:   "spec.trafficPolicy.loadBalancer.simple",
			wantLine:    9,
			wantMessage: `unknown value "ROUND_ROBBIN", must be one of UNSPECIFIED, LEAST_CONN, RANDOM, PASSTHROUGH, ROUND_ROBIN, LEAST_REQUEST`,
		},
		{
			name: "loadBalancer with both simple and consistentHash",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      consistentHash:
        httpHeaderName: x-user
`,
			wantField:   "spec.trafficPolicy.loadBalancer.simple",
			wantLine:    9,
			wantMessage: "only one of consistentHash, simple may be set, and consistentHash is set too",
		},
		{
			name: "consistentHash with two key sources",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
        useSourceIp: true
`,
			wantField:   "spec.trafficPolicy.loadBalancer.consistentHash.useSourceIp",
			wantLine:    11,
			wantMessage: "only one of httpHeaderName, useSourceIp may be set, and httpHeaderName is set too",
		},
		{
			name: "abort with both an HTTP and a gRPC status",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - fault:
      abort:
        httpStatus: 500
        grpcStatus: UNAVAILABLE
    route:
    - destination:
        host: ratings
`,
			wantField:   "spec.http[0].fault.abort.httpStatus",
			wantLine:    10,
			wantMessage: "only one of grpcStatus, httpStatus may be set, and grpcStatus is set too",
		},
		{
			name: "duration without a unit",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - route:
    - destination:
        host: ratings
    timeout: 10
`,
			wantField:   "spec.http[0].timeout",
			wantLine:    11,
			wantMessage: `must be a duration string such as "10s", "1.5s" or "500ms"`,
		},
		{
			name: "duration that does not parse",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts: [ratings]
  http:
  - route:
    - destination:
        host: ratings
    timeout: 7 seconds
`,
			wantField:   "spec.http[0].timeout",
			wantLine:    11,
			wantMessage: `"7 seconds" is not a duration, write one such as "10s", "1.5s" or "500ms"`,
		},
		{
			name: "label value that YAML reads as a number",
			yaml: `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: 1
`,
			wantField:   "spec.subsets[0].labels[version]",
			wantLine:    10,
			wantMessage: "must be a string (quote it)",
		},
		{
			name: "spec indented wrongly: unknown top-level field",
			yaml: `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
sepc:
  servers: []
`,
			wantField:   "sepc",
			wantLine:    5,
			wantMessage: `unknown field "sepc", did you mean "spec"?`,
		},
		{
			name: "unknown metadata field",
			yaml: `apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
  lables:
    app: edge
spec: {}
`,
			wantField:   "metadata.lables",
			wantLine:    5,
			wantMessage: "unknown field",
		},
		{
			name: "unknown field in a Kubernetes Service",
			yaml: `apiVersion: v1
kind: Service
metadata:
  name: reviews
spec:
  ports:
  - port: 9080
    protocl: TCP
`,
			wantField:   "spec.ports[0].protocl",
			wantLine:    8,
			wantMessage: "unknown field",
		},
		{
			name: "Istio version that is not served",
			yaml: `apiVersion: networking.istio.io/v2
kind: Gateway
metadata:
  name: edge
spec: {}
`,
			wantField:   "apiVersion",
			wantLine:    1,
			wantMessage: "networking.istio.io/v2 Gateway is not served; use networking.istio.io/v1 (v1beta1 and v1alpha3 are accepted too)",
		},
		{
			name: "security version that is not served",
			yaml: `apiVersion: security.istio.io/v1alpha1
kind: PeerAuthentication
metadata:
  name: default
spec: {}
`,
			wantField:   "apiVersion",
			wantLine:    1,
			wantMessage: "security.istio.io/v1alpha1 PeerAuthentication is not served; use security.istio.io/v1 (v1beta1 is accepted too)",
		},
		{
			name: "misspelled AuthorizationPolicy field",
			yaml: `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: viewer
spec:
  rules:
  - form:
    - source: {namespaces: [bookinfo]}
`,
			wantField:   "spec.rules[0].form",
			wantLine:    7,
			wantMessage: `unknown field "form", did you mean "from"?`,
		},
		{
			name: "unknown AuthorizationPolicy action",
			yaml: `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: viewer
spec:
  action: REJECT
`,
			wantField:   "spec.action",
			wantLine:    6,
			wantMessage: `unknown value "REJECT", must be one of ALLOW, DENY, AUDIT, CUSTOM`,
		},
		{
			name: "unknown PeerAuthentication mode",
			yaml: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
spec:
  mtls: {mode: STRICTER}
`,
			wantField:   "spec.mtls.mode",
			wantLine:    6,
			wantMessage: `unknown value "STRICTER", must be one of UNSET, DISABLE, PERMISSIVE, STRICT`,
		},
		{
			name: "port-level mTLS keyed by a name instead of a port",
			yaml: `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: web
spec:
  selector: {matchLabels: {app: web}}
  portLevelMtls:
    http:
      mode: DISABLE
`,
			wantField:   "spec.portLevelMtls[http]",
			wantLine:    8,
			wantMessage: `key "http" must be an integer`,
		},
		{
			name: "RequestAuthentication issuer that YAML reads as a number",
			yaml: `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: jwt
spec:
  jwtRules:
  - issuer: 42
`,
			wantField:   "spec.jwtRules[0].issuer",
			wantLine:    7,
			wantMessage: "must be a string (quote it)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := LoadBytes("in.yaml", []byte(tt.yaml), Options{})
			if len(result.Problems) != 1 {
				t.Fatalf("want exactly one problem, got %+v", result.Problems)
			}
			got := result.Problems[0]
			if got.Reason != ReasonSchema || got.Field != tt.wantField || got.Source.Line != tt.wantLine || got.Message != tt.wantMessage {
				t.Errorf("got  reason %d %s line %d: %s\nwant reason %d %s line %d: %s",
					got.Reason, got.Field, got.Source.Line, got.Message, ReasonSchema, tt.wantField, tt.wantLine, tt.wantMessage)
			}
		})
	}
}

// The security.istio.io kinds are decoded in both served versions into the v1 client types.
func TestLoadBytesDecodesSecurityKinds(t *testing.T) {
	result := LoadBytes("security.yaml", []byte(`apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: default
  namespace: meshplane-system
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: web
spec:
  selector:
    matchLabels: {app: web}
  portLevelMtls:
    "8080": {mode: PERMISSIVE}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: viewer
spec:
  action: DENY
  rules:
  - from:
    - source:
        notNamespaces: [bookinfo]
    to:
    - operation: {methods: [POST], paths: ["/admin/*"]}
---
apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata:
  name: jwt
spec:
  jwtRules:
  - issuer: https://issuer.example.com
    jwksUri: https://issuer.example.com/jwks.json
    fromHeaders: [{name: x-jwt, prefix: "Bearer "}]
`), Options{DefaultNamespace: "bookinfo"})
	if len(result.Problems) != 0 {
		t.Fatalf("problems: %+v", result.Problems)
	}
	want := []struct {
		kind, apiVersion, ref string
		line                  int
	}{
		{"PeerAuthentication", "security.istio.io/v1beta1", "meshplane-system/default", 1},
		{"PeerAuthentication", "security.istio.io/v1", "bookinfo/web", 9},
		{"AuthorizationPolicy", "security.istio.io/v1", "bookinfo/viewer", 19},
		{"RequestAuthentication", "security.istio.io/v1beta1", "bookinfo/jwt", 32},
	}
	if len(result.Objects) != len(want) {
		t.Fatalf("got %d objects, want %d", len(result.Objects), len(want))
	}
	for i, w := range want {
		got := result.Objects[i]
		if got.Kind != w.kind || got.APIVersion != w.apiVersion || got.Ref() != w.ref || got.Source != (Source{"security.yaml", w.line}) {
			t.Errorf("object %d = %s %s %s at %s, want %s %s %s at security.yaml:%d",
				i, got.Kind, got.APIVersion, got.Ref(), got.Source, w.kind, w.apiVersion, w.ref, w.line)
		}
		if gvk := got.Object.GetObjectKind().GroupVersionKind(); gvk.Group != "security.istio.io" || gvk.Version != "v1" || gvk.Kind != w.kind {
			t.Errorf("object %d has type meta %v, want security.istio.io/v1 %s", i, gvk, w.kind)
		}
	}

	mesh, ok := result.Objects[0].Object.(*securityv1.PeerAuthentication)
	if !ok || mesh.Spec.GetMtls().GetMode().String() != "STRICT" {
		t.Errorf("v1beta1 PeerAuthentication decoded as %T %v", result.Objects[0].Object, mesh)
	}
	web, ok := result.Objects[1].Object.(*securityv1.PeerAuthentication)
	if !ok || web.Spec.GetPortLevelMtls()[8080].GetMode().String() != "PERMISSIVE" || web.Spec.GetSelector().GetMatchLabels()["app"] != "web" {
		t.Errorf("PeerAuthentication decoded as %T %v", result.Objects[1].Object, web)
	}
	policy, ok := result.Objects[2].Object.(*securityv1.AuthorizationPolicy)
	if !ok || policy.Spec.GetAction().String() != "DENY" || policy.Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths()[0] != "/admin/*" {
		t.Errorf("AuthorizationPolicy decoded as %T %v", result.Objects[2].Object, policy)
	}
	jwt, ok := result.Objects[3].Object.(*securityv1.RequestAuthentication)
	if !ok || jwt.Spec.GetJwtRules()[0].GetFromHeaders()[0].GetPrefix() != "Bearer " {
		t.Errorf("RequestAuthentication decoded as %T %v", result.Objects[3].Object, jwt)
	}
	if got := result.Objects[2].LineOf("spec.rules[0].to[0].operation.paths[0]"); got != 30 {
		t.Errorf("LineOf(paths[0]) = %d, want 30", got)
	}
	if got := result.Objects[1].LineOf("spec.portLevelMtls[8080].mode"); got != 17 {
		t.Errorf("LineOf(portLevelMtls[8080].mode) = %d, want 17", got)
	}
}

func TestLoadBytesKeepsObjectsWithUnknownFieldsForAnalysis(t *testing.T) {
	// A typo in one field must not make the object vanish: other objects refer to it, and
	// reporting them as dangling references would bury the real problem.
	result := LoadBytes("in.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: edge
spec:
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
    tsl: {}
`), Options{})
	if len(result.Problems) != 1 || result.Problems[0].Field != "spec.servers[0].tsl" {
		t.Fatalf("problems: %+v", result.Problems)
	}
	if len(result.Objects) != 1 || result.Objects[0].Ref() != "default/edge" {
		t.Fatalf("objects: %+v", result.Objects)
	}
}

func TestLoadBytesDropsOnlyTheBadValues(t *testing.T) {
	result := LoadBytes("in.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: "80"
    - destination: {host: reviews, subset: v2}
      weight: 20
`), Options{})
	if len(result.Problems) != 1 || result.Problems[0].Field != "spec.http[0].route[0].weight" {
		t.Fatalf("problems: %+v", result.Problems)
	}
	if len(result.Objects) != 1 {
		t.Fatalf("the object was dropped: %+v", result.Objects)
	}
	route := result.Objects[0].Object.(*networkingv1.VirtualService).Spec.Http[0].Route
	if len(route) != 2 || route[0].Destination.Subset != "v1" || route[0].Weight != 0 || route[1].Weight != 20 {
		t.Errorf("route = %v, want both destinations with the bad weight left out", route)
	}
}

func TestLoadBytesHandlesLeadingSeparatorAndCRLF(t *testing.T) {
	input := "---\r\napiVersion: v1\r\nkind: Namespace\r\nmetadata:\r\n  name: shop\r\n---\r\n" +
		"apiVersion: v1\r\nkind: Service\r\nmetadata:\r\n  name: cart\r\n  namespace: shop\r\n"
	result := LoadBytes("crlf.yaml", []byte(input), Options{})
	if len(result.Problems) != 0 || len(result.Objects) != 2 {
		t.Fatalf("objects %d, problems %+v", len(result.Objects), result.Problems)
	}
	if got := []int{result.Objects[0].Source.Line, result.Objects[1].Source.Line}; got[0] != 2 || got[1] != 7 {
		t.Errorf("lines = %v, want [2 7]", got)
	}
	if got := result.Objects[0].Ref(); got != "shop" {
		t.Errorf("Namespace ref = %q, want cluster-scoped \"shop\"", got)
	}
}

func TestLoadBytesParseProblemsUseFileLines(t *testing.T) {
	tests := []struct {
		name     string
		yaml     string
		wantLine int
		contains string
	}{
		{
			name: "bad indentation in the second document",
			yaml: `apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: cart
 spec: {}
`,
			// The parser blames the line before the mis-indented one; what matters is that the
			// number counts from the start of the file, not of the second document (4).
			wantLine: 9,
			contains: "line 9",
		},
		{
			name: "unclosed list",
			yaml: `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews
  http: []
`,
			wantLine: 6,
			contains: "line 6: did not find expected ',' or ']'",
		},
		{
			name: "key written twice",
			yaml: `apiVersion: v1
kind: Service
metadata:
  name: cart
  name: basket
`,
			wantLine: 5,
			contains: `line 5: key "name" already set`,
		},
		{
			name:     "not an object",
			yaml:     "- just\n- a list\n",
			wantLine: 1,
			contains: "must be an object",
		},
		{
			name:     "no kind",
			yaml:     "apiVersion: v1\nmetadata:\n  name: x\n",
			wantLine: 1,
			contains: "apiVersion and kind",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			result := LoadBytes("in.yaml", []byte(tt.yaml), Options{})
			if len(result.Problems) != 1 {
				t.Fatalf("want one problem, got %+v", result.Problems)
			}
			got := result.Problems[0]
			if got.Reason != ReasonParse || got.Source.Line != tt.wantLine || !strings.Contains(got.Message, tt.contains) {
				t.Errorf("got reason %d at line %d: %q; want parse problem at line %d containing %q",
					got.Reason, got.Source.Line, got.Message, tt.wantLine, tt.contains)
			}
		})
	}
}

func TestLoadBytesKeepsUnknownKindsAsWarnings(t *testing.T) {
	result := LoadBytes("in.yaml", []byte(`apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata:
  name: default
  namespace: istio-system
spec:
  tracing:
  - randomSamplingPercentage: 10
`), Options{})
	if len(result.Problems) != 1 || result.Problems[0].Reason != ReasonUnknownKind ||
		result.Problems[0].Message != "telemetry.istio.io/v1 Telemetry is not checked" {
		t.Fatalf("problems: %+v", result.Problems)
	}
	if len(result.Objects) != 1 {
		t.Fatalf("objects: %+v", result.Objects)
	}
	if _, ok := result.Objects[0].Object.(*unstructured.Unstructured); !ok || result.Objects[0].Ref() != "istio-system/default" {
		t.Errorf("unknown kind kept as %T %s", result.Objects[0].Object, result.Objects[0].Ref())
	}
}

func TestLoadBytesReadsListItems(t *testing.T) {
	result := LoadBytes("list.yaml", []byte(`apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Service
  metadata:
    name: ratings
- apiVersion: networking.istio.io/v1
  kind: DestinationRule
  metadata:
    name: ratings
  spec:
    host: ratings
    subsets:
    - name: v1
      labelz: {}
`), Options{DefaultNamespace: "bookinfo"})
	if len(result.Objects) != 2 {
		t.Fatalf("objects: %+v", result.Objects)
	}
	if got := result.Objects[1].Source.Line; got != 8 {
		t.Errorf("second item at line %d, want 8", got)
	}
	if got := result.Objects[1].Ref(); got != "bookinfo/ratings" {
		t.Errorf("default namespace not applied: %s", got)
	}
	if got := result.Objects[1].LineOf("spec.subsets[0].name"); got != 15 {
		t.Errorf("LineOf inside a list item = %d, want 15", got)
	}
	if len(result.Problems) != 1 || result.Problems[0].Field != "spec.subsets[0].labelz" || result.Problems[0].Source.Line != 16 {
		t.Errorf("problems: %+v", result.Problems)
	}
}

func TestLoadWalksDirectoriesInOrder(t *testing.T) {
	result, err := Load([]string{filepath.Join("testdata", "tree")}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(result.Problems) != 0 {
		t.Fatalf("problems: %+v", result.Problems)
	}
	var got []string
	for _, object := range result.Objects {
		got = append(got, object.Source.String()+" "+object.Kind+" "+object.Ref())
	}
	want := []string{
		filepath.Join("testdata", "tree", "a-service.yml") + ":1 Service shop/cart",
		filepath.Join("testdata", "tree", "b-gateway.yaml") + ":1 Gateway ingress/edge",
		filepath.Join("testdata", "tree", "nested", "deeper", "rule.json") + ":1 DestinationRule shop/cart",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("loaded:\n%s\nwant (no .txt, no hidden directory):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if got := result.Objects[2].LineOf("spec.subsets[0].labels[track]"); got != 7 {
		t.Errorf("JSON field line = %d, want 7", got)
	}
}

func TestLoadFailsOnMissingPaths(t *testing.T) {
	if _, err := Load([]string{filepath.Join("testdata", "does-not-exist.yaml")}, Options{}); !os.IsNotExist(err) {
		t.Errorf("err = %v, want a not-exist error", err)
	}
}

func TestSplitFieldPath(t *testing.T) {
	got := splitFieldPath("spec.subsets[0].labels[app.kubernetes.io/name].x")
	want := []string{"spec", "subsets", "0", "labels", "app.kubernetes.io/name", "x"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("got %q, want %q", got, want)
	}
}
