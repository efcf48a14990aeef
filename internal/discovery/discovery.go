// Package discovery keeps meshd's model of the mesh (model.World) in step with
// Kubernetes. It watches Services, EndpointSlices, Pods, Namespaces, Nodes and
// TLS Secrets through a controller-runtime cache and, after every change that
// matters, publishes a new immutable World and signals Changes.
//
// What becomes what:
//   - a Service → a model.Service (not ExternalName ones; TCP ports only);
//   - the EndpointSlices labelled kubernetes.io/service-name (IPv4 and IPv6;
//     FQDN slices are skipped) → that Service's endpoints, completed with
//     their pod's service account and labels and their node's locality;
//   - a Pod with an IP that has not finished → a model.Workload;
//   - Namespaces → the scope: with discoverySelectors set, only namespaces a
//     selector matches contribute Services and Workloads;
//   - Nodes (metadata only) → localities;
//   - networking.istio.io VirtualServices, DestinationRules, Gateways,
//     ServiceEntries and Sidecars, and security.istio.io PeerAuthentications,
//     AuthorizationPolicies and RequestAuthentications (all read as v1) of
//     namespaces in scope → the World's Config. When a kind's CRD is not
//     installed discovery runs without it and looks again every
//     ConfigRetryInterval, so installing Istio's CRDs later needs no restart;
//   - Secrets of type kubernetes.io/tls of namespaces in scope → the Config's
//     Credentials, for gateways' credentialName: tls.crt, tls.key and the
//     optional ca.crt (client CA of MUTUAL servers). Only that type is read,
//     and listed at all (a field selector): Istio's other convention, an
//     Opaque Secret with cert, key and cacert keys, is not supported. Every
//     other key and most metadata are dropped before a Secret enters the
//     cache.
//
// The conversions are pure functions (ServiceFromKube, EndpointsFromSlice,
// PodFromKube, BuildEndpoint, VirtualServiceFromKube,
// PeerAuthenticationFromKube, CredentialFromSecret, ...); BuildWorld applies
// them to a fixed set of objects, for tests and fixtures.
//
// meshd needs get, list and watch on services, endpointslices
// (discovery.k8s.io), pods, namespaces, nodes and secrets, on
// virtualservices, destinationrules, gateways, serviceentries and sidecars
// (networking.istio.io), and on peerauthentications, authorizationpolicies
// and requestauthentications (security.istio.io), cluster-wide. RBAC cannot narrow secrets by type;
// the field selector keeps other Secrets out of meshd's memory, not out of
// its permissions.
package discovery

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	toolscache "k8s.io/client-go/tools/cache"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/model"
)

// Options configure a Discovery.
type Options struct {
	// Mesh is the mesh config the World carries. DomainSuffix defaults to
	// "cluster.local".
	Mesh model.MeshConfig
	// DiscoverySelectors restrict the namespaces in scope: a namespace is in
	// scope when any selector matches its labels; all are when empty.
	DiscoverySelectors []metav1.LabelSelector
	// Logger; discarded when unset.
	Logger logr.Logger
	// ConfigRetryInterval is how often discovery looks again for Istio's
	// config CRDs while they are not installed;
	// DefaultConfigRetryInterval when zero.
	ConfigRetryInterval time.Duration
}

// DefaultConfigRetryInterval is the default Options.ConfigRetryInterval: one
// discovery request per interval while Istio's CRDs are absent.
const DefaultConfigRetryInterval = 30 * time.Second

// Discovery watches the cluster and keeps the latest World.
type Discovery struct {
	log   logr.Logger
	cache cache.Cache
	regs  []toolscache.ResourceEventHandlerRegistration

	mu  sync.Mutex
	idx *index

	// missingConfig are the config kinds whose API was not served at New;
	// watchMissingConfig watches them once it is.
	missingConfig []watchSpec
	retryInterval time.Duration

	world   atomic.Pointer[model.World]
	started atomic.Bool
	// kick wakes the builder; changes tells the consumer. Both hold at most one
	// pending signal.
	kick    chan struct{}
	changes chan struct{}
	synced  chan struct{}
}

