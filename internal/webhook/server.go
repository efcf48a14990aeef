package webhook

import (
	"github.com/meshplane/meshplane/internal/listen"

	"context"
	"crypto/tls"
	"errors"
	"fmt"
	stdlog "log"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-logr/logr"
	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
)

// Names of the files in ServerOptions.CertDir, as in a kubernetes.io/tls Secret.
const (
	CertFile = "tls.crt"
	KeyFile  = "tls.key"
)

// DefaultShutdownTimeout bounds the graceful shutdown when ServerOptions.ShutdownTimeout is zero.
const DefaultShutdownTimeout = 10 * time.Second

// ServerOptions configure a Server. Exactly one of CertDir and Certificate is set.
type ServerOptions struct {
	// Addr to listen on, host:port.
	Addr string
	// Handler serves the requests, usually NewHandler's.
	Handler http.Handler
	// CertDir holds CertFile and KeyFile (a mounted Secret from cert-manager, or envtest's
	// serving certificates). They are read at NewServer and again whenever they change, so a
	// renewed certificate is served without a restart.
	CertDir string
	// Certificate is served as is, e.g. SelfSigned.Certificate.
	Certificate *tls.Certificate
	// ShutdownTimeout bounds the graceful shutdown; DefaultShutdownTimeout when zero.
	ShutdownTimeout time.Duration
	// Logger; discarded when unset.
	Logger logr.Logger
}

// Server serves a handler over TLS.
type Server struct {
	opts       ServerOptions
	log        logr.Logger
	watcher    *certwatcher.CertWatcher
	tlsConfig  *tls.Config
	httpServer *http.Server

	listener listen.Once
}

// NewServer checks the options and, with CertDir, reads the certificate; nothing listens
// until Listen or Run.
func NewServer(opts ServerOptions) (*Server, error) {
	if opts.Handler == nil {
		return nil, errors.New("webhook server: no handler")
	}
	if (opts.CertDir == "") == (opts.Certificate == nil) {
		return nil, errors.New("webhook server: set exactly one of a certificate directory and a certificate")
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = DefaultShutdownTimeout
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	s := &Server{opts: opts, log: log, listener: listen.Once{Address: opts.Addr, What: "webhook"}}
	s.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// HTTP/1.1 only, as Kubernetes' own webhook servers since the HTTP/2 rapid-reset
		// attacks: the API server needs nothing more.
		NextProtos: []string{"http/1.1"},
	}
	if opts.CertDir != "" {
		watcher, err := certwatcher.New(filepath.Join(opts.CertDir, CertFile), filepath.Join(opts.CertDir, KeyFile))
		if err != nil {
			return nil, fmt.Errorf("reading the webhook serving certificate in %s: %w", opts.CertDir, err)
		}
		s.watcher = watcher
		s.tlsConfig.GetCertificate = watcher.GetCertificate
	} else {
		s.tlsConfig.Certificates = []tls.Certificate{*opts.Certificate}
	}
	s.httpServer = &http.Server{
		Handler:           opts.Handler,
		ReadHeaderTimeout: 10 * time.Second,
		// The API server gives a webhook at most 30 s (timeoutSeconds).
		ReadTimeout:  30 * time.Second,
		WriteTimeout: 30 * time.Second,
		IdleTimeout:  120 * time.Second,
		// TLS handshake failures (an API server not yet trusting the CA) go to meshd's
		// structured log at debug level, not to stderr as plain text.
		ErrorLog: stdlog.New(logWriter{log.V(1)}, "", 0),
	}
	return s, nil
}

// Listen binds the address. Run calls it when it has not been called.
func (s *Server) Listen() error {
	_, err := s.listener.Listen()
	return err
}

// Addr is the bound address, nil before Listen.
func (s *Server) Addr() net.Addr { return s.listener.Addr() }

// Run serves until ctx is done, then shuts down gracefully within ShutdownTimeout. It returns
// nil after a clean shutdown. A Server runs once.
func (s *Server) Run(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		cancel()
		wg.Wait()
	}()
	if s.watcher != nil {
		wg.Go(func() {
			if err := s.watcher.Start(ctx); err != nil {
				s.log.Error(err, "Not watching the webhook certificate files; a renewed certificate needs a restart", "dir", s.opts.CertDir)
			}
		})
	}

	serveErr := make(chan error, 1)
	go func() { serveErr <- s.httpServer.Serve(tls.NewListener(s.boundListener(), s.tlsConfig)) }()
	source := "self-signed"
	if s.opts.CertDir != "" {
		source = s.opts.CertDir
	}
	s.log.Info("Serving the validating webhook over TLS", "addr", s.Addr().String(), "path", ValidatePath, "certificate", source)

	select {
	case err := <-serveErr:
		return fmt.Errorf("webhook server on %s: %w", s.Addr(), err)
	case <-ctx.Done():
	}
	shutdownCtx, cancelShutdown := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
	defer cancelShutdown()
	var err error
	if shutdownErr := s.httpServer.Shutdown(shutdownCtx); shutdownErr != nil {
		_ = s.httpServer.Close()
		err = fmt.Errorf("graceful shutdown of the webhook server did not finish within %s: %w", s.opts.ShutdownTimeout, shutdownErr)
	}
	if serr := <-serveErr; serr != nil && !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = fmt.Errorf("webhook server on %s: %w", s.Addr(), serr)
	}
	return err
}

// logWriter writes the lines of a standard library logger to a logr.Logger.
type logWriter struct{ log logr.Logger }

func (w logWriter) Write(p []byte) (int, error) {
	w.log.Info(strings.TrimSpace(string(p)))
	return len(p), nil
}

// boundListener is the listener Listen bound.
func (s *Server) boundListener() net.Listener {
	l, _ := s.listener.Listen()
	return l
}
