// Package meshd is the Meshplane control plane's runtime: for now the mesh
// config loader and the monitoring server (/healthz, /ready, /metrics). The xDS
// server, the CA and the sidecar injector webhook are not implemented yet.
package meshd

import (
	"github.com/meshplane/meshplane/internal/listen"

	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Defaults of Options.
const (
	DefaultPollInterval    = 5 * time.Second
	DefaultShutdownTimeout = 10 * time.Second
)

// Options configure a Server.
type Options struct {
	// MonitoringAddr is where /healthz, /ready and /metrics are served.
	MonitoringAddr string
	// MeshConfigPath is the mesh config file; it is polled for changes.
	MeshConfigPath string
	// Revision of this control plane; a mesh config for another revision is refused.
	Revision string
	// Version of meshd, exported in meshd_build_info.
	Version string
	// PollInterval between two reads of the mesh config file. DefaultPollInterval when zero.
	PollInterval time.Duration
	// ShutdownTimeout bounds the graceful shutdown of the monitoring server.
	// DefaultShutdownTimeout when zero.
	ShutdownTimeout time.Duration
	// Logger; discarded when unset.
	Logger logr.Logger
	// Debug, when set, is mounted at /debug/ (the xDS server's syncz and config_dump).
	Debug http.Handler
	// ReadyCheck, when set, must also pass for /ready (e.g. discovery synced).
	ReadyCheck func() (bool, string)
	// OnMeshConfig is called with each mesh config that loads, the first and
	// every later change, outside the server's lock.
	OnMeshConfig func(*MeshConfig)
}

// Server serves the monitoring endpoints and keeps the mesh config loaded.
type Server struct {
	opts     Options
	log      logr.Logger
	registry *prometheus.Registry
	// loadErrors counts failed loads of the mesh config.
	loadErrors prometheus.Counter
	httpServer *http.Server

	listener listen.Once

	mu sync.RWMutex
	// config is the last mesh config that loaded successfully; nil until one has.
	config *MeshConfig
	// lastErr is the error of the latest load attempt; nil when it succeeded.
	lastErr error
	// lastKey identifies the latest outcome of reading the file (its content
	// hash or the read error), so an unchanged file is not parsed, logged and
	// counted again on every poll.
	lastKey string
}

// NewServer returns a Server; nothing is listening until Listen or Run.
func NewServer(opts Options) *Server {
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	if opts.Version == "" {
		opts.Version = "unknown"
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}

	s := &Server{opts: opts, log: log, registry: prometheus.NewRegistry(), listener: listen.Once{Address: opts.MonitoringAddr, What: "monitoring"}}
	s.loadErrors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "meshd_mesh_config_load_errors_total",
		Help: "Failed loads of the mesh config file (missing, unreadable or invalid). " +
			"Counted once per distinct failure: a file that stays broken is not counted again on every poll.",
	})
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "meshd_build_info",
		Help:        "Always 1; the labels tell meshd's version and the control-plane revision it serves.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "revision": opts.Revision},
	})
	buildInfo.Set(1)
	s.registry.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo,
		s.loadErrors,
	)

	s.httpServer = &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	return s
}

// Registry is the dedicated Prometheus registry served on /metrics.
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// Handler serves /healthz, /ready and /metrics.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /ready", func(w http.ResponseWriter, _ *http.Request) {
		if ready, reason := s.Ready(); !ready {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+reason)
			return
		}
		writeText(w, http.StatusOK, "ok")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{Registry: s.registry}))
	if s.opts.Debug != nil {
		mux.Handle("/debug/", s.opts.Debug)
	}
	return mux
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, body)
}

// Ready reports whether a mesh config has been loaded, and why not otherwise.
// Once one has loaded, meshd stays ready on it even if a later change of the
// file is refused (that refusal is logged and counted).
func (s *Server) Ready() (bool, string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.config != nil {
		if s.opts.ReadyCheck != nil {
			return s.opts.ReadyCheck()
		}
		return true, ""
	}
	if s.lastErr != nil {
		return false, s.lastErr.Error()
	}
	return false, "mesh config " + s.opts.MeshConfigPath + " not loaded yet"
}

