package webhook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/istio/config"
	"github.com/meshplane/meshplane/internal/istio/validation"
)

// Objects shared by the unit and API server tests.
const (
	// invalidVirtualService has a negative weight and a regex RE2 refuses.
	invalidVirtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        regex: "^/reviews/(\\d+"
    route:
    - destination: {host: reviews, subset: v1}
      weight: -10
    - destination: {host: reviews, subset: v2}
      weight: 110
`
	// warnedVirtualService splits traffic by weights that add up to 80: Istio admits it.
	warnedVirtualService = `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 50
    - destination: {host: reviews, subset: v2}
      weight: 30
`
	// bookinfoVirtualService is the request-routing task's reviews routing in v1alpha3, with
	// subsets no DestinationRule in the request defines: references are not the webhook's
	// business.
	bookinfoVirtualService = `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: reviews
  namespace: bookinfo
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
    timeout: 10s
    retries:
      attempts: 3
      perTryTimeout: 2s
`
)

// Security objects shared by the unit and API server tests.
const (
	// invalidAuthorizationPolicy is CUSTOM without a provider, with a condition key Istio does
	// not know.
	invalidAuthorizationPolicy = `apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ext-authz
  namespace: bookinfo
spec:
  action: CUSTOM
  rules:
  - when:
    - key: request.header[x-user]
      values: [admin]
`
	// allowNothingPolicy is Istio's allow-nothing policy: admitted, with a warning.
	allowNothingPolicy = `apiVersion: security.istio.io/v1beta1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: bookinfo
spec: {}
`
	// strictPeerAuthentication is namespace-wide STRICT mTLS, in v1beta1.
	strictPeerAuthentication = `apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata:
  name: default
  namespace: bookinfo
spec:
  mtls:
    mode: STRICT
`
)

// The messages the invalid AuthorizationPolicy must be denied with, and the allow-nothing
// policy's warning.
const (
	wantProviderError  = "spec.provider.name: a CUSTOM policy needs the name of the extension provider"
	wantConditionError = "spec.rules[0].when[0].key: unknown key request.header[x-user]"
	wantAllowNothing   = "spec.rules: an ALLOW policy without rules matches no request"
)

// The messages the invalid VirtualService must be denied with.
const (
	wantWeightError = "spec.http[0].route[0].weight: weight -10 is negative; weights are 0 or more (MP0104 InvalidRouteWeights)"
	wantRegexError  = `spec.http[0].match[0].uri.regex: invalid RE2 regex "^/reviews/(\\d+": missing closing ): ` +
		"`^/reviews/(\\d+` (MP0105 InvalidRegex)"
	wantWeightWarning = "spec.http[0].route: the weights of the 2 destinations add up to 80, not 100"
)

func newTestHandler(t *testing.T) (http.Handler, *prometheus.Registry) {
	t.Helper()
	registry := prometheus.NewRegistry()
	h, err := NewHandler(HandlerOptions{Registry: registry})
	if err != nil {
		t.Fatal(err)
	}
	return h, registry
}

// request builds an AdmissionRequest for an object written as YAML (empty for none).
func request(t *testing.T, operation admissionv1.Operation, object, oldObject string) *admissionv1.AdmissionRequest {
	t.Helper()
	req := &admissionv1.AdmissionRequest{UID: types.UID("uid-" + string(operation)), Operation: operation}
	for i, doc := range []string{object, oldObject} {
		if doc == "" {
			continue
		}
		raw, err := yaml.YAMLToJSON([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		var meta struct {
			APIVersion string            `json:"apiVersion"`
			Kind       string            `json:"kind"`
			Metadata   metav1.ObjectMeta `json:"metadata"`
		}
		if err := json.Unmarshal(raw, &meta); err != nil {
			t.Fatal(err)
		}
		group, version, _ := strings.Cut(meta.APIVersion, "/")
		req.Kind = metav1.GroupVersionKind{Group: group, Version: version, Kind: meta.Kind}
		req.Name, req.Namespace = meta.Metadata.Name, meta.Metadata.Namespace
		if i == 0 {
			req.Object = runtime.RawExtension{Raw: raw}
		} else {
			req.OldObject = runtime.RawExtension{Raw: raw}
		}
	}
	return req
}

func reviewBody(t *testing.T, req *admissionv1.AdmissionRequest) []byte {
	t.Helper()
	body, err := json.Marshal(&admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  req,
	})
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func post(t *testing.T, h http.Handler, path string, body []byte) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// review sends req and returns the response, failing unless the answer is a 200 review of it.
func review(t *testing.T, h http.Handler, req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	t.Helper()
	w := post(t, h, ValidatePath, reviewBody(t, req))
	if w.Code != http.StatusOK {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	var got admissionv1.AdmissionReview
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.APIVersion != "admission.k8s.io/v1" || got.Kind != "AdmissionReview" || got.Response == nil {
		t.Fatalf("answer is not an AdmissionReview with a response: %s", w.Body)
	}
	if got.Response.UID != req.UID {
		t.Errorf("response uid %q, want the request's %q", got.Response.UID, req.UID)
	}
	return got.Response
}

func reviews(t *testing.T, registry *prometheus.Registry, kind, result string) int {
	t.Helper()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, family := range families {
		if family.GetName() != "meshd_webhook_validation_reviews_total" {
			continue
		}
		for _, m := range family.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["kind"] == kind && labels["result"] == result {
				return int(m.GetCounter().GetValue())
			}
		}
	}
	return 0
}

func TestMalformedReviewsAreBadRequests(t *testing.T) {
	h, registry := newTestHandler(t)
	valid := request(t, admissionv1.Create, bookinfoVirtualService, "")
	noUID := *valid
	noUID.UID = ""
	noObject := *valid
	noObject.Object = runtime.RawExtension{}
	notAnObject := *valid
	notAnObject.Object = runtime.RawExtension{Raw: []byte(`["a list"]`)}

	for name, body := range map[string][]byte{
		"not JSON":                []byte("apiVersion: admission.k8s.io/v1\nkind: AdmissionReview\n"),
		"empty body":              nil,
		"v1beta1 review":          bytes.Replace(reviewBody(t, valid), []byte(`"admission.k8s.io/v1"`), []byte(`"admission.k8s.io/v1beta1"`), 1),
		"not an AdmissionReview":  bytes.Replace(reviewBody(t, valid), []byte(`"AdmissionReview"`), []byte(`"Pod"`), 1),
		"no request":              []byte(`{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}`),
		"no uid":                  reviewBody(t, &noUID),
		"CREATE without object":   reviewBody(t, &noObject),
		"object is not an object": reviewBody(t, &notAnObject),
	} {
		t.Run(name, func(t *testing.T) {
			w := post(t, h, ValidatePath, body)
			if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "malformed AdmissionReview") {
				t.Errorf("status %d %q, want 400 saying the review is malformed", w.Code, w.Body)
			}
		})
	}
	if got := reviews(t, registry, "other", "malformed"); got != 8 {
		t.Errorf("malformed reviews counted %d times, want 8", got)
	}

	if w := post(t, h, ValidatePath, bytes.Repeat([]byte(" "), maxReviewBytes+1)); w.Code != http.StatusBadRequest {
		t.Errorf("an oversized body: status %d, want 400", w.Code)
	}
	r := httptest.NewRequest(http.MethodGet, ValidatePath, nil)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: status %d, want 405", ValidatePath, w.Code)
	}
	if w := post(t, h, "/inject", reviewBody(t, valid)); w.Code != http.StatusNotFound {
		t.Errorf("POST /inject: status %d, want 404 (not served yet)", w.Code)
	}
}

func TestDeleteIsAllowedUnchecked(t *testing.T) {
	h, registry := newTestHandler(t)
	req := request(t, admissionv1.Delete, "", invalidVirtualService)
	resp := review(t, h, req)
	if !resp.Allowed || resp.Result != nil || len(resp.Warnings) > 0 {
		t.Errorf("DELETE of an invalid VirtualService: %+v, want allowed without a word", resp)
	}
	if got := reviews(t, registry, "VirtualService", "skipped"); got != 1 {
		t.Errorf("skipped VirtualService reviews = %d, want 1", got)
	}
}

func TestUnknownKindsAreAllowedUnchecked(t *testing.T) {
	h, registry := newTestHandler(t)
	for name, object := range map[string]string{
		// Telemetry is not decoded by the config loader.
		"Telemetry": `apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: bookinfo}
