package controllers

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/istiocrd"
)

// AnnotationIstioCRDHash is set on each Istio CRD the operator applies to a hash
// of what it applied. A reconcile that finds the hash it would write skips the
// apply: the CRDs are large, and every MeshControlPlane reconcile reaches here.
const AnnotationIstioCRDHash = "operator.meshplane.io/crd-hash"

// +kubebuilder:rbac:groups=apiextensions.k8s.io,resources=customresourcedefinitions,verbs=get;list;watch;create;patch;update

// reconcileIstioCRDs installs the CRDs of Istio's config kinds (VirtualService,
// DestinationRule, AuthorizationPolicy, ...) so that Istio YAML can be applied
// as soon as a mesh exists, before the control plane that reads it starts.
//
// The CRDs are cluster-scoped and shared by every MeshControlPlane, so they carry
// no owner reference and no LabelMeshControlPlane: pruning and uninstall, which
// find objects by that label, never see them. That is deliberate and must stay
// so: deleting a CRD deletes every object of its kind in the cluster, i.e. all of
// the users' routing and security config. The operator only creates and updates
// them, never deletes them.
func (r *MeshControlPlaneReconciler) reconcileIstioCRDs(ctx context.Context, _ *scope) (ctrl.Result, error) {
	desired, err := desiredIstioCRDs()
	if err != nil {
		return ctrl.Result{}, err
	}
	// Metadata only, uncached: the hashes are all this needs, and caching
	// every CRD in the cluster for it would cost more than one list.
	installed := &metav1.PartialObjectMetadataList{}
	installed.SetGroupVersionKind(apiextensionsv1.SchemeGroupVersion.WithKind("CustomResourceDefinitionList"))
	if err := r.APIReader.List(ctx, installed,
		client.MatchingLabels{v1alpha1.LabelManagedBy: v1alpha1.ManagedByOperator}); err != nil {
		return ctrl.Result{}, fmt.Errorf("listing the installed Istio CRDs: %w", err)
	}
	current := make(map[string]metav1.PartialObjectMetadata, len(installed.Items))
	for _, crd := range installed.Items {
		current[crd.Name] = crd
	}

	var result ctrl.Result
	for _, crd := range desired {
		have, found := current[crd.obj.GetName()]
		switch {
		case found && !have.DeletionTimestamp.IsZero():
			// Someone is deleting it (and with it every object of its kind);
			// recreate it once it is gone rather than patch a dying object.
			result = lowestRequeue(result, ctrl.Result{RequeueAfter: 10 * time.Second})
			continue
		case found && have.Annotations[AnnotationIstioCRDHash] == crd.hash:
			continue
		}
		obj := crd.obj.DeepCopy()
		if err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldOwner), client.ForceOwnership); err != nil {
			return ctrl.Result{}, fmt.Errorf("applying CustomResourceDefinition %s: %w", obj.GetName(), err)
		}
	}
	return result, nil
}

type desiredCRD struct {
	obj  *unstructured.Unstructured
	hash string
}

// desiredIstioCRDs are built once per process: they depend only on the
// istio.io/api descriptors compiled in.
var desiredIstioCRDs = sync.OnceValues(func() ([]desiredCRD, error) {
	crds, err := istiocrd.CRDs()
	if err != nil {
		return nil, fmt.Errorf("building the Istio CRDs: %w", err)
	}
	out := make([]desiredCRD, 0, len(crds))
	for _, crd := range crds {
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
		if err != nil {
			return nil, fmt.Errorf("converting CRD %s: %w", crd.Name, err)
		}
		obj := &unstructured.Unstructured{Object: content}
		// Not ours to set: the API server owns status and creationTimestamp.
		unstructured.RemoveNestedField(obj.Object, "status")
		unstructured.RemoveNestedField(obj.Object, "metadata", "creationTimestamp")
		raw, err := json.Marshal(obj.Object) // map keys sorted: a stable hash
		if err != nil {
			return nil, fmt.Errorf("hashing CRD %s: %w", crd.Name, err)
		}
		sum := sha256.Sum256(raw)
		hash := hex.EncodeToString(sum[:16])
		annotations := obj.GetAnnotations()
		if annotations == nil {
			annotations = map[string]string{}
		}
		annotations[AnnotationIstioCRDHash] = hash
		obj.SetAnnotations(annotations)
		out = append(out, desiredCRD{obj: obj, hash: hash})
	}
	return out, nil
})
