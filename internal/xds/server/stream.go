package server

import (
	"context"
	"errors"
	"io"
	"slices"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/anypb"
)

// This file is the ADS protocol: one goroutine per stream reads requests,
// another (the handler's) answers them and pushes what changed. Both flavours
// share it:
//
//   - state of the world: a wildcard watch (Envoy's CDS and LDS) gets the
//     whole type whenever its version changes; a named watch of LDS or CDS
//     (grpc-go) gets every subscribed resource that exists; a named watch of
//     EDS or RDS gets only the subscribed resources the stream does not hold
//     at their current digest (a client keeps the EDS/RDS resources a
//     response leaves out: Envoy's grpc_mux, grpc-go without
//     AllResourcesRequiredInSotW);
//   - delta: the changed and new resources (filtered by subscription) with
//     their digests as versions, and the names that disappeared.
//
// What a stream holds is tracked as the typeResult it was last sent from
// plus the subscription in effect then (both shared between proxies), so a
// push compares each pair of results once (diffFrom) and the per-stream
// work is proportional to what changed. Responses carry the shared encoded
// resources (anypb.Any built once per resource); nothing per proxy holds a
// copy of a resource.
//
// Every response is sent without waiting for the previous one's ACK, as
// Envoy and grpc-go allow; a NACKed response counts as sent (what the proxy
// rejected is not sent again until it changes), and a request whose nonce
// is not the last one sent is an ACK or NACK of an older response, recorded
// but otherwise ignored (the client will answer the newer response too).

// request is a SotW or delta request, as the handler needs it.
type request struct {
	node      *corev3.Node
	typeURL   string
	nonce     string
	errDetail *rpcstatus.Status
	// state of the world
	names []string
	// delta
	subscribe, unsubscribe []string
	initial                map[string]string
}

// conn is one ADS stream.
type conn struct {
	s   *Server
	ctx context.Context // the stream's
	// slot is the send slot this stream holds, if any (sendLarge).
	slot  *slot
	delta bool
	id    int64
	proxy *proxyState
	// wake is signalled (never blocking) when the proxy's configuration
	// changed.
	wake    chan struct{}
	watches map[resourcev3.Type]*watch
	nonce   int64
	// sent holds, per type, the responses not yet ACKed or NACKed, oldest
	// first (for /debug/syncz and convergence).
	sent map[resourcev3.Type][]sentResponse

	sendSotw  func(*discoveryv3.DiscoveryResponse) error
	sendDelta func(*discoveryv3.DeltaDiscoveryResponse) error
}

// watch is one type's subscription on a stream and what the stream holds.
type watch struct {
	typeURL resourcev3.Type
	// wildcard: every resource of the type; names are then ignored (SotW)
	// or the explicit extras (delta).
	wildcard bool
	// legacyWildcard: a SotW stream whose requests for the type never named
	// a resource is a wildcard watch.
	legacyWildcard bool
	names          *nameSet

	// responded: a response for the type went out on this stream.
	responded bool
	// sent is the result the stream's view was last brought up to date
	// with, and sentNames the subscription then: the stream holds sent's
	// entries for the names in sentNames (all of them for a wildcard).
	sent      *typeResult
	sentNames *nameSet
	sentWild  bool
	// lastNonce of the last response of the type (SotW requests answer it).
	lastNonce string
	// known are the versions a delta client said it has
	// (initial_resource_versions), until the first response.
	known map[string]string
}

type sentResponse struct {
	nonce, version string
}

// maxUnanswered bounds sentResponse lists of clients that never answer.
const maxUnanswered = 16

func (a *adsService) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	s := a.s
	c := s.newConn(false)
	c.sendSotw = st.Send
	return s.serveConn(st.Context(), c, func() (*request, error) {
		r, err := st.Recv()
		if err != nil {
			return nil, err
		}
		return &request{node: r.GetNode(), typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(),
			errDetail: r.GetErrorDetail(), names: r.GetResourceNames()}, nil
	})
}

func (a *adsService) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	s := a.s
	c := s.newConn(true)
	c.sendDelta = st.Send
	return s.serveConn(st.Context(), c, func() (*request, error) {
		r, err := st.Recv()
		if err != nil {
			return nil, err
		}
		return &request{node: r.GetNode(), typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(),
			errDetail: r.GetErrorDetail(), subscribe: r.GetResourceNamesSubscribe(),
			unsubscribe: r.GetResourceNamesUnsubscribe(), initial: r.GetInitialResourceVersions()}, nil
	})
}

func (s *Server) newConn(delta bool) *conn {
	return &conn{
		s:       s,
		delta:   delta,
		id:      s.streamIDs.Add(1),
		wake:    make(chan struct{}, 1),
		watches: map[resourcev3.Type]*watch{},
		sent:    map[resourcev3.Type][]sentResponse{},
	}
}

