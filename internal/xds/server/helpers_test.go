package server

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr/funcr"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// wait bounds every wait in these tests.
const wait = 5 * time.Second

// ---- a tiny generator ----

// clusterName, routeName and listenerName follow the generators' naming.
func clusterName(svc *model.Service, port int32) string {
	return fmt.Sprintf("outbound|%d||%s", port, svc.Hostname)
}

func routeName(svc *model.Service, port int32) string {
	return fmt.Sprintf("%s:%d", svc.Hostname, port)
}

// testGenerator makes, per service port, an EDS Cluster, its
// ClusterLoadAssignment, a RouteConfiguration and a Listener using it over
// RDS: an api_listener named host:port for grpc proxies, an address
// listener for Envoys. If invalid is set, the cluster of that service is made
// invalid (negative connect timeout).
func testGenerator(invalid string) xds.Generator {
	return func(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
		res := xds.Resources{}
		ads := &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
			ResourceApiVersion:    corev3.ApiVersion_V3,
		}
		router, _ := anypb.New(&routerv3.Router{})
		for _, svc := range world.Services {
			for _, port := range svc.Ports {
				cn, rn := clusterName(svc, port.Port), routeName(svc, port.Port)
				timeout := durationpb.New(time.Second)
				if svc.Name == invalid {
					timeout = durationpb.New(-time.Second)
				}
				res[resourcev3.ClusterType] = append(res[resourcev3.ClusterType], &clusterv3.Cluster{
					Name:                 cn,
					ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
					EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads},
					ConnectTimeout:       timeout,
				})
				var lbs []*endpointv3.LbEndpoint
				for _, ep := range svc.Endpoints {
					lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
						Endpoint: &endpointv3.Endpoint{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{
							SocketAddress: &corev3.SocketAddress{
								Address:       ep.Address,
								PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(ep.Ports[port.Name])},
							},
						}}},
					}})
				}
				res[resourcev3.EndpointType] = append(res[resourcev3.EndpointType], &endpointv3.ClusterLoadAssignment{
					ClusterName: cn,
					Endpoints:   []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}},
				})
				res[resourcev3.RouteType] = append(res[resourcev3.RouteType], &routev3.RouteConfiguration{
					Name: rn,
					VirtualHosts: []*routev3.VirtualHost{{
						Name:    rn,
						Domains: []string{svc.Hostname, rn},
						Routes: []*routev3.Route{{
							Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
							Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cn}}},
						}},
					}},
				})
				hcm := &hcmv3.HttpConnectionManager{
					StatPrefix: rn,
					RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
						ConfigSource: ads, RouteConfigName: rn,
					}},
					HttpFilters: []*hcmv3.HttpFilter{{Name: "router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
				}
				hcmAny, err := anypb.New(hcm)
				if err != nil {
					return nil, err
				}
				l := &listenerv3.Listener{Name: rn}
				if proxy.Type == model.ProxyGRPC {
					l.ApiListener = &listenerv3.ApiListener{ApiListener: hcmAny}
				} else {
					l.Address = &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: svc.ClusterIP, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port.Port)},
					}}}
					l.FilterChains = []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
						Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcmAny},
					}}}}
				}
				res[resourcev3.ListenerType] = append(res[resourcev3.ListenerType], l)
			}
		}
		return res, nil
	}
}

