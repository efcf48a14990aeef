package status

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	metav1alpha1 "istio.io/api/meta/v1alpha1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshplane/meshplane/internal/istio/validation"
)

// TestWantedReports: an object with an error is Reconciled=False with the error's code as reason
// and says it is served with pieces skipped; one with only warnings is True with them listed;
// one without findings is True without messages; each carries its generation.
func TestWantedReports(t *testing.T) {
	world := shopWorld()
	findings := validation.Analyze(analysisInput(world))
	// A warning next to the error, and one on the DestinationRule alone.
	findings = append(findings,
		validation.Finding{Code: validation.CodeConflictingVirtualServiceHosts, Kind: "VirtualService", Namespace: "shop", Name: "web-broken",
			Field: "spec.hosts[0]", Message: "also routed"},
		validation.Finding{Code: validation.CodeSubsetSelectsNoWorkloads, Kind: "DestinationRule", Namespace: "shop", Name: "web",
			Field: "spec.subsets[0].labels", Message: "no pods"},
		validation.Finding{Code: validation.CodeSubsetSelectsNoWorkloads, Kind: "DestinationRule", Namespace: "shop", Name: "gone",
			Message: "about an object not in the World"},
	)
	wants := wantedReports(world, findings)
	if len(wants) != 6 {
		t.Fatalf("%d reports, want one per Istio object (6)", len(wants))
	}

	broken := wants[objectKey{"VirtualService", "shop", "web-broken"}].report
	if broken.ObservedGeneration != 3 || broken.Reconciled.ObservedGeneration != 3 {
		t.Errorf("broken: generations %d/%d, want 3", broken.ObservedGeneration, broken.Reconciled.ObservedGeneration)
	}
	if len(broken.Messages) != 2 {
		t.Fatalf("broken: messages %+v, want the error and the warning", broken.Messages)
	}
	subset := broken.Messages[0]
	if subset.Code != "MP1001" || subset.Name != "ReferencedSubsetNotFound" || subset.Level != "ERROR" ||
		!strings.HasPrefix(subset.Description, `spec.http[0].route[0].destination.subset: subset "v9" is not defined`) {
		t.Errorf("broken: first message %+v", subset)
	}
	if broken.Messages[1].Level != "WARNING" || broken.Messages[1].Description != "spec.hosts[0]: also routed" {
		t.Errorf("broken: second message %+v", broken.Messages[1])
	}
	c := broken.Reconciled
	if c.Status != "False" || c.Reason != "MP1001" ||
		!strings.Contains(c.Message, "offending pieces skipped: 1 error and 1 warning") || !strings.Contains(c.Message, subset.Description) {
		t.Errorf("broken: condition %+v", c)
	}

	if rule := wants[objectKey{"DestinationRule", "shop", "web"}].report; rule.Reconciled.Status != "True" ||
		rule.Reconciled.Reason != ReasonAcceptedWithWarnings || len(rule.Messages) != 1 || rule.ObservedGeneration != 2 {
		t.Errorf("DestinationRule with a warning: %+v", rule)
	}
	good := wants[objectKey{"VirtualService", "shop", "web"}].report
	if good.Reconciled.Status != "True" || good.Reconciled.Reason != ReasonAccepted || good.Messages != nil {
		t.Errorf("good VirtualService: %+v", good)
	}
	if wants[objectKey{"VirtualService", "shop", "web"}].creation != 1700000000 {
		t.Error("the creation time is not kept, so a re-created object would be taken for the old one")
	}
}

