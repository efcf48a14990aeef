package certservice

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	authenticationv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ServiceAccount is an authenticated caller: the Kubernetes service account
// its token was issued for.
type ServiceAccount struct {
	Namespace string
	Name      string
}

// Authenticator turns a bearer token into the service account it belongs to.
// An invalid, expired or revoked token, or one not bound to the CA's audience,
// returns an error matching ErrUnauthenticated; any other error means the
// token could not be checked (the service answers Unavailable).
type Authenticator interface {
	Authenticate(ctx context.Context, token string) (ServiceAccount, error)
}

// ErrUnauthenticated marks a token that was checked and refused.
var ErrUnauthenticated = errors.New("unauthenticated")

// Defaults of TokenReviewOptions.
const (
	// DefaultAudience is the audience Istio's agents request their tokens for.
	DefaultAudience = "istio-ca"
	// DefaultTokenCacheSize bounds the cached tokens (about 200 bytes each).
	DefaultTokenCacheSize = 10000
	// DefaultTokenCacheTTL bounds how long a token is trusted without asking
	// the API server again, and so how long a revoked token keeps working.
	DefaultTokenCacheTTL = time.Minute
	// DefaultTokenReviewTimeout bounds one TokenReview.
	DefaultTokenReviewTimeout = 10 * time.Second
)

// TokenReviewOptions configure a TokenReviewAuthenticator.
type TokenReviewOptions struct {
	// Audiences the token must be bound to (one of them); empty:
	// [DefaultAudience].
	Audiences []string
	// CacheSize bounds the cached tokens, least recently used evicted first;
	// zero: DefaultTokenCacheSize.
	CacheSize int
	// CacheTTL bounds how long a reviewed token is accepted without asking
	// the API server again; zero: DefaultTokenCacheTTL; negative: no cache.
	CacheTTL time.Duration
	// Timeout bounds each TokenReview; zero: DefaultTokenReviewTimeout.
	Timeout time.Duration
	// Registry receives the meshd_ca_tokenreview* metrics; nil: not
	// registered.
	Registry prometheus.Registerer
}

// TokenReviewAuthenticator checks Kubernetes service-account tokens with the
// API server's TokenReview API, bound to the CA's audiences. meshd needs
// create on tokenreviews.authentication.k8s.io (system:auth-delegator).
//
// Accepted tokens are cached by their SHA-256 (the token itself is never
// kept): an entry is used until the earlier of CacheTTL after the review and
// the token's own expiry (its exp claim, read without verification, which can
// only shorten the entry). That is the cache's staleness bound: a token
// revoked in that window (its service account or pod deleted) keeps being
// accepted until its entry expires, at most CacheTTL, plus the API server's
// own cache of successful token authentications (10 s by default, measured
// in this package's tests). Refusals are not cached.
// Concurrent requests with the same token share one TokenReview.
type TokenReviewAuthenticator struct {
	client    kubernetes.Interface
	audiences []string
	size      int
	ttl       time.Duration
	timeout   time.Duration
	now       func() time.Time
	metrics   *authMetrics

	mu       sync.Mutex
	entries  map[[sha256.Size]byte]*list.Element // of *cacheEntry
	lru      *list.List                          // most recently used first
	inflight map[[sha256.Size]byte]*review
}

type cacheEntry struct {
	key     [sha256.Size]byte
	sa      ServiceAccount
	expires time.Time
}

// review is one TokenReview in flight, shared by the requests that wait for it.
type review struct {
	done chan struct{}
	sa   ServiceAccount
	exp  time.Time // the token's expiry; zero if unknown
	err  error
}

// NewTokenReviewAuthenticator returns an authenticator that reviews tokens
// through client.
func NewTokenReviewAuthenticator(client kubernetes.Interface, o TokenReviewOptions) (*TokenReviewAuthenticator, error) {
	if client == nil {
		return nil, errors.New("token review authenticator: a client is required")
	}
	if len(o.Audiences) == 0 {
		o.Audiences = []string{DefaultAudience}
	}
	if o.CacheSize <= 0 {
		o.CacheSize = DefaultTokenCacheSize
	}
	if o.CacheTTL == 0 {
		o.CacheTTL = DefaultTokenCacheTTL
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTokenReviewTimeout
	}
	m, err := newAuthMetrics(o.Registry)
	if err != nil {
		return nil, err
	}
	return &TokenReviewAuthenticator{
		client:    client,
		audiences: slices.Clone(o.Audiences),
		size:      o.CacheSize,
		ttl:       o.CacheTTL,
		timeout:   o.Timeout,
		now:       time.Now,
		metrics:   m,
		entries:   map[[sha256.Size]byte]*list.Element{},
		lru:       list.New(),
		inflight:  map[[sha256.Size]byte]*review{},
	}, nil
}

