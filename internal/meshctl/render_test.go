package meshctl

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/internal/golden"
	"github.com/meshplane/meshplane/internal/xds"
	"github.com/meshplane/meshplane/internal/xds/generate"
	"github.com/meshplane/meshplane/internal/xds/server"
)

var renderRoot = filepath.Join("testdata", "render")

// renderFeatures are the golden cases: testdata/render/<name>/input.yaml rendered for the
// proxy of workload, as a sidecar (sidecar.golden.yaml) and, with grpc, as a proxyless gRPC
// application (grpc.golden.yaml). check asserts what the golden files must say, so that a
// regenerated golden that changed meaning fails even if nobody reads the diff.
var renderFeatures = []struct {
	name     string
	workload string
	grpc     bool
	check    func(t *testing.T, proxy string, res xds.Resources)
}{
	{"header-routing", "bookstore/frontend", false, checkHeaderRouting},
	{"weighted-shifting", "shop/storefront", false, checkWeightedShifting},
	{"fault-injection", "bookstore/reviews", false, checkFaultInjection},
	{"retries-timeout", "warehouse/web", true, checkRetriesTimeout},
	{"circuit-breaking", "shop/checkout", true, checkCircuitBreaking},
	{"consistent-hash", "shop/gateway-api", true, checkConsistentHash},
	{"service-entry", "shop/checkout", false, checkServiceEntry},
	{"sidecar-egress", "frontend/web", true, checkSidecarEgress},
	{"mirror-rewrite-cors-headers", "demo/web", false, checkMirrorRewriteCORSHeaders},
	{"grpc-routing", "hello/greeter-client", true, checkGRPCRouting},
	{"grpc-weights", "hello/greeter-client", true, checkGRPCWeights},
	{"grpc-faults", "hello/greeter-client", true, checkGRPCFaults},
}

// TestRenderGolden renders every feature for its caller and compares the output with the
// golden files; every rendered configuration passes generate.Validate and
// generate.CheckReferences. UPDATE_GOLDEN=1 go test ./internal/meshctl/ regenerates them.
func TestRenderGolden(t *testing.T) {
	for _, feature := range renderFeatures {
		proxies := []string{proxyEnvoy}
		if feature.grpc {
			proxies = append(proxies, proxyGRPC)
		}
		for _, proxy := range proxies {
			t.Run(feature.name+"/"+proxy, func(t *testing.T) {
				input := filepath.Join(renderRoot, feature.name, "input.yaml")
				code, stdout, stderr := run(t, "", "render", "-f", input, "--workload", feature.workload, "--proxy", proxy)
				if code != ExitOK {
					t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
				}
				if strings.Contains(stderr, "  Warning  ") || strings.Contains(stderr, "Left out") {
					t.Errorf("the fixture is not clean; stderr:\n%s", stderr)
				}
				compareGolden(t, filepath.Join(renderRoot, feature.name, goldenName(proxy)), stdout)

				res := renderResources(t, renderOptions{files: []string{input}, workload: feature.workload, proxy: proxy})
				checkPushable(t, res)
				feature.check(t, proxy, res)
			})
		}
	}
}

func goldenName(proxy string) string {
	if proxy == proxyGRPC {
		return "grpc.golden.yaml"
	}
	return "sidecar.golden.yaml"
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	golden.Check(t, path, []byte(got))
}

func itoa(i int) string { return strconv.Itoa(i) }

// renderResources runs render's pipeline and returns the resources it prints.
func renderResources(t *testing.T, o renderOptions) xds.Resources {
	t.Helper()
	if o.namespace == "" {
		o.namespace = "default"
	}
	if o.proxy == "" {
		o.proxy = proxyEnvoy
	}
	var stderr bytes.Buffer
	res, dropped, err := o.render(nil, &stderr)
	if err != nil || dropped > 0 {
		t.Fatalf("render: %v, %d left out; stderr:\n%s", err, dropped, stderr.String())
	}
	return res
}

// checkPushable asserts what meshd requires of a configuration before pushing it.
func checkPushable(t *testing.T, res xds.Resources) {
	t.Helper()
	if err := generate.Validate(res); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := generate.CheckReferences(res); err != nil {
		t.Errorf("CheckReferences: %v", err)
	}
	if len(res[resourcev3.ClusterType]) == 0 || len(res[resourcev3.ListenerType]) == 0 {
		t.Errorf("no clusters or no listeners: %v", res)
	}
}

// What each golden must say.

