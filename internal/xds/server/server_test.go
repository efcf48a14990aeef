package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

var fast = Debounce{Quiet: 20 * time.Millisecond, Max: 200 * time.Millisecond}

const (
	sidecarA = "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local"
	routerB  = "b.ns"
)

// TestSotwAndDeltaConverge: an Envoy-like SotW client and an Envoy-like
// delta client both get consistent configuration and ACK it; a world update
// reaches both, as EDS only; an unchanged world sends nothing.
func TestSotwAndDeltaConverge(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	h.srv.Update(testWorld(3, 2))

	a := newSotw(t, h.addr, node(sidecarA, nil))
	a.syncEnvoy()
	b := newDelta(t, h.addr, node(routerB, map[string]any{"proxy_type": "router"}))
	b.syncEnvoy()

	for _, have := range []map[string]map[string]types.Resource{a.have, b.have} {
		for _, typ := range xds.Types {
			if got := len(have[typ]); got != 3 {
				t.Errorf("%s: got %d resources, want 3", typ, got)
			}
		}
	}

	// Every type ACKed at the version set, by both.
	eventually(t, "both proxies ACK everything", func() bool {
		sz := h.syncz()
		for _, id := range []string{sidecarA, routerB} {
			p, ok := sz[id]
			if !ok || len(p.Types) < 4 {
				return false
			}
			for _, ts := range p.Types {
				if ts.Set == "" || ts.Acked != ts.Set || ts.Sent != ts.Set || ts.LastNack != nil {
					return false
				}
			}
		}
		return true
	})
	sz := h.syncz()
	if p := sz[sidecarA]; p.Type != "sidecar" || p.Namespace != "ns" || p.Pod != "a" || p.IP != "10.0.0.1" || p.Workload != "ns/a" {
		t.Errorf("sidecar identity: %+v", p)
	}
	if p := sz[routerB]; p.Type != "router" || p.Namespace != "ns" || p.Pod != "b" || p.Workload != "ns/b" {
		t.Errorf("router identity: %+v", p)
	}
	if got := h.metric("meshd_xds_connected_proxies", "type", "sidecar"); got != 1 {
		t.Errorf("connected sidecars: %v", got)
	}
	if got := h.metric("meshd_xds_connected_proxies", "type", "router"); got != 1 {
		t.Errorf("connected routers: %v", got)
	}

	// One endpoint added to svc-1: only EDS moves.
	w := testWorld(3, 2)
	w.Services[1].Endpoints = append(w.Services[1].Endpoints, &model.Endpoint{
		Address: "10.1.1.9", Ports: map[string]int32{"grpc-api": 8080}, Ready: true,
	})
	h.srv.Update(w)
	cn := clusterName(w.Services[1], 9090)

	r := a.recv()
	if r.GetTypeUrl() != resourcev3.EndpointType {
		t.Fatalf("SotW: got %s, want EDS only", r.GetTypeUrl())
	}
	a.handle(r, "")
	if got := endpointCount(a.have[resourcev3.EndpointType][cn]); got != 3 {
		t.Errorf("SotW: %s has %d endpoints, want 3", cn, got)
	}
	d := b.recv()
	if d.GetTypeUrl() != resourcev3.EndpointType || len(d.GetResources()) != 1 || d.GetResources()[0].GetName() != cn {
		t.Fatalf("delta: got %s with %d resources, want only EDS %s", d.GetTypeUrl(), len(d.GetResources()), cn)
	}
	b.handle(d)
	if got := endpointCount(b.have[resourcev3.EndpointType][cn]); got != 3 {
		t.Errorf("delta: %s has %d endpoints, want 3", cn, got)
	}
	a.none(300 * time.Millisecond)
	b.none(0)
	eventually(t, "convergence observed for both proxies", func() bool {
		return h.metric("meshd_xds_convergence_seconds") >= 2
	})

	// The same world again, as new objects: a round runs, nothing is sent.
	pushes := h.metric("meshd_xds_pushes_total", "type", "eds")
	sets := h.metric("meshd_xds_push_duration_seconds")
	rounds := h.srv.rounds.Load()
	w2 := testWorld(3, 2)
	w2.Services[1].Endpoints = append(w2.Services[1].Endpoints, &model.Endpoint{
		Address: "10.1.1.9", Ports: map[string]int32{"grpc-api": 8080}, Ready: true,
	})
	h.srv.Update(w2)
	eventually(t, "a push round", func() bool { return h.srv.rounds.Load() > rounds })
	a.none(300 * time.Millisecond)
	b.none(0)
	if got := h.metric("meshd_xds_pushes_total", "type", "eds"); got != pushes {
		t.Errorf("EDS pushes went from %v to %v on an unchanged world", pushes, got)
	}
	if got := h.metric("meshd_xds_push_duration_seconds"); got != sets {
		t.Errorf("snapshots set went from %v to %v on an unchanged world", sets, got)
	}

	// A new service: both get the new cluster, listener, route and endpoints.
	h.srv.Update(testWorld(4, 2))
	deadline := time.Now().Add(wait)
	for len(a.have[resourcev3.ClusterType]) != 4 || !a.synced() {
		if time.Now().After(deadline) {
			t.Fatal("SotW client did not get the new service")
		}
		a.handle(a.recv(), "")
	}
	for len(b.have[resourcev3.ClusterType]) != 4 || !holdsConsistent(b.have) {
		if time.Now().After(deadline) {
			t.Fatal("delta client did not get the new service")
		}
		b.handle(b.recv())
	}
	if len(b.have[resourcev3.EndpointType]) != 4 || len(b.have[resourcev3.RouteType]) != 4 {
		t.Errorf("delta client: %d endpoints, %d routes, want 4 each", len(b.have[resourcev3.EndpointType]), len(b.have[resourcev3.RouteType]))
	}
}

