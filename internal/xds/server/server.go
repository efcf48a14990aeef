// Package server is meshd's xDS server: it turns the mesh model into one
// configuration per connected proxy and serves it over ADS, both state of the
// world (StreamAggregatedResources) and delta (DeltaAggregatedResources).
//
// The pipeline:
//
//	Update(world) ─▶ debounce (quiet/max) ─▶ for every connected proxy:
//	  generate ─▶ ValidateAll each resource (drop + log + count failures)
//	  ─▶ consistency (EDS ⇔ CDS, RDS ⇔ LDS, api_listener included)
//	  ─▶ content hash per type ─▶ new configuration only if some type's hash
//	  changed ─▶ the proxy's streams send what changed (stream.go)
//
// A proxy's configuration is a set of per-type results (typeResult) shared
// by every proxy whose generated list is the same: each resource is
// validated, hashed and encoded once, and every response carries those
// bytes. A proxy that connects gets its configuration built at once, on the
// stream's first request. A proxy whose last stream closes is forgotten.
//
// The ADS streams are served here, not by go-control-plane's server and
// snapshot cache (which this package used first): that cache keeps a full
// response per proxy and type, marshals every resource of every response
// again per proxy, and gives a state-of-the-world client its whole type on
// every change. At 2000 sidecars that was 3.5 GiB and 6 ms of CPU per proxy
// for one changed endpoint (README, benchmark). go-control-plane still
// provides the API types, resource type URLs, reference extraction and
// ValidateAll.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// Defaults of Options.Debounce.
const (
	DefaultDebounceQuiet = 100 * time.Millisecond
	DefaultDebounceMax   = time.Second
	// DefaultDebounceEndpointQuiet is the quiet window of endpoint-only
	// changes, whose pushes are cheap.
	DefaultDebounceEndpointQuiet = 20 * time.Millisecond
)

// Options configure a Server.
type Options struct {
	// Generator builds one proxy's configuration. Required. It must not
	// modify the world, and the resources it returns must not be modified
	// afterwards: they are held by the cache and marshalled when sent, and
	// a resource returned (the same pointer) for several proxies, or in
	// successive worlds, is validated and hashed once (generate.Cache).
	Generator xds.Generator
	// Endpoints returns the ClusterLoadAssignments of a Service (next) in a
	// world exactly as Generator hands them to every proxy that gets them,
	// given the Service it replaces (prev: the same Service with other
	// endpoints). It reports false when it cannot tell, or when the change
	// alters more than endpoints resources (e.g. clusters whose mTLS depends
	// on the endpoints' workloads); the resources must not depend on the
	// proxy. Optional: with it, a change of endpoints only replaces those
	// resources in the proxies' configurations instead of regenerating every
	// proxy (endpoints.go).
	Endpoints func(world *model.World, prev, next *model.Service) ([]types.Resource, bool)
	// Debounce coalesces change events: a push starts when no event arrived
	// for Quiet, or Max after the first event of the burst, whichever is
	// first. Zero values take the defaults (100ms, 1s).
	Debounce Debounce
	// Validate checks one resource before it is pushed; a resource that fails
	// is dropped. Nil: go-control-plane's ValidateAll of the resource itself.
	Validate func(types.Resource) error
	// Registry receives the meshd_xds_* metrics. Nil: metrics are kept but
	// not registered anywhere.
	Registry prometheus.Registerer
	// Logger; the zero value discards. Verbosity: V(1) pushes and
	// connections' details, V(2) go-control-plane's info, V(4) its debug.
	Logger logr.Logger
}

// Debounce is the change-event debouncing window.
type Debounce struct {
	Quiet, Max time.Duration
	// EndpointQuiet replaces Quiet while the changes only move endpoints
	// (see debounceLoop); zero takes DefaultDebounceEndpointQuiet.
	EndpointQuiet time.Duration
}

