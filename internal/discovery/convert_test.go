package discovery

import (
	"reflect"
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/meshplane/meshplane/internal/model"
)

func TestServiceFromKubeProtocols(t *testing.T) {
	cases := []struct {
		name, appProtocol string
		want              model.Protocol
	}{
		{"http", "", model.ProtocolHTTP},
		{"http-web", "", model.ProtocolHTTP},
		{"HTTP-upper", "", model.ProtocolHTTP},
		{"http2-api", "", model.ProtocolHTTP2},
		{"grpc-api", "", model.ProtocolGRPC},
		{"grpc", "", model.ProtocolGRPC},
		{"grpc-web-x", "", model.ProtocolGRPC},
		{"https-admin", "", model.ProtocolHTTPS},
		{"tls-x", "", model.ProtocolTLS},
		{"tcp-db", "", model.ProtocolTCP},
		{"mysql", "", model.ProtocolTCP},
		{"web", "", model.ProtocolUnknown},
		{"", "", model.ProtocolUnknown},
		{"httpx", "", model.ProtocolUnknown},
		// appProtocol wins over the name.
		{"tcp-x", "grpc", model.ProtocolGRPC},
		{"http-x", "kubernetes.io/h2c", model.ProtocolHTTP2},
		{"grpc-x", "tcp", model.ProtocolTCP},
		{"web", "HTTP", model.ProtocolHTTP},
		// An unknown appProtocol falls back to the name.
		{"http-x", "example.com/custom", model.ProtocolHTTP},
	}
	for _, c := range cases {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "s", Namespace: "ns"},
			Spec:       corev1.ServiceSpec{ClusterIP: "10.0.0.1", Ports: []corev1.ServicePort{{Name: c.name, Port: 80}}},
		}
		if c.appProtocol != "" {
			svc.Spec.Ports[0].AppProtocol = ptr.To(c.appProtocol)
		}
		s, ok := ServiceFromKube(svc, "")
		if !ok || len(s.Ports) != 1 {
			t.Fatalf("%q/%q: got %+v, %v", c.name, c.appProtocol, s, ok)
		}
		if got := s.Ports[0].Protocol; got != c.want {
			t.Errorf("port %q appProtocol %q: protocol %s, want %s", c.name, c.appProtocol, got, c.want)
		}
	}
}

func TestServiceFromKube(t *testing.T) {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: "shop", Labels: map[string]string{"app": "web"}},
		Spec: corev1.ServiceSpec{
			ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{
				{Name: "grpc-api", Port: 9090, Protocol: corev1.ProtocolTCP},
				{Name: "dns", Port: 53, Protocol: corev1.ProtocolUDP},
				{Name: "http-web", Port: 80},
			},
		},
	}
	s, ok := ServiceFromKube(svc, "example.org")
	if !ok {
		t.Fatal("not converted")
	}
	want := &model.Service{
		Name: "web", Namespace: "shop", Hostname: "web.shop.svc.example.org", ClusterIP: "10.96.0.10",
		Ports: []model.ServicePort{
			{Name: "http-web", Port: 80, Protocol: model.ProtocolHTTP},
			{Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC},
		},
		Labels: map[string]string{"app": "web"},
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v\nwant %+v", s, want)
	}
	svc.Labels["app"] = "changed"
	if s.Labels["app"] != "web" {
		t.Error("the model shares the Service's label map")
	}

	s, _ = ServiceFromKube(svc, "")
	if s.Hostname != "web.shop.svc.cluster.local" {
		t.Errorf("default suffix: hostname %q", s.Hostname)
	}

	svc.Spec.ClusterIP = corev1.ClusterIPNone
	if s, _ := ServiceFromKube(svc, ""); s.ClusterIP != "" {
		t.Errorf("headless: ClusterIP %q, want empty", s.ClusterIP)
	}

	ext := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "shop"},
		Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "example.com"},
	}
	if _, ok := ServiceFromKube(ext, ""); ok {
		t.Error("ExternalName Service converted")
	}
}

func slice(name, svc string, at discoveryv1.AddressType, ports []discoveryv1.EndpointPort, eps ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: "ns"},
		AddressType: at,
		Ports:       ports,
		Endpoints:   eps,
	}
	if svc != "" {
		s.Labels = map[string]string{discoveryv1.LabelServiceName: svc}
	}
	return s
}