// TestSubsetRequest: a grpc-go-like SotW client asking for ONE listener out
// of several gets it at once, then a second one added at the same version;
// the same for clusters. (With an ADS-mode cache it would wait forever.)
func TestSubsetRequest(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	w := testWorld(3, 1)
	h.srv.Update(w)
	c := newSotw(t, h.addr, node("grpc-client", map[string]any{"PROXY_TYPE": "grpc", "NAMESPACE": "ns", "POD_NAME": "c"}))

	l1, l2 := routeName(w.Services[1], 9090), routeName(w.Services[2], 9090)
	start := time.Now()
	c.subscribe(resourcev3.ListenerType, l1)
	r := c.recv()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("subset answered after %v", took)
	}
	if got := names(unpack(t, r.GetResources())); !slices.Equal(got, []string{l1}) {
		t.Fatalf("listeners: got %v, want [%s]", got, l1)
	}
	// Add a name while ACKing: answered at the same version with both.
	c.names[resourcev3.ListenerType] = []string{l1, l2}
	c.request(resourcev3.ListenerType, []string{l1, l2}, r.GetVersionInfo(), r.GetNonce(), "")
	r2 := c.recv()
	if got := names(unpack(t, r2.GetResources())); !slices.Equal(got, []string{l1, l2}) {
		t.Fatalf("listeners: got %v, want [%s %s]", got, l1, l2)
	}
	if r2.GetVersionInfo() != r.GetVersionInfo() {
		t.Errorf("version changed from %s to %s without a change", r.GetVersionInfo(), r2.GetVersionInfo())
	}
	c.request(resourcev3.ListenerType, []string{l1, l2}, r2.GetVersionInfo(), r2.GetNonce(), "")

	cn := clusterName(w.Services[0], 9090)
	c.subscribe(resourcev3.ClusterType, cn)
	r = c.recv()
	if got := names(unpack(t, r.GetResources())); r.GetTypeUrl() != resourcev3.ClusterType || !slices.Equal(got, []string{cn}) {
		t.Fatalf("clusters: got %s %v, want [%s]", r.GetTypeUrl(), got, cn)
	}
	c.request(resourcev3.ClusterType, []string{cn}, r.GetVersionInfo(), r.GetNonce(), "")
	c.subscribe(resourcev3.EndpointType, cn)
	r = c.recv()
	if got := names(unpack(t, r.GetResources())); r.GetTypeUrl() != resourcev3.EndpointType || !slices.Equal(got, []string{cn}) {
		t.Fatalf("endpoints: got %s %v, want [%s]", r.GetTypeUrl(), got, cn)
	}
	if p := h.syncz()["grpc-client"]; p.Type != "grpc" || p.Workload != "ns/c" {
		t.Errorf("grpc proxy identity: %+v", p)
	}
}

