package render

import (
	"maps"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// injection describes one pod creation the API server might send to the webhook.
type injection struct {
	namespace string
	nsLabels  map[string]string
	podLabels map[string]string
	// want is how many webhooks match: 0 (never sent) or 1 (sent once, never twice).
	want int
}

// ns returns a namespace's labels as the API server sets them, including the
// kubernetes.io/metadata.name label it adds to every namespace.
func (i injection) ns() labels.Set {
	set := labels.Set{"kubernetes.io/metadata.name": i.namespace}
	maps.Copy(set, i.nsLabels)
	return set
}

func TestInjectorSelectorsDefaultRevision(t *testing.T) {
	hooks := webhooksOf(t, &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}})
	checkInjections(t, hooks, map[string]injection{
		"unlabelled namespace and pod":            {"apps", nil, nil, 0},
		"namespace istio-injection=enabled":       {"apps", m("istio-injection", "enabled"), nil, 1},
		"enabled namespace, pod inject=false":     {"apps", m("istio-injection", "enabled"), m("sidecar.istio.io/inject", "false"), 0},
		"enabled namespace, pod rev=other":        {"apps", m("istio-injection", "enabled"), m("istio.io/rev", "other"), 1},
		"namespace istio-injection=enabled+rev":   {"apps", m("istio-injection", "enabled", "istio.io/rev", "other"), nil, 1},
		"namespace istio-injection=disabled":      {"apps", m("istio-injection", "disabled"), nil, 0},
		"disabled namespace, pod inject=true":     {"apps", m("istio-injection", "disabled"), m("sidecar.istio.io/inject", "true"), 0},
		"disabled namespace, pod rev=default":     {"apps", m("istio-injection", "disabled"), m("istio.io/rev", "default"), 0},
		"namespace istio.io/rev=default":          {"apps", m("istio.io/rev", "default"), nil, 1},
		"rev=default namespace, pod inject=false": {"apps", m("istio.io/rev", "default"), m("sidecar.istio.io/inject", "false"), 0},
		"namespace istio.io/rev=other":            {"apps", m("istio.io/rev", "other"), nil, 0},
		"rev=other namespace, pod inject=true":    {"apps", m("istio.io/rev", "other"), m("sidecar.istio.io/inject", "true"), 0},
		"pod inject=true":                         {"apps", nil, m("sidecar.istio.io/inject", "true"), 1},
		"pod inject=false":                        {"apps", nil, m("sidecar.istio.io/inject", "false"), 0},
		"pod rev=default":                         {"apps", nil, m("istio.io/rev", "default"), 1},
		"pod rev=default and inject=true":         {"apps", nil, m("istio.io/rev", "default", "sidecar.istio.io/inject", "true"), 1},
		"pod rev=default and inject=false":        {"apps", nil, m("istio.io/rev", "default", "sidecar.istio.io/inject", "false"), 0},
		"pod rev=other":                           {"apps", nil, m("istio.io/rev", "other"), 0},
		"pod rev=other and inject=true":           {"apps", nil, m("istio.io/rev", "other", "sidecar.istio.io/inject", "true"), 0},
		"kube-system, unlabelled pod":             {"kube-system", nil, nil, 0},
	})
}