// New prepares a Discovery for the cluster at cfg; nothing is watched until
// Start.
func New(cfg *rest.Config, opts Options) (*Discovery, error) {
	selectors, err := CompileSelectors(opts.DiscoverySelectors)
	if err != nil {
		return nil, err
	}
	scheme := runtime.NewScheme()
	if err := corev1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := discoveryv1.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := istionetworking.AddToScheme(scheme); err != nil {
		return nil, err
	}
	if err := istiosecurity.AddToScheme(scheme); err != nil {
		return nil, err
	}
	hasService, err := labels.NewRequirement(discoveryv1.LabelServiceName, selection.Exists, nil)
	if err != nil {
		return nil, err
	}
	c, err := cache.New(cfg, cache.Options{
		Scheme:           scheme,
		DefaultTransform: trimObject,
		ByObject: map[client.Object]cache.ByObject{
			// Slices of no Service are of no use.
			&discoveryv1.EndpointSlice{}: {Label: labels.NewSelector().Add(*hasService)},
			// Finished pods are not workloads; completed Jobs can leave many.
			&corev1.Pod{}: {Field: fields.AndSelectors(
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodSucceeded)),
				fields.OneTermNotEqualSelector("status.phase", string(corev1.PodFailed)),
			)},
			// Gateways serve TLS Secrets only; the API server filters by
			// type, so no other Secret's data ever reaches meshd.
			&corev1.Secret{}: {Field: fields.OneTermEqualSelector("type", string(corev1.SecretTypeTLS))},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: creating the cache: %w", err)
	}
	d := &Discovery{
		log:           opts.Logger,
		cache:         c,
		idx:           newIndex(opts.Mesh, selectors),
		retryInterval: cmp.Or(opts.ConfigRetryInterval, DefaultConfigRetryInterval),
		kick:          make(chan struct{}, 1),
		changes:       make(chan struct{}, 1),
		synced:        make(chan struct{}),
	}
	// The cache is not started: registering an informer needs only the
	// kind's REST mapping, which is also how an absent CRD shows.
	for _, w := range clusterWatches() {
		reg, err := d.watch(context.Background(), w)
		if err != nil {
			return nil, err
		}
		d.regs = append(d.regs, reg)
	}
	for _, w := range configWatches() {
		reg, err := d.watch(context.Background(), w)
		switch {
		case meta.IsNoMatchError(err):
			d.missingConfig = append(d.missingConfig, w)
		case err != nil:
			return nil, err
		default:
			d.regs = append(d.regs, reg)
		}
	}
	if len(d.missingConfig) > 0 {
		kinds := make([]string, len(d.missingConfig))
		for i, w := range d.missingConfig {
			kinds[i] = w.kind
		}
		d.log.Info("Istio config API not served (CRDs not installed); running without that configuration until it is",
			"kinds", kinds, "retryInterval", d.retryInterval)
	}
	return d, nil
}

// watchSpec is one watched kind and how its events change the index.
type watchSpec struct {
	kind   string
	obj    client.Object
	upsert func(x *index, obj any)
	del    func(x *index, k objKey)
}

// clusterWatches are the Kubernetes kinds discovery always watches.
func clusterWatches() []watchSpec {
	return []watchSpec{
		{"Service", &corev1.Service{}, func(x *index, o any) {
			if s, ok := o.(*corev1.Service); ok {
				x.upsertService(s)
			}
		}, (*index).deleteService},
		{"EndpointSlice", &discoveryv1.EndpointSlice{}, func(x *index, o any) {
			if s, ok := o.(*discoveryv1.EndpointSlice); ok {
				x.upsertSlice(s)
			}
		}, (*index).deleteSlice},
		{"Pod", &corev1.Pod{}, func(x *index, o any) {
			if p, ok := o.(*corev1.Pod); ok {
				x.upsertPod(p)
			}
		}, (*index).deletePod},
		{"Namespace", metadataOnly("Namespace"), func(x *index, o any) {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				x.upsertNamespace(&m.ObjectMeta)
			}
		}, func(x *index, k objKey) { x.deleteNamespace(k.name) }},
		{"Node", metadataOnly("Node"), func(x *index, o any) {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				x.upsertNode(m.Name, m.Labels)
			}
		}, func(x *index, k objKey) { x.deleteNode(k.name) }},
		{"Secret", &corev1.Secret{}, func(x *index, o any) {
			if s, ok := o.(*corev1.Secret); ok {
				x.upsertSecret(s)
			}
		}, (*index).deleteSecret},
	}
}