// TestNack: a NACK shows in /debug/syncz and the NACK counter, is not
// answered with the rejected version again, and leaves another proxy alone.
func TestNack(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	h.srv.Update(testWorld(2, 1))

	a := newSotw(t, h.addr, node(sidecarA, nil))
	a.subscribe(resourcev3.ClusterType)
	a.subscribe(resourcev3.ListenerType)
	var nacked string
	for !a.synced() {
		r := a.recv()
		if r.GetTypeUrl() == resourcev3.ListenerType && nacked != "" && r.GetVersionInfo() == nacked {
			t.Fatalf("the NACKed listener version was sent again")
		}
		if r.GetTypeUrl() == resourcev3.ListenerType && nacked == "" {
			nacked = r.GetVersionInfo()
			a.handle(r, "listener rejected: bad filter")
			// What the client holds: the listeners it would have kept.
			a.have[resourcev3.ListenerType] = unpack(t, r.GetResources())
			_, rn := dependentNames(resourcev3.ListenerType, a.have[resourcev3.ListenerType])
			a.names[resourcev3.RouteType] = rn
			a.request(resourcev3.RouteType, rn, "", "", "")
			continue
		}
		a.handle(r, "")
	}
	b := newDelta(t, h.addr, node(routerB, map[string]any{"PROXY_TYPE": "router"}))
	b.syncEnvoy()

	// No NACK loop: the rejected version is not sent again.
	a.none(300 * time.Millisecond)

	eventually(t, "NACK in syncz", func() bool {
		ts := h.syncz()[sidecarA].Types[resourcev3.ListenerType]
		return ts.LastNack != nil
	})
	sz := h.syncz()
	ts := sz[sidecarA].Types[resourcev3.ListenerType]
	if ts.LastNack.Error != "listener rejected: bad filter" || ts.LastNack.Version != nacked {
		t.Errorf("last NACK: %+v, want version %s", ts.LastNack, nacked)
	}
	if ts.Acked != "" || ts.Sent != nacked || ts.Set != nacked {
		t.Errorf("sidecar LDS status: %+v", ts)
	}
	if got := h.metric("meshd_xds_nacks_total", "type", "lds"); got != 1 {
		t.Errorf("LDS NACKs: %v, want 1", got)
	}
	eventually(t, "router ACKs everything", func() bool {
		p := h.syncz()[routerB]
		for _, ts := range p.Types {
			if ts.Acked != ts.Set || ts.LastNack != nil {
				return false
			}
		}
		return len(p.Types) >= 4
	})
	for typ, ts := range h.syncz()[sidecarA].Types {
		if typ != resourcev3.ListenerType && (ts.Acked != ts.Set || ts.LastNack != nil) {
			t.Errorf("sidecar %s: %+v", typ, ts)
		}
	}

	// A new listener version is sent to the NACKing proxy.
	h.srv.Update(testWorld(3, 1))
	for {
		r := a.recv()
		if r.GetTypeUrl() == resourcev3.ListenerType {
			if r.GetVersionInfo() == nacked || len(r.GetResources()) != 3 {
				t.Fatalf("after the change: listener version %s with %d resources", r.GetVersionInfo(), len(r.GetResources()))
			}
			break
		}
		a.handle(r, "")
	}
}

