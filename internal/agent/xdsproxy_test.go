package agent

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshplane/meshplane/internal/agent/agenttest"
)

func TestParseLocalAddress(t *testing.T) {
	for _, tc := range []struct {
		in, network, address, err string
	}{
		{in: "unix:///etc/istio/proxy/XDS", network: "unix", address: "/etc/istio/proxy/XDS"},
		{in: "127.0.0.1:15010", network: "tcp", address: "127.0.0.1:15010"},
		{in: "[::1]:0", network: "tcp", address: "[::1]:0"},
		{in: "localhost:15010", network: "tcp", address: "localhost:15010"},
		{in: "0.0.0.0:15010", err: "only loopback"},
		{in: ":15010", err: "only loopback"},
		{in: "10.0.0.7:15010", err: "only loopback"},
		{in: "unix://relative/XDS", err: "must be absolute"},
		{in: "127.0.0.1:http", err: "port must be a number"},
		{in: "/etc/istio/proxy/XDS", err: "want unix:///path"},
	} {
		network, address, err := ParseLocalAddress(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%q: error %v, want one saying %q", tc.in, err, tc.err)
		case tc.err == "" && err != nil:
			t.Errorf("%q: %v", tc.in, err)
		case tc.err == "" && (network != tc.network || address != tc.address):
			t.Errorf("%q: %s %s, want %s %s", tc.in, network, address, tc.network, tc.address)
		}
	}
}

// proxyRig is an xDS proxy on a Unix socket in front of a stand-in meshd.
type proxyRig struct {
	mesh     *testMesh
	upstream *agenttest.ADSServer
	client   discoveryv3.AggregatedDiscoveryServiceClient
	logs     *logs
}

func newProxyRig(t *testing.T) *proxyRig {
	t.Helper()
	m := newTestMesh(t)
	upstream := agenttest.NewADSServer(t, m.ca.ServerTLS(t))
	logs, log := newLogs(t)
	proxy, err := NewXDSProxy(XDSProxyOptions{Upstream: upstream.Addr, RootCertFile: m.ca.RootFile, Token: FileToken(m.tokenFile), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	lis, err := ListenLocal("unix://" + filepath.Join(shortSocketDir(t), "XDS"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- proxy.Serve(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy: %v", err)
		}
	})
	// The local client has no credentials at all.
	conn, err := grpc.NewClient(grpcTarget(lis), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &proxyRig{mesh: m, upstream: upstream, client: discoveryv3.NewAggregatedDiscoveryServiceClient(conn), logs: logs}
}

func (r *proxyRig) nextUpstream(t *testing.T) *agenttest.ADSStream {
	t.Helper()
	select {
	case s := <-r.upstream.Opened():
		return s
	case <-time.After(waitFor):
		t.Fatal("no stream reached the upstream")
		return nil
	}
}

func streamCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// TestXDSProxyRelaysWithTheToken: requests and responses pass message by
// message; meshd sees the pod's current token and nothing the local client
// claimed.
func TestXDSProxyRelaysWithTheToken(t *testing.T) {
	r := newProxyRig(t)
	// A local client pretending to be someone else gets nowhere: its
	// metadata is not forwarded.
	ctx := metadata.AppendToOutgoingContext(streamCtx(t), "authorization", "Bearer forged")
	sotw, err := r.client.StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*discoveryv3.DiscoveryRequest{
		{TypeUrl: resourcev3.ListenerType, ResourceNames: []string{"echo.shop:8080"}},
		{TypeUrl: resourcev3.ClusterType, ResourceNames: []string{"outbound|8080||echo.shop.svc.cluster.local"}},
	} {
		if err := sotw.Send(req); err != nil {
			t.Fatal(err)
		}
		resp, err := sotw.Recv()
		if err != nil {
			t.Fatalf("through the proxy: %v", err)
		}
		if resp.GetTypeUrl() != req.GetTypeUrl() || resp.GetVersionInfo() != req.GetResourceNames()[0] {
			t.Errorf("response %s %q to request %s %v", resp.GetTypeUrl(), resp.GetVersionInfo(), req.GetTypeUrl(), req.GetResourceNames())
		}
	}
	up := r.nextUpstream(t)
	if want := []string{"Bearer token-1"}; !equalStrings(up.Authorization, want) {
		t.Errorf("meshd saw authorization %q, want %q", up.Authorization, want)
	}
	if got := up.Requests(); len(got) != 2 {
		t.Errorf("meshd saw %d requests, want 2: %q", len(got), got)
	}

	// The kubelet rotated the token: the next stream carries the new one.
	writeToken(t, r.mesh.tokenFile, "token-2")
	delta, err := r.client.DeltaAggregatedResources(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := delta.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ListenerType, ResourceNamesSubscribe: []string{"a", "b"}}); err != nil {
		t.Fatal(err)
	}
	resp, err := delta.Recv()
	if err != nil {
		t.Fatalf("delta through the proxy: %v", err)
	}
	if resp.GetTypeUrl() != resourcev3.ListenerType || resp.GetSystemVersionInfo() != "a,b" {
		t.Errorf("delta response %s %q", resp.GetTypeUrl(), resp.GetSystemVersionInfo())
	}
	up = r.nextUpstream(t)
	if !up.Delta {
		t.Error("a delta stream arrived at meshd as state of the world")
	}
	if want := []string{"Bearer token-2"}; !equalStrings(up.Authorization, want) {
		t.Errorf("meshd saw authorization %q on the stream opened after the rotation, want %q", up.Authorization, want)
	}
}

// TestXDSProxyEndsTheLocalStreamWhenMeshdEndsIt: the client learns why and
// reconnects.
func TestXDSProxyEndsTheLocalStreamWhenMeshdEndsIt(t *testing.T) {
	r := newProxyRig(t)
	sotw, err := r.client.StreamAggregatedResources(streamCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := sotw.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ListenerType}); err != nil {
		t.Fatal(err)
	}
	if _, err := sotw.Recv(); err != nil {
		t.Fatal(err)
	}
	r.nextUpstream(t).End(status.Error(codes.Unavailable, "meshd is shutting down"))
	_, err = sotw.Recv()
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "meshd is shutting down") {
		t.Fatalf("local stream ended with %v, want meshd's Unavailable and its reason", err)
	}
}