// Server serves the current world's configuration to connected proxies.
type Server struct {
	gen       xds.Generator
	endpoints func(world *model.World, prev, next *model.Service) ([]types.Resource, bool)
	validate  func(types.Resource) error
	debounce  Debounce
	log       logr.Logger
	metrics   *metrics

	// names interns the streams' subscriptions.
	names *interner
	// memory returns a burst's memory to the OS (memory.go).
	memory *memoryReturner
	// sendSlots bounds the large responses in flight (see sendLarge).
	sendSlots chan struct{}
	streamIDs atomic.Int64

	// ctx ends every xDS stream when cancelled (by the context given to
	// Start or Serve, or by Close).
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.RWMutex
	world *model.World
	// memo validates and hashes each resource once, whichever proxy's
	// build meets it first, and keeps the result across worlds while some
	// build of the last push rounds used it (see memo.rotate).
	memo         *memo
	pendingSince time.Time // first change event not yet pushed; zero if none
	// pushed is the world of the last push round (debounce goroutine only).
	pushed *model.World
	// memoSize is the memo's size after the last full round; see pushAll.
	memoSize int
	proxies  map[string]*proxyState

	changed   chan struct{}
	startOnce sync.Once

	// onDrop, when set, hears of every resource left out (Check).
	onDrop func(string)

	// rounds counts debounced pushes (for tests and debugging).
	rounds atomic.Int64
}

// New returns a Server. It serves nothing until it is registered on a gRPC
// server (RegisterServices, Serve), and pushes changes only once Start (or
// Serve) runs its debouncer.
func New(opts Options) (*Server, error) {
	if opts.Generator == nil {
		return nil, errors.New("xds server: a Generator is required")
	}
	if opts.Debounce.Quiet <= 0 {
		opts.Debounce.Quiet = DefaultDebounceQuiet
	}
	if opts.Debounce.Max <= 0 {
		opts.Debounce.Max = DefaultDebounceMax
	}
	if opts.Debounce.EndpointQuiet <= 0 || opts.Debounce.EndpointQuiet > opts.Debounce.Quiet {
		opts.Debounce.EndpointQuiet = min(DefaultDebounceEndpointQuiet, opts.Debounce.Quiet)
	}
	if opts.Debounce.Max < opts.Debounce.Quiet {
		opts.Debounce.Max = opts.Debounce.Quiet
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	m, err := newMetrics(opts.Registry)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		gen:       opts.Generator,
		endpoints: opts.Endpoints,
		validate:  opts.Validate,
		debounce:  opts.Debounce,
		log:       log,
		metrics:   m,
		ctx:       ctx,
		cancel:    cancel,
		proxies:   map[string]*proxyState{},
		changed:   make(chan struct{}, 1),
		memo:      newMemo(opts.Validate),
		names:     newInterner(),
		memory:    newMemoryReturner(),
		// A few large responses per core in flight: enough to keep the
		// cores and the network busy.
		sendSlots: make(chan struct{}, 8*runtime.GOMAXPROCS(0)),
	}
	return s, nil
}

// Update makes world the current world. Every call is a change event: it
// is pushed to all connected proxies after the debounce window. Proxies that
// connect afterwards get it at once. A nil world is ignored.
func (s *Server) Update(world *model.World) {
	if world == nil {
		return
	}
	s.mu.Lock()
	s.world = world
	if s.pendingSince.IsZero() {
		s.pendingSince = time.Now()
	}
	s.mu.Unlock()
	select {
	case s.changed <- struct{}{}:
	default: // a signal is already pending; the debouncer reads the latest world
	}
}

// Start runs the debouncer (and so the pushes) until ctx ends, then ends
// every xDS stream. It returns at once. Only the first call has an effect;
// Serve calls it.
func (s *Server) Start(ctx context.Context) {
	s.startOnce.Do(func() {
		go s.debounceLoop(ctx)
		go s.memory.run(s.ctx)
		go func() {
			select {
			case <-ctx.Done():
				s.cancel()
			case <-s.ctx.Done():
			}
		}()
	})
}

