package main

import (
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/render"
	"github.com/meshplane/meshplane/test/apps/echo"
	"github.com/meshplane/meshplane/test/harness"
)

const (
	appNamespace = "demo"
	appService   = "greeter"
	appPort      = 50051
	demoCalls    = 200
	canaryCalls  = 500
	// roundRobinWeights is what the Service alone gets: round robin.
	roundRobinWeights = "greeter-v1=50,greeter-v2=50"
	// canaryWeights are the weights hack/demo/canary.yaml gives the subsets,
	// by the backend answering in each.
	canaryWeights = "greeter-v1=90,greeter-v2=10"
	// demoScheduler is the scheduler the greeter pods name. None runs under
	// that name: the demo schedules them and plays their kubelet (startPod).
	demoScheduler = "meshplane-demo"
)

// canaryYAML is Istio config as users write it (networking.istio.io/v1alpha3),
// applied unchanged.
//
//go:embed canary.yaml
var canaryYAML string

// The two backends of the greeter Service: proxyless gRPC servers on loopback,
// known to Kubernetes by pod IPs from TEST-NET-1 (see test/apps/echo/podnet.go:
// the API server refuses loopback endpoints), with the version label the
// canary's subsets select.
var backends = []struct{ name, podIP, version string }{
	{"greeter-v1", echo.PodIP(11), "v1"},
	{"greeter-v2", echo.PodIP(12), "v2"},
}

type meshdProcess struct{ xdsAddr, monitoringAddr string }

// runMeshd starts bin/meshd against the demo cluster, with the mesh config
// from the ConfigMap the operator installed, and waits until it is ready.
func runMeshd(ctx context.Context, p paths, c client.Client, kubeconfig string, mcp *v1alpha1.MeshControlPlane) (*meshdProcess, error) {
	step("Starting meshd (bin/meshd) on this machine against the demo cluster")
	cm := &corev1.ConfigMap{}
	key := client.ObjectKey{Namespace: mcp.Spec.Namespace, Name: render.MeshdName(mcp.Revision()) + "-mesh-config"}
	if err := c.Get(ctx, key, cm); err != nil {
		return nil, fmt.Errorf("reading the mesh config the operator installed: %w", err)
	}
	meshConfig := filepath.Join(p.workdir, "mesh.yaml")
	if err := os.WriteFile(meshConfig, []byte(cm.Data["mesh.yaml"]), 0o644); err != nil {
		return nil, err
	}
	detail("mesh config from ConfigMap %s, written to %s", key, rel(p, meshConfig))

	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	m := &meshdProcess{xdsAddr: ports[0], monitoringAddr: ports[1]}
	if err := startBackground(p, "meshd", nil, p.bin("meshd"),
		"--kubeconfig", kubeconfig, "--mesh-config", meshConfig, "--revision", mcp.Revision(),
		"--xds-addr", m.xdsAddr, "--monitoring-addr", m.monitoringAddr,
		"--secure-xds-addr", ports[2], "--webhook-addr", ports[3],
		// meshd's CA reads the Secret the operator created in the control-plane namespace.
		"--namespace", mcp.Spec.Namespace); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, "meshd /ready", func() error {
		resp, err := http.Get("http://" + m.monitoringAddr + "/ready")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("/ready: %s", resp.Status)
		}
		return nil
	}); err != nil {
		tailLog(p.logFile("meshd"), 20)
		return nil, err
	}
	detail("meshd ready: xDS on %s, monitoring on %s", m.xdsAddr, m.monitoringAddr)
	return m, nil
}

