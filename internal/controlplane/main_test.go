package controlplane

import (
	"context"
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/ca/catest"
	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/test/harness"
)

// apiConfig reaches the package's API server (cluster-admin), which serves
// Istio's and cert-manager's CRDs.
var apiConfig *rest.Config

func TestMain(m *testing.M) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	crds, err := istiocrd.CRDs()
	if err == nil {
		err = harness.CreateCRDs(context.Background(), cfg, crds)
	}
	var certManagerCRDs string
	if err == nil {
		certManagerCRDs, err = catest.CRDDir()
	}
	if err == nil {
		_, err = harness.InstallCRDs(context.Background(), cfg, certManagerCRDs)
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		apiConfig = cfg
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	os.Exit(code)
}
