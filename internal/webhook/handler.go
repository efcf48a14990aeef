// Package webhook serves meshd's admission webhooks: /validate checks Istio configuration
// (networking.istio.io VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar;
// security.istio.io PeerAuthentication, AuthorizationPolicy, RequestAuthentication) when it is
// created or updated, and refuses it with one line per error, each with its field path and
// finding code, as `meshctl analyze` would report it. The package also serves the handler over
// TLS with a certificate from files or a self-signed one, and keeps a webhook configuration's
// caBundle trusting that self-signed CA.
//
// Objects are read with the config loader, so every apiVersion Istio serves is accepted and
// the spec is checked strictly (unknown fields, wrong types, two members of a one-of), then
// checked on their own by the validation package: errors deny, warnings are returned with the
// admission. References to other objects (a subset no DestinationRule defines, a Gateway that
// does not exist) are not checked here: the referenced object may well be applied next.
package webhook

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/meshplane/meshplane/internal/istio/config"
	"github.com/meshplane/meshplane/internal/istio/validation"
)

// ValidatePath is where the validating webhook is served.
const ValidatePath = "/validate"

// validatedKinds are the Istio kinds the config loader decodes, with their group and resource
// name (what a webhook configuration's rules list).
var validatedKinds = map[string]schema.GroupResource{
	config.KindVirtualService:  {Group: config.IstioNetworkingGroup, Resource: "virtualservices"},
	config.KindDestinationRule: {Group: config.IstioNetworkingGroup, Resource: "destinationrules"},
	config.KindGateway:         {Group: config.IstioNetworkingGroup, Resource: "gateways"},
	config.KindServiceEntry:    {Group: config.IstioNetworkingGroup, Resource: "serviceentries"},
	config.KindSidecar:         {Group: config.IstioNetworkingGroup, Resource: "sidecars"},

	config.KindPeerAuthentication:    {Group: config.IstioSecurityGroup, Resource: "peerauthentications"},
	config.KindAuthorizationPolicy:   {Group: config.IstioSecurityGroup, Resource: "authorizationpolicies"},
	config.KindRequestAuthentication: {Group: config.IstioSecurityGroup, Resource: "requestauthentications"},
}

// ValidatedResources returns the resources /validate checks, by API group, each list sorted;
// every served version of them is checked. Reviews of anything else are admitted unchecked,
// so a webhook configuration sending more only costs round trips.
func ValidatedResources() map[string][]string {
	out := map[string][]string{}
	for _, gr := range validatedKinds {
		out[gr.Group] = append(out[gr.Group], gr.Resource)
	}
	for _, resources := range out {
		slices.Sort(resources)
	}
	return out
}

// maxReviewBytes bounds a request body. The API server sends the object and, for updates, the
// old object; etcd's default limit is 1.5 MiB per object.
const maxReviewBytes = 8 << 20

// Results of a review, the values of the result label of meshd_webhook_validation_reviews_total.
const (
	resultAllowed   = "allowed"   // validated, nothing found
	resultWarned    = "warned"    // validated, admitted with warnings
	resultDenied    = "denied"    // validated, refused
	resultSkipped   = "skipped"   // admitted without validation: DELETE, CONNECT, other kinds, objects being deleted
	resultMalformed = "malformed" // not an AdmissionReview this handler can answer; HTTP 400
)

// otherKind is the kind label of reviews of kinds not validated, and of malformed ones: the
// label takes only known values, whatever a client sends.
const otherKind = "other"

// HandlerOptions configure NewHandler.
type HandlerOptions struct {
	// Registry gets the handler's metrics; none are registered when nil.
	Registry prometheus.Registerer
	// Logger; discarded when unset.
	Logger logr.Logger
}

type handler struct {
	log     logr.Logger
	reviews *prometheus.CounterVec
}

