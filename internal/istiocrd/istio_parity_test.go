package istiocrd

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

// istioShippedCRDs reads the CRDs that istio.io/api ships next to its protos,
// from the module cache, to hold ours against them. Nothing is copied from
// them: they are the yardstick, the descriptors are the source.
func istioShippedCRDs(t *testing.T) map[string]*apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "istio.io/api").Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("go list -m istio.io/api: %v\n%s", err, exitErr.Stderr)
		}
		t.Fatalf("go list -m istio.io/api: %v", err)
	}
	path := filepath.Join(strings.TrimSpace(string(out)), "kubernetes", "customresourcedefinitions.gen.yaml")
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	crds := map[string]*apiextensionsv1.CustomResourceDefinition{}
	dec := utilyaml.NewYAMLOrJSONDecoder(f, 64*1024)
	for {
		crd := &apiextensionsv1.CustomResourceDefinition{}
		if err := dec.Decode(crd); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if crd.Name != "" {
			crds[crd.Name] = crd
		}
	}
	return crds
}

// TestSchemasKeepEverythingIstioKeeps holds every generated CRD to the one
// Istio 1.32 ships for the kind: the same served and storage versions, names,
// categories and printer columns, and, for every field Istio's schema has, the
// same field with the same type here. A field missing here would be pruned
// silently from YAML that works on Istio. Istio's schemas are stricter in
// places (ranges and rules written in proto comments, which descriptors do not
// carry); being laxer there is allowed, since Istio validates again on read.
func TestSchemasKeepEverythingIstioKeeps(t *testing.T) {
	istio := istioShippedCRDs(t)
	for _, ours := range mustCRDs(t) {
		t.Run(ours.Name, func(t *testing.T) {
			theirs, ok := istio[ours.Name]
			if !ok {
				t.Fatalf("istio.io/api ships no CRD %s", ours.Name)
			}
			if !slices.Equal(ours.Spec.Names.ShortNames, theirs.Spec.Names.ShortNames) ||
				!slices.Equal(ours.Spec.Names.Categories, theirs.Spec.Names.Categories) ||
				ours.Spec.Names.Kind != theirs.Spec.Names.Kind || ours.Spec.Names.Singular != theirs.Spec.Names.Singular {
				t.Errorf("names %+v, Istio's %+v", ours.Spec.Names, theirs.Spec.Names)
			}
			for _, tv := range theirs.Spec.Versions {
				ov := version(ours, tv.Name)
				if ov == nil {
					t.Errorf("version %s is not served", tv.Name)
					continue
				}
				if ov.Served != tv.Served || ov.Storage != tv.Storage {
					t.Errorf("%s: served %v storage %v, Istio's served %v storage %v", tv.Name, ov.Served, ov.Storage, tv.Served, tv.Storage)
				}
				if got, want := columns(ov.AdditionalPrinterColumns), columns(tv.AdditionalPrinterColumns); !slices.Equal(got, want) {
					t.Errorf("%s: printer columns %v, Istio's %v", tv.Name, got, want)
				}
				compareSchema(t, tv.Name+": spec",
					tv.Schema.OpenAPIV3Schema.Properties["spec"], ov.Schema.OpenAPIV3Schema.Properties["spec"])
			}
			if len(ours.Spec.Versions) != len(theirs.Spec.Versions) {
				t.Errorf("%d versions, Istio serves %d", len(ours.Spec.Versions), len(theirs.Spec.Versions))
			}
		})
	}
}

func version(crd *apiextensionsv1.CustomResourceDefinition, name string) *apiextensionsv1.CustomResourceDefinitionVersion {
	for i := range crd.Spec.Versions {
		if crd.Spec.Versions[i].Name == name {
			return &crd.Spec.Versions[i]
		}
	}
	return nil
}

func columns(cols []apiextensionsv1.CustomResourceColumnDefinition) []string {
	var out []string
	for _, c := range cols {
		out = append(out, c.Name+"="+c.JSONPath+":"+c.Type)
	}
	return out
}

// compareSchema checks that ours keeps and types everything theirs does.
func compareSchema(t *testing.T, path string, theirs, ours apiextensionsv1.JSONSchemaProps) {
	t.Helper()
	if theirs.Type != ours.Type || theirs.Format != ours.Format || theirs.Nullable != ours.Nullable ||
		theirs.XIntOrString != ours.XIntOrString ||
		(theirs.XPreserveUnknownFields != nil && *theirs.XPreserveUnknownFields) != (ours.XPreserveUnknownFields != nil && *ours.XPreserveUnknownFields) {
		t.Errorf("%s: type %q format %q nullable %v int-or-string %v preserve %v; Istio's type %q format %q nullable %v int-or-string %v preserve %v",
			path, ours.Type, ours.Format, ours.Nullable, ours.XIntOrString, ours.XPreserveUnknownFields,
			theirs.Type, theirs.Format, theirs.Nullable, theirs.XIntOrString, theirs.XPreserveUnknownFields)
	}
	if got, want := enumValues(ours), enumValues(theirs); !slices.Equal(got, want) {
		t.Errorf("%s: enum %v, Istio's %v", path, got, want)
	}
	if got, want := sorted(ours.Required), sorted(theirs.Required); !slices.Equal(got, want) {
		t.Errorf("%s: required %v, Istio's %v", path, got, want)
	}
	for name, p := range theirs.Properties {
		o, ok := ours.Properties[name]
		if !ok {
			t.Errorf("%s.%s is missing: objects using it would lose it", path, name)
			continue
		}
		compareSchema(t, path+"."+name, p, o)
	}
	if theirs.Items != nil && theirs.Items.Schema != nil {
		if ours.Items == nil || ours.Items.Schema == nil {
			t.Errorf("%s: no item schema", path)
		} else {
			compareSchema(t, path+"[]", *theirs.Items.Schema, *ours.Items.Schema)
		}
	}
	if theirs.AdditionalProperties != nil && theirs.AdditionalProperties.Schema != nil {
		if ours.AdditionalProperties == nil || ours.AdditionalProperties.Schema == nil {
			t.Errorf("%s: no additionalProperties schema", path)
		} else {
			compareSchema(t, path+"{}", *theirs.AdditionalProperties.Schema, *ours.AdditionalProperties.Schema)
		}
	}
}

func enumValues(s apiextensionsv1.JSONSchemaProps) []string {
	var out []string
	for _, v := range s.Enum {
		out = append(out, string(v.Raw))
	}
	return sorted(out)
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
