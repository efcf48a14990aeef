package agent

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/xds"

	"github.com/meshplane/meshplane/internal/agent/agenttest"
)

func TestWriteFileAtomicNeverShowsAPartialFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cert-chain.pem")
	a, b := bytes.Repeat([]byte("a"), 1<<20), bytes.Repeat([]byte("b"), 1<<20)
	if err := WriteFileAtomic(path, a, 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			data := a
			if i%2 == 0 {
				data = b
			}
			if err := WriteFileAtomic(path, data, 0o640); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	deadline := time.Now().Add(500 * time.Millisecond)
	reads := 0
	for time.Now().Before(deadline) {
		got, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		reads++
		if !bytes.Equal(got, a) && !bytes.Equal(got, b) {
			t.Fatalf("read %d bytes that are neither version", len(got))
		}
	}
	close(stop)
	wg.Wait()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o640 {
		t.Errorf("mode %v, want 0640", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Errorf("temporary files left behind: %d entries", len(entries))
	}
	t.Logf("%d reads, all whole", reads)
}

// TestFilesModeForProxylessGRPC runs the agent in files mode with 3 s
// certificates and the xDS proxy on a Unix socket in front of a stand-in
// meshd. The files are replaced before they expire; the bootstrap is
// accepted by grpc-go, whose xDS client reaches meshd through the proxy
// with the node identity and the pod's token.
func TestFilesModeForProxylessGRPC(t *testing.T) {
	m := newTestMesh(t)
	upstream := agenttest.NewADSServer(t, m.ca.ServerTLS(t))
	dir := t.TempDir()
	certDir := filepath.Join(dir, "data")
	bootstrapFile := filepath.Join(dir, "proxy", "grpc-bootstrap.json")
	socket := filepath.Join(shortSocketDir(t), "XDS")
	_, log := newLogs(t)
	runAgent(t, Config{
		Mode: ModeFiles, CAAddr: m.ca.Addr, XDSAddr: upstream.Addr, RootCertFile: m.ca.RootFile, TokenFile: m.tokenFile,
		CertTTL: 3 * time.Second, OutputDir: certDir, GRPCBootstrapFile: bootstrapFile, XDSProxyListen: "unix://" + socket,
		Node: Node{PodName: "web-0", Namespace: "shop", IP: "10.0.3.7"}, Logger: log,
	})

	// The bootstrap comes after the first certificate.
	eventually(t, func() bool { _, err := os.Stat(bootstrapFile); return err == nil }, "the grpc bootstrap")
	for name, mode := range map[string]os.FileMode{CertChainFile: 0o644, KeyFile: 0o600, RootCertFile: 0o644} {
		fi, err := os.Stat(filepath.Join(certDir, name))
		if err != nil {
			t.Fatalf("%s missing when the bootstrap is there: %v", name, err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}
	if root, _ := os.ReadFile(filepath.Join(certDir, RootCertFile)); !bytes.Equal(root, m.ca.RootPEM) {
		t.Errorf("root-cert.pem is not the mesh root")
	}

	// Read the files as grpc-go's file_watcher would, until three distinct
	// certificates have been seen. Each read must find a valid certificate.
	serials := map[string]bool{}
	deadline := time.Now().Add(waitFor)
	for len(serials) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("saw %d distinct certificates in %s, want 3", len(serials), waitFor)
		}
		pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, CertChainFile), filepath.Join(certDir, KeyFile))
		now := time.Now()
		if err != nil {
			// Between the two renames the key is new and the chain old; the
			// next read must find the pair whole.
			time.Sleep(10 * time.Millisecond)
			if pair, err = tls.LoadX509KeyPair(filepath.Join(certDir, CertChainFile), filepath.Join(certDir, KeyFile)); err != nil {
				t.Fatalf("key and chain do not match: %v", err)
			}
		}
		if !now.Before(pair.Leaf.NotAfter) {
			t.Fatalf("cert-chain.pem expired at %s, read at %s: not renewed in time", pair.Leaf.NotAfter, now)
		}
		serials[pair.Leaf.SerialNumber.String()] = true
		time.Sleep(50 * time.Millisecond)
	}
	entries, err := os.ReadDir(certDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 3 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("output directory holds %v, want the three files only", names)
	}

	bootstrap, err := os.ReadFile(bootstrapFile)
	if err != nil {
		t.Fatal(err)
	}
	checkBootstrapJSON(t, bootstrap, "unix://"+socket, certDir)
	checkGRPCAccepts(t, bootstrap)

	// grpc-go's own xDS client, configured by nothing but the bootstrap,
	// reaches meshd through the proxy.
	resolver, err := xds.NewXDSResolverWithConfigForTesting(bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := grpc.NewClient("xds:///echo.shop:8080", grpc.WithResolvers(resolver), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Connect()
	var up *agenttest.ADSStream
	select {
	case up = <-upstream.Opened():
	case <-time.After(waitFor):
		t.Fatal("grpc-go's xDS client did not reach meshd through the proxy")
	}
	eventually(t, func() bool { return up.Node() != nil && len(up.Requests()) > 0 }, "grpc-go's first request")
	if got, want := up.Requests()[0], resourcev3.ListenerType+"|echo.shop:8080"; got != want {
		t.Errorf("first request %q, want %q", got, want)
	}
	node := up.Node()
	if node.GetId() != "web-0.shop" {
		t.Errorf("node id %q, want web-0.shop", node.GetId())
	}
	md := node.GetMetadata().GetFields()
	for k, want := range map[string]string{"PROXY_TYPE": "grpc", "POD_NAME": "web-0", "NAMESPACE": "shop", "INSTANCE_IPS": "10.0.3.7"} {
		if got := md[k].GetStringValue(); got != want {
			t.Errorf("node metadata %s = %q, want %q", k, got, want)
		}
	}
	if want := []string{"Bearer token-1"}; !equalStrings(up.Authorization, want) {
		t.Errorf("meshd saw authorization %q, want %q", up.Authorization, want)
	}
}

// checkBootstrapJSON checks the fields meshd and grpc-go rely on.
func checkBootstrapJSON(t *testing.T, data []byte, serverURI, certDir string) map[string]any {
	t.Helper()
	var b struct {
		XDSServers []struct {
			ServerURI      string           `json:"server_uri"`
			ChannelCreds   []map[string]any `json:"channel_creds"`
			CallCreds      []map[string]any `json:"call_creds"`
			ServerFeatures []string         `json:"server_features"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
		CertificateProviders map[string]struct {
			PluginName string            `json:"plugin_name"`
			Config     map[string]string `json:"config"`
		} `json:"certificate_providers"`
		Template string `json:"server_listener_resource_name_template"`
	}
	if err := json.Unmarshal(data, &b); err != nil {
		t.Fatalf("bootstrap is not the expected JSON: %v\n%s", err, data)
	}
	if len(b.XDSServers) != 1 || b.XDSServers[0].ServerURI != serverURI {
		t.Errorf("xds_servers %+v, want one at %s", b.XDSServers, serverURI)
	} else if !equalStrings(b.XDSServers[0].ServerFeatures, []string{"xds_v3"}) {
		t.Errorf("server_features %v, want [xds_v3]", b.XDSServers[0].ServerFeatures)
	}
	if b.Node.ID != "web-0.shop" || b.Node.Metadata["PROXY_TYPE"] != "grpc" {
		t.Errorf("node %+v, want id web-0.shop of PROXY_TYPE grpc", b.Node)
	}
	p, ok := b.CertificateProviders[CertificateProviderName]
	if !ok || p.PluginName != "file_watcher" {
		t.Fatalf("certificate_providers %+v, want %q of plugin file_watcher", b.CertificateProviders, CertificateProviderName)
	}
	for key, file := range map[string]string{"certificate_file": CertChainFile, "private_key_file": KeyFile, "ca_certificate_file": RootCertFile} {
		if want := filepath.Join(certDir, file); p.Config[key] != want {
			t.Errorf("file_watcher %s = %q, want %q", key, p.Config[key], want)
		}
	}
	if _, err := time.ParseDuration(p.Config["refresh_interval"]); err != nil {
		t.Errorf("refresh_interval %q: %v", p.Config["refresh_interval"], err)
	}
	if b.Template != GRPCServerListenerTemplate {
		t.Errorf("server_listener_resource_name_template %q, want %q", b.Template, GRPCServerListenerTemplate)
	}
	var raw map[string]any
	_ = json.Unmarshal(data, &raw)
	return raw
}

// checkGRPCAccepts hands the bootstrap to grpc-go's own parser, through the
// client (every field, the file_watcher configuration included) and the
// xDS server (which also needs the listener template). Neither connects.
func checkGRPCAccepts(t *testing.T, bootstrap []byte) {
	t.Helper()
	if _, err := xds.NewXDSResolverWithConfigForTesting(bootstrap); err != nil {
		t.Errorf("grpc-go refuses the bootstrap: %v", err)
	}
	srv, err := xds.NewGRPCServer(xds.BootstrapContentsForTesting(bootstrap))
	if err != nil {
		t.Errorf("grpc-go's xDS server refuses the bootstrap: %v", err)
		return
	}
	srv.Stop()
}

// TestGRPCBootstrapDirectToMeshd: without the proxy, the application talks
// TLS to meshd, trusting the mesh root, and sends the token itself.
func TestGRPCBootstrapDirectToMeshd(t *testing.T) {
	certDir := t.TempDir()
	b, err := GRPCBootstrap(GRPCBootstrapOptions{
		XDSServerURI: "meshd.meshplane-system.svc:15012", DirectTLS: true, TokenFile: DefaultTokenFile,
		Node: Node{PodName: "web-0", Namespace: "shop"}, CertDir: certDir, RefreshInterval: 90 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	raw := checkBootstrapJSON(t, b, "meshd.meshplane-system.svc:15012", certDir)
	server := raw["xds_servers"].([]any)[0].(map[string]any)
	creds, _ := json.Marshal(server["channel_creds"])
	if want := `[{"config":{"ca_certificate_file":"` + filepath.Join(certDir, RootCertFile) + `"},"type":"tls"}]`; string(creds) != want {
		t.Errorf("channel_creds %s, want %s", creds, want)
	}
	call, _ := json.Marshal(server["call_creds"])
	if want := `[{"config":{"jwt_token_file":"` + DefaultTokenFile + `"},"type":"jwt_token_file"}]`; string(call) != want {
		t.Errorf("call_creds %s, want %s", call, want)
	}
	if !strings.Contains(string(b), `"refresh_interval": "90s"`) {
		t.Errorf("refresh interval not 90s:\n%s", b)
	}
	checkGRPCAccepts(t, b)
}

func TestGRPCBootstrapRefusesIncompleteOptions(t *testing.T) {
	_, err := GRPCBootstrap(GRPCBootstrapOptions{CertDir: "relative", RefreshInterval: time.Millisecond})
	for _, want := range []string{"xDS server URI is required", "pod name and namespace are required", `"relative" must be an absolute path`, "under a second"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v, want one saying %q", err, want)
		}
	}
}

// TestNamesMatchMeshd reads meshd's sources (not its packages, which the
// agent does not link) for the names the bootstrap must agree with.
func TestNamesMatchMeshd(t *testing.T) {
	for _, tc := range []struct {
		dir   string
		names map[string]string
	}{
		{"../xds/generate", map[string]string{"GRPCServerListenerTemplate": GRPCServerListenerTemplate}},
		{"../xds/server", map[string]string{
			"MetaProxyType": MetadataProxyType, "MetaNamespace": MetadataNamespace,
			"MetaPodName": MetadataPodName, "MetaInstanceIPs": MetadataInstanceIPs,
		}},
	} {
		consts := stringConstants(t, tc.dir)
		for name, ours := range tc.names {
			if theirs, ok := consts[name]; !ok {
				t.Errorf("%s: no constant %s", tc.dir, name)
			} else if theirs != ours {
				t.Errorf("%s.%s = %q, the agent uses %q", tc.dir, name, theirs, ours)
			}
		}
	}
}

// stringConstants returns the string constants declared in dir's non-test files.
func stringConstants(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	fset := token.NewFileSet()
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".go") || strings.HasSuffix(e.Name(), "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, filepath.Join(dir, e.Name()), nil, parser.SkipObjectResolution)
		if err != nil {
			continue // a file mid-edit elsewhere is not this test's business
		}
		ast.Inspect(f, func(n ast.Node) bool {
			spec, ok := n.(*ast.ValueSpec)
			if !ok {
				return true
			}
			for i, name := range spec.Names {
				if i < len(spec.Values) {
					if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						if s, err := strconv.Unquote(lit.Value); err == nil {
							out[name.Name] = s
						}
					}
				}
			}
			return true
		})
	}
	return out
}

// TestRunFilesModeWithoutProxyPointsAtMeshd: the bootstrap names meshd.
func TestRunFilesModeWithoutProxyPointsAtMeshd(t *testing.T) {
	m := newTestMesh(t)
	dir := t.TempDir()
	bootstrapFile := filepath.Join(dir, "bootstrap.json")
	_, log := newLogs(t)
	runAgent(t, Config{
		Mode: ModeFiles, CAAddr: m.ca.Addr, XDSAddr: "meshd.meshplane-system.svc:15012", RootCertFile: m.ca.RootFile,
		TokenFile: m.tokenFile, CertTTL: time.Hour, OutputDir: dir, GRPCBootstrapFile: bootstrapFile,
		Node: Node{PodName: "web-0", Namespace: "shop"}, Logger: log,
	})
	eventually(t, func() bool { _, err := os.Stat(bootstrapFile); return err == nil }, "the grpc bootstrap")
	data, _ := os.ReadFile(bootstrapFile)
	checkBootstrapJSON(t, data, "meshd.meshplane-system.svc:15012", dir)
}
