package render

import (
	"maps"
	"slices"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/webhook"
)

// TestValidatingWebhookCallsMeshd: the validating webhook calls meshd's /validate for the
// resources meshd validates, leaves the caBundle to meshd, and meshd is told its name and
// may patch that configuration and no other.
func TestValidatingWebhookCallsMeshd(t *testing.T) {
	for _, tc := range []struct {
		mcp, meshd string
		injector   bool
	}{
		{"default", "meshd", true},
		{"canary", "meshd-canary", false},
	} {
		mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: tc.mcp}}
		mcp.Spec.Injector.Enabled = &tc.injector
		objs := mustRender(t, newTestRenderer(t), mcp)
		name := "meshplane-validator-" + tc.mcp

		cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		fromUnstructured(t, find(t, objs, "ValidatingWebhookConfiguration", name), cfg)
		if len(cfg.Webhooks) != 1 {
			t.Fatalf("%s: %d webhooks, want 1", name, len(cfg.Webhooks))
		}
		h := cfg.Webhooks[0]
		svc := h.ClientConfig.Service
		switch {
		case svc == nil || svc.Name != tc.meshd || svc.Namespace != DefaultNamespace ||
			svc.Path == nil || *svc.Path != webhook.ValidatePath || svc.Port == nil || *svc.Port != 443:
			t.Errorf("%s: clientConfig.service = %+v, want %s.%s:443%s", name, svc, tc.meshd, DefaultNamespace, webhook.ValidatePath)
		case h.ClientConfig.CABundle != nil:
			t.Errorf("%s: has a caBundle; meshd owns that field", name)
		case h.FailurePolicy == nil || *h.FailurePolicy != admissionregistrationv1.Ignore:
			t.Errorf("%s: failurePolicy %v, want Ignore", name, h.FailurePolicy)
		case h.SideEffects == nil || *h.SideEffects != admissionregistrationv1.SideEffectClassNone:
			t.Errorf("%s: sideEffects %v, want None", name, h.SideEffects)
		case !slices.Equal(h.AdmissionReviewVersions, []string{"v1"}):
			t.Errorf("%s: admissionReviewVersions %v, want [v1]", name, h.AdmissionReviewVersions)
		case h.NamespaceSelector != nil || h.ObjectSelector != nil:
			t.Errorf("%s: selectors %v %v, want none: Istio config anywhere is validated", name, h.NamespaceSelector, h.ObjectSelector)
		}
		// One rule per group meshd validates, with exactly its resources, in every version.
		validated := webhook.ValidatedResources()
		groups := slices.Sorted(maps.Keys(validated))
		if !slices.Equal(groups, []string{"networking.istio.io", "security.istio.io"}) || len(h.Rules) != len(groups) {
			t.Errorf("%s: rules %+v, want one for each of %v", name, h.Rules, groups)
		}
		for i, rule := range h.Rules[:min(len(h.Rules), len(groups))] {
			if !slices.Equal(rule.Operations, []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update}) ||
				!slices.Equal(rule.APIGroups, []string{groups[i]}) ||
				!slices.Equal(rule.APIVersions, []string{"*"}) ||
				!slices.Equal(rule.Resources, validated[groups[i]]) {
				t.Errorf("%s: rule %d %+v, want CREATE and UPDATE of %s %v in every version", name, i, rule, groups[i], validated[groups[i]])
			}
		}

		args := typedDeployment(t, find(t, objs, "Deployment", tc.meshd)).Spec.Template.Spec.Containers[0].Args
		for _, want := range []string{"--webhook-config-name=" + name, "--webhook-service=" + tc.meshd} {
			if !slices.Contains(args, want) {
				t.Errorf("meshd args %q lack %s", args, want)
			}
		}

		// Nothing else of any webhook configuration, and nothing cluster-wide.
		role := &rbacv1.ClusterRole{}
		fromUnstructured(t, find(t, objs, "ClusterRole", ClusterRoleName(tc.mcp)), role)
		var admission []rbacv1.PolicyRule
		for _, rule := range role.Rules {
			if slices.Contains(rule.APIGroups, "admissionregistration.k8s.io") || slices.Contains(rule.APIGroups, "*") {
				admission = append(admission, rule)
			}
		}
		want := rbacv1.PolicyRule{
			APIGroups:     []string{"admissionregistration.k8s.io"},
			Resources:     []string{"validatingwebhookconfigurations"},
			ResourceNames: []string{name},
			Verbs:         []string{"get", "patch"},
		}
		if len(admission) != 1 || !equalJSON(t, admission[0], want) {
			t.Errorf("ClusterRole %s grants %+v on admission configuration, want only %+v", role.Name, admission, want)
		}
	}
}
