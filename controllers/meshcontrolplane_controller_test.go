package controllers_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/util/retry"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers"
	"github.com/meshplane/meshplane/test/framework"
	"github.com/meshplane/meshplane/test/harness"
)

const wait = 60 * time.Second

var ctx = context.Background()

// newMesh is a MeshControlPlane with its own namespace and one ingress gateway.
func newMesh(name string) *v1alpha1.MeshControlPlane {
	return &v1alpha1.MeshControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: v1alpha1.MeshControlPlaneSpec{
			Namespace: "mesh-" + name,
			Gateways:  []v1alpha1.GatewaySpec{{Name: "ingress", Kind: v1alpha1.GatewayKindIngress}},
		},
	}
}

// create applies the MeshControlPlane and deletes it (waiting until the operator
// has uninstalled it) when the test ends; register it after StartOperator so the
// cleanup runs while the operator still does.
func create(t *testing.T, mcp *v1alpha1.MeshControlPlane) {
	t.Helper()
	if err := k8s.Create(ctx, mcp); err != nil {
		t.Fatalf("creating MeshControlPlane: %v", err)
	}
	t.Cleanup(func() { deleteAndWait(t, mcp.Name) })
}

func deleteAndWait(t *testing.T, name string) {
	t.Helper()
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := k8s.Delete(ctx, mcp); client.IgnoreNotFound(err) != nil {
		t.Fatalf("deleting MeshControlPlane %s: %v", name, err)
	}
	framework.Poll(t, wait, "MeshControlPlane "+name+" gone", func() error {
		err := k8s.Get(ctx, client.ObjectKey{Name: name}, mcp)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return fmt.Errorf("still there (finalizers %v): %v", mcp.Finalizers, err)
	})
}

func deployment(t *testing.T, namespace, name string) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	framework.Poll(t, wait, "Deployment "+namespace+"/"+name, func() error {
		return k8s.Get(ctx, client.ObjectKey{Namespace: namespace, Name: name}, d)
	})
	return d
}

// markAvailable does what kube-controller-manager would once the pods run.
func markAvailable(t *testing.T, namespace, name string) {
	t.Helper()
	d := deployment(t, namespace, name)
	replicas := ptr.Deref(d.Spec.Replicas, 1)
	d.Status = appsv1.DeploymentStatus{
		ObservedGeneration: d.Generation,
		Replicas:           replicas,
		UpdatedReplicas:    replicas,
		ReadyReplicas:      replicas,
		AvailableReplicas:  replicas,
		Conditions: []appsv1.DeploymentCondition{{
			Type: appsv1.DeploymentAvailable, Status: corev1.ConditionTrue,
			Reason: "MinimumReplicasAvailable", LastUpdateTime: metav1.Now(), LastTransitionTime: metav1.Now(),
		}},
	}
	if err := k8s.Status().Update(ctx, d); err != nil {
		t.Fatalf("marking Deployment %s/%s available: %v", namespace, name, err)
	}
}

// updateSpec changes a MeshControlPlane's spec, reading it again when the
// operator wrote it in between (status and finalizer writes bump its
// resourceVersion).
func updateSpec(t *testing.T, name string, change func(*v1alpha1.MeshControlPlane)) {
	t.Helper()
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		mcp := get(t, name)
		change(mcp)
		return k8s.Update(ctx, mcp)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, name string) *v1alpha1.MeshControlPlane {
	t.Helper()
	mcp := &v1alpha1.MeshControlPlane{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: name}, mcp); err != nil {
		t.Fatal(err)
	}
	return mcp
}

