package agent

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRunSaysWhenTheCARefusesTheToken: a garbled token keeps the workload
// without a certificate, and the log says why and what to check.
func TestRunSaysWhenTheCARefusesTheToken(t *testing.T) {
	m := newTestMesh(t)
	garbled := filepath.Join(t.TempDir(), "istio-token")
	writeToken(t, garbled, "eyJhbGciOi.garbled")
	logs, log := newLogs(t)
	stop := runAgent(t, Config{
		Mode: ModeFiles, CAAddr: m.ca.Addr, RootCertFile: m.ca.RootFile, TokenFile: garbled,
		CertTTL: time.Hour, OutputDir: t.TempDir(), Logger: log,
		Rotation: RotatorOptions{MinBackoff: 10 * time.Millisecond},
	})
	line := logs.waitForLog(t, "The CA refused this pod's service-account token")
	for _, want := range []string{`audience \"istio-ca\"`, "Unauthenticated", "token rejected", m.ca.Addr} {
		if !strings.Contains(line, want) {
			t.Errorf("log line does not say %q: %s", want, line)
		}
	}
	// Refusals are retried: the kubelet may be about to write a good token.
	writeToken(t, garbled, "token-1")
	logs.waitForLog(t, "Workload certificate obtained")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestRunRefusesBadConfig(t *testing.T) {
	_, log := newLogs(t)
	for _, tc := range []struct {
		name string
		cfg  Config
		want []string
	}{
		{"empty", Config{}, []string{"the CA address is required", "the root certificate file is required", "the token file is required", "under a second", `unknown mode ""`}},
		{"sds without socket", Config{Mode: ModeSDS}, []string{"the SDS socket (mode sds) is required"}},
		{"files without dir", Config{Mode: ModeFiles}, []string{"the output directory (mode files) is required"}},
		{"bootstrap in sds mode", Config{Mode: ModeSDS, GRPCBootstrapFile: "/b.json"}, []string{"grpc bootstrap is written in mode files only"}},
		{"proxy without upstream", Config{Mode: ModeSDS, XDSProxyListen: "unix:///x"}, []string{"meshd's xDS address (for the xDS proxy) is required"}},
		{"proxy open to the network", Config{Mode: ModeSDS, XDSAddr: "meshd:15012", XDSProxyListen: "0.0.0.0:15010"}, []string{"only loopback"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.Logger = log
			err := Run(context.Background(), tc.cfg)
			for _, want := range tc.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("error %v, want one saying %q", err, want)
				}
			}
		})
	}
}

// TestRunFailsFastOnAnUnusableSocketPath: a path that cannot be a socket
// stops the start with an error naming it.
func TestRunFailsFastOnAnUnusableSocketPath(t *testing.T) {
	m := newTestMesh(t)
	file := filepath.Join(t.TempDir(), "not-a-socket")
	writeToken(t, file, "x")
	_, log := newLogs(t)
	err := Run(context.Background(), Config{
		Mode: ModeSDS, CAAddr: m.ca.Addr, RootCertFile: m.ca.RootFile, TokenFile: m.tokenFile,
		CertTTL: time.Hour, SDSSocket: file, Logger: log,
	})
	if err == nil || !strings.Contains(err.Error(), "not a socket") || !strings.Contains(err.Error(), file) {
		t.Fatalf("error %v, want one about %s", err, file)
	}
}
