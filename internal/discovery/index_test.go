package discovery

import (
	"encoding/json"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	networking "istio.io/api/networking/v1"
	security "istio.io/api/security/v1beta1"
	istiotype "istio.io/api/type/v1beta1"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/utils/ptr"

	"github.com/meshplane/meshplane/internal/model"
)

// dump renders what generators can see of a World, deterministically.
func dump(t testing.TB, w *model.World) string {
	t.Helper()
	b, err := json.MarshalIndent(struct {
		Mesh      model.MeshConfig
		Services  []*model.Service
		Workloads []*model.Workload
		Config    []string
	}{w.Mesh, w.Services, w.Workloads, dumpConfig(t, &w.Config)}, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// dumpConfig renders every config object as "kind meta spec".
func dumpConfig(t testing.TB, c *model.Config) []string {
	t.Helper()
	var out []string
	add := func(kind string, m model.Meta, spec proto.Message) {
		b, err := protojson.Marshal(spec)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, fmt.Sprintf("%s %+v %s", kind, m, b))
	}
	for _, o := range c.VirtualServices {
		add("VirtualService", o.Meta, o.Spec)
	}
	for _, o := range c.DestinationRules {
		add("DestinationRule", o.Meta, o.Spec)
	}
	for _, o := range c.Gateways {
		add("Gateway", o.Meta, o.Spec)
	}
	for _, o := range c.ServiceEntries {
		add("ServiceEntry", o.Meta, o.Spec)
	}
	for _, o := range c.Sidecars {
		add("Sidecar", o.Meta, o.Spec)
	}
	for _, o := range c.PeerAuthentications {
		add("PeerAuthentication", o.Meta, o.Spec)
	}
	for _, o := range c.AuthorizationPolicies {
		add("AuthorizationPolicy", o.Meta, o.Spec)
	}
	for _, o := range c.RequestAuthentications {
		add("RequestAuthentication", o.Meta, o.Spec)
	}
	for _, k := range slices.Sorted(maps.Keys(c.Credentials)) {
		o := c.Credentials[k]
		out = append(out, fmt.Sprintf("Credential %s %+v cert=%q key=%q ca=%q", k, o.Meta, o.Cert, o.Key, o.CA))
	}
	return out
}

func testVirtualService(ns, name, host string, gen int64) *istionetworking.VirtualService {
	vs := &istionetworking.VirtualService{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: gen}}
	vs.Spec.Hosts = []string{host}
	vs.Spec.Http = []*networking.HTTPRoute{{Route: []*networking.HTTPRouteDestination{{
		Destination: &networking.Destination{Host: host, Subset: "v1"}}}}}
	return vs
}

func testDestinationRule(ns, name, host string, gen int64) *istionetworking.DestinationRule {
	dr := &istionetworking.DestinationRule{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: gen}}
	dr.Spec.Host = host
	dr.Spec.Subsets = []*networking.Subset{{Name: "v1", Labels: map[string]string{"version": "v1"}}}
	return dr
}

func testPeerAuthentication(ns, name, app string, gen int64) *istiosecurity.PeerAuthentication {
	pa := &istiosecurity.PeerAuthentication{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: gen}}
	pa.Spec.Mtls = &security.PeerAuthentication_MutualTLS{Mode: security.PeerAuthentication_MutualTLS_STRICT}
	if app != "" {
		pa.Spec.Selector = &istiotype.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
		pa.Spec.PortLevelMtls = map[uint32]*security.PeerAuthentication_MutualTLS{
			8080: {Mode: security.PeerAuthentication_MutualTLS_PERMISSIVE},
		}
	}
	return pa
}

func testAuthorizationPolicy(ns, name, app string, gen int64) *istiosecurity.AuthorizationPolicy {
	ap := &istiosecurity.AuthorizationPolicy{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: gen}}
	ap.Spec.Selector = &istiotype.WorkloadSelector{MatchLabels: map[string]string{"app": app}}
	ap.Spec.Rules = []*security.Rule{{
		From: []*security.Rule_From{{Source: &security.Source{Principals: []string{"cluster.local/ns/" + ns + "/sa/client"}}}},
		To:   []*security.Rule_To{{Operation: &security.Operation{Methods: []string{"GET"}, Paths: []string{"/" + app + "/*"}}}},
	}}
	return ap
}

func testRequestAuthentication(ns, name, issuer string, gen int64) *istiosecurity.RequestAuthentication {
	ra := &istiosecurity.RequestAuthentication{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: gen}}
	ra.Spec.JwtRules = []*security.JWTRule{{Issuer: issuer, JwksUri: issuer + "/jwks.json"}}
	return ra
}

func testService(ns, name, ip string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"app": name}},
		Spec: corev1.ServiceSpec{ClusterIP: ip, Ports: []corev1.ServicePort{
			{Name: "http-web", Port: 80}, {Name: "grpc-api", Port: 9090},
		}},
	}
}

type testEP struct {
	ip, pod, node string
	ready         bool
}

