package xds_test

// Istio's traffic APIs end to end: VirtualServices and DestinationRules
// written to a real API server reach grpc-go clients through meshd
// (discovery, generators, xDS server), and grpc-go does what they say:
// weighted subsets, header routing, fault injection, retries and timeouts.
//
// Every step first waits until the client holds the new configuration (the
// expected routes in meshd's /debug/config_dump for that client, and every
// xDS type ACKed at the version meshd set), then measures.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/xds"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/internal/xds/generate"
	"github.com/meshplane/meshplane/internal/xds/server"
	"github.com/meshplane/meshplane/test/apps/echo"
	"github.com/meshplane/meshplane/test/framework"
	"github.com/meshplane/meshplane/test/harness"
)

const (
	trafficNS = "traffic"
	// callTimeout bounds every measured RPC; the slowest expected one (the
	// slow backend's baseline) takes 2 s.
	callTimeout = 5 * time.Second
)

// The subsets of echo and the canary of the weighted-split step, in the
// v1alpha3 YAML users already have: it must apply and work unchanged.
const (
	echoSubsetsYAML = `apiVersion: networking.istio.io/v1alpha3
kind: DestinationRule
metadata:
  name: echo
  namespace: traffic
spec:
  host: echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
`
	echoCanaryYAML = `apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata:
  name: echo
  namespace: traffic
spec:
  hosts:
  - echo
  http:
  - route:
    - destination:
        host: echo
        subset: v1
      weight: 90
    - destination:
        host: echo
        subset: v2
      weight: 10
`
)

// trafficPod is a backend pod: a Pod object (labels, IP) named by its
// Service's EndpointSlice, and the echo server playing it.
type trafficPod struct {
	impl   *echo.Server
	ip     string
	labels map[string]string
}

// trafficClient is a proxyless gRPC client of one Service, with its own xDS
// node.
type trafficClient struct {
	conn   *grpc.ClientConn
	nodeID string
	// route is the route configuration (and listener) name: host:port.
	route string
}

type outcome struct {
	who  string // the backend that answered; "" on error
	code codes.Code
	took time.Duration
}

// call makes one RPC; md are outgoing metadata key/value pairs.
func (c *trafficClient) call(md ...string) outcome {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	if len(md) > 0 {
		cctx = metadata.AppendToOutgoingContext(cctx, md...)
	}
	start := time.Now()
	who, err := echo.Call(cctx, c.conn)
	return outcome{who: who, code: status.Code(err), took: time.Since(start)}
}

func (c *trafficClient) calls(n int, md ...string) []outcome {
	out := make([]outcome, n)
	for i := range out {
		out[i] = c.call(md...)
	}
	return out
}

// answeredBy counts the outcomes per backend, errors per code ("error <code>").
func answeredBy(outcomes []outcome) map[string]int {
	got := map[string]int{}
	for _, o := range outcomes {
		if o.code != codes.OK {
			got["error "+o.code.String()]++
			continue
		}
		got[o.who]++
	}
	return got
}

// trafficMesh is the shared setup: meshd, the Istio client and the
// Services' port.
type trafficMesh struct {
	meshd *meshdUnderTest
	istio client.Client
	port  int
	// applied are the Istio objects to delete when the whole test ends (a
	// subtest's cleanup would take a DestinationRule the next one needs).
	applied []client.Object
}

