package harness

import (
	"context"
	"fmt"
	"time"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// InstallCRDs creates or updates every CRD in the YAML files of dir (usually
// CRDDir()) in the cluster cfg points at, and waits until each is Established and
// served. It returns the names of the CRDs.
func InstallCRDs(ctx context.Context, cfg *rest.Config, dir string) ([]string, error) {
	crds, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{
		Scheme:             NewScheme(),
		Paths:              []string{dir},
		ErrorIfPathMissing: true,
		MaxTime:            time.Minute,
		PollInterval:       200 * time.Millisecond,
	})
	if err != nil {
		return nil, fmt.Errorf("installing the CRDs in %s: %w", dir, err)
	}
	if len(crds) == 0 {
		return nil, fmt.Errorf("no CRDs in %s: run `make manifests`", dir)
	}
	c, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(crds))
	for _, crd := range crds {
		names = append(names, crd.Name)
		if err := waitEstablished(ctx, c, crd.Name); err != nil {
			return nil, err
		}
	}
	return names, nil
}

func waitEstablished(ctx context.Context, c client.Client, name string) error {
	var last apiextensionsv1.CustomResourceDefinition
	err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		if err := c.Get(ctx, client.ObjectKey{Name: name}, &last); err != nil {
			return false, nil //nolint:nilerr // retry until the timeout
		}
		for _, cond := range last.Status.Conditions {
			if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("CRD %s not Established (conditions %+v): %w", name, last.Status.Conditions, err)
	}
	return nil
}

// CreateCRDs creates crds (such as internal/istiocrd's, which this package cannot import: that
// package's tests use this one) in the cluster cfg points at, keeping those already there, and
// waits until clients can use them.
func CreateCRDs(ctx context.Context, cfg *rest.Config, crds []*apiextensionsv1.CustomResourceDefinition) error {
	c, err := NewClient(cfg)
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if err := c.Create(ctx, crd.DeepCopy()); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		if err := waitEstablished(ctx, c, crd.Name); err != nil {
			return err
		}
	}
	// Established means served; discovery, which clients map kinds through, may trail it.
	return envtest.WaitForCRDs(cfg, crds, envtest.CRDInstallOptions{MaxTime: time.Minute, PollInterval: 100 * time.Millisecond})
}
