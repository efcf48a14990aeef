package agent

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/go-logr/logr"
)

// Renewal happens at renewFraction of a certificate's lifetime, give or take
// renewJitter of it, so the agents of a fleet started together do not all
// come back to the CA at the same moment.
const (
	renewFraction = 0.5
	renewJitter   = 0.05
)

// IssueFunc returns a new certificate; Issuer.Issue is one.
type IssueFunc func(context.Context) (*Bundle, error)

// RotatorOptions tune a Rotator; the zero value is what the agent runs with.
type RotatorOptions struct {
	// MinBackoff and MaxBackoff bound the wait between failed attempts,
	// which doubles from MinBackoff; 0 means 1s and 30s. While a
	// certificate is still valid, waits are also kept under a quarter of
	// its remaining life, so that retries quicken as expiry nears.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Random returns numbers in [0, 1) for jitter; nil means math/rand.
	Random func() float64
}

// Rotator keeps a valid certificate: it obtains one, hands it to its
// subscribers, and renews it at about half its lifetime, retrying failures
// with bounded backoff. A certificate that expires before it could be
// renewed is logged as an error.
type Rotator struct {
	issue IssueFunc
	log   logr.Logger
	opts  RotatorOptions

	mu          sync.Mutex
	subscribers []subscriber
	current     *Bundle
	ready       chan struct{}
}

type subscriber struct {
	name    string
	publish func(*Bundle) error
}

// NewRotator returns a Rotator that gets its certificates from issue.
func NewRotator(issue IssueFunc, log logr.Logger, opts RotatorOptions) *Rotator {
	if opts.MinBackoff <= 0 {
		opts.MinBackoff = time.Second
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = 30 * time.Second
	}
	opts.MaxBackoff = max(opts.MaxBackoff, opts.MinBackoff)
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Random == nil {
		opts.Random = rand.Float64
	}
	return &Rotator{issue: issue, log: log, opts: opts, ready: make(chan struct{})}
}

// Subscribe adds fn, called with every new certificate in the order
// subscribed. A certificate counts as delivered only when every subscriber
// returned nil; otherwise a new one is obtained after a backoff and offered
// to all of them again.
func (r *Rotator) Subscribe(name string, fn func(*Bundle) error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.subscribers = append(r.subscribers, subscriber{name: name, publish: fn})
}

// Current is the certificate last delivered, nil before the first.
func (r *Rotator) Current() *Bundle {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current
}

// Ready is closed once the first certificate has been delivered.
func (r *Rotator) Ready() <-chan struct{} { return r.ready }

// Run obtains and renews certificates until ctx ends; it then returns nil.
func (r *Rotator) Run(ctx context.Context) error {
	failures := 0
	expiryLogged := false
	for {
		b, err := r.issue(ctx)
		if err == nil {
			err = r.publish(b)
		}
		if ctx.Err() != nil {
			return nil
		}
		var wait time.Duration
		if err != nil {
			failures++
			wait = r.backoff(failures)
			r.logFailure(err, failures, wait)
		} else {
			failures = 0
			expiryLogged = false
			wait = r.renewIn(b)
			r.log.Info("Workload certificate obtained", "identity", b.Identity, "serial", b.Serial(),
				"notAfter", b.Leaf.NotAfter.UTC(), "renewIn", wait.Round(time.Millisecond).String())
		}
		if !r.sleep(ctx, wait, &expiryLogged) {
			return nil
		}
	}
}

func (r *Rotator) publish(b *Bundle) error {
	r.mu.Lock()
	subs := r.subscribers
	r.mu.Unlock()
	var errs []error
	for _, s := range subs {
		if err := s.publish(b); err != nil {
			errs = append(errs, fmt.Errorf("delivering the certificate to %s: %w", s.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	r.mu.Lock()
	first := r.current == nil
	r.current = b
	r.mu.Unlock()
	if first {
		close(r.ready)
	}
	return nil
}

// renewIn is how long from now b should be renewed: at about half of the
// lifetime left when it was obtained. Counting from NotBefore instead would
// renew a short-lived certificate at once, since the CA backdates
// NotBefore (a minute, for clock skew).
func (r *Rotator) renewIn(b *Bundle) time.Duration {
	start := b.Leaf.NotBefore
	if b.Obtained.After(start) {
		start = b.Obtained
	}
	life := b.Leaf.NotAfter.Sub(start)
	fraction := renewFraction + renewJitter*(2*r.opts.Random()-1)
	at := start.Add(time.Duration(float64(life) * fraction))
	return max(at.Sub(r.opts.Now()), 0)
}

// backoff is the wait after the n-th failure in a row.
func (r *Rotator) backoff(n int) time.Duration {
	d := r.opts.MaxBackoff
	if n <= 20 {
		d = min(r.opts.MinBackoff<<(n-1), r.opts.MaxBackoff)
	}
	if cur := r.Current(); cur != nil {
		if left := cur.Leaf.NotAfter.Sub(r.opts.Now()); left > 0 {
			d = min(d, left/4)
		}
	}
	// ±20 %, so agents cut off together do not come back together.
	d = time.Duration(float64(d) * (0.8 + 0.4*r.opts.Random()))
	return max(d, r.opts.MinBackoff)
}

func (r *Rotator) logFailure(err error, failures int, wait time.Duration) {
	kv := []any{"attempt", failures, "retryIn", wait.Round(time.Millisecond).String()}
	if cur := r.Current(); cur != nil {
		kv = append(kv, "currentSerial", cur.Serial(), "currentNotAfter", cur.Leaf.NotAfter.UTC())
		if r.opts.Now().Before(cur.Leaf.NotAfter) {
			r.log.Error(err, "Renewing the workload certificate failed; the current one is served until it expires", kv...)
		} else {
			r.log.Error(err, "Renewing the workload certificate failed; the one served HAS EXPIRED", kv...)
		}
		return
	}
	if errors.Is(err, ErrTokenRefused) {
		r.log.Error(err, "The CA refused this pod's service-account token; no workload certificate until it accepts one", kv...)
		return
	}
	r.log.Error(err, "Obtaining the workload certificate failed; the workload has none yet", kv...)
}

// sleep waits d, or until ctx ends (then it returns false). If the current
// certificate expires meanwhile, that is logged, once per certificate.
func (r *Rotator) sleep(ctx context.Context, d time.Duration, expiryLogged *bool) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	var expiry <-chan time.Time
	cur := r.Current()
	if cur != nil && !*expiryLogged {
		t := time.NewTimer(max(cur.Leaf.NotAfter.Sub(r.opts.Now()), 0))
		defer t.Stop()
		expiry = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-timer.C:
			return true
		case <-expiry:
			expiry = nil
			*expiryLogged = true
			r.log.Error(errors.New("workload certificate expired without renewal"),
				"WORKLOAD CERTIFICATE EXPIRED: connections using it will fail until the CA issues a new one",
				"identity", cur.Identity, "serial", cur.Serial(), "notAfter", cur.Leaf.NotAfter.UTC())
		}
	}
}
