package webhook

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// selfSignedCACommonName is the subject of the CAs NewSelfSigned makes; caBundle merging keeps
// earlier ones by it (see mergeCABundle).
const selfSignedCACommonName = "meshd webhook CA"

// selfSignedValidity of the CA and the serving certificate. The CA's key is dropped as soon as
// the serving certificate is signed and the serving key never leaves meshd's memory, so a long
// validity exposes little; every start of meshd makes new ones.
const selfSignedValidity = 10 * 365 * 24 * time.Hour

// clockSkew back-dates NotBefore, so an API server whose clock is slightly behind accepts a
// certificate made a moment ago.
const clockSkew = time.Hour

// SelfSigned is a serving certificate signed by a CA that exists only in this process.
type SelfSigned struct {
	// CABundle is the CA certificate, PEM: what a webhook configuration's caBundle must hold
	// for the API server to trust Certificate.
	CABundle []byte
	// Certificate is the serving certificate and its key.
	Certificate tls.Certificate
}

// ServiceDNSNames are the names the API server may use for a webhook behind Service
// name.namespace: it connects to <name>.<namespace>.svc; the cluster-domain form is for
// clients that use the fully qualified name.
func ServiceDNSNames(service, namespace string) []string {
	return []string{
		service + "." + namespace + ".svc",
		service + "." + namespace + ".svc.cluster.local",
	}
}

// NewSelfSigned makes an ECDSA P-256 CA and a serving certificate for dnsNames signed by it,
// valid from now.
func NewSelfSigned(dnsNames []string, now time.Time) (*SelfSigned, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("a serving certificate needs at least one DNS name")
	}
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the CA key: %w", err)
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          randomSerial(),
		Subject:               pkix.Name{CommonName: selfSignedCACommonName, Organization: []string{"meshplane"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(selfSignedValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}

	servingKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	servingTemplate := &x509.Certificate{
		SerialNumber: randomSerial(),
		Subject:      pkix.Name{CommonName: dnsNames[0], Organization: []string{"meshplane"}},
		DNSNames:     dnsNames,
		NotBefore:    now.Add(-clockSkew),
		NotAfter:     now.Add(selfSignedValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	servingDER, err := x509.CreateCertificate(rand.Reader, servingTemplate, ca, servingKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("signing the serving certificate: %w", err)
	}
	serving, err := x509.ParseCertificate(servingDER)
	if err != nil {
		return nil, err
	}
	return &SelfSigned{
		CABundle: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		Certificate: tls.Certificate{
			Certificate: [][]byte{servingDER},
			PrivateKey:  servingKey,
			Leaf:        serving,
		},
	}, nil
}

// randomSerial returns a random 128-bit serial number; rand.Reader does not fail.
func randomSerial() *big.Int {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("reading random bytes: %v", err))
	}
	return serial
}
