package webhook

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
)

func TestServiceDNSNames(t *testing.T) {
	got := ServiceDNSNames("meshd-canary", "mesh")
	want := []string{"meshd-canary.mesh.svc", "meshd-canary.mesh.svc.cluster.local"}
	if !slices.Equal(got, want) {
		t.Errorf("ServiceDNSNames = %q, want %q", got, want)
	}
}

func TestSelfSignedCertificateVerifiesForItsDNSNames(t *testing.T) {
	names := append(ServiceDNSNames("meshd", "meshplane-system"), "meshd.example.org")
	now := time.Now()
	selfSigned, err := NewSelfSigned(names, now)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(selfSigned.CABundle) {
		t.Fatal("the CA bundle is not PEM certificates")
	}
	cas := parseCertificates(selfSigned.CABundle)
	if len(cas) != 1 || !cas[0].IsCA || cas[0].Subject.CommonName != selfSignedCACommonName {
		t.Fatalf("CA bundle holds %d certificates; want one CA named %q", len(cas), selfSignedCACommonName)
	}
	leaf := selfSigned.Certificate.Leaf
	if leaf.IsCA || !slices.Equal(leaf.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}) {
		t.Errorf("serving certificate: IsCA %v, ext key usage %v; want a server-auth leaf", leaf.IsCA, leaf.ExtKeyUsage)
	}
	for _, cert := range []*x509.Certificate{cas[0], leaf} {
		key, ok := cert.PublicKey.(*ecdsa.PublicKey)
		if !ok || key.Curve != elliptic.P256() {
			t.Errorf("%s: key %T, want ECDSA P-256", cert.Subject.CommonName, cert.PublicKey)
		}
	}
	if key, ok := selfSigned.Certificate.PrivateKey.(*ecdsa.PrivateKey); !ok || !key.PublicKey.Equal(leaf.PublicKey) {
		t.Error("the private key does not belong to the serving certificate")
	}
	for _, name := range names {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// An API server with a clock a few minutes behind still accepts it.
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: names[0], Roots: roots, CurrentTime: now.Add(-10 * time.Minute)}); err != nil {
		t.Errorf("10 minutes before it was made: %v", err)
	}
	for _, name := range []string{"meshd.other.svc", "meshd-canary.meshplane-system.svc", "localhost"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: now}); err == nil {
			t.Errorf("%s: verified, but it is not one of the certificate's names", name)
		}
	}
	// Another meshd's CA does not vouch for this certificate.
	other, err := NewSelfSigned(names, now)
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AppendCertsFromPEM(other.CABundle)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: names[0], Roots: otherRoots, CurrentTime: now}); err == nil {
		t.Error("verified against another meshd's CA")
	}

	if _, err := NewSelfSigned(nil, now); err == nil {
		t.Error("a certificate without DNS names was made")
	}
}

// TestServerServesTheSelfSignedCertificate: a TLS client that trusts only the CA bundle,
// as the API server does, reaches the handler under the Service's name.
func TestServerServesTheSelfSignedCertificate(t *testing.T) {
	names := ServiceDNSNames("meshd", "meshplane-system")
	selfSigned, err := NewSelfSigned(names, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	addr := runServer(t, ServerOptions{Certificate: &selfSigned.Certificate})

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(selfSigned.CABundle)
	resp := postReview(t, addr, &tls.Config{RootCAs: roots, ServerName: names[0]})
	if !resp.Allowed || len(resp.Warnings) != 1 {
		t.Errorf("response %+v, want allowed with the weights warning", resp)
	}

	_, err = tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "meshd.elsewhere.svc"})
	if err == nil || !strings.Contains(err.Error(), "certificate is valid for") {
		t.Errorf("handshake for another name: %v, want a name mismatch", err)
	}
	_, err = tls.Dial("tcp", addr, &tls.Config{ServerName: names[0]})
	if err == nil {
		t.Error("a client trusting only the system roots accepted the self-signed certificate")
	}
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: names[0], NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	if proto := conn.ConnectionState().NegotiatedProtocol; proto != "http/1.1" {
		t.Errorf("negotiated %q, want http/1.1 (no HTTP/2)", proto)
	}
	_ = conn.Close()
}

// TestServerReloadsTheCertificateDirectory: a renewed certificate written over the files is
// served without a restart.
func TestServerReloadsTheCertificateDirectory(t *testing.T) {
	dir := t.TempDir()
	names := []string{"webhook.test"}
	first := writeCertificate(t, dir, names)
	addr := runServer(t, ServerOptions{CertDir: dir})

	served := func() []byte {
		conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // comparing the served certificate
		if err != nil {
			t.Fatal(err)
		}
		defer func() { _ = conn.Close() }()
		return conn.ConnectionState().PeerCertificates[0].Raw
	}
	if !bytes.Equal(served(), first.Certificate.Leaf.Raw) {
		t.Fatal("the server does not serve the certificate in the directory")
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(first.CABundle)
	if resp := postReview(t, addr, &tls.Config{RootCAs: roots, ServerName: names[0]}); !resp.Allowed {
		t.Errorf("response %+v, want allowed", resp)
	}

	second := writeCertificate(t, dir, names)
	deadline := time.Now().Add(15 * time.Second)
	for !bytes.Equal(served(), second.Certificate.Leaf.Raw) {
		if time.Now().After(deadline) {
			t.Fatal("the renewed certificate was not served within 15s")
		}
		time.Sleep(100 * time.Millisecond)
	}

	if _, err := NewServer(ServerOptions{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler(), CertDir: t.TempDir()}); err == nil {
		t.Error("a server was made from an empty certificate directory")
	}
	if _, err := NewServer(ServerOptions{Addr: "127.0.0.1:0", Handler: http.NotFoundHandler(), CertDir: dir, Certificate: &second.Certificate}); err == nil {
		t.Error("a server was made with both a directory and a certificate")
	}
}

func writeCertificate(t *testing.T, dir string, names []string) *SelfSigned {
	t.Helper()
	selfSigned, err := NewSelfSigned(names, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM := encodeCertificate(t, &selfSigned.Certificate)
	// The key first, then the certificate: the watcher reloads on each write and keeps the
	// previous pair while the two files do not match.
	for _, f := range []struct {
		name string
		data []byte
	}{{KeyFile, keyPEM}, {CertFile, certPEM}} {
		tmp := filepath.Join(dir, "."+f.name)
		if err := os.WriteFile(tmp, f.data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, f.name)); err != nil {
			t.Fatal(err)
		}
	}
	return selfSigned
}

func runServer(t *testing.T, opts ServerOptions) string {
	t.Helper()
	handler, err := NewHandler(HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	opts.Addr, opts.Handler = "127.0.0.1:0", handler
	server, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := server.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return server.Addr().String()
}

// postReview sends the weights-warning review over TLS and returns the response.
func postReview(t *testing.T, addr string, tlsConfig *tls.Config) *admissionv1.AdmissionResponse {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: tlsConfig}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	body := reviewBody(t, request(t, admissionv1.Create, warnedVirtualService, ""))
	resp, err := client.Post("https://"+addr+ValidatePath, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = resp.Body.Close() }()
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(resp.Body).Decode(&review); err != nil || review.Response == nil {
		t.Fatalf("status %d, decoding the review: %v", resp.StatusCode, err)
	}
	return review.Response
}

func encodeCertificate(t *testing.T, cert *tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	return certPEM, keyPEM
}
