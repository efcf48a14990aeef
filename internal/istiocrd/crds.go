// Package istiocrd builds the CustomResourceDefinitions of Istio's config kinds
// (networking.istio.io, security.istio.io, telemetry.istio.io) from the protobuf
// descriptors compiled into istio.io/api, so that existing Istio YAML, in every
// apiVersion Istio serves, is accepted as it is.
//
// The schemas come from the descriptors, not from Istio's CRD files: what the
// protos say a field is, the API server checks and keeps; nothing is copied.
package istiocrd

import (
	"fmt"
	"slices"
	"strings"
	"sync"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// Labels on every CRD of this package, besides v1alpha1.LabelManagedBy.
const (
	LabelPartOf = "app.kubernetes.io/part-of"
	PartOf      = "meshplane"
)

// categoryAll is Istio's category for all its config: `kubectl get istio-io`.
const categoryAll = "istio-io"

// CRDs returns the CRDs of every Istio config kind Meshplane accepts, sorted by
// name. They are built once; each call returns copies the caller may change.
func CRDs() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	built, err := buildOnce()
	if err != nil {
		return nil, err
	}
	out := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(built))
	for _, crd := range built {
		out = append(out, crd.DeepCopy())
	}
	return out, nil
}

var buildOnce = sync.OnceValues(buildAll)

func buildAll() ([]*apiextensionsv1.CustomResourceDefinition, error) {
	crds := make([]*apiextensionsv1.CustomResourceDefinition, 0, len(kinds))
	for _, k := range kinds {
		crd, err := build(k)
		if err != nil {
			return nil, fmt.Errorf("building the CRD of %s.%s: %w", k.kind, k.group, err)
		}
		crds = append(crds, crd)
	}
	slices.SortFunc(crds, func(a, b *apiextensionsv1.CustomResourceDefinition) int {
		return strings.Compare(a.Name, b.Name)
	})
	return crds, nil
}

func build(k kind) (*apiextensionsv1.CustomResourceDefinition, error) {
	if !slices.Contains(k.versions, k.storage) {
		return nil, fmt.Errorf("storage version %s is not served (%v)", k.storage, k.versions)
	}
	spec, err := messageSchema(k.spec.ProtoReflect().Descriptor())
	if err != nil {
		return nil, err
	}
	spec.Description = k.description
	root := apiextensionsv1.JSONSchemaProps{
		Type: "object",
		Description: fmt.Sprintf("Istio %s (%s), schema from istio.io/api's %s descriptor.",
			k.kind, k.group, k.spec.ProtoReflect().Descriptor().FullName()),
		Properties: map[string]apiextensionsv1.JSONSchemaProps{
			"spec": spec,
			// Istio writes conditions and analyzer messages here; their shape is
			// Istio's business, so nothing in it is pruned.
			"status": preserveUnknownObject(),
		},
	}

	crd := &apiextensionsv1.CustomResourceDefinition{
		TypeMeta: metav1.TypeMeta{
			APIVersion: apiextensionsv1.SchemeGroupVersion.String(),
			Kind:       "CustomResourceDefinition",
		},
		ObjectMeta: metav1.ObjectMeta{
			Name: k.plural + "." + k.group,
			Labels: map[string]string{
				v1alpha1.LabelManagedBy: v1alpha1.ManagedByOperator,
				LabelPartOf:             PartOf,
			},
		},
		Spec: apiextensionsv1.CustomResourceDefinitionSpec{
			Group: k.group,
			Names: apiextensionsv1.CustomResourceDefinitionNames{
				Plural:     k.plural,
				Singular:   strings.ToLower(k.kind),
				Kind:       k.kind,
				ListKind:   k.kind + "List",
				ShortNames: k.shortNames,
				Categories: []string{categoryAll, strings.ReplaceAll(k.group, ".", "-")},
			},
			Scope: apiextensionsv1.NamespaceScoped,
			// Every version has the same schema, so objects need no conversion.
			Conversion: &apiextensionsv1.CustomResourceConversion{Strategy: apiextensionsv1.NoneConverter},
		},
	}
	for _, version := range k.versions {
		crd.Spec.Versions = append(crd.Spec.Versions, apiextensionsv1.CustomResourceDefinitionVersion{
			Name:                     version,
			Served:                   true,
			Storage:                  version == k.storage,
			Schema:                   &apiextensionsv1.CustomResourceValidation{OpenAPIV3Schema: root.DeepCopy()},
			Subresources:             &apiextensionsv1.CustomResourceSubresources{Status: &apiextensionsv1.CustomResourceSubresourceStatus{}},
			AdditionalPrinterColumns: slices.Clone(k.columns),
		})
	}
	return crd, nil
}