func TestConditionsFollowDeploymentAvailability(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("cond")
	create(t, mcp)

	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	// Installed, but nothing runs the pods: nothing may claim to be ready.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		got := get(t, mcp.Name)
		for _, c := range []string{v1alpha1.ConditionReady, v1alpha1.ConditionControlPlaneReady,
			v1alpha1.ConditionInjectorReady, v1alpha1.ConditionGatewaysReady} {
			if meta.IsStatusConditionTrue(got.Status.Conditions, c) {
				t.Fatalf("%s is True before any Deployment is available:%s", c, framework.Conditions(got))
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	got := get(t, mcp.Name)
	if err := framework.HasCondition(got, v1alpha1.ConditionControlPlaneReady, metav1.ConditionFalse, v1alpha1.ReasonDeploymentNotAvailable); err != nil {
		t.Fatal(err)
	}
	if got.Status.State != v1alpha1.StateNotReady || got.Status.ActiveRevision != mcp.Name {
		t.Fatalf("state %q revision %q, want NotReady and %q", got.Status.State, got.Status.ActiveRevision, mcp.Name)
	}

	markAvailable(t, "mesh-cond", "meshd-cond")
	got = framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionControlPlaneReady, metav1.ConditionTrue, v1alpha1.ReasonDeploymentAvailable, wait)
	if err := framework.HasCondition(got, v1alpha1.ConditionInjectorReady, metav1.ConditionTrue, ""); err != nil {
		t.Fatalf("meshd is available and the webhook installed: %v", err)
	}
	if err := framework.HasCondition(got, v1alpha1.ConditionReady, metav1.ConditionFalse, v1alpha1.ReasonComponentsNotReady); err != nil {
		t.Fatalf("the gateway is not available yet: %v", err)
	}

	markAvailable(t, "mesh-cond", "ingress")
	got = framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, v1alpha1.ReasonAllComponentsReady, wait)
	if got.Status.State != v1alpha1.StateHealthy || got.Status.ObservedGeneration != got.Generation {
		t.Fatalf("state %q observedGeneration %d (generation %d)", got.Status.State, got.Status.ObservedGeneration, got.Generation)
	}
	want := []v1alpha1.ComponentStatus{
		{Name: "meshd-cond", Namespace: "mesh-cond", Kind: v1alpha1.ComponentKindControlPlane, ReadyReplicas: 1, DesiredReplicas: 1},
		{Name: "ingress", Namespace: "mesh-cond", Kind: v1alpha1.ComponentKindIngressGateway, ReadyReplicas: 1, DesiredReplicas: 1},
	}
	if !slices.Equal(got.Status.Components, want) {
		t.Fatalf("components %+v, want %+v", got.Status.Components, want)
	}
}

func TestInstallCreatesEverythingOwnedAndLabelled(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("inst")
	create(t, mcp)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	mcp = get(t, mcp.Name)

	if !slices.Contains(mcp.Finalizers, v1alpha1.MeshControlPlaneFinalizer) {
		t.Fatalf("finalizer missing: %v", mcp.Finalizers)
	}
	ns := &corev1.Namespace{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "mesh-inst"}, ns); err != nil {
		t.Fatalf("control-plane namespace: %v", err)
	}
	if ns.Annotations[v1alpha1.AnnotationCreatedBy] != "inst" {
		t.Fatalf("namespace created by the operator is not marked as such: %v", ns.Annotations)
	}
	installed := framework.Installed(t, k8s, mcp.Name)
	for _, want := range []string{
		"Deployment mesh-inst/meshd-inst", "Service mesh-inst/meshd-inst", "ServiceAccount mesh-inst/meshd-inst",
		"Deployment mesh-inst/ingress", "Service mesh-inst/ingress",
		"MutatingWebhookConfiguration /meshplane-sidecar-injector-inst", "ClusterRole /meshplane-meshd-inst",
		"ValidatingWebhookConfiguration /meshplane-validator-inst",
	} {
		if !slices.Contains(installed, want) {
			t.Errorf("%s not installed; installed: %v", want, installed)
		}
	}
	// Every installed object is owned by the MeshControlPlane, so nothing escapes uninstall.
	objs, err := controllers.ListInstalled(ctx, k8s, mcp.Name)
	if err != nil {
		t.Fatal(err)
	}
	for _, obj := range objs {
		owner := metav1.GetControllerOf(obj)
		if owner == nil || owner.UID != mcp.UID || owner.Kind != "MeshControlPlane" {
			t.Errorf("%s %s is not controlled by the MeshControlPlane: %v", obj.GVK.Kind, obj.GetName(), obj.GetOwnerReferences())
		}
	}
}