// testWorld has n services svc-0..svc-n-1 in namespace "ns", each with a
// grpc port 9090 and eps endpoints, and workloads a, b, c.
func testWorld(n, eps int) *model.World {
	var services []*model.Service
	for i := range n {
		svc := &model.Service{
			Name: fmt.Sprintf("svc-%d", i), Namespace: "ns",
			Hostname:  model.Hostname(fmt.Sprintf("svc-%d", i), "ns", "cluster.local"),
			ClusterIP: fmt.Sprintf("10.96.0.%d", i+1),
			Ports:     []model.ServicePort{{Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC}},
		}
		for j := range eps {
			svc.Endpoints = append(svc.Endpoints, &model.Endpoint{
				Address: fmt.Sprintf("10.1.%d.%d", i, j+1), Ports: map[string]int32{"grpc-api": 8080},
				Ready: true, Serving: true,
			})
		}
		services = append(services, svc)
	}
	workloads := []*model.Workload{
		{Name: "a", Namespace: "ns", IP: "10.0.0.1", ServiceAccount: "default"},
		{Name: "b", Namespace: "ns", IP: "10.0.0.2", ServiceAccount: "default"},
		{Name: "c", Namespace: "ns", IP: "10.0.0.3", ServiceAccount: "default"},
	}
	return model.NewWorld(model.MeshConfig{TrustDomain: "cluster.local"}, services, workloads)
}

// ---- the server under test ----

type harness struct {
	t    *testing.T
	srv  *Server
	reg  *prometheus.Registry
	addr string
	http *httptest.Server
}

func startServer(t *testing.T, gen xds.Generator, d Debounce) *harness {
	t.Helper()
	reg := prometheus.NewRegistry()
	// The server may still log from its goroutines after the test ends.
	var logMu sync.Mutex
	ended := false
	t.Cleanup(func() { logMu.Lock(); ended = true; logMu.Unlock() })
	logf := func(prefix, args string) {
		logMu.Lock()
		defer logMu.Unlock()
		if !ended {
			t.Log(prefix, args)
		}
	}
	srv, err := New(Options{
		Generator: gen,
		Debounce:  d,
		Registry:  reg,
		Logger:    funcr.New(logf, funcr.Options{Verbosity: 1}),
	})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, lis) }()
	h := &harness{t: t, srv: srv, reg: reg, addr: lis.Addr().String(), http: httptest.NewServer(srv.DebugHandler())}
	t.Cleanup(func() {
		cancel()
		h.http.Close()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(wait):
			t.Errorf("Serve did not return after its context ended")
		}
	})
	return h
}

func (h *harness) syncz() map[string]SyncStatus {
	h.t.Helper()
	var list []SyncStatus
	h.getJSON("/debug/syncz", &list)
	out := map[string]SyncStatus{}
	for _, p := range list {
		out[p.ID] = p
	}
	return out
}

func (h *harness) getJSON(path string, v any) int {
	h.t.Helper()
	resp, err := http.Get(h.http.URL + path)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			h.t.Fatalf("GET %s: %v", path, err)
		}
	}
	return resp.StatusCode
}

// metric returns a counter's or gauge's value, or a histogram's sample count.
func (h *harness) metric(name string, labels ...string) float64 {
	h.t.Helper()
	families, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metrics:
		for _, m := range f.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if labelValue(m, labels[i]) != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// eventually polls cond until it holds or wait passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// ---- xDS clients ----

func dial(t *testing.T, addr string) discoverygrpc.AggregatedDiscoveryServiceClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return discoverygrpc.NewAggregatedDiscoveryServiceClient(conn)
}

func node(id string, metadata map[string]any) *corev3.Node {
	md, err := structpb.NewStruct(metadata)
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, Metadata: md}
}

// sotwClient is a state-of-the-world ADS client that sends its node on the
// first request only, as Envoy does.
type sotwClient struct {
	t      *testing.T
	node   *corev3.Node
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	resps  chan *discoverygrpc.DiscoveryResponse
	cancel context.CancelFunc
	sent   atomic.Bool

	// Envoy-like state: subscriptions, last response per type, resources.
	names map[string][]string
	last  map[string]*discoverygrpc.DiscoveryResponse
	have  map[string]map[string]types.Resource
}

