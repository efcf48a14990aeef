package discovery

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/test/harness"
)

// istioClient is a client that also knows the networking.istio.io/v1 and
// security.istio.io/v1 types.
func istioClient(t *testing.T, cfg *rest.Config) client.Client {
	t.Helper()
	scheme := harness.NewScheme()
	if err := istionetworking.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	if err := istiosecurity.AddToScheme(scheme); err != nil {
		t.Fatal(err)
	}
	c, err := client.New(cfg, client.Options{Scheme: scheme})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// installIstioCRDs installs the CRDs the operator installs (those already
// there are kept) and waits until clients can use them.
func installIstioCRDs(t *testing.T, cfg *rest.Config) {
	t.Helper()
	ctx := context.Background()
	c, err := harness.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	crds, err := istiocrd.CRDs()
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crds {
		if err := c.Create(ctx, crd); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatalf("creating CRD %s: %v", crd.Name, err)
		}
	}
	for _, crd := range crds {
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
			var got apiextensionsv1.CustomResourceDefinition
			if err := c.Get(ctx, client.ObjectKeyFromObject(crd), &got); err != nil {
				return false, err
			}
			for _, cond := range got.Status.Conditions {
				if cond.Type == apiextensionsv1.Established && cond.Status == apiextensionsv1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not Established: %v", crd.Name, err)
		}
	}
	// Established means served; API discovery may trail it by a moment.
	if err := envtest.WaitForCRDs(cfg, crds, envtest.CRDInstallOptions{MaxTime: time.Minute, PollInterval: 100 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
}

// configKeys lists a World's VirtualServices, DestinationRules and security
// policies.
func configKeys(w *model.World) []string {
	var out []string
	for _, o := range w.Config.VirtualServices {
		out = append(out, "vs "+o.Key())
	}
	for _, o := range w.Config.DestinationRules {
		out = append(out, "dr "+o.Key())
	}
	for _, o := range w.Config.PeerAuthentications {
		out = append(out, "pa "+o.Key())
	}
	for _, o := range w.Config.AuthorizationPolicies {
		out = append(out, "ap "+o.Key())
	}
	for _, o := range w.Config.RequestAuthentications {
		out = append(out, "ra "+o.Key())
	}
	return out
}

// TestDiscoveryConfig follows VirtualServices and DestinationRules from the
// API server into Worlds: scope, specs, pointer sharing, no World for a
// status write, deletion, and config shared by an endpoint-only change.
func TestDiscoveryConfig(t *testing.T) {
	cfg, _ := apiServer(t)
	installIstioCRDs(t, cfg)
	c := istioClient(t, cfg)
	ctx := context.Background()
	const nsIn, nsOut = "cfg-in", "cfg-out"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsIn, Labels: map[string]string{"mesh": "on"}}})
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: nsOut}})
	create(t, c, kubeService(nsIn, "web"))
	slice := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "web-abc", Namespace: nsIn, Labels: map[string]string{discoveryv1.LabelServiceName: "web"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports:       []discoveryv1.EndpointPort{{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)}},
		Endpoints:   []discoveryv1.Endpoint{kubeEndpoint("10.244.7.1", "", true)},
	}
	create(t, c, slice)
	var vs *istionetworking.VirtualService
	var dr *istionetworking.DestinationRule
	var ap *istiosecurity.AuthorizationPolicy
	for _, ns := range []string{nsIn, nsOut} {
		v, r := testVirtualService(ns, "web", "web", 0), testDestinationRule(ns, "web", "web", 0)
		create(t, c, v)
		create(t, c, r)
		p := testAuthorizationPolicy(ns, "web", "web", 0)
		create(t, c, p)
		if ns == nsIn {
			vs, dr, ap = v, r, p
		}
	}

	// The CRDs are installed, so the first World already has the config.
	d := startDiscovery(t, cfg, Options{DiscoverySelectors: meshSelector})
	w0 := d.World()
	if got, want := configKeys(w0), []string{"vs cfg-in/web", "dr cfg-in/web", "ap cfg-in/web"}; !slices.Equal(got, want) {
		t.Fatalf("config of the first World: %v, want %v", got, want)
	}
	gotVS, gotDR, gotAP := w0.Config.VirtualServices[0], w0.Config.DestinationRules[0], w0.Config.AuthorizationPolicies[0]
	if !proto.Equal(gotVS.Spec, &vs.Spec) || !proto.Equal(gotDR.Spec, &dr.Spec) || !proto.Equal(gotAP.Spec, &ap.Spec) {
		t.Fatalf("specs differ from the API server's:\n%s", dumpConfig(t, &w0.Config))
	}
	if gotAP.Generation != ap.Generation || gotAP.CreationUnix != ap.CreationTimestamp.Unix() {
		t.Errorf("AuthorizationPolicy meta %+v, object generation %d created %v", gotAP.Meta, ap.Generation, ap.CreationTimestamp)
	}
	if gotVS.Generation != vs.Generation || gotVS.CreationUnix != vs.CreationTimestamp.Unix() || gotVS.CreationUnix == 0 {
		t.Errorf("VirtualService meta %+v, object generation %d created %v", gotVS.Meta, vs.Generation, vs.CreationTimestamp)
	}
	func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.idx.virtualServices.objs[objKey{nsOut, "web"}] == nil || d.idx.destinationRules.objs[objKey{nsOut, "web"}] == nil {
			t.Error("the out-of-scope objects were not seen, so their absence proves nothing")
		}
	}()

	// A spec change: a new VirtualService, the same DestinationRule.
	vs.Spec.Hosts = append(vs.Spec.Hosts, "web-canary")
	expectChange(t, d, "updating a VirtualService", func() { update(t, c, vs) })
	eventually(t, "the updated VirtualService", func() (bool, string) {
		w := d.World()
		if len(w.Config.VirtualServices) != 1 {
			return false, fmt.Sprint(configKeys(w))
		}
		return proto.Equal(w.Config.VirtualServices[0].Spec, &vs.Spec), dumpConfig(t, &w.Config)[0]
	})
	w1 := d.World()
	if w1.Config.VirtualServices[0] == gotVS {
		t.Error("the updated VirtualService kept its pointer")
	}
	if w1.Config.VirtualServices[0].Generation != vs.Generation || vs.Generation < 2 {
		t.Errorf("generation %d in the model, %d in the API server", w1.Config.VirtualServices[0].Generation, vs.Generation)
	}
	if !slices.Equal(w1.Config.DestinationRules, w0.Config.DestinationRules) {
		t.Error("the unchanged DestinationRule got a new pointer")
	}

	// A status write: same generation and spec, no new World.
	select {
	case <-d.Changes():
	default:
	}
	generation := dr.Generation
	dr.Status.ObservedGeneration = dr.Generation
	if err := c.Status().Update(ctx, dr); err != nil {
		t.Fatal(err)
	}
	if dr.Generation != generation {
		t.Fatalf("the status write changed the generation %d → %d; the test assumes a status subresource", generation, dr.Generation)
	}
	// Once the cache holds the new version, its event follows in moments.
	eventually(t, "the cache to see the status write", func() (bool, string) {
		var cached istionetworking.DestinationRule
		if err := d.cache.Get(ctx, client.ObjectKeyFromObject(dr), &cached); err != nil {
			return false, err.Error()
		}
		return cached.ResourceVersion == dr.ResourceVersion, cached.ResourceVersion
	})
	select {
	case <-d.Changes():
		t.Fatal("a status write signalled a change")
	case <-time.After(2 * time.Second):
	}
	if d.World() != w1 {
		t.Fatal("a status write made a new World")
	}

	// Deletion removes the DestinationRule.
	expectChange(t, d, "deleting a DestinationRule", func() {
		if err := c.Delete(ctx, dr); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the DestinationRule deleted", func() (bool, string) {
		keys := configKeys(d.World())
		return slices.Equal(keys, []string{"vs cfg-in/web", "ap cfg-in/web"}), fmt.Sprint(keys)
	})

	// The security kinds follow the same way: created, then deleted.
	pa := testPeerAuthentication(nsIn, "default", "", 0)
	expectChange(t, d, "creating a PeerAuthentication", func() { create(t, c, pa) })
	eventually(t, "the PeerAuthentication", func() (bool, string) {
		w := d.World()
		return len(w.Config.PeerAuthentications) == 1 && proto.Equal(w.Config.PeerAuthentications[0].Spec, &pa.Spec), fmt.Sprint(configKeys(w))
	})
	expectChange(t, d, "deleting an AuthorizationPolicy", func() {
		if err := c.Delete(ctx, ap); err != nil {
			t.Fatal(err)
		}
	})
	eventually(t, "the AuthorizationPolicy deleted", func() (bool, string) {
		keys := configKeys(d.World())
		return slices.Equal(keys, []string{"vs cfg-in/web", "pa cfg-in/default"}), fmt.Sprint(keys)
	})

	// An endpoint-only change keeps every config object.
	prev := d.World()
	slice.Endpoints = append(slice.Endpoints, kubeEndpoint("10.244.7.2", "", true))
	expectChange(t, d, "adding an endpoint", func() { update(t, c, slice) })
	eventually(t, "the new endpoint", func() (bool, string) {
		s := d.World().ServiceByHostname("web.cfg-in.svc.cluster.local")
		return s != nil && len(s.Endpoints) == 2, fmt.Sprintf("%+v", s)
	})
	if next := d.World(); !model.SameConfig(prev, next) {
		t.Errorf("an endpoint change replaced config objects:\nbefore %s\nafter %s", dumpConfig(t, &prev.Config), dumpConfig(t, &next.Config))
	}
}

