// Package framework holds what the operator's test suites share: running the
// operator in-process against a real API server and waiting on what it reports.
package framework

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers"
	"github.com/meshplane/meshplane/internal/operator"
	"github.com/meshplane/meshplane/test/harness"
)

// Operator is an operator manager running in the test process.
type Operator struct {
	cancel context.CancelFunc
	done   chan struct{} // closed when the manager has returned
	err    error         // what it returned
}

// StartOperator runs the operator against cfg, exactly as cmd/operator builds it
// (leader election, metrics and probes off), and stops it when the test ends.
func StartOperator(t testing.TB, cfg *rest.Config) *Operator {
	t.Helper()
	mgr, err := operator.NewManager(cfg, operator.Options{
		MetricsAddr:             "0",
		HealthProbeAddr:         "0",
		GracefulShutdownTimeout: 10 * time.Second,
		AllowSeveralInProcess:   true,
	})
	if err != nil {
		t.Fatalf("building the operator: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	op := &Operator{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(op.done)
		op.err = mgr.Start(ctx)
	}()
	t.Cleanup(func() { op.Stop(t) })
	return op
}

// Stop stops the operator and waits (bounded) until it has; it may be called
// more than once.
func (o *Operator) Stop(t testing.TB) {
	t.Helper()
	o.cancel()
	select {
	case <-o.done:
		if o.err != nil {
			t.Errorf("operator stopped with an error: %v", o.err)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("the operator did not stop within 30s")
	}
}

// Kill cancels the operator abruptly, as a crash would, without waiting.
func (o *Operator) Kill() { o.cancel() }

// Stopped is closed once the manager has returned.
func (o *Operator) Stopped() <-chan struct{} { return o.done }

// Sample reads config/samples/meshcontrolplane.yaml, the YAML users apply.
func Sample(t testing.TB) *v1alpha1.MeshControlPlane {
	t.Helper()
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "meshcontrolplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	mcp := &v1alpha1.MeshControlPlane{}
	if err := yaml.UnmarshalStrict(data, mcp); err != nil {
		t.Fatalf("parsing the sample: %v", err)
	}
	return mcp
}

// Poll calls check every 250ms until it returns nil or timeout passes, then
// fails the test with the last error.
func Poll(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not true after %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// WaitForCondition waits until the MeshControlPlane has the condition with the
// status (and reason, when not empty) for its current generation, and returns it.
func WaitForCondition(t testing.TB, c client.Client, name, condType string, status metav1.ConditionStatus, reason string, timeout time.Duration) *v1alpha1.MeshControlPlane {
	t.Helper()
	mcp := &v1alpha1.MeshControlPlane{}
	Poll(t, timeout, fmt.Sprintf("MeshControlPlane %s %s=%s %s", name, condType, status, reason), func() error {
		if err := c.Get(context.Background(), client.ObjectKey{Name: name}, mcp); err != nil {
			return err
		}
		return HasCondition(mcp, condType, status, reason)
	})
	return mcp
}

// HasCondition says why the MeshControlPlane does not have the condition for its
// current generation, or returns nil.
func HasCondition(mcp *v1alpha1.MeshControlPlane, condType string, status metav1.ConditionStatus, reason string) error {
	cond := meta.FindStatusCondition(mcp.Status.Conditions, condType)
	switch {
	case cond == nil:
		return fmt.Errorf("no %s condition; conditions: %s", condType, Conditions(mcp))
	case cond.ObservedGeneration != mcp.Generation:
		return fmt.Errorf("%s is for generation %d, not %d", condType, cond.ObservedGeneration, mcp.Generation)
	case cond.Status != status || (reason != "" && cond.Reason != reason):
		return fmt.Errorf("conditions: %s", Conditions(mcp))
	}
	return nil
}

// Conditions formats the conditions for failure messages.
func Conditions(mcp *v1alpha1.MeshControlPlane) string {
	out := ""
	for _, c := range mcp.Status.Conditions {
		out += fmt.Sprintf("\n  %s=%s (%s) %s", c.Type, c.Status, c.Reason, c.Message)
	}
	return out
}

// Installed lists, as "Kind namespace/name", every object installed for the
// MeshControlPlane of the given name, found by the operator's labels.
func Installed(t testing.TB, c client.Reader, name string) []string {
	t.Helper()
	objs, err := controllers.ListInstalled(context.Background(), c, name)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]string, 0, len(objs))
	for _, obj := range objs {
		out = append(out, fmt.Sprintf("%s %s/%s", obj.GVK.Kind, obj.GetNamespace(), obj.GetName()))
	}
	return out
}