func newSotw(t *testing.T, addr string, n *corev3.Node) *sotwClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := dial(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotwClient{t: t, node: n, stream: st, resps: make(chan *discoverygrpc.DiscoveryResponse, 100), cancel: cancel,
		names: map[string][]string{}, last: map[string]*discoverygrpc.DiscoveryResponse{}, have: map[string]map[string]types.Resource{}}
	t.Cleanup(cancel)
	go func() {
		defer close(c.resps)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *sotwClient) request(typeURL string, names []string, version, nonce string, nack string) {
	c.t.Helper()
	req := &discoverygrpc.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if !c.sent.Swap(true) {
		req.Node = c.node
	}
	if nack != "" {
		req.ErrorDetail = &rpcstatus.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// recv returns the next response, failing after wait.
func (c *sotwClient) recv() *discoverygrpc.DiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(wait):
		c.t.Fatal("no response")
	}
	return nil
}

// none checks that nothing arrives for d.
func (c *sotwClient) none(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected response: %s version %s, %d resources", r.GetTypeUrl(), r.GetVersionInfo(), len(r.GetResources()))
	case <-time.After(d):
	}
}

// subscribe sends the first request of a type.
func (c *sotwClient) subscribe(typeURL string, names ...string) {
	c.names[typeURL] = names
	c.request(typeURL, names, "", "", "")
}

// handle stores a response, ACKs it (or NACKs it with nack), and subscribes
// to the EDS/RDS names its clusters/listeners need, as Envoy does.
func (c *sotwClient) handle(r *discoverygrpc.DiscoveryResponse, nack string) {
	c.t.Helper()
	t := r.GetTypeUrl()
	if nack != "" {
		prev := c.last[t].GetVersionInfo()
		c.request(t, c.names[t], prev, r.GetNonce(), nack)
		c.last[t] = &discoverygrpc.DiscoveryResponse{VersionInfo: prev, Nonce: r.GetNonce()}
		return
	}
	c.last[t] = r
	got := unpack(c.t, r.GetResources())
	if t == resourcev3.ClusterType || t == resourcev3.ListenerType {
		c.have[t] = got // the complete state
	} else {
		// EDS, RDS: a response updates the resources it carries.
		if c.have[t] == nil {
			c.have[t] = map[string]types.Resource{}
		}
		maps.Copy(c.have[t], got)
	}
	c.request(t, c.names[t], r.GetVersionInfo(), r.GetNonce(), "")
	dep, names := dependentNames(t, c.have[t])
	if dep == "" || slices.Equal(names, c.names[dep]) {
		return
	}
	c.names[dep] = names
	for n := range c.have[dep] { // no longer requested: forgotten, as Envoy does
		if !slices.Contains(names, n) {
			delete(c.have[dep], n)
		}
	}
	c.request(dep, names, c.last[dep].GetVersionInfo(), c.last[dep].GetNonce(), "")
}

// syncEnvoy subscribes like Envoy (CDS and LDS wildcard, then EDS and RDS
// by name) and handles responses until it holds a consistent configuration.
func (c *sotwClient) syncEnvoy() {
	c.t.Helper()
	c.subscribe(resourcev3.ClusterType)
	c.subscribe(resourcev3.ListenerType)
	for !c.synced() {
		c.handle(c.recv(), "")
	}
}

func (c *sotwClient) synced() bool {
	return holdsConsistent(c.have)
}

// deltaClient is an incremental ADS client.
type deltaClient struct {
	t      *testing.T
	node   *corev3.Node
	stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	resps  chan *discoverygrpc.DeltaDiscoveryResponse
	sent   atomic.Bool

	names map[string][]string
	have  map[string]map[string]types.Resource
}

func newDelta(t *testing.T, addr string, n *corev3.Node) *deltaClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := dial(t, addr).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	c := &deltaClient{t: t, node: n, stream: st, resps: make(chan *discoverygrpc.DeltaDiscoveryResponse, 100),
		names: map[string][]string{}, have: map[string]map[string]types.Resource{}}
	go func() {
		defer close(c.resps)
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *deltaClient) request(req *discoverygrpc.DeltaDiscoveryRequest) {
	c.t.Helper()
	if !c.sent.Swap(true) {
		req.Node = c.node
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *deltaClient) recv() *discoverygrpc.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case r, ok := <-c.resps:
		if !ok {
			c.t.Fatal("stream closed")
		}
		return r
	case <-time.After(wait):
		c.t.Fatal("no delta response")
	}
	return nil
}