func checkHeaderRouting(t *testing.T, _ string, res xds.Resources) {
	routes := virtualHost(t, res, "9080", "reviews.bookstore.svc.cluster.local:9080").GetRoutes()
	if len(routes) != 2 {
		t.Fatalf("reviews routes: %v", routes)
	}
	jason := routes[0]
	if h := jason.GetMatch().GetHeaders(); len(h) != 1 || h[0].GetName() != "end-user" || h[0].GetStringMatch().GetExact() != "jason" {
		t.Errorf("first route must match end-user: jason, got %v", jason.GetMatch())
	}
	wantCluster(t, jason, "outbound|9080|v2|reviews.bookstore.svc.cluster.local")
	if len(routes[1].GetMatch().GetHeaders()) != 0 || routes[1].GetMatch().GetPrefix() != "/" {
		t.Errorf("second route must match everything, got %v", routes[1].GetMatch())
	}
	wantCluster(t, routes[1], "outbound|9080|v1|reviews.bookstore.svc.cluster.local")
	// Subsets hold only their version's Pods: reviews-v1 is the 2nd Deployment (2 replicas),
	// reviews-v2 the 3rd.
	wantAddresses(t, res, "outbound|9080|v1|reviews.bookstore.svc.cluster.local", "10.244.2.1:9080", "10.244.2.2:9080")
	wantAddresses(t, res, "outbound|9080|v2|reviews.bookstore.svc.cluster.local", "10.244.3.1:9080")
	wantAddresses(t, res, "outbound|9080||reviews.bookstore.svc.cluster.local", "10.244.2.1:9080", "10.244.2.2:9080", "10.244.3.1:9080")
	// The caller's own Service targets the container port named web: 8080.
	wantAddresses(t, res, "outbound|80||frontend.bookstore.svc.cluster.local", "10.244.1.1:8080")
}

func checkWeightedShifting(t *testing.T, _ string, res xds.Resources) {
	routes := virtualHost(t, res, "80", "cart.shop.svc.cluster.local:80").GetRoutes()
	if len(routes) != 1 {
		t.Fatalf("cart routes: %v", routes)
	}
	wantWeights(t, routes[0], map[string]uint32{
		"outbound|80|stable|cart.shop.svc.cluster.local": 90,
		"outbound|80|canary|cart.shop.svc.cluster.local": 10,
	})
	wantAddresses(t, res, "outbound|80|canary|cart.shop.svc.cluster.local", "10.244.1.1:8080")
	wantAddresses(t, res, "outbound|80|stable|cart.shop.svc.cluster.local", "10.244.2.1:8080", "10.244.2.2:8080", "10.244.2.3:8080")
}

func checkFaultInjection(t *testing.T, _ string, res xds.Resources) {
	routes := virtualHost(t, res, "9080", "ratings.bookstore.svc.cluster.local:9080").GetRoutes()
	if len(routes) != 2 {
		t.Fatalf("ratings routes: %v", routes)
	}
	jason := routeFault(t, routes[0])
	if jason.GetDelay().GetFixedDelay().AsDuration().Seconds() != 7 || jason.GetDelay().GetPercentage().GetNumerator() != 1_000_000 || jason.GetAbort() != nil {
		t.Errorf("jason's route: want a 7s delay for every request and no abort, got %v", jason)
	}
	flaky := routeFault(t, routes[1])
	if flaky.GetAbort().GetHttpStatus() != 503 || flaky.GetAbort().GetPercentage().GetNumerator() != 100_000 {
		t.Errorf("flaky route: want 503 for 10%% (100000 per million), got %v", flaky.GetAbort())
	}
	if flaky.GetDelay().GetFixedDelay().AsDuration().Seconds() != 2 || flaky.GetDelay().GetPercentage().GetNumerator() != 5_000 {
		t.Errorf("flaky route: want a 2s delay for 0.5%% (5000 per million), got %v", flaky.GetDelay())
	}
}

func checkRetriesTimeout(t *testing.T, proxy string, res xds.Resources) {
	routes := serviceRoutes(t, res, proxy, "8080", "inventory.warehouse.svc.cluster.local", 8080)
	if len(routes) != 2 {
		t.Fatalf("inventory routes: %v", routes)
	}
	reports, lookups := routes[0].GetRoute(), routes[1].GetRoute()
	if routes[0].GetMatch().GetPrefix() != "/reports/" || reports.GetRetryPolicy() != nil {
		t.Errorf("reports: want prefix /reports/ and no retries, got %v", routes[0])
	}
	if rp := lookups.GetRetryPolicy(); rp.GetNumRetries().GetValue() != 3 || rp.GetPerTryTimeout().AsDuration().Seconds() != 1 ||
		rp.GetRetryOn() != "gateway-error,connect-failure,refused-stream" {
		t.Errorf("lookups: want 3 retries of 1s on gateway-error,connect-failure,refused-stream, got %v", rp)
	}
	if proxy == proxyGRPC {
		// grpc-go reads the timeout from max_stream_duration.
		if reports.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration().Seconds() != 30 ||
			lookups.GetMaxStreamDuration().GetMaxStreamDuration().AsDuration().Seconds() != 3 {
			t.Errorf("max stream durations: %v, %v", reports.GetMaxStreamDuration(), lookups.GetMaxStreamDuration())
		}
		return
	}
	if reports.GetTimeout().AsDuration().Seconds() != 30 || lookups.GetTimeout().AsDuration().Seconds() != 3 {
		t.Errorf("timeouts: reports %v, lookups %v", reports.GetTimeout(), lookups.GetTimeout())
	}
}