// TestXDSProxyEndsMeshdsStreamWhenTheClientGoes: no orphan streams on meshd.
func TestXDSProxyEndsMeshdsStreamWhenTheClientGoes(t *testing.T) {
	r := newProxyRig(t)
	for _, delta := range []bool{false, true} {
		ctx, cancel := context.WithCancel(streamCtx(t))
		if delta {
			s, err := r.client.DeltaAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType})
		} else {
			s, err := r.client.StreamAggregatedResources(ctx)
			if err != nil {
				t.Fatal(err)
			}
			_ = s.Send(&discoveryv3.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
		}
		up := r.nextUpstream(t)
		cancel()
		select {
		case <-up.Ended:
		case <-time.After(waitFor):
			t.Fatalf("delta=%t: meshd's stream still open %s after the client went", delta, waitFor)
		}
	}
}

// TestXDSProxyWithoutAToken: the client is told, and nothing reaches meshd.
func TestXDSProxyWithoutAToken(t *testing.T) {
	r := newProxyRig(t)
	writeToken(t, r.mesh.tokenFile, "")
	sotw, err := r.client.StreamAggregatedResources(streamCtx(t))
	if err == nil {
		_, err = sotw.Recv()
	}
	if err == nil || !strings.Contains(err.Error(), "service-account token") || !strings.Contains(err.Error(), "is empty") {
		t.Fatalf("error %v, want one about the empty token file", err)
	}
	if n := len(r.upstream.Streams()); n != 0 {
		t.Errorf("%d streams reached meshd without a token", n)
	}
}

// TestListenUnixReplacesAStaleSocketOnly: a socket left by a crashed agent
// is replaced; any other file is left alone.
func TestListenUnixReplacesAStaleSocketOnly(t *testing.T) {
	dir := shortSocketDir(t)
	path := filepath.Join(dir, "sock")
	stale, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = stale.Close()
	lis, err := ListenUnix(path, 0o600)
	if err != nil {
		t.Fatalf("over a stale socket: %v", err)
	}
	_ = lis.Close()

	file := filepath.Join(dir, "file")
	if err := WriteFileAtomic(file, []byte("data"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ListenUnix(file, 0o600); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("over a regular file: %v, want a refusal", err)
	}
}
