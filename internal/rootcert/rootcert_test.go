package rootcert

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/test/harness"
)

const waitFor = 30 * time.Second

// runs makes the namespaces of each run (-count) of a test its own in the
// package's API server.
var runs atomic.Int64

// namespaceNames returns a name per base, unique to this call.
func namespaceNames(bases ...string) []string {
	n := runs.Add(1)
	out := make([]string, len(bases))
	for i, b := range bases {
		out[i] = fmt.Sprintf("%s-%d", b, n)
	}
	return out
}

// newRoot returns the PEM root of a new SelfSigned CA.
func newRoot(t *testing.T) []byte {
	t.Helper()
	b, err := ca.GenerateRoot("cluster.local")
	if err != nil {
		t.Fatal(err)
	}
	return b.RootCert
}

// start runs a Publisher on cfg until the test ends, and fails the test unless
// Run then ends cleanly.
func start(t *testing.T, cfg *rest.Config, o Options) *Publisher {
	t.Helper()
	p, err := New(kubernetes.NewForConfigOrDie(cfg), o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Error("Run did not end after its context")
		}
	})
	return p
}

func createNamespace(t *testing.T, kube kubernetes.Interface, name string, labels map[string]string) {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}
	if _, err := kube.CoreV1().Namespaces().Create(context.Background(), ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// rootConfigMap returns namespace ns's root ConfigMap, nil if there is none.
func rootConfigMap(t *testing.T, kube kubernetes.Interface, ns string) *corev1.ConfigMap {
	t.Helper()
	cm, err := kube.CoreV1().ConfigMaps(ns).Get(context.Background(), ConfigMapName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

// published reports whether ns holds the labelled root ConfigMap with roots.
func published(t *testing.T, kube kubernetes.Interface, ns string, roots []byte) bool {
	cm := rootConfigMap(t, kube, ns)
	return cm != nil && cm.Data[DataKey] == string(roots) && cm.Labels[Label] == "true"
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", waitFor, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPublishes: the root reaches every namespace (keeping what others put in
// an existing ConfigMap) but a terminating one, costs no writes at rest, follows
// a new root, and comes back after an edit or a deletion.
func TestPublishes(t *testing.T) {
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(apiConfig)
	ns := namespaceNames("pub-a", "pub-b", "pub-gone")
	pubA, pubB, pubGone := ns[0], ns[1], ns[2]
	createNamespace(t, kube, pubA, nil)
	createNamespace(t, kube, pubB, nil)
	createNamespace(t, kube, pubGone, nil)
	// Without a namespace controller (envtest) a deleted namespace stays terminating.
	if err := kube.CoreV1().Namespaces().Delete(ctx, pubGone, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	existing := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: pubB, Labels: map[string]string{"team": "b"}},
		Data:       map[string]string{"notes.txt": "kept", DataKey: "stale"},
	}
	if _, err := kube.CoreV1().ConfigMaps(pubB).Create(ctx, existing, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	counted, writes := harness.CountWrites(apiConfig)
	p := start(t, counted, Options{})
	root1 := newRoot(t)
	p.SetRoots(root1)
	for _, name := range []string{pubA, pubB, "default", "kube-system"} {
		eventually(t, "the root in "+name, func() bool { return published(t, kube, name, root1) })
	}
	if cm := rootConfigMap(t, kube, pubB); cm.Data["notes.txt"] != "kept" || cm.Labels["team"] != "b" {
		t.Errorf("the existing ConfigMap lost its other keys or labels: %v %v", cm.Data, cm.Labels)
	}
	if cm := rootConfigMap(t, kube, pubGone); cm != nil {
		t.Errorf("published to a terminating namespace")
	}

	// At rest, and when told the same root again: no writes.
	writes.Reset()
	p.SetRoots(root1)
	time.Sleep(time.Second)
	if n := writes.Count(); n != 0 {
		t.Errorf("%d writes at rest: %s", n, writes.Summary())
	}

	root2 := newRoot(t)
	p.SetRoots(root2)
	for _, name := range []string{pubA, pubB, "default"} {
		eventually(t, "the new root in "+name, func() bool { return published(t, kube, name, root2) })
	}

	cm := rootConfigMap(t, kube, pubA)
	cm.Data[DataKey] = "edited"
	if _, err := kube.CoreV1().ConfigMaps(pubA).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the edited root to be put back", func() bool { return published(t, kube, pubA, root2) })
	if err := kube.CoreV1().ConfigMaps(pubA).Delete(ctx, ConfigMapName, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the deleted root to be created again", func() bool { return published(t, kube, pubA, root2) })
}

// TestDiscoverySelectors: only namespaces the selectors match, and the
// control plane's own, get the root; a namespace that comes into scope gets
// it; one that leaves keeps its ConfigMap, and a ConfigMap of that name in a
// namespace out of scope is left alone.
func TestDiscoverySelectors(t *testing.T) {
	ctx := context.Background()
	kube := kubernetes.NewForConfigOrDie(apiConfig)
	ns := namespaceNames("sel-in", "sel-out", "sel-cp", "sel-foreign")
	selIn, selOut, selCP, selForeign := ns[0], ns[1], ns[2], ns[3]
	inScope := map[string]string{"mesh": "on"}
	createNamespace(t, kube, selIn, inScope)
	createNamespace(t, kube, selOut, nil)
	createNamespace(t, kube, selCP, nil)
	createNamespace(t, kube, selForeign, nil)
	foreign := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: selForeign},
		Data:       map[string]string{DataKey: "not ours"},
	}
	if _, err := kube.CoreV1().ConfigMaps(selForeign).Create(ctx, foreign, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	p := start(t, apiConfig, Options{
		Namespace:          selCP,
		DiscoverySelectors: []metav1.LabelSelector{{MatchLabels: inScope}},
	})
	root := newRoot(t)
	p.SetRoots(root)
	eventually(t, "the root in "+selIn, func() bool { return published(t, kube, selIn, root) })
	eventually(t, "the root in "+selCP, func() bool { return published(t, kube, selCP, root) })
	time.Sleep(500 * time.Millisecond) // the queue has long been drained
	if rootConfigMap(t, kube, selOut) != nil {
		t.Error("published to a namespace out of scope")
	}

	out, err := kube.CoreV1().Namespaces().Get(ctx, selOut, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out.Labels = inScope
	if _, err := kube.CoreV1().Namespaces().Update(ctx, out, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the root in "+selOut+" once it is in scope", func() bool { return published(t, kube, selOut, root) })

	// sel-in leaves the scope; a new root reaches only what is still in it.
	if err := p.SetDiscoverySelectors([]metav1.LabelSelector{{MatchLabels: map[string]string{"kubernetes.io/metadata.name": selOut}}}); err != nil {
		t.Fatal(err)
	}
	root2 := newRoot(t)
	p.SetRoots(root2)
	eventually(t, "the new root in "+selOut, func() bool { return published(t, kube, selOut, root2) })
	eventually(t, "the new root in "+selCP, func() bool { return published(t, kube, selCP, root2) })
	time.Sleep(500 * time.Millisecond)
	if !published(t, kube, selIn, root) {
		t.Error("the ConfigMap of a namespace that left the scope was changed or deleted")
	}
	if cm := rootConfigMap(t, kube, selForeign); cm == nil || cm.Data[DataKey] != "not ours" || cm.Labels[Label] != "" {
		t.Errorf("a ConfigMap out of scope was touched: %v", cm)
	}
}
