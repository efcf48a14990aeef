package status

import (
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshplane/meshplane/internal/istio/config"
	"github.com/meshplane/meshplane/internal/istio/validation"
	"github.com/meshplane/meshplane/internal/model"
)

// ConditionReconciled is the condition meshd sets on every Istio object it serves: True when the
// object is served as written, False when pieces of it are skipped (see validationMessages).
const ConditionReconciled = "Reconciled"

// Reasons of the Reconciled condition when it is True; when False, the reason is the code of the
// first error, such as MP1001.
const (
	ReasonAccepted             = "Accepted"
	ReasonAcceptedWithWarnings = "AcceptedWithWarnings"
)

// Levels of validationMessages, as Istio's AnalysisMessageBase names them.
const (
	levelError   = "ERROR"
	levelWarning = "WARNING"
)

// objectKey identifies an Istio object.
type objectKey struct {
	Kind, Namespace, Name string
}

func (k objectKey) String() string { return k.Kind + " " + k.Namespace + "/" + k.Name }

// report is the status meshd means an object to carry, without timestamps. Every field takes part
// in the comparison with what the object already has.
type report struct {
	ObservedGeneration int64     `json:"observedGeneration"`
	Reconciled         condition `json:"reconciled"`
	Messages           []message `json:"messages"`
}

type condition struct {
	Status             string `json:"status"`
	Reason             string `json:"reason"`
	Message            string `json:"message"`
	ObservedGeneration int64  `json:"observedGeneration"`
}

// message is one validationMessage.
type message struct {
	Code        string `json:"code"`
	Name        string `json:"name"`
	Level       string `json:"level"`
	Description string `json:"description"`
}

// hash identifies a report's content, so that what was written can be remembered cheaply.
func (r *report) hash() [sha256.Size]byte {
	data, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("encoding a status report: %v", err)) // plain strings and numbers always encode
	}
	return sha256.Sum256(data)
}

// wanted is what an object in the World should report.
type wanted struct {
	// creation tells an object from one deleted and created again under the same name.
	creation int64
	report   report
}

// wantedReports computes the report of every Istio object in the World from the analysis
// findings; findings about other objects are ignored.
func wantedReports(world *model.World, findings []validation.Finding) map[objectKey]*wanted {
	c := &world.Config
	out := make(map[objectKey]*wanted, len(c.VirtualServices)+len(c.DestinationRules)+len(c.Gateways)+len(c.ServiceEntries)+
		len(c.Sidecars)+len(c.PeerAuthentications)+len(c.AuthorizationPolicies)+len(c.RequestAuthentications))
	add := func(kind string, meta model.Meta) {
		out[objectKey{kind, meta.Namespace, meta.Name}] = &wanted{
			creation: meta.CreationUnix,
			report:   report{ObservedGeneration: meta.Generation},
		}
	}
	for _, o := range c.VirtualServices {
		add(config.KindVirtualService, o.Meta)
	}
	for _, o := range c.DestinationRules {
		add(config.KindDestinationRule, o.Meta)
	}
	for _, o := range c.Gateways {
		add(config.KindGateway, o.Meta)
	}
	for _, o := range c.ServiceEntries {
		add(config.KindServiceEntry, o.Meta)
	}
	for _, o := range c.Sidecars {
		add(config.KindSidecar, o.Meta)
	}
	for _, o := range c.PeerAuthentications {
		add(config.KindPeerAuthentication, o.Meta)
	}
	for _, o := range c.AuthorizationPolicies {
		add(config.KindAuthorizationPolicy, o.Meta)
	}
	for _, o := range c.RequestAuthentications {
		add(config.KindRequestAuthentication, o.Meta)
	}
	for _, f := range findings {
		if w := out[objectKey{f.Kind, f.Namespace, f.Name}]; w != nil {
			w.report.Messages = append(w.report.Messages, messageOf(f))
		}
	}
	for _, w := range out {
		w.report.Reconciled = reconciled(w.report.Messages, w.report.ObservedGeneration)
	}
	return out
}

func messageOf(f validation.Finding) message {
	level := levelWarning
	if f.Severity() == validation.Error {
		level = levelError
	}
	description := f.Message
	if f.Field != "" {
		description = f.Field + ": " + f.Message
	}
	return message{Code: f.Code.ID, Name: f.Code.Name, Level: level, Description: description}
}

