package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
)

// received is one secret as the SDS client got it.
type received struct {
	secret *tlsv3.Secret
	at     time.Time
}

func dialUnix(t *testing.T, socket string) *grpc.ClientConn {
	t.Helper()
	eventually(t, func() bool { _, err := os.Stat(socket); return err == nil }, "socket %s", socket)
	conn, err := grpc.NewClient("unix://"+socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

func unpackSecrets(t *testing.T, resources []*anypb.Any, at time.Time, out chan<- received) {
	for _, r := range resources {
		s := &tlsv3.Secret{}
		if err := r.UnmarshalTo(s); err != nil {
			t.Errorf("resource of type %s: %v", r.GetTypeUrl(), err)
			continue
		}
		out <- received{secret: s, at: at}
	}
}

// sotwSecrets subscribes to names over state-of-the-world SDS, as Envoy
// does, ACKs every response and delivers the secrets.
func sotwSecrets(t *testing.T, ctx context.Context, conn *grpc.ClientConn, names ...string) <-chan received {
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).StreamSecrets(ctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	req := &discoveryv3.DiscoveryRequest{Node: &corev3.Node{Id: "web-0.shop"}, TypeUrl: resourcev3.SecretType, ResourceNames: names}
	if err := stream.Send(req); err != nil {
		t.Fatal(err)
	}
	out := make(chan received, 100)
	go func() {
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			unpackSecrets(t, resp.GetResources(), time.Now(), out)
			ack := &discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.SecretType, ResourceNames: names,
				VersionInfo: resp.GetVersionInfo(), ResponseNonce: resp.GetNonce()}
			if stream.Send(ack) != nil {
				return
			}
		}
	}()
	return out
}

func next(t *testing.T, ch <-chan received) received {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(waitFor):
		t.Fatalf("no secret within %s", waitFor)
		return received{}
	}
}

// checkCertificate checks a "default" secret as Envoy would use it: the
// chain and key form a pair, the chain verifies against the mesh root, and
// it is valid when it arrives. It returns the leaf.
func checkCertificate(t *testing.T, r received, m *testMesh) *x509.Certificate {
	t.Helper()
	tc := r.secret.GetTlsCertificate()
	chain, key := tc.GetCertificateChain().GetInlineBytes(), tc.GetPrivateKey().GetInlineBytes()
	pair, err := tls.X509KeyPair(chain, key)
	if err != nil {
		t.Fatalf("chain and key of %q do not form a pair: %v", r.secret.GetName(), err)
	}
	certs, err := parseCertificates(chain)
	if err != nil {
		t.Fatal(err)
	}
	leaf, inter := certs[0], x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	roots := x509.NewCertPool()
	roots.AddCert(m.ca.Root)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: r.at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
		t.Errorf("served certificate does not verify at %s, when it arrived: %v", r.at, err)
	}
	if pair.Leaf != nil && !pair.Leaf.Equal(leaf) {
		t.Error("pair leaf differs from the chain's first certificate")
	}
	return leaf
}

