// Package status tells users, on the Istio objects themselves, what meshd found wrong with them in
// the context of the whole mesh: a route to a subset no DestinationRule defines, a destination
// host no Service has, a Gateway that does not exist, a PeerAuthentication Istio ignores because
// an older one applies at the same level. The generators already skip such pieces
// and serve the rest; the Reporter makes the skipping visible.
//
// For every VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar, PeerAuthentication,
// AuthorizationPolicy and RequestAuthentication in the World it writes the status subresource
// in Istio's shape (IstioStatus): validationMessages with our codes
// (internal/istio/validation/codes.go), observedGeneration, and a Reconciled condition, False
// with the first error's code as reason when pieces are skipped. A finding that appears also
// becomes a Warning event on the object, once.
//
// The Reporter writes only what changed: it remembers, per object, the content it last wrote,
// and before its first write to an object it compares with the status the object already has,
// so a restarted meshd rewrites nothing that is still true.
//
// It needs, in every namespace in scope: get and list on the eight kinds, patch on their status
// subresource, and create on events.k8s.io Events.
package status

import (
	"k8s.io/apimachinery/pkg/util/uuid"
	coordinationv1client "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"

	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-logr/logr"
	corev1 "k8s.io/api/core/v1"
	eventsv1 "k8s.io/api/events/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	eventsv1client "k8s.io/client-go/kubernetes/typed/events/v1"
	"k8s.io/client-go/rest"

	"github.com/meshplane/meshplane/internal/istio/config"
	"github.com/meshplane/meshplane/internal/istio/validation"
	"github.com/meshplane/meshplane/internal/model"
)

// DefaultInterval is the default Options.Interval.
const DefaultInterval = time.Second

const (
	// fieldManager owns the status fields meshd writes.
	fieldManager = "meshd"
	// reportingController is the events' reportingController.
	reportingController = "meshd"
	// eventAction is the events' action: what meshd was doing when it found the problem.
	eventAction = "Analyze"
	// noteLimit is the API server's limit on an event's note, in bytes.
	noteLimit = 1024
	// directReads is how many objects of a kind never seen before are read one by one; with
	// more (after a restart) the kind is listed once instead.
	directReads = 8
	// maxRetryDelay bounds the wait before a failed round is tried again.
	maxRetryDelay = time.Minute
)

// resources are the Istio kinds whose status the Reporter writes.
var resources = map[string]schema.GroupVersionResource{
	config.KindVirtualService:  istioResource(config.IstioNetworkingGroup, "virtualservices"),
	config.KindDestinationRule: istioResource(config.IstioNetworkingGroup, "destinationrules"),
	config.KindGateway:         istioResource(config.IstioNetworkingGroup, "gateways"),
	config.KindServiceEntry:    istioResource(config.IstioNetworkingGroup, "serviceentries"),
	config.KindSidecar:         istioResource(config.IstioNetworkingGroup, "sidecars"),

	config.KindPeerAuthentication:    istioResource(config.IstioSecurityGroup, "peerauthentications"),
	config.KindAuthorizationPolicy:   istioResource(config.IstioSecurityGroup, "authorizationpolicies"),
	config.KindRequestAuthentication: istioResource(config.IstioSecurityGroup, "requestauthentications"),
}

func istioResource(group, plural string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: "v1", Resource: plural}
}

// Options configure a Reporter.
type Options struct {
	// Interval is how long a change waits before it is analysed, with the newest World by then,
	// so a burst of changes is reported once and half-applied configuration is not reported at
	// all; at most one analysis runs per Interval. DefaultInterval when zero.
	Interval time.Duration
	// Logger; discarded when unset.
	Logger logr.Logger
	// LeaseNamespace, when set, makes the replicas of meshd elect one
	// reporter through the Lease LeaseName there (status writes and events
	// once, not once per replica). Empty: this Reporter always reports.
	LeaseNamespace, LeaseName string
}

// Reporter writes the analysis of each new World into the Istio objects' status and events.
type Reporter struct {
	log       logr.Logger
	interval  time.Duration
	resources dynamic.Interface
	events    eventsv1client.EventsV1Interface
	// instance is the events' reportingInstance.
	instance string
	now      func() time.Time

	latest atomic.Pointer[model.World]
	// kick holds at most one pending signal that latest changed.
	kick chan struct{}

	// recorded is what each object's status holds as far as the Reporter knows; only Run uses it.
	recorded map[objectKey]*recorded
	// rounds counts the Worlds fully reported, for tests to know a World was looked at.
	rounds atomic.Int64

	// lease elects one reporter among meshd's replicas; nil: no election.
	lease *resourcelock.LeaseLock
}

// recorded is what an object's status was last seen or written with.
type recorded struct {
	// creation of the object, so that one deleted and created again is not taken for the old one.
	creation int64
	hash     [sha256.Size]byte
	// reconciled and since are the Reconciled condition's status and lastTransitionTime.
	reconciled string
	since      metav1.Time
	// messages were announced as events, or were already on the object.
	messages []message
}

