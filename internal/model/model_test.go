package model

import "testing"

func TestProtocolOf(t *testing.T) {
	for _, tc := range []struct {
		appProtocol, name string
		want              Protocol
	}{
		{"", "http", ProtocolHTTP},
		{"", "http-web", ProtocolHTTP},
		{"", "grpc-api", ProtocolGRPC},
		{"", "http2-x", ProtocolHTTP2},
		{"", "tcp-db", ProtocolTCP},
		{"", "web", ProtocolUnknown},
		{"kubernetes.io/h2c", "web", ProtocolHTTP2},
		{"grpc", "tcp-x", ProtocolGRPC}, // appProtocol wins over the name
		{"", "HTTPS-admin", ProtocolHTTPS},
	} {
		if got := ProtocolOf(tc.appProtocol, tc.name); got != tc.want {
			t.Errorf("ProtocolOf(%q, %q) = %s, want %s", tc.appProtocol, tc.name, got, tc.want)
		}
	}
}

func TestNewWorldSortsAndIndexes(t *testing.T) {
	b := &Service{Name: "b", Namespace: "x", Hostname: "b.x.svc.cluster.local", ClusterIP: "10.0.0.2",
		Ports:     []ServicePort{{Name: "grpc", Port: 9090}, {Name: "http", Port: 80}},
		Endpoints: []*Endpoint{{Address: "10.1.0.9"}, {Address: "10.1.0.1"}}}
	a := &Service{Name: "a", Namespace: "x", Hostname: "a.x.svc.cluster.local"}
	w := NewWorld(MeshConfig{}, []*Service{b, a}, []*Workload{{Name: "p", Namespace: "x", IP: "10.1.0.1"}})
	if w.Services[0] != a || b.Ports[0].Port != 80 || b.Endpoints[0].Address != "10.1.0.1" {
		t.Fatalf("not sorted: %+v", w.Services)
	}
	if w.ServiceByHostname("b.x.svc.cluster.local") != b || w.ServiceByVIP("10.0.0.2") != b || w.ServiceByVIP("") != nil {
		t.Fatal("service indexes")
	}
	if w.Workload("x", "p") == nil || w.WorkloadByIP("10.1.0.1") == nil || w.Mesh.DomainSuffix != "cluster.local" {
		t.Fatal("workload indexes or default suffix")
	}
}

// A Service shared by successive Worlds is read concurrently; building a new
// World from already sorted inputs must not write to it.
func TestNewWorldLeavesSortedInputsAlone(t *testing.T) {
	svc := &Service{Hostname: "a", Ports: []ServicePort{{Port: 1}, {Port: 2}}}
	NewWorld(MeshConfig{}, []*Service{svc}, nil)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			_ = svc.Ports[0].Port
		}
	}()
	for range 100 {
		NewWorld(MeshConfig{}, []*Service{svc}, nil)
	}
	<-done
}
