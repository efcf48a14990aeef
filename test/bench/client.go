package main

import (
	"bytes"
	"context"
	"fmt"
	"iter"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

// condition is one thing a client must have received for a change to count
// as arrived: a resource of a type, by name, whose wire bytes contain a
// string (nil: present is enough).
type condition struct {
	typeURL string
	name    string
	contain []byte
}

// probe watches one change: each client records when it first held every
// condition (nanoseconds since start, 0 = not yet).
type probe struct {
	id    int64
	start time.Time
	conds []condition
	done  []atomic.Int64
	count atomic.Int64
}

// simClient is a simulated Envoy as the fleet drives it: the
// state-of-the-world adsClient or the deltaClient.
type simClient interface {
	// open starts an ADS stream on conn with the client's first request.
	open(ctx context.Context, conn *grpc.ClientConn) error
	// run receives (and reconnects) until ctx ends.
	run(ctx context.Context)
	// syncTime is when the client first held its full initial config,
	// since the fleet's start; 0: not yet.
	syncTime() time.Duration
	// configBytes are the resource bytes received until then.
	configBytes() int64
	// holds summarizes the client's EDS and RDS subscriptions.
	holds() string
}

// fleet is the set of simulated Envoys of one run.
type fleet struct {
	clients []simClient
	conns   []*grpc.ClientConn
	start   time.Time
	synced  atomic.Int64
	probe   atomic.Pointer[probe]
	errs    chan error

	reconnects atomic.Int64           // streams that broke and were reopened
	lastBreak  atomic.Pointer[string] // the first break's error

	// Parsed CDS/LDS responses by version: wildcard responses of one type
	// and version (a content hash) have the same content, so clients share
	// the parse and the name slices instead of holding 2000 copies each.
	mu  sync.Mutex
	cds map[string][]string // EDS service names
	lds map[string][]string // RDS names

	delta  bool         // delta clients instead of state-of-the-world ones
	parses *deltaParses // the delta clients' shared parses
}

// adsClient is an Envoy-like state-of-the-world ADS client: CDS wildcard,
// then EDS for every EDS cluster, then LDS wildcard, then RDS for the route
// names the listeners reference; every response is ACKed.
type adsClient struct {
	f        *fleet
	idx      int
	node     *corev3.Node
	conn     *grpc.ClientConn
	stream   discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	syncedAt time.Duration
	bytes    int64 // Any payload bytes received until synced
	probeState

	eds, rds         []string // names requested
	edsOK, rdsOK     bool     // every requested name received
	cdsOK, ldsOK     bool
	ldsSent          bool
	lastVersionNonce map[string][2]string

	// Requested EDS/RDS names not received yet. EDS and RDS responses carry
	// only what changed or was newly requested (a client keeps the named
	// resources a response leaves out), so they are merged, not replaced.
	edsPending, rdsPending map[string]bool
}

func newFleet(n int, delta bool) *fleet {
	return &fleet{clients: make([]simClient, n), conns: make([]*grpc.ClientConn, n), errs: make(chan error, n),
		cds: map[string][]string{}, lds: map[string][]string{}, delta: delta, parses: newDeltaParses()}
}

func nodeFor(i int, w world) *corev3.Node {
	ns := w.namespace(i)
	pod := fmt.Sprintf("client-%05d", i)
	ip := fmt.Sprintf("10.%d.%d.%d", 64+i/65536, (i/256)%256, i%256)
	md, _ := structpb.NewStruct(map[string]any{
		"PROXY_TYPE": "sidecar", "NAMESPACE": ns, "POD_NAME": pod, "INSTANCE_IPS": ip,
	})
	return &corev3.Node{Id: pod + "." + ns, Cluster: "bench", Metadata: md}
}

// connect dials one gRPC connection per client (like a real sidecar) and
// opens its ADS stream; receiving runs on one goroutine per client.
func (f *fleet) connect(ctx context.Context, addr string, w world) error {
	f.start = time.Now()
	var wg sync.WaitGroup
	var firstErr atomic.Pointer[error]
	sem := make(chan struct{}, 64)
	for i := range f.clients {
		var c simClient
		if f.delta {
			c = &deltaClient{f: f, idx: i, node: nodeFor(i, w)}
		} else {
			c = &adsClient{f: f, idx: i, node: nodeFor(i, w), lastVersionNonce: map[string][2]string{}}
		}
		f.clients[i] = c
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(256<<20)))
			if err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			f.conns[i] = conn
			if err := c.open(ctx, conn); err != nil {
				firstErr.CompareAndSwap(nil, &err)
				return
			}
			go c.run(ctx)
		})
	}
	wg.Wait()
	if e := firstErr.Load(); e != nil {
		return *e
	}
	return nil
}

func (f *fleet) close() {
	for _, conn := range f.conns {
		if conn != nil {
			_ = conn.Close()
		}
	}
}

// streamBroke counts a broken stream and keeps the first one's error.
func (f *fleet) streamBroke(nodeID string, err error) {
	f.reconnects.Add(1)
	if f.lastBreak.Load() == nil {
		msg := fmt.Sprintf("client %s: %v", nodeID, err)
		f.lastBreak.CompareAndSwap(nil, &msg)
	}
}

