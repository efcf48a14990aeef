package istiocrd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/test/harness"
)

// A real kube-apiserver and etcd (envtest) with the CRDs installed, started by
// the first test that needs it, so that the unit tests do not wait for it.
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

var ctx = context.Background()

// cluster returns a client of the API server, with every CRD of CRDs()
// installed and Established.
func cluster(t *testing.T) client.Client {
	t.Helper()
	clusterOnce.Do(func() {
		clusterEnv, clusterCfg, clusterErr = harness.StartEnvtest()
		if clusterErr == nil {
			clusterErr = installCRDs(clusterCfg)
		}
	})
	if clusterErr != nil {
		t.Fatal(clusterErr)
	}
	c, err := harness.NewClient(clusterCfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func installCRDs(cfg *rest.Config) error {
	c, err := harness.NewClient(cfg)
	if err != nil {
		return err
	}
	crds, err := CRDs()
	if err != nil {
		return err
	}
	for _, crd := range crds {
		if err := c.Create(ctx, crd); err != nil {
			return fmt.Errorf("creating CRD %s: %w", crd.Name, err)
		}
	}
	for _, crd := range crds {
		var last apiextensionsv1.CustomResourceDefinition
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			if err := c.Get(ctx, client.ObjectKeyFromObject(crd), &last); err != nil {
				return false, err
			}
			return established(&last), nil
		})
		if err != nil {
			return fmt.Errorf("CRD %s not Established (conditions %+v): %w", crd.Name, last.Status.Conditions, err)
		}
	}
	// Established means served; discovery, which clients map kinds through,
	// may trail it by a moment.
	return envtest.WaitForCRDs(cfg, crds, envtest.CRDInstallOptions{MaxTime: time.Minute, PollInterval: 100 * time.Millisecond})
}

func established(crd *apiextensionsv1.CustomResourceDefinition) bool {
	for _, c := range crd.Status.Conditions {
		if c.Type == apiextensionsv1.Established && c.Status == apiextensionsv1.ConditionTrue {
			return true
		}
	}
	return false
}

func namespace(t *testing.T, c client.Client, name string) string {
	t.Helper()
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	if err := c.Create(ctx, ns); err != nil {
		t.Fatal(err)
	}
	return name
}

func crdOf(t *testing.T, obj *unstructured.Unstructured) *apiextensionsv1.CustomResourceDefinition {
	t.Helper()
	gk := obj.GroupVersionKind().GroupKind()
	for _, crd := range mustCRDs(t) {
		if crd.Spec.Group == gk.Group && crd.Spec.Names.Kind == gk.Kind {
			return crd
		}
	}
	t.Fatalf("no CRD for %s", gk)
	return nil
}

// TestExamplesAreStoredUnchangedInEveryVersion writes every example in every
// apiVersion Istio serves for its kind (v1alpha3, v1beta1 and v1 for
// networking), reads it back in each of them, and requires the spec to be
// exactly what was written: nothing rejected, nothing pruned, nothing defaulted.
func TestExamplesAreStoredUnchangedInEveryVersion(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c, "examples")
	for _, ex := range examples(t) {
		crd := crdOf(t, ex.obj)
		for _, written := range crd.Spec.Versions {
			t.Run(ex.file+"/"+written.Name, func(t *testing.T) {
				obj := ex.obj.DeepCopy()
				obj.SetAPIVersion(crd.Spec.Group + "/" + written.Name)
				obj.SetNamespace(ns)
				obj.SetName(ex.obj.GetName() + "-" + written.Name)
				want := obj.DeepCopy().Object["spec"]
				if err := c.Create(ctx, obj); err != nil {
					t.Fatalf("creating %s %s: %v", obj.GetAPIVersion(), obj.GetKind(), err)
				}
				for _, read := range crd.Spec.Versions {
					got := &unstructured.Unstructured{}
					got.SetAPIVersion(crd.Spec.Group + "/" + read.Name)
					got.SetKind(crd.Spec.Names.Kind)
					if err := c.Get(ctx, client.ObjectKeyFromObject(obj), got); err != nil {
						t.Fatalf("reading as %s: %v", read.Name, err)
					}
					if !equality.Semantic.DeepEqual(want, got.Object["spec"]) {
						t.Errorf("written as %s, read as %s, the spec changed\nwritten: %s\nread:    %s",
							written.Name, read.Name, toJSON(t, want), toJSON(t, got.Object["spec"]))
					}
				}
			})
		}
	}
}

