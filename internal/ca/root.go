package ca

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"time"
)

// RootValidity is how long a generated root is valid.
const RootValidity = 10 * 365 * 24 * time.Hour

// GenerateRoot creates the SelfSigned CA: a root for trustDomain with a new
// ECDSA P-256 key, valid for RootValidity, which signs workload certificates
// itself. In the bundle, ca-cert.pem, root-cert.pem and cert-chain.pem are all
// the root.
//
// The operator calls it only when the CA Secret does not exist, stores
// SecretData() in it and never regenerates it: a new root would make every
// certificate already issued untrusted (see "Root rotation" in the package
// documentation).
func GenerateRoot(trustDomain string) (Bundle, error) {
	if err := ValidateTrustDomain(trustDomain); err != nil {
		return Bundle{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Bundle{}, fmt.Errorf("generating the root key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return Bundle{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{trustDomain}, CommonName: "Meshplane root CA"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return Bundle{}, fmt.Errorf("self-signing the root: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Bundle{}, fmt.Errorf("encoding the root key: %w", err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	return Bundle{
		CACert:    certPEM,
		CAKey:     pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
		RootCert:  certPEM,
		CertChain: certPEM,
	}, nil
}
