package discovery

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/test/harness"
)

// The API server is started by the first test that needs one (unit tests and
// benchmarks do not) and stopped by TestMain.
var api harness.LazyEnvtest

func TestMain(m *testing.M) { os.Exit(api.Run(m)) }

func apiServer(t *testing.T) (*rest.Config, client.Client) {
	t.Helper()
	envCfg := api.Config(t)
	c, err := harness.NewClient(envCfg)
	if err != nil {
		t.Fatal(err)
	}
	return envCfg, c
}

const waitTimeout = 30 * time.Second

// eventually polls cond until it reports true, failing the test with cond's
// last explanation after waitTimeout.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func startDiscovery(t *testing.T, cfg *rest.Config, opts Options) *Discovery {
	t.Helper()
	d, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Start: %v", err)
		}
	})
	syncCtx, cancelSync := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelSync()
	if !d.WaitForSync(syncCtx) {
		t.Fatal("discovery did not sync")
	}
	if d.World() == nil {
		t.Fatal("no World after sync")
	}
	return d
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

func update(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Update(context.Background(), obj); err != nil {
		t.Fatalf("updating %T %s: %v", obj, obj.GetName(), err)
	}
}

// setPodStatus writes a pod's status (envtest runs no kubelet).
func setPodStatus(t *testing.T, c client.Client, pod *corev1.Pod, phase corev1.PodPhase, ip string) {
	t.Helper()
	pod.Status = corev1.PodStatus{Phase: phase, PodIP: ip}
	if ip != "" {
		pod.Status.PodIPs = []corev1.PodIP{{IP: ip}}
	}
	if err := c.Status().Update(context.Background(), pod); err != nil {
		t.Fatalf("updating the status of pod %s: %v", pod.Name, err)
	}
}

func kubePod(ns, name, sa, node string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": "web", "version": "v1"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: sa,
			NodeName:           node,
			Containers:         []corev1.Container{{Name: "app", Image: "example.com/app:1"}},
		},
	}
}

func kubeService(ns, name string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{Ports: []corev1.ServicePort{
			{Name: "http-web", Port: 80},
			{Name: "grpc-api", Port: 9090, AppProtocol: ptr.To("grpc")},
		}},
	}
}

func kubeEndpoint(ip, pod string, ready bool) discoveryv1.Endpoint {
	ep := discoveryv1.Endpoint{Addresses: []string{ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}
	if pod != "" {
		ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Name: pod}
	}
	return ep
}

// expectChange drains Changes, runs change, and waits for a signal.
func expectChange(t *testing.T, d *Discovery, what string, change func()) {
	t.Helper()
	select {
	case <-d.Changes():
	default:
	}
	change()
	select {
	case <-d.Changes():
	case <-time.After(waitTimeout):
		t.Fatalf("no Changes() signal after %s", what)
	}
}

