// Package operator assembles the operator's manager: scheme, cache, reconcilers.
// cmd/operator, the tests and the demo all start the operator through it, so
// what the tests prove is what ships.
package operator

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/config"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/controllers"
	"github.com/meshplane/meshplane/internal/render"
)

// Options configure the operator's manager.
type Options struct {
	// MetricsAddr serves Prometheus metrics; "0" disables it.
	MetricsAddr string
	// HealthProbeAddr serves /healthz and /readyz; "0" disables it.
	HealthProbeAddr string
	// LeaderElection makes only one operator replica act at a time.
	LeaderElection bool
	// LeaderElectionNamespace holds the leader lease (the operator's own namespace).
	LeaderElectionNamespace string
	// GracefulShutdownTimeout bounds how long stopping waits for reconciles.
	GracefulShutdownTimeout time.Duration
	// AllowSeveralInProcess lets one process build more than one manager over
	// its life (tests that restart the operator); controller-runtime otherwise
	// refuses a second controller of the same name because of metric names.
	AllowSeveralInProcess bool
}

// LeaderElectionID names the lease replicas of the operator compete for.
const LeaderElectionID = "operator.meshplane.io"

// NewScheme knows every kind the operator reads or writes.
func NewScheme() (*runtime.Scheme, error) {
	s := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(s); err != nil {
		return nil, err
	}
	if err := v1alpha1.AddToScheme(s); err != nil {
		return nil, err
	}
	return s, nil
}

// NewManager builds a manager with the MeshControlPlane reconciler registered.
func NewManager(cfg *rest.Config, opts Options) (ctrl.Manager, error) {
	scheme, err := NewScheme()
	if err != nil {
		return nil, fmt.Errorf("building scheme: %w", err)
	}
	// The operator caches only the objects it installed: watching every
	// ConfigMap, Service and Deployment of a large cluster would cost memory and
	// API-server load for nothing.
	ours := labels.SelectorFromSet(labels.Set{v1alpha1.LabelManagedBy: v1alpha1.ManagedByOperator})
	byObject := map[client.Object]cache.ByObject{}
	for _, obj := range controllers.ManagedObjects() {
		byObject[obj] = cache.ByObject{Label: ours}
	}
	// The CA watch sees every Secret's metadata (the user's Provided CA is
	// not ours to label); the transform keeps annotations, which may hold a
	// copy of the data, out of the cache.
	byObject[&corev1.Secret{}] = cache.ByObject{Transform: controllers.TrimSecretMetadata}
	shutdown := opts.GracefulShutdownTimeout
	if shutdown == 0 {
		shutdown = 30 * time.Second
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                        scheme,
		Cache:                         cache.Options{ByObject: byObject},
		Metrics:                       metricsserver.Options{BindAddress: opts.MetricsAddr},
		HealthProbeBindAddress:        opts.HealthProbeAddr,
		LeaderElection:                opts.LeaderElection,
		LeaderElectionID:              LeaderElectionID,
		LeaderElectionNamespace:       opts.LeaderElectionNamespace,
		LeaderElectionReleaseOnCancel: true,
		GracefulShutdownTimeout:       &shutdown,
		Controller:                    config.Controller{SkipNameValidation: &opts.AllowSeveralInProcess},
	})
	if err != nil {
		return nil, fmt.Errorf("creating manager: %w", err)
	}
	renderer, err := render.NewRenderer()
	if err != nil {
		return nil, fmt.Errorf("loading charts: %w", err)
	}
	if err := (&controllers.MeshControlPlaneReconciler{
		Client:    mgr.GetClient(),
		APIReader: mgr.GetAPIReader(),
		Renderer:  renderer,
	}).SetupWithManager(mgr); err != nil {
		return nil, fmt.Errorf("setting up the MeshControlPlane controller: %w", err)
	}
	if opts.HealthProbeAddr != "0" && opts.HealthProbeAddr != "" {
		if err := mgr.AddHealthzCheck("healthz", healthz.Ping); err != nil {
			return nil, err
		}
		if err := mgr.AddReadyzCheck("informers-synced", cacheSynced(mgr)); err != nil {
			return nil, err
		}
	}
	return mgr, nil
}

// cacheSynced is ready once the informers have listed what they watch, so a new
// replica is not reported ready while it still knows nothing.
func cacheSynced(mgr ctrl.Manager) healthz.Checker {
	return func(req *http.Request) error {
		ctx, cancel := context.WithTimeout(req.Context(), time.Second)
		defer cancel()
		if !mgr.GetCache().WaitForCacheSync(ctx) {
			return errors.New("informer caches have not synced yet")
		}
		return nil
	}
}
