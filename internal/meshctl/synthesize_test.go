package meshctl

import (
	"fmt"
	"slices"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
)

func service(ns, name string, selector map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Selector: selector, Ports: ports},
	}
}

func deployment(ns, name string, replicas *int32, labels map[string]string, containerPorts ...corev1.ContainerPort) *appsv1.Deployment {
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec: appsv1.DeploymentSpec{
			Replicas: replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec: corev1.PodSpec{
					ServiceAccountName: name,
					Containers:         []corev1.Container{{Name: "app", Ports: containerPorts}},
				},
			},
		},
	}
}

// slicesOf returns the endpoints of a Service's slices as "address port-name=port ready".
func slicesOf(c *simulatedCluster, ns, svc string) []string {
	var out []string
	for _, s := range c.Slices {
		if s.Namespace != ns || s.Labels[discoveryv1.LabelServiceName] != svc {
			continue
		}
		ports := ""
		for _, p := range s.Ports {
			ports += fmt.Sprintf(" %s=%d", *p.Name, *p.Port)
		}
		for _, e := range s.Endpoints {
			ready, pod := "unset", ""
			if e.Conditions.Ready != nil {
				ready = fmt.Sprint(*e.Conditions.Ready)
			}
			if e.TargetRef != nil {
				pod = e.TargetRef.Name
			}
			out = append(out, fmt.Sprintf("%s%s ready=%s pod=%s", e.Addresses[0], ports, ready, pod))
		}
	}
	return out
}

func TestSimulateClusterSynthesizesPodsAndEndpointSlices(t *testing.T) {
	web := map[string]string{"app": "web", "version": "v1"}
	webCanary := map[string]string{"app": "web", "version": "v2"}
	objects := []runtime.Object{
		// Named, numeric and unset target ports.
		service("shop", "web", map[string]string{"app": "web"},
			corev1.ServicePort{Name: "http", Port: 80, TargetPort: intstr.FromString("http-alt")},
			corev1.ServicePort{Name: "metrics", Port: 9090, TargetPort: intstr.FromInt32(15020)},
			corev1.ServicePort{Name: "grpc", Port: 50051}),
		deployment("shop", "web-v1", ptr[int32](2), web, corev1.ContainerPort{Name: "http-alt", ContainerPort: 8080}),
		// The canary does not name http-alt: it has no endpoint for that port.
		deployment("shop", "web-v2", nil, webCanary),
		deployment("shop", "idle", ptr[int32](0), map[string]string{"app": "idle"}),
		// A Service without a selector gets no synthesized endpoints.
		service("shop", "external-db", nil, corev1.ServicePort{Name: "tcp", Port: 5432}),
	}
	c, err := simulateCluster(objects)
	if err != nil {
		t.Fatal(err)
	}

	// Deployments in namespace/name order: idle (1), web-v1 (2), web-v2 (3).
	var pods []string
	for _, p := range c.Pods {
		pods = append(pods, fmt.Sprintf("%s/%s %s %v sa=%s", p.Namespace, p.Name, p.Status.PodIP, p.Labels, p.Spec.ServiceAccountName))
	}
	wantPods := []string{
		"shop/web-v1-0 10.244.2.1 map[app:web version:v1] sa=web-v1",
		"shop/web-v1-1 10.244.2.2 map[app:web version:v1] sa=web-v1",
		"shop/web-v2-0 10.244.3.1 map[app:web version:v2] sa=web-v2",
	}
	if !slices.Equal(pods, wantPods) {
		t.Errorf("pods:\n  got  %q\n  want %q", pods, wantPods)
	}
	if got := c.DeploymentPods["shop/web-v1"]; len(got) != 2 || got[0].Name != "web-v1-0" {
		t.Errorf("web-v1's pods: %v", got)
	}
	if got := c.DeploymentPods["shop/idle"]; len(got) != 0 {
		t.Errorf("idle has 0 replicas, got %v", got)
	}

	wantEndpoints := []string{
		"10.244.2.1 http=8080 metrics=15020 grpc=50051 ready=true pod=web-v1-0",
		"10.244.2.2 http=8080 metrics=15020 grpc=50051 ready=true pod=web-v1-1",
		"10.244.3.1 metrics=15020 grpc=50051 ready=true pod=web-v2-0",
	}
	if got := slicesOf(c, "shop", "web"); !slices.Equal(got, wantEndpoints) {
		t.Errorf("web's endpoints:\n  got  %q\n  want %q", got, wantEndpoints)
	}
	var names []string
	for _, s := range c.Slices {
		names = append(names, s.Name)
		if s.Labels[discoveryv1.LabelManagedBy] != SyntheticSliceManager || s.AddressType != discoveryv1.AddressTypeIPv4 {
			t.Errorf("slice %s: labels %v, address type %s", s.Name, s.Labels, s.AddressType)
		}
	}
	if !slices.Equal(names, []string{"web-meshctl", "web-meshctl-2"}) {
		t.Errorf("slices %v: want one per distinct port mapping, none for the Service without a selector", names)
	}

	// Cluster IPs in namespace/name order.
	var ips []string
	for _, s := range c.Services {
		ips = append(ips, s.Name+"="+s.Spec.ClusterIP)
	}
	if want := []string{"external-db=10.96.0.1", "web=10.96.0.2"}; !slices.Equal(ips, want) {
		t.Errorf("cluster IPs %v, want %v", ips, want)
	}
}

