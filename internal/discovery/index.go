package discovery

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/meshplane/meshplane/internal/model"
)

// DefaultDomainSuffix of service hostnames.
const DefaultDomainSuffix = "cluster.local"

// objKey names a namespaced object.
type objKey struct{ ns, name string }

func (k objKey) String() string { return k.ns + "/" + k.name }

// sliceEntry is one EndpointSlice, converted.
type sliceEntry struct {
	name    string
	service objKey
	eps     []SliceEndpoint
}

// index is discovery's state: every watched object, converted, plus the
// complete model.Services and Workloads last built from them. It is not safe
// for concurrent use; Discovery serialises access.
//
// Incremental rebuilds: an event updates the converted object and invalidates
// exactly the built values that depend on it (a slice → its Service; a pod →
// its workload and the Services whose endpoints name it; a node's locality →
// the workloads and endpoints on it). build then reassembles only invalidated
// Services and reuses every other *model.Service of the previous World, so a
// World is O(services + workloads) pointer copies plus the cost of the changed
// Services, not a conversion of the cluster.
//
// Istio config objects are converted on arrival and kept by key; the World's
// Config lists are rebuilt only when one in scope changed (or the scope did),
// so Worlds after other changes share the lists and every object pointer
// (model.SameConfig). An update that leaves an object's identity, generation
// and spec as they were (a status write, a resync) changes nothing.
//
// TLS Secrets (credentials) are kept the same way, by key: their map in the
// World is rebuilt only when one in scope changed its bytes (or the scope
// changed), so the map, like every *model.Credential in it, is shared by
// Worlds until then. Secret churn never rebuilds the config lists, nor the
// reverse.
//
// Objects of every namespace are kept; the discovery selectors only decide
// which namespaces' Services, workloads and config enter the World. A
// namespace entering or leaving scope therefore costs no relist, just a new
// World.
type index struct {
	mesh      model.MeshConfig
	selectors []labels.Selector

	// namespaceLabels of the Namespaces seen; inScope caches the selectors'
	// verdict for them.
	namespaceLabels map[string]map[string]string
	inScope         map[string]bool
	// nodes maps a node name to its locality.
	nodes map[string]model.Locality

	// services without endpoints, by key.
	services map[objKey]*model.Service
	slices   map[objKey]*sliceEntry
	// slicesByService: service key → slice name → slice.
	slicesByService map[objKey]map[string]*sliceEntry
	pods            map[objKey]*Pod
	// podServices: pod key → services with endpoints naming the pod → count.
	podServices map[objKey]map[objKey]int
	// nodeServices: node → services with endpoints naming the node → count.
	nodeServices map[string]map[objKey]int
	// podsByNode: node → pods on it.
	podsByNode map[string]map[objKey]struct{}

	// built holds complete Services; a missing entry means "rebuild".
	built map[objKey]*model.Service
	// workloads of every namespace, by pod key.
	workloads map[objKey]*model.Workload

	// serviceOrder and workloadOrder list the in-scope keys in World order;
	// nil means "recompute".
	serviceOrder  []objKey
	workloadOrder []objKey

	// Istio config of every namespace, by key.
	virtualServices        configKind[model.VirtualService]
	destinationRules       configKind[model.DestinationRule]
	gateways               configKind[model.Gateway]
	serviceEntries         configKind[model.ServiceEntry]
	sidecars               configKind[model.Sidecar]
	peerAuthentications    configKind[model.PeerAuthentication]
	authorizationPolicies  configKind[model.AuthorizationPolicy]
	requestAuthentications configKind[model.RequestAuthentication]
	// credentials of TLS Secrets of every namespace, by key.
	credentials configKind[model.Credential]
	// config is the in-scope config last built; configDirty means "rebuild
	// its lists", credentialsDirty "rebuild its Credentials".
	config           model.Config
	configDirty      bool
	credentialsDirty bool
	// jwks are the key sets fetched for RequestAuthentications' jwksUri
	// (set from outside: discovery never does I/O beyond the API server).
	jwks map[string]string

	// changed: the next build must produce a new World.
	changed bool
	world   *model.World
}

