package ca

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/util/validation"
)

// backdate is how far before now a certificate's NotBefore is set, so that a
// peer whose clock is a little behind ours accepts it.
const backdate = time.Minute

// Authority signs certificates with one validated CA bundle. It is immutable;
// Holder swaps Authorities when the CA Secret changes.
//
// Printing an Authority shows the CA's subject and expiry, never its key.
type Authority struct {
	signer crypto.Signer
	cert   *x509.Certificate
	// chainPEM follows a leaf in a response: ca-cert, intermediates, root.
	chainPEM []string
	// servingChain follows a serving leaf in a TLS handshake: ca-cert and
	// intermediates, without the root the peer already has.
	servingChain [][]byte
	rootsPEM     []byte
	// notAfter is the earliest expiry in the chain: no leaf may outlive it.
	notAfter time.Time
	// fingerprint identifies the bundle the Authority was built from.
	fingerprint [sha256.Size]byte
	now         func() time.Time
}

// NewAuthority validates b and returns an Authority signing with it. It
// refuses, with a *BundleError, a bundle with a missing, malformed or
// unsupported part, a key that is not the certificate's, a signing
// certificate that is not a CA, a certificate of the chain that is expired or
// not yet valid, or a signing certificate that does not chain to a root of
// root-cert.pem through cert-chain.pem (or whose chain does not allow
// serverAuth and clientAuth leaves).
func NewAuthority(b Bundle) (*Authority, error) {
	return newAuthority(b, time.Now)
}

func newAuthority(b Bundle, now func() time.Time) (*Authority, error) {
	for _, part := range []struct {
		key  string
		data []byte
	}{{SecretKeyCACert, b.CACert}, {SecretKeyCAKey, b.CAKey}, {SecretKeyRootCert, b.RootCert}} {
		if len(bytes.TrimSpace(part.data)) == 0 {
			return nil, bundleErr(ReasonMissingKey, part.key, nil, "missing or empty")
		}
	}

	certs, err := parseCertificates(SecretKeyCACert, b.CACert)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, bundleErr(ReasonMalformed, SecretKeyCACert, nil, "holds %d certificates, want exactly one (the rest of the chain goes in %s)", len(certs), SecretKeyCertChain)
	}
	cert := certs[0]
	signer, err := parsePrivateKey(b.CAKey)
	if err != nil {
		return nil, err
	}
	if err := checkCAKey(signer.Public()); err != nil {
		return nil, err
	}
	if pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, bundleErr(ReasonKeyMismatch, SecretKeyCAKey, nil, "is not the private key of %s (%s)", SecretKeyCACert, describe(cert))
	}
	if err := checkIsCA(SecretKeyCACert, cert); err != nil {
		return nil, err
	}

	roots, err := parseCertificates(SecretKeyRootCert, b.RootCert)
	if err != nil {
		return nil, err
	}
	for _, r := range roots {
		if err := checkIsCA(SecretKeyRootCert, r); err != nil {
			return nil, err
		}
	}
	var intermediates []*x509.Certificate
	if len(bytes.TrimSpace(b.CertChain)) > 0 {
		if intermediates, err = parseCertificates(SecretKeyCertChain, b.CertChain); err != nil {
			return nil, err
		}
	}
	chain, err := verifyChain(cert, intermediates, roots, now())
	if err != nil {
		return nil, err
	}

	a := &Authority{
		signer:      signer,
		cert:        cert,
		rootsPEM:    encodeCerts(roots),
		notAfter:    cert.NotAfter,
		fingerprint: fingerprint(b),
		now:         now,
	}
	for i, c := range chain {
		a.chainPEM = append(a.chainPEM, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})))
		if i < len(chain)-1 {
			a.servingChain = append(a.servingChain, c.Raw)
		}
		if c.NotAfter.Before(a.notAfter) {
			a.notAfter = c.NotAfter
		}
	}
	return a, nil
}

// verifyChain verifies cert up to a root and returns the chain, cert first,
// root last. A chain that only fails on time is reported as Expired or
// NotYetValid, naming the certificate.
func verifyChain(cert *x509.Certificate, intermediates, roots []*x509.Certificate, now time.Time) ([]*x509.Certificate, error) {
	rootPool := x509.NewCertPool()
	for _, r := range roots {
		rootPool.AddCert(r)
	}
	pool := x509.NewCertPool()
	for _, c := range intermediates {
		if !c.Equal(cert) {
			pool.AddCert(c)
		}
	}
	verify := func(at time.Time, usage x509.ExtKeyUsage) ([][]*x509.Certificate, error) {
		return cert.Verify(x509.VerifyOptions{Roots: rootPool, Intermediates: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{usage}})
	}
	if err := checkValidAt(cert, cert, []*x509.Certificate{cert}, now); err != nil {
		return nil, err
	}
	chains, err := verify(now, x509.ExtKeyUsageAny)
	if err != nil {
		// If the chain verifies at some other time (one at which each of its
		// certificates begins or ends), the problem is that one of them is out
		// of date now: name it.
		candidates := append([]*x509.Certificate{cert}, intermediates...)
		candidates = append(candidates, roots...)
		for _, c := range candidates {
			for _, at := range []time.Time{c.NotBefore.Add(time.Second), c.NotAfter.Add(-time.Second)} {
				if then, err2 := verify(at, x509.ExtKeyUsageAny); err2 == nil {
					for _, in := range then[0] {
						if err := checkValidAt(in, cert, then[0], now); err != nil {
							return nil, err
						}
					}
				}
			}
		}
		return nil, bundleErr(ReasonChainInvalid, SecretKeyCertChain, err, "%s does not chain to a root of %s", describe(cert), SecretKeyRootCert)
	}
	for _, usage := range []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth} {
		if _, err := verify(now, usage); err != nil {
			return nil, bundleErr(ReasonChainInvalid, SecretKeyCACert, err, "the extended key usages of the chain of %s do not allow workload (serverAuth and clientAuth) certificates", describe(cert))
		}
	}
	return chains[0], nil
}

