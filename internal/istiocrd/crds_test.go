package istiocrd

import (
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"k8s.io/apiextensions-apiserver/pkg/apis/apiextensions"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	structuralschema "k8s.io/apiextensions-apiserver/pkg/apiserver/schema"
	"k8s.io/apimachinery/pkg/api/equality"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"

	"github.com/meshplane/meshplane/internal/golden"
)

// Regenerate golden files with UPDATE_GOLDEN=1 go test ./internal/istiocrd/
// (or -update), then review the diff as you would review code: it is the
// schema every Istio object in the cluster is checked and pruned against.

func mustCRDs(t *testing.T) []*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	crds, err := CRDs()
	if err != nil {
		t.Fatal(err)
	}
	return crds
}

func find(t *testing.T, crds []*apiextensionsv1.CustomResourceDefinition, name string) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	for _, crd := range crds {
		if crd.Name == name {
			return crd
		}
	}
	t.Fatalf("no CRD %s", name)
	return nil
}

func TestGoldenVirtualService(t *testing.T) {
	const name = "virtualservices.networking.istio.io"
	got := manifestYAML(t, find(t, mustCRDs(t), name))
	golden.Check(t, filepath.Join("testdata", name+".golden.yaml"), got)
}

// manifestYAML is the CRD as it would be applied: without the status and
// creationTimestamp the API server sets.
func manifestYAML(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) []byte {
	t.Helper()
	content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(crd)
	if err != nil {
		t.Fatal(err)
	}
	delete(content, "status")
	unstructured.RemoveNestedField(content, "metadata", "creationTimestamp")
	out, err := yaml.Marshal(content)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestEveryKindHasACRD(t *testing.T) {
	var names []string
	for _, crd := range mustCRDs(t) {
		names = append(names, crd.Name)
	}
	want := []string{
		"authorizationpolicies.security.istio.io",
		"destinationrules.networking.istio.io",
		"envoyfilters.networking.istio.io",
		"gateways.networking.istio.io",
		"peerauthentications.security.istio.io",
		"requestauthentications.security.istio.io",
		"serviceentries.networking.istio.io",
		"sidecars.networking.istio.io",
		"telemetries.telemetry.istio.io",
		"virtualservices.networking.istio.io",
		"workloadentries.networking.istio.io",
		"workloadgroups.networking.istio.io",
	}
	if !slices.Equal(names, want) {
		t.Fatalf("CRDs (in order)\n  %v\nwant\n  %v", names, want)
	}
}

// What the API server and the operator rely on, for every CRD: labels, one
// storage version, the same schema in every version (conversion None converts
// nothing), a status subresource, a spec from the descriptors.
func TestEveryCRDIsConsistent(t *testing.T) {
	for _, crd := range mustCRDs(t) {
		t.Run(crd.Name, func(t *testing.T) {
			if crd.Labels[v1alpha1.LabelManagedBy] != v1alpha1.ManagedByOperator || crd.Labels[LabelPartOf] != PartOf {
				t.Errorf("labels %v", crd.Labels)
			}
			if len(crd.OwnerReferences) != 0 {
				t.Errorf("owner references %v: the CRDs are shared by every MeshControlPlane", crd.OwnerReferences)
			}
			if crd.Spec.Scope != apiextensionsv1.NamespaceScoped {
				t.Errorf("scope %s", crd.Spec.Scope)
			}
			if crd.Spec.Conversion == nil || crd.Spec.Conversion.Strategy != apiextensionsv1.NoneConverter {
				t.Errorf("conversion %+v", crd.Spec.Conversion)
			}
			if !slices.Contains(crd.Spec.Names.Categories, "istio-io") {
				t.Errorf("categories %v", crd.Spec.Names.Categories)
			}
			storage := 0
			first := crd.Spec.Versions[0]
			for _, v := range crd.Spec.Versions {
				if v.Storage {
					storage++
				}
				if !v.Served {
					t.Errorf("%s not served", v.Name)
				}
				if !equality.Semantic.DeepEqual(v.Schema, first.Schema) {
					t.Errorf("%s has a different schema from %s", v.Name, first.Name)
				}
				if v.Subresources == nil || v.Subresources.Status == nil {
					t.Errorf("%s has no status subresource", v.Name)
				}
			}
			if storage != 1 {
				t.Errorf("%d storage versions", storage)
			}
			spec := first.Schema.OpenAPIV3Schema.Properties["spec"]
			if spec.Type != "object" || len(spec.Properties) == 0 {
				t.Errorf("spec schema %+v", spec)
			}
			status := first.Schema.OpenAPIV3Schema.Properties["status"]
			if status.XPreserveUnknownFields == nil || !*status.XPreserveUnknownFields {
				t.Errorf("status would be pruned: %+v", status)
			}
		})
	}
}

// The API server refuses a CRD whose schema is not structural; check it here
// too, where the error names the offending path.
func TestEverySchemaIsStructural(t *testing.T) {
	for _, crd := range mustCRDs(t) {
		for _, v := range crd.Spec.Versions {
			var internal apiextensions.JSONSchemaProps
			if err := apiextensionsv1.Convert_v1_JSONSchemaProps_To_apiextensions_JSONSchemaProps(v.Schema.OpenAPIV3Schema, &internal, nil); err != nil {
				t.Fatalf("%s %s: %v", crd.Name, v.Name, err)
			}
			s, err := structuralschema.NewStructural(&internal)
			if err != nil {
				t.Errorf("%s %s: %v", crd.Name, v.Name, err)
				continue
			}
			if errs := structuralschema.ValidateStructural(field.NewPath("openAPIV3Schema"), s); len(errs) > 0 {
				t.Errorf("%s %s is not structural: %v", crd.Name, v.Name, errs.ToAggregate())
			}
		}
	}
}

func TestCRDsReturnsCopies(t *testing.T) {
	first := mustCRDs(t)
	first[0].Name = "changed"
	first[0].Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["changed"] = apiextensionsv1.JSONSchemaProps{}
	second := mustCRDs(t)
	if second[0].Name == "changed" {
		t.Fatal("a caller's change reached the next caller")
	}
	if _, found := second[0].Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"].Properties["changed"]; found {
		t.Fatal("a caller's change to a schema reached the next caller")
	}
}