// New builds a Reporter that writes through cfg; nothing happens until Run.
func New(cfg *rest.Config, opts Options) (*Reporter, error) {
	resources, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("status client: %w", err)
	}
	events, err := eventsv1client.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("events client: %w", err)
	}
	log := opts.Logger
	if log.GetSink() == nil {
		log = logr.Discard()
	}
	// The pod name, in a cluster: which replica reported.
	hostname, _ := os.Hostname()
	instance := reportingController
	if hostname != "" {
		instance = truncate(reportingController+"-"+hostname, 128)
	}
	r := &Reporter{
		log:       log,
		interval:  cmp.Or(opts.Interval, DefaultInterval),
		resources: resources,
		events:    events,
		instance:  instance,
		now:       time.Now,
		kick:      make(chan struct{}, 1),
		recorded:  map[objectKey]*recorded{},
	}
	if opts.LeaseNamespace != "" {
		leases, err := coordinationv1client.NewForConfig(cfg)
		if err != nil {
			return nil, fmt.Errorf("lease client: %w", err)
		}
		r.lease = &resourcelock.LeaseLock{
			LeaseMeta:  metav1.ObjectMeta{Namespace: opts.LeaseNamespace, Name: cmp.Or(opts.LeaseName, DefaultLeaseName)},
			Client:     leases,
			LockConfig: resourcelock.ResourceLockConfig{Identity: instance + "-" + string(uuid.NewUUID())},
		}
	}
	return r, nil
}

// DefaultLeaseName is the Lease meshd's replicas elect their status
// reporter with.
const DefaultLeaseName = "meshd-status"

// Update hands the Reporter a new World. It never blocks: the World replaces any not analysed
// yet.
func (r *Reporter) Update(world *model.World) {
	r.latest.Store(world)
	r.kickSelf()
}

// Run analyses and reports Worlds until ctx ends; with a lease, only while
// this replica holds it (another replica reports meanwhile).
func (r *Reporter) Run(ctx context.Context) error {
	if r.lease == nil {
		return r.reportRounds(ctx)
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:            r.lease,
		LeaseDuration:   15 * time.Second,
		RenewDeadline:   10 * time.Second,
		RetryPeriod:     2 * time.Second,
		ReleaseOnCancel: true,
		Name:            r.lease.LeaseMeta.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(ctx context.Context) {
				r.log.Info("Reporting the status of Istio objects (elected)", "lease", r.lease.LeaseMeta.Name)
				// What another replica wrote meanwhile is read again.
				r.recorded = map[objectKey]*recorded{}
				r.kickSelf()
				_ = r.reportRounds(ctx)
			},
			OnStoppedLeading: func() {},
		},
	})
	if err != nil {
		return fmt.Errorf("status reporter election: %w", err)
	}
	for ctx.Err() == nil {
		elector.Run(ctx) // returns when leadership is lost or ctx ends
	}
	return nil
}

func (r *Reporter) kickSelf() {
	select {
	case r.kick <- struct{}{}:
	default:
	}
}

// reportRounds analyses and reports Worlds until ctx ends. A round that fails (the API server is
// away, meshd lacks a permission) is tried again, with a growing delay, even without a new World.
func (r *Reporter) reportRounds(ctx context.Context) error {
	var (
		reported   *model.World // the last World whose report is fully written
		retry      <-chan time.Time
		retryDelay time.Duration
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.kick:
		case <-retry:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(r.interval):
		}
		retry = nil
		world := r.latest.Load()
		if world == nil || world == reported {
			continue
		}
		if err := r.report(ctx, world); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			retryDelay = min(max(2*retryDelay, r.interval), maxRetryDelay)
			r.log.Error(err, "Status of Istio objects not fully written; trying again", "in", retryDelay.String())
			retry = time.After(retryDelay)
			continue
		}
		reported, retryDelay = world, 0
		r.rounds.Add(1)
	}
}