// serveConn runs a stream until the client closes it, it fails, or the
// server stops.
func (s *Server) serveConn(streamCtx context.Context, c *conn, recv func() (*request, error)) error {
	ctx, cancel := context.WithCancel(streamCtx)
	defer cancel()
	c.ctx = ctx
	stop := context.AfterFunc(s.ctx, cancel)
	defer stop()
	defer s.detach(c)

	reqs := make(chan *request)
	recvErr := make(chan error, 1)
	go func() {
		for {
			r, err := recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-recvErr:
			if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
				return nil
			}
			return err
		case r := <-reqs:
			if err := c.handle(r); err != nil {
				return err
			}
		case <-c.wake:
			if err := c.push(); err != nil {
				return err
			}
		}
	}
}

// handle answers one request.
func (c *conn) handle(r *request) error {
	if c.proxy == nil {
		if r.node.GetId() == "" {
			return status.Error(codes.InvalidArgument, "xDS node id is required on the first request of a stream")
		}
		c.s.attach(c, r.node)
	}
	if r.typeURL == "" {
		return status.Error(codes.InvalidArgument, "type URL is required for ADS")
	}
	c.s.recordAnswer(c, r.typeURL, r.nonce, r.errDetail)
	c.answered(r.nonce)

	w := c.watches[r.typeURL]
	if w == nil {
		w = &watch{typeURL: r.typeURL, legacyWildcard: true}
		c.watches[r.typeURL] = w
	} else if !c.delta && r.nonce != w.lastNonce {
		// An answer to an older response; the newer one's answer follows
		// with the current subscription.
		return nil
	}
	if c.delta {
		c.subscribeDelta(w, r)
		return c.respondDelta(w)
	}
	c.subscribeSotw(w, r.names)
	return c.respondSotw(w)
}

