package server

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// proxyState is one connected proxy (one xDS node id, one or more streams).
type proxyState struct {
	id    string
	ident model.Proxy // from the node; Workload nil

	// streams is the number of open streams; guarded by Server.mu.
	streams int

	// buildMu serialises this proxy's builds and SetSnapshot calls.
	buildMu sync.Mutex
	// last is what was last set in the cache for this proxy.
	last atomic.Pointer[setState]

	mu    sync.Mutex // guards types
	types map[resourcev3.Type]*typeStatus
}

// setState is a snapshot as set in the cache, with what config_dump needs.
type setState struct {
	snapshot  *cache.Snapshot
	versions  map[resourcev3.Type]string
	resources xds.Resources // sorted by name, as set
	proxy     *model.Proxy  // as resolved for the build
	at        time.Time
}

// typeStatus is the xDS state of one resource type of one proxy.
type typeStatus struct {
	// Set is the version in the proxy's snapshot; Sent the version last sent
	// on one of its streams; Acked the version it last ACKed.
	Set, Sent, Acked string
	LastNack         *nackInfo
	// pending is the change whose ACK ends a convergence measurement.
	pending *pendingChange
}

type nackInfo struct {
	Version string    `json:"version"`
	Error   string    `json:"error"`
	Time    time.Time `json:"time"`
}

type pendingChange struct {
	version string
	since   time.Time // the change event
	sent    bool      // the version went out on a stream
}

func newProxyState(ident model.Proxy) *proxyState {
	return &proxyState{id: ident.ID, ident: ident, types: map[resourcev3.Type]*typeStatus{}}
}

// status returns the type's status; p.mu must be held.
func (p *proxyState) status(t resourcev3.Type) *typeStatus {
	ts := p.types[t]
	if ts == nil {
		ts = &typeStatus{}
		p.types[t] = ts
	}
	return ts
}

// setVersions records a snapshot set for the changed types. changeTime is
// the change event behind it (zero for a proxy's first build): convergence
// runs from it to the ACK of the version. A version superseded before it was
// ACKed keeps the earlier change time if it had been sent (the proxy has not
// converged on that change yet); one never sent (nobody watches it) is
// dropped.
func (p *proxyState) setVersions(changed map[resourcev3.Type]string, changeTime time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for t, v := range changed {
		ts := p.status(t)
		ts.Set = v
		switch {
		case changeTime.IsZero():
			ts.pending = nil
		case ts.pending != nil && ts.pending.sent:
			ts.pending.version, ts.pending.sent = v, false
		default:
			ts.pending = &pendingChange{version: v, since: changeTime}
		}
	}
}

// streamKey: SotW and delta streams are numbered independently by
// go-control-plane.
type streamKey struct {
	delta bool
	id    int64
}

// streamState is one xDS stream. Its fields are used only on the stream's
// goroutine (go-control-plane calls a stream's callbacks from one goroutine).
type streamState struct {
	proxy *proxyState
	// sent holds, per type, the responses not yet ACKed or NACKed, oldest
	// first.
	sent map[string][]sentResponse
}

type sentResponse struct {
	nonce, version string
}

// maxUnanswered bounds sentResponse lists of clients that never answer.
const maxUnanswered = 16

func (s *Server) openStream(key streamKey) {
	s.mu.Lock()
	s.streams[key] = &streamState{sent: map[string][]sentResponse{}}
	s.mu.Unlock()
}

func (s *Server) stream(key streamKey) *streamState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.streams[key]
}