func testSlice(ns, name, svc string, eps ...testEP) *discoveryv1.EndpointSlice {
	s := &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{discoveryv1.LabelServiceName: svc}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Ports: []discoveryv1.EndpointPort{
			{Name: ptr.To("http-web"), Port: ptr.To[int32](8080)},
			{Name: ptr.To("grpc-api"), Port: ptr.To[int32](9090)},
		},
	}
	for _, e := range eps {
		ep := discoveryv1.Endpoint{Addresses: []string{e.ip}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(e.ready)}}
		if e.pod != "" {
			ep.TargetRef = &corev1.ObjectReference{Kind: "Pod", Namespace: ns, Name: e.pod}
		}
		if e.node != "" {
			ep.NodeName = ptr.To(e.node)
		}
		s.Endpoints = append(s.Endpoints, ep)
	}
	return s
}

func testPod(ns, name, ip, sa, node string, phase corev1.PodPhase) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: map[string]string{"pod": name}},
		Spec:       corev1.PodSpec{ServiceAccountName: sa, NodeName: node},
		Status:     corev1.PodStatus{Phase: phase, PodIP: ip},
	}
}

func testNamespace(name string, l map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: l}}
}

func testNode(name, zone string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{
		corev1.LabelTopologyRegion: "r1", corev1.LabelTopologyZone: zone}}}
}

// universe is a random cluster's current objects, with the same events
// applied to an index incrementally.
type universe struct {
	rnd     *rand.Rand
	objects map[string]runtime.Object
	x       *index
	sel     []metav1.LabelSelector
	// configEvents counts the steps that may have changed the World's
	// config: config objects, namespaces (scope) and selectors.
	configEvents int
}

var meshSelector = []metav1.LabelSelector{{MatchLabels: map[string]string{"mesh": "on"}}}

func (u *universe) step() {
	r := u.rnd
	ns := fmt.Sprintf("ns%d", r.IntN(3))
	node := fmt.Sprintf("node%d", r.IntN(2))
	pod := fmt.Sprintf("p%d", r.IntN(6))
	ip := func() string { return fmt.Sprintf("10.0.%d.%d", r.IntN(2), r.IntN(6)) }
	del := r.IntN(4) == 0
	var obj runtime.Object
	var key string
	switch r.IntN(7) {
	case 0:
		name := fmt.Sprintf("s%d", r.IntN(3))
		key = "svc/" + ns + "/" + name
		obj = testService(ns, name, ip())
	case 1, 2:
		name := fmt.Sprintf("s%d-%d", r.IntN(3), r.IntN(2))
		key = "slice/" + ns + "/" + name
		var eps []testEP
		for range r.IntN(4) {
			e := testEP{ip: ip(), ready: r.IntN(3) > 0}
			if r.IntN(3) > 0 {
				e.pod = fmt.Sprintf("p%d", r.IntN(6))
			}
			if r.IntN(2) == 0 {
				e.node = node
			}
			eps = append(eps, e)
		}
		obj = testSlice(ns, name, name[:2], eps...)
	case 3:
		key = "pod/" + ns + "/" + pod
		phases := []corev1.PodPhase{corev1.PodPending, corev1.PodRunning, corev1.PodRunning, corev1.PodSucceeded}
		podIP := ip()
		if r.IntN(5) == 0 {
			podIP = ""
		}
		obj = testPod(ns, pod, podIP, fmt.Sprintf("sa%d", r.IntN(2)), node, phases[r.IntN(len(phases))])
	case 4:
		key = "ns/" + ns
		l := map[string]string{}
		if r.IntN(2) == 0 {
			l["mesh"] = "on"
		}
		obj = testNamespace(ns, l)
		u.configEvents++
	case 5:
		if r.IntN(10) == 0 {
			u.sel = nil
			if r.IntN(2) == 0 {
				u.sel = meshSelector
			}
			s, _ := CompileSelectors(u.sel)
			u.x.setMesh(model.MeshConfig{TrustDomain: "td"}, s)
			u.configEvents++
			return
		}
		key = "node/" + node
		obj = testNode(node, fmt.Sprintf("z%d", r.IntN(2)))
	case 6:
		name := fmt.Sprintf("c%d", r.IntN(2))
		host := fmt.Sprintf("s%d", r.IntN(3))
		gen := int64(1 + r.IntN(2))
		switch r.IntN(9) {
		case 6:
			key = "pa/" + ns + "/" + name
			obj = testPeerAuthentication(ns, name, host, gen)
		case 7:
			key = "ap/" + ns + "/" + name
			obj = testAuthorizationPolicy(ns, name, host, gen)
		case 8:
			key = "ra/" + ns + "/" + name
			obj = testRequestAuthentication(ns, name, "https://"+host+".example.com", gen)
		case 0, 1:
			key = "vs/" + ns + "/" + name
			obj = testVirtualService(ns, name, host, gen)
		case 2, 3:
			key = "dr/" + ns + "/" + name
			obj = testDestinationRule(ns, name, host, gen)
		case 4:
			key = "se/" + ns + "/" + name
			se := &istionetworking.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Generation: gen}}
			se.Spec.Hosts = []string{host + ".example.com"}
			obj = se
		default:
			// Either type under one key: an Opaque Secret stands for a
			// credential's deletion.
			key = "secret/" + ns + "/" + name
			secretType := corev1.SecretTypeTLS
			if r.IntN(4) == 0 {
				secretType = corev1.SecretTypeOpaque
			}
			obj = testSecret(ns, name, secretType, "cert-"+host)
		}
		u.configEvents++
	}
	if del {
		if _, ok := u.objects[key]; !ok {
			return
		}
		delete(u.objects, key)
		m, _ := metaOf(obj)
		k := objKey{m.Namespace, m.Name}
		switch obj.(type) {
		case *corev1.Service:
			u.x.deleteService(k)
		case *discoveryv1.EndpointSlice:
			u.x.deleteSlice(k)
		case *corev1.Pod:
			u.x.deletePod(k)
		case *corev1.Namespace:
			u.x.deleteNamespace(k.name)
		case *corev1.Node:
			u.x.deleteNode(k.name)
		case *corev1.Secret:
			u.x.deleteSecret(k)
		default:
			u.x.deleteConfig(obj, k)
		}
		return
	}
	u.objects[key] = obj
	switch o := obj.(type) {
	case *corev1.Service:
		u.x.upsertService(o)
	case *discoveryv1.EndpointSlice:
		u.x.upsertSlice(o)
	case *corev1.Pod:
		u.x.upsertPod(o)
	case *corev1.Namespace:
		u.x.upsertNamespace(&o.ObjectMeta)
	case *corev1.Node:
		u.x.upsertNode(o.Name, o.Labels)
	case *corev1.Secret:
		u.x.upsertSecret(o)
	default:
		if !u.x.upsertConfig(o) {
			panic(fmt.Sprintf("universe made a %T", o))
		}
	}
}

