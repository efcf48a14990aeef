package render

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/internal/meshd"

	"github.com/meshplane/meshplane/internal/golden"
)

// Regenerate golden files with UPDATE_GOLDEN=1 go test ./internal/render/
// (or -update), then review the diff as you would review code.

const sampleInput = "../../config/samples/meshcontrolplane.yaml"

// goldenCases maps each case name to its input: the repository's sample, and
// every testdata/<case>.input.yaml.
func goldenCases(t *testing.T) map[string]string {
	t.Helper()
	cases := map[string]string{"sample": sampleInput}
	inputs, err := filepath.Glob("testdata/*.input.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, in := range inputs {
		cases[strings.TrimSuffix(filepath.Base(in), ".input.yaml")] = in
	}
	return cases
}

func TestGolden(t *testing.T) {
	r := newTestRenderer(t)
	for name, input := range goldenCases(t) {
		t.Run(name, func(t *testing.T) {
			got := toYAML(t, mustRender(t, r, readMCP(t, input)))
			golden.Check(t, filepath.Join("testdata", name+".golden.yaml"), got)
		})
	}
}

// Every golden input must also produce objects the API server would accept
// field for field: a misspelt field in a template would otherwise be dropped
// silently by server-side apply or rejected only on a real cluster.
func TestRenderedObjectsDecodeStrictly(t *testing.T) {
	r := newTestRenderer(t)
	for name, input := range goldenCases(t) {
		for _, obj := range mustRender(t, r, readMCP(t, input)) {
			typed := typedObject(t, obj)
			if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(obj.Object, typed, true); err != nil {
				t.Errorf("%s: %s %s: %v", name, obj.GetKind(), obj.GetName(), err)
			}
		}
	}
}

func TestEveryObjectIsLabelled(t *testing.T) {
	r := newTestRenderer(t)
	mcp := readMCP(t, "testdata/two-gateways.input.yaml")
	for _, obj := range mustRender(t, r, mcp) {
		want := map[string]string{
			v1alpha1.LabelManagedBy:        v1alpha1.ManagedByOperator,
			"app.kubernetes.io/part-of":    "meshplane",
			"app.kubernetes.io/version":    "v0.1.0",
			v1alpha1.LabelMeshControlPlane: mcp.Name,
			v1alpha1.LabelRevision:         Revision(mcp),
		}
		for k, v := range want {
			if got := obj.GetLabels()[k]; got != v {
				t.Errorf("%s %s/%s: label %s = %q, want %q", obj.GetKind(), obj.GetNamespace(), obj.GetName(), k, got, v)
			}
		}
		wantComponent := v1alpha1.ComponentControlPlane
		switch {
		case strings.Contains(obj.GetName(), "ingress"):
			wantComponent = v1alpha1.ComponentIngressGateway
		case strings.Contains(obj.GetName(), "egress"):
			wantComponent = v1alpha1.ComponentEgressGateway
		}
		if got := ComponentOf(obj); got != wantComponent {
			t.Errorf("%s %s: component %q, want %q", obj.GetKind(), obj.GetName(), got, wantComponent)
		}
	}
}

func TestApplyOrder(t *testing.T) {
	r := newTestRenderer(t)
	objs := mustRender(t, r, readMCP(t, "testdata/two-gateways.input.yaml"))
	last := -1
	for _, obj := range objs {
		i := kindIndex(obj.GroupVersionKind().GroupKind())
		if i < last {
			t.Errorf("%s %s comes after a %s", obj.GetKind(), obj.GetName(), applyOrder[last].gk.Kind)
		}
		last = i
	}
	if got := objs[len(objs)-1].GetKind(); got != "ValidatingWebhookConfiguration" {
		t.Errorf("last object is a %s, want the ValidatingWebhookConfiguration", got)
	}
}

