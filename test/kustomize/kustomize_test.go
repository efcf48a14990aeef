// Package kustomize_test builds the kustomize layouts under config/ the way
// `kubectl apply -k` does and checks that the result deploys the operator: every
// object is a valid typed Kubernetes object, names and references line up, the
// operator has the permissions it needs, and its Deployment matches what the
// binary (cmd/operator) serves. No API server is involved.
package kustomize_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

const (
	modulePath = "github.com/meshplane/meshplane"

	// operatorNamespace is where config/default installs the operator.
	operatorNamespace = "meshplane-operator"
	// managerRole is the ClusterRole `make manifests` generates (rbac:roleName).
	managerRole = "meshplane-operator-manager"
	// crdName is the CustomResourceDefinition of MeshControlPlane.
	crdName = "meshcontrolplanes.operator.meshplane.io"
	// operatorMain is the operator binary whose flag defaults the Deployment relies on.
	operatorMain = "cmd/operator/main.go"
)

// clusterScoped and namespaced classify the kinds config/ may produce. A kind
// in neither makes the tests fail until it is classified here.
var (
	clusterScoped = map[schema.GroupKind]bool{
		{Kind: "Namespace"}:                                                             true,
		{Group: rbacv1.GroupName, Kind: "ClusterRole"}:                                  true,
		{Group: rbacv1.GroupName, Kind: "ClusterRoleBinding"}:                           true,
		{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}:               true,
		{Group: "admissionregistration.k8s.io", Kind: "MutatingWebhookConfiguration"}:   true,
		{Group: "admissionregistration.k8s.io", Kind: "ValidatingWebhookConfiguration"}: true,
		{Group: v1alpha1.GroupVersion.Group, Kind: "MeshControlPlane"}:                  true,
	}
	namespaced = map[schema.GroupKind]bool{
		{Kind: "ServiceAccount"}:                       true,
		{Kind: "Service"}:                              true,
		{Kind: "ConfigMap"}:                            true,
		{Kind: "Secret"}:                               true,
		{Group: rbacv1.GroupName, Kind: "Role"}:        true,
		{Group: rbacv1.GroupName, Kind: "RoleBinding"}: true,
		{Group: appsv1.GroupName, Kind: "Deployment"}:  true,
	}
)

// scheme knows every typed object config/ may contain: the built-in kinds,
// CustomResourceDefinitions and the project's own API.
var scheme = func() *runtime.Scheme {
	s := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, apiextensionsv1.AddToScheme, v1alpha1.AddToScheme,
	} {
		if err := add(s); err != nil {
			panic(err)
		}
	}
	return s
}()

// strict decodes YAML into typed objects and fails on unknown or duplicate
// fields, which the API server would otherwise drop or reject.
var strict = json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme, scheme,
	json.SerializerOptions{Yaml: true, Strict: true})

// moduleRoot is the root of the main module; `go test` runs in test/kustomize.
func moduleRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mod), "module "+modulePath+"\n") {
		t.Fatalf("%s is not the root of module %s", root, modulePath)
	}
	return root
}

// build runs kustomize on <module root>/<dir> and decodes every object it
// produces strictly into its typed Go object.
func build(t *testing.T, dir string) []client.Object {
	t.Helper()
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).
		Run(filesys.MakeFsOnDisk(), filepath.Join(moduleRoot(t), dir))
	if err != nil {
		t.Fatalf("kustomize build %s: %v", dir, err)
	}
	var objs []client.Object
	for _, r := range resources.Resources() {
		data, err := r.AsYAML()
		if err != nil {
			t.Fatalf("%s: %s: %v", dir, r.CurId(), err)
		}
		obj, err := decode(data)
		if err != nil {
			t.Errorf("%s: %s: %v", dir, r.CurId(), err)
			continue
		}
		objs = append(objs, obj)
	}
	if t.Failed() {
		t.FailNow()
	}
	if len(objs) == 0 {
		t.Fatalf("kustomize build %s produced nothing", dir)
	}
	return objs
}

func decode(data []byte) (client.Object, error) {
	obj, gvk, err := strict.Decode(data, nil, nil)
	if err != nil {
		return nil, err
	}
	cobj, ok := obj.(client.Object)
	if !ok {
		return nil, fmt.Errorf("%s is not an object with metadata", gvk)
	}
	cobj.GetObjectKind().SetGroupVersionKind(*gvk)
	return cobj, nil
}

func groupKind(obj client.Object) schema.GroupKind {
	return obj.GetObjectKind().GroupVersionKind().GroupKind()
}