func TestEndpointsFromSlice(t *testing.T) {
	ports := []discoveryv1.EndpointPort{
		{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)},
		{Name: ptr.To("grpc-api"), Port: ptr.To[int32](9000), Protocol: ptr.To(corev1.ProtocolTCP)},
		{Name: ptr.To("dns"), Port: ptr.To[int32](53), Protocol: ptr.To(corev1.ProtocolUDP)},
		{Name: ptr.To("any")}, // no port number
	}
	podRef := &corev1.ObjectReference{Kind: "Pod", Name: "web-1"}
	sl := slice("web-abc", "web", discoveryv1.AddressTypeIPv4, ports,
		// nil conditions: ready and serving, not terminating.
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}, TargetRef: podRef, NodeName: ptr.To("n1"), Zone: ptr.To("z1")},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.2"}, Conditions: discoveryv1.EndpointConditions{
			Ready: ptr.To(false), Serving: ptr.To(true), Terminating: ptr.To(true)}},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.3"}, Conditions: discoveryv1.EndpointConditions{
			Ready: ptr.To(false), Serving: ptr.To(false)}},
		// Not an IPv4 address, no address, a non-pod target.
		discoveryv1.Endpoint{Addresses: []string{"fd00::1"}},
		discoveryv1.Endpoint{},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.4"}, TargetRef: &corev1.ObjectReference{Kind: "Node", Name: "n1"}},
	)
	svc, eps, ok := EndpointsFromSlice(sl)
	if !ok || svc != "web" {
		t.Fatalf("got %q, %v", svc, ok)
	}
	wantPorts := map[string]int32{"http-web": 8080, "grpc-api": 9000}
	want := []SliceEndpoint{
		{Address: "10.0.0.1", Ports: wantPorts, Ready: true, Serving: true, Pod: "web-1", PodNamespace: "ns", NodeName: "n1", Zone: "z1"},
		{Address: "10.0.0.2", Ports: wantPorts, Serving: true, Terminating: true},
		{Address: "10.0.0.3", Ports: wantPorts},
		{Address: "10.0.0.4", Ports: wantPorts, Ready: true, Serving: true},
	}
	if !reflect.DeepEqual(eps, want) {
		t.Fatalf("got  %+v\nwant %+v", eps, want)
	}

	v6 := slice("web-v6", "web", discoveryv1.AddressTypeIPv6,
		[]discoveryv1.EndpointPort{{Port: ptr.To[int32](80)}},
		discoveryv1.Endpoint{Addresses: []string{"FD00:0:0::0001"}},
		discoveryv1.Endpoint{Addresses: []string{"10.0.0.1"}})
	_, eps, ok = EndpointsFromSlice(v6)
	if !ok || len(eps) != 1 || eps[0].Address != "fd00::1" || eps[0].Ports[""] != 80 {
		t.Fatalf("IPv6 slice: %+v, %v", eps, ok)
	}

	fqdn := slice("web-fqdn", "web", discoveryv1.AddressTypeFQDN, nil,
		discoveryv1.Endpoint{Addresses: []string{"example.com"}})
	if _, _, ok := EndpointsFromSlice(fqdn); ok {
		t.Error("FQDN slice converted")
	}
	if _, _, ok := EndpointsFromSlice(slice("orphan", "", discoveryv1.AddressTypeIPv4, nil)); ok {
		t.Error("slice without service-name label converted")
	}
}