// reconciled is the Reconciled condition for an object with these messages.
func reconciled(messages []message, generation int64) condition {
	errors := slices.DeleteFunc(slices.Clone(messages), func(m message) bool { return m.Level != levelError })
	warnings := len(messages) - len(errors)
	switch {
	case len(errors) > 0:
		return condition{
			Status: string(metav1.ConditionFalse),
			Reason: errors[0].Code,
			Message: fmt.Sprintf("Served with the offending pieces skipped: %s in validationMessages; first: %s",
				counts(len(errors), warnings), errors[0].Description),
			ObservedGeneration: generation,
		}
	case warnings > 0:
		return condition{
			Status:             string(metav1.ConditionTrue),
			Reason:             ReasonAcceptedWithWarnings,
			Message:            fmt.Sprintf("Served as written, with %s in validationMessages", counts(0, warnings)),
			ObservedGeneration: generation,
		}
	default:
		return condition{
			Status:             string(metav1.ConditionTrue),
			Reason:             ReasonAccepted,
			Message:            "Served as written",
			ObservedGeneration: generation,
		}
	}
}

// counts renders "1 error", "2 warnings", "1 error and 2 warnings".
func counts(errors, warnings int) string {
	var parts []string
	for _, c := range []struct {
		n    int
		noun string
	}{{errors, "error"}, {warnings, "warning"}} {
		switch {
		case c.n == 1:
			parts = append(parts, "1 "+c.noun)
		case c.n > 1:
			parts = append(parts, fmt.Sprintf("%d %ss", c.n, c.noun))
		}
	}
	return strings.Join(parts, " and ")
}

// The status as written on the objects, in the shape of Istio's IstioStatus (conditions,
// validationMessages, observedGeneration), so that Istio's client types and tooling read it. Istio's
// AnalysisMessageBase has no description; it is an extra field its decoder skips.
type wireStatus struct {
	ObservedGeneration int64           `json:"observedGeneration"`
	Conditions         []wireCondition `json:"conditions"`
	// No omitempty: in a merge patch, null removes the messages an object no longer has.
	ValidationMessages []wireMessage `json:"validationMessages"`
}

type wireCondition struct {
	Type               string      `json:"type"`
	Status             string      `json:"status"`
	Reason             string      `json:"reason,omitempty"`
	Message            string      `json:"message,omitempty"`
	LastTransitionTime metav1.Time `json:"lastTransitionTime"`
	ObservedGeneration int64       `json:"observedGeneration,omitempty"`
}

type wireMessage struct {
	Type struct {
		Code string `json:"code"`
		Name string `json:"name"`
	} `json:"type"`
	Level       string `json:"level"`
	Description string `json:"description,omitempty"`
}

// statusPatch is the JSON merge patch of the status subresource that makes an object carry r,
// with since as the condition's lastTransitionTime.
func statusPatch(r *report, since metav1.Time) []byte {
	status := wireStatus{
		ObservedGeneration: r.ObservedGeneration,
		Conditions: []wireCondition{{
			Type:               ConditionReconciled,
			Status:             r.Reconciled.Status,
			Reason:             r.Reconciled.Reason,
			Message:            r.Reconciled.Message,
			LastTransitionTime: since,
			ObservedGeneration: r.Reconciled.ObservedGeneration,
		}},
	}
	for _, m := range r.Messages {
		var w wireMessage
		w.Type.Code, w.Type.Name, w.Level, w.Description = m.Code, m.Name, m.Level, m.Description
		status.ValidationMessages = append(status.ValidationMessages, w)
	}
	data, err := json.Marshal(map[string]any{"status": status})
	if err != nil {
		panic(fmt.Sprintf("encoding a status patch: %v", err))
	}
	return data
}

// reportOf reads what an object's status says in the terms of a report, and the Reconciled
// condition's lastTransitionTime. A status in another shape (written by someone else) reads as
// the empty report, which differs from every report meshd writes.
func reportOf(object *unstructured.Unstructured) (report, metav1.Time) {
	raw, ok := object.Object["status"]
	if !ok {
		return report{}, metav1.Time{}
	}
	data, err := json.Marshal(raw)
	if err != nil {
		return report{}, metav1.Time{}
	}
	var status wireStatus
	if err := json.Unmarshal(data, &status); err != nil {
		return report{}, metav1.Time{}
	}
	r := report{ObservedGeneration: status.ObservedGeneration}
	var since metav1.Time
	for _, c := range status.Conditions {
		if c.Type == ConditionReconciled {
			r.Reconciled = condition{Status: c.Status, Reason: c.Reason, Message: c.Message, ObservedGeneration: c.ObservedGeneration}
			since = c.LastTransitionTime
		}
	}
	for _, w := range status.ValidationMessages {
		r.Messages = append(r.Messages, message{Code: w.Type.Code, Name: w.Type.Name, Level: w.Level, Description: w.Description})
	}
	return r, since
}
