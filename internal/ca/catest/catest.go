// Package catest is a TEST stand-in for cert-manager's controller and
// approver, for the tests of code that issues through ca.CertManagerSigner
// against a real API server (envtest with cert-manager's CRDs, CRDDir). It is
// not cert-manager: it signs what each CertificateRequest's CSR asks for with
// a test CA, the way cert-manager's CA issuer does, or denies or fails it, as
// the test decides.
//
// It does not import package ca, so that ca's own tests can use it.
package catest

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"

	"github.com/meshplane/meshplane/test/harness"
)

// Decision is what the signer does with a CertificateRequest.
type Decision int

const (
	// Ignore leaves the request alone, as a cert-manager that is not running.
	Ignore Decision = iota
	// Sign approves the request and signs what its CSR asks for with the
	// Intermediate: status.certificate holds the leaf and the Intermediate,
	// status.ca the Root.
	Sign
	// SignAddingDNS signs as Sign, with a DNS name the CSR did not ask for
	// (AddedDNSName).
	SignAddingDNS
	// SignWithoutCA signs as Sign, but status.certificate holds the leaf, the
	// Intermediate and the Root, and there is no status.ca.
	SignWithoutCA
	// SignWithoutRoot signs as Sign, but reports no status.ca: nothing the
	// issuer returns says which root it chains to.
	SignWithoutRoot
	// Deny denies the request (Denied=True), as an approver policy would.
	Deny
	// Fail approves the request and fails it (Ready=False, reason Failed).
	Fail
)

// AddedDNSName is the name SignAddingDNS adds.
const AddedDNSName = "added-by-issuer.example.com"

// Issuer names ByIssuer decides by.
const (
	IssuerSigns            = "test-ca"
	IssuerAddsDNS          = "test-extra-dns"
	IssuerSignsWithoutCA   = "test-no-status-ca"
	IssuerSignsWithoutRoot = "test-no-root"
	IssuerDenies           = "test-deny"
	IssuerFails            = "test-fail"
	IssuerIgnores          = "nobody"
)

// ByIssuer decides by the name of the request's issuer (the Issuer*
// constants); any other issuer is ignored.
func ByIssuer(r Request) Decision {
	switch r.IssuerName() {
	case IssuerSigns:
		return Sign
	case IssuerAddsDNS:
		return SignAddingDNS
	case IssuerSignsWithoutCA:
		return SignWithoutCA
	case IssuerSignsWithoutRoot:
		return SignWithoutRoot
	case IssuerDenies:
		return Deny
	case IssuerFails:
		return Fail
	}
	return Ignore
}

// Request is a CertificateRequest the signer has seen.
type Request struct {
	// Object is the request as first seen.
	Object *unstructured.Unstructured
	// CSR is its spec.request, parsed.
	CSR *x509.CertificateRequest
}

// IssuerName is spec.issuerRef.name.
func (r Request) IssuerName() string {
	name, _, _ := unstructured.NestedString(r.Object.Object, "spec", "issuerRef", "name")
	return name
}

// Usages is spec.usages.
func (r Request) Usages() []string {
	u, _, _ := unstructured.NestedStringSlice(r.Object.Object, "spec", "usages")
	return u
}

// CA is a test certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

// Signer answers the CertificateRequests of one namespace until the test
// ends.
type Signer struct {
	// Root is the trust anchor; Intermediate, under it, signs.
	Root, Intermediate CA

	client dynamic.ResourceInterface

	mu     sync.Mutex
	decide func(Request) Decision
	seen   map[string]bool
	order  []Request
}

// Start answers the CertificateRequests client reaches (one namespace's)
// until the test ends, deciding each once with decide (nil: ByIssuer).
func Start(t testing.TB, client dynamic.ResourceInterface, decide func(Request) Decision) *Signer {
	t.Helper()
	if decide == nil {
		decide = ByIssuer
	}
	s := &Signer{client: client, decide: decide, seen: map[string]bool{}}
	var err error
	if s.Root, err = newCA("cert-manager test root", nil); err != nil {
		t.Fatal(err)
	}
	if s.Intermediate, err = newCA("cert-manager test intermediate", &s.Root); err != nil {
		t.Fatal(err)
	}
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

// SetDecide changes how requests not seen yet are decided.
func (s *Signer) SetDecide(decide func(Request) Decision) {
	s.mu.Lock()
	s.decide = decide
	s.mu.Unlock()
}

// Requests returns the requests seen so far, in the order seen.
func (s *Signer) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.order...)
}

