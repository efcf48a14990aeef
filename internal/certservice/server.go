// Package certservice is meshd's certificate signing service: Istio's
// IstioCertificateService (istio.io/api security/v1alpha1, the protocol
// istio-agent and proxyless gRPC clients speak) over gRPC and TLS.
//
// A caller authenticates with a Kubernetes service-account token in the gRPC
// metadata, "authorization: Bearer <token>", bound to the CA's audience
// (istio-ca) and checked with a TokenReview. The certificate it gets carries
// one identity, spiffe://<trust domain>/ns/<namespace>/sa/<service account>,
// taken from the token and never from the CSR: a CSR asking for anything else
// is refused (InvalidArgument, naming both identities); a CSR asking for
// nothing gets the token's identity.
//
// Status codes: Unauthenticated for a missing, invalid, expired, wrongly
// bound or revoked token; InvalidArgument for a bad CSR, identity or
// validity; Unavailable when the token cannot be reviewed or the signer
// cannot sign (no CA, expired CA, cert-manager denying, failing or slow).
//
// meshd wires it like this (CA types SelfSigned and Provided):
//
//	holder := &ca.Holder{}
//	err := holder.Update(ca.BundleFromSecretData(secret.Data)) // and on every change of the Secret
//	auth, err := certservice.NewTokenReviewAuthenticator(kubeClient, certservice.TokenReviewOptions{Registry: reg})
//	svc, err := certservice.New(certservice.Options{Signer: holder, Authenticator: auth, TrustDomain: td, Logger: log, Registry: reg})
//	tlsConfig, err := certservice.ServingTLSConfig(holder, certservice.ServingOptions{DNSNames: []string{"meshd.<ns>.svc", "istiod.<ns>.svc"}, Logger: log})
//	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
//	svc.Register(gs) // on :15012
//
// For CertManager, Signer is a *ca.CertManagerSigner; meshd's serving
// certificate then needs another source, as there is no local CA key.
package certservice

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-logr/logr"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"

	"github.com/meshplane/meshplane/internal/ca"
)

// Validity of workload certificates.
const (
	// DefaultTTL is what a request without validity_duration gets, as
	// Istio's default workload certificate TTL.
	DefaultTTL = 24 * time.Hour
	// DefaultMaxTTL bounds what a request may ask for; longer requests get
	// the maximum. A week lets a proxy ride out a long CA outage while keeping
	// a leaked workload key useful for at most a week; it is also the wait in
	// phase 3 of a root rotation (see package ca).
	DefaultMaxTTL = 7 * 24 * time.Hour
)

// Signer issues a workload certificate for a CSR and an identity, returning
// the PEM chain, leaf first, root last. *ca.Holder (SelfSigned, Provided) and
// *ca.CertManagerSigner (CertManager) implement it. Errors matching
// ca.ErrInvalidRequest are the caller's fault; others mean the signer cannot
// sign now.
type Signer interface {
	Sign(ctx context.Context, csrPEM []byte, id ca.Identity, ttl time.Duration) ([]string, error)
}

// Options configure a Server.
type Options struct {
	// Signer issues the certificates. Required.
	Signer Signer
	// Authenticator maps a caller's token to its service account. Required.
	Authenticator Authenticator
	// TrustDomain of the SPIFFE identities issued. Required.
	TrustDomain string
	// DefaultTTL is the validity of a certificate whose request does not
	// set one; zero: DefaultTTL.
	DefaultTTL time.Duration
	// MaxTTL bounds a requested validity (longer is shortened to it); zero:
	// DefaultMaxTTL. At least DefaultTTL.
	MaxTTL time.Duration
	// Logger; the zero value discards. Refusals because of another identity
	// are logged at V(0), other refusals and issued certificates at V(1).
	// Tokens, CSRs and keys are never logged.
	Logger logr.Logger
	// Registry receives the meshd_ca_* metrics; nil: not registered.
	Registry prometheus.Registerer
}

// Server implements IstioCertificateService.
type Server struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer

	signer      Signer
	auth        Authenticator
	trustDomain string
	defaultTTL  time.Duration
	maxTTL      time.Duration
	log         logr.Logger
	metrics     *metrics
}

// New returns a Server; Register it on a gRPC server that serves TLS.
func New(o Options) (*Server, error) {
	if o.Signer == nil || o.Authenticator == nil {
		return nil, errors.New("certificate service: a signer and an authenticator are required")
	}
	if err := ca.ValidateTrustDomain(o.TrustDomain); err != nil {
		return nil, fmt.Errorf("certificate service: %w", err)
	}
	if o.DefaultTTL == 0 {
		o.DefaultTTL = DefaultTTL
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = DefaultMaxTTL
	}
	if o.DefaultTTL < 0 || o.MaxTTL < o.DefaultTTL {
		return nil, fmt.Errorf("certificate service: default TTL %s must be positive and at most the maximum TTL %s", o.DefaultTTL, o.MaxTTL)
	}
	m, err := newMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	return &Server{
		signer:      o.Signer,
		auth:        o.Authenticator,
		trustDomain: o.TrustDomain,
		defaultTTL:  o.DefaultTTL,
		maxTTL:      o.MaxTTL,
		log:         o.Logger,
		metrics:     m,
	}, nil
}