// NewHandler returns the webhook handler: POST /validate answers an admission.k8s.io/v1
// AdmissionReview. Metrics (registered on opts.Registry):
//
//   - meshd_webhook_validation_reviews_total{kind,result}: reviews answered, by kind
//     (VirtualService, ..., or "other") and result (allowed, warned, denied, skipped,
//     malformed).
func NewHandler(opts HandlerOptions) (http.Handler, error) {
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	h := &handler{
		log: log,
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_webhook_validation_reviews_total",
			Help: "Admission reviews answered by the validating webhook, by kind and result " +
				"(allowed, warned, denied, skipped: admitted without validation, malformed: HTTP 400).",
		}, []string{"kind", "result"}),
	}
	for kind := range validatedKinds {
		for _, result := range []string{resultAllowed, resultWarned, resultDenied, resultSkipped} {
			h.reviews.WithLabelValues(kind, result)
		}
	}
	if opts.Registry != nil {
		if err := opts.Registry.Register(h.reviews); err != nil {
			return nil, fmt.Errorf("registering the webhook metrics: %w", err)
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+ValidatePath, h.serveValidate)
	return mux, nil
}

func (h *handler) serveValidate(w http.ResponseWriter, r *http.Request) {
	review, err := readReview(w, r)
	var response *admissionv1.AdmissionResponse
	var result string
	if err == nil {
		response, result, err = h.validate(review.Request)
	}
	if err != nil {
		h.reviews.WithLabelValues(otherKind, resultMalformed).Inc()
		h.log.V(1).Info("Refused a malformed admission review", "error", err.Error(), "remote", r.RemoteAddr)
		http.Error(w, "malformed AdmissionReview: "+err.Error(), http.StatusBadRequest)
		return
	}
	response.UID = review.Request.UID
	h.reviews.WithLabelValues(kindLabel(review.Request.Kind), result).Inc()
	writeReview(w, &admissionv1.AdmissionReview{TypeMeta: review.TypeMeta, Response: response})
}

// isValidated reports whether objects of kind are validated.
func isValidated(kind metav1.GroupVersionKind) bool {
	gr, ok := validatedKinds[kind.Kind]
	return ok && kind.Group == gr.Group
}

func kindLabel(kind metav1.GroupVersionKind) string {
	if isValidated(kind) {
		return kind.Kind
	}
	return otherKind
}

// readReview decodes an admission.k8s.io/v1 AdmissionReview with a request.
func readReview(w http.ResponseWriter, r *http.Request) (*admissionv1.AdmissionReview, error) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxReviewBytes)).Decode(&review); err != nil {
		return nil, fmt.Errorf("decoding the request body: %w", err)
	}
	if gvk := review.GroupVersionKind(); gvk != admissionv1.SchemeGroupVersion.WithKind("AdmissionReview") {
		return nil, fmt.Errorf("got apiVersion %q kind %q, want %s AdmissionReview", review.APIVersion, review.Kind, admissionv1.SchemeGroupVersion)
	}
	switch {
	case review.Request == nil:
		return nil, errors.New("no request")
	case review.Request.UID == "":
		return nil, errors.New("request.uid is empty")
	}
	return &review, nil
}

