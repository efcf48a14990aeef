package controlplane

import (
	"context"
	"fmt"
	"testing"
	"time"

	networking "istio.io/api/networking/v1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/test/harness"
)

const statusInterval = 100 * time.Millisecond

// runControlPlane runs a control plane until the returned stop, which fails the test unless Run
// ends promptly and cleanly, and waits until it is ready.
func runControlPlane(t *testing.T, opts Options) (stop func()) {
	t.Helper()
	cp, stop := startControlPlane(t, opts, &meshd.MeshConfig{TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY", CA: meshd.CAConfig{Type: meshd.CASelfSigned}})
	deadline := time.Now().Add(time.Minute)
	for ok, why := cp.Ready(); !ok; ok, why = cp.Ready() {
		if time.Now().After(deadline) {
			stop()
			t.Fatalf("control plane not ready: %s", why)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return stop
}

// startControlPlane runs a control plane with cfg until the returned stop, which fails the test
// unless Run ends promptly and cleanly.
func startControlPlane(t *testing.T, opts Options, cfg *meshd.MeshConfig) (_ *ControlPlane, stop func()) {
	t.Helper()
	opts.XDSAddr = "127.0.0.1:0"
	opts.StatusInterval = statusInterval
	cp, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	cp.SetMeshConfig(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Run(ctx) }()
	return cp, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("Run did not end after its context")
		}
	}
}

// TestWriteStatus: with WriteStatus the control plane reports a VirtualService routing to a host
// no Service has in its status; without it, it writes nothing at all. Either way Run ends with
// its context.
func TestWriteStatus(t *testing.T) {
	cfg := apiConfig
	scheme := harness.NewScheme()
	if err := istionetworking.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The API server is the package's: a namespace of this run's own.
	shop := fmt.Sprintf("shop-%d", namesUsed.Add(1))
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: shop}}); err != nil {
		t.Fatal(err)
	}
	vs := &istionetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "lost", Namespace: shop}}
	vs.Spec.Hosts = []string{"lost." + shop + ".example.com"}
	vs.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "nowhere"}}}}}
	if err := c.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}

	counted, writes := harness.CountWrites(cfg)
	stop := runControlPlane(t, Options{RestConfig: counted})
	time.Sleep(10 * statusInterval) // ample time for a reporter, were one running
	stop()
	if writes.Count() != 0 {
		t.Errorf("without WriteStatus: %s", writes.Summary())
	}

	stop = runControlPlane(t, Options{RestConfig: cfg, WriteStatus: true})
	defer stop()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if err := c.Get(ctx, client.ObjectKeyFromObject(vs), vs); err != nil {
			t.Fatal(err)
		}
		if m := vs.Status.ValidationMessages; len(m) == 1 && m[0].GetType().GetCode() == "MP1002" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no MP1002 in the status: %s", fmt.Sprint(&vs.Status))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