func metaOf(o runtime.Object) (*metav1.ObjectMeta, bool) {
	switch o := o.(type) {
	case *corev1.Service:
		return &o.ObjectMeta, true
	case *discoveryv1.EndpointSlice:
		return &o.ObjectMeta, true
	case *corev1.Pod:
		return &o.ObjectMeta, true
	case *corev1.Namespace:
		return &o.ObjectMeta, true
	case *corev1.Node:
		return &o.ObjectMeta, true
	case *corev1.Secret:
		return &o.ObjectMeta, true
	case *istionetworking.VirtualService:
		return &o.ObjectMeta, true
	case *istionetworking.DestinationRule:
		return &o.ObjectMeta, true
	case *istionetworking.ServiceEntry:
		return &o.ObjectMeta, true
	case *istiosecurity.PeerAuthentication:
		return &o.ObjectMeta, true
	case *istiosecurity.AuthorizationPolicy:
		return &o.ObjectMeta, true
	case *istiosecurity.RequestAuthentication:
		return &o.ObjectMeta, true
	}
	return nil, false
}

// TestIncrementalMatchesFullBuild applies random event sequences to an index,
// building Worlds along the way, and checks that every World equals one built
// from scratch from the objects present at that moment, that no World
// changes after it was handed out, and that Worlds built across steps that
// touched no config, namespace or selector share their config objects.
func TestIncrementalMatchesFullBuild(t *testing.T) {
	mesh := model.MeshConfig{TrustDomain: "td"}
	worldsWithConfig, worldsWithPolicies, worldsWithCredentials := 0, 0, 0
	for seed := range uint64(40) {
		u := &universe{
			rnd:     rand.New(rand.NewPCG(seed, 7)),
			objects: map[string]runtime.Object{},
			sel:     meshSelector,
		}
		s, _ := CompileSelectors(u.sel)
		u.x = newIndex(mesh, s)
		type handedOut struct {
			w    *model.World
			dump string
		}
		var worlds []handedOut
		var prev *model.World
		configEventsAtPrev := 0
		sharedChecks := 0
		for i := range 300 {
			u.step()
			if u.rnd.IntN(3) > 0 {
				continue
			}
			got := u.x.build()
			if prev != nil && u.configEvents == configEventsAtPrev {
				sharedChecks++
				if !model.SameConfig(prev, got) {
					t.Fatalf("seed %d step %d: no config event, yet the World's config objects changed", seed, i)
				}
			}
			prev, configEventsAtPrev = got, u.configEvents
			keys := make([]string, 0, len(u.objects))
			for k := range u.objects {
				keys = append(keys, k)
			}
			// The full build sees the objects in another order.
			u.rnd.Shuffle(len(keys), func(i, j int) { keys[i], keys[j] = keys[j], keys[i] })
			objs := make([]runtime.Object, len(keys))
			for i, k := range keys {
				objs[i] = u.objects[k]
			}
			want, err := BuildWorld(Options{Mesh: mesh, DiscoverySelectors: u.sel}, objs...)
			if err != nil {
				t.Fatal(err)
			}
			gotDump, wantDump := dump(t, got), dump(t, want)
			if gotDump != wantDump {
				t.Fatalf("seed %d step %d: incremental World differs from a full build\ngot:\n%s\nwant:\n%s", seed, i, gotDump, wantDump)
			}
			if len(got.Config.VirtualServices)+len(got.Config.DestinationRules)+len(got.Config.ServiceEntries) > 0 {
				worldsWithConfig++
			}
			if len(got.Config.PeerAuthentications) > 0 && len(got.Config.AuthorizationPolicies) > 0 && len(got.Config.RequestAuthentications) > 0 {
				worldsWithPolicies++
			}
			if len(got.Config.Credentials) > 0 {
				worldsWithCredentials++
			}
			if len(worlds) == 0 || worlds[len(worlds)-1].w != got {
				worlds = append(worlds, handedOut{got, gotDump})
			}
		}
		for i, h := range worlds {
			if d := dump(t, h.w); d != h.dump {
				t.Fatalf("seed %d: World %d changed after it was built:\nthen:\n%s\nnow:\n%s", seed, i, h.dump, d)
			}
		}
		if sharedChecks == 0 {
			t.Fatalf("seed %d: no pair of builds without a config event; the sharing check never ran", seed)
		}
	}
	if worldsWithConfig == 0 || worldsWithPolicies == 0 || worldsWithCredentials == 0 {
		t.Fatalf("%d Worlds had config in them, %d every security kind, %d credentials; the comparison must cover them all",
			worldsWithConfig, worldsWithPolicies, worldsWithCredentials)
	}
}

