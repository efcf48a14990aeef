package webhook

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/test/harness"
)

// A real kube-apiserver and etcd (envtest) with Istio's CRDs, started by the first test that
// needs it, so that the unit tests do not wait for it.
var (
	clusterOnce sync.Once
	clusterEnv  *envtest.Environment
	clusterCfg  *rest.Config
	clusterErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if clusterEnv != nil {
		if err := clusterEnv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping envtest:", err)
		}
	}
	os.Exit(code)
}

func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	clusterOnce.Do(func() {
		clusterEnv, clusterCfg, clusterErr = harness.StartEnvtest()
		if clusterErr != nil {
			return
		}
		crds, err := istiocrd.CRDs()
		if err != nil {
			clusterErr = err
			return
		}
		clusterErr = harness.CreateCRDs(context.Background(), clusterCfg, crds)
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	return rest.CopyConfig(clusterCfg)
}

// validatingWebhook is the webhook configuration the tests install: what the control-plane
// chart renders, calling url instead of meshd's Service, and failing closed so that a webhook
// that is not reached shows as an error instead of a silent admission.
func validatingWebhook(name, url string, caBundle []byte, namespaces metav1.LabelSelectorRequirement) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "validation.networking.istio.io.meshplane.io",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: caBundle},
			Rules:                   istioRules(),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
			NamespaceSelector:       &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{namespaces}},
		}},
	}
}

// istioRules are the chart's rules: one per validated API group, every version.
func istioRules() []admissionregistrationv1.RuleWithOperations {
	var rules []admissionregistrationv1.RuleWithOperations
	validated := ValidatedResources()
	for _, group := range slices.Sorted(maps.Keys(validated)) {
		rules = append(rules, admissionregistrationv1.RuleWithOperations{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule: admissionregistrationv1.Rule{
				APIGroups:   []string{group},
				APIVersions: []string{"*"},
				Resources:   validated[group],
			},
		})
	}
	return rules
}

// serveWebhook runs the handler on the serving certificate envtest generates and registers
// it with the API server for the namespaces matched by namespaces.
func serveWebhook(t *testing.T, cfg *rest.Config, name string, namespaces metav1.LabelSelectorRequirement) {
	t.Helper()
	install := &envtest.WebhookInstallOptions{LocalServingHost: "127.0.0.1"}
	// A CA and a serving certificate in LocalServingCertDir, and a free port.
	if err := install.PrepWithoutInstalling(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = install.Cleanup() })
	addr := net.JoinHostPort(install.LocalServingHost, strconv.Itoa(install.LocalServingPort))

	handler, err := NewHandler(HandlerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	server, err := NewServer(ServerOptions{Addr: addr, Handler: handler, CertDir: install.LocalServingCertDir})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	install.ValidatingWebhooks = []*admissionregistrationv1.ValidatingWebhookConfiguration{
		validatingWebhook(name, "https://"+addr+ValidatePath, install.LocalServingCAData, namespaces),
	}
	if err := install.Install(cfg); err != nil {
		t.Fatal(err)
	}
	c := newClient(t, cfg)
	t.Cleanup(func() {
		_ = c.Delete(context.Background(), install.ValidatingWebhooks[0])
	})
}

// runs numbers the names of a test's objects, so that a test run again on the same API
// server (go test -count) does not meet the objects of its previous run.
var runs atomic.Int32

func uniqueName(prefix string) string {
	return prefix + "-" + strconv.Itoa(int(runs.Add(1)))
}

func newClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	c, err := harness.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createNamespace(t *testing.T, c client.Client, name string) {
	t.Helper()
	if err := c.Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}); err != nil {
		t.Fatal(err)
	}
}

// object parses YAML into an unstructured object in namespace, so that it is sent in the
// apiVersion it is written in.
func object(t *testing.T, doc, namespace string) *unstructured.Unstructured {
	t.Helper()
	obj := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(doc), &obj.Object); err != nil {
		t.Fatal(err)
	}
	obj.SetNamespace(namespace)
	return obj
}

// warnings collects the warnings the API server sends with its responses.
type warnings struct {
	mu   sync.Mutex
	seen []string
}

func (w *warnings) HandleWarningHeaderWithContext(_ context.Context, _ int, _ string, text string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.seen = append(w.seen, text)
}

func (w *warnings) take() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	seen := w.seen
	w.seen = nil
	return seen
}

