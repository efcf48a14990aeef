package main

import (
	"context"
	"errors"
	"fmt"
	"io"
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
	"google.golang.org/protobuf/proto"
)

// deltaClient is an Envoy-like delta ADS client (DeltaAggregatedResources):
// CDS wildcard, EDS subscribed to and unsubscribed from as the EDS clusters
// come and go, LDS wildcard once the clusters are initialised, RDS likewise
// for the route names the listeners reference; every response is ACKed.
// Responses carry only changed and new resources and the removed names, so
// the client keeps what it holds and applies each response to it.
type deltaClient struct {
	f        *fleet
	idx      int
	node     *corev3.Node
	conn     *grpc.ClientConn
	stream   discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	syncedAt atomic.Int64 // a time.Duration since the fleet's start
	bytes    int64        // resource bytes received until synced
	sample   atomic.Pointer[string]
	probeState

	// clusters maps each EDS cluster held to its EDS service name (other
	// clusters are absent); listeners maps each listener held to the route
	// names it references. The strings and slices are the fleet's shared
	// parses (deltaParses), so a client holds map entries, not copies.
	clusters  map[string]string
	listeners map[string][]string
	// The EDS names subscribed to are the services of the clusters held.
	// A cluster's EDS service is usually the cluster itself; foreignEDS
	// counts the clusters naming another one, so that a client keeps one
	// map of its clusters rather than a second one of their services.
	foreignEDS refCounts
	// routes counts the listeners referencing each route name subscribed.
	routes refCounts
	// Subscribed names not received yet; nil when none (an emptied map
	// would keep the room of the 2000 names of the initial sync).
	edsPending, rdsPending map[string]struct{}

	cdsOK, edsOK, ldsOK, rdsOK, ldsSent bool
}

// refCounts counts, per name, the resources referencing it.
type refCounts map[string]int32

func (rc refCounts) add(name string) { rc[name]++ }

func (rc refCounts) drop(name string) {
	if rc[name]--; rc[name] <= 0 {
		delete(rc, name)
	}
}

// open opens a delta ADS stream on conn, forgetting anything held before
// (a new stream starts over), and subscribes to the CDS wildcard.
func (c *deltaClient) open(ctx context.Context, conn *grpc.ClientConn) error {
	c.conn = conn
	c.clusters, c.listeners = map[string]string{}, map[string][]string{}
	c.foreignEDS, c.routes = refCounts{}, refCounts{}
	c.edsPending, c.rdsPending = nil, nil
	c.cdsOK, c.edsOK, c.ldsOK, c.rdsOK, c.ldsSent = false, false, false, false, false
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		return err
	}
	c.stream = st
	return st.Send(&discoverygrpc.DeltaDiscoveryRequest{Node: c.node, TypeUrl: resourcev3.ClusterType})
}

func (c *deltaClient) syncTime() time.Duration { return time.Duration(c.syncedAt.Load()) }
func (c *deltaClient) configBytes() int64      { return c.bytes }

// holds is what the client held when it synced (its maps belong to its
// goroutine, so this is recorded there).
func (c *deltaClient) holds() string {
	if s := c.sample.Load(); s != nil {
		return *s
	}
	return "nothing yet (not synced)"
}

// run receives until ctx ends. Like Envoy, a client whose stream breaks
// opens a new one after 1s and starts over; the breaks are counted.
func (c *deltaClient) run(ctx context.Context) {
	for {
		resp, err := c.stream.Recv()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.f.streamBroke(c.node.Id, err)
			if err := sleep(ctx, time.Second); err != nil {
				return
			}
			if err := c.open(ctx, c.conn); err != nil {
				if ctx.Err() == nil {
					c.f.fail(fmt.Errorf("client %s: delta stream ended and could not be reopened: %w", c.node.Id, err))
				}
				return
			}
			continue
		}
		// A send fails with io.EOF when the stream ended; the next Recv
		// says why, and reconnects.
		if err := c.handle(resp, time.Now()); err != nil && !errors.Is(err, io.EOF) {
			c.f.fail(fmt.Errorf("client %s: %w", c.node.Id, err))
			return
		}
	}
}