// TestDiscoveryConfigCRDsInstalledLater starts discovery on a cluster without
// Istio's CRDs: it syncs and serves Services, says so once, and picks the
// config up once the CRDs are installed, without a restart.
func TestDiscoveryConfigCRDsInstalledLater(t *testing.T) {
	env, cfg, err := harness.StartEnvtest()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Error(err)
		}
	})
	c := istioClient(t, cfg)
	const ns = "later"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(t, c, kubeService(ns, "web"))

	logs := &recordingSink{}
	d := startDiscovery(t, cfg, Options{Logger: logr.New(logs), ConfigRetryInterval: 100 * time.Millisecond})
	if d.World().ServiceByHostname("web.later.svc.cluster.local") == nil {
		t.Fatal("the Service is not in the first World")
	}
	notServed := func() int { return logs.count(0, "not served") }
	// Several retries later, still one message.
	time.Sleep(time.Second)
	if n := notServed(); n != 1 {
		t.Fatalf("%d info messages about the missing CRDs, want 1:\n%s", n, logs)
	}

	installIstioCRDs(t, cfg)
	vs := testVirtualService(ns, "web", "web", 0)
	create(t, c, vs)
	eventually(t, "the VirtualService", func() (bool, string) {
		w := d.World()
		return len(w.Config.VirtualServices) == 1 && proto.Equal(w.Config.VirtualServices[0].Spec, &vs.Spec), fmt.Sprint(configKeys(w))
	})
	// The other kinds are watched too.
	gw := &istionetworking.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: ns}}
	gw.Spec.Servers = []*networking.Server{{Hosts: []string{"*"}, Port: &networking.Port{Number: 80, Protocol: "HTTP", Name: "http"}}}
	create(t, c, gw)
	eventually(t, "the Gateway", func() (bool, string) {
		return len(d.World().Config.Gateways) == 1, "absent"
	})
	ra := testRequestAuthentication(ns, "jwt", "https://issuer.example.com", 0)
	create(t, c, ra)
	eventually(t, "the RequestAuthentication", func() (bool, string) {
		w := d.World()
		return len(w.Config.RequestAuthentications) == 1 && proto.Equal(w.Config.RequestAuthentications[0].Spec, &ra.Spec), fmt.Sprint(configKeys(w))
	})
	if n := notServed(); n != 1 {
		t.Errorf("%d info messages about the missing CRDs, want 1:\n%s", n, logs)
	}
	if n := logs.count(-1, ""); n != 0 {
		t.Errorf("%d errors logged:\n%s", n, logs)
	}
}