// checkValidAt reports c (a certificate of chain, which starts at signing)
// as Expired or NotYetValid at now.
func checkValidAt(c, signing *x509.Certificate, chain []*x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return bundleErr(ReasonExpired, keyOf(c, signing, chain), nil, "%s expired at %s", describe(c), c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return bundleErr(ReasonNotYetValid, keyOf(c, signing, chain), nil, "%s is not valid before %s", describe(c), c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// keyOf names the Secret key c came from: the signing certificate, the last
// certificate of the chain (a root), or cert-chain.pem.
func keyOf(c, signing *x509.Certificate, chain []*x509.Certificate) string {
	switch {
	case c.Equal(signing):
		return SecretKeyCACert
	case c.Equal(chain[len(chain)-1]):
		return SecretKeyRootCert
	default:
		return SecretKeyCertChain
	}
}

// Sign issues a workload certificate for the public key of csrPEM whose only
// identity is id (a URI SAN), valid for ttl (from one minute ago, for clock
// skew) but never beyond the CA chain, usable for serverAuth and clientAuth. It
// returns the PEM chain, leaf first, root last.
//
// The CSR must be signed by its key, hold an ECDSA P-256/P-384 or RSA >= 2048
// key, and ask for no identity but id (a CSR asking for none gets id). Any
// other request fails with ErrInvalidRequest (an *IdentityError for another
// identity); an expired CA fails with ErrUnavailable.
func (a *Authority) Sign(csrPEM []byte, id Identity, ttl time.Duration) ([]string, error) {
	if ttl <= 0 {
		return nil, invalidRequest("the requested validity %s is not positive", ttl)
	}
	if _, err := NewIdentity(id.TrustDomain, id.Namespace, id.ServiceAccount); err != nil {
		return nil, fmt.Errorf("signing for an invalid identity: %w", err)
	}
	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(csr, id, true); err != nil {
		return nil, err
	}
	tmpl, err := a.leafTemplate(ttl)
	if err != nil {
		return nil, err
	}
	tmpl.URIs = []*url.URL{id.URL()}
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	if _, ok := csr.PublicKey.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, csr.PublicKey, a.signer)
	if err != nil {
		return nil, fmt.Errorf("signing the certificate of %s: %w", id, err)
	}
	chain := make([]string, 0, 1+len(a.chainPEM))
	chain = append(chain, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})))
	return append(chain, a.chainPEM...), nil
}

// IssueServing issues meshd's own serving certificate for dnsNames (a fresh
// ECDSA P-256 key, serverAuth only), valid for ttl but never beyond the CA
// chain. The chain in the result stops below the root, which clients have.
// The certificate service never calls it: workloads only get SPIFFE
// identities.
func (a *Authority) IssueServing(dnsNames []string, ttl time.Duration) (*tls.Certificate, error) {
	if len(dnsNames) == 0 {
		return nil, errors.New("a serving certificate needs at least one DNS name")
	}
	for _, n := range dnsNames {
		if errs := validation.IsDNS1123Subdomain(n); len(errs) > 0 {
			return nil, fmt.Errorf("DNS name %q: %s", n, strings.Join(errs, "; "))
		}
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("serving certificate validity %s is not positive", ttl)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generating the serving key: %w", err)
	}
	tmpl, err := a.leafTemplate(ttl)
	if err != nil {
		return nil, err
	}
	tmpl.DNSNames = dnsNames
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.signer)
	if err != nil {
		return nil, fmt.Errorf("signing the serving certificate for %v: %w", dnsNames, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("parsing the serving certificate just issued: %w", err)
	}
	return &tls.Certificate{
		Certificate: append([][]byte{der}, a.servingChain...),
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// leafTemplate is what every leaf shares: a random 128-bit serial, an empty
// subject (so the SAN extension is critical and is the identity), validity
// from a minute ago to ttl from now, clamped to the chain.
func (a *Authority) leafTemplate(ttl time.Duration) (*x509.Certificate, error) {
	now := a.now()
	notAfter := now.Add(ttl)
	if notAfter.After(a.notAfter) {
		notAfter = a.notAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("%w: the CA chain expired at %s", ErrUnavailable, a.notAfter.UTC().Format(time.RFC3339))
	}
	notBefore := now.Add(-backdate)
	if notBefore.Before(a.cert.NotBefore) {
		notBefore = a.cert.NotBefore
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	return &x509.Certificate{
		SerialNumber:          serial,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
	}, nil
}

// RootsPEM returns the trust anchors (root-cert.pem) workloads verify peers
// with; meshd publishes them (Istio's istio-ca-root-cert ConfigMap).
func (a *Authority) RootsPEM() []byte { return bytes.Clone(a.rootsPEM) }

// NotAfter is when the CA chain expires; no certificate outlives it.
func (a *Authority) NotAfter() time.Time { return a.notAfter }

// String names the signing certificate and its expiry.
func (a Authority) String() string {
	return fmt.Sprintf("CA %s, chain valid until %s", describe(a.cert), a.notAfter.UTC().Format(time.RFC3339))
}

// Format prints String for every verb: the unexported key must not be
// reachable through fmt's reflection.
func (a Authority) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(a.String())) }

// describe names a certificate without its key.
func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %x)", c.Subject.String(), c.SerialNumber)
}