func TestInjectorSelectorsOtherRevision(t *testing.T) {
	hooks := webhooksOf(t, &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "canary"}})
	checkInjections(t, hooks, map[string]injection{
		"unlabelled namespace and pod":          {"apps", nil, nil, 0},
		"namespace istio-injection=enabled":     {"apps", m("istio-injection", "enabled"), nil, 0},
		"namespace istio.io/rev=canary":         {"apps", m("istio.io/rev", "canary"), nil, 1},
		"canary namespace, pod inject=false":    {"apps", m("istio.io/rev", "canary"), m("sidecar.istio.io/inject", "false"), 0},
		"canary namespace with istio-injection": {"apps", m("istio.io/rev", "canary", "istio-injection", "enabled"), nil, 0},
		"namespace istio.io/rev=default":        {"apps", m("istio.io/rev", "default"), nil, 0},
		"pod inject=true":                       {"apps", nil, m("sidecar.istio.io/inject", "true"), 0},
		"pod rev=canary":                        {"apps", nil, m("istio.io/rev", "canary"), 1},
		"pod rev=canary and inject=true":        {"apps", nil, m("istio.io/rev", "canary", "sidecar.istio.io/inject", "true"), 1},
		"pod rev=canary, namespace rev=default": {"apps", m("istio.io/rev", "default"), m("istio.io/rev", "canary"), 0},
		"pod rev=default":                       {"apps", nil, m("istio.io/rev", "default"), 0},
	})
}

func TestInjectorSelectorsNamespacesByDefault(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Injector.EnableNamespacesByDefault = true
	hooks := webhooksOf(t, mcp)
	checkInjections(t, hooks, map[string]injection{
		"unlabelled namespace and pod":        {"apps", nil, nil, 1},
		"pod inject=true":                     {"apps", nil, m("sidecar.istio.io/inject", "true"), 1},
		"pod inject=false":                    {"apps", nil, m("sidecar.istio.io/inject", "false"), 0},
		"pod rev=other":                       {"apps", nil, m("istio.io/rev", "other"), 0},
		"pod rev=default":                     {"apps", nil, m("istio.io/rev", "default"), 1},
		"namespace istio-injection=enabled":   {"apps", m("istio-injection", "enabled"), nil, 1},
		"namespace istio-injection=disabled":  {"apps", m("istio-injection", "disabled"), nil, 0},
		"namespace istio.io/rev=other":        {"apps", m("istio.io/rev", "other"), nil, 0},
		"kube-system":                         {"kube-system", nil, nil, 0},
		"kube-public":                         {"kube-public", nil, nil, 0},
		"kube-node-lease":                     {"kube-node-lease", nil, nil, 0},
		"control-plane namespace":             {DefaultNamespace, nil, nil, 0},
		"kube-system, pod opts in explicitly": {"kube-system", nil, m("sidecar.istio.io/inject", "true"), 1},
	})
}

// The operator's own pods must never reach an injector, even in a namespace
// someone labelled for injection: with failurePolicy Fail, meshd could then not
// start because it is not running.
func TestOwnPodsAreNeverInjected(t *testing.T) {
	mcp := readMCP(t, "testdata/two-gateways.input.yaml")
	mcp.Spec.Injector.EnableNamespacesByDefault = true
	objs := mustRender(t, newTestRenderer(t), mcp)
	hooks := webhooksIn(t, objs)
	for _, obj := range objs {
		if obj.GetKind() != "Deployment" {
			continue
		}
		podLabels := typedDeployment(t, obj).Spec.Template.Labels
		for _, nsLabels := range []map[string]string{nil, m("istio-injection", "enabled"), m("istio.io/rev", "default")} {
			in := injection{namespace: obj.GetNamespace(), nsLabels: nsLabels, podLabels: podLabels}
			if got := matching(t, hooks, in); len(got) != 0 {
				t.Errorf("pods of Deployment %s in a namespace labelled %v match webhooks %v", obj.GetName(), nsLabels, got)
			}
		}
	}
}

func TestInjectorDisabledRendersNoWebhook(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Injector.Enabled = new(bool)
	for _, obj := range mustRender(t, newTestRenderer(t), mcp) {
		if obj.GetKind() == "MutatingWebhookConfiguration" {
			t.Errorf("injector disabled, but %s rendered", obj.GetName())
		}
	}
}

