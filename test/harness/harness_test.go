package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	meshv1alpha1 "github.com/meshplane/meshplane/api/v1alpha1"
)

const crdName = "meshcontrolplanes.operator.meshplane.io"

func TestMissingBinariesSayHowToBuildThem(t *testing.T) {
	err := checkBinaries(t.TempDir(), "etcd", "kwokctl")
	if err == nil || !strings.Contains(err.Error(), "make k8s-bins") || !strings.Contains(err.Error(), "etcd, kwokctl") {
		t.Fatalf("want an error naming etcd and kwokctl and telling to run `make k8s-bins`, got %v", err)
	}
}

func TestModuleRoot(t *testing.T) {
	root, err := ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "api", "v1alpha1")); err != nil {
		t.Fatalf("ModuleRoot() = %s, which has no api/v1alpha1: %v", root, err)
	}
}

// fakeServer answers every request with 200, or fails those whose path says so.
type fakeServer struct{ calls int }

func (f *fakeServer) RoundTrip(req *http.Request) (*http.Response, error) {
	f.calls++
	if strings.Contains(req.URL.Path, "broken") {
		return nil, errors.New("connection reset")
	}
	return &http.Response{StatusCode: http.StatusOK, Body: io.NopCloser(strings.NewReader("{}")), Request: req}, nil
}

func TestWriteCounter(t *testing.T) {
	server := &fakeServer{}
	cfg, wc := CountWrites(&rest.Config{Host: "https://example.invalid",
		WrapTransport: func(http.RoundTripper) http.RoundTripper { return server }})
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		t.Fatal(err)
	}
	do := func(method, path string) error {
		req, _ := http.NewRequest(method, "https://example.invalid"+path, nil)
		resp, err := hc.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}

	var hooked []WriteRequest
	wc.AfterWrite(2, func(w WriteRequest) { hooked = append(hooked, w) })
	wc.IgnoreWrites(IsEventWrite)

	_ = do(http.MethodGet, "/api/v1/pods")
	_ = do(http.MethodPost, "/api/v1/namespaces/a/configmaps")
	_ = do(http.MethodPost, "/api/v1/namespaces/a/events")
	_ = do(http.MethodPatch, "/apis/apps/v1/namespaces/a/deployments/d")
	if err := do(http.MethodDelete, "/api/v1/namespaces/a/broken"); err == nil {
		t.Fatal("want the transport error of the broken write")
	}
	if got := wc.Count(); got != 3 {
		t.Fatalf("Count() = %d, want 3 (GET and the Event ignored)\n%s", got, wc.Summary())
	}
	if len(hooked) != 1 || hooked[0].Verb != http.MethodPatch || hooked[0].Status != 200 {
		t.Fatalf("AfterWrite(2) hook saw %v, want the PATCH once", hooked)
	}
	ws := wc.Writes()
	if len(ws) != 3 || ws[0].String() != "#1 POST /api/v1/namespaces/a/configmaps -> 200" || ws[2].Err == nil {
		t.Fatalf("Writes() = %v", ws)
	}

	wc.Reset()
	wc.CutOffAfter(4)
	if err := do(http.MethodPut, "/api/v1/namespaces/a/configmaps/c"); err != nil {
		t.Fatalf("write #4 is before the cut-off: %v", err)
	}
	before := server.calls
	if err := do(http.MethodPut, "/api/v1/namespaces/a/configmaps/c"); !errors.Is(err, ErrWriteRefused) {
		t.Fatalf("write #5 after CutOffAfter(4): got %v, want ErrWriteRefused", err)
	}
	if server.calls != before {
		t.Fatal("a refused write reached the server")
	}
	if err := do(http.MethodGet, "/api/v1/namespaces/a/configmaps/c"); err != nil {
		t.Fatalf("reads must pass the cut-off: %v", err)
	}
	if wc.Count() != 1 || wc.Refused() != 1 {
		t.Fatalf("after Reset: Count() = %d, Refused() = %d, want 1 and 1\n%s", wc.Count(), wc.Refused(), wc.Summary())
	}
	if s := wc.Summary(); !strings.Contains(s, "1 write(s) sent, 1 refused") || !strings.Contains(s, "#5 PUT /api/v1/namespaces/a/configmaps/c: ") {
		t.Fatalf("Summary() = %s", s)
	}
}