// TestIstioTrafficManagement runs Services echo (pods v1 and v2), flaky
// (fails every first attempt) and slow (answers after 2 s), one grpc-go
// client each, and changes their Istio config step by step.
func TestIstioTrafficManagement(t *testing.T) {
	istio := istioClient(t)
	installIstioCRDs(t, istio)
	// After the CRDs: meshd watches the Istio kinds that are served when it
	// starts (and looks again only every 30 s).
	m := startMeshd(t, "127.0.0.1:0", nil)
	mesh := &trafficMesh{meshd: m, istio: istio, port: freePort(t)}
	t.Cleanup(func() {
		for _, obj := range mesh.applied {
			_ = istio.Delete(ctx, obj)
		}
	})
	xdsAddr := m.cp.XDSAddr().String()

	v1 := &trafficPod{impl: &echo.Server{Name: "echo-v1"}, ip: echo.PodIP(31), labels: map[string]string{"app": "echo", "version": "v1"}}
	v2 := &trafficPod{impl: &echo.Server{Name: "echo-v2"}, ip: echo.PodIP(32), labels: map[string]string{"app": "echo", "version": "v2"}}
	flaky := &trafficPod{impl: &echo.Server{Name: "flaky-0", FailFirstAttempt: true}, ip: echo.PodIP(33), labels: map[string]string{"app": "flaky"}}
	slow := &trafficPod{impl: &echo.Server{Name: "slow-0", Delay: 2 * time.Second}, ip: echo.PodIP(34), labels: map[string]string{"app": "slow"}}

	ensureNamespace(t, trafficNS)
	mesh.deploy(t, xdsAddr, "echo", v1, v2)
	mesh.deploy(t, xdsAddr, "flaky", flaky)
	mesh.deploy(t, xdsAddr, "slow", slow)
	echoClient := mesh.dial(t, xdsAddr, "echo", 41)
	flakyClient := mesh.dial(t, xdsAddr, "flaky", 42)
	slowClient := mesh.dial(t, xdsAddr, "slow", 43)

	echoHost := "echo." + trafficNS + ".svc.cluster.local"
	subset := func(name string) string { return generate.OutboundClusterName(int32(mesh.port), name, echoHost) }
	v1Cluster, v2Cluster := subset("v1"), subset("v2")

	// Both pods serve before any rule: round robin over the Service.
	framework.Poll(t, wait, "both echo pods answer", func() error {
		if got := answeredBy(echoClient.calls(20)); got[v1.impl.Name] == 0 || got[v2.impl.Name] == 0 || len(got) != 2 {
			return fmt.Errorf("20 RPCs answered by %v", got)
		}
		return nil
	})

	// The subsets every echo step may route to.
	mesh.applyYAML(t, echoSubsetsYAML)

	t.Run("weighted split 90/10 between subsets", func(t *testing.T) {
		mesh.applyYAML(t, echoCanaryYAML)
		mesh.waitForRoutes(t, echoClient, "the 90/10 route", func(routes []*routev3.Route) error {
			got := map[string]uint32{}
			for _, c := range firstRoute(routes).GetRoute().GetWeightedClusters().GetClusters() {
				got[c.GetName()] = c.GetWeight().GetValue()
			}
			if len(routes) != 1 || len(got) != 2 || got[v1Cluster] != 90 || got[v2Cluster] != 10 {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})

		// grpc-go picks a weighted cluster at random per RPC, so the v2 count
		// is binomial(n, 0.1): at n = 2000 its share has a standard deviation
		// of sqrt(0.1·0.9/2000) ≈ 0.67 pp (0.95 pp at n = 1000), and ±3 pp is
		// 4.5 sd: a correct split fails this less than once in 100 000 runs, while
		// round robin (50%) or a dropped subset (0% or 100%) cannot pass.
		const n = 2000
		got := answeredBy(echoClient.calls(n))
		share := 100 * float64(got[v2.impl.Name]) / n
		t.Logf("%d RPCs: v1 %d, v2 %d (v2 share %.1f%%), all answered: %v", n, got[v1.impl.Name], got[v2.impl.Name], share, got)
		if got[v1.impl.Name]+got[v2.impl.Name] != n {
			t.Fatalf("not every RPC was answered by v1 or v2: %v", got)
		}
		if math.Abs(share-10) > 3 {
			t.Errorf("v2 answered %.1f%% of %d RPCs, want 10%% ± 3 pp", share, n)
		}
	})

	t.Run("header end-user: jason routes to v2", func(t *testing.T) {
		mesh.apply(t, &istionetworking.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: trafficNS},
			Spec: networking.VirtualService{
				Hosts: []string{"echo"},
				Http: []*networking.HTTPRoute{{
					Name: "jason",
					Match: []*networking.HTTPMatchRequest{{Headers: map[string]*networking.StringMatch{
						"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}},
					}}},
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "echo", Subset: "v2"}}},
				}, {
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "echo", Subset: "v1"}}},
				}},
			},
		})
		mesh.waitForRoutes(t, echoClient, "the header route", func(routes []*routev3.Route) error {
			if len(routes) != 2 || routes[0].GetRoute().GetCluster() != v2Cluster || len(routes[0].GetMatch().GetHeaders()) != 1 ||
				routes[1].GetRoute().GetCluster() != v1Cluster {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})
		const n = 100
		withHeader := answeredBy(echoClient.calls(n, "end-user", "jason"))
		without := answeredBy(echoClient.calls(n))
		other := answeredBy(echoClient.calls(n, "end-user", "alice"))
		t.Logf("%d RPCs each: end-user=jason → %v; no header → %v; end-user=alice → %v", n, withHeader, without, other)
		if withHeader[v2.impl.Name] != n {
			t.Errorf("RPCs with end-user: jason answered by %v, want all by v2", withHeader)
		}
		if without[v1.impl.Name] != n || other[v1.impl.Name] != n {
			t.Errorf("RPCs without end-user: jason answered by %v (no header) and %v (alice), want all by v1", without, other)
		}
	})

	t.Run("a broken VirtualService leaves the good one routing", func(t *testing.T) {
		// Broken in context only (the webhook would accept it): a subset no
		// DestinationRule defines. meshd skips it; flaky keeps its default
		// route, and echo's VirtualService keeps routing.
		mesh.apply(t, &istionetworking.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "flaky-broken", Namespace: trafficNS},
			Spec: networking.VirtualService{
				Hosts: []string{"flaky"},
				Http:  []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "flaky", Subset: "v9"}}}}},
			},
		})
		// A change to the good one after it: once it is served, the broken
		// one has been through meshd too.
		mesh.apply(t, &istionetworking.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: trafficNS},
			Spec: networking.VirtualService{
				Hosts: []string{"echo"},
				Http: []*networking.HTTPRoute{{
					Name: "jason-or-ann",
					Match: []*networking.HTTPMatchRequest{
						{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "jason"}}}},
						{Headers: map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: "ann"}}}},
					},
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "echo", Subset: "v2"}}},
				}, {
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "echo", Subset: "v1"}}},
				}},
			},
		})
		mesh.waitForRoutes(t, echoClient, "the updated header route", func(routes []*routev3.Route) error {
			if len(routes) != 3 || routes[1].GetRoute().GetCluster() != v2Cluster {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})
		if got := answeredBy(echoClient.calls(50, "end-user", "ann")); got[v2.impl.Name] != 50 {
			t.Errorf("RPCs with end-user: ann answered by %v, want all by v2", got)
		}
		mesh.checkRoutes(t, flakyClient, func(routes []*routev3.Route) error {
			if len(routes) != 1 || routes[0].GetName() != "default" {
				return fmt.Errorf("flaky's routes are %v, want its default route (the broken VirtualService skipped)", routes)
			}
			return nil
		})
		if err := istio.Delete(ctx, &istionetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "flaky-broken", Namespace: trafficNS}}); err != nil {
			t.Fatal(err)
		}
	})

	// faultVS routes every RPC to echo (round robin over both pods), with
	// fault (nil: none).
	faultVS := func(fault *networking.HTTPFaultInjection) *istionetworking.VirtualService {
		return &istionetworking.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "echo", Namespace: trafficNS},
			Spec: networking.VirtualService{
				Hosts: []string{"echo"},
				Http: []*networking.HTTPRoute{{
					Fault: fault,
					Route: []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "echo"}}},
				}},
			},
		}
	}
	abortVS := func(percent float64) *istionetworking.VirtualService {
		return faultVS(&networking.HTTPFaultInjection{Abort: &networking.HTTPFaultInjection_Abort{
			ErrorType:  &networking.HTTPFaultInjection_Abort_GrpcStatus{GrpcStatus: "UNAVAILABLE"},
			Percentage: &networking.Percent{Value: percent},
		}})
	}
	abortRoute := func(percent float64) func([]*routev3.Route) error {
		return func(routes []*routev3.Route) error {
			f := routeFault(firstRoute(routes))
			if f.GetAbort().GetGrpcStatus() != uint32(codes.Unavailable) || f.GetAbort().GetPercentage().GetNumerator() != uint32(percent*10000) {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		}
	}

	t.Run("fault abort UNAVAILABLE at 100%", func(t *testing.T) {
		mesh.apply(t, abortVS(100))
		mesh.waitForRoutes(t, echoClient, "the abort route", abortRoute(100))
		const n = 100
		got := answeredBy(echoClient.calls(n))
		t.Logf("%d RPCs: %v", n, got)
		if got["error "+codes.Unavailable.String()] != n {
			t.Errorf("%d RPCs ended as %v, want every one failed with Unavailable", n, got)
		}
	})

	t.Run("fault abort UNAVAILABLE at 50%", func(t *testing.T) {
		mesh.apply(t, abortVS(50))
		mesh.waitForRoutes(t, echoClient, "the 50% abort route", abortRoute(50))
		// Failures are binomial(n, 0.5): at n = 600 the share's standard
		// deviation is 2.0 pp, so ±10 pp is 4.9 sd.
		const n = 600
		got := answeredBy(echoClient.calls(n))
		failed := got["error "+codes.Unavailable.String()]
		share := 100 * float64(failed) / n
		t.Logf("%d RPCs: %v (%.1f%% failed)", n, got, share)
		if failed+got[v1.impl.Name]+got[v2.impl.Name] != n {
			t.Fatalf("RPCs ended otherwise than Unavailable or answered: %v", got)
		}
		if math.Abs(share-50) > 10 {
			t.Errorf("%.1f%% of %d RPCs failed, want 50%% ± 10 pp", share, n)
		}
	})

	t.Run("fault fixed delay 300ms at 100%", func(t *testing.T) {
		mesh.apply(t, faultVS(nil))
		mesh.waitForRoutes(t, echoClient, "the route without faults", func(routes []*routev3.Route) error {
			if len(routes) != 1 || len(firstRoute(routes).GetTypedPerFilterConfig()) != 0 {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})
		const n = 20
		baseline := echoClient.calls(n)
		if got := answeredBy(baseline); got[v1.impl.Name]+got[v2.impl.Name] != n {
			t.Fatalf("baseline RPCs: %v", got)
		}

		mesh.apply(t, faultVS(&networking.HTTPFaultInjection{Delay: &networking.HTTPFaultInjection_Delay{
			HttpDelayType: &networking.HTTPFaultInjection_Delay_FixedDelay{FixedDelay: durationpb.New(300 * time.Millisecond)},
			Percentage:    &networking.Percent{Value: 100},
		}}))
		mesh.waitForRoutes(t, echoClient, "the delay route", func(routes []*routev3.Route) error {
			if d := routeFault(firstRoute(routes)).GetDelay(); d.GetFixedDelay().AsDuration() != 300*time.Millisecond {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})
		delayed := echoClient.calls(n)
		t.Logf("%d RPCs each: without the fault median %s (max %s); with it min %s, median %s", n,
			median(baseline).Round(10*time.Microsecond), slowest(baseline).Round(10*time.Microsecond),
			fastest(delayed).Round(10*time.Microsecond), median(delayed).Round(10*time.Microsecond))
		if got := answeredBy(delayed); got[v1.impl.Name]+got[v2.impl.Name] != n {
			t.Fatalf("delayed RPCs: %v", got)
		}
		if fastest(delayed) < 300*time.Millisecond {
			t.Errorf("an RPC took %s with a 300ms fixed delay", fastest(delayed))
		}
		if median(baseline) >= 300*time.Millisecond {
			t.Errorf("without the fault the median RPC took %s; the delayed ones cannot be told apart", median(baseline))
		}
	})

	t.Run("retries on unavailable", func(t *testing.T) {
		// No VirtualService for flaky yet: the client has its default route
		// once one RPC reaches the backend.
		framework.Poll(t, wait, "an RPC reaches the flaky backend", func() error {
			before := flaky.impl.Attempts()
			if o := flakyClient.call(); flaky.impl.Attempts() == before {
				return fmt.Errorf("the RPC ended %s without reaching the backend", o.code)
			}
			return nil
		})
		mesh.checkRoutes(t, flakyClient, func(routes []*routev3.Route) error {
			if len(routes) != 1 || firstRoute(routes).GetRoute().GetRetryPolicy() != nil {
				return fmt.Errorf("without a VirtualService: routes %v", routes)
			}
			return nil
		})
		const n = 50
		before := flaky.impl.Attempts()
		got := answeredBy(flakyClient.calls(n))
		attempts := flaky.impl.Attempts() - before
		t.Logf("without retries: %d RPCs → %v, %d attempts reached the backend", n, got, attempts)
		if got["error "+codes.Unavailable.String()] != n || attempts != n {
			t.Fatalf("without a retry policy: %d RPCs ended as %v after %d attempts; want every one Unavailable after one attempt", n, got, attempts)
		}

		mesh.apply(t, &istionetworking.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "flaky", Namespace: trafficNS},
			Spec: networking.VirtualService{
				Hosts: []string{"flaky"},
				Http: []*networking.HTTPRoute{{
					Retries: &networking.HTTPRetry{Attempts: 2, RetryOn: "unavailable"},
					Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "flaky"}}},
				}},
			},
		})
		mesh.waitForRoutes(t, flakyClient, "the retry route", func(routes []*routev3.Route) error {
			rp := firstRoute(routes).GetRoute().GetRetryPolicy()
			if rp.GetNumRetries().GetValue() != 2 || rp.GetRetryOn() != "unavailable" {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})
		before = flaky.impl.Attempts()
		got = answeredBy(flakyClient.calls(n))
		attempts = flaky.impl.Attempts() - before
		t.Logf("with retries {attempts: 2, retryOn: unavailable}: %d RPCs → %v, %d attempts reached the backend", n, got, attempts)
		if got[flaky.impl.Name] != n {
			t.Errorf("with retries: %d RPCs ended as %v, want every one answered", n, got)
		}
		if attempts != 2*n {
			t.Errorf("with retries: %d attempts for %d RPCs, want two each (the failed first and one retry)", attempts, n)
		}
	})

	t.Run("timeout 200ms on a 2s backend", func(t *testing.T) {
		// No VirtualService for slow yet: once the client is configured,
		// RPCs are answered after the backend's 2 s.
		var baseline outcome
		framework.Poll(t, wait, "the slow backend answers", func() error {
			if baseline = slowClient.call(); baseline.code != codes.OK {
				return fmt.Errorf("the RPC ended %s after %s", baseline.code, baseline.took)
			}
			return nil
		})
		mesh.checkRoutes(t, slowClient, func(routes []*routev3.Route) error {
			if len(routes) != 1 || firstRoute(routes).GetRoute().GetMaxStreamDuration() != nil {
				return fmt.Errorf("without a VirtualService: routes %v", routes)
			}
			return nil
		})
		t.Logf("without a timeout: %s answered after %s", baseline.who, baseline.took.Round(time.Millisecond))
		if baseline.took < 2*time.Second {
			t.Fatalf("without a timeout the RPC was answered after %s, before the backend's 2 s", baseline.took)
		}

		mesh.apply(t, &istionetworking.VirtualService{
			ObjectMeta: metav1.ObjectMeta{Name: "slow", Namespace: trafficNS},
			Spec: networking.VirtualService{
				Hosts: []string{"slow"},
				Http: []*networking.HTTPRoute{{
					Timeout: durationpb.New(200 * time.Millisecond),
					Route:   []*networking.HTTPRouteDestination{{Destination: &networking.Destination{Host: "slow"}}},
				}},
			},
		})
		mesh.waitForRoutes(t, slowClient, "the timeout route", func(routes []*routev3.Route) error {
			if d := firstRoute(routes).GetRoute().GetMaxStreamDuration().GetMaxStreamDuration(); d.AsDuration() != 200*time.Millisecond {
				return fmt.Errorf("routes %v", routes)
			}
			return nil
		})
		const n = 5
		got := slowClient.calls(n)
		t.Logf("with timeout 200ms: %d RPCs → %v in %s–%s", n, answeredBy(got),
			fastest(got).Round(100*time.Microsecond), slowest(got).Round(100*time.Microsecond))
		for _, o := range got {
			if o.code != codes.DeadlineExceeded || o.took < 200*time.Millisecond || o.took >= time.Second {
				t.Errorf("RPC ended %s after %s, want DeadlineExceeded after 200ms–1s", o.code, o.took)
			}
		}
	})
}

