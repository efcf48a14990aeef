package certservice

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestTokenReviewCache counts the TokenReviews that reach the API server
// while CreateCertificate is called many times with the same tokens.
func TestTokenReviewCache(t *testing.T) {
	c := newCluster(t)
	c.serviceAccount(t, "cart")
	holder, _ := newHolder(t)
	kube, reviews := countTokenReviews(t)
	clk := newClock()
	reg := prometheus.NewRegistry()
	auth, err := NewTokenReviewAuthenticator(kube, TokenReviewOptions{CacheTTL: time.Hour, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	auth.now = clk.Now
	client := startService(t, holder, Options{Authenticator: auth})
	ctx := context.Background()
	csr := newCSR(t, nil)
	const n = 20

	first := c.token(t, "cart", DefaultAudience)
	for i := 0; i < n; i++ {
		if _, err := call(ctx, client, first, csr, 0); err != nil {
			t.Fatal(err)
		}
	}
	if got := reviews.Load(); got != 1 {
		t.Fatalf("%d calls with one token made %d TokenReviews, want 1", n, got)
	}
	if hits, misses := metricValue(t, reg, "meshd_ca_tokenreview_cache_total", map[string]string{"result": "hit"}),
		metricValue(t, reg, "meshd_ca_tokenreview_cache_total", map[string]string{"result": "miss"}); hits != n-1 || misses != 1 {
		t.Errorf("cache hits %v, misses %v; want %d, 1", hits, misses, n-1)
	}

	// Concurrent first calls with a new token share one review.
	second := c.token(t, "cart", DefaultAudience)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := call(ctx, client, second, csr, 0); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if got := reviews.Load(); got != 2 {
		t.Fatalf("%d concurrent calls with a new token: %d TokenReviews in all, want 2", n, got)
	}

	// The entry never outlives the token: the tokens expire in 10 minutes,
	// well before the hour of CacheTTL, and are reviewed again after that
	// (the API server, on the real clock, still accepts them).
	clk.Add(10*time.Minute + time.Second)
	if _, err := call(ctx, client, first, csr, 0); err != nil {
		t.Fatal(err)
	}
	if got := reviews.Load(); got != 3 {
		t.Fatalf("after the token's expiry on the cache's clock: %d TokenReviews, want 3", got)
	}
}

// TestTokenCacheBounds checks the cache's TTL and size on the authenticator
// alone.
func TestTokenCacheBounds(t *testing.T) {
	c := newCluster(t)
	c.serviceAccount(t, "cart")
	kube, reviews := countTokenReviews(t)
	clk := newClock()
	auth, err := NewTokenReviewAuthenticator(kube, TokenReviewOptions{CacheSize: 2, CacheTTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	auth.now = clk.Now
	ctx := context.Background()
	authenticate := func(tok string, wantReviews int64) {
		t.Helper()
		sa, err := auth.Authenticate(ctx, tok)
		if err != nil {
			t.Fatal(err)
		}
		if sa != (ServiceAccount{Namespace: c.ns, Name: "cart"}) {
			t.Errorf("authenticated as %+v", sa)
		}
		if got := reviews.Load(); got != wantReviews {
			t.Fatalf("%d TokenReviews, want %d", got, wantReviews)
		}
	}
	a, b, d := c.token(t, "cart", DefaultAudience), c.token(t, "cart", DefaultAudience), c.token(t, "cart", DefaultAudience)

	authenticate(a, 1)
	authenticate(a, 1)
	clk.Add(time.Minute) // TTL
	authenticate(a, 2)

	authenticate(b, 3)
	authenticate(a, 3) // a is now the most recently used
	authenticate(d, 4) // evicts b
	authenticate(a, 4)
	authenticate(d, 4)
	authenticate(b, 5)

	// Refusals are not cached.
	for i := 0; i < 2; i++ {
		if _, err := auth.Authenticate(ctx, "garbage"); err == nil {
			t.Fatal("garbage token accepted")
		}
	}
	if got := reviews.Load(); got != 7 {
		t.Errorf("two refusals made %d TokenReviews in all, want 7", got)
	}
}

func TestTokenExpiry(t *testing.T) {
	for tok, want := range map[string]int64{
		"eyJhbGciOiJFUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.c2ln": 1700000000,
		"eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln":          0, // no exp
		"not-a-jwt": 0,
		"a.%%%.c":   0,
	} {
		got := tokenExpiry(tok)
		if (want == 0 && !got.IsZero()) || (want != 0 && got.Unix() != want) {
			t.Errorf("tokenExpiry(%q) = %v, want %d", tok, got, want)
		}
	}
}