// The proto names Istio accepts besides the JSON names must be kept, or YAML
// using them would lose those fields silently.
func TestProtoNamesIstioAcceptsAreKept(t *testing.T) {
	crds := mustCRDs(t)
	spec := func(name string) apiextensionsv1.JSONSchemaProps {
		return find(t, crds, name).Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	}
	http := spec("virtualservices.networking.istio.io").Properties["http"].Items.Schema
	for _, name := range []string{"mirrorPercent", "mirror_percent"} {
		if _, ok := http.Properties[name]; !ok {
			t.Errorf("VirtualService spec.http[].%s missing", name)
		}
	}
	jwt := spec("requestauthentications.security.istio.io").Properties["jwtRules"].Items.Schema
	for _, name := range []string{"jwksUri", "jwks_uri"} {
		if _, ok := jwt.Properties[name]; !ok {
			t.Errorf("RequestAuthentication spec.jwtRules[].%s missing", name)
		}
	}
	if len(protoNameAccepted) != 2 {
		t.Errorf("protoNameAccepted has %d entries; this test checks 2", len(protoNameAccepted))
	}
}

func TestEnvoyFilterPatchValueIsKeptAsWritten(t *testing.T) {
	spec := find(t, mustCRDs(t), "envoyfilters.networking.istio.io").Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"]
	value := spec.Properties["configPatches"].Items.Schema.Properties["patch"].Properties["value"]
	if value.XPreserveUnknownFields == nil || !*value.XPreserveUnknownFields {
		t.Fatalf("configPatches[].patch.value would be pruned: %+v", value)
	}
	var applyTo []string
	for _, v := range spec.Properties["configPatches"].Items.Schema.Properties["applyTo"].Enum {
		applyTo = append(applyTo, strings.Trim(string(v.Raw), `"`))
	}
	if !slices.Contains(applyTo, "HTTP_FILTER") {
		t.Fatalf("configPatches[].applyTo enum %v lacks HTTP_FILTER", applyTo)
	}
}
