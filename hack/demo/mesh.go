package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/render"
	"github.com/meshplane/meshplane/test/apps/echo"
)

const (
	appNamespace = "demo"
	appService   = "greeter"
	appPort      = 50051
	demoCalls    = 200
)

// The two backends of the greeter Service: proxyless gRPC servers on loopback,
// known to Kubernetes by pod IPs from TEST-NET-1 (see test/apps/echo/podnet.go:
// the API server refuses loopback endpoints).
var backends = []struct{ name, podIP string }{
	{"greeter-v1", echo.PodIP(11)},
	{"greeter-v2", echo.PodIP(12)},
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
		"--secure-xds-addr", ports[2], "--webhook-addr", ports[3]); err != nil {
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
// gRPC servers and calls it through meshd's configuration.
func runProxylessGRPC(ctx context.Context, p paths, c client.Client, m *meshdProcess) error {
	step("Registering Service %s/%s (port %d, grpc) with an EndpointSlice of %d pods", appNamespace, appService, appPort, len(backends))
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
	if err := runForeground(p, []string{"GRPC_XDS_BOOTSTRAP=" + bootstrap}, "echo-client",
		"--target", target, "--calls", fmt.Sprint(demoCalls)); err != nil {
		for _, b := range backends {
			tailLog(p.logFile(b.name), 5)
		}
		tailLog(p.logFile("meshd"), 10)
		return err
	}
	return nil
}

func applyGreeter(ctx context.Context, c client.Client) error {
	objs := []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: appNamespace}},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: appService, Namespace: appNamespace},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: "grpc-greet", Port: appPort, Protocol: corev1.ProtocolTCP,
			}}},
		},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: appService + "-demo", Namespace: appNamespace,
			Labels: map[string]string{discoveryv1.LabelServiceName: appService}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc-greet"), Port: ptr.To(int32(appPort)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, b := range backends {
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{b.podIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
		})
		detail("endpoint %s (%s)", b.podIP, b.name)
	}
	for _, obj := range append(objs, slice) {
		if err := c.Create(ctx, obj); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %T %s: %w", obj, obj.GetName(), err)
		}
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

// echoClient is `demo echo-client`: calls the target and prints who answered.
func echoClient(args []string) error {
	fs := flag.NewFlagSet("echo-client", flag.ContinueOnError)
	target := fs.String("target", "", "xds:/// target")
	calls := fs.Int("calls", 100, "how many calls")
	if err := fs.Parse(args); err != nil {
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
	seen := map[string]int{}
	var failures []string
	for range *calls {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		who, err := echo.Call(cctx, conn)
		cancel()
		if err != nil {
			failures = append(failures, err.Error())
			continue
		}
		seen[who]++
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		detail("%-12s answered %3d of %d calls", n, seen[n], *calls)
	}
	if len(failures) > 0 {
		return fmt.Errorf("%d calls failed, e.g. %s", len(failures), failures[0])
	}
	if len(seen) < len(backends) {
		return fmt.Errorf("only %s answered; expected every backend", strings.Join(names, ", "))
	}
	return nil
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
