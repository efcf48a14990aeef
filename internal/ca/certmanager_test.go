package ca

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// Issuer names the test signer answers to, each with one behaviour.
const (
	issuerSigns    = "test-ca"        // approve, then sign what the CSR says
	issuerDenies   = "test-deny"      // deny
	issuerFails    = "test-fail"      // approve, then fail
	issuerAddsDNS  = "test-extra-dns" // approve, then sign with an extra DNS name
	issuerIgnoring = "nobody"         // never answer
)

// testSigner is a TEST stand-in for cert-manager's controller and approver,
// not cert-manager: it polls the CertificateRequests of one namespace and,
// depending on the issuer's name, approves and signs them with a test CA
// (an intermediate under a root) the way cert-manager's CA issuer does,
// copying the CSR's names into the certificate, or denies or fails them.
type testSigner struct {
	client dynamic.ResourceInterface
	root   *testCert
	inter  *testCert

	mu   sync.Mutex
	seen map[string]*unstructured.Unstructured // by name, as first seen
}

func startTestSigner(t *testing.T, dyn dynamic.Interface, namespace string) *testSigner {
	s := &testSigner{
		client: dyn.Resource(CertificateRequestResource).Namespace(namespace),
		seen:   map[string]*unstructured.Unstructured{},
	}
	s.root = newTestCA(t, "cert-manager test root", nil, nil)
	s.inter = newTestCA(t, "cert-manager test intermediate", s.root, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			s.pass(ctx, t)
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done })
	return s
}

func (s *testSigner) pass(ctx context.Context, t *testing.T) {
	list, err := s.client.List(ctx, metav1.ListOptions{})
	if err != nil {
		return // the context ended, or the API server is busy: try again
	}
	for i := range list.Items {
		cr := &list.Items[i]
		s.mu.Lock()
		_, known := s.seen[cr.GetName()]
		if !known {
			s.seen[cr.GetName()] = cr.DeepCopy()
		}
		s.mu.Unlock()
		if known {
			continue
		}
		issuer, _, _ := unstructured.NestedString(cr.Object, "spec", "issuerRef", "name")
		var conds []any
		switch issuer {
		case issuerSigns, issuerAddsDNS:
			chain, err := s.sign(cr, issuer == issuerAddsDNS)
			if err != nil {
				t.Errorf("test signer: %v", err)
				continue
			}
			conds = []any{cond("Approved", "True", "TestSigner"), cond("Ready", "True", "Issued")}
			_ = unstructured.SetNestedField(cr.Object, base64.StdEncoding.EncodeToString(chain), "status", "certificate")
			_ = unstructured.SetNestedField(cr.Object, base64.StdEncoding.EncodeToString(s.root.pem), "status", "ca")
		case issuerDenies:
			conds = []any{cond("Denied", "True", "TestPolicy"), cond("Ready", "False", "Denied")}
		case issuerFails:
			conds = []any{cond("Approved", "True", "TestSigner"), cond("Ready", "False", "Failed")}
		default:
			continue
		}
		_ = unstructured.SetNestedSlice(cr.Object, conds, "status", "conditions")
		if _, err := s.client.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			t.Errorf("test signer: updating %s: %v", cr.GetName(), err)
		}
	}
}

func cond(typ, status, reason string) any {
	return map[string]any{"type": typ, "status": status, "reason": reason, "message": "by the test signer", "lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
}

// sign issues what the CSR asks for, as cert-manager's CA issuer would.
func (s *testSigner) sign(cr *unstructured.Unstructured, addDNS bool) ([]byte, error) {
	req, _, _ := unstructured.NestedString(cr.Object, "spec", "request")
	csrPEM, err := base64.StdEncoding.DecodeString(req)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("spec.request is not PEM")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, err
	}
	durStr, _, _ := unstructured.NestedString(cr.Object, "spec", "duration")
	dur, err := time.ParseDuration(durStr)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: csr.Subject,
		NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(dur),
		URIs: csr.URIs, DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses, EmailAddresses: csr.EmailAddresses,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	if addDNS {
		tmpl.DNSNames = append(tmpl.DNSNames, "added-by-issuer.example.com")
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.inter.cert, csr.PublicKey, s.inter.key)
	if err != nil {
		return nil, err
	}
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), s.inter.pem...), nil
}

func (s *testSigner) request(name string) *unstructured.Unstructured {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[name]
}

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
	signer := startTestSigner(t, dynamic.NewForConfigOrDie(base), ns)
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
		chain, err := newSigner(t, issuerSigns, time.Minute).Sign(ctx, csrFor(t, newP256(t), id), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		certs := parsePEMChain(t, chain)
		if len(certs) != 3 || !certs[1].Equal(signer.inter.cert) || !certs[2].Equal(signer.root.cert) {
			t.Fatalf("chain of %d certificates, want leaf, intermediate (status.certificate), root (status.ca)", len(certs))
		}
		verifyLeaf(t, certs, signer.root.pem)
		if u := certs[0].URIs; len(u) != 1 || u[0].String() != id.String() {
			t.Errorf("URI SANs %v, want %s", u, id)
		}
		if got := creates.Load() - before; got != 1 {
			t.Fatalf("%d CertificateRequests created, want 1", got)
		}
		noneLeft(t)

		// What cert-manager was asked for.
		signer.mu.Lock()
		var cr *unstructured.Unstructured
		for _, c := range signer.seen {
			cr = c
		}
		signer.mu.Unlock()
		if cr == nil {
			t.Fatal("the test signer saw no request")
		}
		spec := cr.Object["spec"].(map[string]any)
		if spec["duration"] != "1h0m0s" || spec["isCA"] == true {
			t.Errorf("duration %v, isCA %v", spec["duration"], spec["isCA"])
		}
		if ref := spec["issuerRef"].(map[string]any); ref["name"] != issuerSigns || ref["kind"] != "Issuer" || ref["group"] != "cert-manager.io" {
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
		s := newSigner(t, issuerSigns, time.Minute)
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
		{"denied", issuerDenies, time.Minute, "denied"},
		{"failed", issuerFails, time.Minute, "failed"},
		{"issuer adds a DNS name", issuerAddsDNS, time.Minute, "added-by-issuer.example.com"},
		{"nobody answers", issuerIgnoring, 2 * time.Second, "not issued in time"},
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
		_, err := newSigner(t, issuerIgnoring, time.Minute).Sign(short, csrFor(t, newP256(t), id), id, time.Hour)
		if err == nil || time.Since(start) > 10*time.Second {
			t.Fatalf("error %v after %s, want a failure near the caller's 1s deadline", err, time.Since(start))
		}
		noneLeft(t)
	})

	t.Run("options", func(t *testing.T) {
		for _, o := range []CertManagerOptions{{IssuerRef: IssuerRef{Name: "x"}}, {Namespace: ns}} {
			if _, err := NewCertManagerSigner(dyn, o); err == nil {
				t.Errorf("NewCertManagerSigner(%+v) succeeded", o)
			}
		}
	})
}
