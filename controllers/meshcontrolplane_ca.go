package controllers

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
)

// Secrets: the control-plane namespace is chosen per MeshControlPlane, so the
// rule cannot be a Role in a namespace known at deploy time. list and watch
// serve a metadata-only informer (names, no data); the data of the one CA
// Secret is read with get, uncached.
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get;list;watch;create
// +kubebuilder:rbac:groups=cert-manager.io,resources=issuers;clusterissuers,verbs=get

// caRecheckInterval is how soon a CertManager CA that cannot be used is looked
// at again: cert-manager's CRDs and the issuer may appear at any time, and a
// kind that may not exist cannot be watched.
const caRecheckInterval = time.Minute

// caCheck is what reconcileCA found, for the CAReady condition.
type caCheck struct {
	status  metav1.ConditionStatus
	reason  string
	message string
}

func caUsable(reason, message string) *caCheck {
	return &caCheck{status: metav1.ConditionTrue, reason: reason, message: message}
}

func caNotUsable(reason, message string) *caCheck {
	return &caCheck{status: metav1.ConditionFalse, reason: reason, message: message}
}

// reconcileCA makes sure the CA that spec.ca selects exists and is usable, and
// records what it found for CAReady. An unusable CA does not stop the install:
// meshd refuses an invalid bundle by itself, and the condition says why nothing
// is signed.
func (r *MeshControlPlaneReconciler) reconcileCA(ctx context.Context, s *scope) (ctrl.Result, error) {
	switch s.mcp.Spec.CA.Type {
	case v1alpha1.CATypeProvided:
		return r.reconcileProvidedCA(ctx, s)
	case v1alpha1.CATypeCertManager:
		return r.reconcileCertManagerCA(ctx, s)
	default: // SelfSigned, the schema's default
		return r.reconcileSelfSignedCA(ctx, s)
	}
}

