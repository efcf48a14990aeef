// Package controlplane is meshd's heart, assembled: discovery watches the
// cluster and builds the mesh model, each new model goes to the xDS server,
// which generates, validates and pushes every proxy's configuration, and (with
// WriteStatus) to the status reporter, which writes what is wrong with the
// Istio objects into their status.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/discovery"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/status"
	"github.com/meshplane/meshplane/internal/xds/generate"
	"github.com/meshplane/meshplane/internal/xds/server"
)

// Options configure a ControlPlane.
type Options struct {
	// RestConfig reaches the API server discovery watches.
	RestConfig *rest.Config
	// XDSAddr is the plaintext ADS address (15010).
	XDSAddr string
	// SecureXDSAddr is the ADS address meant for mTLS (15012). Until the mesh
	// CA exists it serves the same plaintext ADS; empty: not served.
	SecureXDSAddr string
	// Debounce of change events before a push; zero values take the defaults.
	Debounce server.Debounce
	// Registry receives the meshd_xds_* metrics.
	Registry prometheus.Registerer
	// Logger; discarded when unset.
	Logger logr.Logger
	// WriteStatus: report the analysis of the Istio objects in their status
	// and as events (internal/status).
	WriteStatus bool
	// StatusInterval is how often at most the status is analysed and written;
	// zero: status.DefaultInterval.
	StatusInterval time.Duration
	// StatusLeaseNamespace, when set, elects one status writer among meshd's
	// replicas with a Lease there (status.Options.LeaseNamespace).
	StatusLeaseNamespace string
}

// ControlPlane runs discovery and the xDS server.
type ControlPlane struct {
	opts     Options
	log      logr.Logger
	xds      *server.Server
	listener net.Listener
	// secureListener is nil when SecureXDSAddr is empty.
	secureListener net.Listener
	// status is nil unless WriteStatus.
	status *status.Reporter

	// meshConfigs carries the latest mesh config to Run (latest wins).
	meshConfigs chan *meshd.MeshConfig
	discovery   atomic.Pointer[discovery.Discovery]
	synced      atomic.Bool
}

// New builds the control plane; it binds the xDS address at once so that a
// port conflict fails start-up, and serves nothing until Run.
func New(opts Options) (*ControlPlane, error) {
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	generators := generate.NewCache()
	xdsServer, err := server.New(server.Options{
		Generator: generators.Generate,
		Endpoints: generators.LoadAssignments,
		Validate:  generate.ValidateResource,
		Debounce:  opts.Debounce,
		Registry:  opts.Registry,
		Logger:    log.WithName("xds"),
	})
	if err != nil {
		return nil, err
	}
	lis, err := net.Listen("tcp", opts.XDSAddr)
	if err != nil {
		return nil, fmt.Errorf("listening for xDS on %s: %w", opts.XDSAddr, err)
	}
	var secure net.Listener
	if opts.SecureXDSAddr != "" {
		if secure, err = net.Listen("tcp", opts.SecureXDSAddr); err != nil {
			lis.Close()
			return nil, fmt.Errorf("listening for xDS on %s: %w", opts.SecureXDSAddr, err)
		}
	}
	var reporter *status.Reporter
	if opts.WriteStatus {
		reporter, err = status.New(opts.RestConfig, status.Options{Interval: opts.StatusInterval, Logger: log.WithName("status"),
			LeaseNamespace: opts.StatusLeaseNamespace})
		if err != nil {
			lis.Close()
			if secure != nil {
				secure.Close()
			}
			return nil, err
		}
	}
	return &ControlPlane{
		opts:           opts,
		log:            log,
		xds:            xdsServer,
		listener:       lis,
		secureListener: secure,
		status:         reporter,
		meshConfigs:    make(chan *meshd.MeshConfig, 1),
	}, nil
}

// XDSAddr is the bound xDS address.
func (c *ControlPlane) XDSAddr() net.Addr { return c.listener.Addr() }

// DebugHandler serves /debug/syncz and /debug/config_dump.
func (c *ControlPlane) DebugHandler() http.Handler { return c.xds.DebugHandler() }

