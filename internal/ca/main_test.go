package ca

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/test/harness"
)

// The API server is started once for the package, by the first test that
// needs it (only the cert-manager tests do: the rest, and the benchmarks,
// should not wait for it), and stopped by TestMain.
var (
	apiOnce sync.Once
	apiEnv  *envtest.Environment
	apiCfg  *rest.Config
	apiErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if apiEnv != nil {
		if err := apiEnv.Stop(); err != nil { // always: it stops kube-apiserver and etcd
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// apiServer returns a cluster-admin config for the package's API server, with
// cert-manager's CRDs installed from the cert-manager module go.mod requires.
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	apiOnce.Do(func() {
		apiEnv, apiCfg, apiErr = harness.StartEnvtest()
		if apiErr != nil {
			return
		}
		var dir string
		if dir, apiErr = certManagerCRDDir(); apiErr != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_, apiErr = harness.InstallCRDs(ctx, apiCfg, dir)
	})
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	return apiCfg
}

// certManagerCRDDir is deploy/crds of the cert-manager module in the module
// cache: the CRDs are read from there, never copied into this repository.
func certManagerCRDDir() (string, error) {
	root, err := harness.ModuleRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/cert-manager/cert-manager")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("finding the cert-manager module: %w", err)
	}
	dir := filepath.Join(strings.TrimSpace(string(out)), "deploy", "crds")
	if _, err := os.Stat(filepath.Join(dir, "cert-manager.io_certificaterequests.yaml")); err != nil {
		return "", fmt.Errorf("cert-manager CRDs: %w", err)
	}
	return dir, nil
}