func TestUpdateReachesTheDeploymentsAndPrunesRemovedGateways(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("upd")
	mcp.Spec.Gateways = append(mcp.Spec.Gateways, v1alpha1.GatewaySpec{Name: "egress", Kind: v1alpha1.GatewayKindEgress})
	create(t, mcp)
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	deployment(t, "mesh-upd", "egress")

	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) {
		mcp.Spec.ControlPlane.Replicas = ptr.To[int32](3)
		mcp.Spec.ControlPlane.LogLevel = "debug"
		mcp.Spec.Gateways = mcp.Spec.Gateways[:1]
	})
	framework.Poll(t, wait, "meshd scaled to 3 with debug logs", func() error {
		d := deployment(t, "mesh-upd", "meshd-upd")
		if ptr.Deref(d.Spec.Replicas, 0) != 3 {
			return fmt.Errorf("replicas %d", ptr.Deref(d.Spec.Replicas, 0))
		}
		if args := strings.Join(d.Spec.Template.Spec.Containers[0].Args, " "); !strings.Contains(args, "debug") {
			return fmt.Errorf("args %q", args)
		}
		return nil
	})
	framework.Poll(t, wait, "egress gateway pruned", func() error {
		for _, obj := range framework.Installed(t, k8s, mcp.Name) {
			if strings.Contains(obj, "/egress") {
				return fmt.Errorf("%s still installed", obj)
			}
		}
		return nil
	})
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
}

func TestDriftIsReverted(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("drift")
	create(t, mcp)
	d := deployment(t, "mesh-drift", "meshd-drift")
	d.Spec.Replicas = ptr.To[int32](7)
	if err := k8s.Update(ctx, d); err != nil {
		t.Fatal(err)
	}
	framework.Poll(t, wait, "replicas back to 1", func() error {
		d := deployment(t, "mesh-drift", "meshd-drift")
		if got := ptr.Deref(d.Spec.Replicas, 0); got != 1 {
			return fmt.Errorf("replicas %d", got)
		}
		return nil
	})
	svc := &corev1.Service{}
	if err := k8s.Get(ctx, client.ObjectKey{Namespace: "mesh-drift", Name: "meshd-drift"}, svc); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Delete(ctx, svc); err != nil {
		t.Fatal(err)
	}
	framework.Poll(t, wait, "deleted Service recreated", func() error {
		fresh := &corev1.Service{}
		if err := k8s.Get(ctx, client.ObjectKey{Namespace: "mesh-drift", Name: "meshd-drift"}, fresh); err != nil {
			return err
		}
		if fresh.UID == svc.UID {
			return fmt.Errorf("still the old Service")
		}
		return nil
	})
}

func TestRevisionBasedUpdatesAreRefusedNotIgnored(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("revb")
	mcp.Spec.UpdateStrategy.Type = v1alpha1.UpdateStrategyRevisionBased
	create(t, mcp)
	got := framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionFalse,
		v1alpha1.ReasonUpdateStrategyNotSupported, wait)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReconciled); !strings.Contains(c.Message, "not yet supported") {
		t.Fatalf("message %q does not say RevisionBased is not yet supported", c.Message)
	}
	if got.Status.State != v1alpha1.StateReconcileError {
		t.Fatalf("state %q", got.Status.State)
	}
	if installed := framework.Installed(t, k8s, mcp.Name); len(installed) != 0 {
		t.Fatalf("a refused spec installed %v", installed)
	}

	// Switching back to InPlace installs.
	updateSpec(t, mcp.Name, func(mcp *v1alpha1.MeshControlPlane) { mcp.Spec.UpdateStrategy.Type = v1alpha1.UpdateStrategyInPlace })
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
}

func TestSecondControlPlaneInTheSameNamespaceIsRefused(t *testing.T) {
	framework.StartOperator(t, restConfig)
	first := newMesh("first")
	create(t, first)
	framework.WaitForCondition(t, k8s, first.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)

	second := newMesh("second")
	second.Spec.Namespace = first.Spec.Namespace
	second.Spec.Gateways = nil
	create(t, second)
	got := framework.WaitForCondition(t, k8s, second.Name, v1alpha1.ConditionReconciled, metav1.ConditionFalse,
		v1alpha1.ReasonNamespaceConflict, wait)
	if c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReconciled); !strings.Contains(c.Message, `"first"`) {
		t.Fatalf("message %q does not name the MeshControlPlane using the namespace", c.Message)
	}
	if installed := framework.Installed(t, k8s, second.Name); len(installed) != 0 {
		t.Fatalf("the refused MeshControlPlane installed %v", installed)
	}
}

