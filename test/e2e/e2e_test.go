// Package e2e runs the operator against a simulated cluster: a real
// kube-apiserver, kube-controller-manager and kube-scheduler, and kwok playing
// the kubelet of a fake Node, so Deployments really roll out and readiness is
// what Kubernetes reports, not what a test says.
package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/test/framework"
	"github.com/meshplane/meshplane/test/harness"
)

const (
	readyTimeout = 3 * time.Minute
	// idleWindow is how long a settled installation is watched for writes.
	idleWindow = 20 * time.Second
)

var (
	ctx        = context.Background()
	restConfig *rest.Config
	k8s        client.Client
)

func TestMain(m *testing.M) {
	cluster, err := harness.StartSimulatedCluster(ctx, fmt.Sprintf("meshplane-e2e-%d", os.Getpid()))
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting the simulated cluster:", err)
		os.Exit(1)
	}
	restConfig = cluster.Config
	if k8s, err = harness.NewClient(restConfig); err != nil {
		fmt.Fprintln(os.Stderr, err)
		_ = cluster.Stop()
		os.Exit(1)
	}
	code := m.Run()
	if err := cluster.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping the simulated cluster:", err)
	}
	os.Exit(code)
}

// TestSampleLifecycle walks the sample MeshControlPlane, the YAML users apply,
// through install, idle, update and uninstall.
func TestSampleLifecycle(t *testing.T) {
	counted, writes := harness.CountWrites(restConfig)
	framework.StartOperator(t, counted)
	mcp := framework.Sample(t)
	if err := k8s.Create(ctx, mcp); err != nil {
		t.Fatalf("applying the sample: %v", err)
	}
	ns := mcp.Spec.Namespace

	t.Run("install becomes Ready with every component rolled out", func(t *testing.T) {
		got := framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, "", readyTimeout)
		if got.Status.State != v1alpha1.StateHealthy {
			t.Errorf("state %q", got.Status.State)
		}
		for _, c := range got.Status.Components {
			if c.ReadyReplicas != c.DesiredReplicas || c.DesiredReplicas < 1 {
				t.Errorf("component %s reports %d/%d ready", c.Name, c.ReadyReplicas, c.DesiredReplicas)
			}
		}
		if len(got.Status.Components) != 1+len(mcp.Spec.Gateways) {
			t.Errorf("components %+v", got.Status.Components)
		}
		assertRunningPods(t, ns, "app=meshd", 1)
	})

	t.Run("a settled installation makes zero writes", func(t *testing.T) {
		// Let the last status patch and rollout bookkeeping land, then watch.
		time.Sleep(2 * time.Second)
		writes.Reset()
		time.Sleep(idleWindow)
		if n := writes.Count(); n != 0 {
			t.Fatalf("the operator made %d writes in %s of idle:\n%s", n, idleWindow, writes.Summary())
		}
	})

	t.Run("scaling meshd rolls out and stays Ready", func(t *testing.T) {
		got := &v1alpha1.MeshControlPlane{}
		if err := k8s.Get(ctx, client.ObjectKey{Name: mcp.Name}, got); err != nil {
			t.Fatal(err)
		}
		got.Spec.ControlPlane.Replicas = ptr.To[int32](2)
		if err := k8s.Update(ctx, got); err != nil {
			t.Fatal(err)
		}
		framework.Poll(t, readyTimeout, "meshd 2/2 ready and Ready=True for the new generation", func() error {
			cur := &v1alpha1.MeshControlPlane{}
			if err := k8s.Get(ctx, client.ObjectKey{Name: mcp.Name}, cur); err != nil {
				return err
			}
			if err := framework.HasCondition(cur, v1alpha1.ConditionReady, metav1.ConditionTrue, ""); err != nil {
				return err
			}
			for _, c := range cur.Status.Components {
				if c.Kind == v1alpha1.ComponentKindControlPlane && (c.ReadyReplicas != 2 || c.DesiredReplicas != 2) {
					return fmt.Errorf("meshd %d/%d", c.ReadyReplicas, c.DesiredReplicas)
				}
			}
			return nil
		})
		assertRunningPods(t, ns, "app=meshd", 2)
	})

	t.Run("uninstall leaves nothing behind", func(t *testing.T) {
		if err := k8s.Delete(ctx, mcp); err != nil {
			t.Fatal(err)
		}
		framework.Poll(t, readyTimeout, "MeshControlPlane, its objects and its namespace gone", func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: mcp.Name}, &v1alpha1.MeshControlPlane{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("MeshControlPlane still there (%v)", err)
			}
			if left := framework.Installed(t, k8s, mcp.Name); len(left) > 0 {
				return fmt.Errorf("left: %v", left)
			}
			if err := k8s.Get(ctx, client.ObjectKey{Name: ns}, &corev1.Namespace{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("namespace %s still there (%v)", ns, err)
			}
			return nil
		})
	})
}

// TestInterruptedInstallBecomesReady kills the operator midway through an
// install and shows that a fresh operator finishes it.
func TestInterruptedInstallBecomesReady(t *testing.T) {
	counted, writes := harness.CountWrites(restConfig)
	crashed := framework.StartOperator(t, counted)
	const crashAfter = 8
	writes.CutOffAfter(crashAfter)
	writes.AfterWrite(crashAfter, func(harness.WriteRequest) { crashed.Kill() })

	mcp := &v1alpha1.MeshControlPlane{
		ObjectMeta: metav1.ObjectMeta{Name: "crash"},
		Spec: v1alpha1.MeshControlPlaneSpec{
			Namespace: "crash-system",
			Gateways:  []v1alpha1.GatewaySpec{{Name: "crash-ingress"}},
		},
	}
	if err := k8s.Create(ctx, mcp); err != nil {
		t.Fatal(err)
	}
	select {
	case <-crashed.Stopped():
	case <-time.After(time.Minute):
		t.Fatalf("the operator never made %d writes:\n%s", crashAfter, writes.Summary())
	}
	deployments := &appsv1.DeploymentList{}
	if err := k8s.List(ctx, deployments, client.InNamespace("crash-system")); err != nil {
		t.Fatal(err)
	}
	if len(deployments.Items) == 2 {
		t.Fatalf("both Deployments exist: the crash came too late to interrupt the install")
	}

	framework.StartOperator(t, restConfig)
	t.Cleanup(func() {
		_ = k8s.Delete(ctx, mcp)
		framework.Poll(t, readyTimeout, "MeshControlPlane crash uninstalled", func() error {
			if err := k8s.Get(ctx, client.ObjectKey{Name: mcp.Name}, &v1alpha1.MeshControlPlane{}); !apierrors.IsNotFound(err) {
				return fmt.Errorf("still there (%v)", err)
			}
			return nil
		})
	})
	framework.WaitForCondition(t, k8s, mcp.Name, v1alpha1.ConditionReady, metav1.ConditionTrue, "", readyTimeout)
}

func assertRunningPods(t *testing.T, namespace, selector string, want int) {
	t.Helper()
	framework.Poll(t, readyTimeout, fmt.Sprintf("%d running pods %s in %s", want, selector, namespace), func() error {
		pods := &corev1.PodList{}
		kv := strings.SplitN(selector, "=", 2)
		if err := k8s.List(ctx, pods, client.InNamespace(namespace), client.MatchingLabels{kv[0]: kv[1]}); err != nil {
			return err
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp.IsZero() {
				running++
			}
		}
		if running != want {
			return fmt.Errorf("%d running of %d", running, len(pods.Items))
		}
		return nil
	})
}