func randomSerial() (*big.Int, error) {
	b := make([]byte, 16)
	for {
		if _, err := rand.Read(b); err != nil {
			return nil, fmt.Errorf("generating a serial number: %w", err)
		}
		if s := new(big.Int).SetBytes(b); s.Sign() > 0 {
			return s, nil
		}
	}
}

func fingerprint(b Bundle) [sha256.Size]byte {
	h := sha256.New()
	for _, part := range [][]byte{b.CACert, b.CAKey, b.RootCert, b.CertChain} {
		_ = binary.Write(h, binary.BigEndian, uint64(len(part)))
		h.Write(part)
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// parseCertificates parses every PEM block of data, which must all be
// certificates.
func parseCertificates(key string, data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := data; len(bytes.TrimSpace(rest)) > 0; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, bundleErr(ReasonMalformed, key, nil, "holds data that is not PEM after %d certificates", len(certs))
		}
		if block.Type != "CERTIFICATE" {
			return nil, bundleErr(ReasonMalformed, key, nil, "holds a %q PEM block, want CERTIFICATE", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, bundleErr(ReasonMalformed, key, err, "certificate %d does not parse", len(certs)+1)
		}
		certs = append(certs, c)
	}
	return certs, nil
}

// parsePrivateKey parses an unencrypted PKCS#8, PKCS#1 or SEC 1 PEM key.
// Parse errors are described, not wrapped: nothing derived from the key's
// bytes goes into an error.
func parsePrivateKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, bundleErr(ReasonMalformed, SecretKeyCAKey, nil, "is not PEM")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, bundleErr(ReasonMalformed, SecretKeyCAKey, nil, "holds more than one PEM block")
	}
	if block.Type == "ENCRYPTED PRIVATE KEY" || strings.Contains(block.Headers["Proc-Type"], "ENCRYPTED") {
		return nil, bundleErr(ReasonMalformed, SecretKeyCAKey, nil, "is encrypted; an unencrypted key is required")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil, bundleErr(ReasonMalformed, SecretKeyCAKey, nil, "holds a %q PEM block, want PRIVATE KEY, EC PRIVATE KEY or RSA PRIVATE KEY", block.Type)
	}
	if err != nil {
		return nil, bundleErr(ReasonMalformed, SecretKeyCAKey, nil, "does not parse as a %s", block.Type)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, bundleErr(ReasonUnsupportedKey, SecretKeyCAKey, nil, "holds a %T, which cannot sign", key)
	}
	return signer, nil
}

// checkCAKey accepts ECDSA P-256/P-384 and RSA >= 2048-bit CA keys.
func checkCAKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return bundleErr(ReasonUnsupportedKey, SecretKeyCAKey, nil, "is an ECDSA key on %s; P-256 or P-384 is required", k.Curve.Params().Name)
	case *rsa.PublicKey:
		if k.N.BitLen() >= 2048 {
			return nil
		}
		return bundleErr(ReasonUnsupportedKey, SecretKeyCAKey, nil, "is a %d-bit RSA key; at least 2048 bits are required", k.N.BitLen())
	default:
		return bundleErr(ReasonUnsupportedKey, SecretKeyCAKey, nil, "is a %T key; ECDSA P-256/P-384 or RSA >= 2048 bits is required", pub)
	}
}

func checkIsCA(key string, c *x509.Certificate) error {
	if !c.BasicConstraintsValid || !c.IsCA {
		return bundleErr(ReasonNotCA, key, nil, "%s is not a CA certificate (basicConstraints CA:TRUE is missing)", describe(c))
	}
	if c.KeyUsage != 0 && c.KeyUsage&x509.KeyUsageCertSign == 0 {
		return bundleErr(ReasonNotCA, key, nil, "%s may not sign certificates (keyUsage lacks keyCertSign)", describe(c))
	}
	return nil
}

func encodeCerts(certs []*x509.Certificate) []byte {
	var buf bytes.Buffer
	for _, c := range certs {
		_ = pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	return buf.Bytes()
}
