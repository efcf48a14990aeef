package grpcinterop

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	sotwv3 "github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/xds"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds/generate"
)

// controlPlane is a go-control-plane ADS server, with its snapshot cache in
// ADS mode, that generates each proxy's snapshot on demand: from the listener
// names the proxy subscribes to, with generate.GenerateGRPC. (In ADS mode a
// state-of-the-world request naming only some of a type's resources is never
// answered, see /work/shared/reference/versions.md, so a full
// generate.Generate snapshot would leave grpc-go waiting.)
type controlPlane struct {
	addr  string
	cache cachev3.SnapshotCache

	mu      sync.Mutex
	world   *model.World
	proxies map[string]*model.Proxy // by node id
	names   map[string][]string     // listener names each node subscribed to
	nodes   map[int64]string        // node id of each stream
	version int
	nacks   []string
	errs    []error
}

func startControlPlane(t *testing.T) *controlPlane {
	t.Helper()
	cp := &controlPlane{
		cache:   cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil),
		proxies: map[string]*model.Proxy{},
		names:   map[string][]string{},
		nodes:   map[int64]string{},
	}
	ctx, cancel := context.WithCancel(context.Background())
	sotw := sotwv3.NewServer(ctx, cp.cache, cp)
	gs := grpc.NewServer()
	discoverygrpc.RegisterAggregatedDiscoveryServiceServer(gs, ads{sotw: sotw})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cp.addr = lis.Addr().String()
	go gs.Serve(lis)
	t.Cleanup(func() { gs.Stop(); cancel() })
	return cp
}

// ads serves the aggregated stream with go-control-plane's state-of-the-world
// server. (pkg/server/v3 would do this, but it imports a module the main
// go.sum does not list yet.)
type ads struct {
	discoverygrpc.UnimplementedAggregatedDiscoveryServiceServer
	sotw sotwv3.Server
}

func (a ads) StreamAggregatedResources(s discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return a.sotw.StreamHandler(s, resourcev3.AnyType)
}

// OnStreamRequest records NACKs and, when a node changes the listeners it
// subscribes to, regenerates its snapshot before the cache sees the request.
func (cp *controlPlane) OnStreamRequest(stream int64, req *discoverygrpc.DiscoveryRequest) error {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	if id := req.GetNode().GetId(); id != "" {
		cp.nodes[stream] = id
	}
	node := cp.nodes[stream]
	if d := req.GetErrorDetail(); d != nil {
		cp.nacks = append(cp.nacks, fmt.Sprintf("%s: %s %v: %s", node, req.GetTypeUrl(), req.GetResourceNames(), d.GetMessage()))
	}
	if req.GetTypeUrl() == resourcev3.ListenerType && !slices.Equal(cp.names[node], req.GetResourceNames()) {
		cp.names[node] = slices.Clone(req.GetResourceNames())
		cp.regenerate(node)
	}
	return nil
}

func (cp *controlPlane) OnStreamOpen(context.Context, int64, string) error { return nil }
func (cp *controlPlane) OnStreamClosed(int64, *corev3.Node)                {}
func (cp *controlPlane) OnStreamResponse(context.Context, int64, *discoverygrpc.DiscoveryRequest, *discoverygrpc.DiscoveryResponse) {
}

// regenerate sets node's snapshot from the world and its subscriptions. cp.mu is held.
func (cp *controlPlane) regenerate(node string) {
	proxy, ok := cp.proxies[node]
	if !ok || cp.world == nil {
		return
	}
	res, err := generate.GenerateGRPC(cp.world, proxy, cp.names[node])
	if err == nil {
		err = generate.CheckReferences(res)
	}
	if err != nil {
		cp.errs = append(cp.errs, fmt.Errorf("%s: %w", node, err))
		return
	}
	cp.version++
	snap, err := cachev3.NewSnapshot(strconv.Itoa(cp.version), res)
	if err == nil {
		err = cp.cache.SetSnapshot(context.Background(), node, snap)
	}
	if err != nil {
		cp.errs = append(cp.errs, fmt.Errorf("%s: %w", node, err))
	}
}

// register makes proxy known to the control plane.
func (cp *controlPlane) register(proxy *model.Proxy) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.proxies[proxy.ID] = proxy
	cp.regenerate(proxy.ID)
}

// setWorld replaces the world and regenerates every known proxy's snapshot.
func (cp *controlPlane) setWorld(world *model.World) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.world = world
	for id := range cp.proxies {
		cp.regenerate(id)
	}
}

func (cp *controlPlane) checkNoNACK(t *testing.T) {
	t.Helper()
	cp.mu.Lock()
	defer cp.mu.Unlock()
	for _, n := range cp.nacks {
		t.Errorf("NACK: %s", n)
	}
	for _, err := range cp.errs {
		t.Errorf("control plane: %v", err)
	}
}

func (cp *controlPlane) bootstrap(nodeID string) []byte {
	return fmt.Appendf(nil, `{
  "xds_servers": [{"server_uri": %q, "channel_creds": [{"type": "insecure"}], "server_features": ["xds_v3"]}],
  "node": {"id": %q},
  "server_listener_resource_name_template": %q
}`, cp.addr, nodeID, generate.GRPCServerListenerTemplate)
}

// backend is an xds.NewGRPCServer serving the health service.
type backend struct {
	addr    *net.TCPAddr
	serving chan struct{}

	mu      sync.Mutex
	lastErr error // why it last reported not serving
}

