package ca

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestGenerateRoot(t *testing.T) {
	b, err := GenerateRoot("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewAuthority(b)
	if err != nil {
		t.Fatalf("a generated root does not validate: %v", err)
	}
	root := parsePEMChain(t, []string{string(b.CACert)})[0]
	key, ok := root.PublicKey.(*ecdsa.PublicKey)
	if !ok || key.Curve != elliptic.P256() {
		t.Errorf("root key is %T, want ECDSA P-256", root.PublicKey)
	}
	if !root.IsCA || root.KeyUsage&x509.KeyUsageCertSign == 0 {
		t.Errorf("root is not a CA: IsCA=%v KeyUsage=%v", root.IsCA, root.KeyUsage)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if life := root.NotAfter.Sub(root.NotBefore); life < RootValidity || life > RootValidity+2*time.Minute {
		t.Errorf("root lifetime %s, want %s", life, RootValidity)
	}
	if got := root.Subject.Organization; len(got) != 1 || got[0] != "cluster.local" {
		t.Errorf("root organization %v, want the trust domain", got)
	}
	if string(b.RootCert) != string(b.CACert) || string(b.CertChain) != string(b.CACert) {
		t.Error("root-cert.pem and cert-chain.pem of a self-signed bundle must be the root")
	}
	again, err := GenerateRoot("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	if string(again.CAKey) == string(b.CAKey) {
		t.Error("two roots share a key")
	}

	id := mustIdentity(t, "cluster.local", "default", "web")
	chain, err := a.Sign(csrFor(t, newP256(t), id), id, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certs := parsePEMChain(t, chain)
	if len(certs) != 2 || !certs[1].Equal(root) {
		t.Fatalf("chain of a root-signed leaf: %d certificates, want leaf + root", len(certs))
	}
	verifyLeaf(t, certs, b.RootCert)

	if _, err := GenerateRoot("Not A Domain"); err == nil {
		t.Error("GenerateRoot accepted an invalid trust domain")
	}
}

func TestNewAuthorityAcceptsPluginLayouts(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, nil)
	inter2 := newTestCA(t, "intermediate 2", inter, nil)
	otherRoot := newTestCA(t, "other root", nil, nil)
	id := mustIdentity(t, "cluster.local", "ns", "sa")

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaCA := newTestCertWithKey(t, "rsa intermediate", root, rsaKey, func(c *x509.Certificate) {
		c.IsCA = true
		c.KeyUsage = x509.KeyUsageCertSign
	})
	ecKeyDER, err := x509.MarshalECPrivateKey(inter.key.(*ecdsa.PrivateKey))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name      string
		bundle    Bundle
		wantChain []*testCert // after the leaf
	}{
		{"chain with ca-cert and root", pluginBundle(inter, root), []*testCert{inter, root}},
		{"chain without ca-cert", Bundle{CACert: inter.pem, CAKey: inter.keyPEM, RootCert: root.pem, CertChain: root.pem}, []*testCert{inter, root}},
		{"no chain, signed by the root", Bundle{CACert: inter.pem, CAKey: inter.keyPEM, RootCert: root.pem}, []*testCert{inter, root}},
		{"two intermediates", pluginBundle(inter2, root, inter), []*testCert{inter2, inter, root}},
		{"two roots in root-cert.pem", Bundle{CACert: inter.pem, CAKey: inter.keyPEM, RootCert: append(append([]byte{}, otherRoot.pem...), root.pem...)}, []*testCert{inter, root}},
		{"PKCS#1 RSA key", Bundle{CACert: rsaCA.pem, CAKey: pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), RootCert: root.pem}, []*testCert{rsaCA, root}},
		{"SEC 1 EC key", Bundle{CACert: inter.pem, CAKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecKeyDER}), RootCert: root.pem}, []*testCert{inter, root}},
		{"root signs", Bundle{CACert: root.pem, CAKey: root.keyPEM, RootCert: root.pem, CertChain: root.pem}, []*testCert{root}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuthority(tc.bundle)
			if err != nil {
				t.Fatal(err)
			}
			chain, err := a.Sign(csrFor(t, newP256(t), id), id, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			certs := parsePEMChain(t, chain)
			if len(certs) != 1+len(tc.wantChain) {
				t.Fatalf("chain has %d certificates, want %d", len(certs), 1+len(tc.wantChain))
			}
			for i, want := range tc.wantChain {
				if !certs[i+1].Equal(want.cert) {
					t.Errorf("chain[%d] is %q, want %q", i+1, certs[i+1].Subject, want.cert.Subject)
				}
			}
			verifyLeaf(t, certs, root.pem)
		})
	}
}