// MeshConfig is the last mesh config that loaded successfully, nil if none has.
// Callers must not modify it.
func (s *Server) MeshConfig() *MeshConfig {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.config
}

// Listen binds the address. Run calls it when it has not been called.
func (s *Server) Listen() error {
	_, err := s.listener.Listen()
	return err
}

// Addr is the bound address, nil before Listen.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Run loads the mesh config, serves the monitoring endpoints and polls the mesh
// config file until ctx is done, then shuts the server down gracefully within
// ShutdownTimeout. It returns nil after a clean shutdown. A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.reload()

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { s.watch(ctx) })
	// Whichever way Run returns, the watcher is stopped and waited for.
	defer func() {
		cancel()
		wg.Wait()
	}()

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.httpServer.Serve(s.boundListener()) }()
	s.log.Info("serving monitoring endpoints /healthz, /ready and /metrics", "addr", s.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("monitoring server on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}

	s.log.Info("shutting down the monitoring server", "timeout", s.opts.ShutdownTimeout.String())
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancelShutdown()
	var err error
	if shutdownErr := s.httpServer.Shutdown(shutdownCtx); shutdownErr != nil {
		_ = s.httpServer.Close()
		err = fmt.Errorf("graceful shutdown of the monitoring server did not finish within %s: %w", s.opts.ShutdownTimeout, shutdownErr)
	}
	if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("monitoring server on %s: %w", s.Addr(), serr)
	}
	return err
}

// watch re-reads the mesh config file every PollInterval until ctx is done, so
// that a ConfigMap mounted late, or updated, is picked up.
func (s *Server) watch(ctx context.Context) {
	t := time.NewTicker(s.opts.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.reload()
		}
	}
}

// reload reads the mesh config file and, when its content (or the reason it
// cannot be read) changed since the last attempt, parses it and updates the
// readiness state.
func (s *Server) reload() {
	path := s.opts.MeshConfigPath
	data, readErr := os.ReadFile(path)
	var key string
	if readErr != nil {
		key = "error: " + readErr.Error()
	} else {
		sum := sha256.Sum256(data)
		key = "sha256: " + hex.EncodeToString(sum[:])
	}

	if cfg := s.load(path, key, data, readErr); cfg != nil && s.opts.OnMeshConfig != nil {
		s.opts.OnMeshConfig(cfg)
	}
}

// load parses the file's content unless it is the same as last time, and
// returns the newly loaded config, if any.
func (s *Server) load(path, key string, data []byte, readErr error) *MeshConfig {
	s.mu.Lock()
	defer s.mu.Unlock()
	if key == s.lastKey {
		return nil
	}
	s.lastKey = key

	var cfg *MeshConfig
	err := readErr
	if err != nil {
		err = readError(path, err)
	} else if cfg, err = ParseMeshConfig(data, s.opts.Revision); err != nil {
		err = fmt.Errorf("mesh config %s: %w", path, err)
	}

	if err != nil {
		s.lastErr = err
		s.loadErrors.Inc()
		if s.config == nil {
			s.log.Error(err, "mesh config not loaded: not ready; retrying", "every", s.opts.PollInterval.String())
		} else {
			s.log.Error(err, "mesh config changed but cannot be loaded: keeping the one loaded before; retrying", "every", s.opts.PollInterval.String())
		}
		return nil
	}

	msg := "mesh config loaded: ready"
	if s.config != nil {
		msg = "mesh config reloaded"
	}
	s.config, s.lastErr = cfg, nil
	s.log.Info(msg, "path", path,
		"trustDomain", cfg.TrustDomain,
		"outboundTrafficPolicy", cfg.OutboundTrafficPolicy,
		"accessLogging", cfg.AccessLogging.Enabled,
		"discoverySelectors", len(cfg.DiscoverySelectors),
		"caType", cfg.CA.Type)
	return cfg
}

// boundListener is the listener Listen bound.
func (s *Server) boundListener() net.Listener {
	l, _ := s.listener.Listen()
	return l
}