// Authenticate returns the service account token belongs to, from the cache
// or from a TokenReview.
func (a *TokenReviewAuthenticator) Authenticate(ctx context.Context, token string) (ServiceAccount, error) {
	if token == "" {
		return ServiceAccount{}, fmt.Errorf("%w: empty token", ErrUnauthenticated)
	}
	key := sha256.Sum256([]byte(token))

	a.mu.Lock()
	if sa, ok := a.cached(key); ok {
		a.mu.Unlock()
		a.metrics.cache.WithLabelValues("hit").Inc()
		return sa, nil
	}
	a.metrics.cache.WithLabelValues("miss").Inc()
	r, shared := a.inflight[key]
	if !shared {
		r = &review{done: make(chan struct{})}
		a.inflight[key] = r
		// The review runs on its own context: the requests sharing it must
		// not fail because the one that started it went away.
		go a.run(key, token, r)
	}
	a.mu.Unlock()

	select {
	case <-r.done:
		return r.sa, r.err
	case <-ctx.Done():
		return ServiceAccount{}, ctx.Err()
	}
}

// cached returns a live entry for key, dropping an expired one. a.mu is held.
func (a *TokenReviewAuthenticator) cached(key [sha256.Size]byte) (ServiceAccount, bool) {
	el, ok := a.entries[key]
	if !ok {
		return ServiceAccount{}, false
	}
	e := el.Value.(*cacheEntry)
	if !a.now().Before(e.expires) {
		a.lru.Remove(el)
		delete(a.entries, key)
		return ServiceAccount{}, false
	}
	a.lru.MoveToFront(el)
	return e.sa, true
}

func (a *TokenReviewAuthenticator) run(key [sha256.Size]byte, token string, r *review) {
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	r.sa, r.exp, r.err = a.review(ctx, token)

	a.mu.Lock()
	delete(a.inflight, key)
	if r.err == nil && a.ttl > 0 && !r.exp.IsZero() {
		expires := a.now().Add(a.ttl)
		if r.exp.Before(expires) {
			expires = r.exp
		}
		if a.now().Before(expires) {
			a.store(&cacheEntry{key: key, sa: r.sa, expires: expires})
		}
	}
	a.mu.Unlock()
	close(r.done)
}

// store adds e, evicting the least recently used entries beyond the size.
// a.mu is held.
func (a *TokenReviewAuthenticator) store(e *cacheEntry) {
	if el, ok := a.entries[e.key]; ok {
		a.lru.Remove(el)
	}
	a.entries[e.key] = a.lru.PushFront(e)
	for a.lru.Len() > a.size {
		oldest := a.lru.Back()
		a.lru.Remove(oldest)
		delete(a.entries, oldest.Value.(*cacheEntry).key)
	}
}

// review asks the API server about token. exp is the token's expiry when
// the token says (a JWT's exp claim).
func (a *TokenReviewAuthenticator) review(ctx context.Context, token string) (ServiceAccount, time.Time, error) {
	tr, err := a.client.AuthenticationV1().TokenReviews().Create(ctx, &authenticationv1.TokenReview{
		Spec: authenticationv1.TokenReviewSpec{Token: token, Audiences: a.audiences},
	}, metav1.CreateOptions{})
	if err != nil {
		a.metrics.reviews.WithLabelValues("error").Inc()
		return ServiceAccount{}, time.Time{}, fmt.Errorf("reviewing the token with the API server: %w", err)
	}
	sa, err := a.accept(tr.Status)
	if err != nil {
		a.metrics.reviews.WithLabelValues("refused").Inc()
		return ServiceAccount{}, time.Time{}, err
	}
	a.metrics.reviews.WithLabelValues("authenticated").Inc()
	return sa, tokenExpiry(token), nil
}

// accept checks a TokenReview's verdict: authenticated, for one of our
// audiences, as a service account.
func (a *TokenReviewAuthenticator) accept(st authenticationv1.TokenReviewStatus) (ServiceAccount, error) {
	if !st.Authenticated {
		msg := st.Error
		if msg == "" {
			msg = "the API server did not authenticate the token"
		}
		return ServiceAccount{}, fmt.Errorf("%w: %s", ErrUnauthenticated, msg)
	}
	bound := false
	for _, aud := range st.Audiences {
		bound = bound || slices.Contains(a.audiences, aud)
	}
	if !bound {
		return ServiceAccount{}, fmt.Errorf("%w: the token is not bound to audience %s", ErrUnauthenticated, strings.Join(a.audiences, " or "))
	}
	rest, ok := strings.CutPrefix(st.User.Username, "system:serviceaccount:")
	ns, name, ok2 := strings.Cut(rest, ":")
	if !ok || !ok2 || ns == "" || name == "" {
		return ServiceAccount{}, fmt.Errorf("%w: %q is not a service account", ErrUnauthenticated, st.User.Username)
	}
	return ServiceAccount{Namespace: ns, Name: name}, nil
}

// tokenExpiry reads a JWT's exp claim without verifying the token (the
// TokenReview did). Zero: not a JWT, or no expiry.
func tokenExpiry(token string) time.Time {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return time.Time{}
	}
	payload, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(parts[1], "="))
	if err != nil {
		return time.Time{}
	}
	var claims struct {
		Exp json.Number `json:"exp"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return time.Time{}
	}
	exp, err := claims.Exp.Float64()
	if err != nil || exp <= 0 {
		return time.Time{}
	}
	return time.Unix(int64(exp), 0)
}
