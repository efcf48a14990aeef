package certservice

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Refusal reasons, the values of meshd_ca_refusals_total's reason label.
const (
	ReasonUnauthenticated  = "unauthenticated"   // no, bad, expired, revoked or wrongly bound token
	ReasonIdentityMismatch = "identity_mismatch" // the CSR asks for another identity
	ReasonInvalidRequest   = "invalid_request"   // bad CSR, key or validity
	ReasonUnavailable      = "unavailable"       // token review or signer failed
	ReasonCanceled         = "canceled"          // the caller went away
)

// metrics of the certificate service, registered on Options.Registry:
//
//   - meshd_ca_certificates_issued_total: workload certificates issued.
//   - meshd_ca_refusals_total{reason}: requests refused, by Reason* above.
//   - meshd_ca_sign_duration_seconds: time the signer took, per request
//     that reached it, issued or not.
type metrics struct {
	issued   prometheus.Counter
	refusals *prometheus.CounterVec
	signing  prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		issued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "meshd_ca_certificates_issued_total",
			Help: "Workload certificates issued.",
		}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_ca_refusals_total",
			Help: "Certificate requests refused, by reason.",
		}, []string{"reason"}),
		signing: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "meshd_ca_sign_duration_seconds",
			Help:    "Time the signer took per certificate request.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
	}
	for _, r := range []string{ReasonUnauthenticated, ReasonIdentityMismatch, ReasonInvalidRequest, ReasonUnavailable, ReasonCanceled} {
		m.refusals.WithLabelValues(r)
	}
	return m, register(reg, "certificate service", m.issued, m.refusals, m.signing)
}

// authMetrics of a TokenReviewAuthenticator:
//
//   - meshd_ca_tokenreview_cache_total{result}: token lookups answered from
//     the cache (hit) or needing a TokenReview (miss; concurrent misses for
//     one token share a review).
//   - meshd_ca_tokenreviews_total{result}: TokenReviews sent, by outcome
//     (authenticated, refused, error).
type authMetrics struct {
	cache   *prometheus.CounterVec
	reviews *prometheus.CounterVec
}

func newAuthMetrics(reg prometheus.Registerer) (*authMetrics, error) {
	m := &authMetrics{
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_ca_tokenreview_cache_total",
			Help: "Token lookups, by cache result (hit, miss).",
		}, []string{"result"}),
		reviews: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "meshd_ca_tokenreviews_total",
			Help: "TokenReviews sent to the API server, by outcome.",
		}, []string{"result"}),
	}
	for _, r := range []string{"hit", "miss"} {
		m.cache.WithLabelValues(r)
	}
	for _, r := range []string{"authenticated", "refused", "error"} {
		m.reviews.WithLabelValues(r)
	}
	return m, register(reg, "token review authenticator", m.cache, m.reviews)
}

func register(reg prometheus.Registerer, who string, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("%s: metrics already registered (one per registry)", who)
			}
			return fmt.Errorf("%s: registering metrics: %w", who, err)
		}
	}
	return nil
}
