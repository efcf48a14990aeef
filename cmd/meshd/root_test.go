package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/test/harness"
)

const waitFor = 10 * time.Second

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

func TestHelpSaysWhatIsNotImplemented(t *testing.T) {
	help, err := execute(t, "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NOT IMPLEMENTED YET",
		"the sidecar injector webhook: --webhook-addr serves /validate only",
		"/healthz", "/ready", "/metrics", "/debug/syncz", "/debug/config_dump",
		// The CA and the TLS port are served now, and said to be.
		"Secret meshplane-ca in --namespace",
		"ConfigMap meshplane-ca-root-cert, key root-cert.pem",
		"serves on --secure-xds-addr, over TLS",
		// CertManager is served too.
		"CertManager signs through the cert-manager issuer",
		"(CertManager: from the issuer) for --secure-xds-dns-names",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help does not say %q:\n%s", want, help)
		}
	}
	for _, gone := range []string{"PLAINTEXT until", "no workload certificates are signed", "NOT served", "not served with ca.type CertManager"} {
		if strings.Contains(help, gone) {
			t.Errorf("--help still says %q", gone)
		}
	}
	// The one unserved part says so in its flag's usage line too; the served ones do not.
	if line := lineWith(help, "--webhook-addr string"); !strings.Contains(line, "NOT IMPLEMENTED YET") {
		t.Errorf("usage of --webhook-addr does not say /inject is not implemented yet: %q", line)
	}
	for _, flag := range []string{"--xds-addr string", "--secure-xds-addr string"} {
		if line := lineWith(help, flag); strings.Contains(line, "NOT IMPLEMENTED") {
			t.Errorf("%s is served, but its usage says otherwise: %q", flag, line)
		}
	}
	for _, flag := range []string{"--namespace string", "--secure-xds-dns-names strings"} {
		if lineWith(help, flag) == "" {
			t.Errorf("--help has no %s flag", flag)
		}
	}
	for _, def := range []string{`"/etc/meshplane/mesh.yaml"`, `":15014"`, `":15010"`, `":15012"`, `":15017"`} {
		if !strings.Contains(help, "(default "+def+")") {
			t.Errorf("--help does not show the default %s", def)
		}
	}
}

func TestVersion(t *testing.T) {
	out, err := execute(t, "version")
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(out) != version || version == "" {
		t.Errorf("version printed %q, want %q", out, version)
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--log-level", "verbose"}, "--log-level"},
		{[]string{"--xds-addr", "15010"}, "--xds-addr"},
		{[]string{"--webhook-addr", ":http"}, "--webhook-addr"},
		{[]string{"--monitoring-addr", "127.0.0.1:99999"}, "--monitoring-addr"},
		{[]string{"serve"}, "unknown command"},
		{[]string{"--debounce-quiet", "2s", "--debounce-max", "1s"}, "--debounce-quiet"},
		{[]string{"--webhook-cert-dir", "/etc/certs", "--webhook-config-name", "meshplane-validator-default"}, "--webhook-config-name"},
		{[]string{"--webhook-service", ""}, "--webhook-service"},
	} {
		if _, err := execute(t, tc.args...); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("meshd %v: error %v, want one mentioning %q", tc.args, err, tc.want)
		}
	}
}

// TestRunLogsUnservedPortsAndStopsOnSIGTERM runs meshd as main would, against
// a real API server and on loopback ports: it must serve xDS, load the CA from
// the Secret in --namespace and serve TLS with it, sync discovery, log one
// line per address it does not serve, become ready on a valid mesh config and
// stop cleanly on SIGTERM.
func TestRunLogsUnservedPortsAndStopsOnSIGTERM(t *testing.T) {
	createCASecret(t, "meshd-run")
	path := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(path, []byte("trustDomain: example.org\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &harness.SyncBuffer{}
	cmd := newRootCommand()
	cmd.SetOut(logs)
	cmd.SetErr(logs)
	cmd.SetArgs([]string{
		"--mesh-config", path,
		"--monitoring-addr", "127.0.0.1:0",
		"--xds-addr", "127.0.0.1:25010",
		"--secure-xds-addr", "127.0.0.1:25012",
		"--webhook-addr", "127.0.0.1:25017",
		"--log-level", "debug",
		"--kubeconfig", kubeconfigPath,
		"--namespace", "meshd-run",
	})
	done := make(chan error, 1)
	go func() { done <- cmd.ExecuteContext(context.Background()) }()

	waitForLog := func(want string) {
		t.Helper()
		deadline := time.After(waitFor)
		for !strings.Contains(logs.String(), want) {
			select {
			case err := <-done:
				t.Fatalf("meshd returned early (%v); logs:\n%s", err, logs)
			case <-deadline:
				t.Fatalf("no %q in the logs within %s:\n%s", want, waitFor, logs)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	waitForLog("mesh config loaded: ready")
	waitForLog("serving monitoring endpoints")
	waitForLog("Serving xDS")
	waitForLog("Serving xDS and the certificate service over TLS")
	waitForLog("Loaded the mesh CA")
	waitForLog("Service discovery synced")
	if line := lineWith(logs.String(), "Serving xDS and the certificate service over TLS"); !strings.Contains(line, "meshd.meshd-run.svc.cluster.local") || !strings.Contains(line, "127.0.0.1:25012") {
		t.Errorf("the TLS port is not served at its address for meshd's default DNS names: %s", line)
	}

	for _, want := range []struct{ flag, addr string }{
		{"--webhook-addr", "127.0.0.1:25017"},
	} {
		line := lineWith(logs.String(), "on "+want.flag+";")
		if !strings.Contains(line, "NOT IMPLEMENTED YET: not serving") || !strings.Contains(line, want.addr) {
			t.Errorf("no log line saying %s %s is not served; got %q", want.flag, want.addr, line)
		}
	}

	// meshd has registered for SIGTERM by now (it logged from inside Run), so
	// this signal reaches it and not the default handler.
	if err := syscall.Kill(os.Getpid(), syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("meshd after SIGTERM: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatalf("meshd did not stop within %s of SIGTERM; logs:\n%s", waitFor, logs)
	}
	if !strings.Contains(logs.String(), "meshd stopped") {
		t.Errorf("no shutdown log line:\n%s", logs)
	}
}

func lineWith(text, substr string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			return l
		}
	}
	return ""
}

// createCASecret plays the operator: it creates namespace ns with a SelfSigned
// CA Secret in it.
func createCASecret(t *testing.T, ns string) {
	t.Helper()
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(apiConfig)
	if _, err := kube.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	bundle, err := ca.GenerateRoot("example.org")
	if err != nil {
		t.Fatal(err)
	}
	secret := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: v1alpha1.SelfSignedCASecretName, Namespace: ns}, Data: bundle.SecretData()}
	if _, err := kube.CoreV1().Secrets(ns).Create(ctx, secret, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}
