package ca

import (
	"encoding/json"
	"fmt"
)

// The keys of a CA Secret, Istio's plug-in CA layout ("cacerts"), shared by the
// SelfSigned and Provided CA types.
const (
	// SecretKeyCACert holds the certificate meshd signs with (PEM).
	SecretKeyCACert = "ca-cert.pem"
	// SecretKeyCAKey holds that certificate's private key (PEM: PKCS#8, PKCS#1
	// or SEC 1, unencrypted).
	SecretKeyCAKey = "ca-key.pem"
	// SecretKeyRootCert holds the trust anchors: one root, or several while a
	// root is being rotated (see the package documentation).
	SecretKeyRootCert = "root-cert.pem"
	// SecretKeyCertChain holds the chain from ca-cert.pem up to and including
	// its root; for a root that signs directly, the root itself.
	SecretKeyCertChain = "cert-chain.pem"
)

// Bundle is a CA in Istio's plug-in layout, as PEM. It is only data: NewAuthority
// validates it.
//
// Printing a Bundle (fmt, JSON, logr) shows the certificates' sizes, never the
// key.
type Bundle struct {
	CACert    []byte
	CAKey     KeyPEM
	RootCert  []byte
	CertChain []byte
}

// BundleFromSecretData reads a Bundle from a Secret's data. Missing keys are
// left empty for NewAuthority to report.
func BundleFromSecretData(data map[string][]byte) Bundle {
	return Bundle{
		CACert:    data[SecretKeyCACert],
		CAKey:     data[SecretKeyCAKey],
		RootCert:  data[SecretKeyRootCert],
		CertChain: data[SecretKeyCertChain],
	}
}

// SecretData returns the Secret data holding b.
func (b Bundle) SecretData() map[string][]byte {
	return map[string][]byte{
		SecretKeyCACert:    b.CACert,
		SecretKeyCAKey:     b.CAKey,
		SecretKeyRootCert:  b.RootCert,
		SecretKeyCertChain: b.CertChain,
	}
}

// String describes b without its key.
func (b Bundle) String() string {
	return fmt.Sprintf("ca.Bundle{%s: %d bytes, %s: %s, %s: %d bytes, %s: %d bytes}",
		SecretKeyCACert, len(b.CACert), SecretKeyCAKey, b.CAKey, SecretKeyRootCert, len(b.RootCert), SecretKeyCertChain, len(b.CertChain))
}

// Format prints String for every verb, so that no verb (%x, %d, %#v) reaches
// the key's bytes.
func (b Bundle) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(b.String())) }

// KeyPEM is a PEM private key. It prints, marshals and logs as "[redacted]",
// whatever carries it; use its bytes directly where the key is meant to go.
type KeyPEM []byte

const redacted = "[redacted]"

// String returns "[redacted]".
func (KeyPEM) String() string { return redacted }

// Format prints "[redacted]" for every verb.
func (KeyPEM) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON marshals "[redacted]": a key never goes into JSON by accident (a
// Secret's data is map[string][]byte, which SecretData returns).
func (KeyPEM) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalLog keeps the key out of structured logs (logr.Marshaler).
func (KeyPEM) MarshalLog() any { return redacted }
