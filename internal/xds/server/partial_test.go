package server

import (
	"slices"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
)

// respNames are the names of the resources a SotW response carries, sorted.
func respNames(t *testing.T, r *discoverygrpc.DiscoveryResponse) []string {
	t.Helper()
	return names(unpack(t, r.GetResources()))
}

// TestSotwPartialEDS: SotW EDS responses carry only what the stream lacks.
// After one endpoint change an Envoy-like client receives exactly the changed
// ClusterLoadAssignment (at the new type version); a name newly requested at
// an unchanged version is sent alone, even though it did not change; a name
// dropped and requested again is sent again; a new stream gets everything;
// CDS and LDS stay complete.
func TestSotwPartialEDS(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	w := testWorld(3, 2)
	h.srv.Update(w)

	a := newSotw(t, h.addr, node(sidecarA, nil))
	a.syncEnvoy()
	all := []string{clusterName(w.Services[0], 9090), clusterName(w.Services[1], 9090), clusterName(w.Services[2], 9090)}
	if got := names(a.have[resourcev3.EndpointType]); !slices.Equal(got, all) {
		t.Fatalf("initial EDS: %v, want %v", got, all)
	}
	a.none(300 * time.Millisecond)

	// One endpoint added to svc-1.
	w = testWorld(3, 2)
	w.Services[1].Endpoints = append(w.Services[1].Endpoints, &model.Endpoint{
		Address: "10.1.1.9", Ports: map[string]int32{"grpc-api": 8080}, Ready: true,
	})
	h.srv.Update(w)
	r := a.recv()
	if r.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("got %s, want EDS", r.GetTypeUrl())
	}
	if got, want := respNames(t, r), []string{all[1]}; !slices.Equal(got, want) {
		t.Fatalf("EDS after one endpoint change carried %v, want %v", got, want)
	}
	if got := h.srv.proxy(sidecarA).last.Load().versions[resourcev3.EndpointType]; r.GetVersionInfo() != got {
		t.Errorf("EDS version_info %q, want the type version %q", r.GetVersionInfo(), got)
	}
	a.handle(r, "")
	if got := endpointCount(a.have[resourcev3.EndpointType][all[1]]); got != 3 {
		t.Errorf("%s has %d endpoints, want 3", all[1], got)
	}
	if got := names(a.have[resourcev3.EndpointType]); !slices.Equal(got, all) {
		t.Errorf("EDS held after the change: %v, want %v", got, all)
	}
	a.none(300 * time.Millisecond)

	// A grpc-go-like client adding names one at a time at an unchanged
	// version: each response carries only the new name.
	g := newSotw(t, h.addr, node("grpc-client", map[string]any{"PROXY_TYPE": "grpc", "NAMESPACE": "ns", "POD_NAME": "c"}))
	g.request(resourcev3.EndpointType, all[:1], "", "", "")
	r = g.recv()
	if got := respNames(t, r); !slices.Equal(got, all[:1]) {
		t.Fatalf("first EDS: %v, want %v", got, all[:1])
	}
	version := r.GetVersionInfo()
	g.request(resourcev3.EndpointType, all[:1], version, r.GetNonce(), "") // ACK
	g.none(300 * time.Millisecond)
	g.request(resourcev3.EndpointType, all[:2], version, r.GetNonce(), "")
	r = g.recv()
	if got := respNames(t, r); !slices.Equal(got, all[1:2]) || r.GetVersionInfo() != version {
		t.Fatalf("EDS for a newly requested name: %v at %q, want %v at %q", got, r.GetVersionInfo(), all[1:2], version)
	}
	g.request(resourcev3.EndpointType, all[:2], version, r.GetNonce(), "") // ACK
	g.none(300 * time.Millisecond)
	// all[0] dropped (forgotten by the client), then requested again.
	g.request(resourcev3.EndpointType, all[1:2], version, r.GetNonce(), "")
	g.none(300 * time.Millisecond)
	g.request(resourcev3.EndpointType, all[:2], version, r.GetNonce(), "")
	r = g.recv()
	if got := respNames(t, r); !slices.Equal(got, all[:1]) {
		t.Fatalf("EDS for a name requested again: %v, want %v", got, all[:1])
	}

	// A new stream of the same node gets everything it requests.
	b := newSotw(t, h.addr, node(sidecarA, nil))
	b.syncEnvoy()
	if got := respNames(t, b.last[resourcev3.EndpointType]); !slices.Equal(got, all) {
		t.Errorf("EDS on a new stream: %v, want %v", got, all)
	}
	if got := endpointCount(b.have[resourcev3.EndpointType][all[1]]); got != 3 {
		t.Errorf("new stream: %s has %d endpoints, want 3", all[1], got)
	}

	// A new service: CDS and LDS complete, EDS and RDS only the new ones.
	w = testWorld(4, 2)
	w.Services[1].Endpoints = append(w.Services[1].Endpoints, &model.Endpoint{
		Address: "10.1.1.9", Ports: map[string]int32{"grpc-api": 8080}, Ready: true,
	})
	h.srv.Update(w)
	seen := map[string][][]string{}
	deadline := time.Now().Add(wait)
	for len(a.have[resourcev3.ClusterType]) != 4 || !a.synced() {
		if time.Now().After(deadline) {
			t.Fatal("SotW client did not get the new service")
		}
		r := a.recv()
		seen[r.GetTypeUrl()] = append(seen[r.GetTypeUrl()], respNames(t, r))
		a.handle(r, "")
	}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		for _, got := range seen[typ] {
			if len(got) != 4 {
				t.Errorf("%s response carried %d resources, want all 4", typ, len(got))
			}
		}
	}
	for _, typ := range []string{resourcev3.EndpointType, resourcev3.RouteType} {
		for _, got := range seen[typ] {
			if len(got) > 1 {
				t.Errorf("%s response carried %v, want only the new service's", typ, got)
			}
		}
		if len(a.have[typ]) != 4 {
			t.Errorf("%s: client holds %d, want 4", typ, len(a.have[typ]))
		}
	}
}