func checkCircuitBreaking(t *testing.T, proxy string, res xds.Resources) {
	c := cluster(t, res, "outbound|8080||payments.shop.svc.cluster.local")
	th := c.GetCircuitBreakers().GetThresholds()
	if len(th) != 1 || th[0].GetMaxRequests().GetValue() != 200 {
		t.Fatalf("payments thresholds: %v", th)
	}
	if c.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 3 || c.GetOutlierDetection().GetMaxEjectionPercent().GetValue() != 50 ||
		c.GetOutlierDetection().GetBaseEjectionTime().AsDuration().Seconds() != 30 {
		t.Errorf("payments outlier detection: %v", c.GetOutlierDetection())
	}
	v2 := cluster(t, res, "outbound|8080|v2|payments.shop.svc.cluster.local")
	if v2.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 3 {
		t.Errorf("v2 keeps the rule's outlier detection: %v", v2.GetOutlierDetection())
	}
	if proxy == proxyGRPC {
		return // grpc-go reads max_requests only.
	}
	if th[0].GetMaxConnections().GetValue() != 100 || th[0].GetMaxPendingRequests().GetValue() != 10 || th[0].GetMaxRetries().GetValue() != 3 {
		t.Errorf("payments thresholds: %v", th[0])
	}
	if c.GetConnectTimeout().AsDuration().Seconds() != 2 {
		t.Errorf("connect timeout: %v", c.GetConnectTimeout())
	}
	v2th := v2.GetCircuitBreakers().GetThresholds()
	// The subset's pool replaces the rule's; what it leaves unset keeps the
	// lifted defaults (not the rule's 50 requests), as in Istio.
	if len(v2th) != 1 || v2th[0].GetMaxConnections().GetValue() != 10 || v2th[0].GetMaxRequests().GetValue() != 1<<32-1 {
		t.Errorf("v2's own pool replaces the rule's: want 10 connections and the defaults, got %v", v2th)
	}
}

func checkConsistentHash(t *testing.T, proxy string, res xds.Resources) {
	sessions := cluster(t, res, "outbound|8080|v1|sessions.shop.svc.cluster.local")
	if sessions.GetLbPolicy() != clusterv3.Cluster_RING_HASH {
		t.Errorf("sessions v1: lb policy %v", sessions.GetLbPolicy())
	}
	routes := serviceRoutes(t, res, proxy, "8080", "sessions.shop.svc.cluster.local", 8080)
	if len(routes) != 1 {
		t.Fatalf("sessions routes: %v", routes)
	}
	if hp := routes[0].GetRoute().GetHashPolicy(); len(hp) != 1 || hp[0].GetHeader().GetHeaderName() != "x-user-id" {
		t.Errorf("sessions route: want a hash on x-user-id, got %v", hp)
	}
	catalog := cluster(t, res, "outbound|8080||catalog.shop.svc.cluster.local")
	if catalog.GetLbPolicy() != clusterv3.Cluster_RING_HASH {
		t.Errorf("catalog: lb policy %v", catalog.GetLbPolicy())
	}
	if proxy == proxyEnvoy && sessions.GetRingHashLbConfig().GetMinimumRingSize().GetValue() != 1024 {
		t.Errorf("sessions v1: ring %v", sessions.GetRingHashLbConfig())
	}
}

func checkServiceEntry(t *testing.T, _ string, res xds.Resources) {
	api := cluster(t, res, "outbound|443||api.payments.example.com")
	if api.GetType() != clusterv3.Cluster_STRICT_DNS {
		t.Errorf("api.payments.example.com: want STRICT_DNS, got %v", api.GetType())
	}
	ledger := cluster(t, res, "outbound|8080||ledger.internal.example.com")
	if ledger.GetType() != clusterv3.Cluster_EDS {
		t.Errorf("ledger: want EDS, got %v", ledger.GetType())
	}
	wantAddresses(t, res, "outbound|8080||ledger.internal.example.com", "192.0.2.10:8080", "192.0.2.11:8080")
	vh := virtualHost(t, res, "8080", "ledger.internal.example.com:8080")
	if !slices.Contains(vh.GetDomains(), "240.240.0.10") {
		t.Errorf("ledger's virtual host must answer to its address: %v", vh.GetDomains())
	}
}

func checkSidecarEgress(t *testing.T, proxy string, res xds.Resources) {
	names := resourceNames(res[resourcev3.ClusterType])
	for _, want := range []string{"outbound|8080||web.frontend.svc.cluster.local", "outbound|8080||api.backend.svc.cluster.local"} {
		if !slices.Contains(names, want) {
			t.Errorf("missing %s in %v", want, names)
		}
	}
	for _, name := range names {
		if strings.Contains(name, "billing") || strings.Contains(name, "console") || name == "PassthroughCluster" {
			t.Errorf("%s is outside the Sidecar's egress scope", name)
		}
	}
	if proxy == proxyEnvoy && !slices.Contains(names, "BlackHoleCluster") {
		t.Errorf("REGISTRY_ONLY: no BlackHoleCluster in %v", names)
	}
}

