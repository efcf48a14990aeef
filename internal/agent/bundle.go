package agent

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Bundle is one workload certificate with everything needed to use it.
// It is never modified once made; a rotation makes a new one.
type Bundle struct {
	// CertChain is PEM: the leaf first, then any intermediates. The root is
	// left out (peers have it in their own roots).
	CertChain []byte
	// PrivateKey is the leaf's key, PEM (PKCS #8).
	PrivateKey []byte
	// Roots is the mesh root certificate file's content, PEM: what peers'
	// certificates are verified against.
	Roots []byte
	// Leaf is the parsed first certificate of CertChain.
	Leaf *x509.Certificate
	// Identity is the leaf's SPIFFE ID, spiffe://<td>/ns/<ns>/sa/<sa>.
	Identity string
	// Obtained is when the CA's answer was checked: the lifetime the agent
	// can use starts then, not at NotBefore, which CAs backdate for clock
	// skew.
	Obtained time.Time
}

// Serial is the leaf's serial number in hex, for logs and tests.
func (b *Bundle) Serial() string { return b.Leaf.SerialNumber.Text(16) }

// newKey makes a workload key: ECDSA P-256, which Envoy, grpc-go and Istio's
// CA all accept and which is cheap enough to make at every rotation.
func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the workload key: %w", err)
	}
	return key, nil
}

// newCSR returns a PEM certificate request signed by key. It names no
// identity: the CA takes the SPIFFE ID from the token, and a CSR naming any
// other would be refused.
func newCSR(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{}, key)
	if err != nil {
		return nil, fmt.Errorf("creating the certificate request: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encoding the workload key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// identityWant is what the agent knows of the identity it should get; empty
// fields are not checked.
type identityWant struct {
	TrustDomain string
	Namespace   string
}

// newBundle checks what the CA returned before anything is served: the chain
// parses, belongs to key, is valid now and verifies against the mesh roots,
// and the leaf's SPIFFE ID is the workload's. A CA that answers with
// something else is a bug or an attack, and serving it would break every
// connection of the workload.
func newBundle(key *ecdsa.PrivateKey, chainPEM []string, rootsPEM []byte, roots *x509.CertPool, want identityWant, now time.Time) (*Bundle, error) {
	certs, err := parseCertificates([]byte(strings.Join(chainPEM, "\n")))
	if err != nil {
		return nil, fmt.Errorf("certificate chain from the CA: %w", err)
	}
	leaf := certs[0]
	if !key.PublicKey.Equal(leaf.PublicKey) {
		return nil, errors.New("certificate from the CA is not for the key the agent sent")
	}
	if !now.Before(leaf.NotAfter) {
		return nil, fmt.Errorf("certificate from the CA expired at %s", leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	// A CA clock slightly ahead of ours gives a NotBefore in the future; the
	// certificate is still the right one, so verify it as of its start.
	at := now
	if at.Before(leaf.NotBefore) {
		at = leaf.NotBefore
	}
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	if _, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: intermediates,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	}); err != nil {
		return nil, fmt.Errorf("certificate from the CA does not verify against the mesh root certificate: %w", err)
	}
	identity, err := spiffeID(leaf, want)
	if err != nil {
		return nil, err
	}

	// The chain served to peers stops below a self-signed root.
	var chain bytes.Buffer
	for i, c := range certs {
		if i > 0 && isSelfSigned(c) {
			break
		}
		_ = pem.Encode(&chain, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Bundle{
		CertChain:  chain.Bytes(),
		PrivateKey: keyPEM,
		Roots:      rootsPEM,
		Leaf:       leaf,
		Identity:   identity,
		Obtained:   at,
	}, nil
}

func isSelfSigned(c *x509.Certificate) bool {
	return bytes.Equal(c.RawIssuer, c.RawSubject) && c.CheckSignatureFrom(c) == nil
}

// spiffeID returns the leaf's only URI SAN, checked against want.
func spiffeID(leaf *x509.Certificate, want identityWant) (string, error) {
	if len(leaf.URIs) != 1 {
		return "", fmt.Errorf("certificate from the CA has %d URI SANs, want exactly one SPIFFE ID", len(leaf.URIs))
	}
	u := leaf.URIs[0]
	td, ns, ok := splitSPIFFEID(u)
	if !ok {
		return "", fmt.Errorf("certificate from the CA names %q, not a workload SPIFFE ID spiffe://<trust domain>/ns/<namespace>/sa/<service account>", u)
	}
	if want.TrustDomain != "" && td != want.TrustDomain {
		return "", fmt.Errorf("certificate from the CA is for trust domain %q, want %q (--trust-domain)", td, want.TrustDomain)
	}
	if want.Namespace != "" && ns != want.Namespace {
		return "", fmt.Errorf("certificate from the CA is for namespace %q, but the pod runs in %q: is the right token mounted?", ns, want.Namespace)
	}
	return u.String(), nil
}

// splitSPIFFEID takes spiffe://<td>/ns/<ns>/sa/<sa> apart.
func splitSPIFFEID(u *url.URL) (trustDomain, namespace string, ok bool) {
	if u.Scheme != "spiffe" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", "", false
	}
	parts := strings.Split(strings.TrimPrefix(u.Path, "/"), "/")
	if len(parts) != 4 || parts[0] != "ns" || parts[2] != "sa" || parts[1] == "" || parts[3] == "" {
		return "", "", false
	}
	return u.Host, parts[1], true
}
