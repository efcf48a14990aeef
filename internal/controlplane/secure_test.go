package controlplane

import (
	"context"
	"crypto"
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
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/ca/catest"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/rootcert"
)

const (
	serviceAccount = "web"
	waitFor        = 30 * time.Second
)

// names are a test's namespaces and what follows from them; each test (and
// each -count) gets its own in the package's API server.
type names struct {
	meshNamespace, appNamespace string
	servingName, workloadID     string
}

var namesUsed atomic.Int64

func newNames() names {
	n := namesUsed.Add(1)
	mesh, app := fmt.Sprintf("mesh-system-%d", n), fmt.Sprintf("apps-%d", n)
	return names{
		meshNamespace: mesh,
		appNamespace:  app,
		servingName:   "meshd." + mesh + ".svc",
		workloadID:    "spiffe://cluster.local/ns/" + app + "/sa/" + serviceAccount,
	}
}

// logBuffer collects the lines of the logger it makes.
type logBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (b *logBuffer) logger() logr.Logger {
	return funcr.New(func(prefix, args string) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.lines = append(b.lines, prefix+" "+args)
	}, funcr.Options{Verbosity: 1})
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "\n")
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dial connects to meshd's secure port, verifying it by its DNS name against
// roots, presenting cert when given.
func (n names) dial(t *testing.T, addr string, roots *x509.CertPool, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	cfg := &tls.Config{RootCAs: roots, ServerName: n.servingName, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// workloadCert asks for a certificate for a new key with token; it returns
// the chain (leaf first) and the key.
func (n names) workloadCert(conn *grpc.ClientConn, token string) ([]*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	id, _ := url.Parse(n.workloadID)
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{id}}, key)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	resp, err := securityv1alpha1.NewIstioCertificateServiceClient(conn).CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{
		Csr: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: csr})),
	})
	if err != nil {
		return nil, nil, err
	}
	var chain []*x509.Certificate
	for _, p := range resp.GetCertChain() {
		certs, err := parseCerts([]byte(p))
		if err != nil {
			return nil, nil, err
		}
		chain = append(chain, certs...)
	}
	return chain, key, nil
}

func parseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// verify checks that chain's leaf is the workload's and verifies, through
// the chain's intermediates, against roots for both mTLS usages.
func (n names) verify(t *testing.T, chain []*x509.Certificate, roots *x509.CertPool) {
	t.Helper()
	if len(chain) < 2 {
		t.Fatalf("a chain of %d certificates", len(chain))
	}
	leaf := chain[0]
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != n.workloadID {
		t.Errorf("leaf for %v, want %s", leaf.URIs, n.workloadID)
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("the leaf does not verify against the published root: %v", err)
		}
	}
}

// adsResponse opens an ADS stream (with token when given), asks for clusters
// and returns the first response or the stream's error.
func (n names) adsResponse(conn *grpc.ClientConn, token string) (*discoverygrpc.DiscoveryResponse, error) {
	return adsResponseFor(conn, token, n.appNamespace)
}

// adsResponseFor is adsResponse for a node of namespace ns.
func adsResponseFor(conn *grpc.ClientConn, token, ns string) (*discoverygrpc.DiscoveryResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	st, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	// A refused stream may already be closed; Recv reports why.
	_ = st.Send(&discoverygrpc.DiscoveryRequest{
		Node:    &corev3.Node{Id: "sidecar~10.1.0.1~web-1." + ns + "~" + ns + ".svc.cluster.local"},
		TypeUrl: resourcev3.ClusterType,
	})
	return st.Recv()
}