// recordingSink is a logr.LogSink that keeps every message.
type recordingSink struct {
	mu    sync.Mutex
	lines []logLine
}

type logLine struct {
	level int // -1 for errors
	msg   string
}

func (s *recordingSink) Init(logr.RuntimeInfo)                  {}
func (s *recordingSink) Enabled(int) bool                       { return true }
func (s *recordingSink) WithValues(...any) logr.LogSink         { return s }
func (s *recordingSink) WithName(string) logr.LogSink           { return s }
func (s *recordingSink) Info(level int, msg string, kv ...any)  { s.add(level, fmt.Sprint(msg, kv)) }
func (s *recordingSink) Error(err error, msg string, kv ...any) { s.add(-1, fmt.Sprint(msg, err, kv)) }

func (s *recordingSink) add(level int, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lines = append(s.lines, logLine{level, msg})
}

// count counts the messages of level that contain substr.
func (s *recordingSink) count(level int, substr string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, l := range s.lines {
		if l.level == level && strings.Contains(l.msg, substr) {
			n++
		}
	}
	return n
}

func (s *recordingSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	for _, l := range s.lines {
		fmt.Fprintf(&b, "  level %d: %s\n", l.level, l.msg)
	}
	return b.String()
}

// TestTrimIstioObject checks that the cache keeps an Istio object's identity
// and spec, and drops what discovery never reads, idempotently.
func TestTrimIstioObject(t *testing.T) {
	vs := testVirtualService("ns", "web", "web", 4)
	vs.UID, vs.ResourceVersion, vs.CreationTimestamp = "uid-1", "17", metav1.Unix(1700000000, 0)
	vs.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	vs.Labels = map[string]string{"app": "web"}
	vs.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	vs.Status.ObservedGeneration = 4
	want := vs.Spec.Hosts
	for range 2 {
		out, err := trimObject(vs)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := out.(*istionetworking.VirtualService)
		if !ok {
			t.Fatalf("trimmed into %T", out)
		}
		if got.Name != "web" || got.Namespace != "ns" || got.UID != "uid-1" || got.ResourceVersion != "17" ||
			got.Generation != 4 || got.CreationTimestamp.Unix() != 1700000000 || !slices.Equal(got.Spec.Hosts, want) {
			t.Errorf("kept: %+v %v", got.ObjectMeta, got.Spec.Hosts)
		}
		if got.Annotations != nil || got.Labels != nil || got.ManagedFields != nil || got.Status.ObservedGeneration != 0 {
			t.Errorf("not dropped: annotations %v labels %v managed %v status %v", got.Annotations, got.Labels, got.ManagedFields, got.Status.ObservedGeneration)
		}
		vs = got
	}

	ap := testAuthorizationPolicy("ns", "web", "web", 2)
	ap.Annotations = map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...}"}
	ap.ManagedFields = []metav1.ManagedFieldsEntry{{Manager: "kubectl"}}
	ap.Status.ObservedGeneration = 2
	out, err := trimObject(ap)
	if err != nil {
		t.Fatal(err)
	}
	got, ok := out.(*istiosecurity.AuthorizationPolicy)
	if !ok {
		t.Fatalf("trimmed into %T", out)
	}
	if got.Generation != 2 || got.Annotations != nil || got.ManagedFields != nil || got.Status.ObservedGeneration != 0 ||
		got.Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths()[0] != "/web/*" {
		t.Errorf("trimmed AuthorizationPolicy: %+v %v", got.ObjectMeta, got.Spec.GetRules())
	}
}