func (c *deltaClient) handle(resp *discoverygrpc.DeltaDiscoveryResponse, now time.Time) error {
	t := resp.GetTypeUrl()
	wasSynced := c.syncedAt.Load() != 0
	if !wasSynced {
		for _, r := range resp.GetResources() {
			c.bytes += int64(len(r.GetResource().GetValue()))
		}
	}
	c.checkProbe(c.f, c.idx, t, values(resp.GetResources(), resourceBytes), now)
	// ACK first, then any subscription change, as the SotW client does.
	if err := c.stream.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: t, ResponseNonce: resp.GetNonce()}); err != nil {
		return err
	}
	switch t {
	case resourcev3.ClusterType:
		infos, err := c.f.parses.clusters.get(resp.GetResources(), parseCluster)
		if err != nil {
			return fmt.Errorf("CDS: %w", err)
		}
		ch := subscriptionChanges{subscribed: c.subscribedEDS}
		for _, ci := range infos {
			svc := ""
			if ci.eds {
				svc = ci.service
			}
			c.setCluster(&ch, ci.name, svc)
		}
		for _, name := range resp.GetRemovedResources() {
			c.setCluster(&ch, name, "")
		}
		c.cdsOK = true
		if err := c.resubscribe(resourcev3.EndpointType, &ch, &c.edsPending); err != nil {
			return err
		}
		c.edsOK = len(c.edsPending) == 0
	case resourcev3.EndpointType:
		c.edsPending = deltaReceived(c.edsPending, resp)
		c.edsOK = len(c.edsPending) == 0
	case resourcev3.ListenerType:
		infos, err := c.f.parses.listeners.get(resp.GetResources(), parseListener)
		if err != nil {
			return fmt.Errorf("LDS: %w", err)
		}
		ch := subscriptionChanges{subscribed: func(name string) bool { return c.routes[name] > 0 }}
		setRoutes := func(old, routes []string) {
			for _, r := range slices.Concat(old, routes) {
				ch.touch(r)
			}
			for _, r := range routes {
				c.routes.add(r)
			}
			for _, r := range old {
				c.routes.drop(r)
			}
		}
		for _, li := range infos {
			old := c.listeners[li.name]
			c.listeners[li.name] = li.routes
			setRoutes(old, li.routes)
		}
		for _, name := range resp.GetRemovedResources() {
			if old, had := c.listeners[name]; had {
				delete(c.listeners, name)
				setRoutes(old, nil)
			}
		}
		c.ldsOK = true
		if err := c.resubscribe(resourcev3.RouteType, &ch, &c.rdsPending); err != nil {
			return err
		}
		c.rdsOK = len(c.rdsPending) == 0
	case resourcev3.RouteType:
		c.rdsPending = deltaReceived(c.rdsPending, resp)
		c.rdsOK = len(c.rdsPending) == 0
	}
	// Like Envoy: LDS once the clusters are initialised (CDS and its EDS).
	if !c.ldsSent && c.cdsOK && c.edsOK {
		c.ldsSent = true
		if err := c.stream.Send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
			return err
		}
	}
	if !wasSynced && c.cdsOK && c.edsOK && c.ldsOK && c.rdsOK {
		eds := 0
		for name, svc := range c.clusters {
			if name == svc {
				eds++
			}
		}
		for svc := range c.foreignEDS {
			if c.clusters[svc] != svc {
				eds++
			}
		}
		routes := make([]string, 0, len(c.routes))
		for name := range c.routes {
			routes = append(routes, name)
		}
		sort.Strings(routes)
		sample := fmt.Sprintf("%d EDS clusters, route configurations %v", eds, routes)
		c.sample.Store(&sample)
		c.syncedAt.Store(max(int64(now.Sub(c.f.start)), 1))
		c.f.synced.Add(1)
	}
	return nil
}

// subscribedEDS reports whether a cluster held has EDS service svc.
func (c *deltaClient) subscribedEDS(svc string) bool {
	if own, ok := c.clusters[svc]; ok && own == svc {
		return true
	}
	return c.foreignEDS[svc] > 0
}

// setCluster makes svc the EDS service of cluster name; "": it is not held
// or not an EDS cluster. Before changing anything, it touches on ch the EDS
// names whose subscription the change may affect: the cluster's own name,
// its old service and its new one.
func (c *deltaClient) setCluster(ch *subscriptionChanges, name, svc string) {
	old, had := c.clusters[name]
	if old == svc {
		return
	}
	ch.touch(name)
	if had {
		ch.touch(old)
		if old != name {
			c.foreignEDS.drop(old)
		}
	}
	if svc == "" {
		delete(c.clusters, name)
		return
	}
	ch.touch(svc)
	c.clusters[name] = svc
	if svc != name {
		c.foreignEDS.add(svc)
	}
}

// resubscribe sends the subscription changes ch recorded for typeURL, if
// any, and keeps *pending (the names not received yet) in step.
func (c *deltaClient) resubscribe(typeURL string, ch *subscriptionChanges, pending *map[string]struct{}) error {
	subscribe, unsubscribe := ch.result()
	if len(subscribe) == 0 && len(unsubscribe) == 0 {
		return nil
	}
	if *pending == nil && len(subscribe) > 0 {
		*pending = make(map[string]struct{}, len(subscribe))
	}
	for _, name := range subscribe {
		(*pending)[name] = struct{}{}
	}
	for _, name := range unsubscribe {
		delete(*pending, name)
	}
	if len(*pending) == 0 {
		*pending = nil
	}
	return c.stream.Send(&discoverygrpc.DeltaDiscoveryRequest{
		TypeUrl: typeURL, ResourceNamesSubscribe: subscribe, ResourceNamesUnsubscribe: unsubscribe,
	})
}