func TestPodWorkload(t *testing.T) {
	pod := func(phase corev1.PodPhase, ip string) *corev1.Pod {
		return &corev1.Pod{
			ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: "ns", Labels: map[string]string{"app": "a"}},
			Spec:       corev1.PodSpec{ServiceAccountName: "sa", NodeName: "n1"},
			Status:     corev1.PodStatus{Phase: phase, PodIP: ip},
		}
	}
	loc := model.Locality{Region: "r", Zone: "z"}
	for _, c := range []struct {
		phase corev1.PodPhase
		ip    string
		want  bool
	}{
		{corev1.PodRunning, "10.1.0.1", true},
		{corev1.PodPending, "10.1.0.1", true},
		{corev1.PodPending, "", false},
		{corev1.PodRunning, "", false},
		{corev1.PodSucceeded, "10.1.0.1", false},
		{corev1.PodFailed, "10.1.0.1", false},
		{corev1.PodUnknown, "10.1.0.1", true},
	} {
		w := WorkloadFromPod(pod(c.phase, c.ip), loc)
		if (w != nil) != c.want {
			t.Errorf("phase %s ip %q: workload %+v, want one: %v", c.phase, c.ip, w, c.want)
		}
	}
	w := WorkloadFromPod(pod(corev1.PodRunning, "10.1.0.1"), loc)
	want := &model.Workload{Name: "p", Namespace: "ns", IP: "10.1.0.1", ServiceAccount: "sa",
		Labels: map[string]string{"app": "a"}, Locality: loc}
	if !reflect.DeepEqual(w, want) {
		t.Errorf("got %+v, want %+v", w, want)
	}
	noSA := pod(corev1.PodRunning, "10.1.0.1")
	noSA.Spec.ServiceAccountName = ""
	if p := PodFromKube(noSA); p.ServiceAccount != DefaultServiceAccount {
		t.Errorf("service account %q, want %q", p.ServiceAccount, DefaultServiceAccount)
	}
}

func TestLocalityAndBuildEndpoint(t *testing.T) {
	node := LocalityFromNodeLabels(map[string]string{
		corev1.LabelTopologyRegion: "eu", corev1.LabelTopologyZone: "eu-1", LabelSubZone: "rack4",
	})
	if want := (model.Locality{Region: "eu", Zone: "eu-1", SubZone: "rack4"}); node != want {
		t.Errorf("locality %+v, want %+v", node, want)
	}
	legacy := LocalityFromNodeLabels(map[string]string{
		corev1.LabelFailureDomainBetaRegion: "us", corev1.LabelFailureDomainBetaZone: "us-2",
	})
	if want := (model.Locality{Region: "us", Zone: "us-2"}); legacy != want {
		t.Errorf("legacy locality %+v, want %+v", legacy, want)
	}

	pod := &Pod{Name: "web-1", Namespace: "ns", ServiceAccount: "web", NodeName: "n2", Labels: map[string]string{"app": "web"}}
	se := SliceEndpoint{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080}, Ready: true, Serving: true, Pod: "web-1", PodNamespace: "ns"}
	ep := BuildEndpoint(se, pod, node)
	want := &model.Endpoint{Address: "10.0.0.1", Ports: se.Ports, Ready: true, Serving: true, Pod: "web-1",
		ServiceAccount: "web", Labels: pod.Labels, Locality: node, NodeName: "n2"}
	if !reflect.DeepEqual(ep, want) {
		t.Errorf("got %+v\nwant %+v", ep, want)
	}
	// The endpoint's own zone and node name win; no pod, no identity.
	se.Zone, se.NodeName = "eu-3", "n1"
	ep = BuildEndpoint(se, nil, node)
	if ep.Locality.Zone != "eu-3" || ep.Locality.Region != "eu" || ep.NodeName != "n1" || ep.ServiceAccount != "" || ep.Labels != nil {
		t.Errorf("got %+v", ep)
	}
}

// TestServiceExportTo: Istio's exportTo annotation restricts who sees a
// Service; absent, everyone does.
func TestServiceExportTo(t *testing.T) {
	svc := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: "a", Namespace: "ns",
		Annotations: map[string]string{ExportToAnnotation: " ., istio-system ,"}},
		Spec: corev1.ServiceSpec{ClusterIP: "10.96.0.1", Ports: []corev1.ServicePort{{Name: "http", Port: 80}}}}
	s, ok := ServiceFromKube(svc, "")
	if !ok || !slices.Equal(s.ExportTo, []string{".", "istio-system"}) {
		t.Fatalf("ExportTo %v", s.ExportTo)
	}
	w := model.NewWorld(model.MeshConfig{}, []*model.Service{s}, nil)
	if !w.HasExportRestrictions() || len(w.ScopedFor("other", nil).Services) != 0 || len(w.ScopedFor("ns", nil).Services) != 1 {
		t.Error("the annotation does not scope the Service")
	}
	svc.Annotations = nil
	if s, _ := ServiceFromKube(svc, ""); s.ExportTo != nil {
		t.Errorf("no annotation: ExportTo %v", s.ExportTo)
	}
}
