// Package adsclient is a small Aggregated Discovery Service client for tests:
// it subscribes the way Envoy does (clusters and listeners as wildcards, then
// the endpoints and route configurations they refer to, by name), over
// state-of-the-world or delta ADS, answers every response with an ACK (or a
// NACK when asked to), and keeps what it holds and everything it received so
// that tests can compare clients and inspect pushes.
//
// All sends happen on the client's receive goroutine, after the initial
// requests, so a stream is never written concurrently.
package adsclient

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// xDS type URLs.
const (
	ClusterType  = "type.googleapis.com/envoy.config.cluster.v3.Cluster"
	EndpointType = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
	ListenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"
	RouteType    = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"
)

// Mode is the ADS protocol variant.
type Mode int

const (
	// SotW is state-of-the-world ADS (StreamAggregatedResources).
	SotW Mode = iota
	// Delta is incremental ADS (DeltaAggregatedResources).
	Delta
)

func (m Mode) String() string {
	if m == Delta {
		return "delta"
	}
	return "sotw"
}

// Options configure a Client.
type Options struct {
	Mode Mode
	// Node is sent on the stream's first request.
	Node *corev3.Node
	// Nack, when set, is asked about every response: a non-empty answer
	// NACKs the response with that message (its resources are not applied).
	Nack func(typeURL string) string
}

// Node returns an xDS node with the given id and string metadata.
func Node(id string, metadata map[string]string) *corev3.Node {
	fields := make(map[string]*structpb.Value, len(metadata))
	for k, v := range metadata {
		fields[k] = structpb.NewStringValue(v)
	}
	return &corev3.Node{Id: id, Metadata: &structpb.Struct{Fields: fields}}
}

// Response is one response the client received, as it handled it.
type Response struct {
	TypeURL string
	// Version is the SotW version_info or the delta system_version_info.
	Version string
	Nonce   string
	// Names are the resources the response carried, sorted.
	Names []string
	// Removed are a delta response's removed resources, sorted.
	Removed []string
	// Nacked: the client NACKed the response.
	Nacked bool
}

// Client is one ADS stream.
type Client struct {
	opts   Options
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	done   chan struct{}

	sotw  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	delta discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesClient

	nodeSent bool
	// Used on the receive goroutine only.
	subscribed map[string][]string // EDS and RDS names asked for, sorted
	accepted   map[string]string   // SotW: last accepted version per type
	lastNonce  map[string]string   // SotW: last nonce per type

	mu       sync.Mutex
	have     map[string]map[string]proto.Message
	received []Response
	err      error
}

// Dial opens an ADS stream to addr (plaintext) and subscribes: clusters and
// listeners as wildcards; endpoints and route configurations follow as the
// clusters and listeners received refer to them.
func Dial(addr string, opts Options) (*Client, error) {
	if opts.Node == nil {
		return nil, errors.New("adsclient: a node is required")
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &Client{
		opts: opts, conn: conn, cancel: cancel, done: make(chan struct{}),
		subscribed: map[string][]string{}, accepted: map[string]string{}, lastNonce: map[string]string{},
		have: map[string]map[string]proto.Message{},
	}
	ads := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	if opts.Mode == Delta {
		c.delta, err = ads.DeltaAggregatedResources(ctx)
	} else {
		c.sotw, err = ads.StreamAggregatedResources(ctx)
	}
	if err == nil {
		// Envoy's order: CDS, then LDS (wildcards).
		if err = c.subscribeWildcard(ClusterType); err == nil {
			err = c.subscribeWildcard(ListenerType)
		}
	}
	if err != nil {
		cancel()
		conn.Close()
		return nil, fmt.Errorf("adsclient: opening %s stream to %s: %w", opts.Mode, addr, err)
	}
	go c.run()
	return c, nil
}

// Close ends the stream and waits for the receive goroutine.
func (c *Client) Close() {
	c.cancel()
	<-c.done
	c.conn.Close()
}

// Err is the error that ended the stream, if it ended.
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// Received returns every response handled so far, oldest first.
func (c *Client) Received() []Response {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.received)
}

// Resources returns what the client holds: per type URL, per resource name,
// the resource's deterministic protobuf encoding.
func (c *Client) Resources() map[string]map[string][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]map[string][]byte, len(c.have))
	for t, byName := range c.have {
		m := make(map[string][]byte, len(byName))
		for name, res := range byName {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(res)
			if err != nil {
				panic(err) // it was unmarshalled from the wire
			}
			m[name] = b
		}
		out[t] = m
	}
	return out
}

// Resource returns a held resource, or nil.
func (c *Client) Resource(typeURL, name string) proto.Message {
	c.mu.Lock()
	defer c.mu.Unlock()
	if r := c.have[typeURL][name]; r != nil {
		return proto.Clone(r)
	}
	return nil
}