// deltaReceived removes from pending the names resp carries or says do not
// exist, and returns what is left (nil: nothing).
func deltaReceived(pending map[string]struct{}, resp *discoverygrpc.DeltaDiscoveryResponse) map[string]struct{} {
	for _, r := range resp.GetResources() {
		delete(pending, r.GetName())
	}
	for _, name := range resp.GetRemovedResources() {
		delete(pending, name)
	}
	if len(pending) == 0 {
		return nil
	}
	return pending
}

func resourceBytes(r *discoverygrpc.Resource) []byte { return r.GetResource().GetValue() }

// subscriptionChanges finds how one response changes a subscription: each
// name whose subscription it may change is touched before the change, which
// records whether it was subscribed then; result compares with after.
type subscriptionChanges struct {
	subscribed func(name string) bool
	before     map[string]bool
}

func (ch *subscriptionChanges) touch(name string) {
	if ch.before == nil {
		ch.before = map[string]bool{}
	}
	if _, ok := ch.before[name]; !ok {
		ch.before[name] = ch.subscribed(name)
	}
}

// result returns the names to subscribe to and to unsubscribe from, in no
// particular order (the server does not care, and sorting 2000 names per
// client costs the shared cores).
func (ch *subscriptionChanges) result() (subscribe, unsubscribe []string) {
	for name, was := range ch.before {
		is := ch.subscribed(name)
		switch {
		case is && !was:
			subscribe = append(subscribe, name)
		case was && !is:
			unsubscribe = append(unsubscribe, name)
		}
	}
	return subscribe, unsubscribe
}

// deltaParses are the delta clients' parses of clusters and listeners by
// name and version. A delta resource's version is its content digest, so a
// name and version is one content: the fleet parses it once, and every client
// keeps the parse's strings and slices rather than its own copies.
type deltaParses struct {
	clusters  parseCache[clusterInfo]
	listeners parseCache[listenerInfo]
}

func newDeltaParses() *deltaParses {
	return &deltaParses{
		clusters:  parseCache[clusterInfo]{parsed: map[nameVersion]clusterInfo{}},
		listeners: parseCache[listenerInfo]{parsed: map[nameVersion]listenerInfo{}},
	}
}

type nameVersion struct{ name, version string }

// clusterInfo is what a delta client needs of a Cluster: whether it is an
// EDS cluster and its EDS service name.
type clusterInfo struct {
	name, service string
	eds           bool
}

// listenerInfo is what a delta client needs of a Listener: the route
// configuration names it references, sorted.
type listenerInfo struct {
	name   string
	routes []string
}

func parseCluster(name string, b []byte) (clusterInfo, error) {
	n, svc, eds, err := clusterEDS(b)
	if err != nil {
		return clusterInfo{}, err
	}
	if n != name {
		return clusterInfo{}, fmt.Errorf("resource %q holds cluster %q", name, n)
	}
	return clusterInfo{name: name, service: cmpOr(svc, name), eds: eds}, nil
}

func parseListener(name string, b []byte) (listenerInfo, error) {
	l := &listenerv3.Listener{}
	if err := proto.Unmarshal(b, l); err != nil {
		return listenerInfo{}, err
	}
	if l.GetName() != name {
		return listenerInfo{}, fmt.Errorf("resource %q holds listener %q", name, l.GetName())
	}
	var routes []string
	for r := range cache.GetResourceReferences(map[string]types.ResourceWithTTL{name: {Resource: l}})[resourcev3.RouteType] {
		routes = append(routes, r)
	}
	sort.Strings(routes)
	return listenerInfo{name: name, routes: routes}, nil
}

// parseCache holds parses by resource name and version.
type parseCache[T any] struct {
	mu     sync.Mutex
	parsed map[nameVersion]T
}

// get returns the parse of each resource. Misses are parsed under the lock:
// a push reaches the whole fleet at once, and one parse beats every client
// parsing the same bytes. A resource without a version (not what meshd
// sends) is parsed each time, not cached.
func (pc *parseCache[T]) get(resources []*discoverygrpc.Resource, parse func(name string, b []byte) (T, error)) ([]T, error) {
	out := make([]T, len(resources))
	pc.mu.Lock()
	defer pc.mu.Unlock()
	for i, r := range resources {
		key := nameVersion{r.GetName(), r.GetVersion()}
		if v, ok := pc.parsed[key]; ok {
			out[i] = v
			continue
		}
		v, err := parse(r.GetName(), resourceBytes(r))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", r.GetName(), err)
		}
		if key.version != "" {
			pc.parsed[key] = v
		}
		out[i] = v
	}
	return out, nil
}
