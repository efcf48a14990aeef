package status

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr/testr"
	metav1alpha1 "istio.io/api/meta/v1alpha1"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1beta1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/meshplane/meshplane/internal/discovery"
	"github.com/meshplane/meshplane/internal/istiocrd"
	"github.com/meshplane/meshplane/test/harness"
)

// The API server is started by the first test that needs one and stopped by TestMain.
var (
	envOnce sync.Once
	env     *envtest.Environment
	envCfg  *rest.Config
	envErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if env != nil {
		if err := env.Stop(); err != nil { // always: it stops kube-apiserver and etcd
			fmt.Fprintln(os.Stderr, err)
		}
	}
	os.Exit(code)
}

// apiServer returns a cluster with Istio's CRDs installed.
func apiServer(t *testing.T) *rest.Config {
	t.Helper()
	envOnce.Do(func() {
		if env, envCfg, envErr = harness.StartEnvtest(); envErr != nil {
			return
		}
		crds, err := istiocrd.CRDs()
		if err == nil {
			_, err = envtest.InstallCRDs(envCfg, envtest.CRDInstallOptions{CRDs: crds, MaxTime: time.Minute, PollInterval: 100 * time.Millisecond})
		}
		envErr = err
	})
	if envErr != nil {
		t.Fatal(envErr)
	}
	return envCfg
}

const (
	waitTimeout  = 30 * time.Second
	testInterval = 200 * time.Millisecond
)

// eventually polls cond until it reports true, failing the test with cond's last explanation
// after waitTimeout.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s: %s", what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

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

func startDiscovery(t *testing.T, cfg *rest.Config) *discovery.Discovery {
	t.Helper()
	d, err := discovery.New(cfg, discovery.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Start(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("discovery: %v", err)
		}
	})
	syncCtx, cancelSync := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelSync()
	if !d.WaitForSync(syncCtx) {
		t.Fatal("discovery did not sync")
	}
	return d
}

// startReporter runs a Reporter fed with discovery's Worlds, as the control plane does; stop
// ends it and waits until it has.
func startReporter(t *testing.T, cfg *rest.Config, d *discovery.Discovery) (r *Reporter, stop func()) {
	t.Helper()
	return startReporterWith(t, cfg, d, Options{Interval: testInterval, Logger: testr.New(t)})
}

func startReporterWith(t *testing.T, cfg *rest.Config, d *discovery.Discovery, opts Options) (r *Reporter, stop func()) {
	t.Helper()
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	if d != nil {
		go feed(ctx, d, r)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return r, stop
}

// feed hands every World discovery publishes to the reporters, as the
// control plane does (one discovery, so one reader of its change signal).
func feed(ctx context.Context, d *discovery.Discovery, reporters ...*Reporter) {
	update := func() {
		for _, r := range reporters {
			r.Update(d.World())
		}
	}
	update()
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.Changes():
			update()
		}
	}
}

// waitForRound waits until r has fully reported a World after the call.
func waitForRound(t *testing.T, r *Reporter, what string, change func()) {
	t.Helper()
	before := r.rounds.Load()
	change()
	eventually(t, what, func() (bool, string) {
		return r.rounds.Load() > before, fmt.Sprintf("%d rounds", r.rounds.Load())
	})
}

func virtualService(ns, name, host, destination, subset string) *istionetworking.VirtualService {
	vs := &istionetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}}
	vs.Spec.Hosts = []string{host}
	vs.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{
		Destination: &networking.Destination{Host: destination, Subset: subset},
	}}}}
	return vs
}

func create(t *testing.T, c client.Client, obj client.Object) {
	t.Helper()
	if err := c.Create(context.Background(), obj); err != nil {
		t.Fatalf("creating %T %s: %v", obj, obj.GetName(), err)
	}
}

// statusOf summarises a VirtualService's status (generation, Reconciled condition, messages) as
// Istio's own types read it.
func statusOf(t *testing.T, c client.Client, ns, name string) (vs *istionetworking.VirtualService, summary string) {
	t.Helper()
	vs = &istionetworking.VirtualService{}
	if err := c.Get(context.Background(), client.ObjectKey{Namespace: ns, Name: name}, vs); err != nil {
		t.Fatal(err)
	}
	return vs, summarize(&vs.Status)
}

// summarize renders an Istio status: generation, Reconciled condition, messages.
func summarize(status *metav1alpha1.IstioStatus) string {
	var parts []string
	for _, cond := range status.Conditions {
		if cond.Type == ConditionReconciled {
			parts = append(parts, fmt.Sprintf("%s=%s reason=%s gen=%d", cond.Type, cond.Status, cond.Reason, cond.ObservedGeneration))
		}
	}
	for _, m := range status.ValidationMessages {
		parts = append(parts, m.GetType().GetCode()+" "+m.GetLevel().String())
	}
	return fmt.Sprintf("gen=%d %s", status.ObservedGeneration, strings.Join(parts, " "))
}