func TestNewAuthorityRefusesBadBundles(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, nil)
	good := pluginBundle(inter, root)
	otherRoot := newTestCA(t, "other root", nil, nil)
	otherInter := newTestCA(t, "other intermediate", otherRoot, nil)
	middle := newTestCA(t, "middle", root, nil)
	deep := newTestCA(t, "deep", middle, nil)
	leafKey := newP256(t)
	notCA := newTestCertWithKey(t, "not a ca", root, leafKey, nil)
	noCertSign := newTestCA(t, "no certSign", root, func(c *x509.Certificate) { c.KeyUsage = x509.KeyUsageDigitalSignature })
	expired := newTestCA(t, "expired", root, func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-24 * time.Hour)
	})
	future := newTestCA(t, "future", root, func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(24 * time.Hour)
		c.NotAfter = time.Now().Add(48 * time.Hour)
	})
	expiredRoot := newTestCA(t, "expired root", nil, func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-48 * time.Hour)
		c.NotAfter = time.Now().Add(-time.Hour)
	})
	underExpiredRoot := newTestCA(t, "under expired root", expiredRoot, func(c *x509.Certificate) {
		c.NotBefore = time.Now().Add(-47 * time.Hour)
	})
	codeSigning := newTestCA(t, "code signing only", root, func(c *x509.Certificate) {
		c.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning}
	})
	notCARoot := newTestCertWithKey(t, "leaf as root", nil, newP256(t), nil)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224CA := newTestCertWithKey(t, "p224", root, p224, func(c *x509.Certificate) { c.IsCA = true; c.KeyUsage = x509.KeyUsageCertSign })
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edKey)
	if err != nil {
		t.Fatal(err)
	}

	with := func(edit func(*Bundle)) Bundle {
		b := good
		edit(&b)
		return b
	}
	for _, tc := range []struct {
		name   string
		bundle Bundle
		reason Reason
		key    string
		say    string // in the message
	}{
		{"no ca-cert", with(func(b *Bundle) { b.CACert = nil }), ReasonMissingKey, SecretKeyCACert, "missing"},
		{"no ca-key", with(func(b *Bundle) { b.CAKey = nil }), ReasonMissingKey, SecretKeyCAKey, "missing"},
		{"blank root-cert", with(func(b *Bundle) { b.RootCert = []byte("\n  \n") }), ReasonMissingKey, SecretKeyRootCert, "missing"},
		{"ca-cert not PEM", with(func(b *Bundle) { b.CACert = []byte("hello") }), ReasonMalformed, SecretKeyCACert, "not PEM"},
		{"ca-cert garbage DER", with(func(b *Bundle) {
			b.CACert = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1, 2, 3}})
		}), ReasonMalformed, SecretKeyCACert, "does not parse"},
		{"ca-cert is a key", with(func(b *Bundle) { b.CACert = inter.keyPEM }), ReasonMalformed, SecretKeyCACert, `"PRIVATE KEY"`},
		{"two certificates in ca-cert", with(func(b *Bundle) { b.CACert = append(append([]byte{}, inter.pem...), root.pem...) }), ReasonMalformed, SecretKeyCACert, "exactly one"},
		{"key garbage", with(func(b *Bundle) {
			b.CAKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("garbage")})
		}), ReasonMalformed, SecretKeyCAKey, "does not parse"},
		{"key is a certificate", with(func(b *Bundle) { b.CAKey = inter.pem }), ReasonMalformed, SecretKeyCAKey, `"CERTIFICATE"`},
		{"key encrypted", with(func(b *Bundle) {
			b.CAKey = pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Headers: map[string]string{"Proc-Type": "4,ENCRYPTED"}, Bytes: []byte{1}})
		}), ReasonMalformed, SecretKeyCAKey, "encrypted"},
		{"key P-224", Bundle{CACert: p224CA.pem, CAKey: p224CA.keyPEM, RootCert: root.pem}, ReasonUnsupportedKey, SecretKeyCAKey, "P-224"},
		{"key RSA 1024", with(func(b *Bundle) {
			b.CAKey = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsa1024)})
		}), ReasonUnsupportedKey, SecretKeyCAKey, "1024-bit"},
		{"key Ed25519", with(func(b *Bundle) { b.CAKey = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: edDER}) }), ReasonUnsupportedKey, SecretKeyCAKey, "ed25519"},
		{"key of another certificate", with(func(b *Bundle) { b.CAKey = root.keyPEM }), ReasonKeyMismatch, SecretKeyCAKey, "not the private key"},
		{"ca-cert not a CA", Bundle{CACert: notCA.pem, CAKey: notCA.keyPEM, RootCert: root.pem}, ReasonNotCA, SecretKeyCACert, "CA:TRUE"},
		{"ca-cert without certSign", Bundle{CACert: noCertSign.pem, CAKey: noCertSign.keyPEM, RootCert: root.pem}, ReasonNotCA, SecretKeyCACert, "keyCertSign"},
		{"root not a CA", with(func(b *Bundle) { b.RootCert = notCARoot.pem }), ReasonNotCA, SecretKeyRootCert, "leaf as root"},
		{"ca-cert expired", pluginBundle(expired, root), ReasonExpired, SecretKeyCACert, `"CN=expired"`},
		{"ca-cert not yet valid", pluginBundle(future, root), ReasonNotYetValid, SecretKeyCACert, `"CN=future"`},
		{"root expired", pluginBundle(underExpiredRoot, expiredRoot), ReasonExpired, SecretKeyRootCert, `"CN=expired root"`},
		{"chain to another root", pluginBundle(otherInter, root), ReasonChainInvalid, SecretKeyCertChain, "does not chain"},
		{"chain lacks an intermediate", Bundle{CACert: deep.pem, CAKey: deep.keyPEM, RootCert: root.pem, CertChain: append(append([]byte{}, deep.pem...), root.pem...)}, ReasonChainInvalid, SecretKeyCertChain, `"CN=deep"`},
		{"chain forbids workload usages", pluginBundle(codeSigning, root), ReasonChainInvalid, SecretKeyCACert, "serverAuth"},
		{"cert-chain not PEM", with(func(b *Bundle) { b.CertChain = []byte("x") }), ReasonMalformed, SecretKeyCertChain, "not PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, err := NewAuthority(tc.bundle)
			if err == nil {
				t.Fatalf("accepted: %v", a)
			}
			var be *BundleError
			if !errors.As(err, &be) {
				t.Fatalf("error %v is a %T, want *BundleError", err, err)
			}
			if be.Reason != tc.reason || be.Key != tc.key {
				t.Errorf("reason %s in %s, want %s in %s (%v)", be.Reason, be.Key, tc.reason, tc.key, err)
			}
			if !strings.Contains(err.Error(), tc.say) {
				t.Errorf("error %q does not say %q", err, tc.say)
			}
			if !strings.HasPrefix(err.Error(), tc.key+": ") {
				t.Errorf("error %q does not start with the Secret key", err)
			}
		})
	}
}