func describe(obj client.Object) string {
	gk := groupKind(obj)
	if ns := obj.GetNamespace(); ns != "" {
		return fmt.Sprintf("%s %s/%s", gk, ns, obj.GetName())
	}
	return fmt.Sprintf("%s %s", gk, obj.GetName())
}

// all returns the objects of type T, such as *appsv1.Deployment.
func all[T client.Object](objs []client.Object) []T {
	var out []T
	for _, o := range objs {
		if typed, ok := o.(T); ok {
			out = append(out, typed)
		}
	}
	return out
}

// find returns the object of type T with the namespace and name, or nil.
func find[T client.Object](objs []client.Object, namespace, name string) T {
	for _, o := range all[T](objs) {
		if o.GetNamespace() == namespace && o.GetName() == name {
			return o
		}
	}
	var zero T
	return zero
}

// TestStrictDecodingRejectsUnknownFields makes sure the decoder the other tests
// rely on does catch a misspelt or misplaced field.
func TestStrictDecodingRejectsUnknownFields(t *testing.T) {
	for name, doc := range map[string]string{
		"misspelt field": `
apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec: {replica: 1}`,
		"misplaced field": `
apiVersion: v1
kind: ServiceAccount
metadata: {name: x}
rules: []`,
		"unknown kind": `
apiVersion: operator.meshplane.io/v1alpha1
kind: MeshDataPlane
metadata: {name: x}`,
	} {
		if _, err := decode([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without error", name)
		}
	}
	if _, err := decode([]byte("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: x}\n")); err != nil {
		t.Errorf("valid ServiceAccount: %v", err)
	}
}

// TestDefaultNamespaces: every namespaced object lands in the operator's
// namespace, which the layout also creates.
func TestDefaultNamespaces(t *testing.T) {
	objs := build(t, "config/default")
	for _, o := range objs {
		gk := groupKind(o)
		switch {
		case namespaced[gk]:
			if o.GetNamespace() != operatorNamespace {
				t.Errorf("%s: namespace %q, want %q", describe(o), o.GetNamespace(), operatorNamespace)
			}
		case clusterScoped[gk]:
			if o.GetNamespace() != "" {
				t.Errorf("%s: cluster-scoped but has namespace %q", describe(o), o.GetNamespace())
			}
		default:
			t.Errorf("%s: kind %s is not classified as namespaced or cluster-scoped in this test", describe(o), gk)
		}
	}
	if find[*corev1.Namespace](objs, "", operatorNamespace) == nil {
		t.Errorf("no Namespace %s: namespaced objects could not be created", operatorNamespace)
	}
}

// TestDefaultCRD: the operator's CRD is installed with it, as generated.
func TestDefaultCRD(t *testing.T) {
	objs := build(t, "config/default")
	crd := find[*apiextensionsv1.CustomResourceDefinition](objs, "", crdName)
	if crd == nil {
		t.Fatalf("CustomResourceDefinition %s is missing", crdName)
	}
	if crd.Spec.Group != v1alpha1.GroupVersion.Group || crd.Spec.Names.Kind != "MeshControlPlane" {
		t.Errorf("CRD %s defines %s in group %s", crdName, crd.Spec.Names.Kind, crd.Spec.Group)
	}
	if !served(crd, v1alpha1.GroupVersion.Version) {
		t.Errorf("CRD %s does not serve %s", crdName, v1alpha1.GroupVersion)
	}
}

func served(crd *apiextensionsv1.CustomResourceDefinition, version string) bool {
	return slices.ContainsFunc(crd.Spec.Versions, func(v apiextensionsv1.CustomResourceDefinitionVersion) bool {
		return v.Name == version && v.Served
	})
}

// operatorDeployment returns the only Deployment of config/default and its only container.
func operatorDeployment(t *testing.T, objs []client.Object) (*appsv1.Deployment, corev1.Container) {
	t.Helper()
	deps := all[*appsv1.Deployment](objs)
	if len(deps) != 1 {
		t.Fatalf("config/default has %d Deployments, want 1 (the operator)", len(deps))
	}
	d := deps[0]
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		t.Fatalf("%s has %d containers, want 1", describe(d), n)
	}
	return d, d.Spec.Template.Spec.Containers[0]
}