func TestNaming(t *testing.T) {
	r := newTestRenderer(t)
	for _, tc := range []struct {
		mcp, meshd string
	}{
		{"default", "meshd"},
		{"canary", "meshd-canary"},
	} {
		objs := mustRender(t, r, &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: tc.mcp}})
		want := map[string]string{
			"ServiceAccount":                 tc.meshd,
			"ConfigMap":                      tc.meshd + "-mesh-config",
			"ClusterRole":                    "meshplane-meshd-" + tc.mcp,
			"ClusterRoleBinding":             "meshplane-meshd-" + tc.mcp,
			"Role":                           tc.meshd,
			"RoleBinding":                    tc.meshd,
			"Service":                        tc.meshd,
			"Deployment":                     tc.meshd,
			"MutatingWebhookConfiguration":   "meshplane-sidecar-injector-" + tc.mcp,
			"ValidatingWebhookConfiguration": "meshplane-validator-" + tc.mcp,
		}
		if len(objs) != len(want) {
			t.Fatalf("%s: rendered %d objects, want %d", tc.mcp, len(objs), len(want))
		}
		for _, obj := range objs {
			if obj.GetName() != want[obj.GetKind()] {
				t.Errorf("%s: %s named %q, want %q", tc.mcp, obj.GetKind(), obj.GetName(), want[obj.GetKind()])
			}
			namespaced, err := IsNamespaced(obj.GroupVersionKind().GroupKind())
			if err != nil {
				t.Fatal(err)
			}
			if wantNS := map[bool]string{true: DefaultNamespace}[namespaced]; obj.GetNamespace() != wantNS {
				t.Errorf("%s: %s in namespace %q, want %q", tc.mcp, obj.GetKind(), obj.GetNamespace(), wantNS)
			}
		}
	}
}

func TestGatewayNamespaceDefaultsToControlPlane(t *testing.T) {
	r := newTestRenderer(t)
	mcp := readMCP(t, "testdata/two-gateways.input.yaml")
	for _, obj := range mustRender(t, r, mcp) {
		if ComponentOf(obj) == v1alpha1.ComponentEgressGateway && obj.GetNamespace() != mcp.Spec.Namespace {
			t.Errorf("egress %s %s in namespace %q, want the control-plane namespace %q",
				obj.GetKind(), obj.GetName(), obj.GetNamespace(), mcp.Spec.Namespace)
		}
	}
}

func TestRenderIsDeterministic(t *testing.T) {
	mcp := readMCP(t, "testdata/two-gateways.input.yaml")
	first := toYAML(t, mustRender(t, newTestRenderer(t), mcp))
	r := newTestRenderer(t)
	for range 5 {
		if again := toYAML(t, mustRender(t, r, mcp)); !bytes.Equal(first, again) {
			t.Fatalf("rendering twice gave different output:\n%s", golden.Diff(string(first), string(again)))
		}
	}
}

func TestRenderDoesNotModifyInput(t *testing.T) {
	mcp := readMCP(t, "testdata/values-override.input.yaml")
	before := mcp.DeepCopy()
	mustRender(t, newTestRenderer(t), mcp)
	if !equalJSON(t, before, mcp) {
		t.Error("Render modified the MeshControlPlane it was given")
	}
}

func TestUnknownVersion(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Version = "v9.9.9"
	_, err := newTestRenderer(t).Render(mcp)
	if err == nil || !strings.Contains(err.Error(), `"v9.9.9"`) || !strings.Contains(err.Error(), v1alpha1.DefaultVersion) {
		t.Fatalf("Render with version v9.9.9: error %v, want one naming the version and the supported ones", err)
	}
}

func TestRenderRejectsBadInput(t *testing.T) {
	r := newTestRenderer(t)
	if _, err := r.Render(nil); err == nil {
		t.Error("Render(nil) succeeded")
	}
	if _, err := r.Render(&v1alpha1.MeshControlPlane{}); err == nil {
		t.Error("Render of a nameless MeshControlPlane succeeded")
	}
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(`[1, 2]`)}
	if _, err := r.Render(mcp); err == nil || !strings.Contains(err.Error(), "spec.values") {
		t.Errorf("Render with a list as spec.values: error %v, want one about spec.values", err)
	}
	mcp.Spec.Gateways = []v1alpha1.GatewaySpec{{Name: "a"}, {Name: "b"}}
	mcp.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(`{"gateway": {"name": "same"}}`)}
	if _, err := r.Render(mcp); err == nil || !strings.Contains(err.Error(), "same") {
		t.Errorf("Render giving two gateways one name: error %v, want one naming the duplicate", err)
	}
}