// warnings lists the events meshd recorded about the object named name, oldest first.
func warnings(t *testing.T, c client.Client, ns, name string) []eventsv1.Event {
	t.Helper()
	var list eventsv1.EventList
	if err := c.List(context.Background(), &list, client.InNamespace(ns)); err != nil {
		t.Fatal(err)
	}
	var out []eventsv1.Event
	for _, e := range list.Items {
		if e.Regarding.Name == name && e.ReportingController == reportingController {
			out = append(out, e)
		}
	}
	slices.SortFunc(out, func(a, b eventsv1.Event) int { return a.EventTime.Compare(b.EventTime.Time) })
	return out
}

// TestReporter runs discovery and the Reporter against an API server: a VirtualService routing
// to a subset no DestinationRule defines gets MP1001 in its status, Reconciled=False and one
// Warning event; the good objects get Reconciled=True and no messages; World changes that change
// no status write nothing; fixing the object clears its messages; and a restarted Reporter
// rewrites only the status that changed behind its back.
func TestReporter(t *testing.T) {
	cfg := apiServer(t)
	c := istioClient(t, cfg)
	ctx := context.Background()
	const ns = "shop"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	create(t, c, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns},
		Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
	})
	rule := &istionetworking.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: "web", Namespace: ns}}
	rule.Spec.Host = "web"
	rule.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
	create(t, c, rule)
	create(t, c, virtualService(ns, "web", "web", "web", "v1"))
	create(t, c, virtualService(ns, "broken", "broken.example.com", "web", "v9"))
	// More VirtualServices than are read one by one, so the restart below lists them.
	good := []string{"web"}
	for i := range directReads + 1 {
		name := fmt.Sprintf("extra-%d", i)
		create(t, c, virtualService(ns, name, name+".example.com", "web", ""))
		good = append(good, name)
	}

	d := startDiscovery(t, cfg)
	counted, writes := harness.CountWrites(cfg)
	r, stop := startReporter(t, counted, d)

	eventually(t, "the broken VirtualService's status", func() (bool, string) {
		vs, summary := statusOf(t, c, ns, "broken")
		want := fmt.Sprintf("gen=%d Reconciled=False reason=MP1001 gen=%d MP1001 ERROR", vs.Generation, vs.Generation)
		return summary == want, summary + ", want " + want
	})
	broken, _ := statusOf(t, c, ns, "broken")
	if d := broken.Status.ValidationMessages[0]; d.GetType().GetName() != "ReferencedSubsetNotFound" {
		t.Errorf("message type %v", d.GetType())
	}
	if m := broken.Status.Conditions[0].Message; !strings.Contains(m, "offending pieces skipped") || !strings.Contains(m, `subset "v9"`) {
		t.Errorf("condition message %q", m)
	}
	for _, name := range good {
		eventually(t, "the status of VirtualService "+name, func() (bool, string) {
			_, summary := statusOf(t, c, ns, name)
			return summary == "gen=1 Reconciled=True reason=Accepted gen=1", summary
		})
	}
	eventually(t, "the DestinationRule's status", func() (bool, string) {
		var got istionetworking.DestinationRule
		if err := c.Get(ctx, client.ObjectKeyFromObject(rule), &got); err != nil {
			return false, err.Error()
		}
		conds := got.Status.Conditions
		return len(conds) == 1 && conds[0].Status == "True" && len(got.Status.ValidationMessages) == 0, fmt.Sprint(&got.Status)
	})

	events := warnings(t, c, ns, "broken")
	if len(events) != 1 {
		t.Fatalf("%d events about the broken VirtualService, want 1: %+v", len(events), events)
	}
	e := events[0]
	if e.Type != corev1.EventTypeWarning || e.Reason != "ReferencedSubsetNotFound" || e.Action != eventAction ||
		e.Regarding.Kind != "VirtualService" || e.Regarding.UID != broken.UID ||
		!strings.HasPrefix(e.Note, `spec.http[0].route[0].destination.subset: subset "v9"`) {
		t.Errorf("event %+v", e)
	}
	for _, name := range good {
		if events := warnings(t, c, ns, name); len(events) != 0 {
			t.Errorf("events about the good VirtualService %s: %+v", name, events)
		}
	}

	// At rest: a new World that changes no status writes nothing, events included.
	writes.Reset()
	waitForRound(t, r, "a round after a new Service", func() {
		create(t, c, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: "idle", Namespace: ns},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80}}},
		})
	})
	time.Sleep(3 * testInterval) // and whatever came after it
	if n := writes.Count(); n != 0 {
		t.Fatalf("writes at rest: %s", writes.Summary())
	}

	// A new generation with the same problem: the status follows, the event is not repeated.
	broken.Spec.Hosts = append(broken.Spec.Hosts, "broken-too.example.com")
	if err := c.Update(ctx, broken); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the status of the broken VirtualService's second generation", func() (bool, string) {
		_, summary := statusOf(t, c, ns, "broken")
		return summary == "gen=2 Reconciled=False reason=MP1001 gen=2 MP1001 ERROR", summary
	})
	if n := len(warnings(t, c, ns, "broken")); n != 1 {
		t.Errorf("%d events about the broken VirtualService after a change that kept the problem, want still 1", n)
	}

	// Fixed: the messages go, the condition turns True for the new generation, no new event.
	broken, _ = statusOf(t, c, ns, "broken")
	broken.Spec.Http[0].Route[0].Destination.Subset = "v1"
	if err := c.Update(ctx, broken); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the fixed VirtualService's status", func() (bool, string) {
		_, summary := statusOf(t, c, ns, "broken")
		return summary == "gen=3 Reconciled=True reason=Accepted gen=3", summary
	})
	fixed, _ := statusOf(t, c, ns, "broken")
	if fixed.Status.ValidationMessages != nil {
		t.Errorf("messages left: %v", fixed.Status.ValidationMessages)
	}
	if n := len(warnings(t, c, ns, "broken")); n != 1 {
		t.Errorf("%d events about the broken VirtualService after its fix, want still 1", n)
	}

	// Broken another way: a host no Service has, a new finding, a new event.
	fixed.Spec.Http[0].Route[0].Destination.Host = "missing"
	if err := c.Update(ctx, fixed); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the second event", func() (bool, string) {
		events := warnings(t, c, ns, "broken")
		return len(events) == 2 && events[1].Reason == "DestinationHostNotFound", fmt.Sprintf("%d events", len(events))
	})
	_, summary := statusOf(t, c, ns, "broken")
	if summary != "gen=4 Reconciled=False reason=MP1002 gen=4 MP1002 ERROR" {
		t.Errorf("status after the second break: %s", summary)
	}

	// A restarted Reporter reads what the objects hold: it rewrites the one status that changed
	// behind its back (wiped here) and nothing else, and announces nothing again.
	stop()
	wiped := &istionetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: "extra-3", Namespace: ns}}
	if err := c.Status().Patch(ctx, wiped, client.RawPatch(types.MergePatchType, []byte(`{"status":null}`))); err != nil {
		t.Fatal(err)
	}
	counted, writes = harness.CountWrites(cfg)
	r, _ = startReporter(t, counted, d)
	eventually(t, "the restarted Reporter's first round", func() (bool, string) { return r.rounds.Load() > 0, "none yet" })
	got := writes.Writes()
	if len(got) != 1 || got[0].Verb != "PATCH" || !strings.HasSuffix(got[0].Path, "/virtualservices/extra-3/status") {
		t.Errorf("writes after the restart, want only extra-3's status: %s", writes.Summary())
	}
	if _, summary := statusOf(t, c, ns, "extra-3"); summary != "gen=1 Reconciled=True reason=Accepted gen=1" {
		t.Errorf("extra-3's status after the restart: %s", summary)
	}
	if n := len(warnings(t, c, ns, "broken")); n != 2 {
		t.Errorf("%d events about the broken VirtualService after the restart, want still 2", n)
	}
}

