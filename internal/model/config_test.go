package model

import "testing"

// TestQualifyHost: short names resolve in the object's namespace;
// name.namespace and name.namespace.svc complete to the Service they name
// (and stay as written when there is none); FQDNs and wildcards are kept.
func TestQualifyHost(t *testing.T) {
	w := NewWorld(MeshConfig{}, []*Service{
		{Name: "reviews", Namespace: "prod", Hostname: "reviews.prod.svc.cluster.local"},
	}, nil)
	for _, c := range []struct{ host, ns, want string }{
		{"reviews", "prod", "reviews.prod.svc.cluster.local"},
		{"reviews", "dev", "reviews.dev.svc.cluster.local"},
		{"reviews.prod", "dev", "reviews.prod.svc.cluster.local"},
		{"reviews.prod.svc", "dev", "reviews.prod.svc.cluster.local"},
		{"reviews.staging", "dev", "reviews.staging"},
		{"api.example.com", "dev", "api.example.com"},
		{"*.prod.svc.cluster.local", "dev", "*.prod.svc.cluster.local"},
	} {
		if got := w.QualifyHost(c.host, c.ns); got != c.want {
			t.Errorf("QualifyHost(%q, %q) = %q, want %q", c.host, c.ns, got, c.want)
		}
	}
}
