// Package agent is mesh-agent, the process beside every workload: it gets the
// workload's certificate from meshd's CA and keeps it fresh, hands it to the
// data plane, and relays xDS to meshd so that the application never holds
// the pod's token.
//
//	token file ─▶ Issuer (key + CSR ─▶ CAClient ─▶ checks) ─▶ Rotator ─┬▶ SDSServer  (mode sds: Envoy, Unix socket)
//	                                                                 └▶ FileWriter (mode files: proxyless gRPC,
//	                                                                                 + GRPCBootstrap once)
//	local xDS client ─▶ XDSProxy (Unix socket or loopback) ─▶ meshd over TLS, token added
//
// The certificate service is Istio's (IstioCertificateService/CreateCertificate
// on meshd's port 15012), authenticated with the projected service-account
// token (audience "istio-ca"); meshd is verified against the mesh root
// certificate file. The token and the root file are read on every use: the
// kubelet rotates the token, and the root ConfigMap changes during a root
// rotation.
package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Mode is how the certificate reaches the workload.
type Mode string

const (
	// ModeSDS serves it to Envoy over SDS; the key never touches disk.
	ModeSDS Mode = "sds"
	// ModeFiles writes it into a directory for proxyless gRPC, with a grpc-go
	// xDS bootstrap.
	ModeFiles Mode = "files"
)

// Config is one agent.
type Config struct {
	Mode Mode
	// CAAddr is meshd's certificate service, host:port.
	CAAddr string
	// XDSAddr is meshd's xDS over TLS, host:port: the proxy's upstream, and
	// the grpc bootstrap's server when there is no proxy.
	XDSAddr string
	// RootCertFile is the mesh root certificate (PEM).
	RootCertFile string
	// TokenFile is the projected service-account token.
	TokenFile string
	// CertTTL is the certificate lifetime asked for.
	CertTTL time.Duration
	// TrustDomain, when set, must be that of the issued SPIFFE ID.
	TrustDomain string
	// SDSSocket is the Unix socket of ModeSDS.
	SDSSocket string
	// OutputDir receives the certificate files of ModeFiles.
	OutputDir string
	// GRPCBootstrapFile, in ModeFiles, is where the grpc-go bootstrap is
	// written once the first certificate is there; empty: none.
	GRPCBootstrapFile string
	// XDSProxyListen is where the xDS proxy listens (see ParseLocalAddress);
	// empty: no proxy.
	XDSProxyListen string
	// Node is the workload; Namespace, when set, must be that of the issued
	// SPIFFE ID.
	Node   Node
	Logger logr.Logger
	// Rotation tunes the rotator; the zero value is the default.
	Rotation RotatorOptions
}

func (c *Config) validate() error {
	var errs []error
	require := func(v, what string) {
		if v == "" {
			errs = append(errs, fmt.Errorf("%s is required", what))
		}
	}
	require(c.CAAddr, "the CA address")
	require(c.RootCertFile, "the root certificate file")
	require(c.TokenFile, "the token file")
	if c.CertTTL < time.Second {
		errs = append(errs, fmt.Errorf("certificate TTL %s is under a second", c.CertTTL))
	}
	switch c.Mode {
	case ModeSDS:
		require(c.SDSSocket, "the SDS socket (mode sds)")
	case ModeFiles:
		require(c.OutputDir, "the output directory (mode files)")
	default:
		errs = append(errs, fmt.Errorf("unknown mode %q (want %s or %s)", c.Mode, ModeSDS, ModeFiles))
	}
	if c.XDSProxyListen != "" {
		require(c.XDSAddr, "meshd's xDS address (for the xDS proxy)")
		if _, _, err := ParseLocalAddress(c.XDSProxyListen); err != nil {
			errs = append(errs, fmt.Errorf("xDS proxy address: %w", err))
		}
	}
	if c.GRPCBootstrapFile != "" {
		if c.Mode != ModeFiles {
			errs = append(errs, fmt.Errorf("a grpc bootstrap is written in mode %s only", ModeFiles))
		}
		if c.XDSProxyListen == "" {
			require(c.XDSAddr, "meshd's xDS address (for the grpc bootstrap)")
		}
	}
	return errors.Join(errs...)
}