// TestDefaultRBAC: the operator's ServiceAccount exists, is bound to the
// generated ClusterRole, and may hold the leader-election lease in its namespace.
func TestDefaultRBAC(t *testing.T) {
	objs := build(t, "config/default")
	d, _ := operatorDeployment(t, objs)

	saName := d.Spec.Template.Spec.ServiceAccountName
	if saName == "" || saName == "default" {
		t.Fatalf("%s runs as ServiceAccount %q; want its own", describe(d), saName)
	}
	if find[*corev1.ServiceAccount](objs, d.Namespace, saName) == nil {
		t.Errorf("%s runs as ServiceAccount %s/%s, which is not in the output", describe(d), d.Namespace, saName)
	}
	sa := rbacv1.Subject{Kind: rbacv1.ServiceAccountKind, Namespace: d.Namespace, Name: saName}

	// Every binding refers to a role the layout installs: a dangling roleRef
	// (a renamed role) grants nothing and fails only at runtime.
	for _, b := range all[*rbacv1.ClusterRoleBinding](objs) {
		if !resolves(objs, "", b.RoleRef) {
			t.Errorf("%s refers to %s %s, which is not in the output", describe(b), b.RoleRef.Kind, b.RoleRef.Name)
		}
	}
	for _, b := range all[*rbacv1.RoleBinding](objs) {
		if !resolves(objs, b.Namespace, b.RoleRef) {
			t.Errorf("%s refers to %s %s, which is not in the output", describe(b), b.RoleRef.Kind, b.RoleRef.Name)
		}
	}

	// Cluster-wide: the generated ClusterRole, bound by a ClusterRoleBinding.
	if find[*rbacv1.ClusterRole](objs, "", managerRole) == nil {
		t.Errorf("ClusterRole %s (config/rbac/role.yaml) is not in the output", managerRole)
	}
	if !slices.ContainsFunc(all[*rbacv1.ClusterRoleBinding](objs), func(b *rbacv1.ClusterRoleBinding) bool {
		return b.RoleRef == (rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: managerRole}) &&
			hasSubject(b.Subjects, sa)
	}) {
		t.Errorf("no ClusterRoleBinding binds ClusterRole %s to ServiceAccount %s/%s", managerRole, sa.Namespace, sa.Name)
	}

	// Leader election: a Role in the operator's namespace, bound to the
	// ServiceAccount there, lets it take and renew the Lease and record Events.
	var leaderRules []rbacv1.PolicyRule
	for _, b := range all[*rbacv1.RoleBinding](objs) {
		if b.Namespace != d.Namespace || b.RoleRef.Kind != "Role" || !hasSubject(b.Subjects, sa) {
			continue
		}
		if r := find[*rbacv1.Role](objs, b.Namespace, b.RoleRef.Name); r != nil {
			leaderRules = append(leaderRules, r.Rules...)
		}
	}
	for _, verb := range []string{"get", "create", "update"} {
		if !allows(leaderRules, "coordination.k8s.io", "leases", verb) {
			t.Errorf("no Role bound to ServiceAccount %s/%s in %s allows %s on coordination.k8s.io leases (leader election)",
				sa.Namespace, sa.Name, d.Namespace, verb)
		}
	}
	if !allows(leaderRules, "", "events", "create") && !allows(leaderRules, "events.k8s.io", "events", "create") {
		t.Errorf("no Role bound to ServiceAccount %s/%s in %s allows creating events", sa.Namespace, sa.Name, d.Namespace)
	}
}

// resolves reports whether the role a binding in namespace refers to is in objs.
func resolves(objs []client.Object, namespace string, ref rbacv1.RoleRef) bool {
	if ref.APIGroup != rbacv1.GroupName {
		return false
	}
	switch ref.Kind {
	case "ClusterRole":
		return find[*rbacv1.ClusterRole](objs, "", ref.Name) != nil
	case "Role":
		return namespace != "" && find[*rbacv1.Role](objs, namespace, ref.Name) != nil
	}
	return false
}

func hasSubject(subjects []rbacv1.Subject, sa rbacv1.Subject) bool {
	return slices.ContainsFunc(subjects, func(s rbacv1.Subject) bool {
		return s.Kind == sa.Kind && s.Namespace == sa.Namespace && s.Name == sa.Name && s.APIGroup == ""
	})
}

// allows reports whether rules grant verb on resource in group, as the RBAC
// authorizer does (including "*").
func allows(rules []rbacv1.PolicyRule, group, resource, verb string) bool {
	match := func(list []string, v string) bool {
		return slices.Contains(list, v) || slices.Contains(list, rbacv1.ResourceAll)
	}
	return slices.ContainsFunc(rules, func(r rbacv1.PolicyRule) bool {
		return len(r.ResourceNames) == 0 &&
			match(r.APIGroups, group) && match(r.Resources, resource) && match(r.Verbs, verb)
	})
}

