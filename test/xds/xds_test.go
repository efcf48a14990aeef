// Package xds_test proves meshd's data path with real xDS clients: grpc-go's
// xds:/// resolver and xds.NewGRPCServer talk to meshd's control plane (real
// discovery against a real API server, the real xDS server) over real sockets.
package xds_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshplane/meshplane/internal/controlplane"
	"github.com/meshplane/meshplane/internal/meshd"
	"github.com/meshplane/meshplane/internal/xds/server"
	"github.com/meshplane/meshplane/test/apps/echo"
	"github.com/meshplane/meshplane/test/framework"
	"github.com/meshplane/meshplane/test/harness"
)

const wait = 60 * time.Second

var (
	ctx        = context.Background()
	restConfig *rest.Config
	k8s        client.Client
)

func TestMain(m *testing.M) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting envtest:", err)
		os.Exit(1)
	}
	restConfig = cfg
	code := 1
	if k8s, err = harness.NewClient(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	_ = env.Stop()
	os.Exit(code)
}

// meshdUnderTest is meshd's control plane, run in the test process.
type meshdUnderTest struct {
	cp     *controlplane.ControlPlane
	cancel context.CancelFunc
	done   chan error
}

func startMeshd(t *testing.T, xdsAddr string, registry prometheus.Registerer) *meshdUnderTest {
	t.Helper()
	cp, err := controlplane.New(controlplane.Options{
		RestConfig: restConfig,
		XDSAddr:    xdsAddr,
		Debounce:   server.Debounce{Quiet: 20 * time.Millisecond, Max: 200 * time.Millisecond},
		Registry:   registry,
	})
	if err != nil {
		t.Fatal(err)
	}
	cp.SetMeshConfig(&meshd.MeshConfig{TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY"})
	runCtx, cancel := context.WithCancel(ctx)
	m := &meshdUnderTest{cp: cp, cancel: cancel, done: make(chan error, 1)}
	go func() { m.done <- cp.Run(runCtx) }()
	t.Cleanup(m.stop)
	framework.Poll(t, wait, "meshd ready", func() error {
		if ok, why := cp.Ready(); !ok {
			return fmt.Errorf("%s", why)
		}
		return nil
	})
	return m
}

func (m *meshdUnderTest) stop() {
	m.cancel()
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
	}
}

// syncz reads /debug/syncz through the real handler.
func (m *meshdUnderTest) syncz(t *testing.T) []server.SyncStatus {
	t.Helper()
	srv := httptest.NewServer(m.cp.DebugHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/syncz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var out []server.SyncStatus
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatalf("syncz is not a JSON list of proxies (%v): %s", err, body)
	}
	return out
}

// backend is one proxyless gRPC server of the echo Service.
type backend struct {
	name, podIP string
}

func createService(t *testing.T, ns, name string, port int, backends []backend, notReady ...string) {
	t.Helper()
	for _, obj := range []client.Object{
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}},
		&corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
				Name: "grpc-echo", Port: int32(port), Protocol: corev1.ProtocolTCP,
			}}},
		},
	} {
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatal(err)
		}
	}
	setEndpoints(t, ns, name, port, backends, notReady...)
}

// setEndpoints writes the Service's EndpointSlice, as the EndpointSlice
// controller would for pods with these IPs.
func setEndpoints(t *testing.T, ns, name string, port int, backends []backend, notReady ...string) {
	t.Helper()
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: name + "-slice", Namespace: ns,
			Labels: map[string]string{discoveryv1.LabelServiceName: name}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc-echo"), Port: ptr.To(int32(port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	for _, b := range backends {
		ready := !slices.Contains(notReady, b.name)
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{b.podIP},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready), Serving: ptr.To(ready)},
		})
	}
	writeSlice(t, slice)
}

// serveBackends starts an xDS-enabled gRPC server per backend; each gets its
// listener from meshd before it serves.
func serveBackends(t *testing.T, xdsAddr, ns string, port int, backends []backend) {
	t.Helper()
	for _, b := range backends {
		bootstrap, err := echo.Bootstrap(xdsAddr, b.name+"."+ns, map[string]string{
			"NAMESPACE": ns, "POD_NAME": b.name, "INSTANCE_IPS": b.podIP,
		})
		if err != nil {
			t.Fatal(err)
		}
		srv, err := echo.NewXDSServer(b.name, bootstrap)
		if err != nil {
			t.Fatal(err)
		}
		lis, err := echo.ListenPod(b.podIP, port)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = srv.Serve(lis) })
		t.Cleanup(func() { srv.Stop(); wg.Wait() })
	}
}

// tally makes n RPCs and counts the backends that answered; failures count as "error".
func tally(t *testing.T, call func(context.Context) (string, error), n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		who, err := call(cctx)
		cancel()
		if err != nil {
			who = "error"
		}
		seen[who]++
	}
	return seen
}

// freePort finds a port free on loopback; the backends reuse it on their own
// loopback addresses.
func freePort(t *testing.T) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	return lis.Addr().(*net.TCPAddr).Port
}

