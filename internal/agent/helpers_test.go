package agent

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"github.com/go-logr/logr/funcr"

	"github.com/meshplane/meshplane/internal/agent/agenttest"
)

// waitFor bounds every wait in these tests; rotations take a few seconds.
const waitFor = 20 * time.Second

// logs is a logger that keeps its lines for assertions and shows them in
// the test's output.
type logs struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func newLogs(t testing.TB) (*logs, logr.Logger) {
	l := &logs{t: t}
	return l, funcr.New(func(prefix, args string) {
		line := prefix + " " + args
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.mu.Unlock()
		t.Log(line)
	}, funcr.Options{Verbosity: 1})
}

// find returns the first line containing every one of subs, or "".
func (l *logs) find(subs ...string) string {
	l.mu.Lock()
	defer l.mu.Unlock()
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		return line
	}
	return ""
}

// waitForLog waits until a line contains every one of subs.
func (l *logs) waitForLog(t testing.TB, subs ...string) string {
	t.Helper()
	var line string
	eventually(t, func() bool { line = l.find(subs...); return line != "" }, "a log line with %q", subs)
	return line
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t testing.TB, cond func() bool, what string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for "+what, append([]any{waitFor}, args...)...)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// writeToken writes a token file the way the kubelet does: a new file
// renamed over the old.
func writeToken(t testing.TB, path, token string) {
	t.Helper()
	if err := WriteFileAtomic(path, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// testMesh is a CA and a token file it accepts.
type testMesh struct {
	ca        *agenttest.CA
	tokenFile string
}

func newTestMesh(t testing.TB) *testMesh {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "istio-token")
	writeToken(t, tokenFile, "token-1")
	return &testMesh{
		ca:        agenttest.NewCA(t, agenttest.CAOptions{TokenFile: tokenFile, Namespace: "shop", ServiceAccount: "checkout"}),
		tokenFile: tokenFile,
	}
}

func (m *testMesh) caClient(t testing.TB) *CAClient {
	t.Helper()
	c, err := NewCAClient(CAClientOptions{Addr: m.ca.Addr, RootCertFile: m.ca.RootFile, Token: FileToken(m.tokenFile), Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (m *testMesh) issuer(t testing.TB, ttl time.Duration) *Issuer {
	return &Issuer{CA: m.caClient(t), TTL: ttl, RootCertFile: m.ca.RootFile, TrustDomain: "cluster.local", Namespace: "shop"}
}

// runAgent runs Run in the background; the returned function stops it and
// returns Run's error.
func runAgent(t testing.TB, cfg Config) (stop func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	var once sync.Once
	var err error
	stop = func() error {
		once.Do(func() {
			cancel()
			select {
			case err = <-done:
			case <-time.After(waitFor):
				t.Errorf("the agent did not stop within %s", waitFor)
			}
		})
		return err
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

// shortSocketDir is a temporary directory whose paths fit in a Unix socket
// address (108 bytes); t.TempDir() paths can be longer.
func shortSocketDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ma")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}