func TestInjectorWebhookSettings(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "canary"}}
	mcp.Spec.Injector.FailurePolicy = "Ignore"
	for _, h := range webhooksOf(t, mcp) {
		svc := h.ClientConfig.Service
		switch {
		case svc == nil || svc.Name != "meshd-canary" || svc.Namespace != DefaultNamespace ||
			svc.Path == nil || *svc.Path != "/inject" || svc.Port == nil || *svc.Port != 443:
			t.Errorf("%s: clientConfig.service = %+v, want meshd-canary.%s:443/inject", h.Name, svc, DefaultNamespace)
		case len(h.ClientConfig.CABundle) != 0:
			t.Errorf("%s: has a caBundle; meshd owns that field", h.Name)
		case h.FailurePolicy == nil || *h.FailurePolicy != admissionregistrationv1.Ignore:
			t.Errorf("%s: failurePolicy %v, want Ignore", h.Name, h.FailurePolicy)
		case h.SideEffects == nil || *h.SideEffects != admissionregistrationv1.SideEffectClassNone:
			t.Errorf("%s: sideEffects %v, want None", h.Name, h.SideEffects)
		case h.TimeoutSeconds == nil || *h.TimeoutSeconds != 10:
			t.Errorf("%s: timeoutSeconds %v, want 10", h.Name, h.TimeoutSeconds)
		case !slices.Equal(h.AdmissionReviewVersions, []string{"v1"}):
			t.Errorf("%s: admissionReviewVersions %v, want [v1]", h.Name, h.AdmissionReviewVersions)
		case len(h.Rules) != 1 || !slices.Equal(h.Rules[0].Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create}) ||
			!slices.Equal(h.Rules[0].Resources, []string{"pods"}) || !slices.Equal(h.Rules[0].APIGroups, []string{""}):
			t.Errorf("%s: rules %+v, want CREATE of core pods only", h.Name, h.Rules)
		}
	}
}

func checkInjections(t *testing.T, hooks []admissionregistrationv1.MutatingWebhook, cases map[string]injection) {
	t.Helper()
	if len(hooks) == 0 {
		t.Fatal("no webhooks rendered")
	}
	for name, in := range cases {
		if got := matching(t, hooks, in); len(got) != in.want {
			t.Errorf("%s (namespace %s %v, pod %v): matched by %v, want %d webhook(s)",
				name, in.namespace, in.nsLabels, in.podLabels, got, in.want)
		}
	}
}

// matching returns the webhooks whose namespace and object selectors both
// select the pod, as the API server decides which webhooks to call.
func matching(t *testing.T, hooks []admissionregistrationv1.MutatingWebhook, in injection) []string {
	t.Helper()
	var names []string
	for _, h := range hooks {
		if selects(t, h.NamespaceSelector, in.ns()) && selects(t, h.ObjectSelector, labels.Set(in.podLabels)) {
			names = append(names, h.Name)
		}
	}
	return names
}

func selects(t *testing.T, sel *metav1.LabelSelector, set labels.Set) bool {
	t.Helper()
	if sel == nil {
		// An omitted selector selects everything: exactly what the injector must not do.
		t.Fatal("webhook without a selector")
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	if err != nil {
		t.Fatalf("selector %v: %v", sel, err)
	}
	return s.Matches(set)
}

func webhooksOf(t *testing.T, mcp *v1alpha1.MeshControlPlane) []admissionregistrationv1.MutatingWebhook {
	t.Helper()
	return webhooksIn(t, mustRender(t, newTestRenderer(t), mcp))
}

func webhooksIn(t *testing.T, objs []*unstructured.Unstructured) []admissionregistrationv1.MutatingWebhook {
	t.Helper()
	var hooks []admissionregistrationv1.MutatingWebhook
	for _, obj := range objs {
		if obj.GetKind() == "MutatingWebhookConfiguration" {
			cfg := &admissionregistrationv1.MutatingWebhookConfiguration{}
			fromUnstructured(t, obj, cfg)
			hooks = append(hooks, cfg.Webhooks...)
		}
	}
	return hooks
}

// m builds a label set from key, value pairs.
func m(kv ...string) map[string]string {
	out := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}
