package server

import (
	"slices"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
)

func deltaNames(r *discoverygrpc.DeltaDiscoveryResponse) []string {
	var out []string
	for _, res := range r.GetResources() {
		out = append(out, res.GetName())
	}
	return out
}

// TestDeltaSubscriptions: a reconnecting delta client that says which
// versions it holds (initial_resource_versions) gets only what differs; a
// Service that goes away is announced in removed_resources; a name
// unsubscribed and subscribed again is sent again though unchanged; an ACK
// gets no response.
func TestDeltaSubscriptions(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	w := testWorld(3, 1)
	h.srv.Update(w)

	first := newDelta(t, h.addr, node(sidecarA, nil))
	first.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	r := first.recv()
	if len(r.GetResources()) != 3 {
		t.Fatalf("first CDS: %v", deltaNames(r))
	}
	held := map[string]string{}
	for _, res := range r.GetResources() {
		held[res.GetName()] = res.GetVersion()
	}
	c0, c1 := clusterName(w.Services[0], 9090), clusterName(w.Services[1], 9090)
	held[c1] = "stale"
	held["outbound|9090||gone.ns.svc.cluster.local"] = "whatever"

	// Reconnect holding c0 and c2 at their versions, c1 at a stale one and
	// a cluster that no longer exists.
	c := newDelta(t, h.addr, node(sidecarA, nil))
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: held})
	r = c.recv()
	if got := deltaNames(r); !slices.Equal(got, []string{c1}) {
		t.Errorf("CDS after reconnect carried %v, want only %s", got, c1)
	}
	if got := r.GetRemovedResources(); !slices.Equal(got, []string{"outbound|9090||gone.ns.svc.cluster.local"}) {
		t.Errorf("CDS after reconnect removed %v", got)
	}
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: r.GetNonce()})
	c.none(200 * time.Millisecond)

	// EDS by name; unsubscribe c0, subscribe it again: sent again.
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{c0, c1}})
	r = c.recv()
	if got := deltaNames(r); !slices.Equal(got, []string{c0, c1}) {
		t.Fatalf("EDS: %v", got)
	}
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesUnsubscribe: []string{c0}})
	c.none(200 * time.Millisecond)
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{c0}})
	r = c.recv()
	if got := deltaNames(r); !slices.Equal(got, []string{c0}) {
		t.Fatalf("EDS after subscribing again: %v, want %s", got, c0)
	}
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResponseNonce: r.GetNonce()})

	// svc-1 goes away: CDS and EDS say so.
	h.srv.Update(testWorld(1, 1)) // svc-0 only
	removed := map[string][]string{}
	deadline := time.Now().Add(wait)
	for len(removed[resourcev3.ClusterType]) == 0 || len(removed[resourcev3.EndpointType]) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no removal announced: %v", removed)
		}
		r := c.recv()
		removed[r.GetTypeUrl()] = append(removed[r.GetTypeUrl()], r.GetRemovedResources()...)
		c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: r.GetTypeUrl(), ResponseNonce: r.GetNonce()})
	}
	if got := removed[resourcev3.EndpointType]; !slices.Equal(got, []string{c1}) {
		t.Errorf("EDS removed %v, want %s (svc-2 is not subscribed)", got, c1)
	}
	if got := removed[resourcev3.ClusterType]; !slices.Contains(got, c1) || slices.Contains(got, c0) {
		t.Errorf("CDS removed %v", got)
	}
}

// TestUnaffectedSubscriberIsInSync: a client subscribed by name to a
// cluster that does not change gets no response when another cluster is
// added, and /debug/syncz still shows it in sync (sent and acked = set).
func TestUnaffectedSubscriberIsInSync(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	w := testWorld(2, 1)
	h.srv.Update(w)
	const id = "grpc-like"
	c := newSotw(t, h.addr, node(id, map[string]any{"PROXY_TYPE": "grpc", "NAMESPACE": "ns", "POD_NAME": "g"}))
	name := clusterName(w.Services[0], 9090)
	c.request(resourcev3.ClusterType, []string{name}, "", "", "")
	r := c.recv()
	c.request(resourcev3.ClusterType, []string{name}, r.GetVersionInfo(), r.GetNonce(), "")
	h.srv.Update(testWorld(3, 1)) // svc-2 added: CDS changes, not svc-0's cluster
	c.none(300 * time.Millisecond)
	eventually(t, "CDS in sync in syncz", func() bool {
		ts := h.syncz()[id].Types[resourcev3.ClusterType]
		return ts.Set != "" && ts.Set != r.GetVersionInfo() && ts.Sent == ts.Set && ts.Acked == ts.Set
	})
}