func checkMirrorRewriteCORSHeaders(t *testing.T, _ string, res xds.Resources) {
	routes := virtualHost(t, res, "8000", "httpbin.demo.svc.cluster.local:8000").GetRoutes()
	if len(routes) != 2 {
		t.Fatalf("httpbin routes: %v", routes)
	}
	api, rest := routes[0], routes[1]
	action := api.GetRoute()
	if api.GetMatch().GetPrefix() != "/api/v1/" || action.GetPrefixRewrite() != "/v1/" || action.GetHostRewriteLiteral() != "httpbin.internal" {
		t.Errorf("api route: want /api/v1/ rewritten to /v1/ for httpbin.internal, got %v", api)
	}
	wantCluster(t, api, "outbound|8000|v1|httpbin.demo.svc.cluster.local")
	if m := action.GetRequestMirrorPolicies(); len(m) != 1 || m[0].GetCluster() != "outbound|8000|v2|httpbin.demo.svc.cluster.local" ||
		m[0].GetRuntimeFraction().GetDefaultValue().GetNumerator() != 250_000 {
		t.Errorf("api route: want 25%% mirrored to v2, got %v", m)
	}
	if _, ok := api.GetTypedPerFilterConfig()["envoy.filters.http.cors"]; !ok {
		t.Errorf("api route has no CORS policy: %v", api.GetTypedPerFilterConfig())
	}
	if !slices.Equal(api.GetResponseHeadersToRemove(), []string{"x-envoy-upstream-service-time"}) || len(api.GetRequestHeadersToAdd()) != 1 ||
		len(api.GetResponseHeadersToAdd()) != 2 {
		t.Errorf("api route header operations: request add %v, response add %v, remove %v",
			api.GetRequestHeadersToAdd(), api.GetResponseHeadersToAdd(), api.GetResponseHeadersToRemove())
	}
	if m := rest.GetRoute().GetRequestMirrorPolicies(); len(m) != 1 || m[0].GetRuntimeFraction().GetDefaultValue().GetNumerator() != 50_000 {
		t.Errorf("default route: want 5%% mirrored, got %v", m)
	}
	if _, ok := rest.GetTypedPerFilterConfig()["envoy.filters.http.cors"]; ok {
		t.Error("default route has a CORS policy it was not given")
	}
}

func checkGRPCRouting(t *testing.T, proxy string, res xds.Resources) {
	routes := serviceRoutes(t, res, proxy, "50051", "greeter.hello.svc.cluster.local", 50051)
	if len(routes) != 3 {
		t.Fatalf("greeter routes: %v", routes)
	}
	if routes[0].GetMatch().GetPath() != "/helloworld.Greeter/SayHelloAgain" {
		t.Errorf("first route: %v", routes[0].GetMatch())
	}
	if h := routes[1].GetMatch().GetHeaders(); len(h) != 1 || h[0].GetName() != "x-canary" {
		t.Errorf("second route: %v", routes[1].GetMatch())
	}
	wantCluster(t, routes[0], "outbound|50051|v2|greeter.hello.svc.cluster.local")
	wantCluster(t, routes[1], "outbound|50051|v2|greeter.hello.svc.cluster.local")
	wantCluster(t, routes[2], "outbound|50051|v1|greeter.hello.svc.cluster.local")
	wantAddresses(t, res, "outbound|50051|v2|greeter.hello.svc.cluster.local", "10.244.3.1:50051")
}

func checkGRPCWeights(t *testing.T, proxy string, res xds.Resources) {
	routes := serviceRoutes(t, res, proxy, "50051", "greeter.hello.svc.cluster.local", 50051)
	if len(routes) != 1 {
		t.Fatalf("greeter routes: %v", routes)
	}
	wantWeights(t, routes[0], map[string]uint32{
		"outbound|50051|v1|greeter.hello.svc.cluster.local": 75,
		"outbound|50051|v2|greeter.hello.svc.cluster.local": 25,
	})
}

func checkGRPCFaults(t *testing.T, proxy string, res xds.Resources) {
	routes := serviceRoutes(t, res, proxy, "50051", "greeter.hello.svc.cluster.local", 50051)
	if len(routes) != 2 {
		t.Fatalf("greeter routes: %v", routes)
	}
	if _, ok := routes[0].GetTypedPerFilterConfig()["envoy.filters.http.fault"]; ok {
		t.Error("the x-chaos: off route has a fault")
	}
	f := routeFault(t, routes[1])
	if f.GetAbort().GetGrpcStatus() != 14 || f.GetAbort().GetPercentage().GetNumerator() != 100_000 {
		t.Errorf("want UNAVAILABLE (14) for 10%%, got %v", f.GetAbort())
	}
	if f.GetDelay().GetFixedDelay().AsDuration().Seconds() != 2 || f.GetDelay().GetPercentage().GetNumerator() != 500_000 {
		t.Errorf("want a 2s delay for 50%%, got %v", f.GetDelay())
	}
}

// Lookups in rendered resources.

