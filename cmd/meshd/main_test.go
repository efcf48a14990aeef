package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/test/harness"
)

// kubeconfigPath reaches the real API server (envtest) meshd watches in these tests;
// apiConfig is the tests' own way there (cluster-admin).
var (
	kubeconfigPath string
	apiConfig      *rest.Config
)

func TestMain(m *testing.M) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	apiConfig = cfg
	// The webhook test writes VirtualServices.
	crds, err := istiocrd.CRDs()
	if err == nil {
		err = harness.CreateCRDs(context.Background(), cfg, crds)
	}
	var dir string
	if err == nil {
		dir, err = os.MkdirTemp("", "meshd-test-")
	}
	if err == nil {
		kubeconfigPath = filepath.Join(dir, "kubeconfig")
		err = os.WriteFile(kubeconfigPath, env.KubeConfig, 0o600)
	}
	code := 1
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	_ = env.Stop()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
