package v1alpha1_test

// These tests apply MeshControlPlanes to a real kube-apiserver (envtest) with the
// generated CRD installed, so they check what users get: every validation rule
// of the CRD refuses what it should with a message a person can act on, the
// defaults come back as documented, and the sample is accepted.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/test/harness"
)

const crdFile = "operator.meshplane.io_meshcontrolplanes.yaml"

var k8s client.Client

func TestMain(m *testing.M) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := 1
	if k8s, err = harness.NewClient(cfg); err != nil {
		fmt.Fprintln(os.Stderr, err)
	} else {
		code = m.Run()
	}
	if err := env.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		code = max(code, 1)
	}
	os.Exit(code)
}

// mcp builds a MeshControlPlane named name from the YAML of its spec.
func mcp(t *testing.T, name, specYAML string) *unstructured.Unstructured {
	t.Helper()
	var spec map[string]any
	if err := yaml.Unmarshal([]byte(specYAML), &spec); err != nil {
		t.Fatalf("bad spec YAML in test: %v\n%s", err, specYAML)
	}
	return mcpWithSpec(name, spec)
}

func mcpWithSpec(name string, spec map[string]any) *unstructured.Unstructured {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": v1alpha1.GroupVersion.String(),
		"kind":       "MeshControlPlane",
		"metadata":   map[string]any{"name": name},
	}}
	if spec != nil {
		u.Object["spec"] = spec
	}
	return u
}

// gateways returns n valid gateways named gw-0, gw-1, ...
func gateways(n int) []any {
	gws := make([]any, n)
	for i := range gws {
		gws[i] = map[string]any{"name": fmt.Sprintf("gw-%d", i)}
	}
	return gws
}

// ports returns n valid Service ports 8000, 8001, ... named p-0, p-1, ...
func ports(n int) []any {
	ps := make([]any, n)
	for i := range ps {
		ps[i] = map[string]any{"name": fmt.Sprintf("p-%d", i), "port": 8000 + i}
	}
	return ps
}

type refusal struct {
	// rule is the validation rule the case breaks (also the subtest name).
	rule string
	// name of the MeshControlPlane; "mcp" when empty.
	name string
	// spec is the YAML of the spec, unless build is set.
	spec  string
	build func() map[string]any
	// want are substrings the API server's error must contain: for CEL rules
	// the rule's message, for schema rules the field path and the reason.
	want []string
}

func (r refusal) object(t *testing.T) *unstructured.Unstructured {
	name := r.name
	if name == "" {
		name = "mcp"
	}
	if r.build != nil {
		return mcpWithSpec(name, r.build())
	}
	return mcp(t, name, r.spec)
}

const dnsLabelMsg = "must be a DNS label: lower-case letters, digits and '-', starting and ending with a letter or digit"

