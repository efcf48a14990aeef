package server

import (
	"bytes"
	"maps"
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// sameAssembled fails unless a and b are the same snapshot: versions, the
// resources in order (same pointers), the snapshot's items and version map.
func sameAssembled(t *testing.T, what string, a, b *assembled) {
	t.Helper()
	if !maps.Equal(a.versions, b.versions) {
		t.Errorf("%s: versions %v vs %v", what, a.versions, b.versions)
	}
	if !maps.EqualFunc(a.resources, b.resources, func(x, y []types.Resource) bool { return slices.Equal(x, y) }) {
		t.Errorf("%s: resources differ", what)
	}
	for typ, ta := range a.types {
		tb := b.types[typ]
		if tb == nil || ta.version != tb.version || len(ta.anys) != len(tb.anys) {
			t.Errorf("%s: %s results differ", what, typ)
			continue
		}
		for i := range ta.anys {
			if ta.anys[i].TypeUrl != typ || !bytes.Equal(ta.anys[i].Value, tb.anys[i].Value) ||
				!bytes.Equal(ta.anys[i].Value, marshalDet(t, ta.items[i])) {
				t.Errorf("%s: %s %s: encoded forms differ", what, typ, ta.list[i].name)
			}
		}
	}
}

// TestTypedCacheSameOutput: assemble with the per-type cache (hits in the
// current and in the previous round, shared between proxies) gives exactly
// what the uncached path gives, including with invalid resources, nil,
// nameless and duplicate resources, and lists that need repair.
func TestTypedCacheSameOutput(t *testing.T) {
	type fixture struct {
		name string
		res  func() xds.Resources
	}
	w := testWorld(4, 2)
	gen := func(invalid string, typ model.ProxyType) xds.Resources {
		res, err := testGenerator(invalid)(w, &model.Proxy{ID: "p", Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	sidecar, grpc, invalid := gen("", model.ProxySidecar), gen("", model.ProxyGRPC), gen("svc-1", model.ProxySidecar)
	fixtures := []fixture{
		{"sidecar", func() xds.Resources { return sidecar }},
		{"grpc", func() xds.Resources { return grpc }},
		{"invalid cluster", func() xds.Resources { return invalid }},
		{"missing route", func() xds.Resources {
			r := maps.Clone(grpc)
			r[resourcev3.RouteType] = r[resourcev3.RouteType][1:]
			return r
		}},
		{"reversed, nil, nameless, duplicate", func() xds.Resources {
			r := maps.Clone(sidecar)
			l := slices.Clone(r[resourcev3.ClusterType])
			slices.Reverse(l)
			l = append(l, nil, &clusterv3.Cluster{}, l[0])
			r[resourcev3.ClusterType] = l
			return r
		}},
		{"empty", func() xds.Resources { return xds.Resources{} }},
	}
	s := newTestServer(t, testGenerator(""))
	m := newMemo(nil)
	for round := range 3 {
		for _, f := range fixtures {
			want, wantErr := s.assemble("p", f.res(), nil)
			for _, proxy := range []string{"p1", "p2"} {
				got, err := s.assemble(proxy, f.res(), m)
				if (err == nil) != (wantErr == nil) {
					t.Fatalf("round %d %s %s: err %v, want %v", round, f.name, proxy, err, wantErr)
				}
				if err == nil {
					sameAssembled(t, f.name, want, got)
				}
			}
		}
		m.rotate()
	}
	// Equal content at other addresses: a new list, the same output.
	other := gen("", model.ProxySidecar)
	want, _ := s.assemble("p", other, nil)
	got, _ := s.assemble("p", other, m)
	sameAssembled(t, "other addresses", want, got)
	if a, b := got.types[resourcev3.ClusterType].anys, want.types[resourcev3.ClusterType].anys; len(a) != len(b) {
		t.Errorf("clusters: %d vs %d", len(a), len(b))
	}
}

// TestTypedCacheShares: proxies with the same lists share one result per
// type; a changed list gets its own; results unused for a round go.
func TestTypedCacheShares(t *testing.T) {
	s := newTestServer(t, testGenerator(""))
	res, _ := testGenerator("")(testWorld(3, 1), &model.Proxy{ID: "p", Type: model.ProxySidecar})
	m := newMemo(nil)
	a1, _ := s.assemble("p1", res, m)
	a2, _ := s.assemble("p2", res, m)
	for _, typ := range xds.Types {
		if &a1.resources[typ][0] != &a2.resources[typ][0] {
			t.Errorf("%s: items not shared", typ)
		}
	}
	m.rotate()
	m.rotate()
	if n := len(m.typesCur) + len(m.typesPrev); n != 0 {
		t.Errorf("after two idle rounds: %d type results held", n)
	}
}

func marshalDet(t *testing.T, r types.Resource) []byte {
	t.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