// TestAPIServerAdmitsOnlyValidIstioConfig runs the webhook behind a real API server and
// writes Istio config the way kubectl does.
func TestAPIServerAdmitsOnlyValidIstioConfig(t *testing.T) {
	cfg := apiServer(t)
	ns := uniqueName("webhook-envtest")
	serveWebhook(t, cfg, uniqueName("meshplane-validator-envtest"), metav1.LabelSelectorRequirement{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpIn, Values: []string{ns},
	})
	seen := &warnings{}
	cfg.WarningHandlerWithContext = seen
	c := newClient(t, cfg)
	createNamespace(t, c, ns)
	ctx := context.Background()

	t.Run("invalid VirtualService is refused with every error", func(t *testing.T) {
		for _, write := range []struct {
			name string
			do   func(obj client.Object) error
		}{
			{"create (kubectl apply)", func(obj client.Object) error { return c.Create(ctx, obj) }},
			{"server-side apply (kubectl apply --server-side)", func(obj client.Object) error {
				return c.Apply(ctx, client.ApplyConfigurationFromUnstructured(obj.(*unstructured.Unstructured)), client.FieldOwner("kubectl"), client.ForceOwnership)
			}},
		} {
			err := write.do(object(t, invalidVirtualService, ns))
			if !apierrors.IsInvalid(err) {
				t.Fatalf("%s: error %v, want 422 Invalid", write.name, err)
			}
			t.Logf("%s: %v", write.name, err)
			for _, want := range []string{
				`admission webhook "validation.networking.istio.io.meshplane.io" denied the request`,
				wantWeightError,
				wantRegexError,
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error\n  %s\ndoes not contain\n  %s", write.name, err, want)
				}
			}
		}
		var got unstructured.Unstructured
		got.SetGroupVersionKind(object(t, invalidVirtualService, ns).GroupVersionKind())
		if err := c.Get(ctx, client.ObjectKey{Namespace: ns, Name: "reviews"}, &got); !apierrors.IsNotFound(err) {
			t.Errorf("the refused VirtualService was stored: %v", err)
		}
	})

	t.Run("valid v1alpha3 VirtualService is admitted", func(t *testing.T) {
		vs := object(t, bookinfoVirtualService, ns)
		if err := c.Create(ctx, vs); err != nil {
			t.Fatal(err)
		}
		if w := seen.take(); len(w) != 0 {
			t.Errorf("warnings %q for a valid VirtualService", w)
		}
		generated := object(t, bookinfoVirtualService, ns)
		generated.SetName("")
		generated.SetGenerateName("reviews-")
		if err := c.Create(ctx, generated); err != nil {
			t.Errorf("a VirtualService named by generateName: %v", err)
		}
	})

	t.Run("warnings are returned to the client", func(t *testing.T) {
		vs := object(t, warnedVirtualService, ns)
		vs.SetName("reviews-split")
		if err := c.Create(ctx, vs); err != nil {
			t.Fatal(err)
		}
		w := seen.take()
		if len(w) != 1 || !strings.HasPrefix(w[0], wantWeightWarning) || !strings.HasSuffix(w[0], "(MP0151 RouteWeightsNotHundred)") {
			t.Errorf("warnings %q, want one starting %q and ending with its code", w, wantWeightWarning)
		}
	})

	t.Run("an update that breaks the object is refused and changes nothing", func(t *testing.T) {
		before := object(t, bookinfoVirtualService, ns)
		if err := c.Get(ctx, client.ObjectKeyFromObject(before), before); err != nil {
			t.Fatal(err)
		}
		broken := before.DeepCopy()
		routes, _, _ := unstructured.NestedSlice(broken.Object, "spec", "http")
		if len(routes) != 2 {
			t.Fatalf("stored VirtualService has %d HTTP routes, want the fixture's 2", len(routes))
		}
		route := routes[1].(map[string]any)
		route["route"].([]any)[0].(map[string]any)["weight"] = int64(-1)
		if err := unstructured.SetNestedSlice(broken.Object, routes, "spec", "http"); err != nil {
			t.Fatal(err)
		}
		err := c.Update(ctx, broken)
		if !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.http[1].route[0].weight: weight -1 is negative") {
			t.Fatalf("error %v, want 422 Invalid naming spec.http[1].route[0].weight", err)
		}
		after := object(t, bookinfoVirtualService, ns)
		if err := c.Get(ctx, client.ObjectKeyFromObject(after), after); err != nil {
			t.Fatal(err)
		}
		if after.GetResourceVersion() != before.GetResourceVersion() || !equality.Semantic.DeepEqual(after.Object["spec"], before.Object["spec"]) {
			t.Errorf("the stored object changed:\nbefore %v\nafter  %v", before.Object["spec"], after.Object["spec"])
		}
		// A valid update still goes through.
		fixed := after.DeepCopy()
		if err := unstructured.SetNestedStringSlice(fixed.Object, []string{"reviews", "reviews.bookinfo.svc.cluster.local"}, "spec", "hosts"); err != nil {
			t.Fatal(err)
		}
		if err := c.Update(ctx, fixed); err != nil {
			t.Errorf("a valid update was refused: %v", err)
		}
	})

	t.Run("deleting is never refused", func(t *testing.T) {
		vs := object(t, bookinfoVirtualService, ns)
		if err := c.Delete(ctx, vs); err != nil {
			t.Error(err)
		}
	})

	t.Run("security kinds are checked in both served versions", func(t *testing.T) {
		for _, version := range []string{"v1", "v1beta1"} {
			policy := object(t, strings.Replace(invalidAuthorizationPolicy, "security.istio.io/v1\n", "security.istio.io/"+version+"\n", 1), ns)
			err := c.Create(ctx, policy)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("%s: error %v, want 422 Invalid", version, err)
			}
			for _, want := range []string{wantProviderError, wantConditionError, "(MP0113 InvalidCondition)"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s: error\n  %s\ndoes not contain\n  %s", version, err, want)
				}
			}
		}
		if err := c.Create(ctx, object(t, allowNothingPolicy, ns)); err != nil {
			t.Fatal(err)
		}
		if w := seen.take(); len(w) != 1 || !strings.HasPrefix(w[0], wantAllowNothing) {
			t.Errorf("warnings %q, want the allow-nothing one", w)
		}
		for _, doc := range []string{strictPeerAuthentication, `apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {name: jwt}
spec:
  jwtRules:
  - issuer: https://accounts.example.com
    jwksUri: https://accounts.example.com/.well-known/jwks.json
`} {
			if err := c.Create(ctx, object(t, doc, ns)); err != nil {
				t.Errorf("a valid security object was refused: %v", err)
			}
		}
		if w := seen.take(); len(w) != 0 {
			t.Errorf("warnings %q for valid objects", w)
		}
		// An update that breaks a stored policy is refused too.
		pa := object(t, strictPeerAuthentication, ns)
		if err := c.Get(ctx, client.ObjectKeyFromObject(pa), pa); err != nil {
			t.Fatal(err)
		}
		if err := unstructured.SetNestedField(pa.Object, map[string]any{"8080": map[string]any{"mode": "DISABLE"}}, "spec", "portLevelMtls"); err != nil {
			t.Fatal(err)
		}
		if err := c.Update(ctx, pa); !apierrors.IsInvalid(err) || !strings.Contains(err.Error(), "spec.portLevelMtls: port-level mTLS needs a selector") {
			t.Errorf("error %v, want 422 Invalid naming spec.portLevelMtls", err)
		}
	})
}

