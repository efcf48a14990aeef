package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	deltav3 "github.com/envoyproxy/go-control-plane/pkg/server/delta/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"github.com/go-logr/logr"
	"google.golang.org/grpc"
)

// Secret names Envoy asks for, as with Istio's agent: the workload
// certificate and the mesh root it verifies peers against.
const (
	SDSCertificateName = "default"
	SDSRootName        = "ROOTCA"
)

// DefaultSDSSocket is the Unix socket Envoy reaches SDS on: Istio's path,
// shared by the agent and Envoy through an emptyDir.
const DefaultSDSSocket = "/var/run/secrets/workload-spiffe-uds/socket"

// SDSServer serves the current certificate to Envoy over SDS (state of the
// world and delta). The private key exists only in memory and in the
// responses: nothing is written to disk.
type SDSServer struct {
	log   logr.Logger
	cache *cachev3.LinearCache

	mu    sync.Mutex
	roots []byte // last ROOTCA published
}

// NewSDSServer returns a server with no secrets yet: Envoy's requests wait
// until Publish is first called.
func NewSDSServer(log logr.Logger) *SDSServer {
	// Versions restart with the process; the prefix keeps an Envoy that
	// reconnects to a restarted agent from taking new secrets for ones it has.
	prefix := strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	return &SDSServer{
		log: log,
		cache: cachev3.NewLinearCache(resourcev3.SecretType,
			cachev3.WithVersionPrefix(prefix), cachev3.WithLogger(cacheLogger{log.V(2)})),
	}
}

// Publish makes b the certificate served. ROOTCA is pushed only when the
// roots changed, so a rotation does not make Envoy rebuild every validation
// context.
func (s *SDSServer) Publish(b *Bundle) error {
	cert := &tlsv3.Secret{
		Name: SDSCertificateName,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: inline(b.CertChain),
			PrivateKey:       inline(b.PrivateKey),
		}},
	}
	root := &tlsv3.Secret{
		Name: SDSRootName,
		Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: inline(b.Roots),
		}},
	}
	for _, secret := range []*tlsv3.Secret{cert, root} {
		if err := secret.ValidateAll(); err != nil {
			return fmt.Errorf("SDS secret %s: %w", secret.Name, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	update := map[string]types.Resource{SDSCertificateName: cert}
	if !bytes.Equal(s.roots, b.Roots) {
		update[SDSRootName] = root
	}
	if err := s.cache.UpdateResources(update, nil); err != nil {
		return fmt.Errorf("updating the SDS cache: %w", err)
	}
	s.roots = b.Roots
	return nil
}

// Serve serves SDS on lis until ctx ends, then closes lis (which removes a
// Unix socket) and returns nil.
func (s *SDSServer) Serve(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(srv, &sdsService{
		sotw:  sotwv3.NewServer(ctx, s.cache, sdsCallbacks{s}),
		delta: deltav3.NewServer(ctx, s.cache, sdsCallbacks{s}),
	})
	stop := context.AfterFunc(ctx, srv.Stop) // SDS streams never end by themselves
	defer stop()
	s.log.Info("Serving SDS", "address", lis.Addr().String())
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return fmt.Errorf("serving SDS on %s: %w", lis.Addr(), err)
	}
	return nil
}

// sdsService is the SecretDiscoveryService over go-control-plane's protocol
// servers. (Its pkg/server/v3 would do the same but pulls in the rate-limit
// API module, which nothing here needs.)
type sdsService struct {
	secretv3.UnimplementedSecretDiscoveryServiceServer
	sotw  sotwv3.Server
	delta deltav3.Server
}

func (s *sdsService) StreamSecrets(stream secretv3.SecretDiscoveryService_StreamSecretsServer) error {
	return s.sotw.StreamHandler(stream, resourcev3.SecretType)
}

func (s *sdsService) DeltaSecrets(stream secretv3.SecretDiscoveryService_DeltaSecretsServer) error {
	return s.delta.DeltaStreamHandler(stream, resourcev3.SecretType)
}

// sdsCallbacks logs what Envoy asks for and, loudly, what it rejects.
type sdsCallbacks struct{ s *SDSServer }

func (c sdsCallbacks) OnStreamOpen(context.Context, int64, string) error { return nil }
func (c sdsCallbacks) OnStreamClosed(int64, *corev3.Node)                {}
func (c sdsCallbacks) OnStreamRequest(id int64, req *discoveryv3.DiscoveryRequest) error {
	c.s.logRequest(id, req.GetResourceNames(), req.GetErrorDetail().GetMessage())
	return nil
}
func (c sdsCallbacks) OnStreamResponse(context.Context, int64, *discoveryv3.DiscoveryRequest, *discoveryv3.DiscoveryResponse) {
}
func (c sdsCallbacks) OnDeltaStreamOpen(context.Context, int64, string) error { return nil }
func (c sdsCallbacks) OnDeltaStreamClosed(int64, *corev3.Node)                {}
func (c sdsCallbacks) OnStreamDeltaRequest(id int64, req *discoveryv3.DeltaDiscoveryRequest) error {
	c.s.logRequest(id, req.GetResourceNamesSubscribe(), req.GetErrorDetail().GetMessage())
	return nil
}
func (c sdsCallbacks) OnStreamDeltaResponse(int64, *discoveryv3.DeltaDiscoveryRequest, *discoveryv3.DeltaDiscoveryResponse) {
}

func (s *SDSServer) logRequest(stream int64, names []string, nack string) {
	if nack != "" {
		s.log.Error(nil, "Envoy rejected a secret", "stream", stream, "reason", nack)
		return
	}
	s.log.V(1).Info("SDS request", "stream", stream, "names", names)
}

func inline(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}

// cacheLogger hands go-control-plane's cache logging to logr.
type cacheLogger struct{ log logr.Logger }

func (l cacheLogger) Debugf(format string, args ...any) {
	l.log.V(1).Info(fmt.Sprintf(format, args...))
}

func (l cacheLogger) Infof(format string, args ...any) {
	l.log.Info(fmt.Sprintf(format, args...))
}

func (l cacheLogger) Warnf(format string, args ...any) {
	l.log.Info(fmt.Sprintf(format, args...))
}

func (l cacheLogger) Errorf(format string, args ...any) {
	l.log.Error(nil, fmt.Sprintf(format, args...))
}
