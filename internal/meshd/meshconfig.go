package meshd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"
)

// MeshConfig is the mesh-wide configuration meshd reads from the file the
// operator's chart mounts from the mesh-config ConfigMap (--mesh-config).
//
// It mirrors spec.meshConfig of the MeshControlPlane API plus the revision and
// the CA selection (spec.ca). Decoding is strict: a field meshd does not know
// is an error, so a typo or a config written for a newer meshd never goes
// unnoticed.
//
// The type lives here until the shared internal/meshconfig package exists.
type MeshConfig struct {
	// TrustDomain of the mesh's SPIFFE identities. Default cluster.local.
	TrustDomain string `json:"trustDomain"`
	// OutboundTrafficPolicy is ALLOW_ANY (default) or REGISTRY_ONLY.
	OutboundTrafficPolicy string `json:"outboundTrafficPolicy"`
	// AccessLogging of the proxies.
	AccessLogging AccessLogging `json:"accessLogging"`
	// DiscoverySelectors restrict which namespaces meshd watches; all when empty.
	DiscoverySelectors []metav1.LabelSelector `json:"discoverySelectors"`
	// Revision of the control plane this config is for; empty means any.
	Revision string `json:"revision"`
	// CA selects where workload certificates come from.
	CA CAConfig `json:"ca"`
	// ExtensionProviders are the external authorizers CUSTOM
	// AuthorizationPolicies name (extensionproviders.go).
	ExtensionProviders []ExtensionProvider `json:"extensionProviders"`
}

// AccessLogging configures the proxies' access logs.
type AccessLogging struct {
	Enabled bool `json:"enabled"`
	// Encoding is TEXT (default) or JSON.
	Encoding string `json:"encoding"`
	// Format is an Envoy access-log format string; only allowed when Enabled.
	Format string `json:"format"`
}

// CAConfig selects the mesh certificate authority. Each type takes exactly the
// settings it needs.
type CAConfig struct {
	// Type is SelfSigned (default), Provided or CertManager.
	Type        string         `json:"type"`
	Provided    *ProvidedCA    `json:"provided,omitempty"`
	CertManager *CertManagerCA `json:"certManager,omitempty"`
}

// ProvidedCA names the Secret holding the user's CA.
type ProvidedCA struct {
	SecretName string `json:"secretName"`
}

// CertManagerCA names the cert-manager issuer that signs workload certificates.
type CertManagerCA struct {
	IssuerRef IssuerReference `json:"issuerRef"`
}

// IssuerReference names a cert-manager Issuer or ClusterIssuer.
type IssuerReference struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"`
	Group string `json:"group"`
}

// Values and defaults of the mesh config's enumerations.
const (
	DefaultTrustDomain = "cluster.local"

	OutboundAllowAny     = "ALLOW_ANY"
	OutboundRegistryOnly = "REGISTRY_ONLY"

	AccessLogText = "TEXT"
	AccessLogJSON = "JSON"

	CASelfSigned  = "SelfSigned"
	CAProvided    = "Provided"
	CACertManager = "CertManager"
)

var (
	trustDomainRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9._]*[a-z0-9])?$`)
	objectNameRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$`)
)

// LoadMeshConfig reads, strictly decodes, defaults and validates the mesh
// config file at path. revision is meshd's own --revision; a config naming
// another revision is refused. Every error names the path.
func LoadMeshConfig(path, revision string) (*MeshConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	cfg, err := ParseMeshConfig(data, revision)
	if err != nil {
		return nil, fmt.Errorf("mesh config %s: %w", path, err)
	}
	return cfg, nil
}

func readError(path string, err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mesh config %s: file does not exist (is the mesh-config ConfigMap mounted?)", path)
	}
	return fmt.Errorf("mesh config %s: %w", path, err)
}

// ParseMeshConfig strictly decodes a mesh config document, fills in defaults
// and validates it. An empty document is the all-defaults config.
//
// Strict means: duplicate keys are errors, and so are unknown fields, matched
// case-sensitively and named by their full path (e.g. "accessLogging.enabeld").
// That is sigs.k8s.io/yaml's strict YAML-to-JSON conversion followed by
// sigs.k8s.io/json's strict decoding, as Kubernetes' own API machinery does;
// yaml.UnmarshalStrict alone would match field names case-insensitively and
// name only the last element of an unknown field's path.
func ParseMeshConfig(data []byte, revision string) (*MeshConfig, error) {
	jsonData, err := yaml.YAMLToJSONStrict(data)
	if err != nil {
		// yaml's errors span lines; keep them on one, for the log and /ready.
		return nil, fmt.Errorf("invalid YAML: %s", strings.Join(strings.Fields(err.Error()), " "))
	}
	cfg := &MeshConfig{}
	strictErrs, err := kjson.UnmarshalStrict(jsonData, cfg)
	if err != nil {
		return nil, fmt.Errorf("invalid mesh config: %w", err)
	}
	if len(strictErrs) > 0 {
		msgs := make([]string, len(strictErrs))
		for i, e := range strictErrs {
			msgs[i] = e.Error()
		}
		return nil, fmt.Errorf("invalid mesh config: %s", strings.Join(msgs, "; "))
	}
	cfg.setDefaults()
	if err := cfg.validate(revision); err != nil {
		return nil, fmt.Errorf("invalid mesh config: %w", err)
	}
	return cfg, nil
}