func TestUserValuesWin(t *testing.T) {
	mcp := readMCP(t, "testdata/values-override.input.yaml")
	objs := mustRender(t, newTestRenderer(t), mcp)

	meshd := typedDeployment(t, find(t, objs, "Deployment", "meshd"))
	if got := *meshd.Spec.Replicas; got != 2 || *mcp.Spec.ControlPlane.Replicas == 2 {
		t.Errorf("meshd replicas = %d; want spec.values' 2 to win over spec.controlPlane.replicas %d", got, *mcp.Spec.ControlPlane.Replicas)
	}
	if got := meshd.Spec.Template.Spec.Containers[0].Image; got != "mirror.example.com/meshplane/meshd:v0.1.0" {
		t.Errorf("meshd image = %q, want the one from spec.values", got)
	}
	// A table in spec.values merges into the computed one instead of replacing it.
	res := meshd.Spec.Template.Spec.Containers[0].Resources
	if res.Limits.Memory().String() != "1Gi" || res.Requests.Cpu().String() != "100m" {
		t.Errorf("meshd resources = %v; want the computed requests plus the limit from spec.values", res)
	}

	// spec.values.gateways.<name> wins over spec.values.gateway, which wins over spec.gateways.
	ingress := typedDeployment(t, find(t, objs, "Deployment", "istio-ingressgateway"))
	if got := *ingress.Spec.Replicas; got != 3 {
		t.Errorf("ingress replicas = %d, want 3 from spec.values.gateways.istio-ingressgateway", got)
	}
	if got := ingress.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(); got != "500m" {
		t.Errorf("ingress CPU request = %s, want 500m from spec.values.gateways.istio-ingressgateway", got)
	}
	egress := typedDeployment(t, find(t, objs, "Deployment", "istio-egressgateway"))
	if got := *egress.Spec.Replicas; got != 2 {
		t.Errorf("egress replicas = %d, want 2 from spec.values.gateway", got)
	}
	if got := egress.Spec.Template.Spec.Containers[0].Resources.Requests.Cpu().String(); got != "200m" {
		t.Errorf("egress CPU request = %s, want 200m from spec.values.gateway", got)
	}
}

// The operator finds its objects through the ownership label; no value may move it.
func TestValuesCannotChangeOwnershipLabel(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(`{"revision": "other", "meshControlPlane": "other", "Release": {"Name": "other"}}`)}
	for _, obj := range mustRender(t, newTestRenderer(t), mcp) {
		if got := obj.GetLabels()[v1alpha1.LabelMeshControlPlane]; got != "default" {
			t.Errorf("%s %s: %s = %q, want default", obj.GetKind(), obj.GetName(), v1alpha1.LabelMeshControlPlane, got)
		}
	}
}

func TestGatewayTargetPorts(t *testing.T) {
	mcp := readMCP(t, "testdata/two-gateways.input.yaml")
	objs := mustRender(t, newTestRenderer(t), mcp)
	for _, gw := range mcp.Spec.Gateways {
		svc := &corev1.Service{}
		fromUnstructured(t, find(t, objs, "Service", gw.Name), svc)
		dep := typedDeployment(t, find(t, objs, "Deployment", gw.Name))
		containerPorts := map[int32]bool{}
		for _, p := range dep.Spec.Template.Spec.Containers[0].Ports {
			containerPorts[p.ContainerPort] = true
		}
		for _, p := range svc.Spec.Ports {
			target := p.TargetPort.IntVal
			if target < 1024 {
				t.Errorf("%s port %d targets privileged port %d", gw.Name, p.Port, target)
			}
			if !containerPorts[target] {
				t.Errorf("%s port %d targets %d, which the container does not declare", gw.Name, p.Port, target)
			}
		}
		if !containerPorts[15021] {
			t.Errorf("%s container does not declare the status port 15021", gw.Name)
		}
	}
}

func TestGatewayDefaults(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Gateways = []v1alpha1.GatewaySpec{{Name: "in"}, {Name: "out", Kind: v1alpha1.GatewayKindEgress}}
	objs := mustRender(t, newTestRenderer(t), mcp)
	for _, tc := range []struct {
		name  string
		typ   corev1.ServiceType
		ports string
	}{
		{"in", corev1.ServiceTypeLoadBalancer, "http2:80->8080 https:443->8443 status-port:15021->15021"},
		{"out", corev1.ServiceTypeClusterIP, "http2:80->8080 https:443->8443"},
	} {
		svc := &corev1.Service{}
		fromUnstructured(t, find(t, objs, "Service", tc.name), svc)
		var ports []string
		for _, p := range svc.Spec.Ports {
			ports = append(ports, fmt.Sprintf("%s:%d->%s", p.Name, p.Port, p.TargetPort.String()))
		}
		if svc.Spec.Type != tc.typ || strings.Join(ports, " ") != tc.ports {
			t.Errorf("gateway %s: Service %s with %s, want %s with %s", tc.name, svc.Spec.Type, ports, tc.typ, tc.ports)
		}
	}
}

