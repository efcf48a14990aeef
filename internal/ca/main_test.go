package ca

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/internal/ca/catest"
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
// cert-manager's CRDs installed from the cert-manager module go.mod requires
// (catest.CRDDir).
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	apiOnce.Do(func() {
		apiEnv, apiCfg, apiErr = harness.StartEnvtest()
		if apiErr != nil {
			return
		}
		var dir string
		if dir, apiErr = catest.CRDDir(); apiErr != nil {
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
