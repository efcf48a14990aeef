package meshd

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// waitFor bounds every wait in these tests.
const waitFor = 10 * time.Second

var client = &http.Client{Timeout: 5 * time.Second}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

// eventually polls cond until it holds or waitFor has passed.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s; last: %s", what, waitFor, last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// writeAtomically replaces path the way a ConfigMap update does, so that a
// poll never sees a half-written file.
func writeAtomically(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// startServer runs a Server on a loopback port and stops it at the end of the test.
func startServer(t *testing.T, configPath string) (*Server, string) {
	t.Helper()
	srv := NewServer(Options{
		MonitoringAddr:  "127.0.0.1:0",
		MeshConfigPath:  configPath,
		Revision:        "canary",
		Version:         "v9.9.9-test",
		PollInterval:    20 * time.Millisecond,
		ShutdownTimeout: 2 * time.Second,
	})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return within %s of its context being cancelled", waitFor)
		}
	})
	return srv, "http://" + srv.Addr().String()
}

func TestServerReadinessFollowsTheMeshConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	srv, base := startServer(t, path)

	if code, body := get(t, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d %q, want 200", code, body)
	}

	// No file yet: not ready, and the reason names the path.
	code, body := get(t, base+"/ready")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, path) || !strings.Contains(body, "does not exist") {
		t.Errorf("/ready without a mesh config = %d %q, want 503 naming %s", code, body, path)
	}
	if srv.MeshConfig() != nil {
		t.Error("MeshConfig() is set before any config loaded")
	}

	// A config with an unknown field is refused; still not ready, and the reason names the field.
	writeAtomically(t, path, "trustDomain: example.org\nbogusField: 1\n")
	eventually(t, "/ready naming the unknown field", func() (bool, string) {
		code, body := get(t, base+"/ready")
		return code == http.StatusServiceUnavailable && strings.Contains(body, `unknown field "bogusField"`), body
	})

	// A valid config makes meshd ready.
	writeAtomically(t, path, fullMeshConfig)
	eventually(t, "/ready 200 after a valid mesh config", func() (bool, string) {
		code, body := get(t, base+"/ready")
		return code == http.StatusOK, body
	})
	if cfg := srv.MeshConfig(); cfg == nil || cfg.TrustDomain != "example.org" {
		t.Fatalf("MeshConfig() = %+v, want the loaded config", cfg)
	}

	// A broken change afterwards is refused and counted, but meshd keeps the
	// config it has and stays ready.
	writeAtomically(t, path, "trustDomain: other.org\nalsoBogus: true\n")
	eventually(t, "the broken change counted", func() (bool, string) {
		_, metrics := get(t, base+"/metrics")
		return strings.Contains(metrics, "meshd_mesh_config_load_errors_total 3\n"), grep(metrics, "meshd_mesh_config_load_errors_total")
	})
	if code, body := get(t, base+"/ready"); code != http.StatusOK {
		t.Errorf("/ready after a broken change = %d %q, want 200 on the config loaded before", code, body)
	}
	if cfg := srv.MeshConfig(); cfg == nil || cfg.TrustDomain != "example.org" {
		t.Errorf("MeshConfig() = %+v, want the config loaded before the broken change", cfg)
	}

	// A valid change is picked up.
	writeAtomically(t, path, "trustDomain: other.org\n")
	eventually(t, "the valid change picked up", func() (bool, string) {
		cfg := srv.MeshConfig()
		return cfg != nil && cfg.TrustDomain == "other.org", ""
	})
}

func TestServerMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	_, base := startServer(t, path)

	code, metrics := get(t, base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`meshd_build_info{revision="canary",version="v9.9.9-test"} 1`,
		// The missing file was one failure; polling it again is not another.
		"meshd_mesh_config_load_errors_total 1\n",
		"go_goroutines ",
		"process_start_time_seconds ",
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics does not contain %q", want)
		}
	}
	time.Sleep(100 * time.Millisecond) // several polls of the still-missing file
	if _, metrics := get(t, base+"/metrics"); !strings.Contains(metrics, "meshd_mesh_config_load_errors_total 1\n") {
		t.Errorf("a file that stays missing was counted again: %s", grep(metrics, "meshd_mesh_config_load_errors_total"))
	}
}

func TestServerOnlyAnswersGET(t *testing.T) {
	_, base := startServer(t, filepath.Join(t.TempDir(), "mesh.yaml"))
	resp, err := client.Post(base+"/healthz", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /healthz = %d, want 405", resp.StatusCode)
	}
}

func TestRunReportsAnAddressInUse(t *testing.T) {
	first, _ := startServer(t, filepath.Join(t.TempDir(), "mesh.yaml"))
	second := NewServer(Options{MonitoringAddr: first.Addr().String()})
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	err := second.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), first.Addr().String()) {
		t.Fatalf("Run on an address in use = %v, want an error naming it", err)
	}
}

func grep(text, prefix string) string {
	var lines []string
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, prefix) {
			lines = append(lines, l)
		}
	}
	return strings.Join(lines, "\n")
}

func TestRunReturnsWhenServingFails(t *testing.T) {
	srv := NewServer(Options{MonitoringAddr: "127.0.0.1:0", MeshConfigPath: filepath.Join(t.TempDir(), "mesh.yaml")})
	if err := srv.Listen(); err != nil {
		t.Fatal(err)
	}
	l, _ := srv.listener.Listen()
	l.Close() // makes Serve fail at once
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run = nil, want the serving error")
		}
	case <-time.After(waitFor):
		t.Fatalf("Run did not return within %s after serving failed", waitFor)
	}
}