func TestMissingGatewayNamespaceIsReported(t *testing.T) {
	framework.StartOperator(t, restConfig)
	mcp := newMesh("gwns")
	mcp.Spec.Gateways[0].Namespace = "does-not-exist"
	create(t, mcp)
	got := framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionFalse, v1alpha1.ReasonReconcileFailed, wait)
	c := meta.FindStatusCondition(got.Status.Conditions, v1alpha1.ConditionReconciled)
	if !strings.Contains(c.Message, `gateway "ingress": namespace "does-not-exist" does not exist`) {
		t.Fatalf("message %q", c.Message)
	}

	// Creating the namespace is enough: the operator retries with backoff.
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "does-not-exist"}}
	if err := k8s.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	deployment(t, "does-not-exist", "ingress")
}

func TestUninstallRemovesEverythingItInstalled(t *testing.T) {
	framework.StartOperator(t, restConfig)
	// A namespace the user made is used but never deleted.
	userNS := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "team-gateways"}}
	if err := k8s.Create(ctx, userNS); err != nil {
		t.Fatal(err)
	}
	mcp := newMesh("gone")
	mcp.Spec.Gateways = append(mcp.Spec.Gateways, v1alpha1.GatewaySpec{Name: "team", Namespace: "team-gateways"})
	if err := k8s.Create(ctx, mcp); err != nil {
		t.Fatal(err)
	}
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	if len(framework.Installed(t, k8s, mcp.Name)) == 0 {
		t.Fatal("nothing installed")
	}

	deleteAndWait(t, mcp.Name)
	if left := framework.Installed(t, k8s, mcp.Name); len(left) != 0 {
		t.Fatalf("left behind after uninstall: %v", left)
	}
	// envtest has no namespace controller, so the namespace stays Terminating;
	// what matters is that the operator deleted it, and only it.
	ns := &corev1.Namespace{}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "mesh-gone"}, ns); err == nil && ns.DeletionTimestamp.IsZero() {
		t.Fatal("the namespace the operator created was not deleted")
	}
	if err := k8s.Get(ctx, client.ObjectKey{Name: "team-gateways"}, userNS); err != nil || !userNS.DeletionTimestamp.IsZero() {
		t.Fatalf("the user's namespace was deleted (err %v)", err)
	}
}

func TestInterruptedInstallConvergesOnTheNextReconcile(t *testing.T) {
	counted, writes := harness.CountWrites(restConfig)
	crashed := framework.StartOperator(t, counted)
	// The operator "dies" right after its 6th write: the finalizer, the namespace
	// and the first few objects exist, the rest does not.
	const crashAfter = 6
	writes.CutOffAfter(crashAfter)
	writes.AfterWrite(crashAfter, func(harness.WriteRequest) { crashed.Kill() })

	mcp := newMesh("crash")
	if err := k8s.Create(ctx, mcp); err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed.Stopped():
	case <-time.After(wait):
		t.Fatalf("the operator did not reach its %dth write: %s", crashAfter, writes.Summary())
	}
	partial := framework.Installed(t, k8s, mcp.Name)
	if len(partial) >= 10 {
		t.Fatalf("the crash came too late to interrupt anything: %v", partial)
	}
	if c := meta.FindStatusCondition(get(t, mcp.Name).Status.Conditions, v1alpha1.ConditionReconciled); c != nil && c.Status == metav1.ConditionTrue {
		t.Fatal("Reconciled=True after an interrupted install")
	}

	framework.StartOperator(t, restConfig)
	t.Cleanup(func() { deleteAndWait(t, mcp.Name) })
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReconciled, metav1.ConditionTrue, "", wait)
	complete := framework.Installed(t, k8s, mcp.Name)
	if len(complete) <= len(partial) {
		t.Fatalf("after the restart %d objects, before %d", len(complete), len(partial))
	}
	for _, obj := range partial {
		if !slices.Contains(complete, obj) {
			t.Errorf("%s installed before the crash is gone", obj)
		}
	}
}