func newIndex(mesh model.MeshConfig, selectors []labels.Selector) *index {
	if mesh.DomainSuffix == "" {
		mesh.DomainSuffix = DefaultDomainSuffix
	}
	return &index{
		mesh:            mesh,
		selectors:       selectors,
		namespaceLabels: map[string]map[string]string{},
		inScope:         map[string]bool{},
		nodes:           map[string]model.Locality{},
		services:        map[objKey]*model.Service{},
		slices:          map[objKey]*sliceEntry{},
		slicesByService: map[objKey]map[string]*sliceEntry{},
		pods:            map[objKey]*Pod{},
		podServices:     map[objKey]map[objKey]int{},
		nodeServices:    map[string]map[objKey]int{},
		podsByNode:      map[string]map[objKey]struct{}{},
		built:           map[objKey]*model.Service{},
		workloads:       map[objKey]*model.Workload{},
		virtualServices: newConfigKind(func(a, b *model.VirtualService) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		destinationRules: newConfigKind(func(a, b *model.DestinationRule) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		gateways: newConfigKind(func(a, b *model.Gateway) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		serviceEntries: newConfigKind(func(a, b *model.ServiceEntry) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		sidecars: newConfigKind(func(a, b *model.Sidecar) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		peerAuthentications: newConfigKind(func(a, b *model.PeerAuthentication) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		authorizationPolicies: newConfigKind(func(a, b *model.AuthorizationPolicy) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		requestAuthentications: newConfigKind(func(a, b *model.RequestAuthentication) bool {
			return a.Meta == b.Meta && proto.Equal(a.Spec, b.Spec)
		}),
		credentials: newConfigKind(func(a, b *model.Credential) bool {
			return a.Meta == b.Meta && bytes.Equal(a.Cert, b.Cert) && bytes.Equal(a.Key, b.Key) && bytes.Equal(a.CA, b.CA)
		}),
		configDirty:      true,
		credentialsDirty: true,
		changed:          true,
	}
}

// CompileSelectors turns discoverySelectors into label selectors; an
// invalid one is an error naming its index.
func CompileSelectors(in []metav1.LabelSelector) ([]labels.Selector, error) {
	out := make([]labels.Selector, 0, len(in))
	for i := range in {
		s, err := metav1.LabelSelectorAsSelector(&in[i])
		if err != nil {
			return nil, fmt.Errorf("discoverySelectors[%d]: %w", i, err)
		}
		out = append(out, s)
	}
	return out, nil
}

// scoped reports whether objects of namespace ns belong in the World: always
// without selectors, else when the Namespace is known and a selector matches.
func (x *index) scoped(ns string) bool {
	return len(x.selectors) == 0 || x.inScope[ns]
}

func (x *index) matches(nsLabels map[string]string) bool {
	for _, s := range x.selectors {
		if s.Matches(labels.Set(nsLabels)) {
			return true
		}
	}
	return false
}

// touch records a change of namespace ns's content.
func (x *index) touch(ns string) {
	if x.scoped(ns) {
		x.changed = true
	}
}

func (x *index) invalidateService(k objKey) {
	delete(x.built, k)
	x.touch(k.ns)
}

// setMesh applies a new mesh config and discovery selectors.
// setJWKS replaces the fetched key sets (by jwksUri). The map is the
// caller's and is never modified.
func (x *index) setJWKS(keys map[string]string) {
	if maps.Equal(keys, x.jwks) {
		return
	}
	x.jwks = keys
	x.configDirty, x.changed = true, true
}

func (x *index) setMesh(mesh model.MeshConfig, selectors []labels.Selector) {
	if mesh.DomainSuffix == "" {
		mesh.DomainSuffix = DefaultDomainSuffix
	}
	if mesh == x.mesh && slices.EqualFunc(selectors, x.selectors, func(a, b labels.Selector) bool {
		return a.String() == b.String()
	}) {
		return
	}
	if mesh.DomainSuffix != x.mesh.DomainSuffix {
		for k, s := range x.services {
			c := *s
			c.Hostname = model.Hostname(s.Name, s.Namespace, mesh.DomainSuffix)
			x.services[k] = &c
		}
		clear(x.built)
		x.serviceOrder = nil
	}
	x.mesh = mesh
	x.selectors = selectors
	for ns, l := range x.namespaceLabels {
		x.inScope[ns] = x.matches(l)
	}
	// Scope may have changed anywhere; recomputing the orders is O(n log n),
	// as is the World itself.
	x.serviceOrder, x.workloadOrder = nil, nil
	x.configDirty, x.credentialsDirty = true, true
	x.changed = true
}

func (x *index) upsertNamespace(ns *metav1.ObjectMeta) {
	l := cloneLabels(ns.Labels)
	x.namespaceLabels[ns.Name] = l
	x.setScope(ns.Name, x.matches(l))
}

func (x *index) deleteNamespace(name string) {
	delete(x.namespaceLabels, name)
	x.setScope(name, false)
	delete(x.inScope, name)
}

func (x *index) setScope(ns string, in bool) {
	was, known := x.inScope[ns]
	x.inScope[ns] = in
	if len(x.selectors) == 0 || (known && was == in) || (!known && !in) {
		return
	}
	x.serviceOrder, x.workloadOrder = nil, nil
	x.configDirty, x.credentialsDirty = true, true
	x.changed = true
}

func (x *index) upsertNode(name string, nodeLabels map[string]string) {
	loc := LocalityFromNodeLabels(nodeLabels)
	if old, ok := x.nodes[name]; ok && old == loc {
		return
	}
	x.nodes[name] = loc
	x.nodeChanged(name)
}

func (x *index) deleteNode(name string) {
	if _, ok := x.nodes[name]; !ok {
		return
	}
	delete(x.nodes, name)
	x.nodeChanged(name)
}

// nodeChanged refreshes what depends on a node's locality: its pods'
// workloads and the endpoints on it (by their own nodeName or their pod's).
func (x *index) nodeChanged(node string) {
	for k := range x.podsByNode[node] {
		x.refreshWorkload(k)
		x.podEndpointsChanged(k)
	}
	for svc := range x.nodeServices[node] {
		x.invalidateService(svc)
	}
}

// endpointNode is the node of a slice endpoint: its own nodeName, else its pod's.
func (x *index) endpointNode(se SliceEndpoint) string {
	if se.NodeName != "" {
		return se.NodeName
	}
	if p := x.endpointPod(se); p != nil {
		return p.NodeName
	}
	return ""
}

func (x *index) endpointPod(se SliceEndpoint) *Pod {
	if se.Pod == "" {
		return nil
	}
	return x.pods[objKey{se.PodNamespace, se.Pod}]
}

func (x *index) upsertService(svc *corev1.Service) {
	k := objKey{svc.Namespace, svc.Name}
	s, ok := ServiceFromKube(svc, x.mesh.DomainSuffix)
	if !ok {
		x.deleteService(k)
		return
	}
	old := x.services[k]
	if old != nil && sameServiceBase(old, s) {
		return
	}
	x.services[k] = s
	if old == nil {
		x.serviceOrder = nil
	}
	x.invalidateService(k)
}

func (x *index) deleteService(k objKey) {
	if _, ok := x.services[k]; !ok {
		return
	}
	delete(x.services, k)
	// Its slices stay: a Service re-created under the same name gets them back
	// (in a cluster the garbage collector deletes them soon after).
	x.serviceOrder = nil
	x.invalidateService(k)
}

func (x *index) upsertSlice(slice *discoveryv1.EndpointSlice) {
	k := objKey{slice.Namespace, slice.Name}
	svcName, eps, ok := EndpointsFromSlice(slice)
	if !ok {
		x.deleteSlice(k)
		return
	}
	e := &sliceEntry{name: slice.Name, service: objKey{slice.Namespace, svcName}, eps: eps}
	if old := x.slices[k]; old != nil {
		if old.service == e.service && slices.EqualFunc(old.eps, e.eps, sameSliceEndpoint) {
			return
		}
		x.deleteSlice(k)
	}
	x.slices[k] = e
	byName := x.slicesByService[e.service]
	if byName == nil {
		byName = map[string]*sliceEntry{}
		x.slicesByService[e.service] = byName
	}
	byName[e.name] = e
	for _, se := range e.eps {
		if se.Pod != "" {
			addRef(x.podServices, objKey{se.PodNamespace, se.Pod}, e.service)
		}
		if se.NodeName != "" {
			addRef(x.nodeServices, se.NodeName, e.service)
		}
	}
	x.invalidateService(e.service)
}

func (x *index) deleteSlice(k objKey) {
	e := x.slices[k]
	if e == nil {
		return
	}
	delete(x.slices, k)
	if byName := x.slicesByService[e.service]; byName != nil {
		delete(byName, e.name)
		if len(byName) == 0 {
			delete(x.slicesByService, e.service)
		}
	}
	for _, se := range e.eps {
		if se.Pod != "" {
			dropRef(x.podServices, objKey{se.PodNamespace, se.Pod}, e.service)
		}
		if se.NodeName != "" {
			dropRef(x.nodeServices, se.NodeName, e.service)
		}
	}
	x.invalidateService(e.service)
}

// upsertPod records a pod. A finished pod counts as deleted: Discovery's
// informer does not even list finished pods, and BuildWorld must agree.
func (x *index) upsertPod(pod *corev1.Pod) {
	k := objKey{pod.Namespace, pod.Name}
	p := PodFromKube(pod)
	if p.Finished {
		x.deletePod(k)
		return
	}
	old := x.pods[k]
	x.pods[k] = p
	if old == nil || old.NodeName != p.NodeName {
		if old != nil {
			x.unlinkNode(k, old.NodeName)
		}
		if p.NodeName != "" {
			pods := x.podsByNode[p.NodeName]
			if pods == nil {
				pods = map[objKey]struct{}{}
				x.podsByNode[p.NodeName] = pods
			}
			pods[k] = struct{}{}
		}
	}
	if old == nil || !samePodForEndpoints(old, p) {
		x.podEndpointsChanged(k)
	}
	x.refreshWorkload(k)
}

func (x *index) deletePod(k objKey) {
	p := x.pods[k]
	if p == nil {
		return
	}
	delete(x.pods, k)
	x.unlinkNode(k, p.NodeName)
	x.podEndpointsChanged(k)
	x.refreshWorkload(k)
}

func (x *index) unlinkNode(k objKey, node string) {
	if pods := x.podsByNode[node]; pods != nil {
		delete(pods, k)
		if len(pods) == 0 {
			delete(x.podsByNode, node)
		}
	}
}

// addRef and dropRef count references from objects to services.
func addRef[K comparable](m map[K]map[objKey]int, from K, svc objKey) {
	refs := m[from]
	if refs == nil {
		refs = map[objKey]int{}
		m[from] = refs
	}
	refs[svc]++
}

func dropRef[K comparable](m map[K]map[objKey]int, from K, svc objKey) {
	refs := m[from]
	if refs == nil {
		return
	}
	if refs[svc]--; refs[svc] <= 0 {
		delete(refs, svc)
	}
	if len(refs) == 0 {
		delete(m, from)
	}
}

func (x *index) podEndpointsChanged(k objKey) {
	for svc := range x.podServices[k] {
		x.invalidateService(svc)
	}
}

// refreshWorkload recomputes the workload of pod k.
func (x *index) refreshWorkload(k objKey) {
	var w *model.Workload
	if p := x.pods[k]; p != nil {
		w = p.Workload(x.nodes[p.NodeName])
	}
	old := x.workloads[k]
	switch {
	case old == nil && w == nil:
		return
	case w == nil:
		delete(x.workloads, k)
		x.workloadOrder = nil
	case old == nil:
		x.workloads[k] = w
		x.workloadOrder = nil
	case sameWorkload(old, w):
		return
	default:
		x.workloads[k] = w
	}
	x.touch(k.ns)
}

// upsertConfig records an Istio config object; it reports false for any
// other type.
func (x *index) upsertConfig(obj runtime.Object) bool {
	switch o := obj.(type) {
	case *istionetworking.VirtualService:
		x.configChanged(o.Namespace, x.virtualServices.put(objKey{o.Namespace, o.Name}, VirtualServiceFromKube(o)))
	case *istionetworking.DestinationRule:
		x.configChanged(o.Namespace, x.destinationRules.put(objKey{o.Namespace, o.Name}, DestinationRuleFromKube(o)))
	case *istionetworking.Gateway:
		x.configChanged(o.Namespace, x.gateways.put(objKey{o.Namespace, o.Name}, GatewayFromKube(o)))
	case *istionetworking.ServiceEntry:
		x.configChanged(o.Namespace, x.serviceEntries.put(objKey{o.Namespace, o.Name}, ServiceEntryFromKube(o)))
	case *istionetworking.Sidecar:
		x.configChanged(o.Namespace, x.sidecars.put(objKey{o.Namespace, o.Name}, SidecarFromKube(o)))
	case *istiosecurity.PeerAuthentication:
		x.configChanged(o.Namespace, x.peerAuthentications.put(objKey{o.Namespace, o.Name}, PeerAuthenticationFromKube(o)))
	case *istiosecurity.AuthorizationPolicy:
		x.configChanged(o.Namespace, x.authorizationPolicies.put(objKey{o.Namespace, o.Name}, AuthorizationPolicyFromKube(o)))
	case *istiosecurity.RequestAuthentication:
		x.configChanged(o.Namespace, x.requestAuthentications.put(objKey{o.Namespace, o.Name}, RequestAuthenticationFromKube(o)))
	default:
		return false
	}
	return true
}

// deleteConfig removes the config object named k of obj's type.
func (x *index) deleteConfig(obj runtime.Object, k objKey) {
	var changed bool
	switch obj.(type) {
	case *istionetworking.VirtualService:
		changed = x.virtualServices.remove(k)
	case *istionetworking.DestinationRule:
		changed = x.destinationRules.remove(k)
	case *istionetworking.Gateway:
		changed = x.gateways.remove(k)
	case *istionetworking.ServiceEntry:
		changed = x.serviceEntries.remove(k)
	case *istionetworking.Sidecar:
		changed = x.sidecars.remove(k)
	case *istiosecurity.PeerAuthentication:
		changed = x.peerAuthentications.remove(k)
	case *istiosecurity.AuthorizationPolicy:
		changed = x.authorizationPolicies.remove(k)
	case *istiosecurity.RequestAuthentication:
		changed = x.requestAuthentications.remove(k)
	}
	x.configChanged(k.ns, changed)
}

// configChanged records whether a config object of namespace ns changed.
// Out of scope it only matters once the namespace enters scope, which
// rebuilds the lists anyway.
func (x *index) configChanged(ns string, changed bool) {
	if changed && x.scoped(ns) {
		x.configDirty = true
		x.changed = true
	}
}

// upsertSecret records a TLS Secret's credential. A Secret of another type
// counts as deleted; only BuildWorld sees one, as Discovery lists TLS Secrets
// only and a Secret's type is immutable.
func (x *index) upsertSecret(s *corev1.Secret) {
	k := objKey{s.Namespace, s.Name}
	c, ok := CredentialFromSecret(s)
	if !ok {
		x.deleteSecret(k)
		return
	}
	x.credentialsChanged(k.ns, x.credentials.put(k, c))
}

func (x *index) deleteSecret(k objKey) {
	x.credentialsChanged(k.ns, x.credentials.remove(k))
}

// credentialsChanged records whether a credential of namespace ns changed;
// out of scope it does not matter until the namespace enters scope.
func (x *index) credentialsChanged(ns string, changed bool) {
	if changed && x.scoped(ns) {
		x.credentialsDirty = true
		x.changed = true
	}
}

// configKind holds the converted objects of one Istio kind, or the
// credentials of TLS Secrets.
type configKind[T any] struct {
	objs map[objKey]*T
	// same reports whether two versions of an object are interchangeable.
	same func(a, b *T) bool
}

func newConfigKind[T any](same func(a, b *T) bool) configKind[T] {
	return configKind[T]{objs: map[objKey]*T{}, same: same}
}

// put stores v unless an interchangeable version is stored already, which
// keeps its pointer; it reports whether anything changed.
func (c *configKind[T]) put(k objKey, v *T) bool {
	if old := c.objs[k]; old != nil && c.same(old, v) {
		return false
	}
	c.objs[k] = v
	return true
}

// remove reports whether k was there.
func (c *configKind[T]) remove(k objKey) bool {
	if _, ok := c.objs[k]; !ok {
		return false
	}
	delete(c.objs, k)
	return true
}

// inScope lists the objects of namespaces in scope, sorted by namespace then
// name as model.Config is; nil when there are none.
func (c *configKind[T]) inScope(scoped func(ns string) bool) []*T {
	var keys []objKey
	for k := range c.objs {
		if scoped(k.ns) {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return nil
	}
	slices.SortFunc(keys, func(a, b objKey) int {
		return cmp.Or(strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name))
	})
	out := make([]*T, len(keys))
	for i, k := range keys {
		out[i] = c.objs[k]
	}
	return out
}

// inScopeByKey maps the objects of namespaces in scope by namespace/name;
// nil when there are none.
func (c *configKind[T]) inScopeByKey(scoped func(ns string) bool) map[string]*T {
	var out map[string]*T
	for k, v := range c.objs {
		if !scoped(k.ns) {
			continue
		}
		if out == nil {
			out = map[string]*T{}
		}
		out[k.String()] = v
	}
	return out
}

// build returns the World for the current state: the previous one when nothing
// in scope changed.
func (x *index) build() *model.World {
	if !x.changed && x.world != nil {
		return x.world
	}
	if x.serviceOrder == nil {
		x.serviceOrder = make([]objKey, 0, len(x.services))
		for k := range x.services {
			if x.scoped(k.ns) {
				x.serviceOrder = append(x.serviceOrder, k)
			}
		}
		slices.SortFunc(x.serviceOrder, func(a, b objKey) int {
			return strings.Compare(x.services[a].Hostname, x.services[b].Hostname)
		})
	}
	if x.workloadOrder == nil {
		x.workloadOrder = make([]objKey, 0, len(x.workloads))
		for k := range x.workloads {
			if x.scoped(k.ns) {
				x.workloadOrder = append(x.workloadOrder, k)
			}
		}
		slices.SortFunc(x.workloadOrder, func(a, b objKey) int {
			return cmp.Or(strings.Compare(a.ns, b.ns), strings.Compare(a.name, b.name))
		})
	}
	services := make([]*model.Service, len(x.serviceOrder))
	for i, k := range x.serviceOrder {
		s := x.built[k]
		if s == nil {
			s = x.assemble(k)
			x.built[k] = s
		}
		services[i] = s
	}
	workloads := make([]*model.Workload, len(x.workloadOrder))
	for i, k := range x.workloadOrder {
		workloads[i] = x.workloads[k]
	}
	if x.configDirty {
		x.config = model.Config{
			VirtualServices:  x.virtualServices.inScope(x.scoped),
			DestinationRules: x.destinationRules.inScope(x.scoped),
			Gateways:         x.gateways.inScope(x.scoped),
			ServiceEntries:   x.serviceEntries.inScope(x.scoped),
			Sidecars:         x.sidecars.inScope(x.scoped),

			PeerAuthentications:    x.peerAuthentications.inScope(x.scoped),
			AuthorizationPolicies:  x.authorizationPolicies.inScope(x.scoped),
			RequestAuthentications: x.requestAuthentications.inScope(x.scoped),

			Credentials: x.config.Credentials,
			JWKS:        x.jwks,
		}
		x.configDirty = false
	}
	if x.credentialsDirty {
		// A new map: the previous one belongs to Worlds already handed out.
		x.config.Credentials = x.credentials.inScopeByKey(x.scoped)
		x.credentialsDirty = false
	}
	// Every input is already in NewWorld's order, so its sorting reads and
	// never writes: the Services and config lists shared with earlier Worlds
	// stay untouched.
	x.world = model.NewWorldWithConfig(x.mesh, services, workloads, x.config)
	x.changed = false
	return x.world
}

// assemble builds the complete Service k from its converted Service, slices,
// pods and nodes. The result is sorted as NewWorld sorts, and never modified.
func (x *index) assemble(k objKey) *model.Service {
	s := *x.services[k]
	byName := x.slicesByService[k]
	names := slices.Sorted(maps.Keys(byName))
	n := 0
	for _, name := range names {
		n += len(byName[name].eps)
	}
	eps := make([]*model.Endpoint, 0, n)
	for _, name := range names {
		for _, se := range byName[name].eps {
			eps = append(eps, BuildEndpoint(se, x.endpointPod(se), x.nodes[x.endpointNode(se)]))
		}
	}
	slices.SortStableFunc(eps, compareEndpoints)
	eps = dedupeEndpoints(eps)
	// A replacement in dedupeEndpoints may have put a later pod name first.
	slices.SortStableFunc(eps, compareEndpoints)
	s.Endpoints = eps
	return &s
}

// dedupeEndpoints drops repeats of an address with the same ports (an endpoint
// moving between two slices shows in both for a moment), keeping the best
// one: ready over serving over neither, then the first slice by name. eps is
// sorted by address; the result keeps that order.
func dedupeEndpoints(eps []*model.Endpoint) []*model.Endpoint {
	out := eps[:0]
	for i := 0; i < len(eps); {
		j := i + 1
		for j < len(eps) && eps[j].Address == eps[i].Address {
			j++
		}
		// eps[i:j] share an address; keep one per distinct port map.
		start := len(out)
		for _, e := range eps[i:j] {
			dup := -1
			for d := start; d < len(out); d++ {
				if maps.Equal(out[d].Ports, e.Ports) {
					dup = d
					break
				}
			}
			switch {
			case dup < 0:
				out = append(out, e)
			case rank(e) > rank(out[dup]):
				out[dup] = e
			}
		}
		i = j
	}
	clear(eps[len(out):])
	return out
}

// compareEndpoints orders endpoints as model.NewWorld does.
func compareEndpoints(a, b *model.Endpoint) int {
	return cmp.Or(strings.Compare(a.Address, b.Address), strings.Compare(a.Pod, b.Pod))
}

func rank(e *model.Endpoint) int {
	switch {
	case e.Ready:
		return 2
	case e.Serving:
		return 1
	}
	return 0
}

func sameServiceBase(a, b *model.Service) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Hostname == b.Hostname &&
		a.ClusterIP == b.ClusterIP && slices.Equal(a.Ports, b.Ports) && maps.Equal(a.Labels, b.Labels) &&
		slices.Equal(a.ExportTo, b.ExportTo)
}

func sameSliceEndpoint(a, b SliceEndpoint) bool {
	return a.Address == b.Address && a.Ready == b.Ready && a.Serving == b.Serving &&
		a.Terminating == b.Terminating && a.Pod == b.Pod && a.PodNamespace == b.PodNamespace &&
		a.NodeName == b.NodeName && a.Zone == b.Zone && maps.Equal(a.Ports, b.Ports)
}

// samePodForEndpoints reports whether endpoints naming the pod see no change.
func samePodForEndpoints(a, b *Pod) bool {
	return a.ServiceAccount == b.ServiceAccount && a.NodeName == b.NodeName && maps.Equal(a.Labels, b.Labels)
}

func sameWorkload(a, b *model.Workload) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.IP == b.IP &&
		a.ServiceAccount == b.ServiceAccount && a.Locality == b.Locality && maps.Equal(a.Labels, b.Labels)
}