func toJSON(t *testing.T, v any) string {
	t.Helper()
	out, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// Istio writes conditions and analyzer messages into status; whatever their
// shape, they are kept, and only through the status subresource.
func TestStatusIsKeptAsWritten(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c, "status")
	vs := parseObject(t, []byte(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
`))
	vs.SetNamespace(ns)
	if err := c.Create(ctx, vs); err != nil {
		t.Fatal(err)
	}
	status := map[string]any{
		"observedGeneration": "1",
		"conditions": []any{map[string]any{
			"type": "Reconciled", "status": "True", "lastTransitionTime": "2026-01-02T03:04:05Z",
		}},
		"validationMessages": []any{map[string]any{
			"level": "WARNING", "type": map[string]any{"code": "IST0101", "name": "ReferencedResourceNotFound"},
		}},
	}
	vs.Object["status"] = status
	if err := c.Status().Update(ctx, vs); err != nil {
		t.Fatal(err)
	}
	got := &unstructured.Unstructured{}
	got.SetGroupVersionKind(vs.GroupVersionKind())
	if err := c.Get(ctx, client.ObjectKeyFromObject(vs), got); err != nil {
		t.Fatal(err)
	}
	if !equality.Semantic.DeepEqual(got.Object["status"], status) {
		t.Fatalf("status changed\nwritten: %s\nread:    %s", toJSON(t, status), toJSON(t, got.Object["status"]))
	}
}

// Objects Istio would refuse to read are refused at the door, with a message
// naming the field and what is wrong with it.
func TestStructurallyWrongObjectsAreRejected(t *testing.T) {
	c := cluster(t)
	ns := namespace(t, c, "rejected")
	for _, tc := range []struct {
		name, yaml string
		want       []string // substrings of the API server's message
	}{{
		name: "http is a list of routes, not a string",
		yaml: `
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
spec:
  hosts: [reviews]
  http: reviews-v2
`,
		want: []string{`spec.http: Invalid value: "string": spec.http in body must be of type array`},
	}, {
		name: "unknown load balancer",
		yaml: `
apiVersion: networking.istio.io/v1beta1
kind: DestinationRule
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: FASTEST
`,
		want: []string{`spec.trafficPolicy.loadBalancer.simple: Unsupported value: "FASTEST"`, `"LEAST_REQUEST"`, `"ROUND_ROBIN"`},
	}, {
		name: "destination rule without its host",
		yaml: `
apiVersion: networking.istio.io/v1
kind: DestinationRule
spec:
  subsets:
  - name: v1
`,
		want: []string{`spec.host: Required value`},
	}, {
		name: "two members of one oneof",
		yaml: `
apiVersion: networking.istio.io/v1
kind: VirtualService
spec:
  hosts: [reviews]
  http:
  - match:
    - uri:
        exact: /productpage
        prefix: /static
    route:
    - destination:
        host: productpage
`,
		want: []string{`"spec.http[0].match[0].uri" must validate one and only one schema (oneOf). Found 2 valid alternatives`},
	}, {
		name: "a duration Istio cannot parse",
		yaml: `
apiVersion: networking.istio.io/v1
kind: VirtualService
spec:
  hosts: [reviews]
  http:
  - timeout: 10 seconds
    route:
    - destination:
        host: reviews
`,
		want: []string{`spec.http[0].timeout: Invalid value: "10 seconds": spec.http[0].timeout in body should match`},
	}, {
		name: "negative port",
		yaml: `
apiVersion: networking.istio.io/v1
kind: Gateway
spec:
  servers:
  - port:
      number: -443
      name: https
      protocol: HTTPS
    hosts: ["*"]
`,
		want: []string{`spec.servers[0].port.number: Invalid value: -443: spec.servers[0].port.number in body should be greater than or equal to 0`},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			obj := parseObject(t, []byte(tc.yaml))
			obj.SetNamespace(ns)
			obj.SetName(strings.ReplaceAll(tc.name, " ", "-"))
			err := c.Create(ctx, obj)
			if !apierrors.IsInvalid(err) {
				t.Fatalf("want Invalid, got %v", err)
			}
			for _, want := range tc.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q\ndoes not contain %q", err.Error(), want)
				}
			}
		})
	}
}

// `kubectl get vs`, `kubectl get istio-io` work because discovery reports
// Istio's short names and categories, in every served version.
func TestDiscoveryServesShortNamesAndCategories(t *testing.T) {
	cluster(t)
	dc, err := discovery.NewDiscoveryClientForConfig(clusterCfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		groupVersion, resource string
		shortNames, categories []string
	}{
		{"networking.istio.io/v1alpha3", "virtualservices", []string{"vs"}, []string{"istio-io", "networking-istio-io"}},
		{"networking.istio.io/v1beta1", "destinationrules", []string{"dr"}, []string{"istio-io", "networking-istio-io"}},
		{"networking.istio.io/v1", "gateways", []string{"gw"}, []string{"istio-io", "networking-istio-io"}},
		{"networking.istio.io/v1", "serviceentries", []string{"se"}, []string{"istio-io", "networking-istio-io"}},
		{"security.istio.io/v1beta1", "authorizationpolicies", []string{"ap"}, []string{"istio-io", "security-istio-io"}},
		{"telemetry.istio.io/v1alpha1", "telemetries", []string{"telemetry"}, []string{"istio-io", "telemetry-istio-io"}},
	} {
		list, err := dc.ServerResourcesForGroupVersion(tc.groupVersion)
		if err != nil {
			t.Errorf("%s: %v", tc.groupVersion, err)
			continue
		}
		i := slices.IndexFunc(list.APIResources, func(r metav1.APIResource) bool { return r.Name == tc.resource })
		if i < 0 {
			t.Errorf("%s does not serve %s", tc.groupVersion, tc.resource)
			continue
		}
		r := list.APIResources[i]
		if !r.Namespaced || !slices.Equal(r.ShortNames, tc.shortNames) || !slices.Equal(r.Categories, tc.categories) {
			t.Errorf("%s %s: namespaced %v, short names %v, categories %v; want namespaced, %v, %v",
				tc.groupVersion, tc.resource, r.Namespaced, r.ShortNames, r.Categories, tc.shortNames, tc.categories)
		}
	}
}