// TestCABundlePatchOwnsOnlyTheCABundle applies a webhook configuration as the operator does
// (server-side apply, no caBundle), lets the patcher trust a self-signed CA, and checks on the
// API server that the patcher owns nothing but the caBundles and that neither writer undoes
// the other.
func TestCABundlePatchOwnsOnlyTheCABundle(t *testing.T) {
	cfg := apiServer(t)
	c := newClient(t, cfg)
	ctx := context.Background()
	name := uniqueName("meshplane-validator-patch-test")
	t.Cleanup(func() {
		_ = c.Delete(ctx, &admissionregistrationv1.ValidatingWebhookConfiguration{ObjectMeta: metav1.ObjectMeta{Name: name}})
	})

	operatorApply := func(timeout int32) {
		t.Helper()
		desired := validatingWebhook(name, "https://meshd.meshplane-system.svc:443"+ValidatePath, nil,
			metav1.LabelSelectorRequirement{Key: "never", Operator: metav1.LabelSelectorOpExists})
		second := desired.Webhooks[0]
		second.Name = "second.meshplane.io"
		desired.Webhooks = append(desired.Webhooks, second)
		for i := range desired.Webhooks {
			desired.Webhooks[i].TimeoutSeconds = ptr.To(timeout)
		}
		content, err := runtime.DefaultUnstructuredConverter.ToUnstructured(desired)
		if err != nil {
			t.Fatal(err)
		}
		apply := &unstructured.Unstructured{Object: content}
		apply.SetGroupVersionKind(admissionregistrationv1.SchemeGroupVersion.WithKind("ValidatingWebhookConfiguration"))
		unstructured.RemoveNestedField(apply.Object, "metadata", "creationTimestamp")
		if err := c.Apply(ctx, client.ApplyConfigurationFromUnstructured(apply), client.FieldOwner("meshplane-operator"), client.ForceOwnership); err != nil {
			t.Fatal(err)
		}
	}
	get := func() *admissionregistrationv1.ValidatingWebhookConfiguration {
		t.Helper()
		got := &admissionregistrationv1.ValidatingWebhookConfiguration{}
		if err := c.Get(ctx, client.ObjectKey{Name: name}, got); err != nil {
			t.Fatal(err)
		}
		return got
	}

	patcher := newPatcher(t, cfg, name)
	if _, err := patcher.Ensure(ctx); !apierrors.IsNotFound(err) {
		t.Errorf("patching a configuration that does not exist: %v, want NotFound (and nothing created)", err)
	}

	operatorApply(10)
	if patched, err := patcher.Ensure(ctx); err != nil || !patched {
		t.Fatalf("Ensure = %v, %v; want a patch", patched, err)
	}
	patched := get()
	for _, w := range patched.Webhooks {
		if certs := parseCertificates(w.ClientConfig.CABundle); len(certs) != 1 || !certs[0].Equal(patcher.ca) {
			t.Errorf("webhook %s: caBundle holds %d certificates, want the patcher's CA", w.Name, len(certs))
		}
	}
	if got := managedFieldsOf(t, patched, DefaultFieldManager); got != wantPatcherFields {
		t.Errorf("fields owned by %s:\n%s\nwant\n%s", DefaultFieldManager, got, wantPatcherFields)
	}
	if patched, err := patcher.Ensure(ctx); err != nil || patched {
		t.Errorf("Ensure with the CA in place = %v, %v; want no patch", patched, err)
	}

	// The operator's next apply changes its own fields and leaves the caBundle alone.
	operatorApply(5)
	reapplied := get()
	for i, w := range reapplied.Webhooks {
		if *w.TimeoutSeconds != 5 || string(w.ClientConfig.CABundle) != string(patched.Webhooks[i].ClientConfig.CABundle) {
			t.Errorf("after the operator's apply, webhook %s has timeout %d and caBundle changed %v", w.Name, *w.TimeoutSeconds,
				string(w.ClientConfig.CABundle) != string(patched.Webhooks[i].ClientConfig.CABundle))
		}
	}

	// A second meshd (another replica, or the new one of a rollout) adds its CA in front.
	other := newPatcher(t, cfg, name)
	if patched, err := other.Ensure(ctx); err != nil || !patched {
		t.Fatalf("second patcher: Ensure = %v, %v; want a patch", patched, err)
	}
	for _, w := range get().Webhooks {
		certs := parseCertificates(w.ClientConfig.CABundle)
		if len(certs) != 2 || !certs[0].Equal(other.ca) || !certs[1].Equal(patcher.ca) {
			t.Errorf("webhook %s: caBundle holds %d certificates, want the second CA, then the first", w.Name, len(certs))
		}
	}

	// Deleted, then re-created without a caBundle by the operator's drift repair while Run
	// waits for it: Run patches it again.
	if err := c.Delete(ctx, get()); err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); patcher.Run(runCtx) }()
	time.Sleep(200 * time.Millisecond) // Run finds nothing to patch and waits to retry
	operatorApply(10)
	deadline := time.Now().Add(10 * time.Second)
	for !patcher.trusted(get()) {
		if time.Now().After(deadline) {
			t.Fatal("Run did not patch the re-created configuration within 10s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	cancel()
	<-done
}

func newPatcher(t *testing.T, cfg *rest.Config, name string) *CABundlePatcher {
	t.Helper()
	selfSigned, err := NewSelfSigned([]string{"meshd.meshplane-system.svc"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	patcher, err := NewCABundlePatcher(CABundleOptions{
		Client:            kubernetesClient(t, cfg),
		ConfigurationName: name,
		CABundle:          selfSigned.CABundle,
		Interval:          100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return patcher
}

// wantPatcherFields is everything the patcher's server-side apply owns: the list keys it must
// name, and the caBundles.
const wantPatcherFields = `{"f:webhooks":{"k:{\"name\":\"second.meshplane.io\"}":{".":{},"f:clientConfig":{"f:caBundle":{}},"f:name":{}},` +
	`"k:{\"name\":\"validation.networking.istio.io.meshplane.io\"}":{".":{},"f:clientConfig":{"f:caBundle":{}},"f:name":{}}}}`

func managedFieldsOf(t *testing.T, obj metav1.Object, manager string) string {
	t.Helper()
	var owned []string
	for _, entry := range obj.GetManagedFields() {
		if entry.Manager == manager {
			if entry.Operation != metav1.ManagedFieldsOperationApply {
				t.Errorf("%s wrote with operation %s, want Apply", manager, entry.Operation)
			}
			owned = append(owned, string(entry.FieldsV1.Raw))
		}
	}
	return strings.Join(owned, "\n")
}

func kubernetesClient(t *testing.T, cfg *rest.Config) kubernetes.Interface {
	t.Helper()
	clientset, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return clientset
}