// TestSDSServesAndRotates runs the agent in sds mode with 3 s certificates.
// A real SDS client gets "default" and "ROOTCA", then a renewed "default"
// before the first expires; nothing resembling the key is written to disk.
func TestSDSServesAndRotates(t *testing.T) {
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp) // anything the agent writes to a temporary file lands here
	cwd, _ := os.Getwd()
	cwdBefore := listDir(t, cwd)

	m := newTestMesh(t)
	socket := filepath.Join(shortSocketDir(t), "sds", "socket")
	_, log := newLogs(t)
	stop := runAgent(t, Config{
		Mode: ModeSDS, CAAddr: m.ca.Addr, RootCertFile: m.ca.RootFile, TokenFile: m.tokenFile,
		CertTTL: 3 * time.Second, SDSSocket: socket, Node: Node{PodName: "web-0", Namespace: "shop"}, Logger: log,
	})
	conn := dialUnix(t, socket)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	secrets := sotwSecrets(t, ctx, conn, SDSCertificateName, SDSRootName)

	var first *x509.Certificate
	var roots int
	var keys [][]byte
	for first == nil || roots == 0 {
		r := next(t, secrets)
		switch r.secret.GetName() {
		case SDSCertificateName:
			first = checkCertificate(t, r, m)
			keys = append(keys, r.secret.GetTlsCertificate().GetPrivateKey().GetInlineBytes())
		case SDSRootName:
			roots++
			if got := r.secret.GetValidationContext().GetTrustedCa().GetInlineBytes(); !bytes.Equal(got, m.ca.RootPEM) {
				t.Errorf("ROOTCA is\n%s\nwant the mesh root\n%s", got, m.ca.RootPEM)
			}
		default:
			t.Errorf("unexpected secret %q", r.secret.GetName())
		}
	}

	// Two renewals, each pushed before the certificate it replaces expires.
	prev := first
	for range 2 {
		r := next(t, secrets)
		if r.secret.GetName() != SDSCertificateName {
			if r.secret.GetName() == SDSRootName {
				t.Errorf("ROOTCA pushed again although the root did not change")
			}
			continue
		}
		leaf := checkCertificate(t, r, m)
		keys = append(keys, r.secret.GetTlsCertificate().GetPrivateKey().GetInlineBytes())
		if leaf.SerialNumber.Cmp(prev.SerialNumber) == 0 {
			t.Fatalf("pushed the same certificate (serial %s) again", leaf.SerialNumber)
		}
		if !r.at.Before(prev.NotAfter) {
			t.Errorf("renewed certificate pushed at %s, after the previous one expired at %s", r.at, prev.NotAfter)
		}
		prev = leaf
	}
	if err := stop(); err != nil {
		t.Fatalf("agent: %v", err)
	}
	if _, err := os.Stat(socket); !os.IsNotExist(err) {
		t.Errorf("socket %s left behind after stop: %v", socket, err)
	}

	// The keys were served; none of them, nor any private key, is on disk:
	// not in the temporary directory, not beside the socket, the token or
	// the root (all under the test's temporary root), not in the working
	// directory.
	checkNoKeyUnder(t, filepath.Dir(tmp), keys)
	if after := listDir(t, cwd); !equalStrings(cwdBefore, after) {
		t.Errorf("the agent wrote into the working directory: before %v, after %v", cwdBefore, after)
	}
}

// checkNoKeyUnder fails if any file under dir holds a PEM private key or
// the DER of one of keys.
func checkNoKeyUnder(t *testing.T, dir string, keys [][]byte) {
	t.Helper()
	var ders [][]byte
	for _, k := range keys {
		block, _ := pem.Decode(k)
		if block == nil {
			t.Fatalf("served key is not PEM")
		}
		ders = append(ders, block.Bytes)
	}
	files := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(data, []byte("PRIVATE KEY")) {
			t.Errorf("%s holds a PEM private key", path)
		}
		for _, der := range ders {
			if bytes.Contains(data, der) {
				t.Errorf("%s holds a served key", path)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("checked %d files under %s", files, dir)
}

func listDir(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestSDSDelta: Envoy may use delta SDS; both secrets come on one stream.
func TestSDSDelta(t *testing.T) {
	m := newTestMesh(t)
	socket := filepath.Join(shortSocketDir(t), "socket")
	_, log := newLogs(t)
	runAgent(t, Config{
		Mode: ModeSDS, CAAddr: m.ca.Addr, RootCertFile: m.ca.RootFile, TokenFile: m.tokenFile,
		CertTTL: time.Hour, SDSSocket: socket, Logger: log,
	})
	conn := dialUnix(t, socket)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	stream, err := secretv3.NewSecretDiscoveryServiceClient(conn).DeltaSecrets(ctx, grpc.WaitForReady(true))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{
		Node: &corev3.Node{Id: "web-0.shop"}, TypeUrl: resourcev3.SecretType,
		ResourceNamesSubscribe: []string{SDSCertificateName, SDSRootName},
	}); err != nil {
		t.Fatal(err)
	}
	got := map[string]received{}
	for len(got) < 2 {
		resp, err := stream.Recv()
		if err != nil {
			t.Fatalf("delta SDS: %v (have %d secrets)", err, len(got))
		}
		for _, r := range resp.GetResources() {
			s := &tlsv3.Secret{}
			if err := r.GetResource().UnmarshalTo(s); err != nil {
				t.Fatal(err)
			}
			got[r.GetName()] = received{secret: s, at: time.Now()}
		}
		if err := stream.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.SecretType, ResponseNonce: resp.GetNonce()}); err != nil {
			t.Fatal(err)
		}
	}
	checkCertificate(t, got[SDSCertificateName], m)
	if !bytes.Equal(got[SDSRootName].secret.GetValidationContext().GetTrustedCa().GetInlineBytes(), m.ca.RootPEM) {
		t.Error("ROOTCA is not the mesh root")
	}
}