func TestKubectlShimRefusesOtherCommands(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := kubectlShim([]string{"apply", "-f", "x.yaml"}, &out, &errOut); code == 0 || !strings.Contains(errOut.String(), "stand-in") {
		t.Fatalf("exit %d, stderr %q", code, errOut.String())
	}
}

func TestEnvtestStartsAndStopsCleanly(t *testing.T) {
	start := time.Now()
	env, cfg, err := StartEnvtest()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("envtest started in %s", time.Since(start).Round(time.Millisecond))
	stopped := false
	defer func() {
		if !stopped {
			_ = env.Stop()
		}
	}()
	children := childProcesses(t)
	if len(children) < 2 {
		t.Fatalf("want etcd and kube-apiserver among our child processes, got %v", children)
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Get(context.Background(), client.ObjectKey{Name: crdName}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
		t.Fatalf("CRD not installed: %v", err)
	}
	start = time.Now()
	stopped = true
	if err := env.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("envtest stopped in %s", time.Since(start).Round(time.Millisecond))
	if left := childProcesses(t); len(left) > 0 {
		t.Fatalf("processes left after Stop: %v", left)
	}
}

// TestSimulatedCluster is the proof that the simulated cluster runs workloads:
// a 2-replica Deployment becomes Available with Running pods on the fake node.
func TestSimulatedCluster(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	start := time.Now()
	var kwokctlLog bytes.Buffer
	cluster, err := StartSimulatedCluster(ctx, "harness", WithLog(&kwokctlLog))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("simulated cluster started in %s (workdir %s)", time.Since(start).Round(time.Millisecond), cluster.Workdir)
	// Nothing downloaded, and kwokctl saw the cluster served through the
	// kubectl stand-in (otherwise it polls for 2 minutes and warns).
	for _, bad := range []string{"Download", "not served", "level\":\"WARN", "level\":\"ERROR"} {
		if strings.Contains(kwokctlLog.String(), bad) {
			t.Errorf("kwokctl create output contains %q:\n%s", bad, kwokctlLog.String())
		}
	}
	shim := exec.Command(filepath.Join(cluster.Workdir, "harness-bin", "kubectl"), "--kubeconfig", cluster.Kubeconfig, "get", "--raw", "/version")
	shim.Env = append(os.Environ(), kubectlShimEnv+"=1")
	if out, err := shim.CombinedOutput(); err != nil || !strings.Contains(string(out), KubeVersion) {
		t.Errorf("kubectl stand-in: %v\n%s", err, out)
	}
	pids := cluster.pids()
	stopped := false
	defer func() {
		if !stopped {
			_ = cluster.Stop()
		}
	}()
	if len(pids) != 5 {
		t.Errorf("want 5 component processes (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok), got pids %v", pids)
	}

	counted, writes := CountWrites(cluster.Config)
	c, err := NewClient(counted)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Get(ctx, client.ObjectKey{Name: crdName}, &apiextensionsv1.CustomResourceDefinition{}); err != nil {
		t.Fatalf("CRD not installed: %v", err)
	}
	if err := c.List(ctx, &meshv1alpha1.MeshControlPlaneList{}); err != nil {
		t.Fatalf("MeshControlPlanes not served: %v", err)
	}

	labels := map[string]string{"app": "proof"}
	deploy := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "proof", Namespace: metav1.NamespaceDefault},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](2),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{Containers: []corev1.Container{{
					Name: "app", Image: "registry.invalid/app:v1", // never pulled: kwok runs nothing
				}}},
			},
		},
	}
	if err := c.Create(ctx, deploy); err != nil {
		t.Fatal(err)
	}
	if writes.Count() != 1 {
		t.Errorf("want exactly the Deployment's creation counted:\n%s", writes.Summary())
	}

	deadline := time.Now().Add(2 * time.Minute)
	for {
		var pods corev1.PodList
		err := c.List(ctx, &pods, client.InNamespace(metav1.NamespaceDefault), client.MatchingLabels(labels))
		if err == nil {
			err = c.Get(ctx, client.ObjectKeyFromObject(deploy), deploy)
		}
		running := 0
		for _, p := range pods.Items {
			if p.Status.Phase == corev1.PodRunning && p.Status.PodIP != "" && p.Spec.NodeName == DefaultNodeName {
				running++
			}
		}
		if err == nil && running == 2 && deploy.Status.AvailableReplicas == 2 && available(deploy) {
			t.Logf("Deployment available with 2 Running pods %s after start", time.Since(start).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Deployment not Available with 2 Running pods: err %v, status %+v, %d pods running\n%s",
				err, deploy.Status, running, cluster.logTails(20))
		}
		time.Sleep(250 * time.Millisecond)
	}

	workdir := cluster.Workdir
	start = time.Now()
	stopped = true
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("simulated cluster stopped in %s", time.Since(start).Round(time.Millisecond))
	for _, pid := range pids {
		if cluster.isOurProcess(pid) {
			t.Errorf("process %d still running after Stop", pid)
		}
	}
	if _, err := os.Stat(workdir); !os.IsNotExist(err) {
		t.Errorf("workdir %s not removed: %v", workdir, err)
	}
	if err := cluster.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// TestSimulatedClusterFailedStartCleansUp breaks the last step of the start
