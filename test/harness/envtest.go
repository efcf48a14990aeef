package harness

import (
	"errors"
	"fmt"
	"os"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilruntime "k8s.io/apimachinery/pkg/util/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

// NewScheme returns a scheme with the client-go kinds, the apiextensions kinds
// and Meshplane's API.
func NewScheme() *runtime.Scheme {
	s := runtime.NewScheme()
	utilruntime.Must(clientgoscheme.AddToScheme(s))
	utilruntime.Must(apiextensionsv1.AddToScheme(s))
	utilruntime.Must(meshv1alpha1.AddToScheme(s))
	return s
}

// NewClient returns a controller-runtime client for cfg using NewScheme.
func NewClient(cfg *rest.Config) (client.Client, error) {
	return client.New(cfg, client.Options{Scheme: NewScheme()})
}

// envtestStartTimeout bounds how long etcd and kube-apiserver may each take to
// start; envtest's own default (20s) is too short on a loaded 2-core machine.
const envtestStartTimeout = 2 * time.Minute

// StartEnvtest starts etcd and kube-apiserver from BinDir with controller-runtime's
// envtest and installs the CRDs in config/crd/bases (a missing directory is an
// error), waiting until they are established. The returned config is cluster-admin.
//
// The caller owns the processes: TestMain must call env.Stop() after m.Run(),
// also when tests fail, or kube-apiserver and etcd outlive the test binary. When
// StartEnvtest itself fails it stops whatever it started.
//
// KUBEBUILDER_ASSETS and TEST_ASSET_* are ignored: the binaries always come from
// BinDir, so every test runs against the same Kubernetes version.
func StartEnvtest() (*envtest.Environment, *rest.Config, error) {
	apiServer, err := Binary("kube-apiserver")
	if err != nil {
		return nil, nil, err
	}
	etcd, err := Binary("etcd")
	if err != nil {
		return nil, nil, err
	}
	crdDir, err := CRDDir()
	if err != nil {
		return nil, nil, err
	}

	env := &envtest.Environment{
		Scheme:                NewScheme(),
		CRDDirectoryPaths:     []string{crdDir},
		ErrorIfCRDPathMissing: true,
	}
	env.ControlPlane.GetAPIServer().Path = apiServer
	env.ControlPlane.Etcd = &envtest.Etcd{Path: etcd}
	if os.Getenv("KUBEBUILDER_CONTROLPLANE_START_TIMEOUT") == "" {
		env.ControlPlaneStartTimeout = envtestStartTimeout
	}

	cfg, err := env.Start()
	if err != nil {
		// Start leaves etcd and kube-apiserver running when a later step (such as
		// installing a CRD the API server refuses) fails.
		if stopErr := env.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("stopping envtest after the failed start: %w", stopErr))
		}
		return nil, nil, fmt.Errorf("starting envtest (%s, %s): %w", apiServer, etcd, err)
	}
	if len(env.CRDs) == 0 {
		err := fmt.Errorf("no CRDs in %s: run `make manifests`", crdDir)
		if stopErr := env.Stop(); stopErr != nil {
			err = errors.Join(err, stopErr)
		}
		return nil, nil, err
	}
	return env, cfg, nil
}
