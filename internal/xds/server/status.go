package server

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

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

	// buildMu serialises this proxy's builds.
	buildMu sync.Mutex
	// last is the proxy's current configuration.
	last atomic.Pointer[setState]

	mu    sync.Mutex // guards types and conns
	types map[resourcev3.Type]*typeStatus
	conns map[*conn]struct{}
}

// setState is a proxy's configuration, with what config_dump needs.
type setState struct {
	types     map[resourcev3.Type]*typeResult
	versions  map[resourcev3.Type]string
	resources xds.Resources // sorted by name, as set
	proxy     *model.Proxy  // as resolved for the build
	world     *model.World  // the configuration is that of this world
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
	return &proxyState{id: ident.ID, ident: ident, types: map[resourcev3.Type]*typeStatus{}, conns: map[*conn]struct{}{}}
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

// wakeStreams tells the proxy's streams that its configuration changed.
func (p *proxyState) wakeStreams() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		select {
		case c.wake <- struct{}{}:
		default: // already signalled
		}
	}
}

// recordAnswer records an ACK or NACK carried by a request: a nonce of a
// response sent on the stream and not answered yet.
func (s *Server) recordAnswer(c *conn, typeURL, nonce string, errDetail *rpcstatus.Status) {
	if nonce == "" {
		return
	}
	list := c.sent[typeURL]
	i := 0
	for i < len(list) && list[i].nonce != nonce {
		i++
	}
	if i == len(list) {
		return // stale or unknown nonce: neither ACK nor NACK
	}
	version := list[i].version
	c.sent[typeURL] = list[i+1:]

	p := c.proxy
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
		return
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
}

// recordSent records a response about to be sent on a stream.
func (s *Server) recordSent(c *conn, typeURL, version, nonce string) {
	s.metrics.pushes.WithLabelValues(typeLabel(typeURL)).Inc()
	list := append(c.sent[typeURL], sentResponse{nonce: nonce, version: version})
	if len(list) > maxUnanswered {
		list = list[len(list)-maxUnanswered:]
	}
	c.sent[typeURL] = list
	p := c.proxy
	p.mu.Lock()
	ts := p.status(typeURL)
	ts.Sent = version
	if ts.pending != nil && ts.pending.version == version {
		ts.pending.sent = true
	}
	p.mu.Unlock()
}

// recordUpToDate records that a stream holds everything its subscription
// needs of a type's current version without a response (nothing it
// subscribed to changed): for /debug/syncz it has been sent and has
// accepted that version. A response still unanswered decides instead.
func (s *Server) recordUpToDate(c *conn, typeURL, version string) {
	if len(c.sent[typeURL]) > 0 {
		return
	}
	p := c.proxy
	p.mu.Lock()
	defer p.mu.Unlock()
	ts := p.status(typeURL)
	if ts.LastNack != nil && ts.Acked != ts.Sent {
		return // it rejected the last response: keep showing that
	}
	ts.Sent, ts.Acked = version, version
	if ts.pending != nil && ts.pending.version == version {
		ts.pending = nil
	}
}
