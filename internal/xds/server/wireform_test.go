package server

import (
	"bytes"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	runtimev3 "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// TestWireForm: the wire form of every resource type marshals to exactly
// the original's deterministic bytes (what go-control-plane would have sent),
// keeps the name, and is not the original.
func TestWireForm(t *testing.T) {
	var all []types.Resource
	for _, typ := range []model.ProxyType{model.ProxySidecar, model.ProxyGRPC} {
		res, err := testGenerator("")(testWorld(3, 2), &model.Proxy{ID: "p", Type: typ})
		if err != nil {
			t.Fatal(err)
		}
		for _, rt := range xds.Types {
			all = append(all, res[rt]...)
		}
	}
	rt, _ := structpb.NewStruct(map[string]any{"a": 1, "b": "x"})
	all = append(all,
		&routev3.ScopedRouteConfiguration{Name: "scope", RouteConfigurationName: "r"},
		&routev3.VirtualHost{Name: "vh", Domains: []string{"*"}},
		&tlsv3.Secret{Name: "secret", Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "c"}},
		}}},
		&runtimev3.Runtime{Name: "rt", Layer: rt},
		&corev3.TypedExtensionConfig{Name: "ext"},
		&clusterv3.Cluster{Name: "only-a-name"},
	)
	// A resource with unknown fields of its own: they follow the known ones.
	withUnknown := &clusterv3.Cluster{Name: "unknown", AltStatName: "s"}
	withUnknown.ProtoReflect().SetUnknown(protowire.AppendString(protowire.AppendTag(nil, 9999, protowire.BytesType), "u"))
	all = append(all, withUnknown)

	for _, r := range all {
		name := cache.GetResourceName(r)
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		w := wireForm(r, b)
		if w == r {
			t.Errorf("%T %s: no wire form", r, name)
			continue
		}
		if got := cache.GetResourceName(w); got != name {
			t.Errorf("%T %s: wire form named %q", r, name, got)
		}
		for _, det := range []bool{true, false} {
			out, err := proto.MarshalOptions{Deterministic: det}.Marshal(w)
			if err != nil || !bytes.Equal(out, b) {
				t.Errorf("%T %s (deterministic %v): wire form marshals to other bytes (%v)", r, name, det, err)
			}
		}
		if out, _ := cache.MarshalResource(w); !bytes.Equal(out, b) {
			t.Errorf("%T %s: MarshalResource differs", r, name)
		}
		// The memo's wire form is the same.
		if c := newMemo(nil).check(r); c.err == nil {
			if out, _ := cache.MarshalResource(c.wire); !bytes.Equal(out, b) {
				t.Errorf("%T %s: memo wire form differs", r, name)
			}
		}
	}
}

// TestWireFormFallback: when the encoding does not start with the field-1
// record, or field 1 is not a plain string, the original is kept.
func TestWireFormFallback(t *testing.T) {
	r := &clusterv3.Cluster{Name: "c", AltStatName: "s"}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	_, _, n := protowire.ConsumeTag(b)
	m := protowire.ConsumeFieldValue(1, protowire.BytesType, b[n:])
	reordered := append(append([]byte{}, b[n+m:]...), b[:n+m]...) // field 1 last
	if w := wireForm(r, reordered); w != r {
		t.Errorf("field 1 last: got a wire form")
	}
	if w := wireForm(r, b[n+m:]); w != r {
		t.Errorf("no field 1: got a wire form")
	}
	if w := wireForm(r, b[:n+m-1]); w != r {
		t.Errorf("truncated: got a wire form")
	}
	// Field 1 not a string: a message (structpb.Value's oneof) keeps its original.
	v := structpb.NewStringValue("x")
	vb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(v)
	if _, ok := any(v).(types.Resource); ok {
		if w := wireForm(v, vb); w != types.Resource(v) {
			t.Errorf("structpb.Value: got a wire form")
		}
	}
	// An empty name: field 1 is not encoded at all.
	e := &clusterv3.Cluster{AltStatName: "s"}
	eb, _ := proto.MarshalOptions{Deterministic: true}.Marshal(e)
	if w := wireForm(e, eb); w != e {
		t.Errorf("empty name: got a wire form")
	}
}