func startBackend(t *testing.T, cp *controlPlane, nodeID, ip string) *backend {
	t.Helper()
	lis, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s: %v", ip, err)
	}
	b := &backend{addr: lis.Addr().(*net.TCPAddr), serving: make(chan struct{})}
	var once sync.Once
	srv, err := xds.NewGRPCServer(
		grpc.Creds(insecure.NewCredentials()),
		xds.BootstrapContentsForTesting(cp.bootstrap(nodeID)),
		xds.ServingModeCallback(func(addr net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				once.Do(func() { close(b.serving) })
			} else if args.Err != nil {
				b.mu.Lock()
				b.lastErr = args.Err
				b.mu.Unlock()
			}
		}),
	)
	if err != nil {
		t.Fatal(err)
	}
	healthpb.RegisterHealthServer(srv, health.NewServer())
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return b
}

func greeterWorld(backends []*backend, ready []bool) *model.World {
	svc := &model.Service{
		Name: "greeter", Namespace: "shop", Hostname: "greeter.shop.svc.cluster.local",
		ClusterIP: "10.96.0.30",
		Ports:     []model.ServicePort{{Name: "grpc", Port: 50051, Protocol: model.ProtocolGRPC}},
	}
	for i, b := range backends {
		svc.Endpoints = append(svc.Endpoints, &model.Endpoint{
			Address: b.addr.IP.String(),
			Ports:   map[string]int32{"grpc": int32(b.addr.Port)},
			Ready:   ready[i], Serving: ready[i],
			Pod:      "greeter-" + strconv.Itoa(i),
			Locality: model.Locality{Region: "r", Zone: "z"},
		})
	}
	return model.NewWorld(model.MeshConfig{}, []*model.Service{svc}, nil)
}

// TestProxylessGRPC: two xds.NewGRPCServer backends get their inbound
// listeners from generated configuration and serve; a grpc-go client dialling
// xds:///<host>:<port> under every name the generator offers reaches both;
// marking one endpoint not ready moves all traffic to the other. No resource
// is NACKed.
func TestProxylessGRPC(t *testing.T) {
	if testing.Short() {
		t.Skip("starts gRPC servers")
	}
	cp := startControlPlane(t)
	backends := []*backend{
		startBackend(t, cp, "greeter-0.shop", "127.0.0.1"),
		startBackend(t, cp, "greeter-1.shop", "127.0.0.2"),
	}
	cp.setWorld(greeterWorld(backends, []bool{true, true}))
	for i, b := range backends {
		cp.register(&model.Proxy{ID: "greeter-" + strconv.Itoa(i) + ".shop", Type: model.ProxyGRPC, Namespace: "shop", IP: b.addr.IP.String()})
	}
	client := &model.Proxy{ID: "client-0.shop", Type: model.ProxyGRPC, Namespace: "shop", IP: "127.0.0.3"}
	cp.register(client)

	for i, b := range backends {
		select {
		case <-b.serving:
		case <-time.After(20 * time.Second):
			cp.checkNoNACK(t)
			b.mu.Lock()
			defer b.mu.Unlock()
			t.Fatalf("backend %d (%s) not serving after 20s: %v", i, b.addr, b.lastErr)
		}
	}

	resolver, err := xds.NewXDSResolverWithConfigForTesting(cp.bootstrap(client.ID))
	if err != nil {
		t.Fatal(err)
	}
	for _, target := range []string{
		"greeter.shop.svc.cluster.local:50051",
		"greeter.shop.svc:50051",
		"greeter.shop:50051",
		"greeter:50051",
	} {
		t.Run(target, func(t *testing.T) {
			conn, err := grpc.NewClient("xds:///"+target, grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			seen := callUntil(t, conn, 20*time.Second, func(seen map[string]int) bool { return len(seen) == 2 })
			t.Logf("%s: %v", target, seen)
		})
	}
	cp.checkNoNACK(t)

	// Endpoint 1 goes not ready: all traffic moves to endpoint 0.
	conn, err := grpc.NewClient("xds:///greeter.shop.svc.cluster.local:50051", grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithResolvers(resolver))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	callUntil(t, conn, 20*time.Second, func(seen map[string]int) bool { return len(seen) == 2 })
	cp.setWorld(greeterWorld(backends, []bool{true, false}))
	only0 := backends[0].addr.String()
	deadline := time.Now().Add(20 * time.Second)
	for {
		seen := callN(t, conn, 20)
		if len(seen) == 1 && seen[only0] == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("traffic still reaches the not-ready endpoint: %v", seen)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cp.checkNoNACK(t)
}

// callUntil makes calls until done(backend address → count) or timeout.
func callUntil(t *testing.T, conn *grpc.ClientConn, timeout time.Duration, done func(map[string]int) bool) map[string]int {
	t.Helper()
	seen := map[string]int{}
	deadline := time.Now().Add(timeout)
	var lastErr error
	for !done(seen) {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: answered by %v; last error: %v", timeout, seen, lastErr)
		}
		if addr, err := call(conn); err != nil {
			lastErr = err
			time.Sleep(20 * time.Millisecond)
		} else {
			seen[addr]++
		}
	}
	return seen
}

func callN(t *testing.T, conn *grpc.ClientConn, n int) map[string]int {
	t.Helper()
	seen := map[string]int{}
	for range n {
		addr, err := call(conn)
		if err != nil {
			t.Fatal(err)
		}
		seen[addr]++
	}
	return seen
}

func call(conn *grpc.ClientConn) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var p peer.Peer
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}, grpc.Peer(&p)); err != nil {
		return "", err
	}
	return p.Addr.String(), nil
}