// TestDefaultDeployment: the operator's Deployment starts the binary the way it
// must run in a cluster, probes what it serves, and is locked down.
func TestDefaultDeployment(t *testing.T) {
	objs := build(t, "config/default")
	d, c := operatorDeployment(t, objs)
	pod := d.Spec.Template.Spec

	if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
		t.Errorf("%s: replicas %v, want 1", describe(d), d.Spec.Replicas)
	}
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
		t.Errorf("%s: selector %v does not select its pod template labels %v (%v)",
			describe(d), d.Spec.Selector, d.Spec.Template.Labels, err)
	}
	if want := "ghcr.io/meshplane/operator:v0.1.0"; c.Image != want {
		t.Errorf("%s: image %q, want %q", describe(d), c.Image, want)
	}

	// The binary needs --namespace (or $POD_NAMESPACE) with --leader-elect: it
	// holds the lease. The kubelet expands $(POD_NAMESPACE) only if the
	// container declares it; it must come from the downward API.
	if !slices.Contains(c.Args, "--leader-elect") {
		t.Errorf("%s: args %q lack --leader-elect", describe(d), c.Args)
	}
	if !slices.Contains(c.Args, "--namespace=$(POD_NAMESPACE)") {
		t.Errorf("%s: args %q lack --namespace=$(POD_NAMESPACE)", describe(d), c.Args)
	}
	podNS := slices.IndexFunc(c.Env, func(e corev1.EnvVar) bool { return e.Name == "POD_NAMESPACE" })
	if podNS < 0 || c.Env[podNS].ValueFrom == nil || c.Env[podNS].ValueFrom.FieldRef == nil ||
		c.Env[podNS].ValueFrom.FieldRef.FieldPath != "metadata.namespace" {
		t.Errorf("%s: POD_NAMESPACE is not set from the downward API (fieldRef metadata.namespace): %v", describe(d), c.Env)
	}

	// Probes and ports: what the binary serves with these args.
	defaults := flagDefaults(t, filepath.Join(moduleRoot(t), operatorMain))
	healthPort := listenPort(t, flagValue(c.Args, "health-probe-bind-address", defaults))
	metricsPort := listenPort(t, flagValue(c.Args, "metrics-bind-address", defaults))
	for _, p := range []struct {
		kind, path string
		probe      *corev1.Probe
	}{
		{"liveness", "/healthz", c.LivenessProbe},
		{"readiness", "/readyz", c.ReadinessProbe},
	} {
		if p.probe == nil || p.probe.HTTPGet == nil {
			t.Errorf("%s: no HTTP %s probe", describe(d), p.kind)
			continue
		}
		get := p.probe.HTTPGet
		if get.Path != p.path {
			t.Errorf("%s: %s probe path %q, want %q", describe(d), p.kind, get.Path, p.path)
		}
		if port, ok := containerPort(c, get.Port); !ok || port != healthPort {
			t.Errorf("%s: %s probe port %s is container port %d; the binary serves %s on %d",
				describe(d), p.kind, get.Port.String(), port, p.path, healthPort)
		}
	}
	if port, ok := containerPort(c, intstr.FromString("metrics")); !ok || port != metricsPort {
		t.Errorf("%s: container port \"metrics\" is %d; the binary serves metrics on %d", describe(d), port, metricsPort)
	}

	// Locked down: non-root, read-only, no capabilities, default seccomp.
	psc, sc := pod.SecurityContext, c.SecurityContext
	if !(psc != nil && isTrue(psc.RunAsNonRoot)) && !(sc != nil && isTrue(sc.RunAsNonRoot)) {
		t.Errorf("%s: runAsNonRoot is not set", describe(d))
	}
	if sc == nil || !isTrue(sc.ReadOnlyRootFilesystem) {
		t.Errorf("%s: readOnlyRootFilesystem is not set", describe(d))
	}
	if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		t.Errorf("%s: allowPrivilegeEscalation is not false", describe(d))
	}
	if sc == nil || sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
		t.Errorf("%s: capabilities must drop ALL and add none", describe(d))
	}
	seccomp := func(s *corev1.SeccompProfile) bool {
		return s != nil && s.Type == corev1.SeccompProfileTypeRuntimeDefault
	}
	if !(psc != nil && seccomp(psc.SeccompProfile)) && !(sc != nil && seccomp(sc.SeccompProfile)) {
		t.Errorf("%s: seccomp profile is not RuntimeDefault", describe(d))
	}
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := c.Resources.Requests[r]
		if !hasReq {
			t.Errorf("%s: no %s request", describe(d), r)
		}
		if r == corev1.ResourceMemory {
			lim, hasLim := c.Resources.Limits[r]
			if !hasLim {
				t.Errorf("%s: no memory limit", describe(d))
			} else if hasReq && lim.Cmp(req) < 0 {
				t.Errorf("%s: memory limit %s below its request %s", describe(d), lim.String(), req.String())
			}
		}
	}
}

