package render

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"io"
	"maps"
	"path"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// ComponentOf returns the component an object belongs to (one of the
// v1alpha1.Component* values), or "" when it has no component label.
func ComponentOf(obj *unstructured.Unstructured) string {
	return obj.GetLabels()[v1alpha1.LabelComponent]
}

type renderedKind struct {
	gk         schema.GroupKind
	namespaced bool
}

// applyOrder lists the kinds the charts may render, in the order they are
// applied: identities and configuration before the RBAC that refers to them,
// RBAC before the workloads that need it, and the webhooks last, once the
// Service they call exists.
var applyOrder = []renderedKind{
	{schema.GroupKind{Kind: "ServiceAccount"}, true},
	{schema.GroupKind{Kind: "ConfigMap"}, true},
	{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRole"}, false},
	{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "ClusterRoleBinding"}, false},
	{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "Role"}, true},
	{schema.GroupKind{Group: "rbac.authorization.k8s.io", Kind: "RoleBinding"}, true},
	{schema.GroupKind{Kind: "Service"}, true},
	{schema.GroupKind{Group: "apps", Kind: "Deployment"}, true},
	{schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}, false},
	{schema.GroupKind{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}, false},
}

// kindIndex returns the position of gk in applyOrder, or -1.
func kindIndex(gk schema.GroupKind) int {
	return slices.IndexFunc(applyOrder, func(k renderedKind) bool { return k.gk == gk })
}

// ErrUnknownKind is returned for kinds the charts are not expected to render.
var ErrUnknownKind = errors.New("kind not rendered by meshplane charts")

// IsNamespaced says whether objects of a kind the charts render live in a
// namespace. It returns an error wrapping ErrUnknownKind for any other kind,
// rather than guessing.
func IsNamespaced(gk schema.GroupKind) (bool, error) {
	i := kindIndex(gk)
	if i < 0 {
		return false, fmt.Errorf("%s: %w", gk, ErrUnknownKind)
	}
	return applyOrder[i].namespaced, nil
}

// RenderedKinds returns the kinds the charts may render, in apply order, e.g.
// for the controller's watches and garbage collection.
func RenderedKinds() []schema.GroupKind {
	out := make([]schema.GroupKind, len(applyOrder))
	for i, k := range applyOrder {
		out[i] = k.gk
	}
	return out
}

// SortForApply sorts objects in apply order: by kind (ServiceAccount,
// ConfigMap, ClusterRole, ClusterRoleBinding, Role, RoleBinding, Service,
// Deployment, MutatingWebhookConfiguration, ValidatingWebhookConfiguration),
// then by namespace and name.
// Objects of kinds IsNamespaced does not know sort first.
func SortForApply(objs []*unstructured.Unstructured) {
	slices.SortStableFunc(objs, func(a, b *unstructured.Unstructured) int {
		return cmp.Or(
			cmp.Compare(kindIndex(a.GroupVersionKind().GroupKind()), kindIndex(b.GroupVersionKind().GroupKind())),
			cmp.Compare(a.GetNamespace(), b.GetNamespace()),
			cmp.Compare(a.GetName(), b.GetName()),
		)
	})
}

// checkUnique fails when two sorted objects are the same object: applying both
// would silently keep only the last (spec.values can rename things).
func checkUnique(sorted []*unstructured.Unstructured) error {
	for i := 1; i < len(sorted); i++ {
		a, b := sorted[i-1], sorted[i]
		if a.GroupVersionKind().GroupKind() == b.GroupVersionKind().GroupKind() &&
			a.GetNamespace() == b.GetNamespace() && a.GetName() == b.GetName() {
			return fmt.Errorf("%s %s rendered twice", a.GetKind(), path.Join(a.GetNamespace(), a.GetName()))
		}
	}
	return nil
}

// parseManifests turns a chart's rendered files into objects in namespace.
// Files are read in name order so that the result does not depend on map order.
func parseManifests(files map[string]string, namespace string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	for _, name := range slices.Sorted(maps.Keys(files)) {
		if !isManifest(name) {
			continue
		}
		fileObjs, err := parseManifest(name, files[name], namespace)
		if err != nil {
			return nil, err
		}
		objs = append(objs, fileObjs...)
	}
	return objs, nil
}

// isManifest says whether a rendered chart file holds objects; Helm also
// renders files such as NOTES.txt, which do not.
func isManifest(name string) bool {
	ext := path.Ext(name)
	return ext == ".yaml" || ext == ".yml"
}

// parseManifest parses the YAML documents of one rendered template, skipping
// empty ones (a template whose condition is false renders nothing).
func parseManifest(template, content, namespace string) ([]*unstructured.Unstructured, error) {
	var objs []*unstructured.Unstructured
	reader := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(content)))
	for doc := 1; ; doc++ {
		data, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("template %s: %w", template, err)
		}
		var m map[string]any
		// Strict: a duplicated key means a template (or a value spliced into
		// one) says two things, and silently keeping one of them hides the bug.
		if err := utilyaml.UnmarshalStrict(data, &m); err != nil {
			return nil, fmt.Errorf("template %s: document %d: %w", template, doc, err)
		}
		if len(m) == 0 {
			continue
		}
		obj := &unstructured.Unstructured{Object: m}
		if err := setScope(obj, namespace); err != nil {
			return nil, fmt.Errorf("template %s: document %d: %w", template, doc, err)
		}
		objs = append(objs, obj)
	}
}

// setScope checks that obj identifies itself and places it: in namespace when
// its kind is namespaced, in no namespace otherwise.
func setScope(obj *unstructured.Unstructured, namespace string) error {
	switch {
	case obj.GetAPIVersion() == "":
		return errors.New("object has no apiVersion")
	case obj.GetKind() == "":
		return errors.New("object has no kind")
	case obj.GetName() == "":
		return fmt.Errorf("%s has no metadata.name", obj.GetKind())
	}
	namespaced, err := IsNamespaced(obj.GroupVersionKind().GroupKind())
	if err != nil {
		return err
	}
	if namespaced {
		obj.SetNamespace(namespace)
	} else {
		obj.SetNamespace("")
	}
	return nil
}