// (installing CRDs) and checks that nothing of the cluster is left behind.
func TestSimulatedClusterFailedStartCleansUp(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	workdir := filepath.Join(t.TempDir(), "kwok")
	_, err := StartSimulatedCluster(ctx, "broken", WithWorkdir(workdir), WithNodes(),
		func(o *clusterOptions) { o.crdDir = t.TempDir() })
	if err == nil {
		t.Fatal("want an error: the CRD directory is empty")
	}
	if !strings.Contains(err.Error(), "no CRDs in") {
		t.Fatalf("unexpected error: %v", err)
	}
	clusterDir := filepath.Join(workdir, "clusters", "broken")
	if _, err := os.Stat(clusterDir); !os.IsNotExist(err) {
		t.Errorf("cluster directory %s not removed: %v", clusterDir, err)
	}
	if left := processesMentioning(t, clusterDir); len(left) > 0 {
		t.Errorf("processes of the failed cluster left running: %v", left)
	}
}

func available(d *appsv1.Deployment) bool {
	for _, c := range d.Status.Conditions {
		if c.Type == appsv1.DeploymentAvailable && c.Status == corev1.ConditionTrue {
			return true
		}
	}
	return false
}

// childProcesses lists our live (non-zombie) child processes as "pid command".
func childProcesses(t *testing.T) []string {
	t.Helper()
	return scanProcesses(t, func(pid int, stat, _ string) bool {
		i := strings.LastIndexByte(stat, ')')
		fields := strings.Fields(stat[i+1:]) // state, ppid, ...
		return len(fields) > 1 && fields[0] != "Z" && fields[1] == strconv.Itoa(os.Getpid())
	})
}

// processesMentioning lists live processes whose command line contains s.
func processesMentioning(t *testing.T, s string) []string {
	t.Helper()
	return scanProcesses(t, func(pid int, stat, cmdline string) bool {
		i := strings.LastIndexByte(stat, ')')
		fields := strings.Fields(stat[i+1:])
		return len(fields) > 0 && fields[0] != "Z" && pid != os.Getpid() && strings.Contains(cmdline, s)
	})
}

func scanProcesses(t *testing.T, match func(pid int, stat, cmdline string) bool) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err1 := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		cmdline, err2 := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err1 != nil || err2 != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(cmdline), "\x00", " ")
		if match(pid, string(stat), cmd) {
			found = append(found, fmt.Sprintf("%d %.120s", pid, cmd))
		}
	}
	return found
}