// fail reports a client's failure to the waits (the first few suffice).
func (f *fleet) fail(err error) {
	select {
	case f.errs <- err:
	default:
	}
}

// open opens the client's ADS stream on conn and subscribes to CDS.
func (c *adsClient) open(ctx context.Context, conn *grpc.ClientConn) error {
	c.conn = conn
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	c.stream = st
	return st.Send(&discoverygrpc.DiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType})
}

func (c *adsClient) syncTime() time.Duration { return c.syncedAt }
func (c *adsClient) configBytes() int64      { return c.bytes }
func (c *adsClient) holds() string {
	return fmt.Sprintf("%d EDS clusters, route configurations %v", len(c.eds), c.rds)
}

// run receives until ctx ends. Like Envoy, a client whose stream breaks
// opens a new one (after 1s) and starts over with a full state-of-the-world
// subscription; the breaks are counted and reported.
func (c *adsClient) run(ctx context.Context) {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.f.streamBroke(c.node.Id, err)
			if err := c.restart(ctx); err != nil {
				if ctx.Err() == nil {
					c.f.fail(fmt.Errorf("client %s: stream ended and could not be reopened: %w", c.node.Id, err))
				}
				return
			}
			continue
		}
		now := time.Now()
		if err := c.handle(resp, now); err != nil {
			c.f.fail(fmt.Errorf("client %s: %w", c.node.Id, err))
			return
		}
	}
}

func (c *adsClient) restart(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Second):
	}
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(c.conn).StreamAggregatedResources(ctx)
	if err != nil {
		return err
	}
	c.stream = st
	c.eds, c.rds = nil, nil
	c.edsPending, c.rdsPending = nil, nil
	c.cdsOK, c.edsOK, c.ldsOK, c.rdsOK, c.ldsSent = false, false, false, false, false
	c.lastVersionNonce = map[string][2]string{}
	return st.Send(&discoverygrpc.DiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType})
}

func (c *adsClient) send(typeURL string, names []string) error {
	vn := c.lastVersionNonce[typeURL]
	return c.stream.Send(&discoverygrpc.DiscoveryRequest{
		TypeUrl: typeURL, ResourceNames: names, VersionInfo: vn[0], ResponseNonce: vn[1],
	})
}

func (c *adsClient) handle(resp *discoverygrpc.DiscoveryResponse, now time.Time) error {
	t := resp.GetTypeUrl()
	c.lastVersionNonce[t] = [2]string{resp.GetVersionInfo(), resp.GetNonce()}
	wasSynced := c.syncedAt != 0
	if !wasSynced {
		for _, r := range resp.GetResources() {
			c.bytes += int64(len(r.GetValue()))
		}
	}
	c.checkProbe(c.f, c.idx, t, values(resp.GetResources(), (*anypb.Any).GetValue), now)
	switch t {
	case resourcev3.ClusterType:
		eds, err := c.f.edsNames(resp)
		if err != nil {
			return err
		}
		c.cdsOK = true
		if err := c.send(t, nil); err != nil { // ACK
			return err
		}
		if !slices.Equal(eds, c.eds) {
			c.edsPending = repend(c.edsPending, c.eds, eds)
			c.eds, c.edsOK = eds, len(c.edsPending) == 0
			if err := c.send(resourcev3.EndpointType, eds); err != nil {
				return err
			}
		}
		if len(eds) == 0 {
			c.edsOK = true
		}
	case resourcev3.EndpointType:
		c.edsOK = received(c.edsPending, resp)
		if err := c.send(t, c.eds); err != nil {
			return err
		}
	case resourcev3.ListenerType:
		rds, err := c.f.rdsNames(resp)
		if err != nil {
			return err
		}
		c.ldsOK = true
		if err := c.send(t, nil); err != nil {
			return err
		}
		if !slices.Equal(rds, c.rds) {
			c.rdsPending = repend(c.rdsPending, c.rds, rds)
			c.rds, c.rdsOK = rds, len(c.rdsPending) == 0
			if err := c.send(resourcev3.RouteType, rds); err != nil {
				return err
			}
		}
		if len(rds) == 0 {
			c.rdsOK = true
		}
	case resourcev3.RouteType:
		c.rdsOK = received(c.rdsPending, resp)
		if err := c.send(t, c.rds); err != nil {
			return err
		}
	default:
		if err := c.send(t, nil); err != nil {
			return err
		}
	}
	// Like Envoy: LDS once the clusters are initialised (CDS and its EDS).
	if !c.ldsSent && c.cdsOK && c.edsOK {
		c.ldsSent = true
		if err := c.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
			return err
		}
	}
	if !wasSynced && c.cdsOK && c.edsOK && c.ldsOK && c.rdsOK {
		c.syncedAt = now.Sub(c.f.start)
		c.f.synced.Add(1)
	}
	return nil
}

// probeState is a client's progress on the fleet's current probe.
type probeState struct {
	probeID  int64
	probeMet []bool
}

