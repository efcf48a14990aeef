package controllers

import (
	"reflect"

	appsv1 "k8s.io/api/apps/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// specOrDeletionChanged passes MeshControlPlane updates that change what the user
// asked for (generation) or start a deletion; our own status patches do neither.
func specOrDeletionChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		return e.ObjectOld.GetGeneration() != e.ObjectNew.GetGeneration() ||
			e.ObjectOld.GetDeletionTimestamp().IsZero() != e.ObjectNew.GetDeletionTimestamp().IsZero()
	}}
}

// deploymentChanged passes Deployment updates that matter to the installation:
// someone changed the object (generation, labels, annotations, owners), or its
// readiness moved. The controller-manager's other status bookkeeping is ignored.
func deploymentChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		oldD, okOld := e.ObjectOld.(*appsv1.Deployment)
		newD, okNew := e.ObjectNew.(*appsv1.Deployment)
		if !okOld || !okNew {
			return true
		}
		return metadataChanged(oldD, newD) || readinessOf(oldD) != readinessOf(newD)
	}}
}

func metadataChanged(a, b client.Object) bool {
	return a.GetGeneration() != b.GetGeneration() ||
		!equality.Semantic.DeepEqual(a.GetLabels(), b.GetLabels()) ||
		!equality.Semantic.DeepEqual(a.GetAnnotations(), b.GetAnnotations()) ||
		!equality.Semantic.DeepEqual(a.GetOwnerReferences(), b.GetOwnerReferences()) ||
		a.GetDeletionTimestamp().IsZero() != b.GetDeletionTimestamp().IsZero()
}

// contentChanged passes updates to installed objects other than Deployments when
// anything but bookkeeping changed: resourceVersion, managedFields, status, and
// the webhook caBundle, which meshd owns and may rotate.
func contentChanged() predicate.Predicate {
	return predicate.Funcs{UpdateFunc: func(e event.UpdateEvent) bool {
		oldC, errOld := comparableContent(e.ObjectOld)
		newC, errNew := comparableContent(e.ObjectNew)
		if errOld != nil || errNew != nil {
			return true
		}
		return !reflect.DeepEqual(oldC, newC)
	}}
}

func comparableContent(obj client.Object) (map[string]any, error) {
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	for _, field := range [][]string{
		{"metadata", "resourceVersion"},
		{"metadata", "managedFields"},
		{"status"},
	} {
		unstructured.RemoveNestedField(content, field...)
	}
	if webhooks, ok := content["webhooks"].([]any); ok {
		for _, w := range webhooks {
			if wm, ok := w.(map[string]any); ok {
				unstructured.RemoveNestedField(wm, "clientConfig", "caBundle")
			}
		}
	}
	return content, nil
}
