package agent

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshplane/meshplane/internal/agent/agenttest"
)

func TestCSRIsP256AndNamesNoIdentity(t *testing.T) {
	key, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	if key.Curve != elliptic.P256() {
		t.Errorf("key curve %s, want P-256", key.Curve.Params().Name)
	}
	csrPEM, err := newCSR(key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" {
		t.Fatalf("not a PEM certificate request: %q", csrPEM)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if err := csr.CheckSignature(); err != nil {
		t.Errorf("CSR signature: %v", err)
	}
	if !key.PublicKey.Equal(csr.PublicKey) {
		t.Error("CSR is not for the key")
	}
	if n := len(csr.URIs) + len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n != 0 {
		t.Errorf("CSR names %d SANs, want none (the CA takes the identity from the token)", n)
	}
}

func TestSignUsesTheTokenFileAsItIsNow(t *testing.T) {
	m := newTestMesh(t)
	c := m.caClient(t)
	key, _ := newKey()
	csr, _ := newCSR(key)
	for _, token := range []string{"token-1", "token-2"} {
		// The CA accepts only the file's current content, as a TokenReview
		// accepts only a token the kubelet has not replaced.
		writeToken(t, m.tokenFile, token)
		chain, err := c.Sign(context.Background(), csr, time.Minute)
		if err != nil {
			t.Fatalf("with %s: %v", token, err)
		}
		if len(chain) != 3 {
			t.Errorf("chain of %d certificates, want leaf, intermediate and root", len(chain))
		}
	}
}

func TestSignExplainsFailures(t *testing.T) {
	m := newTestMesh(t)
	key, _ := newKey()
	csr, _ := newCSR(key)

	t.Run("token refused", func(t *testing.T) {
		other := filepath.Join(t.TempDir(), "token")
		writeToken(t, other, "not.a-token")
		c, err := NewCAClient(CAClientOptions{Addr: m.ca.Addr, RootCertFile: m.ca.RootFile, Token: FileToken(other)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Sign(context.Background(), csr, time.Minute)
		if !errors.Is(err, ErrTokenRefused) {
			t.Fatalf("error %v, want one wrapping ErrTokenRefused", err)
		}
		for _, want := range []string{"refused the service-account token", `audience "istio-ca"`, "token rejected", m.ca.Addr} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	})

	t.Run("no token file", func(t *testing.T) {
		missing := filepath.Join(t.TempDir(), "absent")
		c, err := NewCAClient(CAClientOptions{Addr: m.ca.Addr, RootCertFile: m.ca.RootFile, Token: FileToken(missing)})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		refusedBefore := len(m.ca.Refusals())
		_, err = c.Sign(context.Background(), csr, time.Minute)
		if err == nil || errors.Is(err, ErrTokenRefused) || !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "service-account token") {
			t.Fatalf("error %v, want a missing token file, not a refusal", err)
		}
		if got := len(m.ca.Refusals()) - refusedBefore; got != 0 {
			t.Errorf("the CA refused %d requests; nothing should have been sent without a token", got)
		}
	})

	t.Run("untrusted CA, then the root file is fixed", func(t *testing.T) {
		rootFile := filepath.Join(t.TempDir(), "root-cert.pem")
		otherMesh := agenttest.NewCA(t, agenttest.CAOptions{TokenFile: m.tokenFile})
		if err := os.WriteFile(rootFile, otherMesh.RootPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		c, err := NewCAClient(CAClientOptions{Addr: m.ca.Addr, RootCertFile: rootFile, Token: FileToken(m.tokenFile), Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Sign(context.Background(), csr, time.Minute)
		if err == nil || !strings.Contains(err.Error(), "unknown authority") {
			t.Fatalf("error %v, want the CA's certificate refused", err)
		}
		// The root is read at every handshake: fixing the file is enough.
		if err := WriteFileAtomic(rootFile, m.ca.RootPEM, 0o644); err != nil {
			t.Fatal(err)
		}
		eventually(t, func() bool {
			_, err = c.Sign(context.Background(), csr, time.Minute)
			return err == nil
		}, "a request to succeed once the root file is right (last error: %v)", err)
	})
}

func TestIssueChecksWhatTheCAReturns(t *testing.T) {
	m := newTestMesh(t)
	c := m.caClient(t)
	key, _ := newKey()
	csr, _ := newCSR(key)
	chain, err := c.Sign(context.Background(), csr, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	rootsPEM, roots, err := readRoots(m.ca.RootFile)
	if err != nil {
		t.Fatal(err)
	}
	otherKey, err := newKey()
	if err != nil {
		t.Fatal(err)
	}
	_, otherRoots, err := readRoots(agenttest.NewCA(t, agenttest.CAOptions{TokenFile: m.tokenFile}).RootFile)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good := identityWant{TrustDomain: "cluster.local", Namespace: "shop"}

	b, err := newBundle(key, chain, rootsPEM, roots, good, now)
	if err != nil {
		t.Fatalf("valid chain refused: %v", err)
	}
	if b.Identity != m.ca.Identity() {
		t.Errorf("identity %q, want %q", b.Identity, m.ca.Identity())
	}
	certs, err := parseCertificates(b.CertChain)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !isSelfSigned(m.ca.Root) {
		t.Errorf("served chain has %d certificates, want leaf and intermediate without the root", len(certs))
	}

	for _, tc := range []struct {
		name  string
		key   *ecdsa.PrivateKey
		roots *x509.CertPool
		want  identityWant
		now   time.Time
		err   string
	}{
		{"another key", otherKey, roots, good, now, "not for the key"},
		{"another mesh", key, otherRoots, good, now, "does not verify against the mesh root"},
		{"expired", key, roots, good, now.Add(2 * time.Minute), "expired"},
		{"another trust domain", key, roots, identityWant{TrustDomain: "example.org"}, now, `trust domain "cluster.local", want "example.org"`},
		{"another namespace", key, roots, identityWant{Namespace: "web"}, now, `namespace "shop", but the pod runs in "web"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newBundle(tc.key, chain, rootsPEM, tc.roots, tc.want, tc.now)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("error %v, want one saying %q", err, tc.err)
			}
		})
	}
}
