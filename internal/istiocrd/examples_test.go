package istiocrd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/golang/protobuf/jsonpb" //nolint:staticcheck // Istio's own parser for its YAML; protojson refuses "5m" durations
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/protoadapt"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

// example is one hand-written object in testdata/examples, in the style of
// Istio's documentation (and, like most of it, in the oldest apiVersion).
type example struct {
	file string
	obj  *unstructured.Unstructured
}

func examples(t *testing.T) []example {
	t.Helper()
	files, err := filepath.Glob("testdata/examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no examples in testdata/examples")
	}
	var out []example
	for _, file := range files {
		raw, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, example{file: filepath.Base(file), obj: parseObject(t, raw)})
	}
	return out
}

// parseObject reads YAML as the API machinery would: integers as int64, not
// float64, so that it compares equal to what the API server returns.
func parseObject(t *testing.T, raw []byte) *unstructured.Unstructured {
	t.Helper()
	data, err := yaml.YAMLToJSON(raw)
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(data); err != nil {
		t.Fatal(err)
	}
	return obj
}

func kindFor(t *testing.T, gk schema.GroupKind) kind {
	t.Helper()
	for _, k := range kinds {
		if k.group == gk.Group && k.kind == gk.Kind {
			return k
		}
	}
	t.Fatalf("no Istio kind %s", gk)
	return kind{}
}

// The examples must be Istio config by Istio's own reading, or accepting them
// would prove little: each spec goes through jsonpb, the parser istio.io/api's
// generated UnmarshalJSON uses, here refusing unknown fields.
func TestExamplesAreValidIstioConfig(t *testing.T) {
	covered := map[string]bool{}
	for _, ex := range examples(t) {
		k := kindFor(t, ex.obj.GroupVersionKind().GroupKind())
		covered[k.kind] = true
		raw, err := json.Marshal(ex.obj.Object["spec"])
		if err != nil {
			t.Fatal(err)
		}
		msg := proto.Clone(k.spec)
		proto.Reset(msg)
		if err := (&jsonpb.Unmarshaler{}).Unmarshal(bytes.NewReader(raw), protoadapt.MessageV1Of(msg)); err != nil {
			t.Errorf("%s: Istio would not read this %s: %v", ex.file, k.kind, err)
		}
	}
	for _, k := range kinds {
		if !covered[k.kind] {
			t.Errorf("no example of %s in testdata/examples", k.kind)
		}
	}
}