// SetMeshConfig hands a newly loaded mesh config to the control plane; the
// first one starts discovery. It never blocks: a newer config replaces one not
// yet taken.
func (c *ControlPlane) SetMeshConfig(cfg *meshd.MeshConfig) {
	for {
		select {
		case c.meshConfigs <- cfg:
			return
		default:
			select {
			case <-c.meshConfigs:
			default:
			}
		}
	}
}

// Ready is true once discovery has synced and the xDS server holds a world.
func (c *ControlPlane) Ready() (bool, string) {
	if !c.synced.Load() {
		return false, "service discovery has not synced with the API server yet"
	}
	return true, ""
}

// Run serves xDS until ctx ends. Discovery starts with the first mesh config
// (SetMeshConfig); later ones update it in place.
func (c *ControlPlane) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	serveErr := make(chan error, 2)
	go func() { serveErr <- c.xds.Serve(ctx, c.listener) }()
	c.log.Info("Serving xDS (ADS, state of the world and delta)", "addr", c.listener.Addr().String())
	if c.secureListener != nil {
		go func() { serveErr <- c.xds.Serve(ctx, c.secureListener) }()
		c.log.Info("Serving xDS on the mTLS port WITHOUT TLS until the mesh CA exists", "addr", c.secureListener.Addr().String())
	}
	if c.status != nil {
		statusDone := make(chan struct{})
		go func() {
			defer close(statusDone)
			_ = c.status.Run(ctx) // it only ends with ctx
		}()
		defer func() {
			cancel() // the deferred cancel above runs after this
			<-statusDone
		}()
	}

	var disc *discovery.Discovery
	discErr := make(chan error, 1)
	for {
		var changes <-chan struct{}
		if disc != nil {
			changes = disc.Changes()
		}
		select {
		case <-ctx.Done():
			errs := []error{<-serveErr}
			if c.secureListener != nil {
				errs = append(errs, <-serveErr)
			}
			return errors.Join(errs...)
		case err := <-serveErr:
			return fmt.Errorf("xDS server: %w", err)
		case err := <-discErr:
			return fmt.Errorf("service discovery: %w", err)
		case cfg := <-c.meshConfigs:
			if disc == nil {
				var err error
				if disc, err = c.startDiscovery(ctx, cfg, discErr); err != nil {
					return err
				}
				continue
			}
			if err := disc.SetMesh(meshModel(cfg), cfg.DiscoverySelectors); err != nil {
				c.log.Error(err, "Mesh config change not applied to discovery")
			}
		case <-changes:
			// Before the sync the goroutine in startDiscovery publishes the
			// first world, which is at least as new as this change.
			if c.synced.Load() {
				c.publish(disc.World())
			}
		}
	}
}

func (c *ControlPlane) startDiscovery(ctx context.Context, cfg *meshd.MeshConfig, errs chan<- error) (*discovery.Discovery, error) {
	disc, err := discovery.New(c.opts.RestConfig, discovery.Options{
		Mesh:               meshModel(cfg),
		DiscoverySelectors: cfg.DiscoverySelectors,
		Logger:             c.log.WithName("discovery"),
	})
	if err != nil {
		return nil, fmt.Errorf("service discovery: %w", err)
	}
	c.discovery.Store(disc)
	go func() {
		if err := disc.Start(ctx); err != nil && ctx.Err() == nil {
			errs <- err
		}
	}()
	go func() {
		if disc.WaitForSync(ctx) {
			c.log.Info("Service discovery synced")
			c.synced.Store(true)
			c.publish(disc.World())
		}
	}()
	return disc, nil
}

// publish hands a new World to the xDS server and, never blocking it, to the
// status reporter.
func (c *ControlPlane) publish(world *model.World) {
	c.xds.Update(world)
	if c.status != nil {
		c.status.Update(world)
	}
}

// meshModel is the part of the mesh config the generators read.
func meshModel(cfg *meshd.MeshConfig) model.MeshConfig {
	return model.MeshConfig{
		TrustDomain:      cfg.TrustDomain,
		DomainSuffix:     "cluster.local",
		OutboundAllowAny: cfg.OutboundTrafficPolicy != "REGISTRY_ONLY",
	}
}