// push sends what changed in the proxy's configuration, types in xds.Types
// order (clusters before endpoints before listeners before routes).
func (c *conn) push() error {
	for _, t := range orderedTypes(c.watches) {
		w := c.watches[t]
		var err error
		if c.delta {
			err = c.respondDelta(w)
		} else {
			err = c.respondSotw(w)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func orderedTypes(watches map[resourcev3.Type]*watch) []resourcev3.Type {
	out := make([]resourcev3.Type, 0, len(watches))
	for t := range watches {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b resourcev3.Type) int { return typeRank(a) - typeRank(b) })
	return out
}

func typeRank(t resourcev3.Type) int {
	switch t {
	case resourcev3.ClusterType:
		return 0
	case resourcev3.EndpointType:
		return 1
	case resourcev3.ListenerType:
		return 2
	case resourcev3.RouteType:
		return 3
	}
	return 4
}

// current is the proxy's result for a type; nil while it has no
// configuration (no world yet).
func (c *conn) current(t resourcev3.Type) *typeResult {
	last := c.proxy.last.Load()
	if last == nil {
		return nil
	}
	if tr := last.types[t]; tr != nil {
		return tr
	}
	return emptyResult(t)
}

// subscribeSotw applies a SotW request's names: the complete subscription.
// A "*" name or a stream that never named a resource is a wildcard watch.
func (c *conn) subscribeSotw(w *watch, names []string) {
	if w.legacyWildcard && len(names) > 0 {
		w.legacyWildcard = false
	}
	w.wildcard = w.legacyWildcard || slices.Contains(names, "*")
	if w.wildcard {
		names = slices.DeleteFunc(slices.Clone(names), func(n string) bool { return n == "*" })
	}
	c.setNames(w, c.s.names.intern(names, w.names))
}

// subscribeDelta applies a delta request: subscriptions change by
// difference; the first request may say which versions the client holds. A
// first request naming nothing, or "*", subscribes to the wildcard, which
// only an unsubscribe of "*" ends.
func (c *conn) subscribeDelta(w *watch, r *request) {
	if !w.responded && len(r.initial) > 0 {
		w.known = r.initial
	}
	first := w.names == nil
	if !first && len(r.subscribe) == 0 && len(r.unsubscribe) == 0 {
		return // an ACK or NACK
	}
	w.legacyWildcard = false
	wildcard := w.wildcard || first && len(r.subscribe) == 0
	for _, n := range r.subscribe {
		if n == "*" {
			wildcard = true
		}
	}
	for _, n := range r.unsubscribe {
		if n == "*" {
			wildcard = false
		}
	}
	w.wildcard = wildcard
	c.setNames(w, c.s.names.change(w.names, r.subscribe, r.unsubscribe))
}

// setNames makes set (which carries a reference for the watch) the
// subscription. names and sentNames each hold a reference to their set.
func (c *conn) setNames(w *watch, set *nameSet) {
	if set == w.names {
		return
	}
	c.s.names.release(w.names)
	w.names = set
}

// setSent records that the stream is up to date with cur for the current
// subscription.
func (c *conn) setSent(w *watch, cur *typeResult) {
	w.sent, w.sentWild, w.known, w.responded = cur, w.wildcard, nil, true
	if w.sentNames != w.names {
		c.s.names.release(w.sentNames)
		c.s.names.retain(w.names)
		w.sentNames = w.names
	}
}

// close releases the watches' name sets and the send slot.
func (c *conn) close() {
	if c.slot != nil {
		c.slot.release()
		c.slot = nil
	}
	for _, w := range c.watches {
		c.s.names.release(w.names)
		c.s.names.release(w.sentNames)
		w.names, w.sentNames = nil, nil
	}
}

// subscribed reports whether a name is in the watch's subscription.
func (w *watch) subscribed(name string) bool {
	return w.wildcard || w.names.has(name)
}

// compare returns the watch's current result, whether its subscription is
// the one it was last sent for, and whether nothing is to be sent (no
// configuration yet, or the same content under the same subscription,
// maybe rebuilt from new pointers: the version hashes every name and
// digest).
func (c *conn) compare(w *watch) (cur *typeResult, sameSub, upToDate bool) {
	cur = c.current(w.typeURL)
	if cur == nil {
		return nil, false, true
	}
	sameSub = w.responded && w.sentNames == w.names && w.sentWild == w.wildcard
	if sameSub && w.sent != nil && w.sent.version == cur.version {
		w.sent = cur
		return cur, true, true
	}
	return cur, sameSub, false
}

// respondSotw sends the state-of-the-world response the watch needs, if any.
func (c *conn) respondSotw(w *watch) error {
	cur, sameSub, upToDate := c.compare(w)
	if upToDate {
		return nil
	}
	var out []*anypb.Any
	switch {
	case w.wildcard:
		out = cur.anys
	case !partialTypes[w.typeURL]:
		// Named LDS/CDS: every subscribed resource, each time one of them
		// changes (a response leaving one out would delete it).
		if sameSub && !touches(cur.diffFrom(w.sent), cur, w) {
			c.setSent(w, cur)
			c.s.recordUpToDate(c, w.typeURL, cur.version)
			return nil
		}
		idx := present(w, cur)
		out = make([]*anypb.Any, len(idx))
		for k, i := range idx {
			out[k] = cur.anys[i]
		}
	default:
		idx := c.unsent(w, cur, sameSub)
		if len(idx) == 0 && w.responded {
			c.setSent(w, cur)
			c.s.recordUpToDate(c, w.typeURL, cur.version)
			return nil
		}
		out = make([]*anypb.Any, len(idx))
		for k, i := range idx {
			out[k] = cur.anys[i]
		}
	}
	c.setSent(w, cur)
	nonce := c.nextResponse(w, cur.version)
	return c.sendLarge(anysSize(out), c.nonce, func() error {
		return c.sendSotw(&discoveryv3.DiscoveryResponse{
			VersionInfo: cur.version,
			TypeUrl:     w.typeURL,
			Resources:   out,
			Nonce:       nonce,
		})
	})
}

// partialTypes are the types whose SotW responses to named watches carry
// only what changed (see the top of the file).
var partialTypes = map[resourcev3.Type]bool{
	resourcev3.EndpointType: true,
	resourcev3.RouteType:    true,
}

// touches reports whether a diff changes or removes a subscribed name.
func touches(d *resultDiff, cur *typeResult, w *watch) bool {
	for _, n := range d.removed {
		if w.subscribed(n) {
			return true
		}
	}
	for _, i := range d.changed {
		if w.subscribed(cur.list[i].name) {
			return true
		}
	}
	return false
}

// unsent returns the positions in cur of the subscribed resources the
// stream does not hold at their current digest, in name order.
func (c *conn) unsent(w *watch, cur *typeResult, sameSub bool) []int {
	if w.sent == nil {
		return present(w, cur)
	}
	var idx []int
	for _, i := range cur.diffFrom(w.sent).changed {
		if w.subscribed(cur.list[i].name) {
			idx = append(idx, i)
		}
	}
	if sameSub || w.sentWild {
		return idx // the stream holds every unchanged subscribed resource
	}
	// Names the stream did not subscribe to when last sent: it does not
	// hold them, changed or not.
	if w.wildcard {
		for i, e := range cur.list {
			if !w.sentNames.has(e.name) {
				idx = append(idx, i)
			}
		}
	} else {
		for _, n := range w.names.addedSince(w.sentNames) {
			if i, ok := cur.index[n]; ok {
				idx = append(idx, i)
			}
		}
	}
	slices.Sort(idx)
	return slices.Compact(idx)
}

// present returns the positions in cur of the subscribed names, in name
// order.
func present(w *watch, cur *typeResult) []int {
	if w.wildcard {
		idx := make([]int, len(cur.list))
		for i := range idx {
			idx[i] = i
		}
		return idx
	}
	idx := make([]int, 0, w.names.len())
	for n := range w.names.names {
		if i, ok := cur.index[n]; ok {
			idx = append(idx, i)
		}
	}
	slices.Sort(idx)
	return idx
}

// respondDelta sends the delta response the watch needs, if any.
func (c *conn) respondDelta(w *watch) error {
	cur, sameSub, upToDate := c.compare(w)
	if upToDate {
		return nil
	}
	all := cur.delta()
	var resources []*discoveryv3.Resource
	var removed []string
	if !w.responded || w.sent == nil {
		for _, i := range present(w, cur) {
			if v, ok := w.known[cur.list[i].name]; ok && v == cur.list[i].digest {
				continue
			}
			resources = append(resources, all[i])
		}
		for n := range w.known {
			if _, ok := cur.index[n]; !ok && w.subscribed(n) {
				removed = append(removed, n)
			}
		}
		slices.Sort(removed)
	} else {
		for _, i := range c.unsent(w, cur, sameSub) {
			resources = append(resources, all[i])
		}
		for _, n := range cur.diffFrom(w.sent).removed {
			if w.subscribed(n) {
				removed = append(removed, n)
			}
		}
	}
	first := !w.responded
	c.setSent(w, cur)
	if len(resources) == 0 && len(removed) == 0 && !(first && w.wildcard) {
		c.s.recordUpToDate(c, w.typeURL, cur.version)
		return nil
	}
	nonce := c.nextResponse(w, cur.version)
	return c.sendLarge(deltaSize(resources), c.nonce, func() error {
		return c.sendDelta(&discoveryv3.DeltaDiscoveryResponse{
			SystemVersionInfo: cur.version,
			TypeUrl:           w.typeURL,
			Resources:         resources,
			RemovedResources:  removed,
			Nonce:             nonce,
		})
	})
}

// nextResponse numbers the stream's next response (of w's type, at
// version) and records it as sent.
func (c *conn) nextResponse(w *watch, version string) string {
	c.nonce++
	nonce := strconv.FormatInt(c.nonce, 10)
	w.lastNonce = nonce
	c.s.recordSent(c, w.typeURL, version, nonce)
	return nonce
}

// sendLarge sends a response of size bytes. A large response takes one of
// a few server-wide slots first and keeps it until the client answers it (or
// any later response of the stream: a stream delivers in order), or for
// slotTimeout at most. gRPC's Send returns once the message is queued on the
// connection, so without this a push to thousands of proxies would hold
// thousands of encoded responses at once, waiting for slow readers. A stream
// holds one slot at most: its own answers release it, so waiting for a
// second one could deadlock.
func (c *conn) sendLarge(size int, nonce int64, send func() error) error {
	if size < largeResponseBytes {
		return send()
	}
	c.s.memory.sent(size)
	if c.slot != nil {
		return send()
	}
	select {
	case c.s.sendSlots <- struct{}{}:
	case <-c.ctx.Done():
		return c.ctx.Err()
	}
	sl := &slot{nonce: nonce, free: func() { <-c.s.sendSlots }}
	sl.timer = time.AfterFunc(slotTimeout, sl.release)
	c.slot = sl
	return send()
}

// slot is a held send slot.
type slot struct {
	nonce int64
	once  sync.Once
	free  func()
	timer *time.Timer
}

func (sl *slot) release() {
	sl.once.Do(func() {
		sl.timer.Stop()
		sl.free()
	})
}

// answered releases the stream's slot when a request answers the response
// that took it or a later one.
func (c *conn) answered(nonce string) {
	if c.slot == nil || nonce == "" {
		return
	}
	if n, err := strconv.ParseInt(nonce, 10, 64); err == nil && n >= c.slot.nonce {
		c.slot.release()
		c.slot = nil
	}
}

func anysSize(list []*anypb.Any) int {
	n := 0
	for _, a := range list {
		n += len(a.GetValue())
	}
	return n
}

func deltaSize(list []*discoveryv3.Resource) int {
	n := 0
	for _, r := range list {
		n += len(r.GetResource().GetValue())
	}
	return n
}

const (
	largeResponseBytes = 256 << 10
	slotTimeout        = 5 * time.Second
)