// configWatches are the Istio kinds discovery watches when their CRDs are
// installed.
func configWatches() []watchSpec {
	kinds := []struct {
		name string
		obj  client.Object
	}{
		{"VirtualService", &istionetworking.VirtualService{}},
		{"DestinationRule", &istionetworking.DestinationRule{}},
		{"Gateway", &istionetworking.Gateway{}},
		{"ServiceEntry", &istionetworking.ServiceEntry{}},
		{"Sidecar", &istionetworking.Sidecar{}},
		{"PeerAuthentication", &istiosecurity.PeerAuthentication{}},
		{"AuthorizationPolicy", &istiosecurity.AuthorizationPolicy{}},
		{"RequestAuthentication", &istiosecurity.RequestAuthentication{}},
	}
	out := make([]watchSpec, len(kinds))
	for i, k := range kinds {
		out[i] = watchSpec{
			kind: k.name,
			obj:  k.obj,
			upsert: func(x *index, o any) {
				if r, ok := o.(runtime.Object); ok {
					x.upsertConfig(r)
				}
			},
			del: func(x *index, key objKey) { x.deleteConfig(k.obj, key) },
		}
	}
	return out
}

func metadataOnly(kind string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind}}
}

// watch registers the event handlers of one kind. Events of one kind arrive in
// order; the index lock orders them across kinds. It never waits for the
// informer to sync: a started cache starts the informer at once.
func (d *Discovery) watch(ctx context.Context, w watchSpec) (toolscache.ResourceEventHandlerRegistration, error) {
	inf, err := d.cache.GetInformer(ctx, w.obj, cache.BlockUntilSynced(false))
	if err != nil {
		return nil, fmt.Errorf("discovery: informer for %s: %w", w.kind, err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { d.apply(func(x *index) { w.upsert(x, o) }) },
		UpdateFunc: func(_, o any) { d.apply(func(x *index) { w.upsert(x, o) }) },
		DeleteFunc: func(o any) {
			k, ok := deletedKey(o)
			if !ok {
				d.log.Info("Ignoring a delete event without a key", "type", fmt.Sprintf("%T", o))
				return
			}
			d.apply(func(x *index) { w.del(x, k) })
		},
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: event handler for %s: %w", w.kind, err)
	}
	return reg, nil
}

// deletedKey names a deleted object, also when the informer only has a
// tombstone for it.
func deletedKey(o any) (objKey, bool) {
	if t, ok := o.(toolscache.DeletedFinalStateUnknown); ok {
		ns, name, err := toolscache.SplitMetaNamespaceKey(t.Key)
		return objKey{ns, name}, err == nil && name != ""
	}
	m, err := meta.Accessor(o)
	if err != nil {
		return objKey{}, false
	}
	return objKey{m.GetNamespace(), m.GetName()}, true
}

// apply changes the index and wakes the builder when the World must change.
func (d *Discovery) apply(f func(*index)) {
	d.mu.Lock()
	f(d.idx)
	changed := d.idx.changed
	d.mu.Unlock()
	if changed {
		signal(d.kick)
	}
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// Start runs the informers and the World builder until ctx ends. It may be
// called once.
func (d *Discovery) Start(ctx context.Context) error {
	if !d.started.CompareAndSwap(false, true) {
		return errors.New("discovery: already started")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { d.run(ctx) })
	wg.Go(func() { d.watchMissingConfig(ctx) })
	err := d.cache.Start(ctx)
	cancel()
	wg.Wait()
	return err
}

// watchMissingConfig looks again, every retry interval, for the API of each
// config kind that was not served at New, and watches the kind once it is.
// It starts after the first World so that these watches never delay it; the
// kinds' objects arrive as events, like any other change.
func (d *Discovery) watchMissingConfig(ctx context.Context) {
	missing := d.missingConfig
	if len(missing) == 0 {
		return
	}
	select {
	case <-d.synced:
	case <-ctx.Done():
		return
	}
	tick := time.NewTicker(d.retryInterval)
	defer tick.Stop()
	for len(missing) > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		var still []watchSpec
		for _, w := range missing {
			if _, err := d.watch(ctx, w); err != nil {
				// Absence was reported once, in New; anything else is news.
				if !meta.IsNoMatchError(err) && ctx.Err() == nil {
					d.log.Error(err, "Watching Istio configuration failed; retrying", "kind", w.kind)
				}
				still = append(still, w)
				continue
			}
			d.log.Info("Watching Istio configuration", "kind", w.kind)
		}
		missing = still
	}
}

// run builds the first World once every handler has seen its informer's
// initial list, then a new one whenever kicked. Events arriving during a build
// are coalesced into the next.
func (d *Discovery) run(ctx context.Context) {
	err := wait.PollUntilContextCancel(ctx, 20*time.Millisecond, true, func(context.Context) (bool, error) {
		for _, r := range d.regs {
			if !r.HasSynced() {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return
	}
	d.rebuild()
	close(d.synced)
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.kick:
			d.rebuild()
		}
	}
}

func (d *Discovery) rebuild() {
	start := time.Now()
	d.mu.Lock()
	w := d.idx.build()
	d.mu.Unlock()
	if d.world.Swap(w) == w {
		return
	}
	d.log.V(1).Info("World rebuilt", "services", len(w.Services), "workloads", len(w.Workloads),
		"virtualServices", len(w.Config.VirtualServices), "destinationRules", len(w.Config.DestinationRules),
		"credentials", len(w.Config.Credentials), "duration", time.Since(start))
	signal(d.changes)
}

// WaitForSync blocks until the first World, built from the complete initial
// state of the cluster, is available, or ctx ends (false).
func (d *Discovery) WaitForSync(ctx context.Context) bool {
	select {
	case <-d.synced:
		return true
	case <-ctx.Done():
		return false
	}
}

// World returns the latest World: nil before sync, never nil after. A World is
// never modified; hold on to it as long as needed.
func (d *Discovery) World() *model.World { return d.world.Load() }

// Changes signals, after sync, each new World. Signals coalesce: one pending
// signal stands for any number of changes, so read World() after receiving.
// There is one channel; give it one consumer.
func (d *Discovery) Changes() <-chan struct{} { return d.changes }

// SetMesh applies a reloaded mesh config. A change of the discovery selectors
// takes effect without relisting anything; a change of DomainSuffix renames
// every Service.
func (d *Discovery) SetMesh(mesh model.MeshConfig, selectors []metav1.LabelSelector) error {
	compiled, err := CompileSelectors(selectors)
	if err != nil {
		return err
	}
	d.apply(func(x *index) { x.setMesh(mesh, compiled) })
	return nil
}

// SetJWKS hands discovery the key sets fetched for the RequestAuthentications'
// jwksUri (internal/jwks), by URI; the next World carries them in
// Config.JWKS. The map must not be modified afterwards.
func (d *Discovery) SetJWKS(keys map[string]string) {
	d.apply(func(x *index) { x.setJWKS(keys) })
}

// BuildWorld converts a fixed set of objects (*corev1.Service,
// *discoveryv1.EndpointSlice, *corev1.Pod, *corev1.Namespace, *corev1.Node,
// *corev1.Secret, the networking.istio.io/v1 *VirtualService,
// *DestinationRule, *Gateway, *ServiceEntry and *Sidecar, and the
// security.istio.io/v1 *PeerAuthentication, *AuthorizationPolicy and
// *RequestAuthentication of istio.io/client-go) into a World exactly as
// Discovery would: Secrets not of type kubernetes.io/tls are accepted and
// ignored. For tests and fixtures.
func BuildWorld(opts Options, objs ...runtime.Object) (*model.World, error) {
	selectors, err := CompileSelectors(opts.DiscoverySelectors)
	if err != nil {
		return nil, err
	}
	x := newIndex(opts.Mesh, selectors)
	for _, o := range objs {
		switch o := o.(type) {
		case *corev1.Service:
			x.upsertService(o)
		case *discoveryv1.EndpointSlice:
			x.upsertSlice(o)
		case *corev1.Pod:
			x.upsertPod(o)
		case *corev1.Namespace:
			x.upsertNamespace(&o.ObjectMeta)
		case *corev1.Node:
			x.upsertNode(o.Name, o.Labels)
		case *corev1.Secret:
			x.upsertSecret(o)
		default:
			if !x.upsertConfig(o) {
				return nil, fmt.Errorf("discovery: BuildWorld: unsupported object %T", o)
			}
		}
	}
	return x.build(), nil
}

// trimObject drops what discovery never reads before an object enters the
// cache: managed fields everywhere, and most of a pod and of the Namespace and
// Node metadata. Pods dominate a cluster's objects; a trimmed one is a small
// fraction of the original. Of Istio objects only identity and spec are kept:
// a `kubectl apply`'d one carries its whole self again in an annotation. Of a
// Secret only identity, type and the keys of a credential are kept: the rest
// may be large, and key material meshd does not use is better not held.
// Idempotent, as client-go requires.
func trimObject(in any) (any, error) {
	switch o := in.(type) {
	case *istionetworking.VirtualService:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istionetworking.DestinationRule:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istionetworking.Gateway:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istionetworking.ServiceEntry:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istionetworking.Sidecar:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istiosecurity.PeerAuthentication:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istiosecurity.AuthorizationPolicy:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *istiosecurity.RequestAuthentication:
		trimConfig(&o.ObjectMeta, &o.Status)
		return o, nil
	case *corev1.Secret:
		return &corev1.Secret{
			TypeMeta:   o.TypeMeta,
			ObjectMeta: configObjectMeta(&o.ObjectMeta),
			Type:       o.Type,
			Data:       credentialData(o.Data),
		}, nil
	case *corev1.Pod:
		return &corev1.Pod{
			TypeMeta: o.TypeMeta,
			ObjectMeta: metav1.ObjectMeta{
				Name:              o.Name,
				Namespace:         o.Namespace,
				UID:               o.UID,
				ResourceVersion:   o.ResourceVersion,
				Labels:            o.Labels,
				DeletionTimestamp: o.DeletionTimestamp,
			},
			Spec: corev1.PodSpec{
				ServiceAccountName: o.Spec.ServiceAccountName,
				NodeName:           o.Spec.NodeName,
				HostNetwork:        o.Spec.HostNetwork,
			},
			Status: corev1.PodStatus{
				Phase:  o.Status.Phase,
				PodIP:  o.Status.PodIP,
				PodIPs: o.Status.PodIPs,
			},
		}, nil
	case *metav1.PartialObjectMetadata:
		o.ManagedFields = nil
		o.Annotations = nil
		return o, nil
	}
	// Nil check: setting nil managed fields on an object that has none can
	// panic (kubernetes/kubernetes#124337).
	if m, err := meta.Accessor(in); err == nil && m.GetManagedFields() != nil {
		m.SetManagedFields(nil)
	}
	return in, nil
}

// credentialData is the part of a Secret's data CredentialFromSecret reads;
// nil when there is none of it.
func credentialData(data map[string][]byte) map[string][]byte {
	var out map[string][]byte
	for _, k := range []string{corev1.TLSCertKey, corev1.TLSPrivateKeyKey, CACertKey} {
		if v, ok := data[k]; ok {
			if out == nil {
				out = make(map[string][]byte, 3)
			}
			out[k] = v
		}
	}
	return out
}

// configObjectMeta is the part of an Istio object's or a Secret's metadata
// discovery reads, plus what the informer needs.
func configObjectMeta(m *metav1.ObjectMeta) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Name:              m.Name,
		Namespace:         m.Namespace,
		UID:               m.UID,
		ResourceVersion:   m.ResourceVersion,
		Generation:        m.Generation,
		CreationTimestamp: m.CreationTimestamp,
		DeletionTimestamp: m.DeletionTimestamp,
	}
}

// trimConfig keeps an Istio object's identity and spec: the status is
// meshd's own output, and the rest of the metadata is unused.
func trimConfig(m *metav1.ObjectMeta, status proto.Message) {
	*m = configObjectMeta(m)
	proto.Reset(status)
}