// onRequest handles a request of a stream: binds the stream to its proxy on
// the first one, and records an ACK or NACK of an earlier response. For a
// NACK it returns the NACKed version.
func (s *Server) onRequest(key streamKey, node *corev3.Node, typeURL, nonce string, errDetail *rpcstatus.Status) (nacked string, isNack bool, err error) {
	st := s.stream(key)
	if st == nil {
		return "", false, errors.New("xds server: request on an unknown stream")
	}
	if st.proxy == nil {
		if err := s.attach(st, node); err != nil {
			return "", false, err
		}
	}
	if nonce == "" {
		return "", false, nil
	}
	list := st.sent[typeURL]
	i := 0
	for i < len(list) && list[i].nonce != nonce {
		i++
	}
	if i == len(list) {
		return "", false, nil // stale or unknown nonce: neither ACK nor NACK
	}
	version := list[i].version
	st.sent[typeURL] = list[i+1:]

	p := st.proxy
	label := typeLabel(typeURL)
	now := time.Now()
	p.mu.Lock()
	ts := p.status(typeURL)
	if errDetail != nil {
		ts.LastNack = &nackInfo{Version: version, Error: errDetail.GetMessage(), Time: now}
		p.mu.Unlock()
		s.metrics.nacks.WithLabelValues(label).Inc()
		s.log.Error(errors.New(errDetail.GetMessage()), "xDS NACK", "proxy", p.id, "type", typeURL,
			"version", version, "code", errDetail.GetCode())
		return version, true, nil
	}
	ts.Acked = version
	var converged time.Duration
	if ts.pending != nil && ts.pending.version == version {
		converged = now.Sub(ts.pending.since)
		ts.pending = nil
	}
	p.mu.Unlock()
	if converged > 0 {
		s.metrics.convergence.Observe(converged.Seconds())
	}
	return "", false, nil
}

// onResponse records a response about to be sent on a stream.
func (s *Server) onResponse(key streamKey, typeURL, version, nonce string) {
	s.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	st := s.stream(key)
	if st == nil || st.proxy == nil {
		return
	}
	list := append(st.sent[typeURL], sentResponse{nonce: nonce, version: version})
	if len(list) > maxUnanswered {
		list = list[len(list)-maxUnanswered:]
	}
	st.sent[typeURL] = list
	p := st.proxy
	p.mu.Lock()
	ts := p.status(typeURL)
	ts.Sent = version
	if ts.pending != nil && ts.pending.version == version {
		ts.pending.sent = true
	}
	p.mu.Unlock()
}

// callbacks are go-control-plane's server callbacks, for SotW and delta.
type callbacks struct{ s *Server }

func (c callbacks) OnStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.openStream(streamKey{id: id})
	return nil
}

func (c callbacks) OnStreamClosed(id int64, _ *corev3.Node) {
	c.s.detach(streamKey{id: id})
}

func (c callbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	nacked, isNack, err := c.s.onRequest(streamKey{id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
	if err != nil {
		return err
	}
	if isNack {
		// A NACK carries the last version the client accepted, which differs
		// from the snapshot's, and go-control-plane would answer it with the
		// rejected version again at once: a NACK loop. The client has seen
		// the rejected version; wait for a new one.
		req.VersionInfo = nacked
	}
	return nil
}

func (c callbacks) OnStreamResponse(_ context.Context, id int64, _ *discoveryv3.DiscoveryRequest, resp *discoveryv3.DiscoveryResponse) {
	c.s.onResponse(streamKey{id: id}, resp.GetTypeUrl(), resp.GetVersionInfo(), resp.GetNonce())
}

func (c callbacks) OnDeltaStreamOpen(_ context.Context, id int64, _ string) error {
	c.s.openStream(streamKey{delta: true, id: id})
	return nil
}

func (c callbacks) OnDeltaStreamClosed(id int64, _ *corev3.Node) {
	c.s.detach(streamKey{delta: true, id: id})
}

func (c callbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	// Delta needs no NACK rewrite: the subscription already records the
	// rejected resource versions as returned, so they are not re-sent.
	_, _, err := c.s.onRequest(streamKey{delta: true, id: id}, req.GetNode(), req.GetTypeUrl(), req.GetResponseNonce(), req.GetErrorDetail())
	return err
}

func (c callbacks) OnStreamDeltaResponse(id int64, _ *discoveryv3.DeltaDiscoveryRequest, resp *discoveryv3.DeltaDiscoveryResponse) {
	c.s.onResponse(streamKey{delta: true, id: id}, resp.GetTypeUrl(), resp.GetSystemVersionInfo(), resp.GetNonce())
}