// checkProbe latches the conditions of f's current probe that resources (the
// wire bytes of resources of typeURL, from one response) meet, and records
// when client idx met them all.
func (s *probeState) checkProbe(f *fleet, idx int, typeURL string, resources iter.Seq[[]byte], now time.Time) {
	p := f.probe.Load()
	if p == nil {
		return
	}
	if s.probeID != p.id {
		s.probeID, s.probeMet = p.id, make([]bool, len(p.conds))
	}
	if p.done[idx].Load() != 0 {
		return
	}
	all := true
	for i, cond := range p.conds {
		if !s.probeMet[i] && cond.typeURL == typeURL {
			for b := range resources {
				if name, _ := resourceName(b); name == cond.name &&
					(cond.contain == nil || bytes.Contains(b, cond.contain)) {
					s.probeMet[i] = true
					break
				}
			}
		}
		all = all && s.probeMet[i]
	}
	if all {
		p.done[idx].Store(max(int64(now.Sub(p.start)), 1))
		p.count.Add(1)
	}
}

// values yields value(e) for each element of list: the resources' wire
// bytes without building a slice per response.
func values[T any](list []T, value func(T) []byte) iter.Seq[[]byte] {
	return func(yield func([]byte) bool) {
		for _, e := range list {
			if !yield(value(e)) {
				return
			}
		}
	}
}

// repend returns the names of next not received yet, given those of prev
// still pending: a name of prev not pending was received and is kept (a
// response leaves out what the client holds unchanged); a name new in next
// is pending. pending may be modified and returned.
func repend(pending map[string]bool, prev, next []string) map[string]bool {
	old := make(map[string]bool, len(prev))
	for _, n := range prev {
		old[n] = true
	}
	out := map[string]bool{}
	for _, n := range next {
		if !old[n] || pending[n] {
			out[n] = true
		}
	}
	return out
}

// received removes the names resp carries from pending and reports whether
// none is left.
func received(pending map[string]bool, resp *discoverygrpc.DiscoveryResponse) bool {
	if len(pending) > 0 {
		for _, r := range resp.GetResources() {
			if name, err := resourceName(r.GetValue()); err == nil {
				delete(pending, name)
			}
		}
	}
	return len(pending) == 0
}

// resourceName is field 1 of a Cluster, Listener, RouteConfiguration
// (name) or ClusterLoadAssignment (cluster_name), read off the wire.
func resourceName(b []byte) (string, error) { return fieldString(b, 1) }

// edsNames are the EDS service names of the EDS clusters in a CDS
// response, sorted; parsed off the wire once per version for all clients.
func (f *fleet) edsNames(resp *discoverygrpc.DiscoveryResponse) ([]string, error) {
	f.mu.Lock()
	names, ok := f.cds[resp.GetVersionInfo()]
	f.mu.Unlock()
	if ok {
		return names, nil
	}
	for _, r := range resp.GetResources() {
		name, svc, eds, err := clusterEDS(r.GetValue())
		if err != nil {
			return nil, fmt.Errorf("CDS: %w", err)
		}
		if eds {
			names = append(names, cmpOr(svc, name))
		}
	}
	sort.Strings(names)
	f.mu.Lock()
	f.cds[resp.GetVersionInfo()] = names
	f.mu.Unlock()
	return names, nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// clusterEDS reads a Cluster's name (1), type (2; EDS = 3) and
// eds_cluster_config (3) .service_name (2) off the wire.
func clusterEDS(b []byte) (name, service string, eds bool, err error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", "", false, protowire.ParseError(n)
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			name, n = string(v), m
		case num == 2 && typ == protowire.VarintType:
			v, m := protowire.ConsumeVarint(b)
			eds, n = v == 3, m
		case num == 3 && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			n = m
			if m >= 0 {
				if s, e := fieldString(v, 2); e == nil {
					service = s
				}
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return "", "", false, protowire.ParseError(n)
		}
		b = b[n:]
	}
	return name, service, eds, nil
}

func fieldString(b []byte, field protowire.Number) (string, error) {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
		if num == field && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return "", protowire.ParseError(n)
			}
			return string(v), nil
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return "", protowire.ParseError(n)
		}
		b = b[n:]
	}
	return "", nil
}

// rdsNames are the route configuration names the listeners of an LDS
// response reference, sorted; parsed once per version for all clients.
func (f *fleet) rdsNames(resp *discoverygrpc.DiscoveryResponse) ([]string, error) {
	f.mu.Lock()
	names, ok := f.lds[resp.GetVersionInfo()]
	f.mu.Unlock()
	if ok {
		return names, nil
	}
	res := map[string]types.ResourceWithTTL{}
	for _, r := range resp.GetResources() {
		l := &listenerv3.Listener{}
		if err := proto.Unmarshal(r.GetValue(), l); err != nil {
			return nil, fmt.Errorf("LDS: %w", err)
		}
		res[l.GetName()] = types.ResourceWithTTL{Resource: l}
	}
	for name := range cache.GetResourceReferences(res)[resourcev3.RouteType] {
		names = append(names, name)
	}
	sort.Strings(names)
	f.mu.Lock()
	f.lds[resp.GetVersionInfo()] = names
	f.mu.Unlock()
	return names, nil
}