func TestSimulateClusterKeepsWhatTheInputGives(t *testing.T) {
	labels := map[string]string{"app": "api"}
	givenPod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "api-5f7c9-abcde", Labels: labels},
		Status:     corev1.PodStatus{PodIP: "10.1.0.7", Phase: corev1.PodRunning},
	}
	podWithoutIP := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "debug", Labels: map[string]string{"app": "debug"}}}
	givenSlice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: "shop", Name: "cache-x1", Labels: map[string]string{discoveryv1.LabelServiceName: "cache"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.9.9.9"}}},
	}
	withIP := service("shop", "api", labels, corev1.ServicePort{Name: "http", Port: 80})
	withIP.Spec.ClusterIP = "10.96.0.1" // the first address meshctl would give
	headless := service("shop", "cache", map[string]string{"app": "cache"}, corev1.ServicePort{Name: "tcp", Port: 6379})
	headless.Spec.ClusterIP = corev1.ClusterIPNone
	external := service("shop", "mail", nil)
	external.Spec.Type = corev1.ServiceTypeExternalName
	plain := service("shop", "orders", nil, corev1.ServicePort{Name: "http", Port: 80})
	objects := []runtime.Object{
		withIP, headless, external, plain, givenPod, podWithoutIP, givenSlice,
		deployment("shop", "api", ptr[int32](3), labels),
		deployment("shop", "cache", nil, map[string]string{"app": "cache"}),
	}
	before := make([]runtime.Object, len(objects))
	for i, o := range objects {
		before[i] = o.DeepCopyObject()
	}

	c, err := simulateCluster(objects)
	if err != nil {
		t.Fatal(err)
	}
	for i := range objects {
		if !equality.Semantic.DeepEqual(objects[i], before[i]) {
			t.Errorf("input object %d was modified", i)
		}
	}
	if got := c.DeploymentPods["shop/api"]; len(got) != 1 || got[0] != givenPod {
		t.Errorf("api's Pods: want only the given one, got %v", got)
	}
	if got := slicesOf(c, "shop", "api"); !slices.Equal(got, []string{"10.1.0.7 http=80 ready=true pod=api-5f7c9-abcde"}) {
		t.Errorf("api's endpoints: %q", got)
	}
	if p := c.pod("shop/debug"); p == nil || p.Status.PodIP != "10.244.0.1" {
		t.Errorf("a Pod without an address gets one in 10.244.0.0/24: %v", p)
	}
	// cache, the second Deployment, runs one synthesized replica, but its Service keeps the
	// given slice.
	if p := c.pod("shop/cache-0"); p == nil || p.Status.PodIP != "10.244.2.1" {
		t.Errorf("cache's replica: %v", p)
	}
	if got := slicesOf(c, "shop", "cache"); !slices.Equal(got, []string{"10.9.9.9 ready=unset pod="}) {
		t.Errorf("cache's endpoints: want the given slice only, got %q", got)
	}
	ips := map[string]string{}
	for _, s := range c.Services {
		ips[s.Name] = s.Spec.ClusterIP
	}
	want := map[string]string{"api": "10.96.0.1", "cache": "None", "mail": "", "orders": "10.96.0.2"}
	for name, ip := range want {
		if ips[name] != ip {
			t.Errorf("%s: cluster IP %q, want %q", name, ips[name], ip)
		}
	}
}

// The result depends on the objects, not on the order of the files they came from.
func TestSimulateClusterIsDeterministic(t *testing.T) {
	build := func() []runtime.Object {
		var objects []runtime.Object
		for i, ns := range []string{"b", "a"} {
			for _, app := range []string{"y", "x"} {
				labels := map[string]string{"app": app}
				objects = append(objects,
					service(ns, app, labels, corev1.ServicePort{Name: "http", Port: 80}),
					deployment(ns, app, ptr(int32(i+1)), labels))
			}
		}
		return objects
	}
	forward := build()
	reversed := build()
	slices.Reverse(reversed)
	a, err := simulateCluster(forward)
	if err != nil {
		t.Fatal(err)
	}
	b, err := simulateCluster(reversed)
	if err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(a.objects(), b.objects()) {
		t.Error("the simulated cluster depends on input order")
	}
	// a/x is the first Deployment in namespace/name order, b/y the last.
	if p := a.pod("a/x-0"); p == nil || p.Status.PodIP != "10.244.1.1" {
		t.Errorf("a/x-0: %v", p)
	}
	if p := a.pod("b/y-0"); p == nil || p.Status.PodIP != "10.244.4.1" {
		t.Errorf("b/y-0: %v", p)
	}
}