// TestDebounce: a burst of 50 updates makes few builds, and the last world
// wins; a steady stream of updates still pushes every Max.
func TestDebounce(t *testing.T) {
	var builds atomic.Int64
	base := testGenerator("")
	counting := func(w *model.World, p *model.Proxy) (xds.Resources, error) {
		builds.Add(1)
		return base(w, p)
	}
	h := startServer(t, counting, Debounce{Quiet: 50 * time.Millisecond, Max: 2 * time.Second})
	h.srv.Update(testWorld(1, 1))
	c := newSotw(t, h.addr, node(sidecarA, nil))
	c.syncEnvoy()
	eventually(t, "the first round", func() bool { return h.srv.rounds.Load() == 1 })

	before, rounds := builds.Load(), h.srv.rounds.Load()
	for i := range 50 {
		h.srv.Update(testWorld(1, i+2))
		time.Sleep(time.Millisecond)
	}
	// The last world (51 endpoints) reaches the client.
	cn := clusterName(testWorld(1, 1).Services[0], 9090)
	for {
		r := c.recv()
		c.handle(r, "")
		if r.GetTypeUrl() == resourcev3.EndpointType && endpointCount(c.have[resourcev3.EndpointType][cn]) == 51 {
			break
		}
	}
	time.Sleep(200 * time.Millisecond) // let a trailing round, if any, run
	got := builds.Load() - before
	if got < 1 || got > 5 {
		t.Errorf("50 updates made %d builds, want 1..5", got)
	}
	t.Logf("50 updates: %d builds, %d rounds", got, h.srv.rounds.Load()-rounds)
}

func TestDebounceMax(t *testing.T) {
	h := startServer(t, testGenerator(""), Debounce{Quiet: 100 * time.Millisecond, Max: 150 * time.Millisecond})
	h.srv.Update(testWorld(1, 1))
	c := newSotw(t, h.addr, node(sidecarA, nil))
	c.syncEnvoy()
	eventually(t, "the first round", func() bool { return h.srv.rounds.Load() == 1 })
	// Updates every 10ms for 600ms never leave a 100ms quiet gap; Max forces
	// rounds anyway.
	for i := range 60 {
		h.srv.Update(testWorld(1, i+2))
		time.Sleep(10 * time.Millisecond)
	}
	if got := h.srv.rounds.Load() - 1; got < 2 || got > 20 {
		t.Errorf("600ms of updates made %d rounds, want 2..20", got)
	}
}

// TestInvalidResource: an invalid cluster is dropped and counted, its
// endpoints are dropped with it, and the rest is served.
func TestInvalidResource(t *testing.T) {
	h := startServer(t, testGenerator("svc-1"), fast)
	w := testWorld(3, 1)
	h.srv.Update(w)
	c := newSotw(t, h.addr, node(sidecarA, nil))
	c.syncEnvoy()
	bad := clusterName(w.Services[1], 9090)
	if _, ok := c.have[resourcev3.ClusterType][bad]; ok || len(c.have[resourcev3.ClusterType]) != 2 {
		t.Errorf("clusters: %v, want 2 without %s", names(c.have[resourcev3.ClusterType]), bad)
	}
	if got := h.metric("meshd_xds_invalid_resources_total", "type", "cds"); got < 1 {
		t.Errorf("invalid CDS resources: %v", got)
	}
	if got := h.metric("meshd_xds_build_errors_total", "reason", "inconsistent"); got < 1 {
		t.Errorf("inconsistent builds: %v", got)
	}
	var dump ConfigDump
	h.getJSON("/debug/config_dump?proxy="+sidecarA, &dump)
	if n := len(dump.Resources[resourcev3.EndpointType]); n != 2 {
		t.Errorf("config_dump: %d endpoints, want 2 (the invalid cluster's dropped)", n)
	}
}