func writeReview(w http.ResponseWriter, review *admissionv1.AdmissionReview) {
	body, err := json.Marshal(review)
	if err != nil {
		http.Error(w, "encoding the response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// validate decides one request. The error is for requests that cannot be answered (HTTP 400).
func (h *handler) validate(req *admissionv1.AdmissionRequest) (*admissionv1.AdmissionResponse, string, error) {
	allowed := &admissionv1.AdmissionResponse{Allowed: true}
	if req.Operation != admissionv1.Create && req.Operation != admissionv1.Update {
		return allowed, resultSkipped, nil
	}
	if !isValidated(req.Kind) {
		return allowed, resultSkipped, nil
	}
	raw := req.Object.Raw
	if len(raw) == 0 {
		return nil, "", fmt.Errorf("%s of a %s without request.object", req.Operation, req.Kind.Kind)
	}
	beingDeleted, err := isBeingDeleted(raw)
	if err != nil {
		return nil, "", err
	}
	// Removing the last finalizer of an object that was stored before this webhook existed must
	// not be blocked by what is wrong with it.
	if req.Operation == admissionv1.Update && beingDeleted {
		return allowed, resultSkipped, nil
	}

	loaded := config.LoadBytes("", raw, config.Options{DefaultNamespace: req.Namespace})
	if len(loaded.Objects) == 0 && len(loaded.Problems) == 0 {
		return nil, "", errors.New("request.object is empty")
	}
	var errs []validation.Finding
	var warnings []string
	for _, finding := range ownFindings(loaded) {
		if finding.Severity() == validation.Error {
			errs = append(errs, finding)
		} else {
			warnings = append(warnings, describe(finding))
		}
	}
	if len(errs) > 0 {
		status := invalidStatus(req, errs)
		h.log.V(1).Info("Denied invalid Istio config", "operation", req.Operation, "message", status.Message)
		return &admissionv1.AdmissionResponse{Allowed: false, Result: status, Warnings: warnings}, resultDenied, nil
	}
	if len(warnings) > 0 {
		allowed.Warnings = warnings
		return allowed, resultWarned, nil
	}
	return allowed, resultAllowed, nil
}

func isBeingDeleted(raw []byte) (bool, error) {
	var object struct {
		Metadata struct {
			DeletionTimestamp *metav1.Time `json:"deletionTimestamp"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &object); err != nil {
		return false, fmt.Errorf("request.object is not a JSON object: %w", err)
	}
	return object.Metadata.DeletionTimestamp != nil, nil
}

// ownFindings returns what is wrong with the loaded object on its own, with finding codes:
// validation.Check reports the loader's problems and each object's own validation (the errors
// and warnings of validation.ValidateWithWarnings, which carries no codes) and adds Analyze's
// findings about references to objects not in the input. A webhook sees one object, so those
// are taken out again.
func ownFindings(loaded *config.Result) []validation.Finding {
	crossObject := map[validation.Finding]int{}
	for _, finding := range validation.Analyze(loaded.Objects) {
		crossObject[finding]++
	}
	var own []validation.Finding
	for _, finding := range validation.Check(loaded) {
		if crossObject[finding] > 0 {
			crossObject[finding]--
			continue
		}
		own = append(own, finding)
	}
	return own
}

// describe renders a finding as "<field path>: <message> (<code>)".
func describe(finding validation.Finding) string {
	text := finding.Message + " (" + finding.Code.String() + ")"
	if finding.Field == "" {
		return text
	}
	return finding.Field + ": " + text
}

// invalidStatus is the refusal: 422 Invalid, as the API server's own validation answers, so
// clients see the same kind of error. The message lists every error; the causes carry each
// field for clients that read them.
func invalidStatus(req *admissionv1.AdmissionRequest, errs []validation.Finding) *metav1.Status {
	lines := make([]string, 0, len(errs))
	causes := make([]metav1.StatusCause, 0, len(errs))
	for _, finding := range errs {
		lines = append(lines, describe(finding))
		causes = append(causes, metav1.StatusCause{
			Type:    metav1.CauseTypeFieldValueInvalid,
			Field:   finding.Field,
			Message: finding.Message + " (" + finding.Code.String() + ")",
		})
	}
	ref := req.Name
	if req.Namespace != "" {
		ref = req.Namespace + "/" + req.Name
	}
	return &metav1.Status{
		Status:  metav1.StatusFailure,
		Code:    http.StatusUnprocessableEntity,
		Reason:  metav1.StatusReasonInvalid,
		Message: fmt.Sprintf("%s %s is invalid: %s", req.Kind.Kind, ref, strings.Join(lines, "; ")),
		Details: &metav1.StatusDetails{
			Name:   req.Name,
			Group:  req.Kind.Group,
			Kind:   req.Kind.Kind,
			Causes: causes,
		},
	}
}
