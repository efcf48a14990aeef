// Package rootcert publishes the mesh's trust anchors to the namespaces meshd
// serves: the ConfigMap meshplane-ca-root-cert, key root-cert.pem, which the
// sidecar injector mounts and mesh-agent verifies meshd with.
//
// A Publisher keeps that ConfigMap in every namespace in scope (all of them,
// or those the mesh config's discoverySelectors match, plus the control
// plane's own) that is not terminating. It writes only when the content
// differs, so a cluster at rest costs no writes, and it puts back a
// ConfigMap that was edited or deleted. It never deletes a ConfigMap: one
// left in a namespace that went out of scope stays as it was.
//
// It needs get, list and watch on namespaces, and get, list, watch, create
// and update on configmaps, cluster-wide (it watches only ConfigMaps of its
// name, with a field selector).
package rootcert

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corev1listers "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"

	"github.com/meshplane/meshplane/internal/discovery"
)

const (
	// ConfigMapName is the ConfigMap published in every namespace.
	ConfigMapName = "meshplane-ca-root-cert"
	// DataKey holds the PEM roots in it.
	DataKey = "root-cert.pem"
	// Label marks the ConfigMap as the published root ("true").
	Label = "meshplane.io/ca-root"
)

// workers reconcile namespaces in parallel; the API client's rate limit, not
// the workers, bounds the writes of a first publication to many namespaces.
const workers = 2

// Options configure a Publisher.
type Options struct {
	// Namespace is the control plane's namespace, published to whatever the
	// selectors say; empty: none.
	Namespace string
	// DiscoverySelectors restrict the namespaces published to: those whose
	// labels any selector matches; all when empty.
	DiscoverySelectors []metav1.LabelSelector
	// Logger; the zero value discards.
	Logger logr.Logger
}

// Publisher keeps the root ConfigMap in every namespace in scope.
type Publisher struct {
	client    kubernetes.Interface
	log       logr.Logger
	namespace string

	namespaces      informers.SharedInformerFactory
	configMaps      informers.SharedInformerFactory
	namespaceLister corev1listers.NamespaceLister
	configMapLister corev1listers.ConfigMapLister
	queue           workqueue.TypedRateLimitingInterface[string]

	mu        sync.RWMutex
	roots     string
	selectors []labels.Selector
	synced    bool
}

// New returns a Publisher that publishes nothing until SetRoots and Run.
func New(client kubernetes.Interface, o Options) (*Publisher, error) {
	if client == nil {
		return nil, errors.New("root certificate publisher: a client is required")
	}
	selectors, err := discovery.CompileSelectors(o.DiscoverySelectors)
	if err != nil {
		return nil, err
	}
	byName := informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.FieldSelector = fields.OneTermEqualSelector("metadata.name", ConfigMapName).String()
	})
	p := &Publisher{
		client:     client,
		log:        o.Logger,
		namespace:  o.Namespace,
		namespaces: informers.NewSharedInformerFactory(client, 0),
		configMaps: informers.NewSharedInformerFactoryWithOptions(client, 0, byName),
		queue:      workqueue.NewTypedRateLimitingQueue(workqueue.DefaultTypedControllerRateLimiter[string]()),
		selectors:  selectors,
	}
	nsInformer := p.namespaces.Core().V1().Namespaces()
	cmInformer := p.configMaps.Core().V1().ConfigMaps()
	p.namespaceLister = nsInformer.Lister()
	p.configMapLister = cmInformer.Lister()
	enqueue := func(obj any) {
		if o, ok := obj.(cache.DeletedFinalStateUnknown); ok {
			obj = o.Obj
		}
		m, ok := obj.(metav1.Object)
		if !ok {
			return
		}
		if _, isNamespace := obj.(*corev1.Namespace); isNamespace {
			p.queue.Add(m.GetName())
		} else {
			p.queue.Add(m.GetNamespace())
		}
	}
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    enqueue,
		UpdateFunc: func(_, obj any) { enqueue(obj) },
		DeleteFunc: enqueue,
	}
	if _, err := nsInformer.Informer().AddEventHandler(handler); err != nil {
		return nil, err
	}
	if _, err := cmInformer.Informer().AddEventHandler(handler); err != nil {
		return nil, err
	}
	return p, nil
}

// SetRoots sets the PEM roots to publish; a change reaches every namespace.
// Empty roots publish nothing (and change nothing already published).
func (p *Publisher) SetRoots(pem []byte) {
	p.mu.Lock()
	changed := p.roots != string(pem)
	p.roots = string(pem)
	p.mu.Unlock()
	if changed {
		p.enqueueAll()
	}
}

