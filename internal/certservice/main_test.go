package certservice

import (
	"os"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/test/harness"
)

// The package's API server is started by the first test that needs it (the
// TLS tests and the benchmarks do not).
var api harness.LazyEnvtest

func TestMain(m *testing.M) { os.Exit(api.Run(m)) }

// apiServer returns a cluster-admin config for the package's API server.
func apiServer(t testing.TB) *rest.Config { return api.Config(t) }
