package controlplane

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/meshd"
)

// TestCASettings: each CA type reads the Secret or issuer the mesh config names.
func TestCASettings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want caSettings
	}{
		{"", caSettings{trustDomain: "cluster.local", caType: meshd.CASelfSigned, secretName: v1alpha1.SelfSignedCASecretName}},
		{"trustDomain: example.org\nca: {type: Provided, provided: {secretName: cacerts}}",
			caSettings{trustDomain: "example.org", caType: meshd.CAProvided, secretName: "cacerts"}},
		{"ca: {type: CertManager, certManager: {issuerRef: {name: mesh, kind: ClusterIssuer}}}",
			caSettings{trustDomain: "cluster.local", caType: meshd.CACertManager, issuer: ca.IssuerRef{Name: "mesh", Kind: "ClusterIssuer", Group: "cert-manager.io"}}},
	} {
		cfg, err := meshd.ParseMeshConfig([]byte(tc.yaml), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := caSettingsOf(cfg); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.yaml, got, tc.want)
		}
	}
}

// fakeIssuer answers IssueServing with whatever answer says at the time, and
// records when it was asked.
type fakeIssuer struct {
	mu     sync.Mutex
	answer func() (*tls.Certificate, []byte, error)
	calls  []time.Time
}

func (f *fakeIssuer) IssueServing(_ context.Context, _ []string, _ time.Duration) (*tls.Certificate, []byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, time.Now())
	return f.answer()
}

func (f *fakeIssuer) set(answer func() (*tls.Certificate, []byte, error)) {
	f.mu.Lock()
	f.answer = answer
	f.mu.Unlock()
}

func (f *fakeIssuer) callTimes() []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

// testIssuerCA signs serving certificates the way an issuer does: NotBefore a
// minute ago.
type testIssuerCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestIssuerCA(t *testing.T) *testIssuerCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuer root"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testIssuerCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serving returns an answer issuing a certificate for name that expires life
// from the time it is issued.
func (c *testIssuerCA) serving(t *testing.T, name string, life time.Duration) func() (*tls.Certificate, []byte, error) {
	return func() (*tls.Certificate, []byte, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, nil, err
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(time.Now().UnixNano()), DNSNames: []string{name},
			NotBefore: time.Now().Add(-time.Minute), NotAfter: time.Now().Add(life),
			ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, c.cert, key.Public(), c.key)
		if err != nil {
			return nil, nil, err
		}
		leaf, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, err
		}
		return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, c.pem, nil
	}
}