// TestWantedReportsOfSecurityPolicies: every security policy gets a report; the ignored
// PeerAuthentication is served (its sibling applies), with the warning in its messages.
func TestWantedReportsOfSecurityPolicies(t *testing.T) {
	world := securityWorld()
	findings := validation.AnalyzeWith(analysisInput(world), validation.Options{RootNamespace: world.Mesh.RootNamespace})
	wants := wantedReports(world, findings)
	if len(wants) != 4 {
		t.Fatalf("%d reports, want one per policy (4)", len(wants))
	}
	ignored := wants[objectKey{"PeerAuthentication", "mesh-root", "permissive"}]
	if r := ignored.report; r.ObservedGeneration != 2 || r.Reconciled.Status != "True" || r.Reconciled.Reason != ReasonAcceptedWithWarnings ||
		len(r.Messages) != 1 || r.Messages[0].Code != "MP1006" || r.Messages[0].Name != "ConflictingPeerAuthentications" ||
		r.Messages[0].Level != "WARNING" {
		t.Errorf("ignored PeerAuthentication: %+v", r)
	}
	if ignored.creation != 1700000100 {
		t.Errorf("creation %d", ignored.creation)
	}
	for _, key := range []objectKey{
		{"PeerAuthentication", "mesh-root", "strict"},
		{"AuthorizationPolicy", "shop", "viewer"},
		{"RequestAuthentication", "shop", "jwt"},
	} {
		w := wants[key]
		if w == nil || w.report.Reconciled.Reason != ReasonAccepted || w.report.Messages != nil {
			t.Errorf("%s: %+v", key, w)
		}
	}
	if got := wants[objectKey{"AuthorizationPolicy", "shop", "viewer"}].report.Reconciled.ObservedGeneration; got != 4 {
		t.Errorf("AuthorizationPolicy condition generation %d, want 4", got)
	}
}

// applyMergePatch applies a status patch the way the API server does to an object's status: the
// status is replaced field by field, and null removes a field.
func applyMergePatch(t *testing.T, object *unstructured.Unstructured, patch []byte) {
	t.Helper()
	var body struct {
		Status map[string]any `json:"status"`
	}
	if err := json.Unmarshal(patch, &body); err != nil {
		t.Fatal(err)
	}
	status, _ := object.Object["status"].(map[string]any)
	if status == nil {
		status = map[string]any{}
	}
	for k, v := range body.Status {
		if v == nil {
			delete(status, k)
		} else {
			status[k] = v
		}
	}
	object.Object["status"] = status
}

// TestStatusRoundTrip: what statusPatch writes reads back as the same report (so it is not
// written again), Istio's own status type decodes it, and clearing the messages removes them.
func TestStatusRoundTrip(t *testing.T) {
	wants := wantedReports(shopWorld(), validation.Analyze(analysisInput(shopWorld())))
	broken := wants[objectKey{"VirtualService", "shop", "web-broken"}].report
	since := metav1.NewTime(time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC))

	object := &unstructured.Unstructured{Object: map[string]any{"status": map[string]any{"addresses": []any{"kept"}}}}
	applyMergePatch(t, object, statusPatch(&broken, since))
	got, gotSince := reportOf(object)
	if got.hash() != broken.hash() || !gotSince.Equal(&since) {
		t.Fatalf("read back %+v since %v, want %+v since %v", got, gotSince, broken, since)
	}
	if object.Object["status"].(map[string]any)["addresses"] == nil {
		t.Error("the patch removed a status field meshd does not own")
	}

	// Istio's client types (and istioctl) decode the status.
	data, err := json.Marshal(object.Object["status"])
	if err != nil {
		t.Fatal(err)
	}
	var istio metav1alpha1.IstioStatus
	if err := istio.UnmarshalJSON(data); err != nil {
		t.Fatalf("Istio's IstioStatus does not decode %s: %v", data, err)
	}
	if len(istio.ValidationMessages) != 1 || istio.ValidationMessages[0].GetType().GetCode() != "MP1001" ||
		istio.ValidationMessages[0].GetType().GetName() != "ReferencedSubsetNotFound" || istio.ValidationMessages[0].GetLevel().String() != "ERROR" {
		t.Errorf("Istio reads the messages as %v", istio.ValidationMessages)
	}
	if len(istio.Conditions) != 1 || istio.Conditions[0].Type != "Reconciled" || istio.Conditions[0].Status != "False" ||
		istio.Conditions[0].Reason != "MP1001" || istio.Conditions[0].GetLastTransitionTime().AsTime() != since.Time || istio.ObservedGeneration != 3 {
		t.Errorf("Istio reads the status as %v", &istio)
	}

	// Once fixed, the messages go and the condition turns True.
	fixed := wants[objectKey{"VirtualService", "shop", "web"}].report
	applyMergePatch(t, object, statusPatch(&fixed, since))
	if _, ok := object.Object["status"].(map[string]any)["validationMessages"]; ok {
		t.Errorf("validationMessages not removed: %v", object.Object["status"])
	}
	if got, _ := reportOf(object); got.hash() != fixed.hash() {
		t.Errorf("read back %+v, want %+v", got, fixed)
	}
}

