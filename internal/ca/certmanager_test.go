package ca

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/ca/catest"
)

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func TestCertManagerSigner(t *testing.T) {
	base := apiServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	// Count the CertificateRequests the signer creates.
	var creates atomic.Int64
	cfg := rest.CopyConfig(base)
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return roundTripFunc(func(r *http.Request) (*http.Response, error) {
			resp, err := rt.RoundTrip(r)
			if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/certificaterequests") {
				creates.Add(1)
			}
			return resp, err
		})
	})
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	kube := kubernetes.NewForConfigOrDie(base)
	ns := "meshplane-cm"
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	signer := catest.Start(t, dynamic.NewForConfigOrDie(base).Resource(CertificateRequestResource).Namespace(ns), nil)
	id := mustIdentity(t, "cluster.local", "shop", "cart")

	newSigner := func(t *testing.T, issuer string, timeout time.Duration) *CertManagerSigner {
		t.Helper()
		s, err := NewCertManagerSigner(dyn, CertManagerOptions{Namespace: ns, IssuerRef: IssuerRef{Name: issuer}, Timeout: timeout})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	noneLeft := func(t *testing.T) {
		t.Helper()
		list, err := dyn.Resource(CertificateRequestResource).Namespace(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if len(list.Items) != 0 {
			t.Errorf("%d CertificateRequests left behind, e.g. %s", len(list.Items), list.Items[0].GetName())
		}
	}

	t.Run("issues through the issuer", func(t *testing.T) {
		before := creates.Load()
		chain, err := newSigner(t, catest.IssuerSigns, time.Minute).Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs := parsePEMChain(t, chain)
		if len(certs) != 3 || !certs[1].Equal(signer.Intermediate.Cert) || !certs[2].Equal(signer.Root.Cert) {
			t.Fatalf("chain of %d certificates, want leaf, intermediate (status.certificate), root (status.ca)", len(certs))
		}
		verifyLeaf(t, certs, signer.Root.PEM)
		if u := certs[0].URIs; len(u) != 1 || u[0].String() != id.String() {
			t.Errorf("URI SANs %v, want %s", u, id)
		}
		if got := creates.Load() - before; got != 1 {
			t.Fatalf("%d CertificateRequests created, want 1", got)
		}
		noneLeft(t)

		// What cert-manager was asked for.
		seen := signer.Requests()
		if len(seen) == 0 {
			t.Fatal("the test signer saw no request")
		}
		cr := seen[len(seen)-1].Object
		spec := cr.Object["spec"].(map[string]any)
		if spec["duration"] != "1h0m0s" || spec["isCA"] == true {
			t.Errorf("duration %v, isCA %v", spec["duration"], spec["isCA"])
		}
		if ref := spec["issuerRef"].(map[string]any); ref["name"] != catest.IssuerSigns || ref["kind"] != "Issuer" || ref["group"] != "cert-manager.io" {
			t.Errorf("issuerRef %v", ref)
		}
		usages := spec["usages"].([]any)
		for _, want := range []string{"digital signature", "server auth", "client auth"} {
			found := false
			for _, u := range usages {
				found = found || u == want
			}
			if !found {
				t.Errorf("usages %v lack %q", usages, want)
			}
		}
		if got := cr.GetAnnotations()[SPIFFEIDAnnotation]; got != id.String() {
			t.Errorf("annotation %s = %q, want %s", SPIFFEIDAnnotation, got, id)
		}
	})

	t.Run("refuses CSRs for other identities without asking cert-manager", func(t *testing.T) {
		s := newSigner(t, catest.IssuerSigns, time.Minute)
		before := creates.Load()
		for name, csr := range map[string][]byte{
			"another service account": csrFor(t, newP256(t), mustIdentity(t, "cluster.local", "shop", "admin")),
			"a DNS name as well": newCSR(t, newP256(t), func(r *x509.CertificateRequest) {
				r.URIs = []*url.URL{id.URL()}
				r.DNSNames = []string{"bank.example.com"}
			}),
			// A local CA writes the identity into a CSR without one;
			// cert-manager would issue a certificate without identity.
			"no identity": newCSR(t, newP256(t), nil),
		} {
			_, err := s.Sign(ctx, csr, id, time.Hour)
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("%s: %v, want ErrInvalidRequest", name, err)
			}
			if err != nil && !strings.Contains(err.Error(), id.String()) {
				t.Errorf("%s: error %q does not name the allowed identity", name, err)
			}
		}
		if got := creates.Load() - before; got != 0 {
			t.Errorf("%d CertificateRequests created for refused CSRs", got)
		}
	})

	for _, tc := range []struct {
		name, issuer string
		timeout      time.Duration
		say          string
	}{
		{"denied", catest.IssuerDenies, time.Minute, "denied"},
		{"failed", catest.IssuerFails, time.Minute, "failed"},
		{"issuer adds a DNS name", catest.IssuerAddsDNS, time.Minute, catest.AddedDNSName},
		{"nobody answers", catest.IssuerIgnores, 2 * time.Second, "not issued in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			chain, err := newSigner(t, tc.issuer, tc.timeout).Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour)
			if err == nil {
				t.Fatalf("got a chain of %d", len(chain))
			}
			if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidRequest) {
				t.Errorf("error %v, want ErrUnavailable", err)
			}
			if !strings.Contains(err.Error(), tc.say) {
				t.Errorf("error %q does not say %q", err, tc.say)
			}
			if took := time.Since(start); took > tc.timeout+10*time.Second {
				t.Errorf("took %s with a timeout of %s", took, tc.timeout)
			}
			noneLeft(t)
		})
	}

	t.Run("caller's deadline", func(t *testing.T) {
		short, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		start := time.Now()
		_, err := newSigner(t, catest.IssuerIgnores, time.Minute).Sign(short, csrFor(t, newP256(t), id), id, time.Hour)
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("error %v after %s, want a failure near the caller's 1s deadline", err, time.Since(start))
		}
		noneLeft(t)
	})

	dnsNames := []string{"meshd.mesh-system.svc", "istiod.mesh-system.svc"}

	t.Run("serving certificate through the issuer", func(t *testing.T) {
		before := creates.Load()
		cert, roots, err := newSigner(t, catest.IssuerSigns, time.Minute).IssueServing(ctx, dnsNames, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(roots, signer.Root.PEM) {
			t.Errorf("roots %q, want the issuer's status.ca", roots)
		}
		if len(cert.Certificate) != 2 || !bytes.Equal(cert.Certificate[1], signer.Intermediate.Cert.Raw) {
			t.Errorf("a chain of %d certificates, want the leaf and the intermediate", len(cert.Certificate))
		}
		if l := cert.Leaf; !slices.Equal(l.DNSNames, dnsNames) || len(l.URIs) > 0 {
			t.Errorf("leaf for DNS names %v, URIs %v; want DNS names %v only", l.DNSNames, l.URIs, dnsNames)
		}
		handshake(t, cert, roots, dnsNames[1])
		if got := creates.Load() - before; got != 1 {
			t.Fatalf("%d CertificateRequests created, want 1", got)
		}
		noneLeft(t)

		// What cert-manager was asked for: the names, and nothing that is a
		// workload's.
		seen := signer.Requests()
		req := seen[len(seen)-1]
		if csr := req.CSR; !slices.Equal(csr.DNSNames, dnsNames) || len(csr.URIs)+len(csr.IPAddresses)+len(csr.EmailAddresses) > 0 || csr.Subject.String() != "" {
			t.Errorf("CSR for DNS names %v, URIs %v, IPs %v, emails %v, subject %q", csr.DNSNames, csr.URIs, csr.IPAddresses, csr.EmailAddresses, csr.Subject)
		}
		if u := req.Usages(); !slices.Contains(u, "server auth") || slices.Contains(u, "client auth") {
			t.Errorf("usages %v, want server auth and not client auth", u)
		}
		annotations := req.Object.GetAnnotations()
		if annotations[ServingDNSNamesAnnotation] != strings.Join(dnsNames, ",") || annotations[SPIFFEIDAnnotation] != "" {
			t.Errorf("annotations %v", annotations)
		}
	})

	t.Run("serving certificate, roots from the top of the chain", func(t *testing.T) {
		cert, roots, err := newSigner(t, catest.IssuerSignsWithoutCA, time.Minute).IssueServing(ctx, dnsNames, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(roots, signer.Root.PEM) {
			t.Errorf("roots %q, want the self-signed root that ends status.certificate", roots)
		}
		// The root is the client's to have: the handshake does not send it.
		if len(cert.Certificate) != 2 {
			t.Errorf("a chain of %d certificates, want the leaf and the intermediate", len(cert.Certificate))
		}
		handshake(t, cert, roots, dnsNames[0])
		noneLeft(t)
	})

	for _, tc := range []struct {
		name, issuer string
		is           []error
		say          []string
	}{
		{"serving certificate, roots unknown", catest.IssuerSignsWithoutRoot, []error{ErrRootsUnknown, ErrUnavailable}, []string{"status.ca", "cert-manager test intermediate"}},
		{"serving certificate, issuer adds a DNS name", catest.IssuerAddsDNS, []error{ErrUnavailable}, []string{catest.AddedDNSName}},
		{"serving certificate denied", catest.IssuerDenies, []error{ErrUnavailable}, []string{"denied"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert, roots, err := newSigner(t, tc.issuer, time.Minute).IssueServing(ctx, dnsNames, time.Hour)
			if err == nil {
				t.Fatalf("got a certificate (%v) and roots %q", cert.Leaf.DNSNames, roots)
			}
			for _, want := range tc.is {
				if !errors.Is(err, want) {
					t.Errorf("error %v is not %v", err, want)
				}
			}
			for _, want := range tc.say {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			noneLeft(t)
		})
	}

	t.Run("serving certificate needs DNS names", func(t *testing.T) {
		s := newSigner(t, catest.IssuerSigns, time.Minute)
		before := creates.Load()
		for _, names := range [][]string{nil, {"Not_A_DNS_Name"}, {"spiffe://cluster.local/ns/shop/sa/cart"}} {
			if _, _, err := s.IssueServing(ctx, names, time.Hour); err == nil {
				t.Errorf("IssueServing(%q) succeeded", names)
			}
		}
		if _, _, err := s.IssueServing(ctx, dnsNames, 0); err == nil {
			t.Error("IssueServing with no validity succeeded")
		}
		if got := creates.Load() - before; got != 0 {
			t.Errorf("%d CertificateRequests created for refused names", got)
		}
	})

	t.Run("options", func(t *testing.T) {
		for _, o := range []CertManagerOptions{{IssuerRef: IssuerRef{Name: "x"}}, {Namespace: ns}} {
			if _, err := NewCertManagerSigner(dyn, o); err == nil {
				t.Errorf("NewCertManagerSigner(%+v) succeeded", o)
			}
		}
	})
}

// handshake completes a TLS handshake in memory with cert on the server's
// side and a client that verifies it as serverName against roots.
func handshake(t *testing.T, cert *tls.Certificate, roots []byte, serverName string) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) {
		t.Fatalf("roots are not PEM: %q", roots)
	}
	clientSide, serverSide := net.Pipe()
	defer clientSide.Close()
	defer serverSide.Close()
	_ = clientSide.SetDeadline(time.Now().Add(10 * time.Second))
	_ = serverSide.SetDeadline(time.Now().Add(10 * time.Second))
	server := tls.Server(serverSide, &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12})
	serverErr := make(chan error, 1)
	go func() { serverErr <- server.Handshake() }()
	client := tls.Client(clientSide, &tls.Config{RootCAs: pool, ServerName: serverName, MinVersion: tls.VersionTLS12})
	if err := client.Handshake(); err != nil {
		t.Fatalf("a client verifying %s against the roots: %v", serverName, err)
	}
	if err := <-serverErr; err != nil {
		t.Fatalf("server side of the handshake: %v", err)
	}
}
