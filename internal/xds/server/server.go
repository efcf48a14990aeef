// Package server is meshd's xDS server: it turns the mesh model into one
// go-control-plane snapshot per connected proxy and serves it over ADS, both
// state of the world (StreamAggregatedResources) and delta
// (DeltaAggregatedResources).
//
// The pipeline:
//
//	Update(world) ─▶ debounce (quiet/max) ─▶ for every connected proxy:
//	  generate ─▶ ValidateAll each resource (drop + log + count failures)
//	  ─▶ consistency (EDS ⇔ CDS, RDS ⇔ LDS, api_listener included)
//	  ─▶ content hash per type ─▶ SetSnapshot only if some type's hash changed
//
// A proxy that connects gets its snapshot built at once, on the stream's first
// request, before go-control-plane opens the watch, so its first request is
// answered without waiting for the debouncer. A proxy whose last stream closes
// has its snapshot and cache status cleared.
//
// The cache is go-control-plane's snapshot cache in non-ADS mode
// (cache.NewSnapshotCache(false, ...)): in ADS mode it never answers a
// state-of-the-world request naming a subset of the snapshot's resources,
// which is exactly what grpc-go's xDS client sends. In non-ADS mode a named
// request gets the named resources that exist, versions are still tracked per
// type, and a client adding a name at an unchanged version is answered (see
// simple.go, CreateWatch and createResponse). What non-ADS mode does not do is
// order responses across types inside one SetSnapshot; Envoy copes with that
// (clusters and listeners warm until their EDS/RDS arrive) and our snapshots
// are consistent, so the eventual state is the same.
//
// State-of-the-world EDS and RDS responses carry only the resources a stream
// was not yet sent at their current version (partial.go); LDS and CDS
// responses are complete.
//
// go-control-plane's pkg/server/v3 cannot be imported here: it pulls in the
// separate go-control-plane/ratelimit module, which is not in go.mod. Its two
// halves, pkg/server/sotw/v3 and pkg/server/delta/v3, are what it wraps, and
// this package registers them behind the ADS gRPC service itself.
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltaserver "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwserver "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// Defaults of Options.Debounce.
const (
	DefaultDebounceQuiet = 100 * time.Millisecond
	DefaultDebounceMax   = time.Second
)

// Options configure a Server.
type Options struct {
	// Generator builds one proxy's configuration. Required. It must not
	// modify the world, and the resources it returns must not be modified
	// afterwards: they are held by the cache and marshalled when sent, and
	// a resource returned (the same pointer) for several proxies, or in
	// successive worlds, is validated and hashed once (generate.Cache).
	Generator xds.Generator
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
}

// Server serves the current world's configuration to connected proxies.
type Server struct {
	gen      xds.Generator
	validate func(types.Resource) error
	debounce Debounce
	log      logr.Logger
	metrics  *metrics

	cache cache.SnapshotCache
	sotw  sotwserver.Server
	delta deltaserver.Server

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
	proxies      map[string]*proxyState
	streams      map[streamKey]*streamState

	changed   chan struct{}
	startOnce sync.Once

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
		gen:      opts.Generator,
		validate: opts.Validate,
		debounce: opts.Debounce,
		log:      log,
		metrics:  m,
		ctx:      ctx,
		cancel:   cancel,
		proxies:  map[string]*proxyState{},
		streams:  map[streamKey]*streamState{},
		changed:  make(chan struct{}, 1),
		memo:     newMemo(opts.Validate),
	}
	gcpLog := gcpLogger{log.WithName("go-control-plane")}
	// Non-ADS mode: answers named subsets; see the package comment.
	s.cache = cache.NewSnapshotCache(false, cache.IDHash{}, gcpLog)
	cb := callbacks{s}
	// SotW EDS and RDS responses carry only what the stream lacks (see
	// partialWatcher); delta is incremental already.
	s.sotw = sotwserver.NewServer(ctx, partialWatcher{s.cache}, cb, sotwserver.WithLogger(gcpLog))
	s.delta = deltaserver.NewServer(ctx, s.cache, cb, deltaserver.WithLogger(gcpLog))
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
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	select {
	case err := <-errc:
		return fmt.Errorf("xds server: serve %s: %w", lis.Addr(), err)
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

// adsService is the Aggregated Discovery Service: go-control-plane's SotW
// and delta stream handlers, without pkg/server/v3 (see the package comment).
type adsService struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	s *Server
}

func (a *adsService) StreamAggregatedResources(st discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.s.sotw.StreamHandler(st, resourcev3.AnyType)
}

func (a *adsService) DeltaAggregatedResources(st discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	return a.s.delta.DeltaStreamHandler(st, resourcev3.AnyType)
}

// attach binds a stream to its proxy on the stream's first request, creating
// the proxy when it is the node's first stream, and builds the proxy's
// snapshot at once if it has none yet. It runs on the stream's goroutine
// before go-control-plane creates the watch, so the request is answered from
// the new snapshot.
func (s *Server) attach(st *streamState, node *corev3.Node) error {
	if node.GetId() == "" {
		return status.Error(codes.InvalidArgument, "xDS node id is required on the first request of a stream")
	}
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
	st.proxy = p
	s.mu.Unlock()
	if p.last.Load() == nil {
		s.buildProxy(p, time.Time{})
	}
	return nil
}

// detach forgets a closed stream; when it was its proxy's last stream, the
// proxy's snapshot and cache status are cleared.
func (s *Server) detach(key streamKey) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[key]
	delete(s.streams, key)
	if st == nil || st.proxy == nil {
		return
	}
	p := st.proxy
	p.streams--
	if p.streams > 0 {
		return
	}
	delete(s.proxies, p.id)
	// Under s.mu: no SetSnapshot for p can follow (buildProxy checks that p
	// is still registered under s.mu), and a new stream of the same node
	// creates a new proxyState only after this.
	s.cache.ClearSnapshot(p.id)
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
