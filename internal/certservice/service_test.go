package certservice

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshplane/meshplane/internal/ca"
)

func wantCode(t *testing.T, err error, code codes.Code, say ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("error %v, want %s", err, code)
	}
	for _, s := range say {
		if !strings.Contains(status.Convert(err).Message(), s) {
			t.Errorf("message %q does not say %q", status.Convert(err).Message(), s)
		}
	}
}

func TestCreateCertificate(t *testing.T) {
	c := newCluster(t)
	c.serviceAccount(t, "cart")
	c.serviceAccount(t, "admin")
	holder, _ := newHolder(t)
	auth, err := NewTokenReviewAuthenticator(c.kube, TokenReviewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := startService(t, holder, Options{Authenticator: auth})
	ctx := context.Background()
	roots := holder.Authority().RootsPEM()
	token := c.token(t, "cart", "istio-ca")
	cart, admin := c.identity("cart"), c.identity("admin")

	t.Run("issues the token's identity", func(t *testing.T) {
		for name, csr := range map[string][]byte{
			"CSR asking for it":      newCSR(t, []string{cart}),
			"CSR asking for nothing": newCSR(t, nil),
		} {
			chain, err := call(ctx, client, token, csr, 0)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			leaf := verifiedLeaf(t, chain, roots)
			if len(leaf.URIs) != 1 || leaf.URIs[0].String() != cart {
				t.Errorf("%s: URI SANs %v, want only %s", name, leaf.URIs, cart)
			}
			if len(leaf.DNSNames)+len(leaf.IPAddresses)+len(leaf.EmailAddresses) > 0 {
				t.Errorf("%s: other SANs %v %v %v", name, leaf.DNSNames, leaf.IPAddresses, leaf.EmailAddresses)
			}
		}
	})

	t.Run("validity", func(t *testing.T) {
		for _, tc := range []struct {
			seconds int64
			want    time.Duration
		}{
			{0, DefaultTTL},
			{3600, time.Hour},
			{30 * 24 * 3600, DefaultMaxTTL},
			{1 << 62, DefaultMaxTTL},
		} {
			before := time.Now()
			chain, err := call(ctx, client, token, newCSR(t, []string{cart}), tc.seconds)
			if err != nil {
				t.Fatal(err)
			}
			leaf := verifiedLeaf(t, chain, roots)
			if got := leaf.NotAfter.Sub(before); got < tc.want-5*time.Second || got > tc.want+5*time.Second {
				t.Errorf("validity_duration %d: valid for %s, want %s", tc.seconds, got, tc.want)
			}
		}
		_, err := call(ctx, client, token, newCSR(t, []string{cart}), -5)
		wantCode(t, err, codes.InvalidArgument, "negative")
	})

	t.Run("refuses other identities", func(t *testing.T) {
		for name, tc := range map[string]struct {
			csr []byte
			say []string
		}{
			"another service account": {newCSR(t, []string{admin}), []string{admin, cart}},
			"another namespace":       {newCSR(t, []string{"spiffe://cluster.local/ns/kube-system/sa/cart"}), []string{"ns/kube-system", cart}},
			"another trust domain":    {newCSR(t, []string{"spiffe://evil.example/ns/" + c.ns + "/sa/cart"}), []string{"evil.example", cart}},
			"its own and another":     {newCSR(t, []string{cart, admin}), []string{admin}},
			"a DNS name as well":      {newCSR(t, []string{cart}, "bank.example.com"), []string{"dns:bank.example.com", cart}},
		} {
			chain, err := call(ctx, client, token, tc.csr, 0)
			if chain != nil {
				t.Errorf("%s: a certificate was issued", name)
			}
			wantCode(t, err, codes.InvalidArgument, tc.say...)
		}
	})

	t.Run("refuses bad CSRs", func(t *testing.T) {
		for name, csr := range map[string][]byte{
			"empty":   nil,
			"garbage": []byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"),
		} {
			_, err := call(ctx, client, token, csr, 0)
			wantCode(t, err, codes.InvalidArgument)
			_ = name
		}
	})

	t.Run("refuses bad tokens", func(t *testing.T) {
		for name, tok := range map[string]string{
			"none":                                "",
			"garbage":                             "not-a-token",
			"a JWT-shaped lie":                    "eyJhbGciOiJub25lIn0.eyJzdWIiOiJzeXN0ZW06c2VydmljZWFjY291bnQ6YTpiIn0.",
			"wrong audience":                      c.token(t, "cart", "some-other-audience"),
			"default audience (the API server's)": c.token(t, "cart"),
		} {
			chain, err := call(ctx, client, tok, newCSR(t, []string{cart}), 0)
			if chain != nil {
				t.Errorf("%s: a certificate was issued", name)
			}
			wantCode(t, err, codes.Unauthenticated)
		}
	})
}

// TestRefusesDeletedServiceAccount: a token whose service account is gone is
// refused, both when the cache never saw it and, once the cache entry
// expires, when it did (the documented staleness bound); with the cache
// disabled, at once.
func TestRefusesDeletedServiceAccount(t *testing.T) {
	c := newCluster(t)
	holder, _ := newHolder(t)
	clk := newClock()
	cached, err := NewTokenReviewAuthenticator(c.kube, TokenReviewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cached.now = clk.Now
	uncached, err := NewTokenReviewAuthenticator(c.kube, TokenReviewOptions{CacheTTL: -1})
	if err != nil {
		t.Fatal(err)
	}
	withCache := startService(t, holder, Options{Authenticator: cached})
	withoutCache := startService(t, holder, Options{Authenticator: uncached})
	ctx := context.Background()

	t.Run("token never seen", func(t *testing.T) {
		c.serviceAccount(t, "doomed")
		tok := c.token(t, "doomed", DefaultAudience)
		c.deleteServiceAccount(t, "doomed", tok)
		_, err := call(ctx, withCache, tok, newCSR(t, nil), 0)
		wantCode(t, err, codes.Unauthenticated)
	})

	t.Run("cached token, until its entry expires", func(t *testing.T) {
		c.serviceAccount(t, "stale")
		tok := c.token(t, "stale", DefaultAudience)
		if _, err := call(ctx, withCache, tok, newCSR(t, nil), 0); err != nil {
			t.Fatal(err)
		}
		c.deleteServiceAccount(t, "stale", tok)
		// Within the staleness bound the cached review still holds.
		if _, err := call(ctx, withCache, tok, newCSR(t, nil), 0); err != nil {
			t.Fatalf("within the cache TTL: %v, want the cached acceptance", err)
		}
		clk.Add(DefaultTokenCacheTTL)
		_, err := call(ctx, withCache, tok, newCSR(t, nil), 0)
		wantCode(t, err, codes.Unauthenticated)
	})

	t.Run("cache disabled", func(t *testing.T) {
		c.serviceAccount(t, "gone")
		tok := c.token(t, "gone", DefaultAudience)
		if _, err := call(ctx, withoutCache, tok, newCSR(t, nil), 0); err != nil {
			t.Fatal(err)
		}
		c.deleteServiceAccount(t, "gone", tok)
		_, err := call(ctx, withoutCache, tok, newCSR(t, nil), 0)
		wantCode(t, err, codes.Unauthenticated)
	})
}

func TestUnavailable(t *testing.T) {
	serving, _ := newHolder(t)
	ctx := context.Background()
	auth := staticAuth{"good": {Namespace: "ns", Name: "sa"}}

	t.Run("no CA loaded", func(t *testing.T) {
		client := startService(t, serving, Options{Authenticator: auth, Signer: &ca.Holder{}})
		_, err := call(ctx, client, "good", newCSR(t, nil), 0)
		wantCode(t, err, codes.Unavailable, "no valid CA")
	})
	t.Run("signer down", func(t *testing.T) {
		down := signerFunc(func(context.Context, []byte, ca.Identity, time.Duration) ([]string, error) {
			return nil, errors.New("connection refused")
		})
		client := startService(t, serving, Options{Authenticator: auth, Signer: down})
		_, err := call(ctx, client, "good", newCSR(t, nil), 0)
		wantCode(t, err, codes.Unavailable, "connection refused")
	})
	t.Run("API server unreachable", func(t *testing.T) {
		kube := unreachableKube(t)
		tr, err := NewTokenReviewAuthenticator(kube, TokenReviewOptions{Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		client := startService(t, serving, Options{Authenticator: tr})
		_, err = call(ctx, client, "some-token", newCSR(t, nil), 0)
		wantCode(t, err, codes.Unavailable, "reviewing the token")
	})
}

type signerFunc func(context.Context, []byte, ca.Identity, time.Duration) ([]string, error)

func (f signerFunc) Sign(ctx context.Context, csr []byte, id ca.Identity, ttl time.Duration) ([]string, error) {
	return f(ctx, csr, id, ttl)
}

func TestMetrics(t *testing.T) {
	serving, _ := newHolder(t)
	reg := prometheus.NewRegistry()
	client := startService(t, serving, Options{Authenticator: staticAuth{"good": {Namespace: "ns", Name: "sa"}}, Registry: reg})
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := call(ctx, client, "good", newCSR(t, nil), 0); err != nil {
			t.Fatal(err)
		}
	}
	_, _ = call(ctx, client, "bad", newCSR(t, nil), 0)
	_, _ = call(ctx, client, "good", newCSR(t, []string{"spiffe://cluster.local/ns/ns/sa/other"}), 0)
	_, _ = call(ctx, client, "good", []byte("junk"), 0)

	if got := metricValue(t, reg, "meshd_ca_certificates_issued_total", nil); got != 3 {
		t.Errorf("issued %v, want 3", got)
	}
	for reason, want := range map[string]float64{
		ReasonUnauthenticated: 1, ReasonIdentityMismatch: 1, ReasonInvalidRequest: 1, ReasonUnavailable: 0, ReasonCanceled: 0,
	} {
		if got := metricValue(t, reg, "meshd_ca_refusals_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("refusals{reason=%q} %v, want %v", reason, got, want)
		}
	}
	// Three issued and two refused by the signer reached it.
	if got := sampleCount(t, reg, "meshd_ca_sign_duration_seconds"); got != 5 {
		t.Errorf("sign duration observations %d, want 5", got)
	}
}

// metricValue returns the counter name{labels} in reg (-1 if absent).
func metricValue(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return -1
}

func sampleCount(t *testing.T, reg *prometheus.Registry, name string) uint64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestNewValidatesOptions(t *testing.T) {
	h, _ := newHolder(t)
	auth := staticAuth{}
	for name, o := range map[string]Options{
		"no signer":         {Authenticator: auth, TrustDomain: trustDomain},
		"no authenticator":  {Signer: h, TrustDomain: trustDomain},
		"bad trust domain":  {Signer: h, Authenticator: auth, TrustDomain: "Not Valid"},
		"max below default": {Signer: h, Authenticator: auth, TrustDomain: trustDomain, DefaultTTL: 2 * time.Hour, MaxTTL: time.Hour},
	} {
		if _, err := New(o); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	reg := prometheus.NewRegistry()
	o := Options{Signer: h, Authenticator: auth, TrustDomain: trustDomain, Registry: reg}
	if _, err := New(o); err != nil {
		t.Fatal(err)
	}
	if _, err := New(o); err == nil {
		t.Error("a second Server registered on the same registry")
	}
}
