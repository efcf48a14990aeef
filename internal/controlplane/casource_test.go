package controlplane

import (
	"testing"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/ca"
	"github.com/meshplane/meshplane/internal/meshd"
)

// TestCASettings: each CA type reads the Secret or issuer the mesh config names.
func TestCASettings(t *testing.T) {
	for _, tc := range []struct {
		yaml string
		want caSettings
	}{
		{"", caSettings{trustDomain: "cluster.local", caType: meshd.CASelfSigned, secretName: v1alpha1.SelfSignedCASecretName}},
		{"trustDomain: example.org\nca: {type: Provided, provided: {secretName: cacerts}}",
			caSettings{trustDomain: "example.org", caType: meshd.CAProvided, secretName: "cacerts"}},
		{"ca: {type: CertManager, certManager: {issuerRef: {name: mesh, kind: ClusterIssuer}}}",
			caSettings{trustDomain: "cluster.local", caType: meshd.CACertManager, issuer: ca.IssuerRef{Name: "mesh", Kind: "ClusterIssuer", Group: "cert-manager.io"}}},
	} {
		cfg, err := meshd.ParseMeshConfig([]byte(tc.yaml), "")
		if err != nil {
			t.Fatal(err)
		}
		if got := caSettingsOf(cfg); got != tc.want {
			t.Errorf("%q: %s, want %s", tc.yaml, got, tc.want)
		}
	}
}