// runProxylessGRPC registers the greeter Service, starts its two xDS-enabled
// gRPC servers and calls it through meshd's configuration, first as it is
// (round robin), then with the canary's Istio config.
func runProxylessGRPC(ctx context.Context, p paths, c client.Client, m *meshdProcess) error {
	step("Registering Service %s/%s (port %d, grpc, selector app=%s) and its %d pods", appNamespace, appService, appPort, appService, len(backends))
	if err := applyGreeter(ctx, c); err != nil {
		return err
	}

	step("Starting the greeter backends: proxyless gRPC servers whose listeners come from meshd")
	for _, b := range backends {
		bootstrap, err := writeBootstrap(p, b.name, m.xdsAddr, b.podIP)
		if err != nil {
			return err
		}
		if err := startBackground(p, b.name, []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap}, p.bin("demo"),
			"echo-server", "--name", b.name, "--pod-ip", b.podIP, "--port", fmt.Sprint(appPort)); err != nil {
			return err
		}
	}

	target := fmt.Sprintf("xds:///%s.%s.svc.cluster.local:%d", appService, appNamespace, appPort)
	step("Calling %s %d times from a proxyless gRPC client", target, demoCalls)
	bootstrap, err := writeBootstrap(p, "greeter-client", m.xdsAddr, echo.PodIP(20))
	if err != nil {
		return err
	}
	callGreeter := func(args ...string) error {
		err := runForeground(p, []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap}, append([]string{"echo-client", "--target", target}, args...)...)
		if err != nil {
			for _, b := range backends {
				tailLog(p.logFile(b.name), 5)
			}
			tailLog(p.logFile("meshd"), 10)
		}
		return err
	}
	if err := callGreeter("--calls", fmt.Sprint(demoCalls), "--weights", roundRobinWeights, "--label", "round robin"); err != nil {
		return err
	}

	step("Canary: applying hack/demo/canary.yaml, subsets v1/v2 and a VirtualService sending 90%% to v1, 10%% to v2")
	for _, line := range strings.Split(strings.TrimRight(canaryYAML, "\n"), "\n") {
		detail("  %s", line)
	}
	if err := applyYAML(ctx, c, canaryYAML); err != nil {
		return err
	}
	step("Calling %s %d times once the client's traffic follows the VirtualService", target, canaryCalls)
	return callGreeter("--calls", fmt.Sprint(canaryCalls), "--weights", canaryWeights, "--label", "canary 90/10")
}

// applyGreeter creates the namespace, the greeter Service and its pods, and
// waits until the EndpointSlice controller lists the pods as the Service's
// ready endpoints, each naming its pod: that is how meshd learns an
// endpoint's labels, which the canary's subsets select on.
func applyGreeter(ctx context.Context, c client.Client) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: appService, Namespace: appNamespace},
			Spec: corev1.ServiceSpec{
				Selector: map[string]string{"app": appService},
				Ports: []corev1.ServicePort{{
					Name: "grpc-greet", Port: appPort, Protocol: corev1.ProtocolTCP,
				}},
			},
		},
	}
	for _, obj := range objs {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
	}
	for _, b := range backends {
		if err := startPod(ctx, c, b.name, b.podIP, b.version); err != nil {
			return err
		}
	}
	var lines []string
	err := waitFor(ctx, time.Minute, "the EndpointSlice controller listing both pods", func() error {
		list := &discoveryv1.EndpointSliceList{}
		if err := c.List(ctx, list, client.InNamespace(appNamespace), client.MatchingLabels{discoveryv1.LabelServiceName: appService}); err != nil {
			return err
		}
		lines = lines[:0]
		for _, b := range backends {
			ep := findEndpoint(list.Items, b.podIP)
			if ep == nil || !ptr.Deref(ep.Conditions.Ready, false) || ep.TargetRef == nil || ep.TargetRef.Name != b.name {
				return fmt.Errorf("no ready endpoint %s naming pod %s yet", b.podIP, b.name)
			}
			lines = append(lines, fmt.Sprintf("endpoint %s → pod %s (version=%s), ready", b.podIP, b.name, b.version))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range lines {
		detail("%s", l)
	}
	return nil
}

func findEndpoint(slices []discoveryv1.EndpointSlice, ip string) *discoveryv1.Endpoint {
	for i := range slices {
		for j, ep := range slices[i].Endpoints {
			if len(ep.Addresses) > 0 && ep.Addresses[0] == ip {
				return &slices[i].Endpoints[j]
			}
		}
	}
	return nil
}

// startPod creates a greeter pod and plays its kubelet. kwok would run it with
// an IP from its own pod range, but the demo's backends listen on the loopback
// image of a TEST-NET-1 address (test/apps/echo/podnet.go). So the pod names a
// scheduler nobody runs, the demo writes its status (Running, ready, that
// address) and then binds it to the fake node; kwok leaves a running pod that
// has an IP as it is. A pod left by an earlier demo is kept.
func startPod(ctx context.Context, c client.Client, name, ip, version string) error {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNamespace, Labels: map[string]string{"app": appService, "version": version}},
		Spec: corev1.PodSpec{
			SchedulerName: demoScheduler,
			Containers:    []corev1.Container{{Name: "greeter", Image: "example.com/meshplane/greeter:" + version}},
		},
	}
	if err := c.Create(ctx, pod); apierrors.IsAlreadyExists(err) {
		return nil
	} else if err != nil {
		return fmt.Errorf("creating pod %s: %w", name, err)
	}
	now := metav1.Now()
	ready := func(t corev1.PodConditionType) corev1.PodCondition {
		return corev1.PodCondition{Type: t, Status: corev1.ConditionTrue, LastTransitionTime: now}
	}
	pod.Status = corev1.PodStatus{
		Phase:      corev1.PodRunning,
		PodIP:      ip,
		PodIPs:     []corev1.PodIP{{IP: ip}},
		StartTime:  &now,
		Conditions: []corev1.PodCondition{ready(corev1.PodInitialized), ready(corev1.ContainersReady), ready(corev1.PodReady)},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name: "greeter", Image: pod.Spec.Containers[0].Image, Ready: true, Started: ptr.To(true),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	if err := c.Status().Update(ctx, pod); err != nil {
		return fmt.Errorf("setting the status of pod %s: %w", name, err)
	}
	binding := &corev1.Binding{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: appNamespace},
		Target:     corev1.ObjectReference{Kind: "Node", Name: harness.DefaultNodeName},
	}
	if err := c.SubResource("binding").Create(ctx, pod, binding); err != nil {
		return fmt.Errorf("binding pod %s to node %s: %w", name, harness.DefaultNodeName, err)
	}
	return nil
}

