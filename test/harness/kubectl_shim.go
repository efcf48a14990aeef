package harness

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// kwokctl runs `kubectl --kubeconfig <kubeconfig> get --raw /version` (and
// /healthz) to learn when the cluster it started is served. It finds kubectl on
// $PATH and otherwise downloads it from dl.k8s.io, which cannot be reached here:
// it would then poll for two minutes and only warn. So that no test needs a
// kubectl, StartSimulatedCluster puts a directory first on kwokctl's $PATH whose
// "kubectl" is a symlink to the running executable (the test binary or the demo),
// with kubectlShimEnv set; init below then answers those requests and exits
// before anything else runs.
const kubectlShimEnv = "MESHPLANE_HARNESS_KUBECTL_SHIM"

func init() {
	if os.Getenv(kubectlShimEnv) != "1" || filepath.Base(os.Args[0]) != "kubectl" {
		return
	}
	os.Exit(kubectlShim(os.Args[1:], os.Stdout, os.Stderr))
}

// kubectlShim implements `kubectl [--kubeconfig FILE] get --raw PATH`, all that
// kwokctl's binary runtime asks of kubectl.
func kubectlShim(args []string, stdout, stderr io.Writer) int {
	var kubeconfig, raw string
	var get bool
	for i := 0; i < len(args); i++ {
		switch a := args[i]; {
		case a == "--kubeconfig" && i+1 < len(args):
			i++
			kubeconfig = args[i]
		case strings.HasPrefix(a, "--kubeconfig="):
			kubeconfig = strings.TrimPrefix(a, "--kubeconfig=")
		case a == "get":
			get = true
		case a == "--raw" && i+1 < len(args):
			i++
			raw = args[i]
		default:
			fmt.Fprintf(stderr, "meshplane test harness kubectl stand-in: unsupported argument %q in %q (only `get --raw PATH`)\n", a, args)
			return 2
		}
	}
	if !get || raw == "" || kubeconfig == "" {
		fmt.Fprintf(stderr, "meshplane test harness kubectl stand-in: want `--kubeconfig FILE get --raw PATH`, got %q\n", args)
		return 2
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	body, err := rawGet(cfg, raw)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	_, _ = stdout.Write(body)
	return 0
}

func rawGet(cfg *rest.Config, path string) ([]byte, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 5 * time.Second
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Get(strings.TrimSuffix(cfg.Host, "/") + path)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("GET %s: %s: %s", path, resp.Status, body)
	}
	return body, nil
}