spec: {tracing: "not a list"}
`,
		"EnvoyFilter": `apiVersion: networking.istio.io/v1alpha3
kind: EnvoyFilter
metadata: {name: patch, namespace: bookinfo}
spec: {unknownField: true}
`,
		"a VirtualService of another group":       strings.Replace(invalidVirtualService, "networking.istio.io/v1", "example.com/v1", 1),
		"an AuthorizationPolicy of another group": strings.Replace(invalidAuthorizationPolicy, "security.istio.io/v1", "example.com/v1", 1),
	} {
		t.Run(name, func(t *testing.T) {
			resp := review(t, h, request(t, admissionv1.Create, object, ""))
			if !resp.Allowed || resp.Result != nil || len(resp.Warnings) > 0 {
				t.Errorf("got %+v, want allowed without a word", resp)
			}
		})
	}
	if got := reviews(t, registry, "other", "skipped"); got != 4 {
		t.Errorf("skipped reviews of other kinds = %d, want 4", got)
	}
	if got := reviews(t, registry, "VirtualService", "skipped"); got != 0 {
		t.Errorf("skipped VirtualService reviews = %d, want 0: the one of another group is another kind", got)
	}
}

func TestInvalidObjectIsDeniedWithEveryError(t *testing.T) {
	h, registry := newTestHandler(t)
	for _, operation := range []admissionv1.Operation{admissionv1.Create, admissionv1.Update} {
		resp := review(t, h, request(t, operation, invalidVirtualService, bookinfoVirtualService))
		if resp.Allowed || resp.Result == nil {
			t.Fatalf("%s: %+v, want denied with a status", operation, resp)
		}
		status := resp.Result
		// Findings come in code order (the JSON object is one line, so their lines are equal).
		wantMessage := "VirtualService bookinfo/reviews is invalid: " + wantWeightError + "; " + wantRegexError
		if status.Message != wantMessage {
			t.Errorf("%s: message\n  %q\nwant\n  %q", operation, status.Message, wantMessage)
		}
		if status.Code != http.StatusUnprocessableEntity || status.Reason != metav1.StatusReasonInvalid {
			t.Errorf("%s: code %d reason %q, want 422 Invalid", operation, status.Code, status.Reason)
		}
		var fields []string
		for _, cause := range status.Details.Causes {
			fields = append(fields, cause.Field)
		}
		if want := []string{"spec.http[0].route[0].weight", "spec.http[0].match[0].uri.regex"}; !slices.Equal(fields, want) {
			t.Errorf("%s: causes for %q, want %q", operation, fields, want)
		}
		if status.Details.Kind != "VirtualService" || status.Details.Group != "networking.istio.io" || status.Details.Name != "reviews" {
			t.Errorf("%s: details name the object as %+v", operation, status.Details)
		}
		// Weights of 100 in all but a negative one say nothing more about the sum.
		if len(resp.Warnings) != 0 {
			t.Errorf("%s: warnings %q, want none", operation, resp.Warnings)
		}
	}
	if got := reviews(t, registry, "VirtualService", "denied"); got != 2 {
		t.Errorf("denied VirtualService reviews = %d, want 2", got)
	}
}

// TestSchemaErrorsAreDenied: the loader's strict decoding applies to every served version,
// and its problems come with their paths.
func TestSchemaErrorsAreDenied(t *testing.T) {
	h, _ := newTestHandler(t)
	typo := strings.Replace(bookinfoVirtualService, "perTryTimeout", "perTryTimeOut", 1)
	resp := review(t, h, request(t, admissionv1.Create, typo, ""))
	if resp.Allowed {
		t.Fatal("a v1alpha3 VirtualService with perTryTimeOut was allowed")
	}
	want := regexp.MustCompile(`^VirtualService bookinfo/reviews is invalid: spec\.http\[1\]\.retries\.perTryTimeOut: [^;]*perTryTimeout[^;]* \(MP0002 SchemaError\)$`)
	if !want.MatchString(resp.Result.Message) {
		t.Errorf("message %q does not match %s", resp.Result.Message, want)
	}

	notServed := strings.Replace(bookinfoVirtualService, "v1alpha3", "v2", 1)
	if resp := review(t, h, request(t, admissionv1.Create, notServed, "")); resp.Allowed || !strings.Contains(resp.Result.Message, "apiVersion: networking.istio.io/v2 VirtualService is not served") {
		t.Errorf("networking.istio.io/v2: %+v, want denied naming the apiVersion", resp.Result)
	}
}

// TestSecurityKindsAreValidated: the security.istio.io kinds are checked in both served
// versions: errors deny, warnings come with the admission, the kind is its own metrics label.
func TestSecurityKindsAreValidated(t *testing.T) {
	h, registry := newTestHandler(t)
	for _, object := range []string{invalidAuthorizationPolicy, strings.Replace(invalidAuthorizationPolicy, "/v1\n", "/v1beta1\n", 1)} {
		req := request(t, admissionv1.Create, object, "")
		resp := review(t, h, req)
		if resp.Allowed || resp.Result == nil {
			t.Fatalf("%s %s: %+v, want denied", req.Kind.Version, req.Kind.Kind, resp)
		}
		message := resp.Result.Message
		if !strings.HasPrefix(message, "AuthorizationPolicy bookinfo/ext-authz is invalid: ") ||
			!strings.Contains(message, wantProviderError) || !strings.Contains(message, "(MP0102 MissingField)") ||
			!strings.Contains(message, wantConditionError) || !strings.Contains(message, "(MP0113 InvalidCondition)") {
			t.Errorf("%s: message %q", req.Kind.Version, message)
		}
		if resp.Result.Details.Group != "security.istio.io" || len(resp.Result.Details.Causes) != 2 {
			t.Errorf("%s: details %+v", req.Kind.Version, resp.Result.Details)
		}
	}
	if got := reviews(t, registry, "AuthorizationPolicy", "denied"); got != 2 {
		t.Errorf("denied AuthorizationPolicy reviews = %d, want 2", got)
	}

	resp := review(t, h, request(t, admissionv1.Create, allowNothingPolicy, ""))
	if !resp.Allowed || len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], wantAllowNothing) ||
		!strings.HasSuffix(resp.Warnings[0], "(MP0155 AllowNothingPolicy)") {
		t.Errorf("allow-nothing policy: %+v, want allowed with its warning", resp)
	}

	schema := strings.Replace(strictPeerAuthentication, "STRICT", "STRICTER", 1)
	if resp := review(t, h, request(t, admissionv1.Create, schema, "")); resp.Allowed ||
		!strings.Contains(resp.Result.Message, `spec.mtls.mode: unknown value "STRICTER"`) {
		t.Errorf("unknown mTLS mode: %+v, want denied", resp.Result)
	}
	notServed := strings.Replace(strictPeerAuthentication, "v1beta1", "v1alpha1", 1)
	if resp := review(t, h, request(t, admissionv1.Create, notServed, "")); resp.Allowed ||
		!strings.Contains(resp.Result.Message, "security.istio.io/v1alpha1 PeerAuthentication is not served") {
		t.Errorf("security.istio.io/v1alpha1: %+v, want denied naming the apiVersion", resp.Result)
	}
}

func TestWarningsAreReturnedWithTheAdmission(t *testing.T) {
	h, registry := newTestHandler(t)
	resp := review(t, h, request(t, admissionv1.Create, warnedVirtualService, ""))
	if !resp.Allowed || resp.Result != nil {
		t.Fatalf("%+v, want allowed", resp)
	}
	if len(resp.Warnings) != 1 || !strings.HasPrefix(resp.Warnings[0], wantWeightWarning) || !strings.HasSuffix(resp.Warnings[0], "(MP0151 RouteWeightsNotHundred)") {
		t.Errorf("warnings %q, want one starting %q and ending with its code", resp.Warnings, wantWeightWarning)
	}
	if got := reviews(t, registry, "VirtualService", "warned"); got != 1 {
		t.Errorf("warned VirtualService reviews = %d, want 1", got)
	}
}

// TestValidObjectsAreAllowed: valid objects of every validated kind, in every served version,
// are allowed without warnings, including references to objects the webhook does not see.
func TestValidObjectsAreAllowed(t *testing.T) {
	h, registry := newTestHandler(t)
	objects := []string{
		bookinfoVirtualService,
		strings.Replace(bookinfoVirtualService, "v1alpha3", "v1beta1", 1),
		strings.Replace(bookinfoVirtualService, "v1alpha3", "v1", 1),
		`apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