// TestIssuerSource: meshd's serving certificate from the issuer. A failing
// issuer is retried with growing intervals while /ready and the handshake
// say why; an issued certificate is served with the issuer's roots and
// renewed after two thirds of the life it had left (not of its backdated
// validity); a failed renewal keeps the certificate until it expires, and
// then says so; new roots are published.
func TestIssuerSource(t *testing.T) {
	issuer := &fakeIssuer{answer: func() (*tls.Certificate, []byte, error) { return nil, nil, errors.New("issuer says no") }}
	var rootsMu sync.Mutex
	var published [][]byte
	logs := &logBuffer{}
	src := newIssuerSource(issuer, ca.IssuerRef{Name: "mesh", Kind: "Issuer"}, []string{"meshd.mesh.svc"}, logs.logger(), func(pem []byte) {
		rootsMu.Lock()
		published = append(published, pem)
		rootsMu.Unlock()
	})
	src.minRetry, src.maxRetry = 100*time.Millisecond, 400*time.Millisecond
	publishedRoots := func() [][]byte {
		rootsMu.Lock()
		defer rootsMu.Unlock()
		return slices.Clone(published)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); src.run(ctx) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(waitFor):
			t.Error("run did not end with its context")
		}
	}()
	notReadyBecause := func(what string, says ...string) {
		t.Helper()
		eventually(t, what, func() bool {
			ok, why := src.ready()
			for _, s := range says {
				if !strings.Contains(why, s) {
					return false
				}
			}
			return !ok
		})
		_, why := src.ready()
		if _, err := src.forClient(); err == nil || err.Error() != why {
			t.Errorf("a handshake while not ready: %v, want the error %q", err, why)
		}
	}

	// Failing: retried at growing intervals, and /ready says why.
	notReadyBecause("/ready to give the issuer's error", `requesting it from cert-manager Issuer "mesh" failed: issuer says no`)
	eventually(t, "four requests", func() bool { return len(issuer.callTimes()) >= 4 })
	calls := issuer.callTimes()
	for i, want := range []time.Duration{100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond} {
		if gap := calls[i+1].Sub(calls[i]); gap < want {
			t.Errorf("retry %d came %s after the one before, want at least %s", i+1, gap, want)
		}
	}
	if len(publishedRoots()) != 0 {
		t.Error("roots published without a certificate")
	}

	// Issued once, valid for 3s (2 to 3: NotAfter has whole seconds), then
	// the issuer fails again.
	first := newTestIssuerCA(t)
	issueOnce := first.serving(t, "meshd.mesh.svc", 3*time.Second)
	issued := false
	issuer.set(func() (*tls.Certificate, []byte, error) {
		if issued {
			return nil, nil, errors.New("issuer says no")
		}
		issued = true
		return issueOnce()
	})
	eventually(t, "readiness", func() bool { ok, _ := src.ready(); return ok })
	issuedAt := issuer.callTimes()[len(issuer.callTimes())-1]
	cfg, err := src.forClient()
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Certificates) != 1 || !slices.Equal(cfg.Certificates[0].Leaf.DNSNames, []string{"meshd.mesh.svc"}) ||
		cfg.ClientAuth != tls.VerifyClientCertIfGiven || cfg.ClientCAs == nil || !slices.Equal(cfg.NextProtos, []string{"h2"}) {
		t.Errorf("TLS config: %d certificates, client auth %v, client CAs %v, ALPN %v", len(cfg.Certificates), cfg.ClientAuth, cfg.ClientCAs != nil, cfg.NextProtos)
	}
	if got := publishedRoots(); len(got) != 1 || !bytes.Equal(got[0], first.pem) {
		t.Errorf("published %d root sets, want the issuer's once", len(got))
	}

	// Renewal after two thirds of the life left (NotBefore is a minute
	// back), failing; the certificate serves until it expires, then /ready
	// says so.
	notAfter := cfg.Certificates[0].Leaf.NotAfter
	eventually(t, "a renewal attempt", func() bool { return issuer.callTimes()[len(issuer.callTimes())-1].After(issuedAt) })
	renewal := issuer.callTimes()[slices.IndexFunc(issuer.callTimes(), func(c time.Time) bool { return c.After(issuedAt) })]
	if gap, want := renewal.Sub(issuedAt), notAfter.Sub(issuedAt)*2/3; gap < want-100*time.Millisecond {
		t.Errorf("renewed %s after issuance, want about %s: two thirds of the life left", gap, want)
	}
	if ok, why := src.ready(); !ok && time.Now().Before(notAfter) {
		t.Errorf("not ready after a failed renewal with a valid certificate: %s", why)
	}
	notReadyBecause("/ready to say the certificate expired", "expired at", "renewing it failed: issuer says no")
	if !strings.Contains(logs.String(), "serving the current one until it expires") {
		t.Errorf("the failed renewal was not logged as such:\n%s", logs)
	}

	// The issuer signs again, under a new root, which is published.
	second := newTestIssuerCA(t)
	issuer.set(second.serving(t, "meshd.mesh.svc", time.Hour))
	eventually(t, "readiness again", func() bool { ok, _ := src.ready(); return ok })
	if got := publishedRoots(); len(got) != 2 || !bytes.Equal(got[1], second.pem) {
		t.Errorf("published %d root sets, want the first root, then the second", len(got))
	}
}