func (c *deltaClient) none(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected delta response: %s, %d resources, removed %v", r.GetTypeUrl(), len(r.GetResources()), r.GetRemovedResources())
	case <-time.After(d):
	}
}

// handle applies a delta response, ACKs it, and subscribes to newly needed
// EDS/RDS names (and unsubscribes from those no longer needed).
func (c *deltaClient) handle(r *discoverygrpc.DeltaDiscoveryResponse) {
	c.t.Helper()
	t := r.GetTypeUrl()
	if c.have[t] == nil {
		c.have[t] = map[string]types.Resource{}
	}
	for _, res := range r.GetResources() {
		m, err := res.GetResource().UnmarshalNew()
		if err != nil {
			c.t.Fatal(err)
		}
		c.have[t][res.GetName()] = m
	}
	for _, name := range r.GetRemovedResources() {
		delete(c.have[t], name)
	}
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: r.GetNonce()})
	dep, names := dependentNames(t, c.have[t])
	if dep == "" || slices.Equal(names, c.names[dep]) {
		return
	}
	var sub, unsub []string
	for _, n := range names {
		if !slices.Contains(c.names[dep], n) {
			sub = append(sub, n)
		}
	}
	for _, n := range c.names[dep] {
		if !slices.Contains(names, n) {
			unsub = append(unsub, n)
		}
	}
	c.names[dep] = names
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: dep, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub})
}

func (c *deltaClient) syncEnvoy() {
	c.t.Helper()
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	c.request(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	for !holdsConsistent(c.have) {
		c.handle(c.recv())
	}
}

func unpack(t *testing.T, list []*anypb.Any) map[string]types.Resource {
	t.Helper()
	out := map[string]types.Resource{}
	for _, a := range list {
		m, err := a.UnmarshalNew()
		if err != nil {
			t.Fatal(err)
		}
		out[cache.GetResourceName(m)] = m
	}
	return out
}

// dependentNames: for clusters, the EDS names they need; for listeners, the
// RDS names; sorted.
func dependentNames(typeURL string, have map[string]types.Resource) (string, []string) {
	var dep string
	switch typeURL {
	case resourcev3.ClusterType:
		dep = resourcev3.EndpointType
	case resourcev3.ListenerType:
		dep = resourcev3.RouteType
	default:
		return "", nil
	}
	set := map[string]bool{}
	for _, r := range have {
		for n := range references(r)[dep] {
			set[n] = true
		}
	}
	names := make([]string, 0, len(set))
	for n := range set {
		names = append(names, n)
	}
	sort.Strings(names)
	return dep, names
}

// holdsConsistent: clusters and listeners received, and every EDS/RDS
// resource they refer to received.
func holdsConsistent(have map[string]map[string]types.Resource) bool {
	if have[resourcev3.ClusterType] == nil || have[resourcev3.ListenerType] == nil {
		return false
	}
	for _, t := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		dep, names := dependentNames(t, have[t])
		for _, n := range names {
			if have[dep][n] == nil {
				return false
			}
		}
	}
	return true
}

func names(m map[string]types.Resource) []string {
	out := make([]string, 0, len(m))
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func endpointCount(r types.Resource) int {
	n := 0
	for _, l := range r.(*endpointv3.ClusterLoadAssignment).GetEndpoints() {
		n += len(l.GetLbEndpoints())
	}
	return n
}

func unmarshalAnyJSON(b []byte, m proto.Message) error {
	a := &anypb.Any{}
	if err := protojson.Unmarshal(b, a); err != nil {
		return err
	}
	return a.UnmarshalTo(m)
}

func protoEqual(a, b proto.Message) bool { return proto.Equal(a, b) }