func isTrue(b *bool) bool { return b != nil && *b }

// containerPort resolves a probe's port (a number or a port name) against the
// container's ports.
func containerPort(c corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort, true
		}
	}
	return 0, false
}

// flagValue returns the value of --name in args (-name, --name=v or --name v,
// as the flag package accepts), or its default.
func flagValue(args []string, name string, defaults map[string]string) string {
	value := defaults[name]
	for i := 0; i < len(args); i++ {
		a := strings.TrimPrefix(strings.TrimPrefix(args[i], "-"), "-")
		if a == args[i] {
			continue // not a flag
		}
		switch {
		case strings.HasPrefix(a, name+"="):
			value = strings.TrimPrefix(a, name+"=")
		case a == name && i+1 < len(args):
			value = args[i+1]
			i++
		}
	}
	return value
}

// listenPort is the port of a listen address such as ":8081".
func listenPort(t *testing.T, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	n, err := strconv.ParseInt(port, 10, 32)
	if err != nil {
		t.Fatalf("listen address %q: %v", addr, err)
	}
	return int32(n)
}

// flagDefaults reads the string flags the operator defines in its main.go
// (fs.StringVar(&v, "name", "default", ...)) and their literal defaults, so
// the Deployment is checked against the binary, not a copy of its defaults.
func flagDefaults(t *testing.T, file string) map[string]string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	defaults := map[string]string{}
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		first := map[string]int{"StringVar": 1, "String": 0}
		i, ok := first[sel.Sel.Name]
		if !ok || len(call.Args) < i+2 {
			return true
		}
		name, nameOK := stringLit(call.Args[i])
		def, defOK := stringLit(call.Args[i+1])
		if nameOK && defOK {
			defaults[name] = def
		}
		return true
	})
	for _, name := range []string{"health-probe-bind-address", "metrics-bind-address"} {
		if _, ok := defaults[name]; !ok {
			t.Fatalf("%s: no string flag %q with a literal default; update this test with the binary", file, name)
		}
	}
	return defaults
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

// TestFlagValue covers the flag forms the Deployment's args may use.
func TestFlagValue(t *testing.T) {
	defaults := map[string]string{"health-probe-bind-address": ":8081"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, ":8081"},
		{[]string{"--leader-elect"}, ":8081"},
		{[]string{"--health-probe-bind-address=:9000"}, ":9000"},
		{[]string{"-health-probe-bind-address", ":9001"}, ":9001"},
		{[]string{"health-probe-bind-address=:9002"}, ":8081"},
	} {
		if got := flagValue(tc.args, "health-probe-bind-address", defaults); got != tc.want {
			t.Errorf("flagValue(%q) = %q, want %q", tc.args, got, tc.want)
		}
	}
}

// TestSamples: the samples are valid MeshControlPlanes of a version the CRD
// installed by config/default serves.
func TestSamples(t *testing.T) {
	crd := find[*apiextensionsv1.CustomResourceDefinition](build(t, "config/default"), "", crdName)
	if crd == nil {
		t.Fatalf("CustomResourceDefinition %s is missing from config/default", crdName)
	}
	samples := build(t, "config/samples")
	for _, s := range samples {
		gvk := s.GetObjectKind().GroupVersionKind()
		if gvk.Group != crd.Spec.Group || gvk.Kind != crd.Spec.Names.Kind || !served(crd, gvk.Version) {
			t.Errorf("%s: %s is not served by CRD %s", describe(s), gvk, crdName)
		}
		if crd.Spec.Scope == apiextensionsv1.ClusterScoped && s.GetNamespace() != "" {
			t.Errorf("%s: %s is cluster-scoped but the sample has namespace %q", describe(s), gvk.Kind, s.GetNamespace())
		}
		if s.GetName() == "" {
			t.Errorf("%s: sample has no name", describe(s))
		}
	}
	if len(all[*v1alpha1.MeshControlPlane](samples)) == 0 {
		t.Errorf("config/samples has no MeshControlPlane")
	}
}