func TestDiscovery(t *testing.T) {
	cfg, c := apiServer(t)
	const nsA, nsB = "disc-a", "disc-b"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsA, Labels: map[string]string{"mesh": "on"}}})
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsB}})
	create(t, c, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "disc-node-1", Labels: map[string]string{
		corev1.LabelTopologyRegion: "eu-west", corev1.LabelTopologyZone: "eu-west-1a", LabelSubZone: "rack-7",
	}}})

	d := startDiscovery(t, cfg, Options{
		Mesh:               model.MeshConfig{TrustDomain: "cluster.local"},
		DiscoverySelectors: []metav1.LabelSelector{{MatchLabels: map[string]string{"mesh": "on"}}},
	})
	const host = "web.disc-a.svc.cluster.local"

	// A Service appears with the cluster IP the API server gave it.
	svc := kubeService(nsA, "web")
	expectChange(t, d, "creating a Service", func() { create(t, c, svc) })
	eventually(t, "the Service", func() (bool, string) {
		s := d.World().ServiceByHostname(host)
		if s == nil {
			return false, "not in the World"
		}
		want := []model.ServicePort{{Name: "http-web", Port: 80, Protocol: model.ProtocolHTTP}, {Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC}}
		if s.ClusterIP != svc.Spec.ClusterIP || s.ClusterIP == "" || fmt.Sprint(s.Ports) != fmt.Sprint(want) || s.Labels["app"] != "web" {
			return false, fmt.Sprintf("%+v (cluster IP %q)", s, svc.Spec.ClusterIP)
		}
		return true, ""
	})
	if d.World().ServiceByVIP(svc.Spec.ClusterIP) == nil {
		t.Error("no Service by its cluster IP")
	}

	// A pod becomes a workload once it has an IP.
	pod := kubePod(nsA, "web-0", "web-sa", "disc-node-1")
	create(t, c, pod)
	setPodStatus(t, c, pod, corev1.PodRunning, "10.244.1.5")
	eventually(t, "the workload", func() (bool, string) {
		w := d.World().Workload(nsA, "web-0")
		if w == nil {
			return false, "no workload"
		}
		want := model.Locality{Region: "eu-west", Zone: "eu-west-1a", SubZone: "rack-7"}
		if w.IP != "10.244.1.5" || w.ServiceAccount != "web-sa" || w.Labels["version"] != "v1" || w.Locality != want {
			return false, fmt.Sprintf("%+v", w)
		}
		return d.World().WorkloadByIP("10.244.1.5") == w, "not found by IP"
	})

	// An EndpointSlice gives the Service its endpoints, with the pod's identity.
	sl := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: nsA, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)},
			{Name: ptr.To("grpc-api"), Port: ptr.To[int32](9000)},
		},
		Endpoints: []discoveryv1.Endpoint{kubeEndpoint("10.244.1.5", "web-0", true)},
	}
	expectChange(t, d, "creating an EndpointSlice", func() { create(t, c, sl) })
	endpoints := func(want string) func() (bool, string) {
		return func() (bool, string) {
			s := d.World().ServiceByHostname(host)
			if s == nil {
				return false, "no Service"
			}
			got := ""
			for _, e := range s.Endpoints {
				got += fmt.Sprintf("%s ready=%v serving=%v terminating=%v pod=%s sa=%s zone=%s ports=%v;",
					e.Address, e.Ready, e.Serving, e.Terminating, e.Pod, e.ServiceAccount, e.Locality.Zone, e.Ports)
			}
			return got == want, got
		}
	}
	ports := "map[grpc-api:9000 http-web:8080]"
	eventually(t, "the first endpoint", endpoints(
		"10.244.1.5 ready=true serving=true terminating=false pod=web-0 sa=web-sa zone=eu-west-1a ports="+ports+";"))

	// A second endpoint, not ready, without a pod.
	sl.Endpoints = append(sl.Endpoints, kubeEndpoint("10.244.2.9", "", false))
	expectChange(t, d, "adding an endpoint", func() { update(t, c, sl) })
	eventually(t, "the second endpoint", endpoints(
		"10.244.1.5 ready=true serving=true terminating=false pod=web-0 sa=web-sa zone=eu-west-1a ports="+ports+";"+
			"10.244.2.9 ready=false serving=true terminating=false pod= sa= zone= ports="+ports+";"))

	// The first one terminates, then goes.
	sl.Endpoints[0].Conditions = discoveryv1.EndpointConditions{Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}
	update(t, c, sl)
	eventually(t, "a terminating endpoint", endpoints(
		"10.244.1.5 ready=false serving=true terminating=true pod=web-0 sa=web-sa zone=eu-west-1a ports="+ports+";"+
			"10.244.2.9 ready=false serving=true terminating=false pod= sa= zone= ports="+ports+";"))
	sl.Endpoints = sl.Endpoints[1:]
	update(t, c, sl)
	eventually(t, "the endpoint removed", endpoints(
		"10.244.2.9 ready=false serving=true terminating=false pod= sa= zone= ports="+ports+";"))

	// A finished pod is no workload.
	expectChange(t, d, "a pod finishing", func() { setPodStatus(t, c, pod, corev1.PodSucceeded, "10.244.1.5") })
	eventually(t, "the finished pod gone", func() (bool, string) {
		w := d.World().Workload(nsA, "web-0")
		return w == nil, fmt.Sprintf("%+v", w)
	})

	// A namespace out of scope, then relabelled into it and out again.
	other := kubeService(nsB, "api")
	create(t, c, other)
	otherPod := kubePod(nsB, "api-0", "api", "")
	create(t, c, otherPod)
	setPodStatus(t, c, otherPod, corev1.PodRunning, "10.244.3.3")
	// Once discovery holds both, they are still not in the World.
	eventually(t, "discovery to see the out-of-scope objects", func() (bool, string) {
		d.mu.Lock()
		defer d.mu.Unlock()
		_, svcSeen := d.idx.services[objKey{nsB, "api"}]
		_, wlSeen := d.idx.workloads[objKey{nsB, "api-0"}]
		return svcSeen && wlSeen, fmt.Sprintf("service seen %v, workload seen %v", svcSeen, wlSeen)
	})
	if w := d.World(); w.ServiceByHostname("api.disc-b.svc.cluster.local") != nil || w.Workload(nsB, "api-0") != nil {
		t.Fatal("objects of an out-of-scope namespace are in the World")
	}
	nsObj := &corev1.Namespace{}
	if err := c.Get(context.Background(), client.ObjectKey{Name: nsB}, nsObj); err != nil {
		t.Fatal(err)
	}
	nsObj.Labels = map[string]string{"mesh": "on"}
	expectChange(t, d, "relabelling a namespace into scope", func() { update(t, c, nsObj) })
	eventually(t, "the relabelled namespace in scope", func() (bool, string) {
		w := d.World()
		return w.ServiceByHostname("api.disc-b.svc.cluster.local") != nil && w.Workload(nsB, "api-0") != nil, "absent"
	})
	nsObj.Labels = map[string]string{"mesh": "off"}
	update(t, c, nsObj)
	eventually(t, "the relabelled namespace out of scope", func() (bool, string) {
		return d.World().ServiceByHostname("api.disc-b.svc.cluster.local") == nil, "still there"
	})

	// Without selectors, every namespace is in scope.
	expectChange(t, d, "SetMesh", func() {
		if err := d.SetMesh(model.MeshConfig{TrustDomain: "example.org"}, nil); err != nil {
			t.Fatal(err)
		}
	})
	w := d.World()
	if w.Mesh.TrustDomain != "example.org" || w.ServiceByHostname("api.disc-b.svc.cluster.local") == nil ||
		w.ServiceByHostname("kubernetes.default.svc.cluster.local") == nil {
		t.Errorf("after SetMesh without selectors: mesh %+v, %d services", w.Mesh, len(w.Services))
	}

	// A deleted Service leaves the World.
	expectChange(t, d, "deleting a Service", func() {
		if err := c.Delete(context.Background(), svc); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the Service deleted", func() (bool, string) {
		return d.World().ServiceByHostname(host) == nil, "still there"
	})
}