// newIntermediate makes an intermediate CA signed by the root of b and
// returns the CA bundle that signs with it.
func newIntermediate(t *testing.T, b ca.Bundle) (ca.Bundle, *x509.Certificate) {
	t.Helper()
	roots, err := parseCerts(b.RootCert)
	if err != nil || len(roots) != 1 {
		t.Fatalf("root: %v", err)
	}
	block, _ := pem.Decode(b.CAKey)
	rootKey, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "test intermediate CA"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(48 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, roots[0], key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return ca.Bundle{
		CACert:    certPEM,
		CAKey:     pkcs8PEM(t, key),
		RootCert:  b.RootCert,
		CertChain: append(append([]byte(nil), certPEM...), b.RootCert...),
	}, cert
}

func pkcs8PEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// TestSecurePort runs the control plane with a SelfSigned CA the test plays
// the operator for: before the CA Secret exists meshd is not ready and cannot
// issue; then a workload with a service-account token gets a certificate over
// the secure port that verifies against the root published in its namespace;
// ADS there needs a token or a mesh client certificate; a new intermediate
// takes over signing; an invalid CA Secret is logged, without key material,
// and the last good CA keeps signing.
func TestSecurePort(t *testing.T) {
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(apiConfig)
	n := newNames()
	meshNamespace, appNamespace := n.meshNamespace, n.appNamespace
	for _, ns := range []string{meshNamespace, appNamespace} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().ServiceAccounts(appNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := kube.CoreV1().ServiceAccounts(appNamespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	logs := &logBuffer{}
	cp, stop := startControlPlane(t, Options{
		RestConfig:      apiConfig,
		Namespace:       meshNamespace,
		SecureXDSAddr:   "127.0.0.1:0",
		ServingDNSNames: []string{n.servingName},
		Logger:          logs.logger(),
	}, &meshd.MeshConfig{TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY", CA: meshd.CAConfig{Type: meshd.CASelfSigned}})
	defer stop()
	addr := cp.SecureXDSAddr().String()

	// No CA yet.
	eventually(t, "/ready to say the CA Secret is missing", func() bool {
		ok, why := cp.Ready()
		return !ok && strings.Contains(why, meshNamespace+"/"+v1alpha1.SelfSignedCASecretName+" does not exist")
	})
	if _, _, err := n.workloadCert(n.dial(t, addr, x509.NewCertPool(), nil), token); status.Code(err) != codes.Unavailable {
		t.Fatalf("a certificate request without a CA: %v, want Unavailable", err)
	}

	// A CA Secret that is not a CA.
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SelfSignedCASecretName, Namespace: meshNamespace},
		Data: map[string][]byte{ca.SecretKeyCACert: []byte("not PEM"), ca.SecretKeyCAKey: []byte("not PEM"), ca.SecretKeyRootCert: []byte("not PEM")}}
	if secret, err = kube.CoreV1().Secrets(meshNamespace).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/ready to say the CA Secret is refused", func() bool {
		ok, why := cp.Ready()
		return !ok && strings.Contains(why, "is refused ("+string(ca.ReasonMalformed)+")")
	})

	// The operator writes the CA.
	rootBundle, err := ca.GenerateRoot("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	secret.Data = rootBundle.SecretData()
	if secret, err = kube.CoreV1().Secrets(meshNamespace).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readiness", func() bool { ok, _ := cp.Ready(); return ok })
	var published *corev1.ConfigMap
	eventually(t, "the root in the workload's namespace", func() bool {
		published, err = kube.CoreV1().ConfigMaps(appNamespace).Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	})
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM([]byte(published.Data[rootcert.DataKey])) {
		t.Fatalf("the published root is not PEM: %q", published.Data[rootcert.DataKey])
	}

	conn := n.dial(t, addr, roots, nil)
	chain, key, err := n.workloadCert(conn, token)
	if err != nil {
		t.Fatal(err)
	}
	n.verify(t, chain, roots)

	// ADS on the secure port: refused without credentials, served with a
	// token or with the workload's certificate.
	if _, err := n.adsResponse(conn, ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ADS without a token or client certificate: %v, want Unauthenticated", err)
	}
	if _, err := n.adsResponse(conn, "not-a-token"); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ADS with an invalid token: %v, want Unauthenticated", err)
	}
	if resp, err := n.adsResponse(conn, token); err != nil || resp.GetTypeUrl() != resourcev3.ClusterType {
		t.Errorf("ADS with a token: %v, %v", resp, err)
	}
	clientCert := &tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		clientCert.Certificate = append(clientCert.Certificate, c.Raw)
	}
	withCert := n.dial(t, addr, roots, clientCert)
	if resp, err := n.adsResponse(withCert, ""); err != nil || resp.GetTypeUrl() != resourcev3.ClusterType {
		t.Errorf("ADS with a mesh client certificate: %v, %v", resp, err)
	}
	// A caller gets the configuration of its own namespace's proxies only.
	if _, err := adsResponseFor(conn, token, "someone-else"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ADS with a token, for a node of another namespace: %v, want PermissionDenied", err)
	}
	if _, err := adsResponseFor(withCert, "", "someone-else"); status.Code(err) != codes.PermissionDenied {
		t.Errorf("ADS with a client certificate, for a node of another namespace: %v, want PermissionDenied", err)
	}

	// Intermediate rotation: same root, a new signing CA.
	rotated, intermediate := newIntermediate(t, rootBundle)
	secret.Data = rotated.SecretData()
	if secret, err = kube.CoreV1().Secrets(meshNamespace).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "certificates to chain through the new intermediate", func() bool {
		chain, _, err := n.workloadCert(conn, token)
		if err != nil {
			t.Fatal(err)
		}
		return len(chain) > 1 && chain[1].Equal(intermediate)
	})
	chain, _, err = n.workloadCert(n.dial(t, addr, roots, nil), token)
	if err != nil {
		t.Fatal(err)
	}
	n.verify(t, chain, roots)

	// An invalid update (a key that is not the CA certificate's) is refused.
	wrongKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	wrongKeyPEM := pkcs8PEM(t, wrongKey)
	secret.Data[ca.SecretKeyCAKey] = wrongKeyPEM
	if _, err := kube.CoreV1().Secrets(meshNamespace).Update(ctx, secret, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the refusal in the log", func() bool {
		return strings.Contains(logs.String(), "CA Secret refused") && strings.Contains(logs.String(), string(ca.ReasonKeyMismatch))
	})
	chain, _, err = n.workloadCert(conn, token)
	if err != nil {
		t.Fatal(err)
	}
	if !chain[1].Equal(intermediate) {
		t.Errorf("after an invalid CA Secret, signed by %q, want the last good intermediate", chain[1].Subject)
	}
	n.verify(t, chain, roots)
	if ok, why := cp.Ready(); !ok {
		t.Errorf("not ready after an invalid CA Secret, with a good CA loaded: %s", why)
	}
	keyBody := strings.Split(string(wrongKeyPEM), "\n")[1]
	if l := logs.String(); strings.Contains(l, "PRIVATE KEY") || strings.Contains(l, keyBody) {
		t.Errorf("key material in the log:\n%s", l)
	}
	if now, err := kube.CoreV1().ConfigMaps(appNamespace).Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{}); err != nil || now.Data[rootcert.DataKey] != published.Data[rootcert.DataKey] {
		t.Errorf("the published root changed with the intermediate (%v)", err)
	}
}

