// Package controlplane is meshd's heart, assembled: discovery watches the
// cluster and builds the mesh model, each new model goes to the xDS server,
// which generates, validates and pushes every proxy's configuration, and (with
// WriteStatus) to the status reporter, which writes what is wrong with the
// Istio objects into their status.
//
// With a Namespace it also runs the mesh CA: the CA Secret the mesh config's
// "ca" names is watched and loaded into a ca.Holder (a valid change rotates
// the CA, an invalid one is logged and the CA loaded before keeps signing),
// its roots are published to every namespace in scope (package rootcert), and
// SecureXDSAddr serves, over one TLS gRPC server, ADS and Istio's certificate
// service. ADS there admits only callers with a mesh client certificate or a
// service-account token (audience istio-ca) that a TokenReview accepts.
//
// With ca.type CertManager the certificate service signs through the
// configured cert-manager issuer (ca.CertManagerSigner), and meshd's own
// serving certificate comes from that issuer too, requested for the serving
// DNS names and renewed before it expires; the roots the issuer reports with
// it are the ones published and the ones client certificates are verified
// with.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/certservice"
	"github.com/meshplane/meshplane/internal/discovery"
	"github.com/meshplane/meshplane/internal/jwks"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/rootcert"
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
	// SecureXDSAddr (15012) serves ADS and the certificate service over TLS
	// with a certificate from the mesh CA; ADS there needs a mesh client
	// certificate or a service-account token. Empty: not served. Needs
	// Namespace and ServingDNSNames.
	SecureXDSAddr string
	// Namespace is meshd's namespace, which is the mesh's root namespace
	// (model.MeshConfig.RootNamespace). The CA Secret is read there
	// (SelfSigned: v1alpha1.SelfSignedCASecretName; Provided: ca.provided.secretName)
	// and cert-manager's CertificateRequests are made there (CertManager). Empty: no
	// CA, no root publishing, no secure port.
	Namespace string
	// ServingDNSNames are the names of meshd's certificate on SecureXDSAddr,
	// which clients verify (meshd.<namespace>.svc, ...).
	ServingDNSNames []string
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

	// The mesh CA; all nil without Namespace. auth is nil without
	// SecureXDSAddr.
	kube   kubernetes.Interface
	holder *ca.Holder
	auth   *certservice.TokenReviewAuthenticator
	roots  *rootcert.Publisher
	// caSource holds the caSource set with the first mesh config.
	caSource atomic.Value
	// ca is what the CA was built from (Run only).
	ca caSettings

	// jwks keeps the key sets of the RequestAuthentications' jwksUri fresh
	// and hands them to discovery (Run starts it).
	jwks *jwks.Fetcher
	// extAuthz is the last mesh config's providers, kept while equal so that
	// an unchanged mesh config gives an equal (==) model.MeshConfig (Run only).
	extAuthz *model.ExtAuthzProviders

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
	cp := &ControlPlane{
		opts:        opts,
		log:         log,
		xds:         xdsServer,
		meshConfigs: make(chan *meshd.MeshConfig, 1),
	}
	if err := cp.newCA(); err != nil {
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
	cp.listener, cp.secureListener, cp.status = lis, secure, reporter
	return cp, nil
}

// newCA prepares the CA's clients and collaborators; what the CA is comes
// with the first mesh config.
func (c *ControlPlane) newCA() error {
	o := c.opts
	if o.Namespace == "" {
		if o.SecureXDSAddr != "" {
			return errors.New("the secure xDS address needs the namespace of meshd and its CA")
		}
		return nil
	}
	if o.SecureXDSAddr != "" && len(o.ServingDNSNames) == 0 {
		return errors.New("the secure xDS address needs the DNS names of meshd's serving certificate")
	}
	kube, err := kubernetes.NewForConfig(o.RestConfig)
	if err != nil {
		return fmt.Errorf("client for the mesh CA: %w", err)
	}
	c.kube, c.holder = kube, &ca.Holder{}
	if c.roots, err = rootcert.New(kube, rootcert.Options{Namespace: o.Namespace, Logger: c.log.WithName("rootcert")}); err != nil {
		return err
	}
	if o.SecureXDSAddr != "" {
		c.auth, err = certservice.NewTokenReviewAuthenticator(kube, certservice.TokenReviewOptions{Registry: o.Registry})
	}
	return err
}

// XDSAddr is the bound xDS address.
func (c *ControlPlane) XDSAddr() net.Addr { return c.listener.Addr() }

// SecureXDSAddr is the bound secure address; nil when SecureXDSAddr is empty.
func (c *ControlPlane) SecureXDSAddr() net.Addr {
	if c.secureListener == nil {
		return nil
	}
	return c.secureListener.Addr()
}

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

// Ready is true once discovery has synced and the xDS server holds a world,
// and a CA kept in a Secret has loaded (CertManager: meshd holds a serving
// certificate from the issuer).
func (c *ControlPlane) Ready() (bool, string) {
	if !c.synced.Load() {
		return false, "service discovery has not synced with the API server yet"
	}
	if src, _ := c.caSource.Load().(caSource); src != nil {
		if ok, why := src.ready(); !ok {
			return false, "no mesh CA: " + why
		}
	}
	return true, ""
}