// SetDiscoverySelectors changes the namespaces in scope.
func (p *Publisher) SetDiscoverySelectors(in []metav1.LabelSelector) error {
	selectors, err := discovery.CompileSelectors(in)
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.selectors = selectors
	p.mu.Unlock()
	p.enqueueAll()
	return nil
}

// enqueueAll queues every known namespace. Before the caches have synced it
// does nothing: their initial lists queue every namespace anyway.
func (p *Publisher) enqueueAll() {
	p.mu.RLock()
	synced := p.synced
	p.mu.RUnlock()
	if !synced {
		return
	}
	all, err := p.namespaceLister.List(labels.Everything())
	if err != nil {
		return // a lister of an informer's cache does not fail
	}
	for _, ns := range all {
		p.queue.Add(ns.Name)
	}
}

// Run publishes until ctx ends. It returns an error only when the caches do
// not sync before ctx ends for another reason than ctx itself.
func (p *Publisher) Run(ctx context.Context) error {
	defer p.queue.ShutDown()
	p.namespaces.Start(ctx.Done())
	p.configMaps.Start(ctx.Done())
	defer p.namespaces.Shutdown()
	defer p.configMaps.Shutdown()
	for _, f := range []informers.SharedInformerFactory{p.namespaces, p.configMaps} {
		for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
			if !ok {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("root certificate publisher: the %v cache did not sync", typ)
			}
		}
	}
	p.mu.Lock()
	p.synced = true
	p.mu.Unlock()

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for p.next(ctx) {
			}
		})
	}
	<-ctx.Done()
	p.queue.ShutDown()
	wg.Wait()
	return nil
}

// next reconciles one queued namespace; false once the queue is shut down.
func (p *Publisher) next(ctx context.Context) bool {
	ns, shutdown := p.queue.Get()
	if shutdown {
		return false
	}
	defer p.queue.Done(ns)
	if err := p.reconcile(ctx, ns); err != nil {
		if ctx.Err() != nil {
			return true
		}
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			// Another writer (a second meshd replica) or a cache behind the
			// API server: read again and retry.
			p.log.V(1).Info("Publishing the mesh root raced another write; retrying", "namespace", ns, "error", err.Error())
		} else {
			p.log.Error(err, "Publishing the mesh root failed; retrying", "namespace", ns)
		}
		p.queue.AddRateLimited(ns)
		return true
	}
	p.queue.Forget(ns)
	return true
}

// reconcile makes namespace ns's root ConfigMap hold the roots, if ns is in
// scope and not terminating.
func (p *Publisher) reconcile(ctx context.Context, ns string) error {
	p.mu.RLock()
	roots, selectors := p.roots, p.selectors
	p.mu.RUnlock()
	if roots == "" {
		return nil
	}
	namespace, err := p.namespaceLister.Get(ns)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if terminating(namespace) || !p.inScope(namespace, selectors) {
		return nil
	}

	existing, err := p.configMapLister.ConfigMaps(ns).Get(ConfigMapName)
	if apierrors.IsNotFound(err) {
		cm := &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: ConfigMapName, Namespace: ns, Labels: map[string]string{Label: "true"}},
			Data:       map[string]string{DataKey: roots},
		}
		if _, err := p.client.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating ConfigMap %s/%s: %w", ns, ConfigMapName, err)
		}
		p.log.Info("Published the mesh root", "namespace", ns, "configMap", ConfigMapName)
		return nil
	}
	if err != nil {
		return err
	}
	if existing.Data[DataKey] == roots && existing.Labels[Label] == "true" {
		return nil
	}
	// Other keys and labels are someone else's: keep them.
	cm := existing.DeepCopy()
	if cm.Data == nil {
		cm.Data = map[string]string{}
	}
	if cm.Labels == nil {
		cm.Labels = map[string]string{}
	}
	cm.Data[DataKey] = roots
	cm.Labels[Label] = "true"
	if _, err := p.client.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("updating ConfigMap %s/%s: %w", ns, ConfigMapName, err)
	}
	p.log.Info("Updated the published mesh root", "namespace", ns, "configMap", ConfigMapName)
	return nil
}

func (p *Publisher) inScope(ns *corev1.Namespace, selectors []labels.Selector) bool {
	if len(selectors) == 0 || ns.Name == p.namespace {
		return true
	}
	for _, s := range selectors {
		if s.Matches(labels.Set(ns.Labels)) {
			return true
		}
	}
	return false
}

// terminating namespaces refuse new objects; their ConfigMaps go with them.
func terminating(ns *corev1.Namespace) bool {
	return ns.DeletionTimestamp != nil || ns.Status.Phase == corev1.NamespaceTerminating
}