// Register adds the service to a gRPC server.
func (s *Server) Register(r grpc.ServiceRegistrar) {
	securityv1alpha1.RegisterIstioCertificateServiceServer(r, s)
}

// CreateCertificate signs the request's CSR for the identity of the caller's
// token.
func (s *Server) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	log := s.log
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		log = log.WithValues("peer", p.Addr.String())
	}

	token, err := bearerToken(ctx)
	if err != nil {
		return nil, s.refuse(log, ReasonUnauthenticated, codes.Unauthenticated, err)
	}
	sa, err := s.auth.Authenticate(ctx, token)
	switch {
	case errors.Is(err, ErrUnauthenticated):
		return nil, s.refuse(log, ReasonUnauthenticated, codes.Unauthenticated, err)
	case err != nil && ctx.Err() != nil:
		return nil, s.refuse(log, ReasonCanceled, status.FromContextError(ctx.Err()).Code(), err)
	case err != nil:
		return nil, s.refuse(log, ReasonUnavailable, codes.Unavailable, fmt.Errorf("authenticating the caller: %w", err))
	}
	id, err := ca.NewIdentity(s.trustDomain, sa.Namespace, sa.Name)
	if err != nil {
		return nil, s.refuse(log, ReasonUnauthenticated, codes.Unauthenticated, fmt.Errorf("the token's service account is not a valid identity: %w", err))
	}
	log = log.WithValues("identity", id.String())

	ttl, err := s.ttl(req.GetValidityDuration())
	if err != nil {
		return nil, s.refuse(log, ReasonInvalidRequest, codes.InvalidArgument, err)
	}

	start := time.Now()
	chain, err := s.signer.Sign(ctx, []byte(req.GetCsr()), id, ttl)
	s.metrics.signing.Observe(time.Since(start).Seconds())
	if err != nil {
		var ie *ca.IdentityError
		switch {
		case errors.As(err, &ie):
			return nil, s.refuse(log, ReasonIdentityMismatch, codes.InvalidArgument, err)
		case errors.Is(err, ca.ErrInvalidRequest):
			return nil, s.refuse(log, ReasonInvalidRequest, codes.InvalidArgument, err)
		case ctx.Err() != nil:
			return nil, s.refuse(log, ReasonCanceled, status.FromContextError(ctx.Err()).Code(), err)
		default:
			return nil, s.refuse(log, ReasonUnavailable, codes.Unavailable, err)
		}
	}
	s.metrics.issued.Inc()
	log.V(1).Info("Issued workload certificate", "ttl", ttl.String())
	return &securityv1alpha1.IstioCertificateResponse{CertChain: chain}, nil
}

// ttl turns a requested validity in seconds into the one to issue.
func (s *Server) ttl(seconds int64) (time.Duration, error) {
	switch {
	case seconds < 0:
		return 0, fmt.Errorf("validity_duration %ds is negative", seconds)
	case seconds == 0:
		return s.defaultTTL, nil
	case seconds >= int64(s.maxTTL/time.Second): // also keeps the multiplication from overflowing
		return s.maxTTL, nil
	default:
		return time.Duration(seconds) * time.Second, nil
	}
}

// refuse counts, logs and returns a refusal. err's text goes to the caller:
// it names identities and problems, never keys or tokens.
func (s *Server) refuse(log logr.Logger, reason string, code codes.Code, err error) error {
	s.metrics.refusals.WithLabelValues(reason).Inc()
	if reason == ReasonIdentityMismatch {
		log.Info("Refused a CSR for another identity", "reason", reason, "error", err.Error())
	} else {
		log.V(1).Info("Refused certificate request", "reason", reason, "error", err.Error())
	}
	return status.Error(code, err.Error())
}

// bearerToken returns the token of the single "authorization: Bearer <token>"
// metadata entry.
func bearerToken(ctx context.Context) (string, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return "", fmt.Errorf("%w: no authorization metadata (want \"authorization: Bearer <service account token>\")", ErrUnauthenticated)
	}
	if len(values) > 1 {
		return "", fmt.Errorf("%w: %d authorization metadata entries, want one", ErrUnauthenticated, len(values))
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", fmt.Errorf("%w: authorization metadata is not \"Bearer <token>\"", ErrUnauthenticated)
	}
	return strings.TrimSpace(token), nil
}