func (c *MeshConfig) setDefaults() {
	if c.TrustDomain == "" {
		c.TrustDomain = DefaultTrustDomain
	}
	if c.OutboundTrafficPolicy == "" {
		c.OutboundTrafficPolicy = OutboundAllowAny
	}
	if c.AccessLogging.Encoding == "" {
		c.AccessLogging.Encoding = AccessLogText
	}
	if c.CA.Type == "" {
		c.CA.Type = CASelfSigned
	}
	if cm := c.CA.CertManager; cm != nil {
		if cm.IssuerRef.Kind == "" {
			cm.IssuerRef.Kind = "Issuer"
		}
		if cm.IssuerRef.Group == "" {
			cm.IssuerRef.Group = "cert-manager.io"
		}
	}
}

func (c *MeshConfig) validate(revision string) error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }

	if len(c.TrustDomain) > 255 || !trustDomainRE.MatchString(c.TrustDomain) {
		bad("trustDomain %q is not a SPIFFE trust domain (lower-case letters, digits, '.', '-' and '_')", c.TrustDomain)
	}
	switch c.OutboundTrafficPolicy {
	case OutboundAllowAny, OutboundRegistryOnly:
	default:
		bad("outboundTrafficPolicy %q must be %s or %s", c.OutboundTrafficPolicy, OutboundAllowAny, OutboundRegistryOnly)
	}
	switch c.AccessLogging.Encoding {
	case AccessLogText, AccessLogJSON:
	default:
		bad("accessLogging.encoding %q must be %s or %s", c.AccessLogging.Encoding, AccessLogText, AccessLogJSON)
	}
	if c.AccessLogging.Format != "" && !c.AccessLogging.Enabled {
		bad("accessLogging.format has no effect unless accessLogging.enabled is true")
	}
	for i := range c.DiscoverySelectors {
		if _, err := metav1.LabelSelectorAsSelector(&c.DiscoverySelectors[i]); err != nil {
			bad("discoverySelectors[%d]: %v", i, err)
		}
	}
	if revision != "" && c.Revision != "" && c.Revision != revision {
		bad("revision %q does not match meshd's --revision %q (wrong ConfigMap mounted?)", c.Revision, revision)
	}

	ca := c.CA
	switch ca.Type {
	case CASelfSigned, CAProvided, CACertManager:
	default:
		bad("ca.type %q must be %s, %s or %s", ca.Type, CASelfSigned, CAProvided, CACertManager)
	}
	switch {
	case ca.Type == CAProvided && ca.Provided == nil:
		bad("ca.provided is required when ca.type is %s", CAProvided)
	case ca.Type != CAProvided && ca.Provided != nil:
		bad("ca.provided may only be set when ca.type is %s", CAProvided)
	case ca.Provided != nil && (len(ca.Provided.SecretName) > 253 || !objectNameRE.MatchString(ca.Provided.SecretName)):
		bad("ca.provided.secretName %q is not a valid Secret name", ca.Provided.SecretName)
	}
	switch {
	case ca.Type == CACertManager && ca.CertManager == nil:
		bad("ca.certManager is required when ca.type is %s", CACertManager)
	case ca.Type != CACertManager && ca.CertManager != nil:
		bad("ca.certManager may only be set when ca.type is %s", CACertManager)
	case ca.CertManager != nil:
		ref := ca.CertManager.IssuerRef
		if ref.Name == "" {
			bad("ca.certManager.issuerRef.name is required")
		}
		if ref.Kind != "Issuer" && ref.Kind != "ClusterIssuer" {
			bad("ca.certManager.issuerRef.kind %q must be Issuer or ClusterIssuer", ref.Kind)
		}
	}
	c.validateExtensionProviders(bad)
	if len(problems) > 0 {
		// One line, so that it reads well in a log line and in /ready.
		return errors.New(strings.Join(problems, "; "))
	}
	return nil
}