// istioClient is a client whose scheme also knows networking.istio.io/v1.
func istioClient(t *testing.T) client.Client {
	t.Helper()
	scheme := harness.NewScheme()
	if err := istionetworking.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(restConfig, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// installIstioCRDs installs the CRDs the operator installs (keeping those
// already there) and waits until they are served.
func installIstioCRDs(t *testing.T, c client.Client) {
	t.Helper()
	crds, err := istiocrd.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if err := c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating CRD %s: %v", crd.Name, err)
		}
	}
	framework.Poll(t, wait, "Istio's CRDs established", func() error {
		for _, crd := range crds {
			var got apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKeyFromObject(crd), &got); err != nil {
				return err
			}
			if !slices.ContainsFunc(got.Status.Conditions, func(c apiextensionsv1.CustomResourceDefinitionCondition) bool {
				return c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue
			}) {
				return fmt.Errorf("%s not established: %+v", crd.Name, got.Status.Conditions)
			}
		}
		return nil
	})
	// Established is not yet in API discovery, which meshd's REST mapper reads.
	if err := envtest.WaitForCRDs(restConfig, crds, envtest.CRDInstallOptions{MaxTime: wait, PollInterval: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
}

func ensureNamespace(t *testing.T, name string) {
	t.Helper()
	err := k8s.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// deploy creates a Service with one gRPC port, a Pod per backend (labels and,
// through the status subresource, the IP a kubelet would report) and the
// EndpointSlice the EndpointSlice controller would write, whose endpoints
// name their pods, so that meshd knows each endpoint's labels. Then it starts
// each backend's xDS-enabled server and waits until it serves (it does once
// meshd has sent its listener). Everything is deleted at the end.
func (tm *trafficMesh) deploy(t *testing.T, xdsAddr, service string, pods ...*trafficPod) {
	t.Helper()
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: service, Namespace: trafficNS},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{{
			Name: "grpc-echo", Port: int32(tm.port), Protocol: corev1.ProtocolTCP,
		}}},
	}
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta: metav1.ObjectMeta{Name: service + "-slice", Namespace: trafficNS,
			Labels: map[string]string{discoveryv1.LabelServiceName: service}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("grpc-echo"), Port: ptr.To(int32(tm.port)), Protocol: ptr.To(corev1.ProtocolTCP)}},
	}
	objs := []client.Object{svc}
	for _, p := range pods {
		pod := &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: p.impl.Name, Namespace: trafficNS, Labels: p.labels},
			Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "echo", Image: "example.com/echo:1"}}},
		}
		if err := k8s.Create(ctx, pod); err != nil {
			t.Fatal(err)
		}
		objs = append(objs, pod)
		pod.Status = corev1.PodStatus{Phase: corev1.PodRunning, PodIP: p.ip, PodIPs: []corev1.PodIP{{IP: p.ip}}}
		if err := k8s.Status().Update(ctx, pod); err != nil {
			t.Fatal(err)
		}
		slice.Endpoints = append(slice.Endpoints, discoveryv1.Endpoint{
			Addresses:  []string{p.ip},
			Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true)},
			TargetRef:  &corev1.ObjectReference{Kind: "Pod", Namespace: trafficNS, Name: pod.Name},
		})
	}
	if err := k8s.Create(ctx, svc); err != nil {
		t.Fatal(err)
	}
	if err := k8s.Create(ctx, slice); err != nil {
		t.Fatal(err)
	}
	objs = append(objs, slice)
	// Namespaces are never deleted in envtest; the rest is, so that the test
	// can run again (-count) in the same API server.
	t.Cleanup(func() {
		for _, obj := range objs {
			_ = k8s.Delete(ctx, obj, client.GracePeriodSeconds(0))
		}
	})

	for _, p := range pods {
		bootstrap, err := echo.Bootstrap(xdsAddr, p.impl.Name+"."+trafficNS, map[string]string{
			"NAMESPACE": trafficNS, "POD_NAME": p.impl.Name, "INSTANCE_IPS": p.ip,
		})
		if err != nil {
			t.Fatal(err)
		}
		serving := make(chan struct{})
		var once sync.Once
		srv, err := echo.NewXDSServerFor(p.impl, bootstrap, xds.ServingModeCallback(func(_ net.Addr, args xds.ServingModeChangeArgs) {
			if args.Mode == connectivity.ServingModeServing {
				once.Do(func() { close(serving) })
			}
		}))
		if err != nil {
			t.Fatal(err)
		}
		lis, err := echo.ListenPod(p.ip, tm.port)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		wg.Go(func() { _ = srv.Serve(lis) })
		t.Cleanup(func() { srv.Stop(); wg.Wait() })
		select {
		case <-serving:
		case <-time.After(wait):
			t.Fatalf("%s not serving after %s", p.impl.Name, wait)
		}
	}
}

