package controlplane

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/certservice"
	"github.com/meshplane/meshplane/internal/xds/server"
)

// tlsSource gives the TLS configuration of each handshake on the secure port:
// meshd's certificate for its DNS names, and client certificates requested but
// not required, verified against the mesh roots. An error fails the
// handshake, which clients see as Unavailable.
type tlsSource interface {
	forClient() (*tls.Config, error)
}

// secureTLSConfig is the secure port's TLS configuration, taken from src at
// every handshake.
func secureTLSConfig(src tlsSource) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS12,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) { return src.forClient() },
	}
}

// servingTLS is the secure port's tlsSource for a CA kept in a Secret: the
// certificate is issued from the holder (certservice.ServingTLSConfig). Until
// the CA has loaded every handshake fails.
type servingTLS struct {
	holder *ca.Holder
	opts   certservice.ServingOptions

	mu      sync.Mutex
	serving *tls.Config // nil until the CA has loaded
	current *tls.Config // serving, trusting the roots of generation gen
	gen     uint64
}

func (s *servingTLS) forClient() (*tls.Config, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving == nil {
		cfg, err := certservice.ServingTLSConfig(s.holder, s.opts)
		if err != nil {
			return nil, fmt.Errorf("meshd has no serving certificate yet: %w", err)
		}
		s.serving = cfg
	}
	// The roots change only with the CA; a handshake then builds the pool
	// once for all that follow.
	if gen := s.holder.Generation(); s.current == nil || gen != s.gen {
		roots := x509.NewCertPool()
		roots.AppendCertsFromPEM(s.holder.Authority().RootsPEM())
		cfg := s.serving.Clone()
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
		cfg.ClientCAs = roots
		s.current, s.gen = cfg, gen
	}
	return s.current, nil
}

// forClient makes issuerSource the secure port's tlsSource with CA type
// CertManager: the certificate and roots last obtained from the issuer, while
// the certificate is valid.
func (s *issuerSource) forClient() (*tls.Config, error) {
	if cur := s.valid(); cur != nil {
		return cur.config, nil
	}
	return nil, errors.New(s.why())
}

// adsMethodPrefix starts the full method names of ADS (both variants).
var adsMethodPrefix = "/" + discoverygrpc.AggregatedDiscoveryService_ServiceDesc.ServiceName + "/"

// authenticateADS admits an ADS stream only from a caller with a mesh client
// certificate (verified in the handshake) or a service-account token the
// authenticator accepts. Other services (the certificate service checks
// tokens itself) pass through.
func authenticateADS(auth certservice.Authenticator, log logr.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !strings.HasPrefix(info.FullMethod, adsMethodPrefix) {
			return handler(srv, ss)
		}
		namespace, err := authenticateCaller(ss.Context(), auth)
		if err != nil {
			p, _ := peer.FromContext(ss.Context())
			log.V(1).Info("Refused an unauthenticated xDS stream", "peer", addrOf(p), "error", err.Error())
			return err
		}
		return handler(srv, &namespaceBoundStream{ServerStream: ss, namespace: namespace})
	}
}

func addrOf(p *peer.Peer) string {
	if p == nil || p.Addr == nil {
		return ""
	}
	return p.Addr.String()
}

// authenticateCaller returns nil for a verified client certificate or an
// accepted token, else a gRPC status error.
func authenticateCaller(ctx context.Context, auth certservice.Authenticator) (namespace string, _ error) {
	if p, ok := peer.FromContext(ctx); ok {
		if info, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(info.State.VerifiedChains) > 0 {
			for _, u := range info.State.VerifiedChains[0][0].URIs {
				if id, err := ca.ParseIdentity(u.String()); err == nil {
					return id.Namespace, nil
				}
			}
			return "", status.Error(codes.Unauthenticated, "the client certificate names no SPIFFE identity")
		}
	}
	md, _ := metadata.FromIncomingContext(ctx)
	values := md.Get("authorization")
	if len(values) == 0 {
		return "", status.Error(codes.Unauthenticated,
			"xDS on this port needs a mesh client certificate or a service-account token (\"authorization: Bearer <token>\", audience istio-ca)")
	}
	scheme, token, ok := strings.Cut(values[0], " ")
	if len(values) > 1 || !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(token) == "" {
		return "", status.Error(codes.Unauthenticated, "the authorization metadata must be one \"Bearer <token>\"")
	}
	sa, err := auth.Authenticate(ctx, strings.TrimSpace(token))
	switch {
	case err == nil:
		return sa.Namespace, nil
	case errors.Is(err, certservice.ErrUnauthenticated):
		return "", status.Error(codes.Unauthenticated, err.Error())
	case ctx.Err() != nil:
		return "", status.FromContextError(ctx.Err()).Err()
	default:
		return "", status.Errorf(codes.Unavailable, "authenticating the caller: %v", err)
	}
}

// serveSecure serves ADS and the certificate service on lis with TLS until
// ctx ends, then stops the gRPC server as xds Server.Serve does.
func (c *ControlPlane) serveSecure(ctx context.Context, lis net.Listener, tlsConfig *tls.Config, certs *certservice.Server, auth certservice.Authenticator) error {
	c.xds.Start(ctx)
	opts := append(server.ServerOptions(),
		grpc.Creds(credentials.NewTLS(tlsConfig)),
		grpc.ChainStreamInterceptor(authenticateADS(auth, c.log.WithName("xds"))))
	g := grpc.NewServer(opts...)
	c.xds.RegisterServices(g)
	certs.Register(g)
	return server.ServeGRPC(ctx, g, lis)
}

// namespaceBoundStream refuses xDS requests whose node claims another
// namespace than the caller's identity: a workload's token or certificate
// gets the configuration of its own namespace's proxies only, never another
// namespace's (routes, secrets names, authorization policies).
type namespaceBoundStream struct {
	grpc.ServerStream
	namespace string
}

func (s *namespaceBoundStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	node := nodeOf(m)
	if node == nil {
		return nil // later requests of a stream may leave the node out
	}
	if ns := server.NodeNamespace(node); ns != s.namespace {
		return status.Errorf(codes.PermissionDenied,
			"xDS node %q is in namespace %q, but the caller's identity is in namespace %q", node.GetId(), ns, s.namespace)
	}
	return nil
}

func nodeOf(m any) *corev3.Node {
	switch r := m.(type) {
	case *discoverygrpc.DiscoveryRequest:
		return r.GetNode()
	case *discoverygrpc.DeltaDiscoveryRequest:
		return r.GetNode()
	}
	return nil
}