// applyYAML creates or replaces every object of a multi-document YAML, in
// the apiVersion each names.
func applyYAML(ctx context.Context, c client.Client, docs string) error {
	for _, doc := range strings.Split(docs, "\n---\n") {
		obj := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
			return err
		}
		existing := obj.DeepCopy()
		err := c.Get(ctx, client.ObjectKeyFromObject(obj), existing)
		switch {
		case apierrors.IsNotFound(err):
			err = c.Create(ctx, obj)
		case err == nil:
			obj.SetResourceVersion(existing.GetResourceVersion())
			err = c.Update(ctx, obj)
		}
		if err != nil {
			return fmt.Errorf("applying %s %s: %w", obj.GetKind(), obj.GetName(), err)
		}
		detail("%s %s/%s applied (%s)", obj.GetKind(), obj.GetNamespace(), obj.GetName(), obj.GetAPIVersion())
	}
	return nil
}

func writeBootstrap(p paths, name, xdsAddr, podIP string) (string, error) {
	data, err := echo.Bootstrap(xdsAddr, name+"."+appNamespace, map[string]string{
		"NAMESPACE": appNamespace, "POD_NAME": name, "INSTANCE_IPS": podIP,
	})
	if err != nil {
		return "", err
	}
	path := filepath.Join(p.workdir, "bootstrap-"+name+".json")
	return path, os.WriteFile(path, data, 0o644)
}