// dial connects a client of service from its own xDS node (pod IP n).
func (tm *trafficMesh) dial(t *testing.T, xdsAddr, service string, n int) *trafficClient {
	t.Helper()
	pod := "client-" + service
	bootstrap, err := echo.Bootstrap(xdsAddr, pod+"."+trafficNS, map[string]string{
		"NAMESPACE": trafficNS, "POD_NAME": pod, "INSTANCE_IPS": echo.PodIP(n),
	})
	if err != nil {
		t.Fatal(err)
	}
	route := fmt.Sprintf("%s.%s.svc.cluster.local:%d", service, trafficNS, tm.port)
	conn, err := echo.Dial("xds:///"+route, bootstrap)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.Connect() // resolve now: the channel would wait for its first RPC
	return &trafficClient{conn: conn, nodeID: pod + "." + trafficNS, route: route}
}

// apply creates obj or replaces the stored one with it; it is deleted when
// TestIstioTrafficManagement ends.
func (tm *trafficMesh) apply(t *testing.T, obj client.Object) {
	t.Helper()
	existing := obj.DeepCopyObject().(client.Object)
	err := tm.istio.Get(ctx, client.ObjectKeyFromObject(obj), existing)
	switch {
	case apierrors.IsNotFound(err):
		err = tm.istio.Create(ctx, obj)
	case err == nil:
		obj.SetResourceVersion(existing.GetResourceVersion())
		err = tm.istio.Update(ctx, obj)
	}
	if err != nil {
		t.Fatalf("applying %T %s: %v", obj, obj.GetName(), err)
	}
	tm.applied = append(tm.applied, obj)
}

