package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net/url"
	"testing"
	"time"
)

// testCert is a certificate made by a test, with its key.
type testCert struct {
	cert   *x509.Certificate
	key    crypto.Signer
	pem    []byte
	keyPEM []byte
}

var testSerial int64

// newTestCA issues a CA certificate named cn, signed by parent (self-signed
// when nil), with a new P-256 key; edit changes the template first.
func newTestCA(t testing.TB, cn string, parent *testCert, edit func(*x509.Certificate)) *testCert {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return newTestCertWithKey(t, cn, parent, key, func(c *x509.Certificate) {
		c.IsCA = true
		c.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign
		if edit != nil {
			edit(c)
		}
	})
}

func newTestCertWithKey(t testing.TB, cn string, parent *testCert, key crypto.Signer, edit func(*x509.Certificate)) *testCert {
	t.Helper()
	testSerial++
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(testSerial),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(365 * 24 * time.Hour),
		BasicConstraintsValid: true,
	}
	if edit != nil {
		edit(tmpl)
	}
	issuer, issuerKey := tmpl, key
	if parent != nil {
		issuer, issuerKey = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, issuer, key.Public(), issuerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return &testCert{
		cert:   cert,
		key:    key,
		pem:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM: pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}
}

// pluginBundle is a Provided bundle signing with ca, whose chain runs through
// intermediates (nearest first) to root.
func pluginBundle(ca *testCert, root *testCert, intermediates ...*testCert) Bundle {
	chain := bytes.Clone(ca.pem)
	for _, c := range intermediates {
		chain = append(chain, c.pem...)
	}
	chain = append(chain, root.pem...)
	return Bundle{CACert: ca.pem, CAKey: ca.keyPEM, RootCert: root.pem, CertChain: chain}
}

// newCSR returns a PEM CSR signed by key; edit fills in what it asks for.
func newCSR(t testing.TB, key crypto.Signer, edit func(*x509.CertificateRequest)) []byte {
	t.Helper()
	tmpl := &x509.CertificateRequest{}
	if edit != nil {
		edit(tmpl)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func newP256(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// csrFor asks for exactly id, as Istio's agent does.
func csrFor(t testing.TB, key crypto.Signer, id Identity) []byte {
	return newCSR(t, key, func(r *x509.CertificateRequest) { r.URIs = []*url.URL{id.URL()} })
}

func mustIdentity(t testing.TB, td, ns, sa string) Identity {
	t.Helper()
	id, err := NewIdentity(td, ns, sa)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func parsePEMChain(t testing.TB, chain []string) []*x509.Certificate {
	t.Helper()
	var out []*x509.Certificate
	for i, p := range chain {
		block, rest := pem.Decode([]byte(p))
		if block == nil || block.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) > 0 {
			t.Fatalf("chain[%d] is not one PEM certificate: %q", i, p)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("chain[%d]: %v", i, err)
		}
		out = append(out, c)
	}
	return out
}

// verifyLeaf verifies chain[0] against roots with the rest of chain as
// intermediates, for both workload usages.
func verifyLeaf(t testing.TB, chain []*x509.Certificate, roots []byte) {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(roots) {
		t.Fatal("no roots")
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			t.Fatalf("leaf does not verify for usage %v: %v", u, err)
		}
	}
}