// TestConfigDump returns the resources last set, and 404 for an unknown
// proxy.
func TestConfigDump(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	w := testWorld(2, 1)
	h.srv.Update(w)
	c := newSotw(t, h.addr, node(sidecarA, nil))
	c.syncEnvoy()

	var dump ConfigDump
	if code := h.getJSON("/debug/config_dump?proxy="+sidecarA, &dump); code != http.StatusOK {
		t.Fatalf("config_dump: %d", code)
	}
	if dump.Proxy != sidecarA || dump.Type != "sidecar" {
		t.Errorf("dump header: %+v", dump)
	}
	sz := h.syncz()[sidecarA]
	for _, typ := range xds.Types {
		if dump.Versions[typ] != sz.Types[typ].Set {
			t.Errorf("%s: dump version %s, syncz set %s", typ, dump.Versions[typ], sz.Types[typ].Set)
		}
		if len(dump.Resources[typ]) != 2 {
			t.Errorf("%s: %d resources, want 2", typ, len(dump.Resources[typ]))
		}
	}
	var cla struct {
		Type        string `json:"@type"`
		ClusterName string `json:"clusterName"`
	}
	if err := json.Unmarshal(dump.Resources[resourcev3.EndpointType][0], &cla); err != nil {
		t.Fatal(err)
	}
	if cla.Type != resourcev3.EndpointType || cla.ClusterName != clusterName(w.Services[0], 9090) {
		t.Errorf("first CLA: %+v", cla)
	}
	// The dump is what the client got.
	got := &endpointv3.ClusterLoadAssignment{}
	if err := unmarshalAnyJSON(dump.Resources[resourcev3.EndpointType][0], got); err != nil {
		t.Fatal(err)
	}
	if want := c.have[resourcev3.EndpointType][cla.ClusterName]; !protoEqual(got, want) {
		t.Errorf("dump %v, client has %v", got, want)
	}

	if code := h.getJSON("/debug/config_dump?proxy=nobody", &dump); code != http.StatusNotFound {
		t.Errorf("unknown proxy: %d, want 404", code)
	}
	if code := h.getJSON("/debug/config_dump", &dump); code != http.StatusBadRequest {
		t.Errorf("no proxy: %d, want 400", code)
	}
}

// TestConnectBeforeWorld: a proxy connecting before the first world waits,
// then gets it after the first update.
func TestConnectBeforeWorld(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	c := newSotw(t, h.addr, node(sidecarA, nil))
	c.subscribe(resourcev3.ClusterType)
	c.subscribe(resourcev3.ListenerType)
	c.none(100 * time.Millisecond)
	h.srv.Update(testWorld(2, 1))
	for !c.synced() {
		c.handle(c.recv(), "")
	}
}

// TestDisconnect clears the proxy's snapshot and status.
func TestDisconnect(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	h.srv.Update(testWorld(1, 1))
	c := newSotw(t, h.addr, node(sidecarA, nil))
	c.syncEnvoy()
	d := newDelta(t, h.addr, node(routerB, nil)) // unknown type: a sidecar
	d.syncEnvoy()
	if got := h.metric("meshd_xds_connected_proxies", "type", "sidecar"); got != 2 {
		t.Fatalf("connected sidecars: %v, want 2", got)
	}
	c.cancel()
	eventually(t, "the proxy to be forgotten", func() bool {
		_, listed := h.syncz()[sidecarA]
		return h.srv.proxy(sidecarA) == nil && !listed && h.metric("meshd_xds_connected_proxies", "type", "sidecar") == 1
	})
	if p := h.srv.proxy(routerB); p == nil || p.last.Load() == nil {
		t.Errorf("the other proxy lost its configuration")
	}
	// It comes back: a new stream, a new snapshot at once.
	c2 := newSotw(t, h.addr, node(sidecarA, nil))
	c2.syncEnvoy()
}

// TestMissingNodeID: a stream whose first request has no node id is ended.
func TestMissingNodeID(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	h.srv.Update(testWorld(1, 1))
	c := newSotw(t, h.addr, nil)
	c.request(resourcev3.ClusterType, nil, "", "", "")
	select {
	case _, ok := <-c.resps:
		if ok {
			t.Fatal("got a response without a node id")
		}
	case <-time.After(wait):
		t.Fatal("stream not ended")
	}
}

// TestManyProxies: every proxy of a round gets its configuration.
func TestManyProxies(t *testing.T) {
	h := startServer(t, testGenerator(""), fast)
	h.srv.Update(testWorld(5, 2))
	var clients []*sotwClient
	for i := range 10 {
		c := newSotw(t, h.addr, node(fmt.Sprintf("p%d.ns", i), map[string]any{"PROXY_TYPE": "sidecar"}))
		c.syncEnvoy()
		clients = append(clients, c)
	}
	h.srv.Update(testWorld(5, 3))
	for _, c := range clients {
		for {
			r := c.recv()
			c.handle(r, "")
			if r.GetTypeUrl() == resourcev3.EndpointType {
				break
			}
		}
		for n, r := range c.have[resourcev3.EndpointType] {
			if endpointCount(r) != 3 {
				t.Errorf("%s: %s has %d endpoints", c.node.GetId(), n, endpointCount(r))
			}
		}
	}
}