func TestSignIssuesWorkloadCertificate(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, nil)
	now := time.Now().Truncate(time.Second)
	a, err := newAuthority(pluginBundle(inter, root), func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	id := mustIdentity(t, "cluster.local", "shop", "cart")
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name string
		csr  []byte
		rsa  bool
	}{
		{"P-256, asks for its identity", csrFor(t, newP256(t), id), false},
		{"P-256, asks for nothing", newCSR(t, newP256(t), nil), false},
		{"P-384", csrFor(t, p384, id), false},
		{"RSA 2048", csrFor(t, rsaKey, id), true},
		{"dual-use common name", newCSR(t, newP256(t), func(r *x509.CertificateRequest) {
			r.URIs = []*url.URL{id.URL()}
			r.Subject = pkix.Name{CommonName: id.String(), Organization: []string{"ignored"}}
		}), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := a.Sign(tc.csr, id, 2*time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			certs := parsePEMChain(t, chain)
			leaf := certs[0]
			if len(certs) != 3 || !certs[1].Equal(inter.cert) || !certs[2].Equal(root.cert) {
				t.Fatalf("chain is not leaf, intermediate, root")
			}
			verifyLeaf(t, certs, root.pem)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != id.String() {
				t.Errorf("URI SANs %v, want only %s", leaf.URIs, id)
			}
			if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 || leaf.Subject.String() != "" {
				t.Errorf("leaf has other identities: DNS %v IP %v email %v subject %q", leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses, leaf.Subject)
			}
			if leaf.IsCA {
				t.Error("leaf is a CA")
			}
			if eku := leaf.ExtKeyUsage; len(eku) != 2 || eku[0] != x509.ExtKeyUsageServerAuth || eku[1] != x509.ExtKeyUsageClientAuth {
				t.Errorf("extended key usages %v, want serverAuth, clientAuth", eku)
			}
			wantKU := x509.KeyUsageDigitalSignature
			if tc.rsa {
				wantKU |= x509.KeyUsageKeyEncipherment
			}
			if leaf.KeyUsage != wantKU {
				t.Errorf("key usage %v, want %v", leaf.KeyUsage, wantKU)
			}
			if !leaf.NotBefore.Equal(now.Add(-time.Minute)) || !leaf.NotAfter.Equal(now.Add(2*time.Hour)) {
				t.Errorf("validity %s to %s, want %s to %s", leaf.NotBefore, leaf.NotAfter, now.Add(-time.Minute), now.Add(2*time.Hour))
			}
			if bits := leaf.SerialNumber.BitLen(); bits < 100 || bits > 128 {
				t.Errorf("serial has %d bits, want a random 128-bit number", bits)
			}
		})
	}

	t.Run("serials differ", func(t *testing.T) {
		c1, err := a.Sign(csrFor(t, newP256(t), id), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c2, err := a.Sign(csrFor(t, newP256(t), id), id, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if parsePEMChain(t, c1)[0].SerialNumber.Cmp(parsePEMChain(t, c2)[0].SerialNumber) == 0 {
			t.Error("two leaves share a serial")
		}
	})

	t.Run("validity clamped to the chain", func(t *testing.T) {
		chain, err := a.Sign(csrFor(t, newP256(t), id), id, 10*365*24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		leaf := parsePEMChain(t, chain)[0]
		if !leaf.NotAfter.Equal(inter.cert.NotAfter) {
			t.Errorf("NotAfter %s, want the intermediate's %s", leaf.NotAfter, inter.cert.NotAfter)
		}
	})

	t.Run("clamped to a root expiring before the intermediate", func(t *testing.T) {
		shortRoot := newTestCA(t, "short root", nil, func(c *x509.Certificate) { c.NotAfter = now.Add(3 * time.Hour) })
		longInter := newTestCA(t, "long intermediate", shortRoot, func(c *x509.Certificate) { c.NotAfter = now.Add(30 * 24 * time.Hour) })
		a, err := newAuthority(pluginBundle(longInter, shortRoot), func() time.Time { return now })
		if err != nil {
			t.Fatal(err)
		}
		chain, err := a.Sign(csrFor(t, newP256(t), id), id, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		if got := parsePEMChain(t, chain)[0].NotAfter; !got.Equal(shortRoot.cert.NotAfter) {
			t.Errorf("NotAfter %s, want the root's %s", got, shortRoot.cert.NotAfter)
		}
	})

	t.Run("expired CA is unavailable", func(t *testing.T) {
		later := inter.cert.NotAfter.Add(time.Minute)
		a.now = func() time.Time { return later }
		defer func() { a.now = func() time.Time { return now } }()
		_, err := a.Sign(csrFor(t, newP256(t), id), id, time.Hour)
		if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrInvalidRequest) {
			t.Fatalf("signing with an expired CA: %v, want ErrUnavailable", err)
		}
	})
}

func TestSignRefusesRequests(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	a, err := NewAuthority(Bundle{CACert: root.pem, CAKey: root.keyPEM, RootCert: root.pem})
	if err != nil {
		t.Fatal(err)
	}
	id := mustIdentity(t, "cluster.local", "shop", "cart")
	other := mustIdentity(t, "cluster.local", "shop", "admin")
	otherTD := mustIdentity(t, "evil.example", "shop", "cart")

	otherNameSAN, err := asn1.Marshal([]asn1.RawValue{{Class: asn1.ClassContextSpecific, Tag: 0, IsCompound: true, Bytes: []byte{0x06, 0x01, 0x2a, 0xa0, 0x03, 0x0c, 0x01, 0x78}}})
	if err != nil {
		t.Fatal(err)
	}
	tampered := csrFor(t, newP256(t), id)
	block, _ := pem.Decode(tampered)
	block.Bytes[len(block.Bytes)-5] ^= 0xff // inside the signature
	tampered = pem.EncodeToMemory(block)
	p224, _ := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	rsa1024, _ := rsa.GenerateKey(rand.Reader, 1024)
	_, ed, _ := ed25519.GenerateKey(rand.Reader)

	ask := func(edit func(*x509.CertificateRequest)) []byte { return newCSR(t, newP256(t), edit) }
	for _, tc := range []struct {
		name     string
		csr      []byte
		ttl      time.Duration
		identity bool     // an *IdentityError
		say      []string // in the message
	}{
		{"another service account", csrFor(t, newP256(t), other), time.Hour, true, []string{other.String(), id.String()}},
		{"another trust domain", csrFor(t, newP256(t), otherTD), time.Hour, true, []string{otherTD.String(), id.String()}},
		{"its identity and another URI", ask(func(r *x509.CertificateRequest) {
			r.URIs = []*url.URL{id.URL(), other.URL()}
		}), time.Hour, true, []string{other.String()}},
		{"a DNS name", ask(func(r *x509.CertificateRequest) {
			r.URIs = []*url.URL{id.URL()}
			r.DNSNames = []string{"api.example.com"}
		}), time.Hour, true, []string{"dns:api.example.com", id.String()}},
		{"an IP", ask(func(r *x509.CertificateRequest) { r.IPAddresses = []net.IP{net.ParseIP("10.0.0.1")} }), time.Hour, true, []string{"ip:10.0.0.1"}},
		{"an email", ask(func(r *x509.CertificateRequest) { r.EmailAddresses = []string{"a@b.c"} }), time.Hour, true, []string{"email:a@b.c"}},
		{"a common name", ask(func(r *x509.CertificateRequest) { r.Subject.CommonName = "admin" }), time.Hour, true, []string{"cn:admin"}},
		{"an email in the subject", ask(func(r *x509.CertificateRequest) {
			r.Subject.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidEmailAddress, Value: "x@y.z"}}
		}), time.Hour, true, []string{"email:x@y.z"}},
		{"an otherName SAN", ask(func(r *x509.CertificateRequest) {
			r.ExtraExtensions = []pkix.Extension{{Id: oidSubjectAltName, Value: otherNameSAN}}
		}), time.Hour, false, []string{"type [0]"}},
		{"a bad signature", tampered, time.Hour, false, []string{"signature"}},
		{"a P-224 key", csrFor(t, p224, id), time.Hour, false, []string{"P-224"}},
		{"an RSA 1024 key", csrFor(t, rsa1024, id), time.Hour, false, []string{"1024"}},
		{"an Ed25519 key", csrFor(t, ed, id), time.Hour, false, []string{"ed25519"}},
		{"not PEM", []byte("hello"), time.Hour, false, []string{"not PEM"}},
		{"a certificate instead", root.pem, time.Hour, false, []string{`"CERTIFICATE"`}},
		{"two CSRs", append(csrFor(t, newP256(t), id), csrFor(t, newP256(t), id)...), time.Hour, false, []string{"after"}},
		{"zero validity", csrFor(t, newP256(t), id), 0, false, []string{"not positive"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chain, err := a.Sign(tc.csr, id, tc.ttl)
			if err == nil {
				t.Fatalf("signed: %v", parsePEMChain(t, chain)[0].URIs)
			}
			if !errors.Is(err, ErrInvalidRequest) {
				t.Errorf("error %v does not match ErrInvalidRequest", err)
			}
			var ie *IdentityError
			if errors.As(err, &ie) != tc.identity {
				t.Errorf("error %v (%T): IdentityError %v, want %v", err, err, !tc.identity, tc.identity)
			}
			for _, s := range tc.say {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestIssueServing(t *testing.T) {
	root := newTestCA(t, "root", nil, nil)
	inter := newTestCA(t, "intermediate", root, nil)
	a, err := NewAuthority(pluginBundle(inter, root))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := a.IssueServing([]string{"meshd.meshplane-system.svc", "meshd"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 {
		t.Fatalf("serving chain has %d certificates, want leaf + intermediate (no root)", len(cert.Certificate))
	}
	leaf := cert.Leaf
	if got := leaf.DNSNames; len(got) != 2 || got[0] != "meshd.meshplane-system.svc" {
		t.Errorf("DNS names %v", got)
	}
	if len(leaf.URIs) != 0 || len(leaf.ExtKeyUsage) != 1 || leaf.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("serving leaf: URIs %v, usages %v; want none, serverAuth", leaf.URIs, leaf.ExtKeyUsage)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root.cert)
	inters := x509.NewCertPool()
	inters.AddCert(inter.cert)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: "meshd.meshplane-system.svc", Roots: pool, Intermediates: inters}); err != nil {
		t.Errorf("serving certificate does not verify: %v", err)
	}
	for _, bad := range [][]string{nil, {"Not_A_Name"}, {"*.wildcard.svc"}} {
		if _, err := a.IssueServing(bad, time.Hour); err == nil {
			t.Errorf("IssueServing(%q) succeeded", bad)
		}
	}
}

func TestBundleSecretDataRoundTrip(t *testing.T) {
	b, err := GenerateRoot("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	data := b.SecretData()
	for _, k := range []string{"ca-cert.pem", "ca-key.pem", "root-cert.pem", "cert-chain.pem"} {
		if len(data[k]) == 0 {
			t.Errorf("Secret data lacks %s", k)
		}
	}
	if got := BundleFromSecretData(data); fingerprint(got) != fingerprint(b) {
		t.Error("bundle changed through Secret data")
	}
}