// TestDiscoveryInitialSync checks that a Discovery started on a populated
// cluster has everything in its first World.
func TestDiscoveryInitialSync(t *testing.T) {
	cfg, c := apiServer(t)
	const ns = "disc-sync"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	for i := range 5 {
		name := fmt.Sprintf("svc-%d", i)
		create(t, c, kubeService(ns, name))
		create(t, c, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-v4", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv4,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)}},
			Endpoints:   []discoveryv1.Endpoint{kubeEndpoint(fmt.Sprintf("10.250.0.%d", i+1), "", true)},
		})
		create(t, c, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-v6", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeIPv6,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)}},
			Endpoints:   []discoveryv1.Endpoint{kubeEndpoint(fmt.Sprintf("fd00::%d", i+1), "", true)},
		})
		create(t, c, &discoveryv1.EndpointSlice{
			ObjectMeta:  metav1.ObjectMeta{Name: name + "-fqdn", Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: name}},
			AddressType: discoveryv1.AddressTypeFQDN,
			Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)}},
			Endpoints:   []discoveryv1.Endpoint{kubeEndpoint("web.example.com", "", true)},
		})
	}
	d := startDiscovery(t, cfg, Options{DiscoverySelectors: []metav1.LabelSelector{{
		MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}}})
	w := d.World()
	if len(w.Services) != 5 {
		t.Fatalf("%d services in the first World, want 5", len(w.Services))
	}
	for i, s := range w.Services {
		if len(s.Endpoints) != 2 || s.Endpoints[0].Address != fmt.Sprintf("10.250.0.%d", i+1) ||
			s.Endpoints[1].Address != fmt.Sprintf("fd00::%d", i+1) {
			t.Errorf("%s: endpoints %+v %+v", s.Hostname, s.Endpoints[0], s.Endpoints[len(s.Endpoints)-1])
		}
	}
}
