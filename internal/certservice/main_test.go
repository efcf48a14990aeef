package certservice

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/test/harness"
)

// The API server is started once for the package, by the first test that
// needs it (the TLS tests and the benchmarks do not), and stopped by
// TestMain.
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

// apiServer returns a cluster-admin config for the package's API server.
func apiServer(t testing.TB) *rest.Config {
	t.Helper()
	apiOnce.Do(func() { apiEnv, apiCfg, apiErr = harness.StartEnvtest() })
	if apiErr != nil {
		t.Fatal(apiErr)
	}
	return apiCfg
}
