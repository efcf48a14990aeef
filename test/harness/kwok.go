package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// KwokNodeAnnotation marks a Node as simulated by kwok. kwok's default
// configuration (and kwokctl's kind runtimes) manage exactly the nodes carrying
// it; kwokctl's binary runtime runs its kwok controller with --manage-all-nodes,
// but the harness's nodes carry it anyway so they work under either.
const KwokNodeAnnotation = "kwok.x-k8s.io/node"

// DefaultNodeName is the fake Node StartSimulatedCluster creates unless WithNodes says otherwise.
const DefaultNodeName = "kwok-node-0"

// SimulatedCluster is a Kubernetes cluster run by kwokctl's binary runtime from
// the binaries in BinDir: real etcd, kube-apiserver, kube-controller-manager and
// kube-scheduler, and a kwok controller that plays the kubelet of fake Nodes, so
// pods are scheduled and become Running and Ready (with fake IPs) but no
// container ever runs.
type SimulatedCluster struct {
	// Name of the kwokctl cluster.
	Name string
	// Workdir is the KWOK_WORKDIR of the cluster; kwokctl keeps the cluster's
	// files (configuration, PKI, etcd data, logs/*.log, pids/*.pid) in
	// Workdir/clusters/Name.
	Workdir string
	// Kubeconfig is the path of an admin kubeconfig for the cluster (for
	// kubectl --kubeconfig, or for the operator binary in the demo).
	Kubeconfig string
	// Config is a cluster-admin rest.Config for the cluster.
	Config *rest.Config

	kwokctl     string
	env         []string
	ownsWorkdir bool
	stopOnce    sync.Once
	stopErr     error
}

// ClusterOption configures StartSimulatedCluster.
type ClusterOption func(*clusterOptions)

type clusterOptions struct {
	workdir       string
	nodes         []string
	log           io.Writer
	apiServerPort int
	crdDir        string // tests only: overrides CRDDir()
}

// WithWorkdir runs the cluster in dir (created when missing) instead of a fresh
// temporary directory. Stop then deletes the cluster but leaves dir itself. When
// a cluster of the same name is already running in dir (a demo run again),
// StartSimulatedCluster reuses it.
func WithWorkdir(dir string) ClusterOption {
	return func(o *clusterOptions) { o.workdir = dir }
}

// WithNodes creates these fake Nodes instead of the single DefaultNodeName; with
// no names, the cluster gets no Node (pods then stay Pending until AddNode).
func WithNodes(names ...string) ClusterOption {
	return func(o *clusterOptions) { o.nodes = names }
}

// WithLog copies kwokctl's output to w (it is always included in errors).
func WithLog(w io.Writer) ClusterOption {
	return func(o *clusterOptions) { o.log = w }
}

// WithAPIServerPort makes kube-apiserver listen on port (on 127.0.0.1) instead
// of a free port kwokctl picks.
func WithAPIServerPort(port int) ClusterOption {
	return func(o *clusterOptions) { o.apiServerPort = port }
}