// The bootstrap must point Envoy at meshd's xDS port and serve the path the
// readiness probe asks for; nothing else checks either without a real Envoy.
func TestGatewayBootstrap(t *testing.T) {
	mcp := readMCP(t, "testdata/revision.input.yaml")
	objs := mustRender(t, newTestRenderer(t), mcp)
	gw := mcp.Spec.Gateways[0].Name
	cm := &corev1.ConfigMap{}
	fromUnstructured(t, find(t, objs, "ConfigMap", gw+"-bootstrap"), cm)
	var bootstrap map[string]any
	if err := yaml.UnmarshalStrict([]byte(cm.Data["bootstrap.yaml"]), &bootstrap); err != nil {
		t.Fatalf("bootstrap.yaml is not YAML: %v", err)
	}
	text := cm.Data["bootstrap.yaml"]
	wantXDS := fmt.Sprintf("address: meshd-%s.%s.svc\n", mcp.Name, mcp.Spec.Namespace)
	if !strings.Contains(text, wantXDS) || !strings.Contains(text, "port_value: 15010") {
		t.Errorf("bootstrap does not point at %s:15010:\n%s", strings.TrimSpace(wantXDS), text)
	}
	probe := typedDeployment(t, find(t, objs, "Deployment", gw)).Spec.Template.Spec.Containers[0].ReadinessProbe.HTTPGet
	if !strings.Contains(text, "path: "+probe.Path) || !strings.Contains(text, fmt.Sprintf("port_value: %d", probe.Port.IntVal)) {
		t.Errorf("readiness probe %s on %d is not served by the bootstrap", probe.Path, probe.Port.IntVal)
	}
}

// The bootstrap checksum rolls the gateway when, and only when, its bootstrap changes.
func TestGatewayBootstrapChecksum(t *testing.T) {
	r := newTestRenderer(t)
	checksum := func(mcp *v1alpha1.MeshControlPlane) string {
		dep := find(t, mustRender(t, r, mcp), "Deployment", "gw")
		return typedDeployment(t, dep).Spec.Template.Annotations["operator.meshplane.io/bootstrap-checksum"]
	}
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Gateways = []v1alpha1.GatewaySpec{{Name: "gw"}}
	base := checksum(mcp)
	if base == "" {
		t.Fatal("gateway pod template has no bootstrap checksum")
	}
	mcp.Spec.Gateways[0].Replicas = ptrTo[int32](4)
	if got := checksum(mcp); got != base {
		t.Error("checksum changed although the bootstrap did not")
	}
	mcp.Name = "canary" // a different xDS server
	if got := checksum(mcp); got == base {
		t.Error("checksum did not change with the bootstrap")
	}
}

func TestCertManagerCAGrantsCertificateRequests(t *testing.T) {
	for _, tc := range []struct {
		input string
		want  bool
	}{
		{sampleInput, false},
		{"testdata/revision.input.yaml", true},
	} {
		mcp := readMCP(t, tc.input)
		role := &rbacv1.Role{}
		fromUnstructured(t, find(t, mustRender(t, newTestRenderer(t), mcp), "Role", MeshdName(mcp.Name)), role)
		got := false
		for _, rule := range role.Rules {
			got = got || (len(rule.APIGroups) == 1 && rule.APIGroups[0] == "cert-manager.io")
		}
		if got != tc.want {
			t.Errorf("%s (ca %s): Role grants cert-manager.io = %v, want %v", tc.input, mcp.Spec.CA.Type, got, tc.want)
		}
	}
}

func TestParseManifestErrors(t *testing.T) {
	for _, tc := range []struct {
		doc, want string
	}{
		{"kind: ConfigMap\nmetadata: {name: x}\n", "no apiVersion"},
		{"apiVersion: v1\nmetadata: {name: x}\n", "no kind"},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {}\n", "no metadata.name"},
		{"apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n", "not rendered"},
		{"apiVersion: v1\nkind: ConfigMap\nkind: ConfigMap\nmetadata: {name: x}\n", "already set"},
	} {
		_, err := parseManifest("templates/broken.yaml", "---\n# empty\n---\n"+tc.doc, "ns")
		if err == nil || !strings.Contains(err.Error(), "templates/broken.yaml") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parsing %q: error %v, want one naming the template and saying %q", tc.doc, err, tc.want)
		}
	}
	if _, err := IsNamespaced(schema.GroupKind{Kind: "Pod"}); !errors.Is(err, ErrUnknownKind) {
		t.Errorf("IsNamespaced(Pod) error = %v, want ErrUnknownKind", err)
	}
}

func TestParseManifestScope(t *testing.T) {
	objs, err := parseManifest("t.yaml", `
apiVersion: v1
kind: ConfigMap
metadata: {name: a, namespace: elsewhere}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: b, namespace: elsewhere}
`, "ns")
	if err != nil {
		t.Fatal(err)
	}
	if objs[0].GetNamespace() != "ns" || objs[1].GetNamespace() != "" {
		t.Errorf("namespaces = %q, %q; want ns for the ConfigMap and none for the ClusterRole",
			objs[0].GetNamespace(), objs[1].GetNamespace())
	}
}