func (s *Signer) pass(ctx context.Context, t testing.TB) {
	list, err := s.client.List(ctx, metav1.ListOptions{})
	if err != nil {
		return // the context ended, or the API server is busy: try again
	}
	for i := range list.Items {
		cr := &list.Items[i]
		s.mu.Lock()
		known := s.seen[cr.GetName()]
		s.seen[cr.GetName()] = true
		decide := s.decide
		s.mu.Unlock()
		if known {
			continue
		}
		csr, err := requestedCSR(cr)
		if err != nil {
			t.Errorf("test signer: CertificateRequest %s: %v", cr.GetName(), err)
			continue
		}
		req := Request{Object: cr.DeepCopy(), CSR: csr}
		s.mu.Lock()
		s.order = append(s.order, req)
		s.mu.Unlock()

		var conds []any
		switch d := decide(req); d {
		case Sign, SignAddingDNS, SignWithoutCA, SignWithoutRoot:
			leaf, err := s.sign(req, d == SignAddingDNS)
			if err != nil {
				t.Errorf("test signer: CertificateRequest %s: %v", cr.GetName(), err)
				continue
			}
			chain := append(leaf, s.Intermediate.PEM...)
			switch d {
			case SignWithoutCA:
				chain = append(chain, s.Root.PEM...)
			case SignWithoutRoot:
			default:
				_ = unstructured.SetNestedField(cr.Object, base64.StdEncoding.EncodeToString(s.Root.PEM), "status", "ca")
			}
			_ = unstructured.SetNestedField(cr.Object, base64.StdEncoding.EncodeToString(chain), "status", "certificate")
			conds = []any{condition("Approved", "True", "TestSigner"), condition("Ready", "True", "Issued")}
		case Deny:
			conds = []any{condition("Denied", "True", "TestPolicy"), condition("Ready", "False", "Denied")}
		case Fail:
			conds = []any{condition("Approved", "True", "TestSigner"), condition("Ready", "False", "Failed")}
		default:
			continue
		}
		_ = unstructured.SetNestedSlice(cr.Object, conds, "status", "conditions")
		if _, err := s.client.UpdateStatus(ctx, cr, metav1.UpdateOptions{}); err != nil && ctx.Err() == nil && !apierrors.IsNotFound(err) {
			t.Errorf("test signer: updating %s: %v", cr.GetName(), err)
		}
	}
}

func condition(typ, status, reason string) any {
	return map[string]any{"type": typ, "status": status, "reason": reason, "message": "by the test signer",
		"lastTransitionTime": time.Now().UTC().Format(time.RFC3339)}
}

func requestedCSR(cr *unstructured.Unstructured) (*x509.CertificateRequest, error) {
	req, _, _ := unstructured.NestedString(cr.Object, "spec", "request")
	csrPEM, err := base64.StdEncoding.DecodeString(req)
	if err != nil {
		return nil, err
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil {
		return nil, errors.New("spec.request is not PEM")
	}
	return x509.ParseCertificateRequest(block.Bytes)
}

// sign issues what the CSR asks for, for spec.duration and spec.usages, from
// a minute ago (issuers backdate), as cert-manager's CA issuer would.
func (s *Signer) sign(req Request, addDNS bool) ([]byte, error) {
	durStr, _, _ := unstructured.NestedString(req.Object.Object, "spec", "duration")
	dur, err := time.ParseDuration(durStr)
	if err != nil {
		return nil, err
	}
	csr := req.CSR
	tmpl := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      csr.Subject,
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(dur),
		URIs:         csr.URIs, DNSNames: csr.DNSNames, IPAddresses: csr.IPAddresses, EmailAddresses: csr.EmailAddresses,
	}
	for _, u := range req.Usages() {
		switch u {
		case "digital signature":
			tmpl.KeyUsage |= x509.KeyUsageDigitalSignature
		case "key encipherment":
			tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
		case "server auth":
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
		case "client auth":
			tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
		default:
			return nil, fmt.Errorf("usage %q is not one the test signer knows", u)
		}
	}
	if addDNS {
		tmpl.DNSNames = append(tmpl.DNSNames, AddedDNSName)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, s.Intermediate.Cert, csr.PublicKey, s.Intermediate.Key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), nil
}

// newCA makes a CA named cn with a new P-256 key, signed by parent
// (self-signed when nil).
func newCA(cn string, parent *CA) (CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true,
		IsCA:                  true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	issuer, issuerKey := tmpl, crypto.Signer(key)
	if parent != nil {
		issuer, issuerKey = parent.Cert, parent.Key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		return CA{}, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return CA{}, err
	}
	return CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

func randomSerial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n.Add(n, big.NewInt(1))
}

// CRDDir is deploy/crds of the cert-manager module go.mod requires, in the
// module cache: tests install cert-manager's CRDs from there, and they are
// never copied into this repository.
func CRDDir() (string, error) {
	root, err := harness.ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the cert-manager module: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificaterequests.yaml")); err != nil {
		return "", fmt.Errorf("cert-manager CRDs: %w", err)
	}
	return dir, nil
}