// TestReporterElection: two replicas sharing a Lease report once: one
// Warning event for a finding, not two; when the reporting replica stops,
// the other takes over and reports a new finding.
func TestReporterElection(t *testing.T) {
	cfg := apiServer(t)
	c := istioClient(t, cfg)
	ctx := context.Background()
	const ns = "election"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	d := startDiscovery(t, cfg)
	opts := func() Options {
		return Options{Interval: testInterval, Logger: testr.New(t), LeaseNamespace: ns, LeaseName: "status-test"}
	}
	// Two replicas, each fed every World (in meshd each has its own
	// discovery).
	a, stopA := startReporterWith(t, cfg, nil, opts())
	b, stopB := startReporterWith(t, cfg, nil, opts())
	feedCtx, stopFeed := context.WithCancel(ctx)
	defer stopFeed()
	go feed(feedCtx, d, a, b)

	create(t, c, virtualService(ns, "broken", "nowhere", "nowhere.election.svc.cluster.local", ""))
	eventually(t, "the finding reported once", func() (bool, string) {
		_, summary := statusOf(t, c, ns, "broken")
		n := len(warnings(t, c, ns, "broken"))
		return strings.Contains(summary, "Reconciled=False") && n == 1, fmt.Sprintf("%s, %d events", summary, n)
	})
	time.Sleep(5 * testInterval)
	if n := len(warnings(t, c, ns, "broken")); n != 1 {
		t.Fatalf("%d events for one finding, want 1 (one reporter)", n)
	}

	// Stop the leader (the one that reported rounds): the other takes over.
	stopLeader := stopA
	if b.rounds.Load() > a.rounds.Load() {
		stopLeader = stopB
	}
	stopLeader()
	create(t, c, virtualService(ns, "broken-too", "elsewhere", "elsewhere.election.svc.cluster.local", ""))
	eventually(t, "the other replica reports", func() (bool, string) {
		_, summary := statusOf(t, c, ns, "broken-too")
		return strings.Contains(summary, "Reconciled=False"), summary
	})
}

