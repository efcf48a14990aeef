package controllers

import (
	"context"
	"errors"
	"fmt"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// managedKind is a kind of object the charts may render. The list is closed: the
// operator refuses to apply any other kind, so pruning and uninstall, which look
// only at these kinds, can never miss an object.
type managedKind struct {
	gvk       schema.GroupVersionKind
	newObject func() client.Object
	newList   func() client.ObjectList
}

var managedKinds = []managedKind{
	kindOf(&corev1.ServiceAccount{}, corev1.SchemeGroupVersion.WithKind("ServiceAccount"), &corev1.ServiceAccountList{}),
	kindOf(&corev1.ConfigMap{}, corev1.SchemeGroupVersion.WithKind("ConfigMap"), &corev1.ConfigMapList{}),
	kindOf(&corev1.Service{}, corev1.SchemeGroupVersion.WithKind("Service"), &corev1.ServiceList{}),
	kindOf(&appsv1.Deployment{}, appsv1.SchemeGroupVersion.WithKind("Deployment"), &appsv1.DeploymentList{}),
	kindOf(&rbacv1.Role{}, rbacv1.SchemeGroupVersion.WithKind("Role"), &rbacv1.RoleList{}),
	kindOf(&rbacv1.RoleBinding{}, rbacv1.SchemeGroupVersion.WithKind("RoleBinding"), &rbacv1.RoleBindingList{}),
	kindOf(&rbacv1.ClusterRole{}, rbacv1.SchemeGroupVersion.WithKind("ClusterRole"), &rbacv1.ClusterRoleList{}),
	kindOf(&rbacv1.ClusterRoleBinding{}, rbacv1.SchemeGroupVersion.WithKind("ClusterRoleBinding"), &rbacv1.ClusterRoleBindingList{}),
	kindOf(&admissionregistrationv1.MutatingWebhookConfiguration{},
		admissionregistrationv1.SchemeGroupVersion.WithKind("MutatingWebhookConfiguration"),
		&admissionregistrationv1.MutatingWebhookConfigurationList{}),
	kindOf(&admissionregistrationv1.ValidatingWebhookConfiguration{},
		admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingWebhookConfiguration"),
		&admissionregistrationv1.ValidatingWebhookConfigurationList{}),
}

func kindOf(prototype client.Object, gvk schema.GroupVersionKind, list client.ObjectList) managedKind {
	return managedKind{
		gvk:       gvk,
		newObject: func() client.Object { return prototype.DeepCopyObject().(client.Object) },
		newList:   func() client.ObjectList { return list.DeepCopyObject().(client.ObjectList) },
	}
}

// ManagedObjects returns an empty object of every kind the operator installs, for
// callers (the manager's cache configuration) that need to name them.
func ManagedObjects() []client.Object {
	objs := make([]client.Object, 0, len(managedKinds))
	for _, k := range managedKinds {
		objs = append(objs, k.newObject())
	}
	return objs
}

func isManaged(gvk schema.GroupVersionKind) bool {
	for _, k := range managedKinds {
		if k.gvk == gvk {
			return true
		}
	}
	return false
}

// apply server-side-applies one rendered object, owned by the MeshControlPlane.
func (r *MeshControlPlaneReconciler) apply(ctx context.Context, mcp *v1alpha1.MeshControlPlane, rendered *unstructured.Unstructured) error {
	obj := rendered.DeepCopy()
	if !isManaged(obj.GroupVersionKind()) {
		return fmt.Errorf("the charts rendered %s %q, a kind the operator does not manage", obj.GetKind(), obj.GetName())
	}
	labels := obj.GetLabels()
	if labels[v1alpha1.LabelMeshControlPlane] != mcp.Name || labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByOperator {
		return fmt.Errorf("the charts rendered %s %q without the labels the operator finds its objects by", obj.GetKind(), obj.GetName())
	}
	obj.SetOwnerReferences([]metav1.OwnerReference{{
		APIVersion:         v1alpha1.GroupVersion.String(),
		Kind:               "MeshControlPlane",
		Name:               mcp.Name,
		UID:                mcp.UID,
		Controller:         ptr.To(true),
		BlockOwnerDeletion: ptr.To(true),
	}})
	err := r.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj), client.FieldOwner(FieldOwner), client.ForceOwnership)
	if err != nil {
		return fmt.Errorf("applying %s %s: %w", obj.GetKind(), objectName(obj), err)
	}
	return nil
}

