package controllers_test

import (
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers"
	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/test/framework"
	"github.com/meshplane/meshplane/test/harness"
)

func istioCRDNames(t *testing.T) []string {
	t.Helper()
	crds, err := istiocrd.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, crd := range crds {
		names = append(names, crd.Name)
	}
	return names
}

func isEstablished(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

// checkIstioCRDs requires every Istio CRD to exist, be Established and not be
// on its way out.
func checkIstioCRDs(t *testing.T, when string) {
	t.Helper()
	for _, name := range istioCRDNames(t) {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		framework.Poll(t, wait, "CRD "+name+" Established "+when, func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
				return err
			}
			if !crd.DeletionTimestamp.IsZero() {
				return fmt.Errorf("being deleted")
			}
			if !isEstablished(crd) {
				return fmt.Errorf("conditions %+v", crd.Status.Conditions)
			}
			return nil
		})
		if crd.Labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByOperator || crd.Labels[istiocrd.LabelPartOf] != istiocrd.PartOf {
			t.Errorf("CRD %s labels %v", name, crd.Labels)
		}
		if _, found := crd.Labels[v1alpha1.LabelMeshControlPlane]; found || len(crd.OwnerReferences) != 0 {
			t.Errorf("CRD %s is tied to one MeshControlPlane (labels %v, owners %v); it is shared by all",
				name, crd.Labels, crd.OwnerReferences)
		}
	}
}

// The operator installs the Istio CRDs with the mesh, and uninstalling the mesh
// leaves them, and so the users' Istio config, in place.
func TestIstioCRDsAreInstalledAndOutliveUninstall(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("crds")
	create(t, mcp)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	checkIstioCRDs(t, "after install")

	// A user's routing config, in the apiVersion most published examples use.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "crds-user"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1alpha3",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": "reviews", "namespace": ns.Name},
		"spec":       map[string]any{"hosts": []any{"reviews"}},
	}}
	if err := k8s.Create(ctx, vs); err != nil {
		t.Fatalf("creating a VirtualService after install: %v", err)
	}

	deleteAndWait(t, mcp.Name)
	checkIstioCRDs(t, "after uninstall")
	if err := k8s.Get(ctx, client.ObjectKeyFromObject(vs), vs); err != nil {
		t.Fatalf("the user's VirtualService did not survive uninstall: %v", err)
	}
	if !vs.GetDeletionTimestamp().IsZero() {
		t.Fatal("the user's VirtualService is being deleted after uninstall")
	}
}

// A CRD that differs from what this operator version installs (an older
// operator's, or edited by hand) is applied again on the next reconcile; the
// ones that are up to date are not written at all.
func TestOnlyOutdatedIstioCRDsAreApplied(t *testing.T) {
	counted, writes := harness.CountWrites(restConfig)
	framework.StartOperator(t, counted)
	mcp := newMesh("crdwrites")
	create(t, mcp)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	checkIstioCRDs(t, "after install")

	const outdated = "virtualservices.networking.istio.io"
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: outdated}, crd); err != nil {
		t.Fatal(err)
	}
	appliedHash := crd.Annotations[controllers.AnnotationIstioCRDHash]
	if appliedHash == "" {
		t.Fatalf("CRD %s has no %s annotation: %v", outdated, controllers.AnnotationIstioCRDHash, crd.Annotations)
	}
	crd.Annotations[controllers.AnnotationIstioCRDHash] = "from-an-older-operator"
	for i := range crd.Spec.Versions {
		crd.Spec.Versions[i].AdditionalPrinterColumns = nil
	}
	if err := k8s.Update(ctx, crd); err != nil {
		t.Fatal(err)
	}

	writes.Reset()
	// Any change to the spec makes the operator reconcile.
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.ControlPlane.LogLevel = "debug" })
	framework.Poll(t, wait, "CRD "+outdated+" applied again", func() error {
		if err := k8s.Get(ctx, client.ObjectKey{Name: outdated}, crd); err != nil {
			return err
		}
		if got := crd.Annotations[controllers.AnnotationIstioCRDHash]; got != appliedHash {
			return fmt.Errorf("hash annotation %q, want %q", got, appliedHash)
		}
		if len(crd.Spec.Versions[0].AdditionalPrinterColumns) == 0 {
			return fmt.Errorf("printer columns not restored")
		}
		return nil
	})
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)

	var crdWrites []harness.WriteRequest
	for _, w := range writes.Writes() {
		if strings.Contains(w.Path, "/customresourcedefinitions") {
			crdWrites = append(crdWrites, w)
		}
	}
	if len(crdWrites) != 1 || !strings.HasSuffix(crdWrites[0].Path, "/customresourcedefinitions/"+outdated) {
		t.Fatalf("CRD writes %v, want one, to %s", crdWrites, outdated)
	}
}