`,
		`apiVersion: networking.istio.io/v1alpha3
kind: Gateway
metadata: {name: bookinfo-gateway, namespace: bookinfo}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["*"]
`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: httpbin-ext, namespace: bookinfo}
spec:
  hosts: [httpbin.org]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
  location: MESH_EXTERNAL
`,
		`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  egress:
  - hosts: ["./*", "istio-system/*"]
`,
		strictPeerAuthentication,
		strings.Replace(strictPeerAuthentication, "v1beta1", "v1", 1),
		`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: reviews-viewer, namespace: bookinfo}
spec:
  selector: {matchLabels: {app: reviews}}
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/bookinfo/sa/bookinfo-productpage"]}
    to:
    - operation: {methods: [GET]}
`,
		`apiVersion: security.istio.io/v1beta1
kind: RequestAuthentication
metadata: {name: jwt, namespace: bookinfo}
spec:
  jwtRules:
  - issuer: https://accounts.example.com
    jwksUri: https://accounts.example.com/.well-known/jwks.json
`,
	}
	for _, object := range objects {
		req := request(t, admissionv1.Create, object, "")
		if resp := review(t, h, req); !resp.Allowed || resp.Result != nil || len(resp.Warnings) > 0 {
			t.Errorf("%s %s: %+v, want allowed without a word", req.Kind.Version, req.Kind.Kind, resp)
		}
	}
	if got := reviews(t, registry, "VirtualService", "allowed"); got != 3 {
		t.Errorf("allowed VirtualService reviews = %d, want 3", got)
	}
	if got := reviews(t, registry, "PeerAuthentication", "allowed"); got != 2 {
		t.Errorf("allowed PeerAuthentication reviews = %d, want 2", got)
	}
}