// bigIndex is a cluster of n services in 10 namespaces, each with one slice of
// eps endpoints backed by running pods.
func bigIndex(n, eps int) *index {
	x := newIndex(model.MeshConfig{TrustDomain: "cluster.local"}, nil)
	for i := range 2 {
		n := testNode(fmt.Sprintf("node%d", i), fmt.Sprintf("z%d", i))
		x.upsertNode(n.Name, n.Labels)
	}
	for i := range n {
		ns := fmt.Sprintf("ns%d", i%10)
		name := fmt.Sprintf("svc%d", i)
		x.upsertService(testService(ns, name, fmt.Sprintf("10.96.%d.%d", i/250, i%250)))
		var list []testEP
		for j := range eps {
			ip := fmt.Sprintf("10.%d.%d.%d", 1+j, i/250, i%250)
			pod := fmt.Sprintf("%s-%d", name, j)
			node := fmt.Sprintf("node%d", j%2)
			x.upsertPod(testPod(ns, pod, ip, name, node, corev1.PodRunning))
			list = append(list, testEP{ip: ip, pod: pod, ready: true})
		}
		x.upsertSlice(testSlice(ns, name+"-abc", name, list...))
	}
	return x
}

// TestUnchangedServicesShared checks that a change to one Service's endpoints
// rebuilds that Service only.
func TestUnchangedServicesShared(t *testing.T) {
	x := bigIndex(50, 3)
	w1 := x.build()
	if x.build() != w1 {
		t.Fatal("a build without changes made a new World")
	}
	// A no-op update (a resync) does not make a new World either.
	x.upsertPod(testPod("ns7", "svc7-1", "10.2.0.7", "svc7", "node1", corev1.PodRunning))
	if x.build() != w1 {
		t.Fatal("a no-op update made a new World")
	}

	x.upsertSlice(testSlice("ns7", "svc7-abc", "svc7",
		testEP{ip: "10.1.0.7", pod: "svc7-0", ready: true}, testEP{ip: "10.2.0.7", pod: "svc7-1", ready: false}))
	w2 := x.build()
	if w2 == w1 {
		t.Fatal("no new World")
	}
	changed := 0
	for i := range w1.Services {
		if w1.Services[i] != w2.Services[i] {
			changed++
			if w2.Services[i].Name != "svc7" {
				t.Errorf("service %s rebuilt", w2.Services[i].Name)
			}
		}
	}
	if changed != 1 {
		t.Errorf("%d services rebuilt, want 1", changed)
	}
	svc7 := w2.ServiceByHostname("svc7.ns7.svc.cluster.local")
	if len(svc7.Endpoints) != 2 || svc7.Endpoints[1].Ready || !svc7.Endpoints[0].Ready {
		t.Errorf("svc7 endpoints: %s", dump(t, model.NewWorld(w2.Mesh, []*model.Service{svc7}, nil)))
	}
	if len(w1.ServiceByHostname("svc7.ns7.svc.cluster.local").Endpoints) != 3 {
		t.Error("the old World changed")
	}

	// A pod's labels reach the endpoints naming it; other services stay shared.
	p := testPod("ns3", "svc3-0", "10.1.0.3", "other-sa", "node0", corev1.PodRunning)
	x.upsertPod(p)
	w3 := x.build()
	ep := w3.ServiceByHostname("svc3.ns3.svc.cluster.local").Endpoints[0]
	if ep.ServiceAccount != "other-sa" || ep.Locality.Zone != "z0" || ep.NodeName != "node0" {
		t.Errorf("endpoint of svc3-0: %+v", ep)
	}
	if w3.ServiceByHostname("svc4.ns4.svc.cluster.local") != w2.ServiceByHostname("svc4.ns4.svc.cluster.local") {
		t.Error("svc4 rebuilt for a pod of svc3")
	}
	if w3.Workload("ns3", "svc3-0").ServiceAccount != "other-sa" {
		t.Error("workload not updated")
	}

	// A node's zone reaches its workloads and endpoints.
	n := testNode("node0", "z9")
	x.upsertNode(n.Name, n.Labels)
	w4 := x.build()
	if got := w4.ServiceByHostname("svc3.ns3.svc.cluster.local").Endpoints[0].Locality.Zone; got != "z9" {
		t.Errorf("endpoint zone %q after the node changed", got)
	}
	if got := w4.Workload("ns3", "svc3-0").Locality.Zone; got != "z9" {
		t.Errorf("workload zone %q after the node changed", got)
	}
}