// StartSimulatedCluster creates and starts the cluster with
// `kwokctl create cluster --runtime binary`, every component binary passed
// explicitly from BinDir (kwokctl's defaults are download URLs), then waits until
// the API server is ready, creates the fake Node(s) and waits until they are
// Ready, and installs the CRDs in config/crd/bases and waits until they are
// Established. It takes a few seconds.
//
// The components run as background processes that outlive the caller: call Stop
// (in TestMain after m.Run(), or t.Cleanup) to end them. When
// StartSimulatedCluster fails it removes whatever it started. ctx bounds the
// start only (default 5 minutes when it has no deadline).
//
// kwokctl finds kubectl on $PATH to check that the cluster is served; the
// harness gives it a stand-in (see kubectl_shim.go), so no kubectl is needed.
func StartSimulatedCluster(ctx context.Context, name string, opts ...ClusterOption) (_ *SimulatedCluster, err error) {
	o := clusterOptions{nodes: []string{DefaultNodeName}}
	for _, opt := range opts {
		opt(&o)
	}
	if _, hasDeadline := ctx.Deadline(); !hasDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
	}

	binDir, err := BinDir()
	if err != nil {
		return nil, err
	}
	crdDir := o.crdDir
	if crdDir == "" {
		if crdDir, err = CRDDir(); err != nil {
			return nil, err
		}
	}

	c := &SimulatedCluster{Name: name, kwokctl: filepath.Join(binDir, "kwokctl")}
	if o.workdir == "" {
		if c.Workdir, err = os.MkdirTemp("", "meshplane-kwok-"); err != nil {
			return nil, err
		}
		c.ownsWorkdir = true
	} else {
		if c.Workdir, err = filepath.Abs(o.workdir); err != nil {
			return nil, err
		}
		if err = os.MkdirAll(c.Workdir, 0o755); err != nil {
			return nil, err
		}
	}
	c.Kubeconfig = filepath.Join(c.clusterDir(), "kubeconfig.yaml")

	var kwokctlOut bytes.Buffer
	defer func() {
		if err == nil {
			return
		}
		// Keep what the cluster said before cleaning up destroys its logs.
		err = fmt.Errorf("starting simulated cluster %q: %w\n--- kwokctl create output:\n%s%s",
			name, err, kwokctlOut.String(), c.logTails(30))
		if stopErr := c.Stop(); stopErr != nil {
			err = errors.Join(err, fmt.Errorf("cleaning up after the failed start: %w", stopErr))
		}
	}()

	if c.env, err = kwokctlEnv(c.Workdir); err != nil {
		return nil, err
	}

	args := []string{
		"create", "cluster",
		"--name", name,
		"--runtime", "binary",
		"--etcd-binary", filepath.Join(binDir, "etcd"),
		"--kube-apiserver-binary", filepath.Join(binDir, "kube-apiserver"),
		"--kube-controller-manager-binary", filepath.Join(binDir, "kube-controller-manager"),
		"--kube-scheduler-binary", filepath.Join(binDir, "kube-scheduler"),
		"--kwok-controller-binary", filepath.Join(binDir, "kwok"),
		// By default kwokctl adds a context to ~/.kube/config; never touch it.
		"--kubeconfig=",
		// The controllers' default client rate limits only slow tests down.
		"--disable-qps-limits",
		"--quiet-pull",
	}
	if o.apiServerPort != 0 {
		args = append(args, "--kube-apiserver-port", strconv.Itoa(o.apiServerPort))
	}
	var out io.Writer = &kwokctlOut
	if o.log != nil {
		out = io.MultiWriter(&kwokctlOut, o.log)
	}
	if err = c.run(ctx, out, args...); err != nil {
		return nil, err
	}

	cfg, err := clientcmd.BuildConfigFromFlags("", c.Kubeconfig)
	if err != nil {
		return nil, fmt.Errorf("reading the kubeconfig kwokctl wrote: %w", err)
	}
	cfg.QPS, cfg.Burst = 1000, 2000
	c.Config = cfg

	if err = waitReadyz(ctx, cfg); err != nil {
		return nil, err
	}
	cl, err := NewClient(cfg)
	if err != nil {
		return nil, err
	}
	// Pods cannot be created in a namespace before the service account
	// controller has made its "default" ServiceAccount.
	if err = waitFor(ctx, "the default ServiceAccount", func(ctx context.Context) error {
		return cl.Get(ctx, client.ObjectKey{Namespace: metav1.NamespaceDefault, Name: "default"}, &corev1.ServiceAccount{})
	}); err != nil {
		return nil, err
	}
	for _, node := range o.nodes {
		if err = c.AddNode(ctx, node); err != nil {
			return nil, err
		}
	}
	if _, err = InstallCRDs(ctx, cfg, crdDir); err != nil {
		return nil, err
	}
	return c, nil
}

// Stop deletes the cluster with `kwokctl delete cluster`, makes sure none of its
// processes is left, and removes the workdir (unless it came from WithWorkdir,
// where only the cluster's own directory goes). It is safe to call more than once.
func (c *SimulatedCluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *SimulatedCluster) stop() error {
	pids := c.pids()
	var errs []error
	if _, err := os.Stat(c.clusterDir()); err == nil && c.env != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		var out bytes.Buffer
		// delete insists on a kubeconfig to remove the cluster's context from
		// (and refuses an empty path); name one inside the directory it deletes
		// so ~/.kube/config is never touched.
		unused := filepath.Join(c.clusterDir(), "no-such-kubeconfig")
		if err := c.run(ctx, &out, "delete", "cluster", "--name", c.Name, "--kubeconfig", unused); err != nil {
			errs = append(errs, fmt.Errorf("%w\n%s", err, out.String()))
		}
	}
	// kwokctl sends SIGKILL and does not wait; make sure each process is gone,
	// and end it ourselves when kwokctl did not (a start that failed halfway).
	if left := c.waitExited(pids, 20*time.Second); len(left) > 0 {
		for _, pid := range left {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if left = c.waitExited(left, 10*time.Second); len(left) > 0 {
			errs = append(errs, fmt.Errorf("processes %v of simulated cluster %q are still running", left, c.Name))
		} else {
			errs = append(errs, fmt.Errorf("kwokctl delete cluster left processes of simulated cluster %q running; killed them", c.Name))
		}
	}
	dir := c.clusterDir()
	if c.ownsWorkdir {
		dir = c.Workdir
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// AddNode creates a fake Node that kwok manages (idempotent) and waits until it
// is Ready. It has no taints, so any pod can be scheduled on it.
func (c *SimulatedCluster) AddNode(ctx context.Context, name string) error {
	cl, err := NewClient(c.Config)
	if err != nil {
		return err
	}
	node := &corev1.Node{ObjectMeta: metav1.ObjectMeta{
		Name:        name,
		Annotations: map[string]string{KwokNodeAnnotation: "fake"},
		Labels: map[string]string{
			"type":                          "kwok",
			"kubernetes.io/hostname":        name,
			"kubernetes.io/os":              "linux",
			"kubernetes.io/arch":            goruntime.GOARCH,
			"kubernetes.io/role":            "agent",
			"node-role.kubernetes.io/agent": "",
		},
	}}
	if err := cl.Create(ctx, node); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating Node %s: %w", name, err)
	}
	return waitFor(ctx, "Node "+name+" to be Ready", func(ctx context.Context) error {
		if err := cl.Get(ctx, client.ObjectKey{Name: name}, node); err != nil {
			return err
		}
		for _, cond := range node.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				return nil
			}
		}
		return fmt.Errorf("conditions %v", node.Status.Conditions)
	})
}