func resourceNames(rs []types.Resource) []string {
	names := make([]string, len(rs))
	for i, r := range rs {
		names[i] = generate.ResourceName(r)
	}
	return names
}

func find[T proto.Message](t *testing.T, res xds.Resources, typ resourcev3.Type, name string) T {
	t.Helper()
	for _, r := range res[typ] {
		if generate.ResourceName(r) == name {
			return r.(T)
		}
	}
	t.Fatalf("no %s %q; have %v", sectionName(typ), name, resourceNames(res[typ]))
	var zero T
	return zero
}

func cluster(t *testing.T, res xds.Resources, name string) *clusterv3.Cluster {
	t.Helper()
	return find[*clusterv3.Cluster](t, res, resourcev3.ClusterType, name)
}

func virtualHost(t *testing.T, res xds.Resources, routeConfig, name string) *routev3.VirtualHost {
	t.Helper()
	rc := find[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, routeConfig)
	for _, vh := range rc.GetVirtualHosts() {
		if vh.GetName() == name {
			return vh
		}
	}
	t.Fatalf("route configuration %s has no virtual host %s", routeConfig, name)
	return nil
}

// serviceRoutes are the routes to host:port: a sidecar's from the port's route configuration,
// a gRPC client's from the configuration it gets for the fully qualified name.
func serviceRoutes(t *testing.T, res xds.Resources, proxy, sidecarRouteConfig, host string, port int) []*routev3.Route {
	t.Helper()
	hostPort := host + ":" + itoa(port)
	if proxy == proxyGRPC {
		rc := find[*routev3.RouteConfiguration](t, res, resourcev3.RouteType, hostPort)
		if len(rc.GetVirtualHosts()) != 1 {
			t.Fatalf("%s: virtual hosts %v", hostPort, rc.GetVirtualHosts())
		}
		return rc.GetVirtualHosts()[0].GetRoutes()
	}
	return virtualHost(t, res, sidecarRouteConfig, hostPort).GetRoutes()
}

func wantCluster(t *testing.T, r *routev3.Route, name string) {
	t.Helper()
	if got := r.GetRoute().GetCluster(); got != name {
		t.Errorf("route %s goes to %q, want %q", r.GetName(), got, name)
	}
}

func wantWeights(t *testing.T, r *routev3.Route, want map[string]uint32) {
	t.Helper()
	got := map[string]uint32{}
	for _, c := range r.GetRoute().GetWeightedClusters().GetClusters() {
		got[c.GetName()] = c.GetWeight().GetValue()
	}
	if len(got) != len(want) {
		t.Fatalf("route %s weights %v, want %v", r.GetName(), got, want)
	}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("route %s weights %v, want %v", r.GetName(), got, want)
		}
	}
}

func routeFault(t *testing.T, r *routev3.Route) *faultv3.HTTPFault {
	t.Helper()
	a, ok := r.GetTypedPerFilterConfig()["envoy.filters.http.fault"]
	if !ok {
		t.Fatalf("route %s has no fault", r.GetName())
	}
	f := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(f); err != nil {
		t.Fatal(err)
	}
	return f
}

// wantAddresses asserts the endpoints of an EDS cluster, as address:port.
func wantAddresses(t *testing.T, res xds.Resources, name string, want ...string) {
	t.Helper()
	cla := find[*endpointv3.ClusterLoadAssignment](t, res, resourcev3.EndpointType, name)
	var got []string
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			sa := lb.GetEndpoint().GetAddress().GetSocketAddress()
			got = append(got, sa.GetAddress()+":"+itoa(int(sa.GetPortValue())))
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		t.Errorf("endpoints of %s: %v, want %v", name, got, want)
	}
}