// prune deletes installed objects that the current spec no longer renders, e.g.
// a gateway removed from spec.gateways.
func (r *MeshControlPlaneReconciler) prune(ctx context.Context, mcp *v1alpha1.MeshControlPlane, desired []*unstructured.Unstructured) error {
	want := make(map[string]bool, len(desired))
	for _, obj := range desired {
		want[inventoryKey(obj.GroupVersionKind(), obj.GetNamespace(), obj.GetName())] = true
	}
	installed, err := ListInstalled(ctx, r.Client, mcp.Name)
	var errs []error
	for _, obj := range installed {
		if want[inventoryKey(obj.GVK, obj.GetNamespace(), obj.GetName())] {
			continue
		}
		if owner := metav1.GetControllerOf(obj); owner == nil || owner.UID != mcp.UID {
			continue // labelled like ours but not ours: leave it alone
		}
		errs = append(errs, r.deleteObject(ctx, obj))
	}
	return errors.Join(append(errs, err)...)
}

// deleteInstalled deletes every object installed for the MeshControlPlane. It
// lists through the API server rather than the cache so that an object the cache
// has not seen yet is not left behind.
func (r *MeshControlPlaneReconciler) deleteInstalled(ctx context.Context, mcp *v1alpha1.MeshControlPlane) error {
	installed, err := ListInstalled(ctx, r.APIReader, mcp.Name)
	errs := []error{err}
	for _, obj := range installed {
		if obj.GetDeletionTimestamp().IsZero() {
			errs = append(errs, r.deleteObject(ctx, obj))
		}
	}
	return errors.Join(errs...)
}

func (r *MeshControlPlaneReconciler) deleteObject(ctx context.Context, obj InstalledObject) error {
	err := r.Delete(ctx, obj.Object, client.PropagationPolicy(metav1.DeletePropagationBackground))
	if client.IgnoreNotFound(err) != nil {
		return fmt.Errorf("deleting %s %s: %w", obj.GVK.Kind, objectName(obj), err)
	}
	return nil
}

// InstalledObject is an object found by the operator's labels.
type InstalledObject struct {
	GVK schema.GroupVersionKind
	client.Object
}

// ListInstalled finds every object installed for the MeshControlPlane of the
// given name, by its labels, across all the kinds the operator manages. Objects
// of the kinds it could list are returned even when listing another kind failed.
func ListInstalled(ctx context.Context, reader client.Reader, mcpName string) ([]InstalledObject, error) {
	selector := client.MatchingLabels{
		v1alpha1.LabelManagedBy:        v1alpha1.ManagedByOperator,
		v1alpha1.LabelMeshControlPlane: mcpName,
	}
	var out []InstalledObject
	var errs []error
	for _, kind := range managedKinds {
		list := kind.newList()
		if err := reader.List(ctx, list, selector); err != nil {
			errs = append(errs, fmt.Errorf("listing installed %s: %w", kind.gvk.Kind, err))
			continue
		}
		_ = meta.EachListItem(list, func(o runtime.Object) error {
			out = append(out, InstalledObject{GVK: kind.gvk, Object: o.(client.Object)})
			return nil
		})
	}
	return out, errors.Join(errs...)
}

func inventoryKey(gvk schema.GroupVersionKind, namespace, name string) string {
	return gvk.GroupKind().String() + "/" + namespace + "/" + name
}

func objectName(obj client.Object) string {
	if obj.GetNamespace() == "" {
		return obj.GetName()
	}
	return obj.GetNamespace() + "/" + obj.GetName()
}
