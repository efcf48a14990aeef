package server

import (
	"errors"
	"strings"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/meshplane/meshplane/internal/model"
)

// metrics of the xDS server, all registered on Options.Registry.
//
//   - meshd_xds_pushes_total{type}: responses sent to proxies (SotW and
//     delta), by xDS type (cds, eds, lds, rds, ...).
//   - meshd_xds_push_duration_seconds: for each proxy configuration that
//     changed, from the start of its build (or endpoint patch) until its
//     streams are woken to send it.
//   - meshd_xds_convergence_seconds: from a change event (Update) to the
//     proxy's ACK of the version that carried it, per proxy and type.
//   - meshd_xds_connected_proxies{type}: connected proxies (distinct node
//     ids) by proxy type (sidecar, router, grpc).
//   - meshd_xds_nacks_total{type}: NACKs received, by xDS type.
//   - meshd_xds_snapshot_build_seconds: generate, validate, hash and check
//     one proxy's snapshot.
//   - meshd_xds_invalid_resources_total{type}: generated resources dropped
//     because they failed ValidateAll (or had no/duplicate names).
//   - meshd_xds_build_errors_total{reason}: builds that failed (generate,
//     snapshot) or had to drop resources to stay consistent
//     (inconsistent).
type metrics struct {
	pushes       *prometheus.CounterVec
	pushDuration prometheus.Histogram
	convergence  prometheus.Histogram
	connected    *prometheus.GaugeVec
	nacks        *prometheus.CounterVec
	build        prometheus.Histogram
	invalid      *prometheus.CounterVec
	buildErrors  *prometheus.CounterVec
}

var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_xds_pushes_total",
			Help: "xDS responses sent to proxies, by type.",
		}, []string{"type"}),
		pushDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshd_xds_push_duration_seconds",
			Help:    "Time to build one proxy's changed configuration and hand it to its streams.",
			Buckets: latencyBuckets,
		}),
		convergence: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshd_xds_convergence_seconds",
			Help:    "Time from a change event to a proxy's ACK of the resulting version, per type.",
			Buckets: latencyBuckets,
		}),
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "meshd_xds_connected_proxies",
			Help: "Connected xDS proxies, by proxy type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_xds_nacks_total",
			Help: "xDS NACKs received, by type.",
		}, []string{"type"}),
		build: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshd_xds_snapshot_build_seconds",
			Help:    "Time to generate, validate and hash one proxy's snapshot.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		invalid: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_xds_invalid_resources_total",
			Help: "Generated xDS resources dropped as invalid, by type.",
		}, []string{"type"}),
		buildErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_xds_build_errors_total",
			Help: "Failed or repaired snapshot builds, by reason.",
		}, []string{"reason"}),
	}
	for _, t := range []resourcev3.Type{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		l := typeLabel(t)
		m.pushes.WithLabelValues(l)
		m.nacks.WithLabelValues(l)
		m.invalid.WithLabelValues(l)
	}
	for _, t := range []model.ProxyType{model.ProxySidecar, model.ProxyRouter, model.ProxyGRPC} {
		m.connected.WithLabelValues(string(t))
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.pushes, m.pushDuration, m.convergence, m.connected, m.nacks, m.build, m.invalid, m.buildErrors} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, errors.New("xds server: metrics already registered (one Server per registry)")
			}
			return nil, err
		}
	}
	return m, nil
}

// typeLabel is the short name of an xDS type for labels and logs.
func typeLabel(t string) string {
	switch t {
	case resourcev3.ClusterType:
		return "cds"
	case resourcev3.EndpointType:
		return "eds"
	case resourcev3.ListenerType:
		return "lds"
	case resourcev3.RouteType:
		return "rds"
	case resourcev3.SecretType:
		return "sds"
	case resourcev3.RuntimeType:
		return "rtds"
	case resourcev3.ExtensionConfigType:
		return "ecds"
	case resourcev3.ScopedRouteType:
		return "srds"
	case resourcev3.VirtualHostType:
		return "vhds"
	}
	if i := strings.LastIndexByte(t, '.'); i >= 0 {
		return strings.ToLower(t[i+1:])
	}
	return t
}