// TestReporterSecurityPolicies: the security kinds get their status like the networking ones.
// Of two namespace-wide PeerAuthentications the newer one is ignored by Istio: it reports that
// as a warning and one Warning event; the policy that applies and the others are Accepted.
func TestReporterSecurityPolicies(t *testing.T) {
	cfg := apiServer(t)
	c := istioClient(t, cfg)
	const ns = "auth"
	create(t, c, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}})
	strict := &istiosecurity.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}
	strict.Spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT}
	create(t, c, strict)
	// Created later, or in the same second and after it by name: the ignored one either way.
	permissive := &istiosecurity.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "permissive", Namespace: ns}}
	permissive.Spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_PERMISSIVE}
	create(t, c, permissive)
	policy := &istiosecurity.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "viewer", Namespace: ns}}
	policy.Spec.Rules = []*security.Rule{{To: []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET"}}}}}}
	create(t, c, policy)
	jwt := &istiosecurity.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "jwt", Namespace: ns}}
	jwt.Spec.JwtRules = []*security.JWTRule{{Issuer: "https://issuer.example.com", JwksUri: "https://issuer.example.com/jwks"}}
	create(t, c, jwt)

	d := startDiscovery(t, cfg)
	startReporter(t, cfg, d)

	statusOfPolicy := func(obj client.Object) string {
		if err := c.Get(context.Background(), client.ObjectKeyFromObject(obj), obj); err != nil {
			t.Fatal(err)
		}
		switch o := obj.(type) {
		case *istiosecurity.PeerAuthentication:
			return summarize(&o.Status)
		case *istiosecurity.AuthorizationPolicy:
			return summarize(&o.Status)
		case *istiosecurity.RequestAuthentication:
			return summarize(&o.Status)
		}
		return fmt.Sprintf("%T", obj)
	}
	for obj, want := range map[client.Object]string{
		&istiosecurity.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "permissive", Namespace: ns}}: "gen=1 Reconciled=True reason=AcceptedWithWarnings gen=1 MP1006 WARNING",
		&istiosecurity.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: ns}}:    "gen=1 Reconciled=True reason=Accepted gen=1",
		&istiosecurity.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: "viewer", Namespace: ns}}:    "gen=1 Reconciled=True reason=Accepted gen=1",
		&istiosecurity.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: "jwt", Namespace: ns}}:     "gen=1 Reconciled=True reason=Accepted gen=1",
	} {
		eventually(t, fmt.Sprintf("the status of %T %s", obj, obj.GetName()), func() (bool, string) {
			got := statusOfPolicy(obj)
			return got == want, got + ", want " + want
		})
	}
	events := warnings(t, c, ns, "permissive")
	if len(events) != 1 || events[0].Reason != "ConflictingPeerAuthentications" || events[0].Regarding.Kind != "PeerAuthentication" ||
		events[0].Regarding.APIVersion != "security.istio.io/v1" || !strings.Contains(events[0].Note, "PeerAuthentication auth/default is the oldest") {
		t.Errorf("events about the ignored PeerAuthentication: %+v", events)
	}
	for _, name := range []string{"default", "viewer", "jwt"} {
		if events := warnings(t, c, ns, name); len(events) != 0 {
			t.Errorf("events about %s: %+v", name, events)
		}
	}

	// Once the older one is deleted, the other one applies: its warning goes.
	if err := c.Delete(context.Background(), strict); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the warning cleared", func() (bool, string) {
		got := statusOfPolicy(permissive)
		return got == "gen=1 Reconciled=True reason=Accepted gen=1", got
	})
}
