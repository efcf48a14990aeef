package certservice

import (
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"

	"github.com/meshplane/meshplane/internal/ca"
)

// DefaultServingTTL is the validity of meshd's serving certificate; it is
// renewed after two thirds of it.
const DefaultServingTTL = 24 * time.Hour

// servingRetry is how long a failed renewal waits before the next attempt,
// while the current certificate is still valid.
const servingRetry = time.Minute

// ServingOptions configure ServingTLSConfig.
type ServingOptions struct {
	// DNSNames clients reach meshd by, e.g. meshd.<namespace>.svc (and
	// istiod.<namespace>.svc for Istio's agents). Required.
	DNSNames []string
	// TTL of the serving certificate; zero: DefaultServingTTL.
	TTL time.Duration
	// Logger; the zero value discards.
	Logger logr.Logger
}

// ServingTLSConfig returns the TLS configuration meshd serves gRPC with: a
// certificate for o.DNSNames issued from h, renewed after two thirds of its
// life and as soon as h holds another CA (Holder.Generation), so clients that
// trust the mesh root can verify meshd. It issues the first certificate
// before returning, so a Holder without a CA is an error here, not at the
// first handshake. A failed renewal is logged and retried while the current
// certificate remains valid.
func ServingTLSConfig(h *ca.Holder, o ServingOptions) (*tls.Config, error) {
	s, err := newServingCert(h, o, time.Now)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		NextProtos:     []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return s.get() },
	}, nil
}

func newServingCert(h *ca.Holder, o ServingOptions, now func() time.Time) (*servingCert, error) {
	if h == nil {
		return nil, errors.New("serving TLS: a CA holder is required")
	}
	if o.TTL <= 0 {
		o.TTL = DefaultServingTTL
	}
	s := &servingCert{holder: h, dnsNames: append([]string(nil), o.DNSNames...), ttl: o.TTL, log: o.Logger, now: now}
	if _, err := s.renew(); err != nil {
		return nil, err
	}
	return s, nil
}

type servingCert struct {
	holder   *ca.Holder
	dnsNames []string
	ttl      time.Duration
	log      logr.Logger
	now      func() time.Time

	mu      sync.Mutex // serialises renewals
	current atomic.Pointer[issuedServing]
}

type issuedServing struct {
	cert       *tls.Certificate
	generation uint64
	renewAt    time.Time
}

func (s *servingCert) get() (*tls.Certificate, error) {
	if c := s.current.Load(); c != nil && s.fresh(c) {
		return c.cert, nil
	}
	return s.renew()
}

func (s *servingCert) fresh(c *issuedServing) bool {
	return s.now().Before(c.renewAt) && c.generation == s.holder.Generation()
}

// renew issues a new certificate unless another handshake just did.
func (s *servingCert) renew() (*tls.Certificate, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.current.Load()
	if old != nil && s.fresh(old) {
		return old.cert, nil
	}
	gen := s.holder.Generation()
	cert, err := s.holder.IssueServing(s.dnsNames, s.ttl)
	now := s.now()
	if err != nil {
		err = fmt.Errorf("issuing meshd's serving certificate for %v: %w", s.dnsNames, err)
		if old == nil || !now.Before(old.cert.Leaf.NotAfter) {
			return nil, err
		}
		s.log.Error(err, "Renewing the serving certificate failed; serving the current one", "notAfter", old.cert.Leaf.NotAfter)
		s.current.Store(&issuedServing{cert: old.cert, generation: gen, renewAt: now.Add(servingRetry)})
		return old.cert, nil
	}
	leaf := cert.Leaf
	renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3)
	s.current.Store(&issuedServing{cert: cert, generation: gen, renewAt: renewAt})
	s.log.V(1).Info("Issued the serving certificate", "dnsNames", s.dnsNames, "notAfter", leaf.NotAfter, "renewAt", renewAt)
	return cert, nil
}