// celRefusals has one case per x-kubernetes-validations rule (except the
// transition rule on spec.namespace, see TestNamespaceIsImmutable).
var celRefusals = []refusal{
	{
		rule: "metadata.name is at most 40 characters",
		name: strings.Repeat("a", 41),
		spec: `{}`,
		want: []string{"metadata.name becomes the revision name in object names and labels, so it must be a DNS label of at most 40 characters"},
	},
	{
		rule: "metadata.name is a DNS label",
		name: "mesh.one",
		spec: `{}`,
		want: []string{"metadata.name becomes the revision name in object names and labels, so it must be a DNS label of at most 40 characters"},
	},
	{
		rule: "spec.namespace is a DNS label",
		spec: `{namespace: Mesh_System}`,
		want: []string{"spec.namespace", "namespace " + dnsLabelMsg},
	},
	{
		rule: "spec.controlPlane.image has no whitespace",
		spec: `{controlPlane: {image: "registry.example/meshd :v1"}}`,
		want: []string{"spec.controlPlane.image", "image must be a container image reference without whitespace"},
	},
	{
		rule: "spec.ca.provided is required when type is Provided",
		spec: `{ca: {type: Provided}}`,
		want: []string{"spec.ca", "ca.provided is required when ca.type is Provided"},
	},
	{
		rule: "spec.ca.provided only when type is Provided",
		spec: `{ca: {type: SelfSigned, provided: {secretName: mesh-ca}}}`,
		want: []string{"spec.ca", "ca.provided may only be set when ca.type is Provided"},
	},
	{
		rule: "spec.ca.provided only when type is Provided (type defaulted)",
		spec: `{ca: {provided: {secretName: mesh-ca}}}`,
		want: []string{"spec.ca", "ca.provided may only be set when ca.type is Provided"},
	},
	{
		rule: "spec.ca.certManager is required when type is CertManager",
		spec: `{ca: {type: CertManager}}`,
		want: []string{"spec.ca", "ca.certManager is required when ca.type is CertManager"},
	},
	{
		rule: "spec.ca.certManager only when type is CertManager",
		spec: `{ca: {type: Provided, provided: {secretName: mesh-ca}, certManager: {issuerRef: {name: mesh-issuer}}}}`,
		want: []string{"spec.ca", "ca.certManager may only be set when ca.type is CertManager"},
	},
	{
		rule: "spec.ca.provided.secretName is a Secret name",
		spec: `{ca: {type: Provided, provided: {secretName: Mesh_CA}}}`,
		want: []string{"spec.ca.provided.secretName", "secretName must be a valid Secret name: lower-case letters, digits, '-' and '.'"},
	},
	{
		rule: "spec.gateways[].name is a DNS label",
		spec: `{gateways: [{name: Ingress_GW}]}`,
		want: []string{"spec.gateways[0].name", "gateway name " + dnsLabelMsg},
	},
	{
		rule: "spec.gateways[].namespace is a DNS label",
		spec: `{gateways: [{name: ingress, namespace: Apps}]}`,
		want: []string{"spec.gateways[0].namespace", "gateway namespace " + dnsLabelMsg},
	},
	{
		rule: "spec.gateways[].name does not start with meshd",
		spec: `{gateways: [{name: meshd-ingress}]}`,
		want: []string{"spec.gateways[0]", "gateway name must not start with 'meshd': that name belongs to the control plane"},
	},
	{
		rule: "spec.gateways[].service.ports[].name is a DNS label",
		spec: `{gateways: [{name: ingress, service: {ports: [{name: HTTP, port: 80}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].name", "port name must be a DNS label of at most 15 characters: lower-case letters, digits and '-'"},
	},
	{
		rule: "spec.gateways[].service.ports[].name is unique",
		spec: `{gateways: [{name: ingress, service: {ports: [{name: http, port: 80}, {name: http, port: 8080}]}}]}`,
		want: []string{"spec.gateways[0].service.ports", "service port names must be unique"},
	},
	{
		rule: "spec.gateways[].service nodePort only with NodePort or LoadBalancer",
		spec: `{gateways: [{name: ingress, service: {type: ClusterIP, ports: [{name: http, port: 80, nodePort: 30080}]}}]}`,
		want: []string{"spec.gateways[0]", "nodePort may only be set when the gateway's Service is NodePort or LoadBalancer"},
	},
	{
		rule: "spec.gateways[] nodePort on an egress gateway whose Service type defaults to ClusterIP",
		spec: `{gateways: [{name: egress, kind: egress, service: {ports: [{name: http, port: 80, nodePort: 30080}]}}]}`,
		want: []string{"spec.gateways[0]", "nodePort may only be set when the gateway's Service is NodePort or LoadBalancer (egress gateways default to ClusterIP)"},
	},
	{
		rule: "spec.meshConfig.accessLogging.format needs enabled (enabled: false)",
		spec: `{meshConfig: {accessLogging: {enabled: false, format: "%START_TIME%"}}}`,
		want: []string{"spec.meshConfig.accessLogging", "accessLogging.format has no effect unless accessLogging.enabled is true"},
	},
	{
		// enabled is a plain bool with omitempty and no default: a Go client
		// setting only Format sends no "enabled" at all.
		rule: "spec.meshConfig.accessLogging.format needs enabled (enabled omitted)",
		spec: `{meshConfig: {accessLogging: {format: "%START_TIME%"}}}`,
		want: []string{"spec.meshConfig.accessLogging", "accessLogging.format has no effect unless accessLogging.enabled is true"},
	},
	{
		rule: "spec.meshConfig.trustDomain is a SPIFFE trust domain",
		spec: `{meshConfig: {trustDomain: Cluster.Local}}`,
		want: []string{"spec.meshConfig.trustDomain", "trustDomain must be a SPIFFE trust domain: lower-case letters, digits, '.', '-' and '_'"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[] has a kind",
		spec: `{meshConfig: {extensionProviders: [{name: opa}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0]", "exactly one of envoyExtAuthzHttp and envoyExtAuthzGrpc must be set"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[] has one kind only",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {service: a/opa, port: 80}, envoyExtAuthzGrpc: {service: a/opa, port: 90}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0]", "exactly one of envoyExtAuthzHttp and envoyExtAuthzGrpc must be set"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[].name is a DNS label",
		spec: `{meshConfig: {extensionProviders: [{name: Opa_HTTP, envoyExtAuthzHttp: {service: a/opa, port: 80}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].name", "extension provider name " + dnsLabelMsg},
	},
	{
		rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzGrpc.service is namespace/host or a FQDN",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzGrpc: {service: opa, port: 9191}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.service", "service must be <namespace>/<host> or a fully qualified host"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzHttp.timeout is a duration",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {service: a/opa, port: 80, timeout: soon}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.timeout", "timeout must be a positive duration such as 500ms or 2s"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzGrpc.timeout is positive",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzGrpc: {service: a/opa, port: 80, timeout: 0s}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.timeout", "timeout must be a positive duration such as 500ms or 2s"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzHttp.statusOnError is a status Envoy knows",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {service: a/opa, port: 80, statusOnError: "299"}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.statusOnError", "statusOnError must be an HTTP status code Envoy knows, such as 403 or 503"},
	},
	{
		rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzHttp.pathPrefix starts with /",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {service: a/opa, port: 80, pathPrefix: check}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.pathPrefix", "pathPrefix must start with /"},
	},
}

// schemaRefusals has one case per OpenAPI schema rule that a user can break:
// enums, minimum/maximum, minLength/maxLength, maxItems, required fields,
// list-map keys and types.
var schemaRefusals = []refusal{
	{rule: "spec.version enum", spec: `{version: v9.9.9}`,
		want: []string{"spec.version", `Unsupported value: "v9.9.9"`, `supported values: "` + strings.Join(v1alpha1.SupportedVersions, `", "`) + `"`}},
	{rule: "spec.namespace maxLength 63", spec: `{namespace: ` + strings.Repeat("n", 64) + `}`,
		want: []string{"spec.namespace", "Too long", "63"}},
	{rule: "spec.updateStrategy.type enum", spec: `{updateStrategy: {type: BlueGreen}}`,
		want: []string{"spec.updateStrategy.type", `Unsupported value: "BlueGreen"`, `"InPlace", "RevisionBased"`}},
	{rule: "spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds minimum 0", spec: `{updateStrategy: {inactiveRevisionDeletionGracePeriodSeconds: -1}}`,
		want: []string{"spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds", "greater than or equal to 0"}},
	{rule: "spec.controlPlane.replicas minimum 1", spec: `{controlPlane: {replicas: 0}}`,
		want: []string{"spec.controlPlane.replicas", "greater than or equal to 1"}},
	{rule: "spec.controlPlane.replicas maximum 10", spec: `{controlPlane: {replicas: 11}}`,
		want: []string{"spec.controlPlane.replicas", "less than or equal to 10"}},
	{rule: "spec.controlPlane.logLevel enum", spec: `{controlPlane: {logLevel: trace}}`,
		want: []string{"spec.controlPlane.logLevel", `Unsupported value: "trace"`, `"debug", "info", "warn", "error"`}},
	{rule: "spec.controlPlane.image maxLength 512", spec: `{controlPlane: {image: registry.example/` + strings.Repeat("i", 500) + `}}`,
		want: []string{"spec.controlPlane.image", "Too long", "512"}},
	{rule: "spec.controlPlane.resources quantity", spec: `{controlPlane: {resources: {requests: {cpu: lots}}}}`,
		want: []string{"spec.controlPlane.resources.requests.cpu", "should match"}},
	{rule: "spec.ca.type enum", spec: `{ca: {type: Vault}}`,
		want: []string{"spec.ca.type", `Unsupported value: "Vault"`, `"SelfSigned", "Provided", "CertManager"`}},
	{rule: "spec.ca.provided.secretName required", spec: `{ca: {type: Provided, provided: {}}}`,
		want: []string{"spec.ca.provided.secretName", "Required value"}},
	{rule: "spec.ca.provided.secretName minLength 1", spec: `{ca: {type: Provided, provided: {secretName: ""}}}`,
		want: []string{"spec.ca.provided.secretName", "at least 1 chars long"}},
	{rule: "spec.ca.provided.secretName maxLength 253", spec: `{ca: {type: Provided, provided: {secretName: ` + strings.Repeat("s", 254) + `}}}`,
		want: []string{"spec.ca.provided.secretName", "Too long", "253"}},
	{rule: "spec.ca.certManager.issuerRef required", spec: `{ca: {type: CertManager, certManager: {}}}`,
		want: []string{"spec.ca.certManager.issuerRef", "Required value"}},
	{rule: "spec.ca.certManager.issuerRef.name required", spec: `{ca: {type: CertManager, certManager: {issuerRef: {kind: Issuer}}}}`,
		want: []string{"spec.ca.certManager.issuerRef.name", "Required value"}},
	{rule: "spec.ca.certManager.issuerRef.name minLength 1", spec: `{ca: {type: CertManager, certManager: {issuerRef: {name: ""}}}}`,
		want: []string{"spec.ca.certManager.issuerRef.name", "at least 1 chars long"}},
	{rule: "spec.ca.certManager.issuerRef.name maxLength 253", spec: `{ca: {type: CertManager, certManager: {issuerRef: {name: ` + strings.Repeat("i", 254) + `}}}}`,
		want: []string{"spec.ca.certManager.issuerRef.name", "Too long", "253"}},
	{rule: "spec.ca.certManager.issuerRef.kind enum", spec: `{ca: {type: CertManager, certManager: {issuerRef: {name: x, kind: Certificate}}}}`,
		want: []string{"spec.ca.certManager.issuerRef.kind", `Unsupported value: "Certificate"`, `"Issuer", "ClusterIssuer"`}},
	{rule: "spec.ca.certManager.issuerRef.group maxLength 253", spec: `{ca: {type: CertManager, certManager: {issuerRef: {name: x, group: ` + strings.Repeat("g", 254) + `}}}}`,
		want: []string{"spec.ca.certManager.issuerRef.group", "Too long", "253"}},
	{rule: "spec.injector.failurePolicy enum", spec: `{injector: {failurePolicy: Retry}}`,
		want: []string{"spec.injector.failurePolicy", `Unsupported value: "Retry"`, `"Fail", "Ignore"`}},
	{rule: "spec.injector.enabled is a boolean", spec: `{injector: {enabled: "yes"}}`,
		want: []string{"spec.injector.enabled", "must be of type boolean"}},
	{rule: "spec.gateways maxItems 16", build: func() map[string]any { return map[string]any{"gateways": gateways(17)} },
		want: []string{"spec.gateways", "Too many", "must have at most 16 items"}},
	{rule: "spec.gateways list-map key name is unique", spec: `{gateways: [{name: ingress}, {name: ingress, kind: egress}]}`,
		want: []string{"spec.gateways[1]", "Duplicate value"}},
	{rule: "spec.gateways[].name required", spec: `{gateways: [{kind: ingress}]}`,
		want: []string{"spec.gateways[0].name", "Required value"}},
	{rule: "spec.gateways[].name minLength 1", spec: `{gateways: [{name: ""}]}`,
		want: []string{"spec.gateways[0].name", "at least 1 chars long"}},
	{rule: "spec.gateways[].name maxLength 63", spec: `{gateways: [{name: ` + strings.Repeat("g", 64) + `}]}`,
		want: []string{"spec.gateways[0].name", "Too long", "63"}},
	{rule: "spec.gateways[].namespace maxLength 63", spec: `{gateways: [{name: ingress, namespace: ` + strings.Repeat("n", 64) + `}]}`,
		want: []string{"spec.gateways[0].namespace", "Too long", "63"}},
	{rule: "spec.gateways[].kind enum", spec: `{gateways: [{name: ingress, kind: sideways}]}`,
		want: []string{"spec.gateways[0].kind", `Unsupported value: "sideways"`, `"ingress", "egress"`}},
	{rule: "spec.gateways[].replicas minimum 0", spec: `{gateways: [{name: ingress, replicas: -1}]}`,
		want: []string{"spec.gateways[0].replicas", "greater than or equal to 0"}},
	{rule: "spec.gateways[].replicas maximum 100", spec: `{gateways: [{name: ingress, replicas: 101}]}`,
		want: []string{"spec.gateways[0].replicas", "less than or equal to 100"}},
	{rule: "spec.gateways[].service.type enum", spec: `{gateways: [{name: ingress, service: {type: ExternalName}}]}`,
		want: []string{"spec.gateways[0].service.type", `Unsupported value: "ExternalName"`, `"ClusterIP", "NodePort", "LoadBalancer"`}},
	{rule: "spec.gateways[].service.ports maxItems 32", build: func() map[string]any {
		return map[string]any{"gateways": []any{map[string]any{"name": "ingress", "service": map[string]any{"ports": ports(33)}}}}
	}, want: []string{"spec.gateways[0].service.ports", "Too many", "must have at most 32 items"}},
	{rule: "spec.gateways[].service.ports list-map key port is unique", spec: `{gateways: [{name: ingress, service: {ports: [{name: http, port: 80}, {name: http2, port: 80}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[1]", "Duplicate value"}},
	{rule: "spec.gateways[].service.ports[].port required", spec: `{gateways: [{name: ingress, service: {ports: [{name: http}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].port", "Required value"}},
	{rule: "spec.gateways[].service.ports[].name required", spec: `{gateways: [{name: ingress, service: {ports: [{port: 80}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].name", "Required value"}},
	{rule: "spec.gateways[].service.ports[].name maxLength 15", spec: `{gateways: [{name: ingress, service: {ports: [{name: http-0123456789ab, port: 80}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].name", "Too long", "15"}},
	{rule: "spec.gateways[].service.ports[].port minimum 1", spec: `{gateways: [{name: ingress, service: {ports: [{name: http, port: 0}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].port", "greater than or equal to 1"}},
	{rule: "spec.gateways[].service.ports[].port maximum 65535", spec: `{gateways: [{name: ingress, service: {ports: [{name: http, port: 65536}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].port", "less than or equal to 65535"}},
	{rule: "spec.gateways[].service.ports[].targetPort minimum 1024", spec: `{gateways: [{name: ingress, service: {ports: [{name: http, port: 80, targetPort: 80}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].targetPort", "greater than or equal to 1024"}},
	{rule: "spec.gateways[].service.ports[].targetPort maximum 65535", spec: `{gateways: [{name: ingress, service: {ports: [{name: http, port: 80, targetPort: 70000}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].targetPort", "less than or equal to 65535"}},
	{rule: "spec.gateways[].service.ports[].nodePort minimum 30000", spec: `{gateways: [{name: ingress, service: {type: NodePort, ports: [{name: http, port: 80, nodePort: 8080}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].nodePort", "greater than or equal to 30000"}},
	{rule: "spec.gateways[].service.ports[].nodePort maximum 32767", spec: `{gateways: [{name: ingress, service: {type: NodePort, ports: [{name: http, port: 80, nodePort: 40000}]}}]}`,
		want: []string{"spec.gateways[0].service.ports[0].nodePort", "less than or equal to 32767"}},
	{rule: "spec.meshConfig.trustDomain maxLength 255", spec: `{meshConfig: {trustDomain: ` + strings.Repeat("t", 256) + `}}`,
		want: []string{"spec.meshConfig.trustDomain", "Too long", "255"}},
	{rule: "spec.meshConfig.outboundTrafficPolicy enum", spec: `{meshConfig: {outboundTrafficPolicy: DENY}}`,
		want: []string{"spec.meshConfig.outboundTrafficPolicy", `Unsupported value: "DENY"`, `"ALLOW_ANY", "REGISTRY_ONLY"`}},
	{rule: "spec.meshConfig.accessLogging.encoding enum", spec: `{meshConfig: {accessLogging: {enabled: true, encoding: XML}}}`,
		want: []string{"spec.meshConfig.accessLogging.encoding", `Unsupported value: "XML"`, `"TEXT", "JSON"`}},
	{rule: "spec.meshConfig.accessLogging.format maxLength 4096", spec: `{meshConfig: {accessLogging: {enabled: true, format: ` + strings.Repeat("f", 4097) + `}}}`,
		want: []string{"spec.meshConfig.accessLogging.format", "Too long", "4096"}},
	{rule: "spec.meshConfig.discoverySelectors maxItems 32", build: func() map[string]any {
		sels := make([]any, 33)
		for i := range sels {
			sels[i] = map[string]any{"matchLabels": map[string]any{"mesh": fmt.Sprint(i)}}
		}
		return map[string]any{"meshConfig": map[string]any{"discoverySelectors": sels}}
	}, want: []string{"spec.meshConfig.discoverySelectors", "Too many", "must have at most 32 items"}},
	{rule: "spec.meshConfig.extensionProviders maxItems 32", build: func() map[string]any {
		ps := make([]any, 33)
		for i := range ps {
			ps[i] = map[string]any{"name": fmt.Sprintf("p-%d", i), "envoyExtAuthzGrpc": map[string]any{"service": "a/opa", "port": 9191}}
		}
		return map[string]any{"meshConfig": map[string]any{"extensionProviders": ps}}
	}, want: []string{"spec.meshConfig.extensionProviders", "Too many", "must have at most 32 items"}},
	{rule: "spec.meshConfig.extensionProviders list-map key name is unique",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzGrpc: {service: a/opa, port: 1}}, {name: opa, envoyExtAuthzHttp: {service: a/opa, port: 2}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[1]", "Duplicate value"}},
	{rule: "spec.meshConfig.extensionProviders[].name required", spec: `{meshConfig: {extensionProviders: [{envoyExtAuthzGrpc: {service: a/opa, port: 1}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].name", "Required value"}},
	{rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzHttp.service required", spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {port: 80}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.service", "Required value"}},
	{rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzGrpc.port maximum 65535", spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzGrpc: {service: a/opa, port: 65536}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzGrpc.port", "less than or equal to 65535"}},
	{rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzHttp.port minimum 1", spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {service: a/opa, port: 0}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.port", "greater than or equal to 1"}},
	{rule: "spec.meshConfig.extensionProviders[].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestBytes minimum 1",
		spec: `{meshConfig: {extensionProviders: [{name: opa, envoyExtAuthzHttp: {service: a/opa, port: 80, includeRequestBodyInCheck: {maxRequestBytes: 0}}}]}}`,
		want: []string{"spec.meshConfig.extensionProviders[0].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestBytes", "greater than or equal to 1"}},
	{rule: "spec.values is an object", spec: `{values: "replicas: 3"}`,
		want: []string{"spec.values", "must be of type object"}},
}

func TestCELRulesRefuse(t *testing.T)    { testRefusals(t, celRefusals) }
func TestSchemaRulesRefuse(t *testing.T) { testRefusals(t, schemaRefusals) }

func testRefusals(t *testing.T, cases []refusal) {
	for _, tc := range cases {
		t.Run(tc.rule, func(t *testing.T) {
			obj := tc.object(t)
			err := k8s.Create(context.Background(), obj, client.DryRunAll)
			if err == nil {
				t.Fatalf("accepted, want it refused by rule %q", tc.rule)
			}
			t.Logf("refused: %v", err)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want an Invalid (422) error, got %v", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error does not contain %q:\n%v", want, err)
				}
			}
			// A CEL rule that fails to evaluate (e.g. "no such key" on an
			// omitted field) refuses the object with a runtime error instead
			// of its message: the rule needs a has() guard.
			if strings.Contains(err.Error(), "evaluating rule") {
				t.Errorf("a CEL rule failed to evaluate instead of refusing with its message:\n%v", err)
			}
		})
	}
}

// TestValidEdgesAccepted checks the rules are not stricter than they say: values
// on the boundaries and every combination the CEL rules allow.
func TestValidEdgesAccepted(t *testing.T) {
	cases := []struct {
		name, metaName, spec string
		build                func() map[string]any
	}{
		{name: "name of 40 characters", metaName: strings.Repeat("a", 40), spec: `{}`},
		{name: "no spec at all", metaName: "nospec"},
		{name: "bounds", spec: `{namespace: ` + strings.Repeat("n", 63) + `, controlPlane: {replicas: 10, image: "registry.example:5000/meshd@sha256:0123"},
			updateStrategy: {type: RevisionBased, inactiveRevisionDeletionGracePeriodSeconds: 0},
			gateways: [{name: ` + strings.Repeat("g", 63) + `, replicas: 0}, {name: egress, kind: egress, replicas: 100, namespace: apps}],
			meshConfig: {trustDomain: "example.org_1", discoverySelectors: [{matchLabels: {mesh: "on"}}]}}`},
		{name: "ca Provided", spec: `{ca: {type: Provided, provided: {secretName: mesh.ca-1}}}`},
		{name: "ca CertManager", spec: `{ca: {type: CertManager, certManager: {issuerRef: {name: issuer, kind: ClusterIssuer, group: example.io}}}}`},
		{name: "ports with nodePorts", spec: `{gateways: [
			{name: lb, service: {ports: [{name: http2, port: 80, targetPort: 8080, nodePort: 30000}, {name: https, port: 443, nodePort: 32767}]}},
			{name: np, service: {type: NodePort, ports: [{name: http2, port: 80, nodePort: 31000}]}},
			{name: cip, service: {type: ClusterIP, ports: [{name: ` + strings.Repeat("p", 15) + `, port: 65535, targetPort: 1024}]}}]}`},
		{name: "16 gateways and 32 ports", build: func() map[string]any {
			gws := gateways(16)
			gws[0].(map[string]any)["service"] = map[string]any{"ports": ports(32)}
			return map[string]any{"gateways": gws}
		}},
		{name: "access log format when enabled", spec: `{meshConfig: {accessLogging: {enabled: true, encoding: JSON, format: "%START_TIME%"}}}`},
		{name: "extension providers", spec: `{meshConfig: {extensionProviders: [
			{name: opa-http, envoyExtAuthzHttp: {service: authz/opa, port: 8181, timeout: 1m0s, pathPrefix: /check, failOpen: true, statusOnError: "503",
				includeRequestHeadersInCheck: [authorization, "x-ext-*"], includeAdditionalHeadersInCheck: {x-mesh: meshplane},
				includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true, packAsBytes: true},
				headersToUpstreamOnAllow: [x-user], headersToDownstreamOnAllow: [set-cookie], headersToDownstreamOnDeny: ["*-reason"]}},
			{name: opa-grpc, envoyExtAuthzGrpc: {service: opa.authz.svc.cluster.local, port: 65535, timeout: 0.5s, statusOnError: "403"}}]}}`},
		{name: "values free-form", spec: `{values: {meshd: {env: [{name: A, value: b}]}, anything: 1}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.metaName
			if name == "" {
				name = "valid"
			}
			var obj *unstructured.Unstructured
			switch {
			case tc.build != nil:
				obj = mcpWithSpec(name, tc.build())
			case tc.spec != "":
				obj = mcp(t, name, tc.spec)
			default:
				obj = mcpWithSpec(name, nil)
			}
			if err := k8s.Create(context.Background(), obj, client.DryRunAll, client.FieldValidation("Strict")); err != nil {
				t.Fatalf("refused: %v", err)
			}
		})
	}
}

// TestNamespaceIsImmutable covers the transition rule on spec.namespace.
func TestNamespaceIsImmutable(t *testing.T) {
	ctx := context.Background()
	obj := mcp(t, "immutable-namespace", `{namespace: mesh-a}`)
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })

	const msg = "namespace is immutable; create a new MeshControlPlane to move the control plane"
	moved := obj.DeepCopy()
	_ = unstructured.SetNestedField(moved.Object, "mesh-b", "spec", "namespace")
	err := k8s.Update(ctx, moved)
	if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "spec.namespace") {
		t.Fatalf("changing spec.namespace: want Invalid with %q, got %v", msg, err)
	}

	// Removing the field defaults it to meshplane-system: also a move.
	unset := obj.DeepCopy()
	unstructured.RemoveNestedField(unset.Object, "spec", "namespace")
	if err := k8s.Update(ctx, unset); err == nil || !strings.Contains(err.Error(), msg) {
		t.Fatalf("removing spec.namespace: want %q, got %v", msg, err)
	}

	// Everything else can still change, and the same namespace may be restated.
	changed := obj.DeepCopy()
	_ = unstructured.SetNestedField(changed.Object, int64(3), "spec", "controlPlane", "replicas")
	_ = unstructured.SetNestedField(changed.Object, "mesh-a", "spec", "namespace")
	if err := k8s.Update(ctx, changed); err != nil {
		t.Fatalf("updating another field: %v", err)
	}
}

func TestStatusStateEnum(t *testing.T) {
	ctx := context.Background()
	obj := &v1alpha1.MeshControlPlane{}
	obj.Name = "status-enum"
	if err := k8s.Create(ctx, obj); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
	obj.Status.State = "Exploded"
	err := k8s.Status().Update(ctx, obj)
	if err == nil || !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "status.state") || !strings.Contains(err.Error(), `Unsupported value: "Exploded"`) {
		t.Fatalf("want status.state refused as an unsupported value, got %v", err)
	}
}

func TestSampleIsAccepted(t *testing.T) {
	root, err := harness.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(root, "config", "samples", "meshcontrolplane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal(data, &obj.Object); err != nil {
		t.Fatal(err)
	}
	// Strict: a field the CRD does not know is an error, not silently dropped.
	if err := k8s.Create(context.Background(), obj, client.FieldValidation("Strict")); err != nil {
		t.Fatalf("the sample is refused: %v", err)
	}
	_ = k8s.Delete(context.Background(), obj)
}

// wantDefaults are the documented defaults, by path ("[]" for every list
// element). A nil value is an object default: the field must be present.
var wantDefaults = map[string]any{
	"spec":                     nil,
	"spec.version":             v1alpha1.DefaultVersion,
	"spec.namespace":           "meshplane-system",
	"spec.updateStrategy":      nil,
	"spec.updateStrategy.type": "InPlace",
	"spec.updateStrategy.inactiveRevisionDeletionGracePeriodSeconds": 30,
	"spec.controlPlane":                      nil,
	"spec.controlPlane.replicas":             1,
	"spec.controlPlane.logLevel":             "info",
	"spec.ca":                                nil,
	"spec.ca.type":                           "SelfSigned",
	"spec.ca.certManager.issuerRef.kind":     "Issuer",
	"spec.ca.certManager.issuerRef.group":    "cert-manager.io",
	"spec.injector":                          nil,
	"spec.injector.enabled":                  true,
	"spec.injector.failurePolicy":            "Fail",
	"spec.gateways[].kind":                   "ingress",
	"spec.gateways[].replicas":               1,
	"spec.gateways[].service":                nil,
	"spec.meshConfig":                        nil,
	"spec.meshConfig.trustDomain":            "cluster.local",
	"spec.meshConfig.outboundTrafficPolicy":  "ALLOW_ANY",
	"spec.meshConfig.accessLogging":          nil,
	"spec.meshConfig.accessLogging.encoding": "TEXT",
}

// TestDefaults applies nearly empty MeshControlPlanes and checks that every
// default the CRD declares comes back with the documented value, and that the
// CRD declares no default this test does not know about.
func TestDefaults(t *testing.T) {
	crd := readCRD(t)
	declared := map[string]any{}
	collectDefaults(t, "", crdSchema(t, crd), declared)

	for path := range declared {
		if _, ok := wantDefaults[path]; !ok {
			t.Errorf("the CRD declares a default at %s (%s) that this test does not check: add it to wantDefaults", path, asJSON(declared[path]))
		}
	}
	for path, want := range wantDefaults {
		got, ok := declared[path]
		if !ok {
			t.Errorf("wantDefaults has %s, but the CRD declares no default there", path)
			continue
		}
		if want != nil && asJSON(got) != asJSON(want) {
			t.Errorf("the CRD's default at %s is %s, want %s", path, asJSON(got), asJSON(want))
		}
	}

	ctx := context.Background()
	// Between them these reach every default: the empty ones the top-level ones,
	// the other the defaults inside list elements and optional objects.
	objects := []*unstructured.Unstructured{
		mcpWithSpec("defaults-no-spec", nil),
		mcp(t, "defaults-empty-spec", `{}`),
		mcp(t, "defaults-nested", `{ca: {type: CertManager, certManager: {issuerRef: {name: issuer}}}, gateways: [{name: ingress}]}`),
	}
	submitted := map[string]map[string]any{}
	for _, obj := range objects {
		submitted[obj.GetName()] = obj.DeepCopy().Object
		if err := k8s.Create(ctx, obj); err != nil {
			t.Fatalf("creating %s: %v", obj.GetName(), err)
		}
		t.Cleanup(func() { _ = k8s.Delete(ctx, obj) })
	}
	paths := make([]string, 0, len(wantDefaults))
	for p := range wantDefaults {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, path := range paths {
		want := wantDefaults[path]
		checked := false
		for _, obj := range objects {
			got, parentPresent := lookup(obj.Object, path)
			if !parentPresent {
				continue // the object does not reach this default
			}
			if set, _ := lookup(submitted[obj.GetName()], path); set != nil {
				continue // the object sets the field itself
			}
			checked = true
			switch {
			case got == nil:
				t.Errorf("%s: %s not defaulted", obj.GetName(), path)
			case want == nil:
				if _, isObject := got.(map[string]any); !isObject {
					t.Errorf("%s: %s = %s, want an object", obj.GetName(), path, asJSON(got))
				}
			case asJSON(got) != asJSON(want):
				t.Errorf("%s: %s = %s, want the default %s", obj.GetName(), path, asJSON(got), asJSON(want))
			}
		}
		if !checked {
			t.Errorf("no test object reaches %s: extend the objects in TestDefaults", path)
		}
	}

	// The typed view agrees.
	var typed v1alpha1.MeshControlPlane
	if err := k8s.Get(ctx, client.ObjectKey{Name: "defaults-no-spec"}, &typed); err != nil {
		t.Fatal(err)
	}
	if s := typed.Spec; s.Version != v1alpha1.DefaultVersion || s.ControlPlane.Replicas == nil || *s.ControlPlane.Replicas != 1 ||
		s.Injector.Enabled == nil || !*s.Injector.Enabled || s.CA.Type != v1alpha1.CATypeSelfSigned || s.UpdateStrategy.Type != v1alpha1.UpdateStrategyInPlace {
		t.Errorf("typed defaults wrong: %+v", s)
	}
}

// TestVersionEnumMatchesSupportedVersions guards the literal enum marker on
// spec.version against v1alpha1.SupportedVersions.
func TestVersionEnumMatchesSupportedVersions(t *testing.T) {
	version := crdSchema(t, readCRD(t)).Properties["spec"].Properties["version"]
	var enum []string
	for _, v := range version.Enum {
		var s string
		if err := json.Unmarshal(v.Raw, &s); err != nil {
			t.Fatalf("enum value %s: %v", v.Raw, err)
		}
		enum = append(enum, s)
	}
	if !slices.Equal(enum, v1alpha1.SupportedVersions) {
		t.Errorf("the CRD's spec.version enum is %q but v1alpha1.SupportedVersions is %q: update the +kubebuilder:validation:Enum marker on Version and run `make manifests`",
			enum, v1alpha1.SupportedVersions)
	}
	if version.Default == nil || string(version.Default.Raw) != asJSON(v1alpha1.DefaultVersion) {
		t.Errorf("the CRD's spec.version default is %v, want %q (v1alpha1.DefaultVersion)", version.Default, v1alpha1.DefaultVersion)
	}
	if !slices.Contains(v1alpha1.SupportedVersions, v1alpha1.DefaultVersion) {
		t.Errorf("DefaultVersion %q is not in SupportedVersions %q", v1alpha1.DefaultVersion, v1alpha1.SupportedVersions)
	}
}

func readCRD(t *testing.T) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	dir, err := harness.CRDDir()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, crdFile))
	if err != nil {
		t.Fatal(err)
	}
	crd := &apiextensionsv1.CustomResourceDefinition{}
	if err := yaml.UnmarshalStrict(data, crd); err != nil {
		t.Fatalf("%s: %v", crdFile, err)
	}
	return crd
}

func crdSchema(t *testing.T, crd *apiextensionsv1.CustomResourceDefinition) apiextensionsv1.JSONSchemaProps {
	t.Helper()
	for _, v := range crd.Spec.Versions {
		if v.Name == v1alpha1.GroupVersion.Version && v.Schema != nil && v.Schema.OpenAPIV3Schema != nil {
			return *v.Schema.OpenAPIV3Schema
		}
	}
	t.Fatalf("%s has no schema for %s", crdFile, v1alpha1.GroupVersion.Version)
	return apiextensionsv1.JSONSchemaProps{}
}

// collectDefaults records the default of every property under s, by path.
func collectDefaults(t *testing.T, path string, s apiextensionsv1.JSONSchemaProps, into map[string]any) {
	if s.Default != nil {
		var v any
		if err := json.Unmarshal(s.Default.Raw, &v); err != nil {
			t.Fatalf("default at %s: %v", path, err)
		}
		into[path] = v
	}
	for name, p := range s.Properties {
		if path == "" && (name == "metadata" || name == "status") {
			continue
		}
		child := name
		if path != "" {
			child = path + "." + name
		}
		collectDefaults(t, child, p, into)
	}
	if s.Items != nil && s.Items.Schema != nil {
		collectDefaults(t, path+"[]", *s.Items.Schema, into)
	}
}

// lookup returns the value at path in obj ("[]" takes the first element) and
// whether the parent of the last element exists.
func lookup(obj map[string]any, path string) (value any, parentPresent bool) {
	var cur any = obj
	parts := strings.Split(path, ".")
	for i, part := range parts {
		list := strings.HasSuffix(part, "[]")
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		cur, ok = m[strings.TrimSuffix(part, "[]")]
		if i == len(parts)-1 && !list {
			return cur, true
		}
		if !ok {
			return nil, false
		}
		if list {
			l, ok := cur.([]any)
			if !ok || len(l) == 0 {
				return nil, false
			}
			cur = l[0]
			if i == len(parts)-1 {
				return cur, true
			}
		}
	}
	return cur, true
}

func asJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprintf("%v", v)
	}
	return string(b)
}