// The known-good fixtures of the Istio docs' tasks render without a finding or a resource
// left out, for a sidecar, a proxyless gRPC client and (ingress) the ingress gateway, and say
// what the task means.
func TestRenderKnownGoodScenarios(t *testing.T) {
	root := filepath.Join("..", "istio", "validation", "testdata", "knowngood")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	checks := map[string]func(t *testing.T, proxy string, res xds.Resources){
		"request-routing": func(t *testing.T, proxy string, res xds.Resources) {
			routes := serviceRoutes(t, res, proxy, "9080", "reviews.default.svc.cluster.local", 9080)
			if len(routes) != 2 {
				t.Fatalf("reviews routes: %v", routes)
			}
			wantCluster(t, routes[0], "outbound|9080|v2|reviews.default.svc.cluster.local")
			wantCluster(t, routes[1], "outbound|9080|v1|reviews.default.svc.cluster.local")
		},
		"traffic-shifting-50": func(t *testing.T, proxy string, res xds.Resources) {
			routes := serviceRoutes(t, res, proxy, "9080", "reviews.default.svc.cluster.local", 9080)
			wantWeights(t, routes[0], map[string]uint32{
				"outbound|9080|v1|reviews.default.svc.cluster.local": 50,
				"outbound|9080|v3|reviews.default.svc.cluster.local": 50,
			})
		},
		"traffic-shifting-100": func(t *testing.T, proxy string, res xds.Resources) {
			routes := serviceRoutes(t, res, proxy, "9080", "reviews.default.svc.cluster.local", 9080)
			wantCluster(t, routes[0], "outbound|9080|v3|reviews.default.svc.cluster.local")
		},
		"fault-injection-abort": func(t *testing.T, proxy string, res xds.Resources) {
			routes := serviceRoutes(t, res, proxy, "9080", "ratings.default.svc.cluster.local", 9080)
			if f := routeFault(t, routes[0]); f.GetAbort().GetHttpStatus() != 500 {
				t.Errorf("jason's ratings route: %v", f)
			}
		},
		"fault-injection-delay": func(t *testing.T, proxy string, res xds.Resources) {
			routes := serviceRoutes(t, res, proxy, "9080", "ratings.default.svc.cluster.local", 9080)
			if f := routeFault(t, routes[0]); f.GetDelay().GetFixedDelay().AsDuration().Seconds() != 7 {
				t.Errorf("jason's ratings route: %v", f)
			}
		},
		"circuit-breaking": func(t *testing.T, proxy string, res xds.Resources) {
			c := cluster(t, res, "outbound|8000||httpbin.default.svc.cluster.local")
			if c.GetOutlierDetection().GetConsecutive_5Xx().GetValue() != 1 {
				t.Errorf("httpbin outlier detection: %v", c.GetOutlierDetection())
			}
			if th := c.GetCircuitBreakers().GetThresholds(); proxy == proxyEnvoy && (len(th) != 1 || th[0].GetMaxConnections().GetValue() != 1) {
				t.Errorf("httpbin thresholds: %v", th)
			}
		},
	}
	tasks := 0
	for _, entry := range entries {
		if !entry.IsDir() || entry.Name() == "platform" {
			continue
		}
		tasks++
		files := []string{filepath.Join(root, "platform"), filepath.Join(root, entry.Name())}
		for _, proxy := range []string{proxyEnvoy, proxyGRPC} {
			t.Run(entry.Name()+"/"+proxy, func(t *testing.T) {
				o := renderOptions{files: files, workload: "default/productpage-v1", proxy: proxy}
				assertRendersCleanly(t, o)
				if check := checks[entry.Name()]; check != nil {
					check(t, proxy, renderResources(t, o))
				}
			})
		}
		if entry.Name() == "ingress" {
			t.Run("ingress/gateway", func(t *testing.T) {
				o := renderOptions{files: append(files, filepath.Join(renderRoot, "ingress-gateway.yaml")), gateway: "istio-system/istio-ingressgateway"}
				assertRendersCleanly(t, o)
				res := renderResources(t, o)
				if names := resourceNames(res[resourcev3.ListenerType]); !slices.Equal(names, []string{"0.0.0.0_8080"}) {
					t.Errorf("gateway listeners %v, want the HTTP port's (HTTPS needs the httpbin-credential Secret)", names)
				}
				routes := virtualHost(t, res, "http.80", "httpbin.example.com:80").GetRoutes()
				if len(routes) != 2 || routes[0].GetMatch().GetPrefix() != "/status" || routes[1].GetMatch().GetPrefix() != "/delay" {
					t.Fatalf("httpbin.example.com routes: %v", routes)
				}
				wantCluster(t, routes[0], "outbound|8000||httpbin.default.svc.cluster.local")
			})
		}
	}
	if tasks != 7 {
		t.Errorf("found %d task directories, want 7", tasks)
	}
}

// assertRendersCleanly runs the command: exit 0, no finding and nothing left out on stderr,
// and the printed configuration passes meshd's checks.
func assertRendersCleanly(t *testing.T, o renderOptions) {
	t.Helper()
	args := []string{"render", "--proxy", cmpOr(o.proxy, proxyEnvoy)}
	for _, f := range o.files {
		args = append(args, "-f", f)
	}
	if o.workload != "" {
		args = append(args, "--workload", o.workload)
	}
	if o.gateway != "" {
		args = append(args, "--gateway", o.gateway)
	}
	code, stdout, stderr := run(t, "", args...)
	if code != ExitOK || stdout == "" {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr)
	}
	for _, bad := range []string{"  Warning  ", "  Error  ", "Left out"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("stderr has %q:\n%s", bad, stderr)
		}
	}
	checkPushable(t, renderResources(t, o))
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func TestRenderRefusesInputWithErrors(t *testing.T) {
	code, stdout, stderr := run(t, "", "render", "-f", filepath.Join("testdata", "broken"), "--workload", "shop/cart")
	if code != ExitFindings || stdout != "" {
		t.Errorf("exit code %d, stdout %q; want %d and nothing rendered", code, stdout, ExitFindings)
	}
	for _, want := range []string{
		"cart-routing.yaml:18  Error  MP1001  VirtualService shop/cart",
		"11 errors and 3 warnings in 12 objects. Nothing rendered: fix the errors first.",
	} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
}

