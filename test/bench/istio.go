package main

import (
	"context"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/test/harness"
)

// The route change (c) is a VirtualService for one Service, the route
// target: its HTTP route on port 80 splits 90/10 between the subsets v1 and
// v2 of a DestinationRule. The CRDs and the DestinationRule are in place
// before the first control plane starts (meshd's discovery watches only the
// Istio kinds served when it starts, and the subsets' clusters are then part
// of every client's initial config), so the measured change is the
// VirtualService alone: the routes of one virtual host in the route
// configuration "80" of every sidecar.

const (
	// routeTarget is the Service the VirtualServices route (the 5th).
	routeTarget = 4
	// istioSetupTimeout bounds the CRDs becoming established and served.
	istioSetupTimeout = 2 * time.Minute
	// apiWriteTimeout bounds one write of the Istio objects.
	apiWriteTimeout = 30 * time.Second
)

// newBenchClient is the benchmark's API client: core kinds, CRDs and Istio's
// networking kinds. Its REST mapper is lazy, so it can be made before the
// Istio CRDs exist.
func newBenchClient(cfg *rest.Config) (client.Client, error) {
	scheme := harness.NewScheme()
	if err := istionetworking.AddToScheme(scheme); err != nil {
		return nil, err
	}
	return client.New(cfg, client.Options{Scheme: scheme})
}

// installIstioCRDs installs Istio's CRDs (internal/istiocrd, as the operator
// does) and waits until they are established and in API discovery, which is
// what meshd's discovery looks them up in.
func installIstioCRDs(ctx context.Context, c client.Client, cfg *rest.Config) error {
	crds, err := istiocrd.CRDs()
	if err != nil {
		return fmt.Errorf("building Istio's CRDs: %w", err)
	}
	for _, crd := range crds {
		writeCtx, cancel := context.WithTimeout(ctx, apiWriteTimeout)
		err := c.Create(writeCtx, crd)
		cancel()
		if err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
	}
	deadline := time.Now().Add(istioSetupTimeout)
	for _, crd := range crds {
		for {
			established, err := crdEstablished(ctx, c, crd.Name)
			if err != nil {
				return fmt.Errorf("reading CRD %s: %w", crd.Name, err)
			}
			if established {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("CRD %s not established within %s", crd.Name, istioSetupTimeout)
			}
			if err := sleep(ctx, 100*time.Millisecond); err != nil {
				return err
			}
		}
	}
	if err := envtest.WaitForCRDs(cfg, crds, envtest.CRDInstallOptions{
		MaxTime: max(time.Until(deadline), time.Second), PollInterval: 100 * time.Millisecond,
	}); err != nil {
		return fmt.Errorf("Istio's CRDs established but not in API discovery within %s: %w", istioSetupTimeout, err)
	}
	return nil
}

func crdEstablished(ctx context.Context, c client.Client, name string) (bool, error) {
	readCtx, cancel := context.WithTimeout(ctx, apiWriteTimeout)
	defer cancel()
	var crd apiextensionsv1.CustomResourceDefinition
	if err := c.Get(readCtx, client.ObjectKey{Name: name}, &crd); err != nil {
		return false, err
	}
	return slices.ContainsFunc(crd.Status.Conditions, func(cond apiextensionsv1.CustomResourceDefinitionCondition) bool {
		return cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue
	}), nil
}

// subsetDestinationRule defines the subsets v1 and v2 of the route target.
// No endpoint has the labels, so the subsets' clusters are empty: the
// routes change all the same, which is what is measured.
func subsetDestinationRule(w world) *istionetworking.DestinationRule {
	return &istionetworking.DestinationRule{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-subsets", Namespace: w.namespace(routeTarget)},
		Spec: networking.DestinationRule{
			Host: w.fqdn(routeTarget),
			Subsets: []*networking.Subset{
				{Name: "v1", Labels: map[string]string{"version": "v1"}},
				{Name: "v2", Labels: map[string]string{"version": "v2"}},
			},
		},
	}
}

// createSubsets creates the route target's DestinationRule.
func createSubsets(ctx context.Context, c client.Client, w world) error {
	dr := subsetDestinationRule(w)
	writeCtx, cancel := context.WithTimeout(ctx, apiWriteTimeout)
	defer cancel()
	if err := c.Create(writeCtx, dr); err != nil {
		return fmt.Errorf("creating DestinationRule %s/%s: %w", dr.Namespace, dr.Name, err)
	}
	return nil
}

// canaryVirtualService is run's VirtualService for the route target: on
// port 80 only (the match; the Service's grpc-api route configuration "9090"
// keeps its default route), 90 % to subset v1 and 10 % to v2, 3 s timeout.
// Each run has its own name, so its routes have their own names, which the
// probe looks for.
func canaryVirtualService(w world, run int) *istionetworking.VirtualService {
	host := w.fqdn(routeTarget)
	to := func(subset string, weight int32) *networking.HTTPRouteDestination {
		return &networking.HTTPRouteDestination{
			Destination: &networking.Destination{Host: host, Subset: subset, Port: &networking.PortSelector{Number: 80}},
			Weight:      weight,
		}
	}
	return &istionetworking.VirtualService{
		ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("bench-route-%d", run), Namespace: w.namespace(routeTarget)},
		Spec: networking.VirtualService{
			Hosts: []string{host},
			Http: []*networking.HTTPRoute{{
				Match:   []*networking.HTTPMatchRequest{{Port: 80}},
				Route:   []*networking.HTTPRouteDestination{to("v1", 90), to("v2", 10)},
				Timeout: durationpb.New(3 * time.Second),
			}},
		},
	}
}

// canaryRouteName is the name meshd gives the Envoy route of vs's only HTTP
// route (internal/xds/generate: "<namespace>/<name>.http[<index>]").
func canaryRouteName(vs *istionetworking.VirtualService) string {
	return vs.Namespace + "/" + vs.Name + ".http[0]"
}

// createCanary creates run's VirtualService: the measured change.
func createCanary(ctx context.Context, c client.Client, w world, run int) error {
	vs := canaryVirtualService(w, run)
	writeCtx, cancel := context.WithTimeout(ctx, apiWriteTimeout)
	defer cancel()
	if err := c.Create(writeCtx, vs); err != nil {
		return fmt.Errorf("creating VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	return nil
}

// deleteCanary deletes run's VirtualService, if it was made. A later run's
// control plane must not find it: meshd (like Istio) applies the oldest of
// the VirtualServices for a host, so the next run's would change nothing.
func deleteCanary(ctx context.Context, c client.Client, w world, run int) error {
	vs := canaryVirtualService(w, run)
	writeCtx, cancel := context.WithTimeout(ctx, apiWriteTimeout)
	defer cancel()
	if err := c.Delete(writeCtx, vs); err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting the previous run's VirtualService %s/%s: %w", vs.Namespace, vs.Name, err)
	}
	return nil
}
