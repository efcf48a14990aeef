package generate

import (
	"context"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// TestGenerateGRPCMatchesGenerate: for every listener Generate gives a gRPC
// proxy, GenerateGRPC with that one name gives the listener and exactly what
// it references, byte-identical to Generate's resources; asking for all names
// gives Generate's output.
func TestGenerateGRPCMatchesGenerate(t *testing.T) {
	w := fixtureWorld(true)
	for _, pod := range []string{"client-0", "greeter-0"} {
		proxy := fixtureProxy(w, model.ProxyGRPC, "shop", pod)
		full := mustGenerate(t, w, proxy)
		names := resourceNames(full[resourcev3.ListenerType])
		for _, name := range names {
			part, err := GenerateGRPC(w, proxy, []string{name, name})
			if err != nil {
				t.Fatal(err)
			}
			if got := resourceNames(part[resourcev3.ListenerType]); !slices.Equal(got, []string{name}) {
				t.Errorf("%s: listeners %q", name, got)
			}
			if err := CheckReferences(part); err != nil {
				t.Errorf("%s: %v", name, err)
			}
			checkSubset(t, part, full)
		}
		all, err := GenerateGRPC(w, proxy, names)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(wireBytes(t, all), wireBytes(t, full)) {
			t.Errorf("%s: GenerateGRPC(all listener names) differs from Generate", pod)
		}
	}
}

func TestGenerateGRPCUnknownNames(t *testing.T) {
	w := fixtureWorld(true)
	proxy := fixtureProxy(w, model.ProxyGRPC, "shop", "greeter-0")
	res, err := GenerateGRPC(w, proxy, []string{
		"nope.shop.svc.cluster.local:80",       // no such service
		"web.shop.svc.cluster.local:81",        // no such port
		"web:080",                              // not canonical
		"db:5432",                              // short name of another namespace
		"web.shop.svc.cluster.local",           // no port
		GRPCServerListenerName("10.1.0.7", 80), // not a workload port
		GRPCServerListenerName("10.9.9.9", 50051),
		"xds.meshplane.io/grpc/lds/inbound/garbage",
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range xds.Types {
		if rs, ok := res[typ]; !ok || len(rs) != 0 {
			t.Errorf("%s: %q", typ, resourceNames(rs))
		}
	}
}

// TestGenerateGRPCAnsweredInADSMode: go-control-plane's ADS-mode cache
// answers grpc-go's named LDS request from a GenerateGRPC snapshot, and never
// answers it from Generate's full one (the trap in versions.md).
func TestGenerateGRPCAnsweredInADSMode(t *testing.T) {
	w := fixtureWorld(true)
	proxy := fixtureProxy(w, model.ProxyGRPC, "shop", "client-0")
	target := "web.shop.svc.cluster.local:9090"
	part, err := GenerateGRPC(w, proxy, []string{target})
	if err != nil {
		t.Fatal(err)
	}
	full := mustGenerate(t, w, proxy)
	for _, tc := range []struct {
		name     string
		res      xds.Resources
		answered bool
	}{{"GenerateGRPC", part, true}, {"Generate", full, false}} {
		cache := cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
		snap, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource(tc.res))
		if err != nil {
			t.Fatal(err)
		}
		if err := cache.SetSnapshot(context.Background(), proxy.ID, snap); err != nil {
			t.Fatal(err)
		}
		ch := make(chan cachev3.Response, 1)
		req := &cachev3.Request{Node: &corev3.Node{Id: proxy.ID}, TypeUrl: resourcev3.ListenerType, ResourceNames: []string{target}}
		cancel, err := cache.CreateWatch(req, streamv3.NewSotwSubscription([]string{target}, false), ch)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case resp := <-ch:
			if !tc.answered {
				t.Errorf("%s: answered; the ADS trap is gone, GenerateGRPC is no longer required", tc.name)
			} else if r, err := resp.GetDiscoveryResponse(); err != nil || len(r.GetResources()) != 1 {
				t.Errorf("%s: response %v, %v", tc.name, r, err)
			}
		default:
			if tc.answered {
				t.Errorf("%s: request for %s not answered", tc.name, target)
			}
		}
		if cancel != nil {
			cancel()
		}
	}
}

func marshalOrFail(t *testing.T, r types.Resource) []byte {
	t.Helper()
	b, err := marshal.Marshal(r.(proto.Message))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// checkSubset: every resource of part is in full, with the same bytes.
func checkSubset(t *testing.T, part, full xds.Resources) {
	t.Helper()
	for typ, rs := range part {
		for _, r := range rs {
			other := find[types.Resource](full, typ, ResourceName(r))
			if other == nil {
				t.Errorf("%s %q not in Generate's output", typ, ResourceName(r))
				continue
			}
			if string(marshalOrFail(t, r)) != string(marshalOrFail(t, other)) {
				t.Errorf("%s %q differs from Generate's", typ, ResourceName(r))
			}
		}
	}
}
