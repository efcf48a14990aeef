package certservice

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	securityv1alpha1 "istio.io/api/security/v1alpha1"
)

// BenchmarkCreateCertificate issues certificates through gRPC over TLS on
// loopback, client and server in this process, from concurrent callers on one
// connection (as many proxies' requests arrive multiplexed), with the
// caller's token already authenticated:
//
//   - static: a fake authenticator (no Kubernetes at all);
//   - tokenreview: the TokenReview authenticator against the package's API
//     server, with the token cached after the first call.
func BenchmarkCreateCertificate(b *testing.B) {
	holder, _ := newHolder(b)
	b.Run("static", func(b *testing.B) {
		client := startService(b, holder, Options{Authenticator: staticAuth{"tok": {Namespace: "bench", Name: "workload"}}})
		benchmarkCalls(b, client, "tok")
	})
	b.Run("tokenreview", func(b *testing.B) {
		c := newCluster(b)
		c.serviceAccount(b, "workload")
		reg := prometheus.NewRegistry()
		auth, err := NewTokenReviewAuthenticator(c.kube, TokenReviewOptions{Registry: reg})
		if err != nil {
			b.Fatal(err)
		}
		client := startService(b, holder, Options{Authenticator: auth})
		benchmarkCalls(b, client, c.token(b, "workload", DefaultAudience))
		// The caching behaviour: how many TokenReviews the API server saw
		// per 1000 certificates of one workload (1 review, then the cache).
		b.ReportMetric(1000*sumCounter(b, reg, "meshd_ca_tokenreviews_total")/float64(b.N+1), "tokenreviews/1000certs")
	})
}

func benchmarkCalls(b *testing.B, client securityv1alpha1.IstioCertificateServiceClient, token string) {
	csr := newCSR(b, nil)
	ctx := context.Background()
	if _, err := call(ctx, client, token, csr, 0); err != nil { // connect, and fill the token cache
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := call(ctx, client, token, csr, 0); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}

// sumCounter is the sum of a counter family's series in reg.
func sumCounter(tb testing.TB, reg *prometheus.Registry, name string) float64 {
	tb.Helper()
	families, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	var sum float64
	for _, f := range families {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}