// --- helpers ---

func newTestRenderer(t *testing.T) *Renderer {
	t.Helper()
	r, err := NewRenderer()
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func mustRender(t *testing.T, r *Renderer, mcp *v1alpha1.MeshControlPlane) []*unstructured.Unstructured {
	t.Helper()
	objs, err := r.Render(mcp)
	if err != nil {
		t.Fatalf("Render(%s): %v", mcp.Name, err)
	}
	return objs
}

func readMCP(t *testing.T, path string) *v1alpha1.MeshControlPlane {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	mcp := &v1alpha1.MeshControlPlane{}
	if err := yaml.UnmarshalStrict(data, mcp); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return mcp
}

// toYAML writes objects as one multi-document YAML stream.
func toYAML(t *testing.T, objs []*unstructured.Unstructured) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, obj := range objs {
		data, err := yaml.Marshal(obj.Object)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("---\n")
		buf.Write(data)
	}
	return buf.Bytes()
}

func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	for _, obj := range objs {
		if obj.GetKind() == kind && obj.GetName() == name {
			return obj
		}
	}
	t.Fatalf("no %s %s rendered", kind, name)
	return nil
}

func typedObject(t *testing.T, obj *unstructured.Unstructured) any {
	t.Helper()
	switch obj.GetKind() {
	case "ServiceAccount":
		return &corev1.ServiceAccount{}
	case "ConfigMap":
		return &corev1.ConfigMap{}
	case "Service":
		return &corev1.Service{}
	case "ClusterRole":
		return &rbacv1.ClusterRole{}
	case "ClusterRoleBinding":
		return &rbacv1.ClusterRoleBinding{}
	case "Role":
		return &rbacv1.Role{}
	case "RoleBinding":
		return &rbacv1.RoleBinding{}
	case "Deployment":
		return &appsv1.Deployment{}
	case "MutatingWebhookConfiguration":
		return &admissionregistrationv1.MutatingWebhookConfiguration{}
	case "ValidatingWebhookConfiguration":
		return &admissionregistrationv1.ValidatingWebhookConfiguration{}
	}
	t.Fatalf("no typed object for kind %s", obj.GetKind())
	return nil
}

func fromUnstructured(t *testing.T, obj *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructured(obj.Object, into); err != nil {
		t.Fatalf("%s %s: %v", obj.GetKind(), obj.GetName(), err)
	}
}

func typedDeployment(t *testing.T, obj *unstructured.Unstructured) *appsv1.Deployment {
	t.Helper()
	d := &appsv1.Deployment{}
	fromUnstructured(t, obj, d)
	return d
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	ja, err := yaml.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	jb, err := yaml.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(ja, jb)
}

func ptrTo[T any](v T) *T { return &v }

// A null in spec.values removes a value, computed or chart default, as with helm --values.
func TestUserValuesNullRemoves(t *testing.T) {
	mcp := &v1alpha1.MeshControlPlane{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	mcp.Spec.Gateways = []v1alpha1.GatewaySpec{{Name: "gw"}}
	mcp.Spec.Values = &apiextensionsv1.JSON{Raw: []byte(`{"meshd": {"resources": null}, "gateway": {"resources": null}}`)}
	objs := mustRender(t, newTestRenderer(t), mcp)
	for _, name := range []string{"meshd", "gw"} {
		res := typedDeployment(t, find(t, objs, "Deployment", name)).Spec.Template.Spec.Containers[0].Resources
		if len(res.Requests) != 0 || len(res.Limits) != 0 {
			t.Errorf("%s resources = %v, want none", name, res)
		}
	}
}

// The mesh.yaml the chart writes must be one meshd accepts: meshd decodes it
// strictly and refuses a config for another revision, so a drift between the
// chart and meshd would keep meshd unready on every cluster.
func TestMeshConfigIsAcceptedByMeshd(t *testing.T) {
	r := newTestRenderer(t)
	for name, input := range goldenCases(t) {
		mcp := readMCP(t, input)
		cm := &corev1.ConfigMap{}
		fromUnstructured(t, find(t, mustRender(t, r, mcp), "ConfigMap", MeshdName(Revision(mcp))+"-mesh-config"), cm)
		if _, err := meshd.ParseMeshConfig([]byte(cm.Data["mesh.yaml"]), Revision(mcp)); err != nil {
			t.Errorf("%s: meshd refuses the rendered mesh.yaml: %v\n%s", name, err, cm.Data["mesh.yaml"])
		}
	}
}
