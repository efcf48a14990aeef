package server

import (
	"testing"

	"github.com/meshplane/meshplane/internal/model"
)

func TestIdentify(t *testing.T) {
	for _, tc := range []struct {
		name  string
		id    string
		md    map[string]any
		want  model.Proxy
		known bool
	}{
		{
			name: "istio sidecar id", id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
			want: model.Proxy{Type: model.ProxySidecar, Namespace: "ns", Pod: "a", IP: "10.0.0.1"}, known: true,
		},
		{
			name: "istio router id, pod name with dots", id: "router~10.0.0.2~gw.v1.istio-system~istio-system.svc.cluster.local",
			want: model.Proxy{Type: model.ProxyRouter, Namespace: "istio-system", Pod: "gw.v1", IP: "10.0.0.2"}, known: true,
		},
		{
			name: "istio proxyless grpc", id: "sidecar~10.0.0.3~c.ns~ns.svc.cluster.local", md: map[string]any{"GENERATOR": "grpc"},
			want: model.Proxy{Type: model.ProxyGRPC, Namespace: "ns", Pod: "c", IP: "10.0.0.3"}, known: true,
		},
		{
			name: "meshplane bootstrap", id: "gw-7d9f.edge", md: map[string]any{"proxy_type": "router", "revision": "default"},
			want: model.Proxy{Type: model.ProxyRouter, Namespace: "edge", Pod: "gw-7d9f"}, known: true,
		},
		{
			name: "grpc-go metadata", id: "client-1",
			md:   map[string]any{"PROXY_TYPE": "grpc", "NAMESPACE": "shop", "POD_NAME": "client-1-abc", "INSTANCE_IPS": "10.0.3.7,fd00::7"},
			want: model.Proxy{Type: model.ProxyGRPC, Namespace: "shop", Pod: "client-1-abc", IP: "10.0.3.7"}, known: true,
		},
		{
			name: "metadata wins over the id", id: "sidecar~10.0.0.1~a.ns~ns.svc.cluster.local",
			md:   map[string]any{"PROXY_TYPE": "router", "NAMESPACE": "other", "POD_NAME": "z", "INSTANCE_IPS": "10.9.9.9"},
			want: model.Proxy{Type: model.ProxyRouter, Namespace: "other", Pod: "z", IP: "10.9.9.9"}, known: true,
		},
		{
			name: "unknown type", id: "opaque", md: map[string]any{"PROXY_TYPE": "waypoint", "replicas": 3.0},
			want: model.Proxy{Type: model.ProxySidecar}, known: false,
		},
		{
			name: "no type at all", id: "x.ns",
			want: model.Proxy{Type: model.ProxySidecar, Namespace: "ns", Pod: "x"}, known: false,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, known := identify(node(tc.id, tc.md))
			tc.want.ID = tc.id
			if got.ID != tc.want.ID || got.Type != tc.want.Type || got.Namespace != tc.want.Namespace ||
				got.Pod != tc.want.Pod || got.IP != tc.want.IP || known != tc.known {
				t.Errorf("got %+v known=%v, want %+v known=%v", got, known, tc.want, tc.known)
			}
			if len(got.Metadata) != len(tc.md) {
				t.Errorf("metadata %v", got.Metadata)
			}
		})
	}
	if got, _ := identify(node("x", map[string]any{"replicas": 3.0, "labels": map[string]any{"app": "a"}})); got.Metadata["replicas"] != "3" || got.Metadata["labels"] != `{"app":"a"}` {
		t.Errorf("flattened metadata: %v", got.Metadata)
	}
}

func TestResolve(t *testing.T) {
	w := testWorld(1, 1)
	for _, tc := range []struct {
		ident    model.Proxy
		workload string
	}{
		{model.Proxy{Namespace: "ns", Pod: "b"}, "b"},
		{model.Proxy{IP: "10.0.0.3"}, "c"},
		{model.Proxy{Namespace: "ns", Pod: "gone", IP: "10.0.0.3"}, ""}, // a named pod is not looked up by IP
		{model.Proxy{Namespace: "ns"}, ""},
	} {
		p := resolve(w, &tc.ident)
		switch {
		case tc.workload == "" && p.Workload != nil:
			t.Errorf("%+v: resolved to %s", tc.ident, p.Workload.Name)
		case tc.workload != "" && (p.Workload == nil || p.Workload.Name != tc.workload):
			t.Errorf("%+v: got %v, want %s", tc.ident, p.Workload, tc.workload)
		case tc.workload != "" && (p.Namespace != "ns" || p.Pod != tc.workload || p.IP == ""):
			t.Errorf("%+v: identity not completed from the workload: %+v", tc.ident, p)
		}
	}
}
