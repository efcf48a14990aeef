// Package controllers holds the operator's reconcilers.
package controllers

import (
	"context"
	"errors"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/util/workqueue"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// FieldOwner is the server-side-apply field manager of everything the operator installs.
const FieldOwner = "meshplane-operator"

// Renderer turns a MeshControlPlane into the objects that make up its installation.
// internal/render implements it with the embedded Helm charts.
type Renderer interface {
	Render(mcp *v1alpha1.MeshControlPlane) ([]*unstructured.Unstructured, error)
}

// MeshControlPlaneReconciler installs, updates and uninstalls a mesh from a
// MeshControlPlane.
//
// Install is render-then-server-side-apply, not Helm releases. Helm's release
// bookkeeping (a Secret per revision, pending-install/pending-upgrade states) is a
// second source of truth that can be left stuck by an operator killed midway, and
// an upgrade rewrites objects whether or not they changed. Server-side apply is
// idempotent, needs no state besides the objects themselves, lets other field
// managers (meshd patching a webhook caBundle, an HPA scaling a gateway) own their
// fields, and a no-op apply does not bump resourceVersion, so it never wakes our
// own watches. An interrupted install converges on the next reconcile because
// every reconcile applies the whole desired set. Installed objects are found again
// by their labels (LabelMeshControlPlane) for pruning and uninstall, and carry a
// controller owner reference so Kubernetes' garbage collector is a second line.
type MeshControlPlaneReconciler struct {
	client.Client
	// APIReader reads around the cache where completeness matters more than cost:
	// namespaces (not cached) and the final sweep before uninstall completes.
	APIReader client.Reader
	Renderer  Renderer
}

// The operator's RBAC, generated into config/rbac by controller-gen.
// +kubebuilder:rbac:groups=operator.meshplane.io,resources=meshcontrolplanes,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=operator.meshplane.io,resources=meshcontrolplanes/status,verbs=get;update;patch
// +kubebuilder:rbac:groups=operator.meshplane.io,resources=meshcontrolplanes/finalizers,verbs=update
// +kubebuilder:rbac:groups="",resources=namespaces,verbs=get;list;watch;create;delete
// +kubebuilder:rbac:groups="",resources=serviceaccounts;configmaps;services,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=apps,resources=deployments,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=rbac.authorization.k8s.io,resources=roles;rolebindings;clusterroles;clusterrolebindings,verbs=get;list;watch;create;update;patch;delete;bind;escalate
// +kubebuilder:rbac:groups=admissionregistration.k8s.io,resources=mutatingwebhookconfigurations;validatingwebhookconfigurations,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete
// +kubebuilder:rbac:groups="",resources=events,verbs=create;patch

// Reconcile drives one MeshControlPlane towards its spec.
func (r *MeshControlPlaneReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, reterr error) {
	mcp := &v1alpha1.MeshControlPlane{}
	if err := r.Get(ctx, req.NamespacedName, mcp); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}

	if !mcp.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.reconcileDelete(ctx, mcp)
	}

	if !controllerutil.ContainsFinalizer(mcp, v1alpha1.MeshControlPlaneFinalizer) {
		patch := client.MergeFrom(mcp.DeepCopy())
		controllerutil.AddFinalizer(mcp, v1alpha1.MeshControlPlaneFinalizer)
		if err := r.Patch(ctx, mcp, patch); err != nil {
			return ctrl.Result{}, fmt.Errorf("adding finalizer: %w", err)
		}
	}

	s := &scope{mcp: mcp}
	before := mcp.DeepCopy()
	defer func() {
		if err := r.patchStatus(ctx, before, s, reterr); err != nil {
			reterr = errors.Join(reterr, err)
		}
	}()

	for _, phase := range []func(context.Context, *scope) (ctrl.Result, error){
		r.reconcileUpdateStrategy,
		r.reconcileNamespaceOwnership,
		r.reconcileNamespace,
		r.reconcileIstioCRDs,
		r.reconcileCA,
		r.reconcileManifests,
	} {
		res, err := phase(ctx, s)
		if err != nil || s.stop {
			return res, err
		}
		result = lowestRequeue(result, res)
	}
	return result, nil
}

// scope carries what one reconcile learns from phase to phase.
type scope struct {
	mcp *v1alpha1.MeshControlPlane
	// desired is the rendered installation, once rendering succeeded.
	desired []*unstructured.Unstructured
	// refusal, when set, is why the spec is not acted upon (Reconciled=False).
	refusal *metav1.Condition
	// ca is what reconcileCA found; nil when it did not run.
	ca *caCheck
	// stop ends the phases without an error: the spec was refused.
	stop bool
}

