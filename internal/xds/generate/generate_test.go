package generate

import (
	"bytes"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/internal/golden"
	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// TestGolden renders every fixture proxy's resources and compares them with
// testdata/<case>.golden.yaml. Regenerate with UPDATE_GOLDEN=1 go test ./internal/xds/generate/.
func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.world()
			res := mustGenerate(t, w, tc.proxy(w))
			got, err := RenderYAML(res)
			if err != nil {
				t.Fatal(err)
			}
			golden.Check(t, filepath.Join("testdata", tc.name+".golden.yaml"), got)
		})
	}
}

// TestAllResourcesValid walks every resource of every fixture proxy: each
// passes ValidateAll, typed configs included, references are complete, and
// names are unique and sorted.
func TestAllResourcesValid(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			w := tc.world()
			res := mustGenerate(t, w, tc.proxy(w))
			n := 0
			for _, typ := range xds.Types {
				rs, ok := res[typ]
				if !ok {
					t.Errorf("no entry for %s", typ)
				}
				for _, r := range rs {
					if err := r.(interface{ ValidateAll() error }).ValidateAll(); err != nil {
						t.Errorf("%s %q: ValidateAll: %v", typ, ResourceName(r), err)
					}
					n++
				}
				names := resourceNames(rs)
				if !slices.IsSorted(names) {
					t.Errorf("%s not sorted by name: %q", typ, names)
				}
				if len(slices.Compact(slices.Clone(names))) != len(names) {
					t.Errorf("%s names not unique: %q", typ, names)
				}
			}
			if n == 0 {
				t.Fatal("no resources")
			}
			if err := Validate(res); err != nil {
				t.Errorf("Validate: %v", err)
			}
			if err := CheckReferences(res); err != nil {
				t.Errorf("CheckReferences: %v", err)
			}
		})
	}
}

// TestDeterministic generates every case twice, from separately built worlds,
// and compares the deterministic wire bytes of every resource.
func TestDeterministic(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			w1, w2 := tc.world(), tc.world()
			a, b := wireBytes(t, mustGenerate(t, w1, tc.proxy(w1))), wireBytes(t, mustGenerate(t, w2, tc.proxy(w2)))
			if !bytes.Equal(a, b) {
				t.Fatal("two generations of the same world differ")
			}
		})
	}
}

func TestGenerateErrors(t *testing.T) {
	w := fixtureWorld(true)
	if _, err := Generate(nil, &model.Proxy{Type: model.ProxyGRPC}); err == nil {
		t.Error("nil world: no error")
	}
	if _, err := Generate(w, nil); err == nil {
		t.Error("nil proxy: no error")
	}
	if _, err := Generate(w, &model.Proxy{ID: "x", Type: "ztunnel"}); err == nil || !strings.Contains(err.Error(), "ztunnel") {
		t.Errorf("unknown proxy type: %v", err)
	}
}

func TestEmptyWorld(t *testing.T) {
	w := model.NewWorld(model.MeshConfig{}, nil, nil)
	for _, typ := range []model.ProxyType{model.ProxyGRPC, model.ProxySidecar, model.ProxyRouter} {
		res := mustGenerate(t, w, &model.Proxy{ID: "p", Type: typ, Namespace: "ns", IP: "10.0.0.1"})
		if err := Validate(res); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
		if err := CheckReferences(res); err != nil {
			t.Errorf("%s: %v", typ, err)
		}
	}
}

func mustGenerate(t testing.TB, w *model.World, p *model.Proxy) xds.Resources {
	t.Helper()
	res, err := Generate(w, p)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func resourceNames(rs []types.Resource) []string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = ResourceName(r)
	}
	return names
}

func wireBytes(t *testing.T, res xds.Resources) []byte {
	t.Helper()
	var out []byte
	for _, typ := range xds.Types {
		out = append(out, typ...)
		for _, r := range res[typ] {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r.(proto.Message))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, b...)
		}
	}
	return out
}