func dialEcho(t *testing.T, xdsAddr, ns string, port int) func(context.Context) (string, error) {
	t.Helper()
	bootstrap, err := echo.Bootstrap(xdsAddr, "client."+ns, map[string]string{
		"NAMESPACE": ns, "POD_NAME": "client", "INSTANCE_IPS": echo.PodIP(100),
	})
	if err != nil {
		t.Fatal(err)
	}
	conn, err := echo.Dial(fmt.Sprintf("xds:///echo.%s.svc.cluster.local:%d", ns, port), bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return func(c context.Context) (string, error) { return echo.Call(c, conn) }
}

// waitForSplit polls until 20 consecutive RPCs are answered exactly as want says.
func waitForSplit(t *testing.T, what string, call func(context.Context) (string, error), want func(map[string]int) bool) {
	t.Helper()
	framework.Poll(t, wait, what, func() error {
		if got := tally(t, call, 20); !want(got) {
			return fmt.Errorf("20 RPCs answered by %v", got)
		}
		return nil
	})
}

func only(name string) func(map[string]int) bool {
	return func(got map[string]int) bool { return got[name] == 20 }
}

func TestProxylessGRPCThroughMeshd(t *testing.T) {
	const ns = "echo-routing"
	port := freePort(t)
	a, b := backend{"echo-a", echo.PodIP(2)}, backend{"echo-b", echo.PodIP(3)}
	m := startMeshd(t, "127.0.0.1:0", nil)
	xdsAddr := m.cp.XDSAddr().String()
	createService(t, ns, "echo", port, []backend{a, b})
	serveBackends(t, xdsAddr, ns, port, []backend{a, b})
	call := dialEcho(t, xdsAddr, ns, port)

	waitForSplit(t, "both backends answer", call, func(got map[string]int) bool {
		return got["error"] == 0 && got[a.name] > 0 && got[b.name] > 0
	})

	c := backend{"echo-c", echo.PodIP(6)}
	serveBackends(t, xdsAddr, ns, port, []backend{c})
	setEndpoints(t, ns, "echo", port, []backend{a, b, c})
	waitForSplit(t, "an added endpoint receives traffic", call, func(got map[string]int) bool {
		return got["error"] == 0 && got[a.name] > 0 && got[b.name] > 0 && got[c.name] > 0
	})

	setEndpoints(t, ns, "echo", port, []backend{a, b}, b.name)
	waitForSplit(t, "traffic leaves the not-ready backend", call, only(a.name))

	setEndpoints(t, ns, "echo", port, []backend{b})
	waitForSplit(t, "traffic follows the EndpointSlice to the other backend", call, only(b.name))

	// Every proxy (three servers, one client) acknowledged what it was sent: the
	// servers ask only for listeners, the client for all four types.
	framework.Poll(t, wait, "every proxy ACKed its configuration", func() error {
		proxies := m.syncz(t)
		if len(proxies) != 4 {
			return fmt.Errorf("%d proxies in syncz: %+v", len(proxies), proxies)
		}
		for _, p := range proxies {
			if p.Type != "grpc" {
				return fmt.Errorf("proxy %s has type %q", p.ID, p.Type)
			}
			if p.Types[listenerType].Acked == "" {
				return fmt.Errorf("proxy %s has not ACKed any listener: %+v", p.ID, p.Types)
			}
			for typ, st := range p.Types {
				if st.Sent != st.Acked || st.LastNack != nil {
					return fmt.Errorf("proxy %s %s: sent %q acked %q nack %+v", p.ID, typ, st.Sent, st.Acked, st.LastNack)
				}
			}
		}
		return nil
	})
}

const listenerType = "type.googleapis.com/envoy.config.listener.v3.Listener"

func TestClientsKeepServingWhileMeshdRestarts(t *testing.T) {
	const ns = "echo-restart"
	port := freePort(t)
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	a, b := backend{"echo-a", echo.PodIP(4)}, backend{"echo-b", echo.PodIP(5)}
	first := startMeshd(t, xdsAddr, nil)
	createService(t, ns, "echo", port, []backend{a, b})
	serveBackends(t, xdsAddr, ns, port, []backend{a, b})
	call := dialEcho(t, xdsAddr, ns, port)
	waitForSplit(t, "both backends answer", call, func(got map[string]int) bool {
		return got["error"] == 0 && got[a.name] > 0 && got[b.name] > 0
	})

	first.stop()
	// With the control plane gone, the last configuration keeps serving.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if got := tally(t, call, 10); got["error"] > 0 {
			t.Fatalf("RPCs failed while meshd was down: %v", got)
		}
	}

	startMeshd(t, xdsAddr, nil)
	setEndpoints(t, ns, "echo", port, []backend{a, b}, a.name)
	waitForSplit(t, "clients resync with the restarted meshd", call, only(b.name))
}

// writeSlice creates the EndpointSlice or replaces its endpoints and ports.
func writeSlice(t *testing.T, slice *discoveryv1.EndpointSlice) {
	t.Helper()
	existing := &discoveryv1.EndpointSlice{}
	err := k8s.Get(ctx, client.ObjectKeyFromObject(slice), existing)
	if err == nil {
		existing.Endpoints, existing.Ports = slice.Endpoints, slice.Ports
		err = k8s.Update(ctx, existing)
	} else {
		err = k8s.Create(ctx, slice)
	}
	if err != nil {
		t.Fatal(err)
	}
}