// Consistent reports whether the client holds clusters and listeners and
// every endpoint and route resource they refer to; if not, it says what is
// missing.
func (c *Client) Consistent() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, t := range []string{ClusterType, ListenerType} {
		if c.have[t] == nil {
			return fmt.Errorf("no %s received", t)
		}
		dep, names := dependencies(t, c.have[t])
		for _, n := range names {
			if c.have[dep][n] == nil {
				return fmt.Errorf("%s %q referred to but not held", dep, n)
			}
		}
	}
	return nil
}

func (c *Client) fail(err error) {
	c.mu.Lock()
	if c.err == nil {
		c.err = err
	}
	c.mu.Unlock()
}

func (c *Client) run() {
	defer close(c.done)
	for {
		var err error
		if c.delta != nil {
			var r *discoveryv3.DeltaDiscoveryResponse
			if r, err = c.delta.Recv(); err == nil {
				err = c.handleDelta(r)
			}
		} else {
			var r *discoveryv3.DiscoveryResponse
			if r, err = c.sotw.Recv(); err == nil {
				err = c.handleSotW(r)
			}
		}
		if err != nil {
			c.fail(err)
			return
		}
	}
}

func (c *Client) subscribeWildcard(typeURL string) error {
	if c.delta != nil {
		return c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL})
	}
	return c.sendSotW(&discoveryv3.DiscoveryRequest{TypeUrl: typeURL})
}

func (c *Client) sendSotW(req *discoveryv3.DiscoveryRequest) error {
	if !c.nodeSent {
		req.Node, c.nodeSent = c.opts.Node, true
	}
	return c.sotw.Send(req)
}

func (c *Client) sendDelta(req *discoveryv3.DeltaDiscoveryRequest) error {
	if !c.nodeSent {
		req.Node, c.nodeSent = c.opts.Node, true
	}
	return c.delta.Send(req)
}

func (c *Client) nack(typeURL string) string {
	if c.opts.Nack == nil {
		return ""
	}
	return c.opts.Nack(typeURL)
}

func (c *Client) handleSotW(r *discoveryv3.DiscoveryResponse) error {
	t := r.GetTypeUrl()
	rec := Response{TypeURL: t, Version: r.GetVersionInfo(), Nonce: r.GetNonce()}
	byName := map[string]proto.Message{}
	for _, a := range r.GetResources() {
		m, name, err := unpack(a)
		if err != nil {
			return err
		}
		byName[name] = m
		rec.Names = append(rec.Names, name)
	}
	slices.Sort(rec.Names)
	c.lastNonce[t] = r.GetNonce()

	if msg := c.nack(t); msg != "" {
		rec.Nacked = true
		c.record(rec)
		return c.sendSotW(&discoveryv3.DiscoveryRequest{
			TypeUrl: t, ResourceNames: c.subscribed[t], VersionInfo: c.accepted[t], ResponseNonce: r.GetNonce(),
			ErrorDetail: &rpcstatus.Status{Code: 3, Message: msg},
		})
	}

	c.mu.Lock()
	switch t {
	case ClusterType, ListenerType:
		// Wildcard types: a response is the complete state.
		c.have[t] = byName
	default:
		// Named types: a response updates the resources it carries.
		if c.have[t] == nil {
			c.have[t] = map[string]proto.Message{}
		}
		maps.Copy(c.have[t], byName)
	}
	c.received = append(c.received, rec)
	c.mu.Unlock()
	c.accepted[t] = r.GetVersionInfo()

	// ACK, then ask for what the new clusters or listeners refer to.
	if err := c.sendSotW(&discoveryv3.DiscoveryRequest{
		TypeUrl: t, ResourceNames: c.subscribed[t], VersionInfo: r.GetVersionInfo(), ResponseNonce: r.GetNonce(),
	}); err != nil {
		return err
	}
	dep, names, changed := c.follow(t)
	if !changed {
		return nil
	}
	return c.sendSotW(&discoveryv3.DiscoveryRequest{
		TypeUrl: dep, ResourceNames: names, VersionInfo: c.accepted[dep], ResponseNonce: c.lastNonce[dep],
	})
}