func TestRenderUsageAndInputErrors(t *testing.T) {
	input := filepath.Join(renderRoot, "header-routing", "input.yaml")
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no input", []string{"render"}, "nothing to render"},
		{"missing file", []string{"render", "-f", filepath.Join("testdata", "no-such-file.yaml")}, "no such file or directory"},
		{"unknown output format", []string{"render", "-f", input, "-o", "text"}, `unknown output format "text"`},
		{"unknown proxy", []string{"render", "-f", input, "--proxy", "ztunnel"}, `unknown proxy "ztunnel"`},
		{"two proxies", []string{"render", "-f", input, "--workload", "a/b", "--gateway", "c/d"}, "give one of them"},
		{"proxyless gateway", []string{"render", "-f", input, "--gateway", "a/b", "--proxy", "grpc"}, "--proxy grpc is for applications"},
		{"unknown type", []string{"render", "-f", input, "--type", "clusters,secrets"}, `unknown resource type "secrets"`},
		{"unknown workload", []string{"render", "-f", input, "--workload", "bookstore/ratings"}, "no Pod or Deployment bookstore/ratings in the input"},
		{"bad mesh config", []string{"render", "-f", input, "--mesh-config", input}, "mesh config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tt.args...)
			if code != ExitUsage || stdout != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("exit code %d, stdout %q, stderr %q; want %d and stderr containing %q", code, stdout, stderr, ExitUsage, tt.wantStderr)
			}
		})
	}
}

// Without --workload or --gateway the proxy is a sidecar of no workload in -n's namespace:
// it gets outbound configuration and no inbound cluster, and stderr says so.
func TestRenderWithoutWorkload(t *testing.T) {
	input := filepath.Join(renderRoot, "header-routing", "input.yaml")
	code, stdout, stderr := run(t, "", "render", "-f", input, "-n", "bookstore")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "a sidecar in namespace bookstore with no workload") {
		t.Errorf("stderr does not say which proxy: %s", stderr)
	}
	if strings.Contains(stdout, "inbound|") || !strings.Contains(stdout, "outbound|9080|v2|reviews.bookstore.svc.cluster.local") {
		t.Errorf("want outbound clusters only:\n%s", stdout)
	}
}

// The Pod of a Deployment given in the input is the one rendered for, at its own address.
func TestRenderUsesPodsOfTheInput(t *testing.T) {
	input := `apiVersion: v1
kind: Pod
metadata:
  name: frontend-7d9f8-x2k4q
  namespace: bookstore
  labels:
    app: frontend
spec:
  containers:
  - name: frontend
    image: registry.example.com/bookstore/frontend:1.4
    ports:
    - name: web
      containerPort: 8080
status:
  podIP: 10.1.2.3
`
	code, stdout, stderr := run(t, input, "render", "-f", filepath.Join(renderRoot, "header-routing", "input.yaml"), "-f", "-",
		"--workload", "bookstore/frontend", "--type", "endpoints")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	if !strings.Contains(stderr, "Pod bookstore/frontend-7d9f8-x2k4q (10.1.2.3), the first replica of Deployment bookstore/frontend") {
		t.Errorf("stderr: %s", stderr)
	}
	// frontend's endpoint is the input Pod (its named port web is 8080); no replica of the
	// Deployment was synthesized.
	if !strings.Contains(stdout, "address: 10.1.2.3\n            port_value: 8080") || strings.Contains(stdout, "10.244.1.") {
		t.Errorf("frontend's endpoints are not the input Pod:\n%s", stdout)
	}
}

func TestRenderTypeFilterAndJSON(t *testing.T) {
	input := filepath.Join(renderRoot, "weighted-shifting", "input.yaml")
	code, stdout, stderr := run(t, "", "render", "-f", input, "--workload", "shop/storefront", "-o", "json", "--type", "routes,clusters")
	if code != ExitOK {
		t.Fatalf("exit code %d: %s", code, stderr)
	}
	var doc map[string][]json.RawMessage
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	if len(doc) != 2 || doc[resourcev3.ClusterType] == nil || doc[resourcev3.RouteType] == nil {
		t.Fatalf("want clusters and routes keyed by type URL, got keys %v", slices.Collect(mapKeys(doc)))
	}
	want := renderResources(t, renderOptions{files: []string{input}, workload: "shop/storefront"})
	for typ, list := range doc {
		var names []string
		for _, raw := range list {
			var m proto.Message = &clusterv3.Cluster{}
			if typ == resourcev3.RouteType {
				m = &routev3.RouteConfiguration{}
			}
			if err := protojson.Unmarshal(raw, m); err != nil {
				t.Fatalf("%s: %v", typ, err)
			}
			names = append(names, generate.ResourceName(m))
			if !proto.Equal(m, find[proto.Message](t, want, typ, generate.ResourceName(m))) {
				t.Errorf("%s %s differs from the rendered resource", typ, generate.ResourceName(m))
			}
		}
		if !slices.IsSorted(names) || !slices.Equal(names, resourceNames(want[typ])) {
			t.Errorf("%s: names %v, want %v sorted", typ, names, resourceNames(want[typ]))
		}
	}

	_, yamlOut, _ := run(t, "", "render", "-f", input, "--workload", "shop/storefront", "--type", "listeners")
	if !strings.HasPrefix(yamlOut, "listeners:\n") || strings.Contains(yamlOut, "\nclusters:") || strings.Contains(yamlOut, "\nroutes:") {
		t.Errorf("--type listeners printed other sections:\n%s", yamlOut)
	}
}

