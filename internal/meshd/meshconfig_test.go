package meshd

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const fullMeshConfig = `
trustDomain: example.org
outboundTrafficPolicy: REGISTRY_ONLY
accessLogging:
  enabled: true
  encoding: JSON
  format: "%START_TIME% %REQ(:METHOD)%"
discoverySelectors:
  - matchLabels:
      mesh: "on"
  - matchExpressions:
      - key: team
        operator: In
        values: [a, b]
revision: canary
ca:
  type: CertManager
  certManager:
    issuerRef:
      name: mesh-issuer
      kind: ClusterIssuer
`

func TestParseMeshConfigFull(t *testing.T) {
	cfg, err := ParseMeshConfig([]byte(fullMeshConfig), "canary")
	if err != nil {
		t.Fatalf("ParseMeshConfig: %v", err)
	}
	if cfg.TrustDomain != "example.org" || cfg.OutboundTrafficPolicy != OutboundRegistryOnly {
		t.Errorf("trustDomain/outboundTrafficPolicy = %q/%q", cfg.TrustDomain, cfg.OutboundTrafficPolicy)
	}
	if !cfg.AccessLogging.Enabled || cfg.AccessLogging.Encoding != AccessLogJSON || cfg.AccessLogging.Format == "" {
		t.Errorf("accessLogging = %+v", cfg.AccessLogging)
	}
	if len(cfg.DiscoverySelectors) != 2 || cfg.DiscoverySelectors[0].MatchLabels["mesh"] != "on" ||
		len(cfg.DiscoverySelectors[1].MatchExpressions) != 1 {
		t.Errorf("discoverySelectors = %+v", cfg.DiscoverySelectors)
	}
	if cfg.Revision != "canary" {
		t.Errorf("revision = %q", cfg.Revision)
	}
	if cfg.CA.Type != CACertManager || cfg.CA.CertManager == nil ||
		cfg.CA.CertManager.IssuerRef != (IssuerReference{Name: "mesh-issuer", Kind: "ClusterIssuer", Group: "cert-manager.io"}) {
		t.Errorf("ca = %+v (certManager %+v)", cfg.CA, cfg.CA.CertManager)
	}
}

func TestParseMeshConfigDefaults(t *testing.T) {
	for _, doc := range []string{"", "# nothing set\n", "{}\n"} {
		cfg, err := ParseMeshConfig([]byte(doc), "default")
		if err != nil {
			t.Fatalf("ParseMeshConfig(%q): %v", doc, err)
		}
		if cfg.TrustDomain != DefaultTrustDomain || cfg.OutboundTrafficPolicy != OutboundAllowAny ||
			cfg.AccessLogging.Encoding != AccessLogText || cfg.CA.Type != CASelfSigned {
			t.Errorf("ParseMeshConfig(%q) = %+v, want the defaults", doc, cfg)
		}
	}
}

func TestParseMeshConfigRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, doc, revision string
		want                []string // substrings of the error
	}{
		{name: "unknown top-level field", doc: "trustDomain: a.b\nbogusField: 1\n",
			want: []string{`unknown field "bogusField"`}},
		{name: "unknown nested field is named by its path", doc: "accessLogging:\n  enabeld: true\n",
			want: []string{`unknown field "accessLogging.enabeld"`}},
		{name: "unknown field in a selector", doc: "discoverySelectors:\n- matchLabels: {a: b}\n  matchLabel: {c: d}\n",
			want: []string{`unknown field "discoverySelectors[0].matchLabel"`}},
		{name: "field names are case-sensitive", doc: "TrustDomain: a.b\n",
			want: []string{`unknown field "TrustDomain"`}},
		{name: "duplicate key", doc: "trustDomain: a\ntrustDomain: b\n",
			want: []string{"invalid YAML", `"trustDomain" already set`}},
		{name: "not YAML", doc: "trustDomain: [\n", want: []string{"invalid YAML"}},
		{name: "not a mapping", doc: "- a\n", want: []string{"cannot unmarshal array"}},
		{name: "wrong type", doc: "accessLogging: {enabled: 3}\n", want: []string{"accessLogging.enabled"}},
		{name: "bad trust domain", doc: "trustDomain: Example.ORG\n", want: []string{`trustDomain "Example.ORG"`}},
		{name: "bad outbound policy", doc: "outboundTrafficPolicy: allow\n", want: []string{`outboundTrafficPolicy "allow"`}},
		{name: "bad encoding", doc: "accessLogging: {enabled: true, encoding: XML}\n", want: []string{`accessLogging.encoding "XML"`}},
		{name: "format without enabled", doc: "accessLogging: {format: x}\n", want: []string{"accessLogging.format"}},
		{name: "bad selector", doc: "discoverySelectors:\n- matchExpressions: [{key: a, operator: Like}]\n",
			want: []string{"discoverySelectors[0]", "Like"}},
		{name: "other revision", doc: "revision: canary\n", revision: "default",
			want: []string{`revision "canary" does not match meshd's --revision "default"`}},
		{name: "bad ca type", doc: "ca: {type: Vault}\n", want: []string{`ca.type "Vault"`}},
		{name: "provided without settings", doc: "ca: {type: Provided}\n", want: []string{"ca.provided is required"}},
		{name: "settings of another type", doc: "ca: {type: SelfSigned, provided: {secretName: x}}\n",
			want: []string{"ca.provided may only be set"}},
		{name: "cert-manager without issuer name", doc: "ca: {type: CertManager, certManager: {issuerRef: {kind: Issuer}}}\n",
			want: []string{"ca.certManager.issuerRef.name is required"}},
		{name: "all problems at once", doc: "trustDomain: _\noutboundTrafficPolicy: x\n",
			want: []string{"trustDomain", "; outboundTrafficPolicy"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := ParseMeshConfig([]byte(tc.doc), tc.revision)
			if err == nil {
				t.Fatalf("ParseMeshConfig(%q) = %+v, want an error", tc.doc, cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q spans lines; it must fit one log line and /ready", err)
			}
		})
	}
}

func TestLoadMeshConfig(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mesh.yaml")

	_, err := LoadMeshConfig(path, "")
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("LoadMeshConfig of a missing file: %v, want an error naming %s", err, path)
	}

	if err := os.WriteFile(path, []byte("trustDomain: a.b\nbogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = LoadMeshConfig(path, ""); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), `"bogus"`) {
		t.Fatalf("LoadMeshConfig with an unknown field: %v, want an error naming %s and the field", err, path)
	}

	if err := os.WriteFile(path, []byte(fullMeshConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := LoadMeshConfig(path, "canary")
	if err != nil {
		t.Fatalf("LoadMeshConfig: %v", err)
	}
	if cfg.TrustDomain != "example.org" {
		t.Errorf("trustDomain = %q", cfg.TrustDomain)
	}

	if _, err := LoadMeshConfig(dir, ""); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("LoadMeshConfig of a directory: %v, want an error naming it", err)
	}
}