// reconcileSelfSignedCA creates the root once and keeps it whatever happens
// next, like Istio's istio-ca-secret: a new root would make every certificate
// already issued untrusted. It is never updated, and carries no owner
// reference nor LabelMeshControlPlane, so neither uninstall, pruning nor the
// garbage collector takes it. Deleting its namespace does, and uninstall
// deletes the control-plane namespace when the operator created it.
func (r *MeshControlPlaneReconciler) reconcileSelfSignedCA(ctx context.Context, s *scope) (ctrl.Result, error) {
	key := client.ObjectKey{Namespace: s.mcp.Spec.Namespace, Name: v1alpha1.SelfSignedCASecretName}
	secret, err := r.readCASecret(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	if secret == nil {
		if secret, err = r.createSelfSignedCA(ctx, s.mcp, key); err != nil {
			return ctrl.Result{}, err
		}
	}
	var recheck time.Duration
	s.ca, recheck = checkCASecret(secret,
		"The operator never overwrites it: restore the bundle it generated, or delete the Secret to have a new root "+
			"generated (certificates issued under the old root are then no longer trusted).")
	return ctrl.Result{RequeueAfter: recheck}, nil
}

func (r *MeshControlPlaneReconciler) createSelfSignedCA(ctx context.Context, mcp *v1alpha1.MeshControlPlane, key client.ObjectKey) (*corev1.Secret, error) {
	trustDomain := cmp.Or(mcp.Spec.MeshConfig.TrustDomain, v1alpha1.DefaultTrustDomain)
	bundle, err := ca.GenerateRoot(trustDomain)
	if err != nil {
		return nil, fmt.Errorf("generating the self-signed root for trust domain %q: %w", trustDomain, err)
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{
			Name:      key.Name,
			Namespace: key.Namespace,
			// managed-by says who made it; without LabelMeshControlPlane, pruning
			// and uninstall never see it.
			Labels: map[string]string{v1alpha1.LabelManagedBy: v1alpha1.ManagedByOperator},
		},
		Type: corev1.SecretTypeOpaque,
		Data: bundle.SecretData(),
	}
	err = r.Create(ctx, secret)
	switch {
	case err == nil:
		ctrl.LoggerFrom(ctx).Info("Created the self-signed mesh CA", "secret", key.String(), "trustDomain", trustDomain)
		return secret, nil
	case apierrors.IsAlreadyExists(err):
		// Someone else was first (a previous leader, the user): theirs stands.
		existing, err := r.readCASecret(ctx, key)
		if err == nil && existing == nil {
			err = fmt.Errorf("CA Secret %s was created by someone else and deleted again", key)
		}
		return existing, err
	default:
		return nil, fmt.Errorf("creating CA Secret %s: %w", key, err)
	}
}

// reconcileProvidedCA checks the user's Secret; the operator never writes it.
func (r *MeshControlPlaneReconciler) reconcileProvidedCA(ctx context.Context, s *scope) (ctrl.Result, error) {
	key := client.ObjectKey{Namespace: s.mcp.Spec.Namespace, Name: s.mcp.Spec.CA.SecretName()}
	secret, err := r.readCASecret(ctx, key)
	if err != nil {
		return ctrl.Result{}, err
	}
	if secret == nil {
		s.ca = caNotUsable(v1alpha1.ReasonCASecretMissing, fmt.Sprintf(
			"Secret %s, named by spec.ca.provided.secretName, does not exist; create it with %s, %s, %s and %s",
			key, ca.SecretKeyCACert, ca.SecretKeyCAKey, ca.SecretKeyRootCert, ca.SecretKeyCertChain))
		return ctrl.Result{}, nil // the Secret watch brings us back when it appears
	}
	var recheck time.Duration
	s.ca, recheck = checkCASecret(secret, "meshd signs nothing with it until it is fixed.")
	return ctrl.Result{RequeueAfter: recheck}, nil
}

// readCASecret reads around the cache, which holds Secrets' metadata only; nil
// when the Secret does not exist.
func (r *MeshControlPlaneReconciler) readCASecret(ctx context.Context, key client.ObjectKey) (*corev1.Secret, error) {
	secret := &corev1.Secret{}
	err := r.APIReader.Get(ctx, key, secret)
	switch {
	case apierrors.IsNotFound(err):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("reading CA Secret %s: %w", key, err)
	}
	return secret, nil
}

// checkCASecret validates the bundle in secret the way meshd will load it. A
// valid one is looked at again when it expires, so that CAReady turns False then.
//
// The message comes from ca.BundleError, which names the Secret key at fault
// and never holds key material.
func checkCASecret(secret *corev1.Secret, invalidHint string) (*caCheck, time.Duration) {
	name := objectName(secret)
	authority, err := ca.NewAuthority(ca.BundleFromSecretData(secret.Data))
	if err != nil {
		var bundleErr *ca.BundleError
		if errors.As(err, &bundleErr) {
			return caNotUsable(v1alpha1.ReasonCAInvalid, fmt.Sprintf("CA Secret %s is invalid (%s): %s. %s",
				name, bundleErr.Reason, bundleErr.Error(), invalidHint)), 0
		}
		return caNotUsable(v1alpha1.ReasonCAInvalid, fmt.Sprintf("CA Secret %s is invalid: %v. %s", name, err, invalidHint)), 0
	}
	notAfter := authority.NotAfter()
	return caUsable(v1alpha1.ReasonCAValid, fmt.Sprintf("CA Secret %s is valid until %s",
		name, notAfter.UTC().Format(time.RFC3339))), time.Until(notAfter) + time.Second
}

// reconcileCertManagerCA checks that the issuer exists; meshd sends the
// CertificateRequests, the operator signs nothing.
func (r *MeshControlPlaneReconciler) reconcileCertManagerCA(ctx context.Context, s *scope) (ctrl.Result, error) {
	var ref v1alpha1.IssuerReference
	if cm := s.mcp.Spec.CA.CertManager; cm != nil { // required by the schema for this type
		ref = cm.IssuerRef
	}
	gk := schema.GroupKind{
		Group: cmp.Or(ref.Group, v1alpha1.DefaultIssuerGroup),
		Kind:  cmp.Or(ref.Kind, v1alpha1.DefaultIssuerKind),
	}
	recheck := ctrl.Result{RequeueAfter: caRecheckInterval}

	mapping, err := r.RESTMapper().RESTMapping(gk)
	if meta.IsNoMatchError(err) {
		missing := "cert-manager is not installed"
		if gk.Group != v1alpha1.DefaultIssuerGroup {
			missing = fmt.Sprintf("the external issuer of group %q is not installed", gk.Group)
		}
		s.ca = caNotUsable(v1alpha1.ReasonCertManagerNotInstalled, fmt.Sprintf(
			"%s: the API server does not serve %s (spec.ca.certManager.issuerRef)", missing, gk))
		return recheck, nil
	}
	if err != nil {
		return ctrl.Result{}, fmt.Errorf("looking up the API of %s: %w", gk, err)
	}

	issuer := &unstructured.Unstructured{}
	issuer.SetGroupVersionKind(mapping.GroupVersionKind)
	key := client.ObjectKey{Name: ref.Name}
	if mapping.Scope.Name() == meta.RESTScopeNameNamespace {
		key.Namespace = s.mcp.Spec.Namespace
	}
	described := gk.Kind + " " + key.Name
	if key.Namespace != "" {
		described = gk.Kind + " " + key.String()
	}
	err = r.APIReader.Get(ctx, key, issuer)
	switch {
	case err == nil:
		s.ca = caUsable(v1alpha1.ReasonIssuerFound, described+" exists; meshd sends it a CertificateRequest per workload certificate")
		return ctrl.Result{}, nil
	case apierrors.IsNotFound(err) || meta.IsNoMatchError(err):
		msg := described + ", named by spec.ca.certManager.issuerRef, does not exist"
		if key.Namespace != "" {
			msg += " (an Issuer must be in the control-plane namespace; use a ClusterIssuer otherwise)"
		}
		s.ca = caNotUsable(v1alpha1.ReasonIssuerNotFound, msg)
		return recheck, nil
	case apierrors.IsForbidden(err):
		s.ca = &caCheck{status: metav1.ConditionUnknown, reason: v1alpha1.ReasonIssuerNotChecked, message: fmt.Sprintf(
			"The operator may not read %s (%v); grant its ClusterRole get on %s to have the issuer checked",
			described, err, mapping.Resource.GroupResource())}
		return recheck, nil
	default:
		return ctrl.Result{}, fmt.Errorf("reading %s: %w", described, err)
	}
}

// TrimSecretMetadata is the cache transform for the Secrets the CA watch sees:
// their metadata without annotations, where kubectl's
// last-applied-configuration keeps a copy of a Secret's data, and without
// managedFields. The watch needs names and resourceVersions only.
func TrimSecretMetadata(in any) (any, error) {
	if obj, err := meta.Accessor(in); err == nil {
		obj.SetAnnotations(nil)
		obj.SetManagedFields(nil)
	}
	return in, nil
}

// meshesUsingSecret maps a Secret event to the MeshControlPlanes whose CA it
// holds. Every other Secret of the cluster maps to nothing, so a steady cluster
// causes no reconciles.
func (r *MeshControlPlaneReconciler) meshesUsingSecret(ctx context.Context, secret client.Object) []reconcile.Request {
	var meshes v1alpha1.MeshControlPlaneList
	if err := r.List(ctx, &meshes); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "Listing MeshControlPlanes for a Secret change failed",
			"secret", client.ObjectKeyFromObject(secret).String())
		return nil
	}
	var out []reconcile.Request
	for i := range meshes.Items {
		mcp := &meshes.Items[i]
		if mcp.Spec.Namespace == secret.GetNamespace() && mcp.Spec.CA.SecretName() == secret.GetName() {
			out = append(out, reconcile.Request{NamespacedName: client.ObjectKeyFromObject(mcp)})
		}
	}
	return out
}