// applyYAML applies one object written as YAML, in whatever apiVersion it
// names.
func (tm *trafficMesh) applyYAML(t *testing.T, doc string) {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	tm.apply(t, obj)
}

// waitForRoutes waits until client holds routes (of its only virtual host)
// that check accepts: meshd's /debug/config_dump shows them for the client,
// and the client ACKed the route version meshd set (grpc-go ACKs a response
// once it has applied it) and every other response it was sent.
//
// Only the route type's set version is required to be sent: for the other
// types the client subscribes to names, and meshd sends nothing (so "sent"
// stays behind "set" in /debug/syncz) when a change elsewhere in the mesh
// leaves the resources it subscribed to as they were.
func (tm *trafficMesh) waitForRoutes(t *testing.T, c *trafficClient, what string, check func([]*routev3.Route) error) {
	t.Helper()
	start := time.Now()
	defer func() { t.Logf("%s held %s after %s", c.nodeID, what, time.Since(start).Round(time.Millisecond)) }()
	framework.Poll(t, wait, c.nodeID+" holds "+what, func() error {
		routes, err := tm.routes(c)
		if err != nil {
			return err
		}
		if err := check(routes); err != nil {
			return err
		}
		for _, p := range tm.meshd.syncz(t) {
			if p.ID != c.nodeID {
				continue
			}
			if rds := p.Types[resourcev3.RouteType]; rds.Set != rds.Acked {
				return fmt.Errorf("routes set %q, sent %q, acked %q", rds.Set, rds.Sent, rds.Acked)
			}
			for typ, st := range p.Types {
				if st.Sent != st.Acked || st.LastNack != nil {
					return fmt.Errorf("%s: sent %q, acked %q, last NACK %+v", typ, st.Sent, st.Acked, st.LastNack)
				}
			}
			return nil
		}
		return fmt.Errorf("%s is not connected to meshd", c.nodeID)
	})
}

