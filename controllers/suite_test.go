package controllers_test

import (
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/test/harness"
)

// The API server every test in this package talks to: a real kube-apiserver and
// etcd (envtest), without controller-manager, so Deployments only become
// available when a test says so. That is what lets these tests hold the
// operator to "not Ready before the Deployments are".
var (
	restConfig *rest.Config
	k8s        client.Client
)

func TestMain(m *testing.M) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	restConfig = cfg
	if k8s, err = harness.NewClient(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = env.Stop()
		os.Exit(1)
	}
	code := m.Run()
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
	}
	os.Exit(code)
}
