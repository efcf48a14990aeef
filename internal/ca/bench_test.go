package ca

import (
	"testing"
	"time"
)

// BenchmarkSign signs P-256 CSRs with a P-256 intermediate, on all
// GOMAXPROCS: what one meshd can issue per second, CSR checks included.
func BenchmarkSign(b *testing.B) {
	root := newTestCA(b, "root", nil, nil)
	inter := newTestCA(b, "intermediate", root, nil)
	a, err := NewAuthority(pluginBundle(inter, root))
	if err != nil {
		b.Fatal(err)
	}
	id := mustIdentity(b, "cluster.local", "bench", "workload")
	csr := csrFor(b, newP256(b), id)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Sign(csr, id, 24*time.Hour); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "certs/s")
}