// reconcileUpdateStrategy refuses what this operator version cannot do yet rather
// than ignoring it: RevisionBased updates leave the existing installation as it is.
func (r *MeshControlPlaneReconciler) reconcileUpdateStrategy(_ context.Context, s *scope) (ctrl.Result, error) {
	if s.mcp.Spec.UpdateStrategy.Type == v1alpha1.UpdateStrategyRevisionBased {
		s.refuse(v1alpha1.ReasonUpdateStrategyNotSupported,
			"updateStrategy.type RevisionBased is not yet supported by this operator version; "+
				"use InPlace. Nothing was installed or changed.")
	}
	return ctrl.Result{}, nil
}

// reconcileNamespaceOwnership refuses a MeshControlPlane whose namespace an
// older MeshControlPlane already uses: two control planes would overwrite each
// other's objects.
func (r *MeshControlPlaneReconciler) reconcileNamespaceOwnership(ctx context.Context, s *scope) (ctrl.Result, error) {
	var all v1alpha1.MeshControlPlaneList
	if err := r.List(ctx, &all); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing MeshControlPlanes: %w", err)
	}
	for i := range all.Items {
		other := &all.Items[i]
		if other.Name == s.mcp.Name || !other.DeletionTimestamp.IsZero() ||
			other.Spec.Namespace != s.mcp.Spec.Namespace || !olderThan(other, s.mcp) {
			continue
		}
		s.refuse(v1alpha1.ReasonNamespaceConflict, fmt.Sprintf(
			"namespace %q is already used by MeshControlPlane %q; each control plane needs its own namespace",
			s.mcp.Spec.Namespace, other.Name))
		// The other one may go away; look again later rather than watch for it.
		return ctrl.Result{RequeueAfter: 30 * time.Second}, nil
	}
	return ctrl.Result{}, nil
}

func olderThan(a, b *v1alpha1.MeshControlPlane) bool {
	if !a.CreationTimestamp.Equal(&b.CreationTimestamp) {
		return a.CreationTimestamp.Before(&b.CreationTimestamp)
	}
	return a.Name < b.Name
}

// reconcileNamespace creates the control-plane namespace when it is missing and
// marks it as ours, so that uninstall removes it only then.
func (r *MeshControlPlaneReconciler) reconcileNamespace(ctx context.Context, s *scope) (ctrl.Result, error) {
	ns := &corev1.Namespace{}
	err := r.APIReader.Get(ctx, client.ObjectKey{Name: s.mcp.Spec.Namespace}, ns)
	if err == nil {
		if !ns.DeletionTimestamp.IsZero() {
			return ctrl.Result{}, fmt.Errorf("namespace %q is being deleted; waiting before installing into it", ns.Name)
		}
		return ctrl.Result{}, nil
	}
	if !apierrors.IsNotFound(err) {
		return ctrl.Result{}, fmt.Errorf("reading namespace %q: %w", s.mcp.Spec.Namespace, err)
	}
	ns = &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{
		Name:        s.mcp.Spec.Namespace,
		Labels:      map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByOperator},
		Annotations: map[string]string{v1alpha1.AnnotationCreatedBy: s.mcp.Name},
	}}
	if err := r.Create(ctx, ns); err != nil && !apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, fmt.Errorf("creating namespace %q: %w", ns.Name, err)
	}
	return ctrl.Result{}, nil
}

// reconcileManifests renders the charts, applies every object and prunes the
// ones a previous spec installed that the current one no longer renders.
func (r *MeshControlPlaneReconciler) reconcileManifests(ctx context.Context, s *scope) (ctrl.Result, error) {
	desired, err := r.Renderer.Render(s.mcp)
	if err != nil {
		s.refuse(v1alpha1.ReasonRenderFailed, fmt.Sprintf("rendering the charts failed: %v", err))
		return ctrl.Result{}, nil // the same spec renders the same way: wait for a new one
	}
	if err := r.checkGatewayNamespaces(ctx, s.mcp); err != nil {
		return ctrl.Result{}, err
	}
	for _, obj := range desired {
		if err := r.apply(ctx, s.mcp, obj); err != nil {
			return ctrl.Result{}, err
		}
	}
	s.desired = desired
	return ctrl.Result{}, r.prune(ctx, s.mcp, desired)
}