// TestCertManagerSecurePort runs the control plane with ca.type CertManager
// against the API server, with a test signer standing in for cert-manager:
// while the issuer fails meshd's serving certificate, /ready says why and the
// secure port refuses handshakes; once it signs, meshd serves a certificate
// for its DNS name that the issuer signed, the issuer's root is published, a
// workload with a token gets a certificate through the issuer that verifies
// against that root and can use it for ADS; a request the issuer denies is
// Unavailable and says it was denied.
func TestCertManagerSecurePort(t *testing.T) {
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(apiConfig)
	n := newNames()
	for _, ns := range []string{n.meshNamespace, n.appNamespace} {
		if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := kube.CoreV1().ServiceAccounts(n.appNamespace).Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: serviceAccount}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	tr, err := kube.CoreV1().ServiceAccounts(n.appNamespace).CreateToken(ctx, serviceAccount, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: []string{"istio-ca"}, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	token := tr.Status.Token

	requests := dynamic.NewForConfigOrDie(apiConfig).Resource(ca.CertificateRequestResource).Namespace(n.meshNamespace)
	// The issuer fails everything at first.
	signer := catest.Start(t, requests, func(catest.Request) catest.Decision { return catest.Fail })

	const issuer = "mesh-issuer"
	cp, stop := startControlPlane(t, Options{
		RestConfig:      apiConfig,
		Namespace:       n.meshNamespace,
		SecureXDSAddr:   "127.0.0.1:0",
		ServingDNSNames: []string{n.servingName},
	}, &meshd.MeshConfig{TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY", CA: meshd.CAConfig{
		Type:        meshd.CACertManager,
		CertManager: &meshd.CertManagerCA{IssuerRef: meshd.IssuerReference{Name: issuer, Kind: "Issuer", Group: "cert-manager.io"}},
	}})
	defer stop()
	addr := cp.SecureXDSAddr().String()

	// No serving certificate: not ready, and the reason is the issuer's.
	eventually(t, "/ready to say the serving certificate request failed", func() bool {
		ok, why := cp.Ready()
		return !ok && strings.Contains(why, "no serving certificate") && strings.Contains(why, `Issuer "`+issuer+`"`) &&
			strings.Contains(why, "failed to issue")
	})
	// The server refuses the handshake (a remote error), before the client
	// could refuse its certificate.
	if _, _, err := n.workloadCert(n.dial(t, addr, x509.NewCertPool(), nil), token); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "remote error") {
		t.Fatalf("a certificate request without a serving certificate: %v, want Unavailable from a handshake meshd refused", err)
	}

	signer.SetDecide(func(catest.Request) catest.Decision { return catest.Sign })
	eventually(t, "readiness", func() bool { ok, _ := cp.Ready(); return ok })

	// The issuer's root is published.
	var published *corev1.ConfigMap
	eventually(t, "the root in the workload's namespace", func() bool {
		published, err = kube.CoreV1().ConfigMaps(n.appNamespace).Get(ctx, rootcert.ConfigMapName, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	})
	if got := published.Data[rootcert.DataKey]; got != string(signer.Root.PEM) {
		t.Fatalf("published roots %q, want the issuer's root", got)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(published.Data[rootcert.DataKey]))

	// meshd's serving certificate is the one the issuer signed for its DNS
	// name, from a request for that name only.
	tlsConn, err := tls.DialWithDialer(&net.Dialer{Timeout: waitFor}, "tcp", addr,
		&tls.Config{RootCAs: roots, ServerName: n.servingName, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatalf("a client trusting the published root does not accept meshd: %v", err)
	}
	state := tlsConn.ConnectionState()
	_ = tlsConn.Close()
	served := state.PeerCertificates[0]
	if err := served.CheckSignatureFrom(signer.Intermediate.Cert); err != nil {
		t.Errorf("the serving certificate was not signed by the issuer: %v", err)
	}
	if !slices.Equal(served.DNSNames, []string{n.servingName}) || len(served.URIs) > 0 {
		t.Errorf("serving certificate for DNS names %v and URIs %v, want %s only", served.DNSNames, served.URIs, n.servingName)
	}
	if state.NegotiatedProtocol != "h2" {
		t.Errorf("ALPN %q, want h2 (gRPC clients insist)", state.NegotiatedProtocol)
	}
	servingRequested := false
	for _, r := range signer.Requests() {
		key, ok := r.CSR.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
		if ok && key.Equal(served.PublicKey) {
			servingRequested = slices.Equal(r.CSR.DNSNames, []string{n.servingName}) && len(r.CSR.URIs) == 0 &&
				r.IssuerName() == issuer && slices.Contains(r.Usages(), "server auth")
		}
	}
	if !servingRequested {
		t.Error("no CertificateRequest for the serving certificate's key asked the issuer for meshd's DNS name (server auth) and nothing else")
	}

	// A workload gets its certificate through the issuer, verifying against
	// the published root.
	conn := n.dial(t, addr, roots, nil)
	chain, key, err := n.workloadCert(conn, token)
	if err != nil {
		t.Fatal(err)
	}
	n.verify(t, chain, roots)
	if !chain[1].Equal(signer.Intermediate.Cert) {
		t.Errorf("the workload's certificate was signed by %q, want the issuer's intermediate", chain[1].Subject)
	}

	// ADS on the secure port: refused without credentials, served with the
	// workload's certificate, verified against the issuer's root.
	if _, err := n.adsResponse(conn, ""); status.Code(err) != codes.Unauthenticated {
		t.Errorf("ADS without a token or client certificate: %v, want Unauthenticated", err)
	}
	clientCert := &tls.Certificate{PrivateKey: key}
	for _, c := range chain {
		clientCert.Certificate = append(clientCert.Certificate, c.Raw)
	}
	if resp, err := n.adsResponse(n.dial(t, addr, roots, clientCert), ""); err != nil || resp.GetTypeUrl() != resourcev3.ClusterType {
		t.Errorf("ADS with a mesh client certificate: %v, %v", resp, err)
	}

	// The issuer's approver denies workload certificates from now on.
	signer.SetDecide(func(r catest.Request) catest.Decision {
		if r.Object.GetAnnotations()[ca.SPIFFEIDAnnotation] != "" {
			return catest.Deny
		}
		return catest.Sign
	})
	_, _, err = n.workloadCert(conn, token)
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "was denied") || !strings.Contains(err.Error(), n.meshNamespace+"/") {
		t.Errorf("a certificate request the issuer denies: %v, want Unavailable saying which request was denied", err)
	}
	if ok, why := cp.Ready(); !ok {
		t.Errorf("not ready after a denied workload request, with a serving certificate held: %s", why)
	}
	eventually(t, "meshd to delete its CertificateRequests", func() bool {
		list, err := requests.List(ctx, metav1.ListOptions{})
		return err == nil && len(list.Items) == 0
	})
}
