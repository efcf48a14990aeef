package ca

import (
	"context"
	"os"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/ca/catest"
	"github.com/meshplane/meshplane/test/harness"
)

// The package's API server serves cert-manager's CRDs, installed from the
// cert-manager module go.mod requires (catest.CRDDir). Only the cert-manager
// tests need it: the rest, and the benchmarks, do not wait for it.
var api = harness.LazyEnvtest{Setup: func(cfg *rest.Config) error {
	dir, err := catest.CRDDir()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err = harness.InstallCRDs(ctx, cfg, dir)
	return err
}}

func TestMain(m *testing.M) { os.Exit(api.Run(m)) }

// apiServer returns a cluster-admin config for the package's API server.
func apiServer(t *testing.T) *rest.Config { return api.Config(t) }
