// Package agenttest provides what mesh-agent's tests run against: a CA that
// speaks Istio's certificate protocol over real TLS, and an ADS server that
// stands in for meshd's xDS. Both listen on loopback and stop with the test.
package agenttest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// CAOptions configure a CA.
type CAOptions struct {
	// TokenFile holds the only token the CA accepts, read at every request
	// (as a TokenReview would see the kubelet's current token).
	TokenFile string
	// Identity issued: spiffe://<TrustDomain>/ns/<Namespace>/sa/<ServiceAccount>;
	// defaults cluster.local, default, default.
	TrustDomain, Namespace, ServiceAccount string
	// MaxTTL caps the validity given; 0 means one hour.
	MaxTTL time.Duration
}

// CA is IstioCertificateService over TLS with a root and an intermediate of
// its own. Its serving certificate is for 127.0.0.1 and localhost.
type CA struct {
	// Addr is where it listens, 127.0.0.1:port.
	Addr string
	// RootFile is the root certificate, PEM, in a temporary directory: the
	// agent's --root-cert.
	RootFile string
	// RootPEM is the content of RootFile.
	RootPEM []byte
	Root    *x509.Certificate

	opts     CAOptions
	rootKey  *ecdsa.PrivateKey
	inter    *x509.Certificate
	interKey *ecdsa.PrivateKey

	mu       sync.Mutex
	issued   []*x509.Certificate
	refusals []string
}

// NewCA starts a CA; it stops when the test ends.
func NewCA(t testing.TB, o CAOptions) *CA {
	t.Helper()
	if o.TrustDomain == "" {
		o.TrustDomain = "cluster.local"
	}
	if o.Namespace == "" {
		o.Namespace = "default"
	}
	if o.ServiceAccount == "" {
		o.ServiceAccount = "default"
	}
	if o.MaxTTL == 0 {
		o.MaxTTL = time.Hour
	}
	ca := &CA{opts: o}
	var err error
	ca.rootKey, ca.Root, err = selfSigned("meshplane test root")
	if err != nil {
		t.Fatal(err)
	}
	ca.interKey = mustKey(t)
	ca.inter, err = sign(&x509.Certificate{
		Subject:               pkix.Name{CommonName: "meshplane test intermediate"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
	}, &ca.interKey.PublicKey, ca.Root, ca.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	ca.RootPEM = pemCert(ca.Root)
	ca.RootFile = filepath.Join(t.TempDir(), "root-cert.pem")
	if err := os.WriteFile(ca.RootFile, ca.RootPEM, 0o644); err != nil {
		t.Fatal(err)
	}

	srv := grpc.NewServer(grpc.Creds(credentials.NewTLS(ca.ServerTLS(t))))
	securityv1alpha1.RegisterIstioCertificateServiceServer(srv, &caService{ca: ca})
	ca.Addr = serve(t, srv)
	return ca
}

// Identity is the SPIFFE ID the CA issues.
func (ca *CA) Identity() string {
	return fmt.Sprintf("spiffe://%s/ns/%s/sa/%s", ca.opts.TrustDomain, ca.opts.Namespace, ca.opts.ServiceAccount)
}

// Issued returns the leaf certificates issued so far, oldest first.
func (ca *CA) Issued() []*x509.Certificate {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return append([]*x509.Certificate(nil), ca.issued...)
}

// Refusals returns why requests were refused so far.
func (ca *CA) Refusals() []string {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return append([]string(nil), ca.refusals...)
}

// ServerTLS is a TLS server configuration with a fresh certificate for
// 127.0.0.1 and localhost under the CA's root, for servers the agent must
// trust through --root-cert (the CA itself, a stand-in for meshd's xDS).
func (ca *CA) ServerTLS(t testing.TB) *tls.Config {
	t.Helper()
	key := mustKey(t)
	cert, err := sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: "meshd"},
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		NotBefore:   time.Now().Add(-time.Hour),
		NotAfter:    time.Now().Add(24 * time.Hour),
	}, &key.PublicKey, ca.inter, ca.interKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, ca.inter.Raw}, PrivateKey: key, Leaf: cert}},
		MinVersion:   tls.VersionTLS12,
	}
}

func (ca *CA) refuse(code codes.Code, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	ca.mu.Lock()
	ca.refusals = append(ca.refusals, msg)
	ca.mu.Unlock()
	return status.Error(code, msg)
}

type caService struct {
	securityv1alpha1.UnimplementedIstioCertificateServiceServer
	ca *CA
}

func (s *caService) CreateCertificate(ctx context.Context, req *securityv1alpha1.IstioCertificateRequest) (*securityv1alpha1.IstioCertificateResponse, error) {
	ca := s.ca
	want, err := os.ReadFile(ca.opts.TokenFile)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the expected token: %v", err)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	auth := md.Get("authorization")
	if len(auth) != 1 {
		return nil, ca.refuse(codes.Unauthenticated, "want one authorization header, got %d", len(auth))
	}
	token, ok := strings.CutPrefix(auth[0], "Bearer ")
	if !ok || token != strings.TrimSpace(string(want)) {
		return nil, ca.refuse(codes.Unauthenticated, "token rejected: not the service account's current token")
	}

	block, _ := pem.Decode([]byte(req.GetCsr()))
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		return nil, ca.refuse(codes.InvalidArgument, "csr is not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, ca.refuse(codes.InvalidArgument, "parsing the csr: %v", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, ca.refuse(codes.InvalidArgument, "csr signature: %v", err)
	}
	identity, err := url.Parse(ca.Identity())
	if err != nil {
		return nil, status.Errorf(codes.Internal, "identity: %v", err)
	}
	if len(csr.DNSNames)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 ||
		len(csr.URIs) > 1 || (len(csr.URIs) == 1 && csr.URIs[0].String() != identity.String()) {
		return nil, ca.refuse(codes.PermissionDenied, "csr asks for names other than %s", identity)
	}

	ttl := ca.opts.MaxTTL
	if req.GetValidityDuration() > 0 {
		ttl = min(ttl, time.Duration(req.GetValidityDuration())*time.Second)
	}
	now := time.Now()
	leaf, err := sign(&x509.Certificate{
		URIs:        []*url.URL{identity},
		NotBefore:   now,
		NotAfter:    now.Add(ttl),
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}, csr.PublicKey, ca.inter, ca.interKey)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "signing: %v", err)
	}
	ca.mu.Lock()
	ca.issued = append(ca.issued, leaf)
	ca.mu.Unlock()
	return &securityv1alpha1.IstioCertificateResponse{
		CertChain: []string{string(pemCert(leaf)), string(pemCert(ca.inter)), string(pemCert(ca.Root))},
	}, nil
}

func selfSigned(name string) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: name},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
	}
	cert, err := sign(tmpl, &key.PublicKey, tmpl, key)
	return key, cert, err
}

// sign issues tmpl for pub under parent, with a random serial.
func sign(tmpl *x509.Certificate, pub any, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, parentKey)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func mustKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// serve serves srv on a loopback port until the test ends.
func serve(t testing.TB, srv *grpc.Server) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(lis) }()
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}