func TestUpdateOfAnObjectBeingDeletedIsAllowed(t *testing.T) {
	h, _ := newTestHandler(t)
	terminating := strings.Replace(invalidVirtualService, "  namespace: bookinfo\n",
		"  namespace: bookinfo\n  deletionTimestamp: \"2026-01-02T03:04:05Z\"\n  finalizers: []\n", 1)
	if resp := review(t, h, request(t, admissionv1.Update, terminating, invalidVirtualService)); !resp.Allowed {
		t.Errorf("removing the finalizers of an invalid VirtualService being deleted was refused: %s", resp.Result.Message)
	}
	if resp := review(t, h, request(t, admissionv1.Update, invalidVirtualService, bookinfoVirtualService)); resp.Allowed {
		t.Error("an UPDATE that makes a VirtualService invalid was allowed")
	}
}

// TestDecisionsAreValidateWithWarnings holds the handler to validation.ValidateWithWarnings:
// for objects that load cleanly, it denies exactly the errors and returns exactly the
// warnings that ValidateWithWarnings reports, field by field and message by message.
func TestDecisionsAreValidateWithWarnings(t *testing.T) {
	h, _ := newTestHandler(t)
	objects := []string{
		invalidVirtualService,
		warnedVirtualService,
		bookinfoVirtualService,
		`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mixed, namespace: bookinfo}
spec:
  hosts: ["*foo.example.com"]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 60
    - destination: {host: reviews, subset: v2}
      weight: 60
    redirect: {uri: /elsewhere}
    timeout: 1500us
`,
		`apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: bookinfo}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v1, labels: {version: "not a valid label value!"}}
  trafficPolicy:
    outlierDetection: {maxEjectionPercent: 150}
`,
		`apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge, namespace: bookinfo}
spec:
  servers:
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*foo.example.com"]
`,
		`apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: bookinfo}
spec:
  hosts: [example.com]
  resolution: STATIC
  ports: [{number: 70000, name: http, protocol: HTTP}]
`,
		`apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: bookinfo}
spec:
  egress:
  - hosts: ["reviews"]
`,
		invalidAuthorizationPolicy,
		allowNothingPolicy,
		`apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: bookinfo}
spec:
  action: DENY
  rules:
  - from:
    - source: {ipBlocks: ["10.0.0.0/33"], namespaces: ["a*b"]}
    to:
    - operation: {methods: [DELETE], paths: ["/{**}/x/{*}"]}
`,
		`apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: bookinfo}
spec:
  selector: {}
  portLevelMtls: {"8080": {}}
`,
		`apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt, namespace: bookinfo}
spec:
  jwtRules:
  - jwksUri: keys.example.com/jwks
    jwks: '{"keys": []}'
    fromHeaders: [{name: "x jwt"}]
`,
	}
	denied, warned := 0, 0
	for _, object := range objects {
		loaded := config.LoadBytes("", []byte(object), config.Options{})
		if len(loaded.Problems) > 0 || len(loaded.Objects) != 1 {
			t.Fatalf("fixture does not load cleanly: %+v", loaded.Problems)
		}
		errs, warnings := validation.ValidateWithWarnings(loaded.Objects[0].Object)
		req := request(t, admissionv1.Create, object, "")
		resp := review(t, h, req)
		var gotErrs []string
		if resp.Result != nil {
			for _, cause := range resp.Result.Details.Causes {
				gotErrs = append(gotErrs, cause.Field+": "+withoutCode(t, cause.Message))
			}
		}
		var gotWarnings []string
		for _, warning := range resp.Warnings {
			gotWarnings = append(gotWarnings, withoutCode(t, warning))
		}
		if want := describeAll(errs); !sameElements(gotErrs, want) {
			t.Errorf("%s %s: errors\n  %q\nwant\n  %q", req.Kind.Kind, req.Name, gotErrs, want)
		}
		if want := describeAll(warnings); !sameElements(gotWarnings, want) {
			t.Errorf("%s %s: warnings\n  %q\nwant\n  %q", req.Kind.Kind, req.Name, gotWarnings, want)
		}
		if resp.Allowed != (len(errs) == 0) {
			t.Errorf("%s %s: allowed %v with %d errors", req.Kind.Kind, req.Name, resp.Allowed, len(errs))
		}
		if len(errs) > 0 {
			denied++
		}
		if len(warnings) > 0 {
			warned++
		}
	}
	// The fixtures must exercise both sides, or the comparison proves little.
	if denied < 9 || warned < 7 {
		t.Errorf("fixtures have %d objects with errors and %d with warnings, want at least 9 and 7", denied, warned)
	}
}