// runForeground runs a demo subcommand with its output on ours.
func runForeground(p paths, env []string, args ...string) error {
	cmd := exec.Command(p.bin("demo"), args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return cmd.Run()
}

// echoServer is `demo echo-server`: one backend, bootstrap from GRPC_XDS_BOOTSTRAP.
func echoServer(args []string) error {
	fs := flag.NewFlagSet("echo-server", flag.ContinueOnError)
	name := fs.String("name", "", "backend name, answered to every call")
	podIP := fs.String("pod-ip", "", "the pod IP Kubernetes knows this backend by")
	port := fs.Int("port", 0, "port")
	if err := fs.Parse(args); err != nil {
		return err
	}
	srv, err := echo.NewXDSServer(*name, nil)
	if err != nil {
		return err
	}
	lis, err := echo.ListenPod(*podIP, *port)
	if err != nil {
		return err
	}
	fmt.Printf("%s serving on %s (loopback %s) once meshd sends its listener\n", *name, lis.Addr(), echo.Loopback(lis.Addr().String()))
	return srv.Serve(lis)
}

// echoClient is `demo echo-client`: waits until its calls to the target are
// answered as --weights says (bounded), then makes --calls calls, prints who
// answered them and checks the split.
func echoClient(args []string) error {
	fs := flag.NewFlagSet("echo-client", flag.ContinueOnError)
	target := fs.String("target", "", "xds:/// target")
	calls := fs.Int("calls", 100, "how many calls")
	weightsFlag := fs.String("weights", "", "expected share per backend in percent, e.g. greeter-v1=90,greeter-v2=10")
	label := fs.String("label", "split", "what the printed split is called")
	if err := fs.Parse(args); err != nil {
		return err
	}
	weights, err := parseWeights(*weightsFlag)
	if err != nil {
		return err
	}
	conn, err := echo.Dial(*target, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx := context.Background()
	start := time.Now()
	if err := waitFor(ctx, 30*time.Second, "a first answer", func() error {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := echo.Call(cctx, conn)
		return err
	}); err != nil {
		return err
	}
	detail("first answer after %s (xDS resolution, listener, route, cluster, endpoints)", time.Since(start).Round(time.Millisecond))

	// A backend serves once meshd has sent it its listener, and the config
	// the client holds may predate the last change: wait until batches of
	// calls follow the weights. Round robin answers exactly 50 of 100 from
	// each backend; a 90/10 split keeps v2 within 15 pp of 10% with
	// probability 1 - 1e-5.
	const batch, settleTolerance = 100, 15.0
	start = time.Now()
	var last map[string]int
	if err := waitFor(ctx, time.Minute, "calls following "+*weightsFlag, func() error {
		seen, failures := callMany(ctx, conn, batch)
		last = seen
		if len(failures) > 0 {
			return fmt.Errorf("%d of %d calls failed, e.g. %s", len(failures), batch, failures[0])
		}
		if off := offWeights(seen, batch, weights, settleTolerance); off != "" {
			return fmt.Errorf("last %d calls: %s", batch, off)
		}
		return nil
	}); err != nil {
		return err
	}
	detail("calls follow %s after %s more (last %d calls: %s)", *weightsFlag, time.Since(start).Round(time.Millisecond), batch, formatSplit(last, batch))

	seen, failures := callMany(ctx, conn, *calls)
	detail("%s: %s", *label, formatSplit(seen, *calls))
	if len(failures) > 0 {
		return fmt.Errorf("%d calls failed, e.g. %s", len(failures), failures[0])
	}
	// Binomial: at 500 calls a 10% share has a standard deviation of 1.3 pp,
	// and 6 pp is 4.5 of them.
	if off := offWeights(seen, *calls, weights, 6); off != "" {
		return fmt.Errorf("the calls do not follow %s: %s", *weightsFlag, off)
	}
	return nil
}

// callMany makes n calls and counts who answered; failures are listed.
func callMany(ctx context.Context, conn *grpc.ClientConn, n int) (map[string]int, []string) {
	seen := map[string]int{}
	var failures []string
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		who, err := echo.Call(cctx, conn)
		cancel()
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		seen[who]++
	}
	return seen, failures
}

// parseWeights reads "name=percent,...".
func parseWeights(s string) (map[string]float64, error) {
	if s == "" {
		return nil, errors.New("--weights is required")
	}
	out := map[string]float64{}
	for _, kv := range strings.Split(s, ",") {
		name, pct, ok := strings.Cut(kv, "=")
		w, err := strconv.ParseFloat(pct, 64)
		if !ok || err != nil || name == "" {
			return nil, fmt.Errorf("--weights: %q is not name=percent", kv)
		}
		out[name] = w
	}
	return out, nil
}

// offWeights says which backends' shares of n calls are more than tolerance
// percentage points from their weights, and who answered unexpectedly; ""
// when none.
func offWeights(seen map[string]int, n int, weights map[string]float64, tolerance float64) string {
	names := sortedNames(seen)
	for name := range weights {
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	var off []string
	for _, name := range names {
		share := 100 * float64(seen[name]) / float64(n)
		if math.Abs(share-weights[name]) > tolerance {
			off = append(off, fmt.Sprintf("%s %.1f%% (want %.0f%% ± %.0f pp)", name, share, weights[name], tolerance))
		}
	}
	return strings.Join(off, ", ")
}

// formatSplit prints "greeter-v1 451 (90.2%), greeter-v2 49 (9.8%)".
func formatSplit(seen map[string]int, n int) string {
	var parts []string
	for _, name := range sortedNames(seen) {
		parts = append(parts, fmt.Sprintf("%s %d (%.1f%%)", name, seen[name], 100*float64(seen[name])/float64(n)))
	}
	return strings.Join(parts, ", ")
}

func sortedNames(seen map[string]int) []string {
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func waitFor(ctx context.Context, timeout time.Duration, what string, check func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: not after %s: %w", what, timeout, errors.Join(err, ctx.Err()))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func freePorts(n int) ([]string, error) {
	var out []string
	var listeners []net.Listener
	defer func() {
		for _, l := range listeners {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		out = append(out, l.Addr().String())
	}
	return out, nil
}
