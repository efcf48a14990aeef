package rootcert

import (
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/test/harness"
)

// apiConfig reaches the package's API server (cluster-admin).
var apiConfig *rest.Config

func TestMain(m *testing.M) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	apiConfig = cfg
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