var codeSuffix = regexp.MustCompile(` \(MP\d{4} [A-Za-z]+\)$`)

func withoutCode(t *testing.T, message string) string {
	t.Helper()
	if !codeSuffix.MatchString(message) {
		t.Errorf("%q does not end with a finding code", message)
	}
	return codeSuffix.ReplaceAllString(message, "")
}

func describeAll(errs field.ErrorList) []string {
	var out []string
	for _, err := range errs {
		message := err.Detail
		if message == "" {
			message = err.ErrorBody()
		}
		out = append(out, err.Field+": "+message)
	}
	return out
}

func sameElements(a, b []string) bool {
	return slices.Equal(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func TestMetricsNeedARegistryOnlyOnce(t *testing.T) {
	registry := prometheus.NewRegistry()
	if _, err := NewHandler(HandlerOptions{Registry: registry}); err != nil {
		t.Fatal(err)
	}
	if _, err := NewHandler(HandlerOptions{Registry: registry}); err == nil {
		t.Error("a second handler registered its metrics on the same registry without an error")
	}
	h, err := NewHandler(HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if w := post(t, h, ValidatePath, reviewBody(t, request(t, admissionv1.Create, warnedVirtualService, ""))); w.Code != http.StatusOK {
		t.Errorf("a handler without a registry answered %d", w.Code)
	}
	families, err := registry.Gather()
	if err != nil || len(families) != 1 || families[0].GetName() != "meshd_webhook_validation_reviews_total" {
		t.Fatalf("registered %v (%v), want the reviews counter", families, err)
	}
	if n, want := len(families[0].GetMetric()), 4*len(validatedKinds); n != want || want != 32 {
		t.Errorf("%d series before any review, want %d: each of the 8 validated kinds with each result but malformed", n, want)
	}
}