// Run serves xDS until ctx ends. Discovery starts with the first mesh config
// (SetMeshConfig); later ones update it in place.
func (c *ControlPlane) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	// Everything started in the background ends with ctx and is waited for.
	var background sync.WaitGroup
	defer func() {
		cancel()
		background.Wait()
	}()
	// The secure port is served from the first mesh config on; until then,
	// and when it never is, Run closes its listener.
	secureServed := false
	defer func() {
		if c.secureListener != nil && !secureServed {
			c.secureListener.Close()
		}
	}()
	servers := 1
	serveErr := make(chan error, 2)
	go func() { serveErr <- c.xds.Serve(ctx, c.listener) }()
	c.log.Info("Serving xDS (ADS, state of the world and delta)", "addr", c.listener.Addr().String())
	if c.status != nil {
		background.Go(func() {
			_ = c.status.Run(ctx) // it only ends with ctx
		})
	}

	// meshd fetches the JWKS of jwksUri itself, so proxies never do;
	// discovery puts them in the next World.
	c.jwks = jwks.NewFetcher(jwks.Options{
		OnUpdate: func(keys map[string]string) {
			if d := c.discovery.Load(); d != nil {
				d.SetJWKS(keys)
			}
		},
		OnError: func(uri string, err error) {
			c.log.Error(err, "Fetching a JWKS failed; its last good key set stays in use", "jwksUri", uri)
		},
	})
	background.Go(func() { _ = c.jwks.Run(ctx) })

	var disc *discovery.Discovery
	discErr := make(chan error, 1)
	for {
		var changes <-chan struct{}
		if disc != nil {
			changes = disc.Changes()
		}
		select {
		case <-ctx.Done():
			var errs []error
			for range servers {
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
				serveSecure, err := c.startCA(ctx, cfg, &background)
				if err != nil {
					return err
				}
				if serveSecure != nil {
					secureServed = true
					servers++
					go func() { serveErr <- serveSecure() }()
				}
				continue
			}
			if err := disc.SetMesh(c.meshModel(cfg), cfg.DiscoverySelectors); err != nil {
				c.log.Error(err, "Mesh config change not applied to discovery")
			}
			c.caConfigChanged(cfg)
		case <-changes:
			// Before the sync the goroutine in startDiscovery publishes the
			// first world, which is at least as new as this change.
			if c.synced.Load() {
				c.publish(disc.World())
			}
		}
	}
}

// startCA builds the CA the first mesh config selects and starts what keeps
// it current in background. It returns the function that serves the secure
// port, nil when that is not served.
func (c *ControlPlane) startCA(ctx context.Context, cfg *meshd.MeshConfig, background *sync.WaitGroup) (func() error, error) {
	if c.holder == nil {
		return nil, nil
	}
	c.ca = caSettingsOf(cfg)
	log := c.log.WithName("ca")
	if c.ca.caType == meshd.CACertManager && c.secureListener == nil {
		// The roots come with meshd's serving certificate.
		log.Info("ca.type CertManager without the secure port: no serving certificate is requested, so no mesh root is known or published",
			"issuer", c.ca.issuer.Name, "kind", c.ca.issuer.Kind)
		return nil, nil
	}

	roots := c.roots
	if err := roots.SetDiscoverySelectors(cfg.DiscoverySelectors); err != nil {
		return nil, err
	}
	background.Go(func() {
		if err := roots.Run(ctx); err != nil {
			c.log.Error(err, "Publishing the mesh root stopped")
		}
	})

	src, signer, serving, err := c.buildCA(log, roots)
	if err != nil {
		return nil, err
	}
	c.caSource.Store(src)
	background.Go(func() { src.run(ctx) })

	if c.secureListener == nil {
		return nil, nil
	}
	certs, err := certservice.New(certservice.Options{
		Signer:        signer,
		Authenticator: c.auth,
		TrustDomain:   c.ca.trustDomain,
		Logger:        log.WithName("certservice"),
		Registry:      c.opts.Registry,
	})
	if err != nil {
		return nil, err
	}
	tlsConfig := secureTLSConfig(serving)
	lis := c.secureListener
	c.log.Info("Serving xDS and the certificate service over TLS", "addr", lis.Addr().String(),
		"dnsNames", c.opts.ServingDNSNames, "ca", c.ca.String())
	return func() error { return c.serveSecure(ctx, lis, tlsConfig, certs, c.auth) }, nil
}

// caConfigChanged logs a change of the CA settings, which apply only when
// meshd restarts, and hands the root publisher new discovery selectors.
func (c *ControlPlane) caConfigChanged(cfg *meshd.MeshConfig) {
	if c.holder == nil {
		return
	}
	if now := caSettingsOf(cfg); now != c.ca {
		c.log.Error(fmt.Errorf("the CA was built from %s, the mesh config now says %s", c.ca, now),
			"Mesh config change of the CA or the trust domain not applied; restart meshd to apply it")
	}
	if err := c.roots.SetDiscoverySelectors(cfg.DiscoverySelectors); err != nil {
		c.log.Error(err, "Mesh config change not applied to the root publisher")
	}
}

func (c *ControlPlane) startDiscovery(ctx context.Context, cfg *meshd.MeshConfig, errs chan<- error) (*discovery.Discovery, error) {
	disc, err := discovery.New(c.opts.RestConfig, discovery.Options{
		Mesh:               c.meshModel(cfg),
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
	if c.jwks != nil {
		c.jwks.SetURIs(jwks.URIs(world.Config.RequestAuthentications))
	}
	c.xds.Update(world)
	if c.status != nil {
		c.status.Update(world)
	}
}

// meshModel is the part of the mesh config the generators read.
func (c *ControlPlane) meshModel(cfg *meshd.MeshConfig) model.MeshConfig {
	if ext := cfg.ExtAuthzProviders(); !ext.Equal(c.extAuthz) {
		c.extAuthz = ext
	}
	return model.MeshConfig{
		RootNamespace:    c.opts.Namespace,
		TrustDomain:      cfg.TrustDomain,
		DomainSuffix:     "cluster.local",
		OutboundAllowAny: cfg.OutboundTrafficPolicy != "REGISTRY_ONLY",
		ExtAuthz:         c.extAuthz,
	}
}