func TestScope(t *testing.T) {
	sel, _ := CompileSelectors(meshSelector)
	x := newIndex(model.MeshConfig{}, sel)
	x.upsertNamespace(&testNamespace("in", map[string]string{"mesh": "on"}).ObjectMeta)
	x.upsertNamespace(&testNamespace("out", nil).ObjectMeta)
	for _, ns := range []string{"in", "out", "unknown"} {
		x.upsertService(testService(ns, "web", ""))
		x.upsertPod(testPod(ns, "web-0", "10.0.0.1", "web", "", corev1.PodRunning))
	}
	names := func(w *model.World) (out []string) {
		for _, s := range w.Services {
			out = append(out, s.Hostname)
		}
		for _, wl := range w.Workloads {
			out = append(out, wl.Namespace+"/"+wl.Name)
		}
		return out
	}
	w := x.build()
	if got, want := names(w), []string{"web.in.svc.cluster.local", "in/web-0"}; !slices.Equal(got, want) {
		t.Fatalf("in scope: %v, want %v", got, want)
	}
	// Relabelling "out" brings it in.
	x.upsertNamespace(&testNamespace("out", map[string]string{"mesh": "on"}).ObjectMeta)
	w = x.build()
	if got, want := names(w), []string{"web.in.svc.cluster.local", "web.out.svc.cluster.local", "in/web-0", "out/web-0"}; !slices.Equal(got, want) {
		t.Fatalf("after relabel: %v, want %v", got, want)
	}
	// A change in an out-of-scope namespace makes no new World.
	x.upsertService(testService("unknown", "web", "10.9.9.9"))
	if x.build() != w {
		t.Error("an out-of-scope change made a new World")
	}
	// Without selectors everything is in scope.
	x.setMesh(model.MeshConfig{}, nil)
	if got := names(x.build()); len(got) != 6 {
		t.Fatalf("without selectors: %v", got)
	}
	// A new domain suffix renames the services.
	x.setMesh(model.MeshConfig{DomainSuffix: "example.org"}, sel)
	if got, want := names(x.build()), []string{"web.in.svc.example.org", "web.out.svc.example.org", "in/web-0", "out/web-0"}; !slices.Equal(got, want) {
		t.Fatalf("new suffix: %v, want %v", got, want)
	}
	// Deleting a namespace takes it out of scope.
	x.deleteNamespace("in")
	if got, want := names(x.build()), []string{"web.out.svc.example.org", "out/web-0"}; !slices.Equal(got, want) {
		t.Fatalf("after deleting a namespace: %v, want %v", got, want)
	}
}

