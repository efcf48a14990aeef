package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshplane/meshplane/internal/agent"
	"github.com/meshplane/meshplane/internal/agent/agenttest"
	"github.com/meshplane/meshplane/test/harness"
)

const waitFor = 20 * time.Second

func execute(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := newRootCommand()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestHelpShowsEveryFlagAndDefault(t *testing.T) {
	help, err := execute(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for flag, def := range map[string]string{
		"--mode":             `(default "sds")`,
		"--ca-addr":          `(default "meshd.meshplane-system.svc:15012")`,
		"--xds-addr":         "(default: --ca-addr",
		"--root-cert":        `(default "/var/run/secrets/istio/root-cert.pem")`,
		"--token-file":       `(default "/var/run/secrets/tokens/istio-token")`,
		"--cert-ttl":         "(default 24h0m0s)",
		"--trust-domain":     "(default: whatever the CA issues)",
		"--sds-socket":       `(default "/var/run/secrets/workload-spiffe-uds/socket")`,
		"--output-dir":       `(default "/var/lib/istio/data")`,
		"--grpc-bootstrap":   `(default "/etc/istio/proxy/grpc-bootstrap.json")`,
		"--xds-proxy-listen": `(default "unix:///etc/istio/proxy/XDS")`,
	} {
		if line := usageLine(help, flag); !strings.Contains(line, def) {
			t.Errorf("usage of %s does not show %s: %q", flag, def, line)
		}
	}
	for _, want := range []string{"POD_NAME", "POD_NAMESPACE", "INSTANCE_IP", "SIGTERM", `"default"`, `"ROOTCA"`, "GRPC_XDS_BOOTSTRAP"} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not mention %s", want)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := execute(t, "version")
	if err != nil || strings.TrimSpace(out) != version {
		t.Fatalf("version printed %q, %v", out, err)
	}
}

func TestRefusesBadFlagCombinations(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want []string
	}{
		{args: []string{"--mode", "envoy"}, want: []string{`--mode "envoy": must be sds or files`}},
		{args: []string{"--output-dir", "/data"}, want: []string{"--output-dir is for --mode files"}},
		{args: []string{"--mode", "sds", "--grpc-bootstrap", "/b.json"}, want: []string{"--grpc-bootstrap is for --mode files"}},
		{args: []string{"--mode", "files", "--sds-socket", "/s"}, want: []string{"--sds-socket is for --mode sds"}},
		{args: []string{"--mode", "files", "--output-dir", "data", "--grpc-bootstrap", ""}, want: []string{`--output-dir "data" must be an absolute path`}},
		{args: []string{"--mode", "files"}, want: []string{"--grpc-bootstrap needs $POD_NAME and $POD_NAMESPACE"}},
		{args: []string{"--mode", "files"}, env: map[string]string{"POD_NAME": "web-0"}, want: []string{"--grpc-bootstrap needs $POD_NAME and $POD_NAMESPACE"}},
		{args: []string{"--xds-proxy-listen", "0.0.0.0:15010"}, want: []string{"--xds-proxy-listen", "only loopback"}},
		{args: []string{"--xds-proxy-listen", "unix://XDS"}, want: []string{"--xds-proxy-listen", "must be absolute"}},
		{args: []string{"--ca-addr", "meshd"}, want: []string{"--ca-addr", "want host:port"}},
		{args: []string{"--xds-addr", "meshd:0"}, want: []string{"--xds-addr", "port must be a number from 1 to 65535"}},
		{args: []string{"--cert-ttl", "500ms"}, want: []string{"--cert-ttl 500ms: must be at least 1s"}},
		{args: []string{"--trust-domain", "spiffe://cluster.local"}, want: []string{"--trust-domain", "without spiffe://"}},
		{args: []string{"--root-cert", "", "--token-file", ""}, want: []string{"--root-cert is required", "--token-file is required"}},
		{args: []string{"--sds-socket", "socket"}, want: []string{`--sds-socket "socket" must be an absolute path`}},
		{args: []string{}, env: map[string]string{"INSTANCE_IP": "pod-ip"}, want: []string{`$INSTANCE_IP "pod-ip" is not an IP address`}},
		{args: []string{"--log-level", "verbose"}, want: []string{"--log-level \"verbose\": must be debug, info or error"}},
		// Every problem at once, not one per attempt.
		{args: []string{"--mode", "files", "--sds-socket", "/s", "--cert-ttl", "0s"}, want: []string{"--sds-socket is for --mode sds", "--cert-ttl 0s"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			for _, k := range []string{"POD_NAME", "POD_NAMESPACE", "INSTANCE_IP"} {
				t.Setenv(k, tc.env[k])
			}
			_, err := execute(t, tc.args...)
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want one saying %q", err, want)
				}
			}
		})
	}
}

// rig is a CA and a stand-in meshd xDS server, and the agent's files.
type rig struct {
	ca        *agenttest.CA
	ads       *agenttest.ADSServer
	tokenFile string
	dir       string
	socket    string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "istio-token")
	if err := agent.WriteFileAtomic(tokenFile, []byte("token-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := agenttest.NewCA(t, agenttest.CAOptions{TokenFile: tokenFile, Namespace: "shop"})
	sockDir, err := os.MkdirTemp("", "ma") // t.TempDir() paths may be too long for a socket
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(sockDir) })
	return &rig{ca: ca, ads: agenttest.NewADSServer(t, ca.ServerTLS(t)), tokenFile: tokenFile, dir: dir, socket: filepath.Join(sockDir, "XDS")}
}

