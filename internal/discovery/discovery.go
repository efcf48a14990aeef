// Package discovery keeps meshd's model of the mesh (model.World) in step with
// Kubernetes. It watches Services, EndpointSlices, Pods, Namespaces and Nodes
// through a controller-runtime cache and, after every change that matters,
// publishes a new immutable World and signals Changes.
//
// What becomes what:
//   - a Service → a model.Service (not ExternalName ones; TCP ports only);
//   - the EndpointSlices labelled kubernetes.io/service-name (IPv4 and IPv6;
//     FQDN slices are skipped) → that Service's endpoints, completed with
//     their pod's service account and labels and their node's locality;
//   - a Pod with an IP that has not finished → a model.Workload;
//   - Namespaces → the scope: with discoverySelectors set, only namespaces a
//     selector matches contribute Services and Workloads;
//   - Nodes (metadata only) → localities.
//
// The conversions are pure functions (ServiceFromKube, EndpointsFromSlice,
// PodFromKube, BuildEndpoint, ...); BuildWorld applies them to a fixed set of
// objects, for tests and fixtures.
//
// meshd needs get, list and watch on services, endpointslices
// (discovery.k8s.io), pods, namespaces and nodes, cluster-wide.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-logr/logr"
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
}

// Discovery watches the cluster and keeps the latest World.
type Discovery struct {
	log   logr.Logger
	cache cache.Cache
	regs  []toolscache.ResourceEventHandlerRegistration

	mu  sync.Mutex
	idx *index

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
	selectors, err := compileSelectors(opts.DiscoverySelectors)
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
		},
	})
	if err != nil {
		return nil, fmt.Errorf("discovery: creating the cache: %w", err)
	}
	d := &Discovery{
		log:     opts.Logger,
		cache:   c,
		idx:     newIndex(opts.Mesh, selectors),
		kick:    make(chan struct{}, 1),
		changes: make(chan struct{}, 1),
		synced:  make(chan struct{}),
	}
	watches := []struct {
		obj    client.Object
		upsert func(x *index, obj any)
		del    func(x *index, k objKey)
	}{
		{&corev1.Service{}, func(x *index, o any) {
			if s, ok := o.(*corev1.Service); ok {
				x.upsertService(s)
			}
		}, (*index).deleteService},
		{&discoveryv1.EndpointSlice{}, func(x *index, o any) {
			if s, ok := o.(*discoveryv1.EndpointSlice); ok {
				x.upsertSlice(s)
			}
		}, (*index).deleteSlice},
		{&corev1.Pod{}, func(x *index, o any) {
			if p, ok := o.(*corev1.Pod); ok {
				x.upsertPod(p)
			}
		}, (*index).deletePod},
		{metadataOnly("Namespace"), func(x *index, o any) {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				x.upsertNamespace(&m.ObjectMeta)
			}
		}, func(x *index, k objKey) { x.deleteNamespace(k.name) }},
		{metadataOnly("Node"), func(x *index, o any) {
			if m, ok := o.(*metav1.PartialObjectMetadata); ok {
				x.upsertNode(m.Name, m.Labels)
			}
		}, func(x *index, k objKey) { x.deleteNode(k.name) }},
	}
	for _, w := range watches {
		if err := d.watch(w.obj, w.upsert, w.del); err != nil {
			return nil, err
		}
	}
	return d, nil
}

func metadataOnly(kind string) *metav1.PartialObjectMetadata {
	return &metav1.PartialObjectMetadata{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: kind}}
}

// watch registers the event handlers of one kind. Events of one kind arrive in
// order; the index lock orders them across kinds.
func (d *Discovery) watch(obj client.Object, upsert func(*index, any), del func(*index, objKey)) error {
	// The cache is not started: GetInformer registers the informer and returns.
	inf, err := d.cache.GetInformer(context.Background(), obj)
	if err != nil {
		return fmt.Errorf("discovery: informer for %T: %w", obj, err)
	}
	reg, err := inf.AddEventHandler(toolscache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { d.apply(func(x *index) { upsert(x, o) }) },
		UpdateFunc: func(_, o any) { d.apply(func(x *index) { upsert(x, o) }) },
		DeleteFunc: func(o any) {
			k, ok := deletedKey(o)
			if !ok {
				d.log.Info("Ignoring a delete event without a key", "type", fmt.Sprintf("%T", o))
				return
			}
			d.apply(func(x *index) { del(x, k) })
		},
	})
	if err != nil {
		return fmt.Errorf("discovery: event handler for %T: %w", obj, err)
	}
	d.regs = append(d.regs, reg)
	return nil
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
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.run(ctx)
	}()
	err := d.cache.Start(ctx)
	cancel()
	<-done
	return err
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
		"duration", time.Since(start))
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
	compiled, err := compileSelectors(selectors)
	if err != nil {
		return err
	}
	d.apply(func(x *index) { x.setMesh(mesh, compiled) })
	return nil
}

// BuildWorld converts a fixed set of objects (*corev1.Service,
// *discoveryv1.EndpointSlice, *corev1.Pod, *corev1.Namespace, *corev1.Node)
// into a World exactly as Discovery would. For tests and fixtures.
func BuildWorld(opts Options, objs ...runtime.Object) (*model.World, error) {
	selectors, err := compileSelectors(opts.DiscoverySelectors)
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
		default:
			return nil, fmt.Errorf("discovery: BuildWorld: unsupported object %T", o)
		}
	}
	return x.build(), nil
}

// trimObject drops what discovery never reads before an object enters the
// cache: managed fields everywhere, and most of a pod and of the Namespace and
// Node metadata. Pods dominate a cluster's objects; a trimmed one is a small
// fraction of the original. Idempotent, as client-go requires.
func trimObject(in any) (any, error) {
	switch o := in.(type) {
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
