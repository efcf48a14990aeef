package controllers_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/webhook"
	"github.com/meshplane/meshplane/test/framework"
)

// TestOperatorLeavesMeshdsCABundleAlone patches the validating webhook's caBundle as meshd
// does, then makes the operator re-apply everything: the caBundle must survive, and the
// operator's own fields must still be the operator's.
func TestOperatorLeavesMeshdsCABundleAlone(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("cab")
	create(t, mcp)
	name := "meshplane-validator-cab"
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)

	selfSigned, err := webhook.NewSelfSigned(webhook.ServiceDNSNames("meshd-cab", "mesh-cab"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	clientset, err := kubernetes.NewForConfig(restConfig)
	if err != nil {
		t.Fatal(err)
	}
	patcher, err := webhook.NewCABundlePatcher(webhook.CABundleOptions{Client: clientset, ConfigurationName: name, CABundle: selfSigned.CABundle})
	if err != nil {
		t.Fatal(err)
	}
	if patched, err := patcher.Ensure(ctx); err != nil || !patched {
		t.Fatalf("meshd's patch: %v, %v", patched, err)
	}

	// A spec change makes the operator apply every object again.
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.ControlPlane.LogLevel = "debug" })
	framework.Poll(t, wait, "meshd restarted with debug logs", func() error {
		if args := strings.Join(deployment(t, "mesh-cab", "meshd-cab").Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "debug") {
			return fmt.Errorf("args %q", args)
		}
		return nil
	})
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)

	cfg := &admissionregistrationv1.ValidatingWebhookConfiguration{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, cfg); err != nil {
		t.Fatal(err)
	}
	if got := string(cfg.Webhooks[0].ClientConfig.CABundle); got != string(selfSigned.CABundle) {
		t.Errorf("caBundle after the operator's apply:\n%s\nwant meshd's:\n%s", got, selfSigned.CABundle)
	}
	if patched, err := patcher.Ensure(ctx); err != nil || patched {
		t.Errorf("meshd had to patch again (%v, %v): the operator reset the caBundle", patched, err)
	}
	for _, entry := range cfg.ManagedFields {
		owned := string(entry.FieldsV1.Raw)
		if entry.Manager != webhook.DefaultFieldManager && strings.Contains(owned, "caBundle") {
			t.Errorf("%s owns a caBundle: %s", entry.Manager, owned)
		}
		if entry.Manager == webhook.DefaultFieldManager && (strings.Contains(owned, "failurePolicy") || strings.Contains(owned, "rules")) {
			t.Errorf("meshd owns more than the caBundle: %s", owned)
		}
	}
}