func (r *rig) filesArgs() []string {
	return []string{
		"--mode", "files",
		"--ca-addr", r.ca.Addr,
		"--xds-addr", r.ads.Addr,
		"--root-cert", r.ca.RootFile,
		"--token-file", r.tokenFile,
		"--cert-ttl", "3s",
		"--trust-domain", "cluster.local",
		"--output-dir", filepath.Join(r.dir, "data"),
		"--grpc-bootstrap", filepath.Join(r.dir, "grpc-bootstrap.json"),
		"--xds-proxy-listen", "unix://" + r.socket,
		"--log-level", "debug",
	}
}

func waitForLog(t *testing.T, logs *harness.SyncBuffer, want string, times int) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for strings.Count(logs.String(), want) < times {
		if time.Now().After(deadline) {
			t.Fatalf("no %d log lines with %q within %s:\n%s", times, want, waitFor, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFilesModeRotatesAndStopsOnSIGTERM runs mesh-agent as main would: it
// writes the files and the bootstrap, renews the 3 s certificate, and stops
// cleanly on SIGTERM, removing its socket and keeping the files.
func TestFilesModeRotatesAndStopsOnSIGTERM(t *testing.T) {
	r := newRig(t)
	t.Setenv("POD_NAME", "web-0")
	t.Setenv("POD_NAMESPACE", "shop")
	t.Setenv("INSTANCE_IP", "10.0.3.7")
	logs := &harness.SyncBuffer{}
	cmd := newRootCommand()
	cmd.SetOut(logs)
	cmd.SetErr(logs)
	cmd.SetArgs(r.filesArgs())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(context.Background()) }()

	waitForLog(t, logs, "Wrote the grpc xDS bootstrap", 1)
	waitForLog(t, logs, "Workload certificate obtained", 3)
	bootstrap, err := os.ReadFile(filepath.Join(r.dir, "grpc-bootstrap.json"))
	if err != nil {
		t.Fatal(err)
	}
	var b struct {
		XDSServers []struct {
			ServerURI string `json:"server_uri"`
		} `json:"xds_servers"`
		Node struct {
			ID       string            `json:"id"`
			Metadata map[string]string `json:"metadata"`
		} `json:"node"`
	}
	if err := json.Unmarshal(bootstrap, &b); err != nil {
		t.Fatal(err)
	}
	if len(b.XDSServers) != 1 || b.XDSServers[0].ServerURI != "unix://"+r.socket {
		t.Errorf("bootstrap xds_servers %+v, want the proxy at unix://%s", b.XDSServers, r.socket)
	}
	if b.Node.ID != "web-0.shop" || b.Node.Metadata["INSTANCE_IPS"] != "10.0.3.7" {
		t.Errorf("bootstrap node %+v, want web-0.shop at 10.0.3.7", b.Node)
	}
	if fi, err := os.Stat(filepath.Join(r.dir, "data", agent.KeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("key.pem: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		if !json.Valid([]byte(line)) {
			t.Errorf("log line is not JSON: %s", line)
		}
	}

	// The agent is running, so its handler has SIGTERM and the test does not.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("mesh-agent after SIGTERM: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("mesh-agent did not stop within %s of SIGTERM; logs:\n%s", waitFor, logs)
	}
	if !strings.Contains(logs.String(), "mesh-agent stopped") {
		t.Errorf("no shutdown log line:\n%s", logs)
	}
	if _, err := os.Stat(r.socket); !os.IsNotExist(err) {
		t.Errorf("xDS proxy socket left behind: %v", err)
	}
	if _, err := os.Stat(filepath.Join(r.dir, "data", agent.CertChainFile)); err != nil {
		t.Errorf("certificate removed on stop (the application may still be draining): %v", err)
	}
}

// TestRefusedTokenIsLoggedClearly: a garbled token gets a log line saying
// the CA refused it and what to check.
func TestRefusedTokenIsLoggedClearly(t *testing.T) {
	r := newRig(t)
	if err := agent.WriteFileAtomic(r.tokenFile, []byte("garbled"), 0o600); err != nil {
		t.Fatal(err)
	}
	// This CA expects a token the agent does not have.
	expected := filepath.Join(r.dir, "expected-token")
	if err := agent.WriteFileAtomic(expected, []byte("the-real-token"), 0o600); err != nil {
		t.Fatal(err)
	}
	ca := agenttest.NewCA(t, agenttest.CAOptions{TokenFile: expected})

	logs := &harness.SyncBuffer{}
	cmd := newRootCommand()
	cmd.SetOut(logs)
	cmd.SetErr(logs)
	cmd.SetArgs([]string{
		"--mode", "sds", "--ca-addr", ca.Addr, "--root-cert", ca.RootFile, "--token-file", r.tokenFile,
		"--sds-socket", r.socket, "--xds-proxy-listen", "",
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(ctx) }()
	waitForLog(t, logs, "The CA refused this pod's service-account token", 1)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitFor):
		t.Fatal("mesh-agent did not stop")
	}
	line := lineWith(logs.String(), "The CA refused")
	for _, want := range []string{`"level":"ERROR"`, `audience \"istio-ca\"`, "Unauthenticated", ca.Addr} {
		if !strings.Contains(line, want) {
			t.Errorf("log line does not say %s: %s", want, line)
		}
	}
}

// usageLine is the line of the flags list that describes flag.
func usageLine(help, flag string) string {
	for _, l := range strings.Split(help, "\n") {
		if strings.HasPrefix(l, "  ") && strings.HasPrefix(strings.TrimSpace(l), flag+" ") {
			return l
		}
	}
	return ""
}

func lineWith(text, substr string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}