// Run runs the agent until ctx ends, then stops serving (local clients see
// their streams end), removes its sockets and returns nil. It returns an
// error if it cannot start, or if a server fails. Certificate failures are
// retried, never fatal: they are logged, with what to check.
func Run(ctx context.Context, cfg Config) error {
	if err := cfg.validate(); err != nil {
		return fmt.Errorf("agent configuration: %w", err)
	}
	log := cfg.Logger
	token := FileToken(cfg.TokenFile)

	// Listeners first: a bad path fails the start, before anything runs.
	var proxyLis, sdsLis net.Listener
	closeListeners := func() {
		for _, l := range []net.Listener{proxyLis, sdsLis} {
			if l != nil {
				_ = l.Close()
			}
		}
	}
	var err error
	if cfg.XDSProxyListen != "" {
		if proxyLis, err = ListenLocal(cfg.XDSProxyListen); err != nil {
			return fmt.Errorf("xDS proxy: %w", err)
		}
	}
	if cfg.Mode == ModeSDS {
		// The key goes through this socket: owner and group only.
		if sdsLis, err = ListenUnix(cfg.SDSSocket, 0o660); err != nil {
			closeListeners()
			return fmt.Errorf("SDS: %w", err)
		}
	}

	ca, err := NewCAClient(CAClientOptions{Addr: cfg.CAAddr, RootCertFile: cfg.RootCertFile, Token: token})
	if err != nil {
		closeListeners()
		return err
	}
	defer func() { _ = ca.Close() }()
	issuer := &Issuer{
		CA:           ca,
		TTL:          cfg.CertTTL,
		RootCertFile: cfg.RootCertFile,
		TrustDomain:  cfg.TrustDomain,
		Namespace:    cfg.Node.Namespace,
		Now:          cfg.Rotation.Now,
	}
	rotator := NewRotator(issuer.Issue, log.WithName("certificates"), cfg.Rotation)

	var proxy *XDSProxy
	if proxyLis != nil {
		proxy, err = NewXDSProxy(XDSProxyOptions{
			Upstream:     cfg.XDSAddr,
			RootCertFile: cfg.RootCertFile,
			Token:        token,
			Logger:       log.WithName("xds-proxy"),
		})
		if err != nil {
			closeListeners()
			return err
		}
		defer func() { _ = proxy.Close() }()
	}

	var sds *SDSServer
	switch cfg.Mode {
	case ModeSDS:
		sds = NewSDSServer(log.WithName("sds"))
		rotator.Subscribe("SDS", sds.Publish)
	case ModeFiles:
		out := &filesOutput{
			writer:        FileWriter{Dir: cfg.OutputDir},
			bootstrapFile: cfg.GRPCBootstrapFile,
			log:           log.WithName("files"),
		}
		if cfg.GRPCBootstrapFile != "" {
			o := GRPCBootstrapOptions{
				Node:            cfg.Node,
				CertDir:         cfg.OutputDir,
				RefreshInterval: refreshInterval(cfg.CertTTL),
			}
			if proxyLis != nil {
				o.XDSServerURI = grpcTarget(proxyLis)
			} else {
				o.XDSServerURI, o.DirectTLS, o.TokenFile = cfg.XDSAddr, true, cfg.TokenFile
			}
			if out.bootstrap, err = GRPCBootstrap(o); err != nil {
				closeListeners()
				return err
			}
		}
		rotator.Subscribe("files", out.publish)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	start := func(name string, run func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ctx); err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("%s: %w", name, err))
				mu.Unlock()
				cancel() // the agent is of no use with a part missing
			}
		}()
	}
	log.Info("Starting mesh-agent", "mode", cfg.Mode, "ca", cfg.CAAddr, "pod", cfg.Node.PodName,
		"namespace", cfg.Node.Namespace, "xdsProxy", cfg.XDSProxyListen, "upstreamXDS", cfg.XDSAddr)
	if proxy != nil {
		start("xDS proxy", func(ctx context.Context) error { return proxy.Serve(ctx, proxyLis) })
	}
	if sds != nil {
		start("SDS", func(ctx context.Context) error { return sds.Serve(ctx, sdsLis) })
	}
	start("certificates", rotator.Run)
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Info("mesh-agent stopped", "reason", context.Cause(ctx).Error())
	return nil
}

// refreshInterval is how often grpc-go re-reads the files: a tenth of the
// lifetime, so a renewal at half of it is picked up long before expiry,
// within [1s, 5m].
func refreshInterval(ttl time.Duration) time.Duration {
	return min(max(ttl/10, time.Second), 5*time.Minute).Round(time.Second)
}

// filesOutput writes every certificate, and the grpc bootstrap after the
// first: an application that waits for the bootstrap finds the files there.
type filesOutput struct {
	writer        FileWriter
	bootstrap     []byte
	bootstrapFile string
	written       bool
	log           logr.Logger
}

func (f *filesOutput) publish(b *Bundle) error {
	if err := f.writer.Publish(b); err != nil {
		return err
	}
	if f.bootstrapFile == "" || f.written {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(f.bootstrapFile), 0o755); err != nil {
		return fmt.Errorf("grpc bootstrap: %w", err)
	}
	if err := WriteFileAtomic(f.bootstrapFile, f.bootstrap, 0o644); err != nil {
		return fmt.Errorf("grpc bootstrap: %w", err)
	}
	f.written = true
	f.log.Info("Wrote the grpc xDS bootstrap", "path", f.bootstrapFile)
	return nil
}