// TestConfigIntake follows Istio config objects through the index: scope,
// pointer sharing across Worlds, no World for an unchanged object, specs
// copied from the input.
func TestConfigIntake(t *testing.T) {
	sel, _ := CompileSelectors(meshSelector)
	x := newIndex(model.MeshConfig{}, sel)
	x.upsertNamespace(&testNamespace("in", map[string]string{"mesh": "on"}).ObjectMeta)
	x.upsertNamespace(&testNamespace("out", nil).ObjectMeta)
	x.upsertService(testService("in", "web", "10.96.0.1"))
	vs := testVirtualService("in", "web", "web", 1)
	dr := testDestinationRule("in", "web", "web", 1)
	x.upsertConfig(vs)
	x.upsertConfig(dr)
	x.upsertConfig(testVirtualService("out", "web", "web", 1))
	x.upsertConfig(testDestinationRule("out", "web", "web", 1))
	keys := func(w *model.World) (out []string) {
		for _, o := range w.Config.VirtualServices {
			out = append(out, "vs "+o.Key())
		}
		for _, o := range w.Config.DestinationRules {
			out = append(out, "dr "+o.Key())
		}
		return out
	}
	w1 := x.build()
	if got, want := keys(w1), []string{"vs in/web", "dr in/web"}; !slices.Equal(got, want) {
		t.Fatalf("config in scope: %v, want %v", got, want)
	}
	if !proto.Equal(w1.Config.VirtualServices[0].Spec, &vs.Spec) || !proto.Equal(w1.Config.DestinationRules[0].Spec, &dr.Spec) {
		t.Fatalf("specs differ from the objects':\n%s", dumpConfig(t, &w1.Config))
	}
	if w1.DestinationRule("web.in.svc.cluster.local", "in") != w1.Config.DestinationRules[0] {
		t.Error("the World does not resolve the DestinationRule of its Service")
	}

	// The model holds copies: changing the input afterwards changes nothing.
	vs.Spec.Hosts[0] = "mutated"
	dr.Spec.Subsets[0].Name = "mutated"
	if h := w1.Config.VirtualServices[0].Spec.GetHosts()[0]; h != "web" {
		t.Errorf("VirtualService host %q after the input changed", h)
	}
	if n := w1.Config.DestinationRules[0].Spec.GetSubsets()[0].GetName(); n != "v1" {
		t.Errorf("DestinationRule subset %q after the input changed", n)
	}

	// The same generation and spec with another status and metadata (a
	// status write, a resync) makes no new World.
	same := testDestinationRule("in", "web", "web", 1)
	same.ResourceVersion, same.Annotations = "42", map[string]string{"a": "b"}
	same.Status.ObservedGeneration = 1
	x.upsertConfig(same)
	if x.build() != w1 {
		t.Fatal("an unchanged DestinationRule made a new World")
	}

	// An endpoint change shares every config object.
	x.upsertSlice(testSlice("in", "web-abc", "web", testEP{ip: "10.0.0.1", ready: true}))
	w2 := x.build()
	if w2 == w1 || !model.SameConfig(w1, w2) {
		t.Fatalf("after an endpoint change: new World %v, same config %v", w2 != w1, model.SameConfig(w1, w2))
	}

	// A spec change replaces that object only.
	x.upsertConfig(testVirtualService("in", "web", "web-v2", 2))
	w3 := x.build()
	if w3.Config.VirtualServices[0] == w2.Config.VirtualServices[0] || w3.Config.VirtualServices[0].Spec.GetHosts()[0] != "web-v2" ||
		w3.Config.VirtualServices[0].Generation != 2 {
		t.Errorf("VirtualService after its update: %s", dumpConfig(t, &w3.Config))
	}
	if w3.Config.DestinationRules[0] != w2.Config.DestinationRules[0] {
		t.Error("the unchanged DestinationRule got a new pointer")
	}
	if w3.Services[0] != w2.Services[0] {
		t.Error("a config change rebuilt a Service")
	}

	// Out of scope: no new World; brought into scope: there.
	x.upsertConfig(testVirtualService("out", "web", "other", 2))
	if x.build() != w3 {
		t.Error("an out-of-scope config change made a new World")
	}
	x.upsertNamespace(&testNamespace("out", map[string]string{"mesh": "on"}).ObjectMeta)
	w4 := x.build()
	if got, want := keys(w4), []string{"vs in/web", "vs out/web", "dr in/web", "dr out/web"}; !slices.Equal(got, want) {
		t.Fatalf("after relabelling: %v, want %v", got, want)
	}
	if w4.Config.VirtualServices[0] != w3.Config.VirtualServices[0] {
		t.Error("a scope change replaced an object")
	}

	// Deletion removes; deleting what is not there changes nothing.
	x.deleteConfig(&istionetworking.VirtualService{}, objKey{"in", "web"})
	w5 := x.build()
	if got, want := keys(w5), []string{"vs out/web", "dr in/web", "dr out/web"}; !slices.Equal(got, want) {
		t.Fatalf("after the delete: %v, want %v", got, want)
	}
	x.deleteConfig(&istionetworking.VirtualService{}, objKey{"in", "web"})
	x.deleteConfig(&istionetworking.Sidecar{}, objKey{"in", "web"})
	if x.build() != w5 {
		t.Error("deleting absent objects made a new World")
	}
}

