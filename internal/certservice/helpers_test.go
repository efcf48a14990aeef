package certservice

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	securityv1alpha1 "istio.io/api/security/v1alpha1"
	authenticationv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/meshplane/meshplane/internal/ca"
)

const (
	servingName = "meshd.meshplane-system.svc"
	trustDomain = "cluster.local"
)

// newHolder returns a Holder with a new SelfSigned root.
func newHolder(t testing.TB) (*ca.Holder, ca.Bundle) {
	t.Helper()
	b, err := ca.GenerateRoot(trustDomain)
	if err != nil {
		t.Fatal(err)
	}
	h := &ca.Holder{}
	if err := h.Update(b); err != nil {
		t.Fatal(err)
	}
	return h, b
}

// startService serves a Server built from o over TLS (a certificate from
// serving) on 127.0.0.1 and returns a client that verifies meshd against
// serving's roots. o.Signer defaults to serving.
func startService(t testing.TB, serving *ca.Holder, o Options) securityv1alpha1.IstioCertificateServiceClient {
	t.Helper()
	if o.Signer == nil {
		o.Signer = serving
	}
	if o.TrustDomain == "" {
		o.TrustDomain = trustDomain
	}
	svc, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig, err := ServingTLSConfig(serving, ServingOptions{DNSNames: []string{servingName}})
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.Creds(credentials.NewTLS(tlsConfig)))
	svc.Register(gs)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); _ = gs.Serve(lis) }()
	t.Cleanup(func() { gs.Stop(); <-served })

	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(serving.Authority().RootsPEM()) {
		t.Fatal("no roots")
	}
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: roots, ServerName: servingName, MinVersion: tls.VersionTLS12})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return securityv1alpha1.NewIstioCertificateServiceClient(conn)
}

// call sends a CSR with token (none when empty) and a validity in seconds.
func call(ctx context.Context, c securityv1alpha1.IstioCertificateServiceClient, token string, csr []byte, validity int64) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	resp, err := c.CreateCertificate(ctx, &securityv1alpha1.IstioCertificateRequest{Csr: string(csr), ValidityDuration: validity})
	if err != nil {
		return nil, err
	}
	return resp.GetCertChain(), nil
}

// newCSR returns a P-256 CSR asking for uris and dnsNames.
func newCSR(t testing.TB, uris []string, dnsNames ...string) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames}
	for _, u := range uris {
		parsed, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, parsed)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// verifiedLeaf verifies a response chain (leaf first, root last) against
// rootsPEM for both workload usages and returns the leaf.
func verifiedLeaf(t testing.TB, chain []string, rootsPEM []byte) *x509.Certificate {
	t.Helper()
	if len(chain) < 2 {
		t.Fatalf("chain of %d certificates, want leaf ... root", len(chain))
	}
	var certs []*x509.Certificate
	for i, p := range chain {
		block, _ := pem.Decode([]byte(p))
		if block == nil {
			t.Fatalf("chain[%d] is not PEM", i)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		certs = append(certs, c)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(rootsPEM)
	if !strings.Contains(string(rootsPEM), strings.TrimSpace(chain[len(chain)-1])) {
		t.Error("the chain does not end with the root")
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("leaf does not verify for %v: %v", u, err)
		}
	}
	return certs[0]
}

// cluster is a namespace of the package's API server.
type cluster struct {
	kube kubernetes.Interface
	ns   string
}

var namespaces atomic.Int64

func newCluster(t testing.TB) *cluster {
	t.Helper()
	kube := kubernetes.NewForConfigOrDie(apiServer(t))
	ns := fmt.Sprintf("certservice-%d", namespaces.Add(1))
	if _, err := kube.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return &cluster{kube: kube, ns: ns}
}

func (c *cluster) serviceAccount(t testing.TB, name string) {
	t.Helper()
	if _, err := c.kube.CoreV1().ServiceAccounts(c.ns).Create(context.Background(), &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// token mints a token for service account sa with the TokenRequest API, valid
// for the API's minimum of 10 minutes.
func (c *cluster) token(t testing.TB, sa string, audiences ...string) string {
	t.Helper()
	tr, err := c.kube.CoreV1().ServiceAccounts(c.ns).CreateToken(context.Background(), sa, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{Audiences: audiences, ExpirationSeconds: ptr.To[int64](600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return tr.Status.Token
}

// deleteServiceAccount deletes sa and waits until the API server itself
// refuses token (its view of service accounts may trail the deletion
// briefly), so what the test sees next is the service's doing.
func (c *cluster) deleteServiceAccount(t testing.TB, sa, token string) {
	t.Helper()
	ctx := context.Background()
	if err := c.kube.CoreV1().ServiceAccounts(c.ns).Delete(ctx, sa, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		tr, err := c.kube.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
			Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: []string{DefaultAudience}},
		}, metav1.CreateOptions{})
		return err == nil && !tr.Status.Authenticated, nil
	})
	if err != nil {
		t.Fatalf("the API server still accepts the token of deleted service account %s: %v", sa, err)
	}
}

func (c *cluster) identity(sa string) string {
	return "spiffe://" + trustDomain + "/ns/" + c.ns + "/sa/" + sa
}

// countTokenReviews returns a client whose TokenReviews are counted.
func countTokenReviews(t testing.TB) (kubernetes.Interface, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	cfg := rest.CopyConfig(apiServer(t))
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/tokenreviews") {
				n.Add(1)
			}
			return rt.RoundTrip(r)
		})
	})
	return kubernetes.NewForConfigOrDie(cfg), &n
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// clock is a settable clock for the token cache.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// staticAuth authenticates the tokens it maps; others are refused.
type staticAuth map[string]ServiceAccount

func (s staticAuth) Authenticate(_ context.Context, token string) (ServiceAccount, error) {
	if sa, ok := s[token]; ok {
		return sa, nil
	}
	return ServiceAccount{}, fmt.Errorf("%w: unknown token", ErrUnauthenticated)
}

// unreachableKube returns a client for an API server that is not there: a
// loopback port that was just closed.
func unreachableKube(t testing.TB) kubernetes.Interface {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{Insecure: true}})
}
