// Command demo is `make demo`: it starts a simulated Kubernetes cluster on this
// machine, runs the operator against it, applies the sample MeshControlPlane and
// shows the mesh converging. `demo down` (make demo-down) stops everything.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers"
	"github.com/meshplane/meshplane/test/harness"
)

const (
	clusterName  = "meshplane-demo"
	readyTimeout = 3 * time.Minute
)

func main() {
	cmd := "up"
	if len(os.Args) > 1 {
		cmd = os.Args[1]
	}
	var err error
	switch cmd {
	case "up":
		err = up(context.Background())
	case "down":
		err = down(context.Background())
	case "echo-server":
		err = echoServer(os.Args[2:])
	case "echo-client":
		err = echoClient(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q: use up or down", cmd)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type paths struct{ root, workdir, sample string }

func (p paths) bin(name string) string     { return filepath.Join(p.root, "bin", name) }
func (p paths) logFile(name string) string { return filepath.Join(p.workdir, name+".log") }
func (p paths) pidFile(name string) string { return filepath.Join(p.workdir, name+".pid") }

func demoPaths() (paths, error) {
	root, err := harness.ModuleRoot()
	if err != nil {
		return paths{}, err
	}
	return paths{
		root:    root,
		workdir: filepath.Join(root, ".demo"),
		sample:  filepath.Join(root, "config", "samples", "meshcontrolplane.yaml"),
	}, nil
}

func up(ctx context.Context) error {
	start := time.Now()
	p, err := demoPaths()
	if err != nil {
		return err
	}
	for _, bin := range []string{"operator", "meshd"} {
		if _, err := os.Stat(p.bin(bin)); err != nil {
			return fmt.Errorf("%s is missing: run `make build` (make demo does)", p.bin(bin))
		}
	}

	step("Starting a simulated cluster: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (fake node)")
	cluster, err := harness.StartSimulatedCluster(ctx, clusterName, harness.WithWorkdir(p.workdir))
	if err != nil {
		return err
	}
	c, err := harness.NewClient(cluster.Config)
	if err != nil {
		return err
	}
	detail("API server %s, CRD meshcontrolplanes.operator.meshplane.io installed", cluster.Config.Host)

	stopAll(p) // whatever a previous demo left running
	step("Starting the operator (bin/operator), logging to %s", rel(p, p.logFile("operator")))
	if err := startBackground(p, "operator", []string{"KUBECONFIG=" + cluster.Kubeconfig},
		p.bin("operator"), "--leader-elect=false", "--metrics-bind-address=0", "--health-probe-bind-address=0"); err != nil {
		return err
	}

	step("Applying %s", rel(p, p.sample))
	mcp, err := applySample(ctx, c, p.sample)
	if err != nil {
		return err
	}

	step("Waiting for the mesh to converge")
	if err := watchUntilReady(ctx, c, mcp.Name); err != nil {
		tailLog(p.logFile("operator"), 20)
		return err
	}

	step("kubectl get mcp -o wide")
	if err := printTable(ctx, cluster.Config, "/apis/operator.meshplane.io/v1alpha1/meshcontrolplanes"); err != nil {
		return err
	}
	step("Installed by the operator")
	if err := printInstalled(ctx, c, mcp.Name); err != nil {
		return err
	}
	step("Pods in %s", mcp.Spec.Namespace)
	if err := printTable(ctx, cluster.Config, "/api/v1/namespaces/"+mcp.Spec.Namespace+"/pods"); err != nil {
		return err
	}

	fmt.Printf("\nThe MeshControlPlane is Ready (%s from start).\n", time.Since(start).Round(100*time.Millisecond))

	// kwok only simulates pods, so meshd runs here, on this machine, against
	// the demo cluster and with the mesh config the operator rendered.
	meshd, err := runMeshd(ctx, p, c, cluster.Kubeconfig, mcp)
	if err != nil {
		return err
	}
	if err := runProxylessGRPC(ctx, p, c, meshd); err != nil {
		return err
	}

	fmt.Printf("\nDone in %s.\n", time.Since(start).Round(100*time.Millisecond))
	fmt.Printf("  kubeconfig:    %s\n", cluster.Kubeconfig)
	fmt.Printf("  try:           kubectl --kubeconfig %s get mcp -o yaml\n", cluster.Kubeconfig)
	fmt.Printf("  the canary:    kubectl --kubeconfig %s -n %s get pods,virtualservices,destinationrules --show-labels\n", cluster.Kubeconfig, appNamespace)
	fmt.Printf("  meshd:         curl -s http://%s/debug/syncz\n", meshd.monitoringAddr)
	fmt.Printf("  logs:          %s/*.log\n", rel(p, p.workdir))
	fmt.Printf("  stop it all:   make demo-down\n")
	return nil
}

func down(ctx context.Context) error {
	p, err := demoPaths()
	if err != nil {
		return err
	}
	stopAll(p)
	if _, err := os.Stat(filepath.Join(p.workdir, "clusters", clusterName)); errors.Is(err, os.ErrNotExist) {
		fmt.Println("No demo cluster is running.")
		return nil
	}
	// Attaches to the running cluster (same name and workdir), then deletes it.
	cluster, err := harness.StartSimulatedCluster(ctx, clusterName, harness.WithWorkdir(p.workdir))
	if err != nil {
		return err
	}
	if err := cluster.Stop(); err != nil {
		return err
	}
	fmt.Println("Stopped the operator, meshd and the demo apps, and deleted the demo cluster.")
	return nil
}

func applySample(ctx context.Context, c client.Client, path string) (*v1alpha1.MeshControlPlane, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	mcp := &v1alpha1.MeshControlPlane{}
	if err := yaml.UnmarshalStrict(data, mcp); err != nil {
		return nil, fmt.Errorf("parsing %s: %w", path, err)
	}
	existing := &v1alpha1.MeshControlPlane{}
	err = c.Get(ctx, client.ObjectKey{Name: mcp.Name}, existing)
	switch {
	case apierrors.IsNotFound(err):
		err = c.Create(ctx, mcp)
	case err == nil:
		existing.Spec = mcp.Spec
		mcp = existing
		err = c.Update(ctx, mcp)
	}
	if err != nil {
		return nil, fmt.Errorf("applying the sample: %w", err)
	}
	detail("MeshControlPlane %q created", mcp.Name)
	return mcp, nil
}

// watchUntilReady prints every condition change until Ready is True.
func watchUntilReady(ctx context.Context, c client.Client, name string) error {
	start := time.Now()
	seen := map[string]string{}
	deadline := start.Add(readyTimeout)
	for time.Now().Before(deadline) {
		mcp := &v1alpha1.MeshControlPlane{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, mcp); err != nil {
			return err
		}
		for _, cond := range mcp.Status.Conditions {
			line := fmt.Sprintf("%s=%s %s: %s", cond.Type, cond.Status, cond.Reason, cond.Message)
			if seen[cond.Type] != line {
				seen[cond.Type] = line
				detail("[%5.1fs] %s", time.Since(start).Seconds(), line)
			}
		}
		ready := meta.FindStatusCondition(mcp.Status.Conditions, v1alpha1.ConditionReady)
		if ready != nil && ready.Status == metav1.ConditionTrue && ready.ObservedGeneration == mcp.Generation {
			return nil
		}
		time.Sleep(300 * time.Millisecond)
	}
	return fmt.Errorf("the MeshControlPlane was not Ready after %s", readyTimeout)
}

// printTable prints what the API server renders for kubectl get: the same
// columns (printer columns for custom resources), without needing kubectl.
func printTable(ctx context.Context, cfg *rest.Config, path string) error {
	httpClient, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(cfg.Host, "/")+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	var table metav1.Table
	if err := json.Unmarshal(body, &table); err != nil {
		return err
	}
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	var header []string
	for _, col := range table.ColumnDefinitions {
		header = append(header, strings.ToUpper(col.Name))
	}
	fmt.Fprintln(w, strings.Join(header, "\t"))
	for _, row := range table.Rows {
		cells := make([]string, len(row.Cells))
		for i, cell := range row.Cells {
			cells[i] = fmt.Sprint(cell)
			if cell == nil {
				cells[i] = "<none>"
			}
		}
		fmt.Fprintln(w, strings.Join(cells, "\t"))
	}
	return w.Flush()
}

func printInstalled(ctx context.Context, c client.Client, name string) error {
	objs, err := controllers.ListInstalled(ctx, c, name)
	if err != nil {
		return err
	}
	lines := make([]string, 0, len(objs))
	for _, obj := range objs {
		ns := obj.GetNamespace()
		if ns == "" {
			ns = "(cluster)"
		}
		lines = append(lines, fmt.Sprintf("%s\t%s\t%s", obj.GVK.Kind, ns, obj.GetName()))
	}
	sort.Strings(lines)
	w := tabwriter.NewWriter(os.Stdout, 0, 4, 3, ' ', 0)
	fmt.Fprintln(w, "KIND\tNAMESPACE\tNAME")
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	return w.Flush()
}

func tailLog(path string, n int) {
	data, err := os.ReadFile(path)
	if err != nil {
		return
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	fmt.Fprintf(os.Stderr, "--- last lines of %s:\n%s\n", path, strings.Join(lines, "\n"))
}

func step(format string, args ...any) { fmt.Printf("\n==> "+format+"\n", args...) }

func detail(format string, args ...any) { fmt.Printf("    "+format+"\n", args...) }

func rel(p paths, path string) string {
	if r, err := filepath.Rel(p.root, path); err == nil {
		return r
	}
	return path
}