// TestSecurityConfigIntake: the security.istio.io kinds enter the World like
// the networking ones: in scope only, as copies, sorted, a pointer kept while
// unchanged, gone when deleted.
func TestSecurityConfigIntake(t *testing.T) {
	sel, _ := CompileSelectors(meshSelector)
	x := newIndex(model.MeshConfig{}, sel)
	x.upsertNamespace(&testNamespace("in", map[string]string{"mesh": "on"}).ObjectMeta)
	x.upsertNamespace(&testNamespace("out", nil).ObjectMeta)
	pa := testPeerAuthentication("in", "web", "web", 1)
	ap := testAuthorizationPolicy("in", "web", "web", 1)
	ra := testRequestAuthentication("in", "web", "https://issuer.example.com", 1)
	for _, o := range []runtime.Object{
		pa, ap, ra, testPeerAuthentication("in", "default", "", 1),
		testPeerAuthentication("out", "web", "web", 1), testAuthorizationPolicy("out", "web", "web", 1),
		testRequestAuthentication("out", "web", "https://issuer.example.com", 1),
	} {
		if !x.upsertConfig(o) {
			t.Fatalf("%T not taken as config", o)
		}
	}
	w1 := x.build()
	c := w1.Config
	if len(c.PeerAuthentications) != 2 || c.PeerAuthentications[0].Key() != "in/default" || c.PeerAuthentications[1].Key() != "in/web" ||
		len(c.AuthorizationPolicies) != 1 || len(c.RequestAuthentications) != 1 {
		t.Fatalf("security config in scope:\n%s", dumpConfig(t, &c))
	}
	if !proto.Equal(c.PeerAuthentications[1].Spec, &pa.Spec) || !proto.Equal(c.AuthorizationPolicies[0].Spec, &ap.Spec) ||
		!proto.Equal(c.RequestAuthentications[0].Spec, &ra.Spec) || c.AuthorizationPolicies[0].Generation != 1 {
		t.Fatalf("specs differ from the objects':\n%s", dumpConfig(t, &c))
	}

	// Copies: changing the input afterwards changes nothing.
	pa.Spec.PortLevelMtls[8080].Mode = 0
	ap.Spec.Rules[0].To[0].Operation.Paths[0] = "/mutated"
	ra.Spec.JwtRules[0].Issuer = "mutated"
	if c.PeerAuthentications[1].Spec.GetPortLevelMtls()[8080].GetMode().String() != "PERMISSIVE" ||
		c.AuthorizationPolicies[0].Spec.GetRules()[0].GetTo()[0].GetOperation().GetPaths()[0] != "/web/*" ||
		c.RequestAuthentications[0].Spec.GetJwtRules()[0].GetIssuer() != "https://issuer.example.com" {
		t.Errorf("the model changed with its input:\n%s", dumpConfig(t, &c))
	}

	// An unchanged object makes no new World; a changed one replaces only itself.
	x.upsertConfig(testAuthorizationPolicy("in", "web", "web", 1))
	if x.build() != w1 {
		t.Fatal("an unchanged AuthorizationPolicy made a new World")
	}
	x.upsertConfig(testAuthorizationPolicy("in", "web", "api", 2))
	w2 := x.build()
	if w2.Config.AuthorizationPolicies[0] == c.AuthorizationPolicies[0] || w2.Config.AuthorizationPolicies[0].Generation != 2 {
		t.Errorf("AuthorizationPolicy after its update: %s", dumpConfig(t, &w2.Config))
	}
	if !slices.Equal(w2.Config.PeerAuthentications, c.PeerAuthentications) || !slices.Equal(w2.Config.RequestAuthentications, c.RequestAuthentications) {
		t.Error("unchanged policies got new pointers")
	}

	// Out of scope: no new World. Deleted: gone.
	x.upsertConfig(testRequestAuthentication("out", "web", "https://other.example.com", 2))
	if x.build() != w2 {
		t.Error("an out-of-scope change made a new World")
	}
	x.deleteConfig(&istiosecurity.PeerAuthentication{}, objKey{"in", "default"})
	x.deleteConfig(&istiosecurity.AuthorizationPolicy{}, objKey{"in", "web"})
	x.deleteConfig(&istiosecurity.RequestAuthentication{}, objKey{"in", "web"})
	w3 := x.build()
	if len(w3.Config.PeerAuthentications) != 1 || len(w3.Config.AuthorizationPolicies) != 0 || len(w3.Config.RequestAuthentications) != 0 {
		t.Errorf("after the deletes:\n%s", dumpConfig(t, &w3.Config))
	}
}

func TestBuildWorldWithConfig(t *testing.T) {
	se := &istionetworking.ServiceEntry{ObjectMeta: metav1.ObjectMeta{Name: "ext", Namespace: "b",
		CreationTimestamp: metav1.Unix(1700000000, 0)}}
	se.Spec.Hosts = []string{"api.example.com"}
	gw := &istionetworking.Gateway{ObjectMeta: metav1.ObjectMeta{Name: "gw", Namespace: "a"}}
	gw.Spec.Selector = map[string]string{"istio": "ingressgateway"}
	sc := &istionetworking.Sidecar{ObjectMeta: metav1.ObjectMeta{Name: "default", Namespace: "a"}}
	sc.Spec.Egress = []*networking.IstioEgressListener{{Hosts: []string{"./*"}}}
	w, err := BuildWorld(Options{}, testService("a", "web", "10.96.0.1"),
		testVirtualService("b", "web", "web.a.svc.cluster.local", 3), testVirtualService("a", "web", "web", 1),
		testDestinationRule("a", "web", "web", 1), se, gw, sc,
		testPeerAuthentication("b", "default", "", 1), testPeerAuthentication("a", "web", "web", 2),
		testAuthorizationPolicy("a", "web", "web", 1), testRequestAuthentication("a", "web", "https://issuer.example.com", 1))
	if err != nil {
		t.Fatal(err)
	}
	c := w.Config
	if len(c.VirtualServices) != 2 || c.VirtualServices[0].Key() != "a/web" || c.VirtualServices[1].Key() != "b/web" ||
		c.VirtualServices[1].Generation != 3 {
		t.Errorf("VirtualServices, sorted by namespace: %s", dumpConfig(t, &c))
	}
	if len(c.DestinationRules) != 1 || len(c.Gateways) != 1 || len(c.ServiceEntries) != 1 || len(c.Sidecars) != 1 {
		t.Fatalf("config: %s", dumpConfig(t, &c))
	}
	if c.ServiceEntries[0].CreationUnix != 1700000000 || c.Gateways[0].CreationUnix != 0 {
		t.Errorf("creation times %d, %d", c.ServiceEntries[0].CreationUnix, c.Gateways[0].CreationUnix)
	}
	if !proto.Equal(c.Gateways[0].Spec, &gw.Spec) || !proto.Equal(c.Sidecars[0].Spec, &sc.Spec) || !proto.Equal(c.ServiceEntries[0].Spec, &se.Spec) {
		t.Errorf("specs: %s", dumpConfig(t, &c))
	}
	if len(c.PeerAuthentications) != 2 || c.PeerAuthentications[0].Key() != "a/web" || c.PeerAuthentications[0].Generation != 2 ||
		c.PeerAuthentications[1].Key() != "b/default" || len(c.AuthorizationPolicies) != 1 || len(c.RequestAuthentications) != 1 {
		t.Errorf("security config, sorted by namespace: %s", dumpConfig(t, &c))
	}
}