// report analyses world and writes every status that differs from what its object holds.
func (r *Reporter) report(ctx context.Context, world *model.World) error {
	wants := wantedReports(world, validation.AnalyzeWith(analysisInput(world), validation.Options{RootNamespace: world.Mesh.RootNamespace}))
	for key := range r.recorded {
		if _, ok := wants[key]; !ok {
			delete(r.recorded, key) // deleted, or out of scope: its status is no longer meshd's
		}
	}
	var unseen []objectKey
	for key, want := range wants {
		if rec := r.recorded[key]; rec == nil || rec.creation != want.creation {
			unseen = append(unseen, key)
		}
	}
	observed, readErr := r.observe(ctx, unseen)

	var errs []error
	if readErr != nil {
		errs = append(errs, readErr)
	}
	writes := 0
	for _, key := range slices.SortedFunc(maps.Keys(wants), compareKeys) {
		want := wants[key]
		prev := r.recorded[key]
		if prev == nil || prev.creation != want.creation {
			if prev = observed[key]; prev == nil {
				continue // deleted since the World was built, or not read: readErr says why
			}
			prev.creation = want.creation
		}
		if prev.hash == want.report.hash() {
			r.recorded[key] = prev
			continue
		}
		rec, err := r.write(ctx, key, want, prev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if rec != nil {
			r.recorded[key] = rec
			writes++
		}
	}
	if writes > 0 {
		r.log.V(1).Info("Wrote the status of Istio objects", "written", writes, "objects", len(wants))
	}
	return errors.Join(errs...)
}

func compareKeys(a, b objectKey) int {
	return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
}

// observe reads the status of objects the Reporter has not written to: a few one by one, more of
// a kind with one list. Objects that no longer exist are left out.
func (r *Reporter) observe(ctx context.Context, keys []objectKey) (map[objectKey]*recorded, error) {
	out := make(map[objectKey]*recorded, len(keys))
	byKind := map[string][]objectKey{}
	for _, key := range keys {
		byKind[key.Kind] = append(byKind[key.Kind], key)
	}
	var errs []error
	for kind, keys := range byKind {
		client := r.resources.Resource(resources[kind])
		if len(keys) <= directReads {
			for _, key := range keys {
				object, err := client.Namespace(key.Namespace).Get(ctx, key.Name, metav1.GetOptions{})
				switch {
				case apierrors.IsNotFound(err):
				case err != nil:
					errs = append(errs, fmt.Errorf("reading %s: %w", key, err))
				default:
					out[key] = recordedOf(object)
				}
			}
			continue
		}
		list, err := client.List(ctx, metav1.ListOptions{})
		if err != nil {
			errs = append(errs, fmt.Errorf("listing %s: %w", resources[kind].Resource, err))
			continue
		}
		wanted := make(map[objectKey]bool, len(keys))
		for _, key := range keys {
			wanted[key] = true
		}
		for i := range list.Items {
			object := &list.Items[i]
			if key := (objectKey{kind, object.GetNamespace(), object.GetName()}); wanted[key] {
				out[key] = recordedOf(object)
			}
		}
	}
	return out, errors.Join(errs...)
}

func recordedOf(object *unstructured.Unstructured) *recorded {
	current, since := reportOf(object)
	return &recorded{
		creation:   object.GetCreationTimestamp().Unix(),
		hash:       current.hash(),
		reconciled: current.Reconciled.Status,
		since:      since,
		messages:   current.Messages,
	}
}

// write patches the object's status to want, and announces the messages prev did not have. It
// returns nil, nil for an object that no longer exists.
func (r *Reporter) write(ctx context.Context, key objectKey, want *wanted, prev *recorded) (*recorded, error) {
	since := transitionTime(prev, &want.report, r.now())
	object, err := r.resources.Resource(resources[key.Kind]).Namespace(key.Namespace).Patch(ctx, key.Name,
		types.MergePatchType, statusPatch(&want.report, since), metav1.PatchOptions{FieldManager: fieldManager}, "status")
	if apierrors.IsNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("writing the status of %s: %w", key, err)
	}
	for _, m := range unannounced(prev, &want.report) {
		r.announce(ctx, object, m)
	}
	return &recorded{
		creation:   want.creation,
		hash:       want.report.hash(),
		reconciled: want.report.Reconciled.Status,
		since:      since,
		messages:   want.report.Messages,
	}, nil
}

// transitionTime is the Reconciled condition's lastTransitionTime once want replaces prev: kept
// while the condition's status stays, now when it changes.
func transitionTime(prev *recorded, want *report, now time.Time) metav1.Time {
	if prev.reconciled == want.Reconciled.Status && !prev.since.IsZero() {
		return prev.since
	}
	// The API keeps seconds; so must what is compared with it once read back.
	return metav1.NewTime(now.Truncate(time.Second))
}

// unannounced are the messages of want that prev did not have: those that get an event.
func unannounced(prev *recorded, want *report) []message {
	var out []message
	for _, m := range want.Messages {
		if !slices.Contains(prev.messages, m) {
			out = append(out, m)
		}
	}
	return out
}

// announce records a Warning event about m on object. Events are a courtesy: one that cannot
// be recorded is logged, and the status still says it all.
func (r *Reporter) announce(ctx context.Context, object *unstructured.Unstructured, m message) {
	event := &eventsv1.Event{
		ObjectMeta:          metav1.ObjectMeta{GenerateName: object.GetName() + "-", Namespace: object.GetNamespace()},
		EventTime:           metav1.NewMicroTime(r.now()),
		ReportingController: reportingController,
		ReportingInstance:   r.instance,
		Action:              eventAction,
		Reason:              m.Name,
		Regarding: corev1.ObjectReference{
			APIVersion:      object.GetAPIVersion(),
			Kind:            object.GetKind(),
			Namespace:       object.GetNamespace(),
			Name:            object.GetName(),
			UID:             object.GetUID(),
			ResourceVersion: object.GetResourceVersion(),
		},
		Note: truncate(m.Description, noteLimit),
		Type: corev1.EventTypeWarning,
	}
	if _, err := r.events.Events(event.Namespace).Create(ctx, event, metav1.CreateOptions{}); err != nil {
		r.log.Error(err, "Event not recorded", "kind", object.GetKind(), "object", object.GetNamespace()+"/"+object.GetName(), "reason", m.Name)
	}
}

// truncate cuts s to at most n bytes, on a character boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const ellipsis = "..."
	cut := n - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}
