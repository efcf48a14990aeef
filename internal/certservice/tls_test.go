package certservice

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/meshplane/meshplane/internal/ca"
)

func TestServingCertificate(t *testing.T) {
	if _, err := ServingTLSConfig(&ca.Holder{}, ServingOptions{DNSNames: []string{servingName}}); !errors.Is(err, ca.ErrNoAuthority) {
		t.Fatalf("serving from an empty holder: %v, want ErrNoAuthority", err)
	}
	if _, err := ServingTLSConfig(nil, ServingOptions{DNSNames: []string{servingName}}); err == nil {
		t.Fatal("serving from no holder succeeded")
	}

	root, rootKey := newRootForTest(t)
	holder := &ca.Holder{}
	if err := holder.Update(intermediateBundle(t, root, rootKey, "first")); err != nil {
		t.Fatal(err)
	}
	clk := newClock()
	s, err := newServingCert(holder, ServingOptions{DNSNames: []string{servingName}, TTL: 3 * time.Hour}, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	first, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	checkServing(t, first, root, "first")

	clk.Add(time.Hour)
	if again, _ := s.get(); again != first {
		t.Error("renewed after a third of its life")
	}
	clk.Add(time.Hour + time.Minute) // past two thirds, counting the backdated minute
	renewed, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || renewed.Leaf.SerialNumber.Cmp(first.Leaf.SerialNumber) == 0 {
		t.Fatal("not renewed after two thirds of its life")
	}

	// A rotated CA gets a new serving certificate at once.
	if err := holder.Update(intermediateBundle(t, root, rootKey, "second")); err != nil {
		t.Fatal(err)
	}
	rotated, err := s.get()
	if err != nil {
		t.Fatal(err)
	}
	checkServing(t, rotated, root, "second")
}

func checkServing(t *testing.T, cert *tls.Certificate, root *x509.Certificate, intermediate string) {
	t.Helper()
	if len(cert.Certificate) != 2 {
		t.Fatalf("serving chain of %d certificates, want leaf + intermediate", len(cert.Certificate))
	}
	inter, err := x509.ParseCertificate(cert.Certificate[1])
	if err != nil {
		t.Fatal(err)
	}
	if inter.Subject.CommonName != intermediate {
		t.Errorf("served through %q, want %q", inter.Subject.CommonName, intermediate)
	}
	roots := x509.NewCertPool()
	roots.AddCert(root)
	inters := x509.NewCertPool()
	inters.AddCert(inter)
	if _, err := cert.Leaf.Verify(x509.VerifyOptions{DNSName: servingName, Roots: roots, Intermediates: inters}); err != nil {
		t.Errorf("serving certificate does not verify for %s: %v", servingName, err)
	}
}

func newRootForTest(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	root, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return root, key
}

// intermediateBundle is a Provided bundle signing with a new intermediate cn
// under root.
func intermediateBundle(t *testing.T, root *x509.Certificate, rootKey *ecdsa.PrivateKey, cn string) ca.Bundle {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, root, key.Public(), rootKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	rootPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: root.Raw})
	return ca.Bundle{
		CACert:    certPEM,
		CAKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		RootCert:  rootPEM,
		CertChain: append(append([]byte{}, certPEM...), rootPEM...),
	}
}