func (c *Client) handleDelta(r *discoveryv3.DeltaDiscoveryResponse) error {
	t := r.GetTypeUrl()
	rec := Response{TypeURL: t, Version: r.GetSystemVersionInfo(), Nonce: r.GetNonce(), Removed: slices.Sorted(slices.Values(r.GetRemovedResources()))}
	byName := map[string]proto.Message{}
	for _, res := range r.GetResources() {
		m, name, err := unpack(res.GetResource())
		if err != nil {
			return err
		}
		if res.GetName() != "" && res.GetName() != name {
			return fmt.Errorf("adsclient: delta resource named %q holds %q", res.GetName(), name)
		}
		byName[name] = m
		rec.Names = append(rec.Names, name)
	}
	slices.Sort(rec.Names)

	if msg := c.nack(t); msg != "" {
		rec.Nacked = true
		c.record(rec)
		return c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{
			TypeUrl: t, ResponseNonce: r.GetNonce(), ErrorDetail: &rpcstatus.Status{Code: 3, Message: msg},
		})
	}

	c.mu.Lock()
	if c.have[t] == nil {
		c.have[t] = map[string]proto.Message{}
	}
	maps.Copy(c.have[t], byName)
	for _, name := range r.GetRemovedResources() {
		delete(c.have[t], name)
	}
	c.received = append(c.received, rec)
	c.mu.Unlock()

	if err := c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: r.GetNonce()}); err != nil {
		return err
	}
	dep, names, changed := c.follow(t)
	if !changed {
		return nil
	}
	old := c.subscribed[dep]
	c.subscribed[dep] = names // follow left the old list for this diff
	var sub, unsub []string
	for _, n := range names {
		if !slices.Contains(old, n) {
			sub = append(sub, n)
		}
	}
	for _, n := range old {
		if !slices.Contains(names, n) {
			unsub = append(unsub, n)
		}
	}
	// Resources no longer subscribed to are forgotten, as Envoy does.
	c.mu.Lock()
	for _, n := range unsub {
		delete(c.have[dep], n)
	}
	c.mu.Unlock()
	return c.sendDelta(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep, ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub})
}

// follow computes the endpoint or route names the held clusters or listeners
// refer to. For SotW it records them as subscribed and forgets resources no
// longer referred to; for delta the caller does both.
func (c *Client) follow(t string) (dep string, names []string, changed bool) {
	c.mu.Lock()
	dep, names = dependencies(t, c.have[t])
	c.mu.Unlock()
	if dep == "" {
		return "", nil, false
	}
	if slices.Equal(names, c.subscribed[dep]) {
		return dep, names, false
	}
	if len(names) == 0 && c.delta == nil {
		// An empty SotW request would be a wildcard subscription. Envoy
		// keeps such a subscription quiet; forget the resources only.
		c.subscribed[dep] = nil
		c.mu.Lock()
		delete(c.have, dep)
		c.mu.Unlock()
		return dep, nil, false
	}
	if c.delta == nil {
		c.subscribed[dep] = names
		c.mu.Lock()
		for n := range c.have[dep] {
			if !slices.Contains(names, n) {
				delete(c.have[dep], n)
			}
		}
		c.mu.Unlock()
	}
	if names == nil {
		names = []string{}
	}
	return dep, names, true
}

func (c *Client) record(rec Response) {
	c.mu.Lock()
	c.received = append(c.received, rec)
	c.mu.Unlock()
}

func unpack(a *anypb.Any) (proto.Message, string, error) {
	m, err := a.UnmarshalNew()
	if err != nil {
		return nil, "", fmt.Errorf("adsclient: %w", err)
	}
	return m, Name(m), nil
}

// Name is an xDS resource's name.
func Name(m proto.Message) string {
	switch r := m.(type) {
	case *clusterv3.Cluster:
		return r.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case *listenerv3.Listener:
		return r.GetName()
	case *routev3.RouteConfiguration:
		return r.GetName()
	}
	return ""
}

// dependencies: for clusters, the EDS names they need; for listeners, the
// RDS names (filter chains and API listeners); sorted. Other types have none.
func dependencies(t string, have map[string]proto.Message) (string, []string) {
	set := map[string]bool{}
	var dep string
	switch t {
	case ClusterType:
		dep = EndpointType
		for _, r := range have {
			cl := r.(*clusterv3.Cluster)
			if cl.GetType() != clusterv3.Cluster_EDS {
				continue
			}
			name := cl.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = cl.GetName()
			}
			set[name] = true
		}
	case ListenerType:
		dep = RouteType
		for _, r := range have {
			for _, n := range routeNames(r.(*listenerv3.Listener)) {
				set[n] = true
			}
		}
	default:
		return "", nil
	}
	return dep, slices.Sorted(maps.Keys(set))
}

func routeNames(l *listenerv3.Listener) []string {
	var out []string
	hcmRoute := func(a *anypb.Any) {
		if a == nil {
			return
		}
		hcm := &hcmv3.HttpConnectionManager{}
		if a.UnmarshalTo(hcm) != nil {
			return
		}
		if n := hcm.GetRds().GetRouteConfigName(); n != "" {
			out = append(out, n)
		}
	}
	hcmRoute(l.GetApiListener().GetApiListener())
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clone(chains), d)
	}
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			hcmRoute(f.GetTypedConfig())
		}
	}
	return out
}