// checkRoutes requires c's current routes to pass check.
func (tm *trafficMesh) checkRoutes(t *testing.T, c *trafficClient, check func([]*routev3.Route) error) {
	t.Helper()
	routes, err := tm.routes(c)
	if err == nil {
		err = check(routes)
	}
	if err != nil {
		t.Fatalf("%s: %v", c.nodeID, err)
	}
}

// routes reads the routes of c's route configuration from meshd's
// /debug/config_dump.
func (tm *trafficMesh) routes(c *trafficClient) ([]*routev3.Route, error) {
	srv := httptest.NewServer(tm.meshd.cp.DebugHandler())
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/debug/config_dump?proxy=" + url.QueryEscape(c.nodeID))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("config_dump: %s: %s", resp.Status, body)
	}
	var dump server.ConfigDump
	if err := json.Unmarshal(body, &dump); err != nil {
		return nil, err
	}
	for _, raw := range dump.Resources[resourcev3.RouteType] {
		var a anypb.Any
		if err := protojson.Unmarshal(raw, &a); err != nil {
			return nil, err
		}
		rc := &routev3.RouteConfiguration{}
		if err := a.UnmarshalTo(rc); err != nil {
			return nil, err
		}
		if rc.GetName() != c.route {
			continue
		}
		if len(rc.GetVirtualHosts()) != 1 {
			return nil, fmt.Errorf("route configuration %s has %d virtual hosts", c.route, len(rc.GetVirtualHosts()))
		}
		return rc.GetVirtualHosts()[0].GetRoutes(), nil
	}
	return nil, fmt.Errorf("no route configuration %s for %s", c.route, c.nodeID)
}

func firstRoute(routes []*routev3.Route) *routev3.Route {
	if len(routes) == 0 {
		return nil
	}
	return routes[0]
}

// routeFault is the route's fault filter configuration; nil when it has none.
func routeFault(r *routev3.Route) *faultv3.HTTPFault {
	a := r.GetTypedPerFilterConfig()["envoy.filters.http.fault"]
	if a == nil {
		return nil
	}
	f := &faultv3.HTTPFault{}
	if err := a.UnmarshalTo(f); err != nil {
		return nil
	}
	return f
}

func durations(outcomes []outcome) []time.Duration {
	out := make([]time.Duration, len(outcomes))
	for i, o := range outcomes {
		out[i] = o.took
	}
	slices.Sort(out)
	return out
}

func median(outcomes []outcome) time.Duration {
	d := durations(outcomes)
	return d[len(d)/2]
}

func fastest(outcomes []outcome) time.Duration { return durations(outcomes)[0] }

func slowest(outcomes []outcome) time.Duration {
	d := durations(outcomes)
	return d[len(d)-1]
}