func mapKeys[K comparable, V any](m map[K]V) func(func(K) bool) {
	return func(yield func(K) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// --mesh-config is read as meshd reads it: REGISTRY_ONLY replaces the passthrough.
func TestRenderReadsTheMeshConfig(t *testing.T) {
	meshConfig := filepath.Join(t.TempDir(), "mesh.yaml")
	if err := os.WriteFile(meshConfig, []byte("outboundTrafficPolicy: REGISTRY_ONLY\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	input := filepath.Join(renderRoot, "weighted-shifting", "input.yaml")
	res := renderResources(t, renderOptions{files: []string{input}, workload: "shop/storefront", meshConfig: meshConfig})
	names := resourceNames(res[resourcev3.ClusterType])
	if !slices.Contains(names, "BlackHoleCluster") || slices.Contains(names, "PassthroughCluster") {
		t.Errorf("REGISTRY_ONLY: clusters %v", names)
	}
}

// A resource that fails validation is left out with what depends on it, as meshd does, and
// what refers to nothing any more goes too.
func TestDropUnpushable(t *testing.T) {
	input := filepath.Join(renderRoot, "weighted-shifting", "input.yaml")
	res := renderResources(t, renderOptions{files: []string{input}, workload: "shop/storefront"})
	broken := xds.Resources{}
	for typ, rs := range res {
		broken[typ] = slices.Clone(rs)
	}
	// An invalid route configuration (a virtual host must have a domain) and an invalid
	// cluster (a negative connect timeout).
	for i, r := range broken[resourcev3.RouteType] {
		if generate.ResourceName(r) == "80" {
			rc := proto.Clone(r.(proto.Message)).(*routev3.RouteConfiguration)
			rc.VirtualHosts[0].Domains = nil
			broken[resourcev3.RouteType][i] = rc
		}
	}
	for i, r := range broken[resourcev3.ClusterType] {
		if generate.ResourceName(r) == "outbound|80|canary|cart.shop.svc.cluster.local" {
			c := proto.Clone(r.(proto.Message)).(*clusterv3.Cluster)
			c.ConnectTimeout.Seconds = -1
			broken[resourcev3.ClusterType][i] = c
		}
	}
	pushed, dropped, err := server.Check(broken, generate.ValidateResource)
	if err != nil {
		t.Fatal(err)
	}
	wantDropped := []string{
		`rds "80"`,
		`cds "outbound|80|canary|cart.shop.svc.cluster.local"`,
		`lds 0.0.0.0_80 (refers to missing 80)`,
		`eds outbound|80|canary|cart.shop.svc.cluster.local (not referenced)`,
	}
	if len(dropped) != len(wantDropped) {
		t.Fatalf("dropped:\n%s", strings.Join(dropped, "\n"))
	}
	for _, want := range wantDropped {
		if !slices.ContainsFunc(dropped, func(d string) bool { return strings.HasPrefix(d, want) }) {
			t.Errorf("no %q in:\n%s", want, strings.Join(dropped, "\n"))
		}
	}
	if err := generate.Validate(pushed); err != nil {
		t.Errorf("what is left is invalid: %v", err)
	}
	if len(pushed[resourcev3.ListenerType]) != len(res[resourcev3.ListenerType])-1 {
		t.Errorf("listeners: %v", resourceNames(pushed[resourcev3.ListenerType]))
	}
	if got, _, _ := server.Check(res, generate.ValidateResource); len(got[resourcev3.ClusterType]) != len(res[resourcev3.ClusterType]) {
		t.Error("a valid configuration lost resources")
	}
}

func TestRenderOutputIsDeterministic(t *testing.T) {
	input := filepath.Join(renderRoot, "circuit-breaking", "input.yaml")
	_, first, _ := run(t, "", "render", "-f", input, "--workload", "shop/checkout")
	_, second, _ := run(t, "", "render", "-f", input, "--workload", "shop/checkout")
	if first != second || first == "" {
		t.Error("two renders of the same input differ")
	}
}

// TestRenderReportsWhatGRPCLeavesOut: rendering for a proxyless client
// names the fields it does not honour (the mirror of the mirror-rewrite
// feature, here), on stderr.
func TestRenderReportsWhatGRPCLeavesOut(t *testing.T) {
	input := filepath.Join(renderRoot, "mirror-rewrite-cors-headers", "input.yaml")
	code, _, stderr := run(t, "", "render", "-f", input, "--proxy", "grpc", "-n", "demo")
	if code != 0 || !strings.Contains(stderr, "Not honoured by proxyless gRPC: VirtualService") || !strings.Contains(stderr, ".mirror") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}
