package model

import (
	"testing"

	security "istio.io/api/security/v1beta1"
	typev1beta1 "istio.io/api/type/v1beta1"
)

func TestPeerAuthenticationMode(t *testing.T) {
	mtls := func(m security.PeerAuthentication_MutualTLS_Mode) *security.PeerAuthentication_MutualTLS {
		return &security.PeerAuthentication_MutualTLS{Mode: m}
	}
	pa := func(ns, name string, created int64, spec *security.PeerAuthentication) *PeerAuthentication {
		return &PeerAuthentication{Meta: Meta{Name: name, Namespace: ns, CreationUnix: created}, Spec: spec}
	}
	selector := func(app string) *typev1beta1.WorkloadSelector {
		return &typev1beta1.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
	}
	policies := []*PeerAuthentication{
		pa("mesh-root", "default", 1, &security.PeerAuthentication{Mtls: mtls(security.PeerAuthentication_MutualTLS_STRICT)}),
		pa("legacy", "default", 2, &security.PeerAuthentication{Mtls: mtls(security.PeerAuthentication_MutualTLS_DISABLE)}),
		// A newer namespace-wide policy in legacy: the oldest wins.
		pa("legacy", "zz-newer", 9, &security.PeerAuthentication{Mtls: mtls(security.PeerAuthentication_MutualTLS_STRICT)}),
		// UNSET mode: inherits; its port 8080 is PERMISSIVE.
		pa("shop", "web", 3, &security.PeerAuthentication{Selector: selector("web"),
			PortLevelMtls: map[uint32]*security.PeerAuthentication_MutualTLS{8080: mtls(security.PeerAuthentication_MutualTLS_PERMISSIVE)}}),
		pa("shop", "db", 4, &security.PeerAuthentication{Selector: selector("db"), Mtls: mtls(security.PeerAuthentication_MutualTLS_DISABLE)}),
		// A selector policy elsewhere does not reach shop's pods.
		pa("other", "web", 5, &security.PeerAuthentication{Selector: selector("web"), Mtls: mtls(security.PeerAuthentication_MutualTLS_DISABLE)}),
	}
	w := NewWorldWithConfig(MeshConfig{RootNamespace: "mesh-root"}, nil, nil, Config{PeerAuthentications: policies})
	for _, tc := range []struct {
		ns     string
		labels map[string]string
		port   uint32
		want   MTLSMode
	}{
		{"shop", map[string]string{"app": "client"}, 80, MTLSStrict},    // mesh-wide
		{"shop", map[string]string{"app": "web"}, 9090, MTLSStrict},     // UNSET inherits
		{"shop", map[string]string{"app": "web"}, 8080, MTLSPermissive}, // port level
		{"shop", map[string]string{"app": "db"}, 5432, MTLSDisable},     // workload
		{"shop", nil, 0, MTLSStrict},                                    // namespace's mode
		{"legacy", map[string]string{"app": "web"}, 80, MTLSDisable},    // oldest namespace policy
		{"other", map[string]string{"app": "web"}, 80, MTLSDisable},
	} {
		if got := w.PeerAuthenticationMode(tc.ns, tc.labels, tc.port); got != tc.want {
			t.Errorf("%s %v port %d: %s, want %s", tc.ns, tc.labels, tc.port, got, tc.want)
		}
	}
	// Without any policy every port is PERMISSIVE, Istio's default.
	if got := NewWorld(MeshConfig{}, nil, nil).PeerAuthenticationMode("shop", nil, 80); got != MTLSPermissive {
		t.Errorf("no policy: %s", got)
	}
}