func TestDuplicateEndpoints(t *testing.T) {
	x := newIndex(model.MeshConfig{}, nil)
	x.upsertService(testService("ns", "web", "10.96.0.1"))
	// The same endpoint in two slices (moving between them): kept once, the
	// ready one. Same address with other ports: a separate endpoint.
	x.upsertSlice(testSlice("ns", "web-a", "web", testEP{ip: "10.0.0.1", pod: "web-0", ready: false}))
	x.upsertSlice(testSlice("ns", "web-b", "web", testEP{ip: "10.0.0.1", pod: "web-0", ready: true}))
	other := testSlice("ns", "web-c", "web", testEP{ip: "10.0.0.1", ready: true})
	other.Ports[0].Port = ptr.To[int32](8081)
	x.upsertSlice(other)
	eps := x.build().Services[0].Endpoints
	if len(eps) != 2 {
		t.Fatalf("%d endpoints, want 2: %s", len(eps), dump(t, x.build()))
	}
	for _, e := range eps {
		if !e.Ready {
			t.Errorf("endpoint %+v not ready", e)
		}
	}
}

// TestWorldsReadWhileBuilding reads old Worlds while new ones are built from
// shared Services; run with -race it proves that building never writes to a
// World handed out (model.NewWorld sorts its inputs in place; they must arrive
// sorted). 20 endpoints per service take sort.Slice past its insertion sort.
func TestWorldsReadWhileBuilding(t *testing.T) {
	x := bigIndex(20, 20)
	var cur atomic.Pointer[model.World]
	cur.Store(x.build())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				w := cur.Load()
				for _, s := range w.Services {
					for i := 1; i < len(s.Endpoints); i++ {
						if s.Endpoints[i].Address < s.Endpoints[i-1].Address {
							t.Errorf("%s: endpoints out of order", s.Name)
							return
						}
					}
					_ = len(s.Ports)
				}
			}
		})
	}
	for i := range 200 {
		name := fmt.Sprintf("svc%d", i%20)
		var eps []testEP
		for j := range 20 {
			eps = append(eps, testEP{ip: fmt.Sprintf("10.%d.0.%d", 1+j, i%20), pod: fmt.Sprintf("%s-%d", name, j), ready: (i+j)%3 > 0})
		}
		x.upsertSlice(testSlice(fmt.Sprintf("ns%d", i%10), name+"-abc", name, eps...))
		cur.Store(x.build())
	}
	close(stop)
	wg.Wait()
}

func TestBuildWorldRejectsUnknownObjects(t *testing.T) {
	if _, err := BuildWorld(Options{}, &corev1.ConfigMap{}); err == nil {
		t.Error("no error for a ConfigMap")
	}
	if _, err := BuildWorld(Options{DiscoverySelectors: []metav1.LabelSelector{{
		MatchExpressions: []metav1.LabelSelectorRequirement{{Key: "a", Operator: "Bogus"}}}}}); err == nil {
		t.Error("no error for an invalid selector")
	}
}

// BenchmarkWorldRebuild measures one endpoint change (its readiness flips) in
// a mesh of 1000 services with 3 endpoints each: the index update plus the new
// World.
func BenchmarkWorldRebuild(b *testing.B) {
	x := bigIndex(1000, 3)
	x.build()
	// Each service's slice with its first endpoint not ready, and ready again.
	var variants [2][1000]*discoveryv1.EndpointSlice
	for n := range 1000 {
		name := fmt.Sprintf("svc%d", n)
		for v := range 2 {
			eps := make([]testEP, 3)
			for j := range eps {
				eps[j] = testEP{ip: fmt.Sprintf("10.%d.%d.%d", 1+j, n/250, n%250), pod: fmt.Sprintf("%s-%d", name, j), ready: j != 0 || v == 1}
			}
			variants[v][n] = testSlice(fmt.Sprintf("ns%d", n%10), name+"-abc", name, eps...)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		x.upsertSlice(variants[(i/1000)%2][i%1000])
		if w := x.build(); len(w.Services) != 1000 {
			b.Fatal(len(w.Services))
		}
		i++
	}
}

// Fetched key sets reach the World's config; the same sets again are no
// change (no new World, no push).
func TestJWKSReachTheWorld(t *testing.T) {
	x := newIndex(model.MeshConfig{}, nil)
	first := x.build()
	keys := map[string]string{"https://issuer.example/jwks": `{"keys":[]}`}
	x.setJWKS(keys)
	w := x.build()
	if w == first || w.Config.JWKS["https://issuer.example/jwks"] != `{"keys":[]}` {
		t.Fatalf("JWKS not in the new World: %v", w.Config.JWKS)
	}
	x.setJWKS(map[string]string{"https://issuer.example/jwks": `{"keys":[]}`})
	if x.changed {
		t.Error("equal key sets marked the index changed")
	}
	if x.build() != w {
		t.Error("equal key sets built a new World")
	}
}