func (c *SimulatedCluster) clusterDir() string {
	return filepath.Join(c.Workdir, "clusters", c.Name)
}

func (c *SimulatedCluster) run(ctx context.Context, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, c.kwokctl, args...)
	cmd.Env = c.env
	cmd.Dir = c.Workdir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("kwokctl %s: %w", strings.Join(args[:2], " "), err)
	}
	return nil
}

// kwokctlEnv is the environment of kwokctl: ours without KWOK_* settings (they
// would override kwokctl's defaults) and KUBECONFIG, plus KWOK_WORKDIR and the
// kubectl stand-in first on PATH.
func kwokctlEnv(workdir string) ([]string, error) {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "KWOK_") || strings.HasPrefix(kv, "KUBECONFIG=") ||
			strings.HasPrefix(kv, "PATH=") || strings.HasPrefix(kv, kubectlShimEnv+"=")
	})
	path := os.Getenv("PATH")
	if self, err := os.Executable(); err == nil {
		shimDir := filepath.Join(workdir, "harness-bin")
		if err := os.MkdirAll(shimDir, 0o755); err != nil {
			return nil, err
		}
		link := filepath.Join(shimDir, "kubectl")
		_ = os.Remove(link)
		if err := os.Symlink(self, link); err != nil {
			return nil, err
		}
		path = shimDir + string(os.PathListSeparator) + path
		env = append(env, kubectlShimEnv+"=1")
	}
	return append(env, "PATH="+path, "KWOK_WORKDIR="+workdir), nil
}

// pids are the processes kwokctl started for the cluster, from its pid files.
func (c *SimulatedCluster) pids() []int {
	files, _ := filepath.Glob(filepath.Join(c.clusterDir(), "pids", "*.pid"))
	var pids []int
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 0 {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitExited waits until none of pids is one of the cluster's processes any
// more and returns those that still are.
func (c *SimulatedCluster) waitExited(pids []int, timeout time.Duration) []int {
	deadline := time.Now().Add(timeout)
	for {
		left := slices.DeleteFunc(slices.Clone(pids), func(pid int) bool { return !c.isOurProcess(pid) })
		if len(left) == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// isOurProcess says whether pid is alive (not a zombie) and still a component of
// this cluster, judged by its command line naming the cluster's directory, so a
// reused pid is never mistaken for one.
func (c *SimulatedCluster) isOurProcess(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) {
		if s := stat[i+2]; s == 'Z' || s == 'X' {
			return false
		}
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return false
	}
	return bytes.Contains(cmdline, []byte(c.clusterDir()+string(filepath.Separator)))
}

// logTails returns the last n lines of each component log, for error messages.
func (c *SimulatedCluster) logTails(n int) string {
	files, _ := filepath.Glob(filepath.Join(c.clusterDir(), "logs", "*.log"))
	var b strings.Builder
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil || len(data) == 0 {
			continue
		}
		lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
		if len(lines) > n {
			lines = lines[len(lines)-n:]
		}
		fmt.Fprintf(&b, "--- last lines of %s:\n%s\n", filepath.Base(f), strings.Join(lines, "\n"))
	}
	return b.String()
}

// waitReadyz waits until the API server answers /readyz with ok.
func waitReadyz(ctx context.Context, cfg *rest.Config) error {
	return waitFor(ctx, "the API server to be ready", func(context.Context) error {
		body, err := rawGet(cfg, "/readyz")
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(body)) != "ok" {
			return fmt.Errorf("readyz: %s", body)
		}
		return nil
	})
}

// waitFor polls check until it returns nil or ctx ends; the error names what
// was awaited and the last failure.
func waitFor(ctx context.Context, what string, check func(context.Context) error) error {
	var last error
	err := wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		last = check(ctx)
		return last == nil, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for %s: %w (last error: %v)", what, err, last)
	}
	return nil
}
