package generate

import (
	"fmt"
	"testing"

	"github.com/meshplane/meshplane/internal/model"
)

// benchWorld is the benchmark world: 1000 services over 10
// namespaces, ports http-web 80 and grpc-api 9090, 3 ready endpoints each.
func benchWorld() *model.World {
	var services []*model.Service
	for i := range 1000 {
		ns := fmt.Sprintf("ns-%d", i%10)
		name := fmt.Sprintf("svc-%d", i)
		s := &model.Service{
			Name: name, Namespace: ns, Hostname: model.Hostname(name, ns, "cluster.local"),
			ClusterIP: fmt.Sprintf("10.96.%d.%d", i/250, i%250+1),
			Ports: []model.ServicePort{
				{Name: "http-web", Port: 80, Protocol: model.ProtocolHTTP},
				{Name: "grpc-api", Port: 9090, Protocol: model.ProtocolGRPC},
			},
		}
		for j := range 3 {
			s.Endpoints = append(s.Endpoints, &model.Endpoint{
				Address: fmt.Sprintf("10.%d.%d.%d", 1+j, i/250, i%250+1),
				Ports:   map[string]int32{"http-web": 8080, "grpc-api": 9090},
				Ready:   true, Serving: true,
				Locality: model.Locality{Region: "r", Zone: fmt.Sprintf("z%d", j)},
			})
		}
		services = append(services, s)
	}
	return model.NewWorld(model.MeshConfig{OutboundAllowAny: true}, services, nil)
}

func BenchmarkGenerate(b *testing.B) {
	w := benchWorld()
	for _, typ := range []model.ProxyType{model.ProxySidecar, model.ProxyRouter, model.ProxyGRPC} {
		b.Run(string(typ), func(b *testing.B) {
			p := &model.Proxy{ID: "p", Type: typ, Namespace: "ns-0", IP: "10.1.0.1"}
			b.ReportAllocs()
			var n int
			for b.Loop() {
				res, err := Generate(w, p)
				if err != nil {
					b.Fatal(err)
				}
				n = 0
				for _, rs := range res {
					n += len(rs)
				}
			}
			b.ReportMetric(float64(n), "resources")
		})
	}
}