// TestReportOfForeignStatus: a status meshd did not write (none, or Istio's, whose generation is a
// string) never equals a report meshd means to write, so it is replaced.
func TestReportOfForeignStatus(t *testing.T) {
	good := wantedReports(shopWorld(), nil)[objectKey{"VirtualService", "shop", "web"}].report
	for name, status := range map[string]any{
		"none":     nil,
		"istio's":  map[string]any{"observedGeneration": "1", "conditions": []any{map[string]any{"type": "Reconciled", "status": "True"}}},
		"stale":    map[string]any{"observedGeneration": int64(0)},
		"no cond.": map[string]any{"observedGeneration": int64(1)},
	} {
		object := &unstructured.Unstructured{Object: map[string]any{}}
		if status != nil {
			object.Object["status"] = status
		}
		if got, _ := reportOf(object); got.hash() == good.hash() {
			t.Errorf("%s: status %v reads as the report to write", name, status)
		}
	}
}

// TestDiffing: the condition's lastTransitionTime stays while its status does and moves when it
// flips; events go to messages the object did not have before, not again to those it had.
func TestDiffing(t *testing.T) {
	wants := wantedReports(shopWorld(), validation.Analyze(analysisInput(shopWorld())))
	broken := wants[objectKey{"VirtualService", "shop", "web-broken"}].report
	good := wants[objectKey{"VirtualService", "shop", "web"}].report
	earlier := metav1.NewTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	now := time.Date(2026, 2, 1, 0, 0, 0, 123456789, time.UTC)

	for _, tc := range []struct {
		name        string
		prev        recorded
		want        *report
		wantSince   time.Time
		wantAnnounc int
	}{
		{"first write", recorded{}, &broken, now.Truncate(time.Second), 1},
		{"still broken, new generation", recorded{reconciled: "False", since: earlier, messages: broken.Messages}, &broken, earlier.Time, 0},
		{"broken in another way", recorded{reconciled: "False", since: earlier, messages: []message{{Code: "MP1002"}}}, &broken, earlier.Time, 1},
		{"fixed", recorded{reconciled: "False", since: earlier, messages: broken.Messages}, &good, now.Truncate(time.Second), 0},
		{"good, new generation", recorded{reconciled: "True", since: earlier}, &good, earlier.Time, 0},
		{"condition without a time", recorded{reconciled: "True"}, &good, now.Truncate(time.Second), 0},
	} {
		if got := transitionTime(&tc.prev, tc.want, now); !got.Time.Equal(tc.wantSince) {
			t.Errorf("%s: lastTransitionTime %v, want %v", tc.name, got, tc.wantSince)
		}
		if got := unannounced(&tc.prev, tc.want); len(got) != tc.wantAnnounc {
			t.Errorf("%s: announces %+v, want %d", tc.name, got, tc.wantAnnounc)
		}
	}

	// A new generation is a different report, so it is written; the same one is not.
	next := broken
	next.ObservedGeneration++
	if next.hash() == broken.hash() {
		t.Error("a new generation hashes as the old one")
	}
	again := wantedReports(shopWorld(), validation.Analyze(analysisInput(shopWorld())))[objectKey{"VirtualService", "shop", "web-broken"}].report
	if again.hash() != broken.hash() {
		t.Error("the same World hashes differently")
	}
}

func TestTruncate(t *testing.T) {
	long := strings.Repeat("é", 600) // 1200 bytes
	got := truncate(long, 1024)
	if len(got) > 1024 || !strings.HasSuffix(got, "...") || !strings.HasPrefix(long, strings.TrimSuffix(got, "...")) {
		t.Errorf("truncate gave %d bytes: %q", len(got), got[len(got)-10:])
	}
	if truncate("short", 1024) != "short" {
		t.Error("a short note was changed")
	}
}