// checkGatewayNamespaces fails early, with a message naming the gateway, when a
// gateway's namespace is missing: the operator does not create application namespaces.
func (r *MeshControlPlaneReconciler) checkGatewayNamespaces(ctx context.Context, mcp *v1alpha1.MeshControlPlane) error {
	for _, gw := range mcp.Spec.Gateways {
		if gw.Namespace == "" || gw.Namespace == mcp.Spec.Namespace {
			continue
		}
		err := r.APIReader.Get(ctx, client.ObjectKey{Name: gw.Namespace}, &corev1.Namespace{})
		if apierrors.IsNotFound(err) {
			return fmt.Errorf("gateway %q: namespace %q does not exist; create it, the operator only creates the control-plane namespace", gw.Name, gw.Namespace)
		}
		if err != nil {
			return fmt.Errorf("gateway %q: reading namespace %q: %w", gw.Name, gw.Namespace, err)
		}
	}
	return nil
}

// reconcileDelete removes everything the MeshControlPlane installed, then the
// control-plane namespace if the operator created it, then the finalizer. The
// Istio CRDs stay: deleting them would delete the users' config (see
// reconcileIstioCRDs).
func (r *MeshControlPlaneReconciler) reconcileDelete(ctx context.Context, mcp *v1alpha1.MeshControlPlane) error {
	if !controllerutil.ContainsFinalizer(mcp, v1alpha1.MeshControlPlaneFinalizer) {
		return nil
	}
	log := ctrl.LoggerFrom(ctx)
	if err := r.deleteInstalled(ctx, mcp); err != nil {
		return err
	}
	if err := r.deleteOwnNamespace(ctx, mcp); err != nil {
		return err
	}
	patch := client.MergeFrom(mcp.DeepCopy())
	controllerutil.RemoveFinalizer(mcp, v1alpha1.MeshControlPlaneFinalizer)
	if err := r.Patch(ctx, mcp, patch); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("removing finalizer: %w", err))
	}
	log.Info("Uninstalled mesh control plane", "namespace", mcp.Spec.Namespace)
	return nil
}

func (r *MeshControlPlaneReconciler) deleteOwnNamespace(ctx context.Context, mcp *v1alpha1.MeshControlPlane) error {
	ns := &corev1.Namespace{}
	if err := r.APIReader.Get(ctx, client.ObjectKey{Name: mcp.Spec.Namespace}, ns); err != nil {
		return client.IgnoreNotFound(err)
	}
	if ns.Annotations[v1alpha1.AnnotationCreatedBy] != mcp.Name || !ns.DeletionTimestamp.IsZero() {
		return nil
	}
	if err := r.Delete(ctx, ns, client.Preconditions{UID: &ns.UID}); client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting namespace %q: %w", ns.Name, err)
	}
	return nil
}

// SetupWithManager registers the reconciler. Every watch is filtered so that a
// steady installation produces no events, hence no reconciles and no writes.
func (r *MeshControlPlaneReconciler) SetupWithManager(mgr ctrl.Manager) error {
	b := ctrl.NewControllerManagedBy(mgr).
		For(&v1alpha1.MeshControlPlane{}, builder.WithPredicates(specOrDeletionChanged())).
		Owns(&appsv1.Deployment{}, builder.WithPredicates(deploymentChanged())).
		WithOptions(controller.Options{
			// Fail fast, but retry a broken install within minutes, not the default ~16.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](
				500*time.Millisecond, 2*time.Minute),
		})
	for _, kind := range managedKinds {
		if kind.gvk.Kind == "Deployment" {
			continue
		}
		b = b.Owns(kind.newObject(), builder.WithPredicates(contentChanged()))
	}
	// Fixing or breaking a CA Secret changes CAReady. Metadata only: the cache
	// holds no Secret data (TrimSecretMetadata drops the annotations that may);
	// reconcileCA reads the one Secret it needs, uncached.
	b = b.WatchesMetadata(&corev1.Secret{}, handler.EnqueueRequestsFromMapFunc(r.meshesUsingSecret),
		builder.WithPredicates(predicate.ResourceVersionChangedPredicate{}))
	return b.Complete(r)
}

// patchStatus computes the conditions from what this reconcile saw and writes the
// status only when it changed, so that an idle cluster sees no writes.
func (r *MeshControlPlaneReconciler) patchStatus(ctx context.Context, before *v1alpha1.MeshControlPlane, s *scope, reconcileErr error) error {
	if err := r.computeStatus(ctx, s, reconcileErr); err != nil {
		return err
	}
	if equality.Semantic.DeepEqual(before.Status, s.mcp.Status) {
		return nil
	}
	if err := r.Status().Patch(ctx, s.mcp, client.MergeFrom(before)); err != nil {
		return client.IgnoreNotFound(fmt.Errorf("patching status: %w", err))
	}
	return nil
}

// lowestRequeue keeps the sooner of two requested requeues.
func lowestRequeue(a, b ctrl.Result) ctrl.Result {
	if a.RequeueAfter == 0 || (b.RequeueAfter != 0 && b.RequeueAfter < a.RequeueAfter) {
		return b
	}
	return a
}
