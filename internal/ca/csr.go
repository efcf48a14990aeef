package ca

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"encoding/pem"
	"fmt"
)

var (
	oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}
	oidEmailAddress   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// maxRSABits bounds the RSA keys signed for: larger keys only make every
// handshake slower.
const maxRSABits = 8192

// parseCSR decodes a PEM CSR and checks its self-signature and its key.
func parseCSR(csrPEM []byte) (*x509.CertificateRequest, error) {
	block, rest := pem.Decode(csrPEM)
	if block == nil {
		return nil, invalidRequest("the CSR is not PEM")
	}
	if block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, invalidRequest("the CSR's PEM block is %q, want CERTIFICATE REQUEST", block.Type)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, invalidRequest("the CSR has data after its PEM block")
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: parsing the CSR: %w", ErrInvalidRequest, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: the CSR's signature: %w", ErrInvalidRequest, err)
	}
	if err := checkLeafKey(csr.PublicKey); err != nil {
		return nil, err
	}
	if err := checkSANTypes(csr); err != nil {
		return nil, err
	}
	return csr, nil
}

// checkLeafKey accepts ECDSA P-256 and P-384 and RSA keys of 2048 to 8192 bits.
func checkLeafKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() && k.Curve != elliptic.P384() {
			return invalidRequest("ECDSA key on curve %s: only P-256 and P-384 are accepted", k.Curve.Params().Name)
		}
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < 2048 || bits > maxRSABits {
			return invalidRequest("RSA key of %d bits: 2048 to %d bits are accepted", bits, maxRSABits)
		}
	default:
		return invalidRequest("%T keys are not accepted: use ECDSA P-256/P-384 or RSA >= 2048 bits", pub)
	}
	return nil
}

// checkSANTypes refuses SAN kinds crypto/x509 does not parse (otherName,
// directoryName, registeredID, ...): they would be invisible to the identity
// check, and an issuer that copies the CSR's extensions would certify them.
func checkSANTypes(csr *x509.CertificateRequest) error {
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			continue
		}
		var seq asn1.RawValue
		if rest, err := asn1.Unmarshal(ext.Value, &seq); err != nil || len(rest) > 0 || !seq.IsCompound {
			return invalidRequest("the CSR's subjectAltName extension is malformed")
		}
		for names := seq.Bytes; len(names) > 0; {
			var name asn1.RawValue
			var err error
			if names, err = asn1.Unmarshal(names, &name); err != nil {
				return invalidRequest("the CSR's subjectAltName extension is malformed")
			}
			switch {
			case name.Class != asn1.ClassContextSpecific:
				return invalidRequest("the CSR's subjectAltName extension is malformed")
			case name.Tag == 1, name.Tag == 2, name.Tag == 6, name.Tag == 7: // email, DNS, URI, IP
			default:
				return invalidRequest("the CSR asks for a subjectAltName of type [%d]; only a URI is accepted", name.Tag)
			}
		}
	}
	return nil
}

// requestedIdentities lists every identity csr asks for. A common name equal
// to the SPIFFE ID itself (Istio's "dual use" CSRs) is not another identity.
func requestedIdentities(csr *x509.CertificateRequest, id Identity) []string {
	var req []string
	for _, u := range csr.URIs {
		req = append(req, "uri:"+u.String())
	}
	for _, d := range csr.DNSNames {
		req = append(req, "dns:"+d)
	}
	for _, ip := range csr.IPAddresses {
		req = append(req, "ip:"+ip.String())
	}
	for _, e := range csr.EmailAddresses {
		req = append(req, "email:"+e)
	}
	if cn := csr.Subject.CommonName; cn != "" && cn != id.String() {
		req = append(req, "cn:"+cn)
	}
	for _, atv := range csr.Subject.Names {
		if atv.Type.Equal(oidEmailAddress) {
			req = append(req, fmt.Sprintf("email:%v", atv.Value))
		}
	}
	return req
}

// checkIdentity refuses a CSR asking for any identity but id. A CSR asking
// for none is accepted only when the signer writes the identity itself
// (allowNone), not when the CSR is signed as written (cert-manager).
func checkIdentity(csr *x509.CertificateRequest, id Identity, allowNone bool) error {
	req := requestedIdentities(csr, id)
	want := "uri:" + id.String()
	asked := false
	for _, r := range req {
		if r != want {
			return &IdentityError{Requested: req, Allowed: id}
		}
		asked = true
	}
	if !asked && !allowNone {
		return invalidRequest("the CSR asks for no identity, and this CA signs the CSR as written: it must ask for exactly %s (a URI SAN)", id)
	}
	return nil
}