// Close ends every xDS stream and stops pushing. The Server cannot be
// restarted.
func (s *Server) Close() { s.cancel() }

// RegisterServices registers the Aggregated Discovery Service (SotW and
// delta) on g. Call Start too, or no change is pushed after a proxy connects.
func (s *Server) RegisterServices(g grpc.ServiceRegistrar) {
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(g, &adsService{s: s})
}

// ServerOptions are the gRPC server options Serve uses before its own
// arguments: keepalive pings so that dead proxies are noticed (and their
// snapshots cleared), and client pings allowed every 10s.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
	}
}

// Serve starts the Server (Start) and serves ADS on lis until ctx ends; then
// it stops the gRPC server and returns nil. Extra options, e.g. grpc.Creds
// for the TLS port, are appended to ServerOptions(). Serve may be called for
// several listeners (15010 plaintext, 15012 TLS); they share one pipeline.
func (s *Server) Serve(ctx context.Context, lis net.Listener, opts ...grpc.ServerOption) error {
	s.Start(ctx)
	g := grpc.NewServer(append(ServerOptions(), opts...)...)
	s.RegisterServices(g)
	if err := ServeGRPC(ctx, g, lis); err != nil {
		return fmt.Errorf("xds server: %w", err)
	}
	return nil
}

// ServeGRPC serves g on lis until ctx ends, then stops it: gracefully for at
// most 2 s (open ADS streams never end on their own), then at once.
func ServeGRPC(ctx context.Context, g *grpc.Server, lis net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", lis.Addr(), err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() {
		g.GracefulStop()
		close(stopped)
	}()
	select {
	case <-stopped:
	case <-time.After(2 * time.Second):
		g.Stop()
		<-stopped
	}
	<-errc
	return nil
}

// adsService is the Aggregated Discovery Service (stream.go).
type adsService struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

// attach binds a stream to its proxy on the stream's first request, creating
// the proxy when it is the node's first stream, and builds the proxy's
// configuration at once if it has none yet.
func (s *Server) attach(c *conn, node *corev3.Node) {
	s.mu.Lock()
	p, ok := s.proxies[node.GetId()]
	if !ok {
		ident, known := identify(node)
		p = newProxyState(ident)
		s.proxies[p.id] = p
		s.metrics.connected.WithLabelValues(string(ident.Type)).Inc()
		if !known {
			s.log.Info("xDS proxy of unknown type, treated as a sidecar", "proxy", p.id, "metadata", ident.Metadata)
		}
		s.log.Info("xDS proxy connected", "proxy", p.id, "type", ident.Type, "namespace", ident.Namespace, "pod", ident.Pod, "ip", ident.IP)
	}
	p.streams++
	c.proxy = p
	s.mu.Unlock()
	p.mu.Lock()
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	if p.last.Load() == nil {
		s.buildProxy(p, time.Time{})
	}
}

// detach forgets a closed stream; when it was its proxy's last stream, the
// proxy is forgotten.
func (s *Server) detach(c *conn) {
	c.close()
	p := c.proxy
	if p == nil {
		return
	}
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	p.streams--
	if p.streams > 0 {
		return
	}
	// Under s.mu: a build of p finishing now sees it is gone, and a new
	// stream of the same node creates a new proxyState only after this.
	delete(s.proxies, p.id)
	s.metrics.connected.WithLabelValues(string(p.ident.Type)).Dec()
	s.log.Info("xDS proxy disconnected", "proxy", p.id)
}

// connected returns the connected proxies, sorted by id.
func (s *Server) connected() []*proxyState {
	s.mu.RLock()
	out := make([]*proxyState, 0, len(s.proxies))
	for _, p := range s.proxies {
		out = append(out, p)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func (s *Server) proxy(id string) *proxyState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.proxies[id]
}
