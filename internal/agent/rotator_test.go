package agent

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/go-logr/logr"
)

// delivery is one certificate as a subscriber received it.
type delivery struct {
	bundle *Bundle
	at     time.Time
}

type recorder struct {
	mu   sync.Mutex
	got  []delivery
	fail int // fail this many deliveries first
}

func (r *recorder) publish(b *Bundle) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("disk full")
	}
	r.got = append(r.got, delivery{bundle: b, at: time.Now()})
	return nil
}

func (r *recorder) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func runRotator(t *testing.T, r *Rotator) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(waitFor):
			t.Errorf("Run did not return within %s of cancel", waitFor)
		}
	})
}

// TestRotatorRenewsBeforeExpiry runs against the test CA with 3 s
// certificates: each must be replaced before it expires, and never be
// delivered expired, while the kubelet replaces the token in between.
func TestRotatorRenewsBeforeExpiry(t *testing.T) {
	m := newTestMesh(t)
	_, log := newLogs(t)
	rec := &recorder{}
	r := NewRotator(m.issuer(t, 3*time.Second).Issue, log, RotatorOptions{})
	r.Subscribe("recorder", rec.publish)
	runRotator(t, r)

	select {
	case <-r.Ready():
	case <-time.After(waitFor):
		t.Fatal("no first certificate")
	}
	writeToken(t, m.tokenFile, "token-rotated-by-kubelet")
	eventually(t, func() bool { return len(rec.deliveries()) >= 3 }, "three certificates")

	got := rec.deliveries()
	serials := map[string]bool{}
	for i, d := range got {
		serials[d.bundle.Serial()] = true
		if !d.at.Before(d.bundle.Leaf.NotAfter) {
			t.Errorf("certificate %d (serial %s) delivered at %s, after it expired at %s", i, d.bundle.Serial(), d.at, d.bundle.Leaf.NotAfter)
		}
		if i > 0 && !d.at.Before(got[i-1].bundle.Leaf.NotAfter) {
			t.Errorf("certificate %d delivered at %s, after its predecessor expired at %s", i, d.at, got[i-1].bundle.Leaf.NotAfter)
		}
		if i > 0 {
			life := got[i-1].bundle.Leaf.NotAfter.Sub(got[i-1].bundle.Leaf.NotBefore)
			if age := d.at.Sub(got[i-1].bundle.Leaf.NotBefore); age < life/3 {
				t.Errorf("certificate %d came %s into its predecessor's %s life; renewal is at about half", i, age, life)
			}
		}
		if d.bundle.Identity != m.ca.Identity() {
			t.Errorf("identity %q, want %q", d.bundle.Identity, m.ca.Identity())
		}
	}
	if len(serials) != len(got) {
		t.Errorf("%d deliveries but %d distinct serials", len(got), len(serials))
	}
	if r.Current().Serial() != got[len(got)-1].bundle.Serial() && len(rec.deliveries()) == len(got) {
		t.Errorf("Current is %s, not the last delivered %s", r.Current().Serial(), got[len(got)-1].bundle.Serial())
	}
}

// TestRotatorRetriesWithBoundedBackoff fails the first attempts: the waits
// between them double and stay under the bound, and the certificate that
// finally comes is delivered.
func TestRotatorRetriesWithBoundedBackoff(t *testing.T) {
	m := newTestMesh(t)
	issuer := m.issuer(t, time.Hour)
	logs, log := newLogs(t)
	var (
		mu       sync.Mutex
		attempts []time.Time
	)
	const failures = 5
	issue := func(ctx context.Context) (*Bundle, error) {
		mu.Lock()
		attempts = append(attempts, time.Now())
		n := len(attempts)
		mu.Unlock()
		if n <= failures {
			return nil, fmt.Errorf("attempt %d: CA unavailable", n)
		}
		return issuer.Issue(ctx)
	}
	rec := &recorder{}
	r := NewRotator(issue, log, RotatorOptions{MinBackoff: 20 * time.Millisecond, MaxBackoff: 80 * time.Millisecond})
	r.Subscribe("recorder", rec.publish)
	runRotator(t, r)
	eventually(t, func() bool { return len(rec.deliveries()) == 1 }, "a certificate after %d failures", failures)

	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(attempts) && i <= failures; i++ {
		gap := attempts[i].Sub(attempts[i-1])
		bound := min(20*time.Millisecond<<(i-1), 80*time.Millisecond)
		if gap < bound*8/10 {
			t.Errorf("retry %d after %s, want at least %s", i, gap, bound*8/10)
		}
		if gap > bound*12/10+time.Second { // the slack is for a loaded machine
			t.Errorf("retry %d after %s, want about %s", i, gap, bound)
		}
	}
	if logs.find("Obtaining the workload certificate failed", "CA unavailable") == "" {
		t.Error("failures were not logged")
	}
}

// TestRotatorRedeliversWhenASubscriberFails: a certificate counts only once
// every subscriber took it.
func TestRotatorRedeliversWhenASubscriberFails(t *testing.T) {
	m := newTestMesh(t)
	logs, log := newLogs(t)
	good, flaky := &recorder{}, &recorder{fail: 1}
	r := NewRotator(m.issuer(t, time.Hour).Issue, log, RotatorOptions{MinBackoff: 10 * time.Millisecond})
	r.Subscribe("good", good.publish)
	r.Subscribe("flaky", flaky.publish)
	runRotator(t, r)
	select {
	case <-r.Ready():
	case <-time.After(waitFor):
		t.Fatal("no certificate delivered")
	}
	if got := len(flaky.deliveries()); got != 1 {
		t.Fatalf("flaky subscriber has %d certificates, want 1", got)
	}
	if r.Current().Serial() != flaky.deliveries()[0].bundle.Serial() {
		t.Error("Current is not the certificate every subscriber took")
	}
	if logs.find("delivering the certificate to flaky", "disk full") == "" {
		t.Error("the failed delivery was not logged")
	}
}

// TestRotatorSaysLoudlyWhenTheCertificateExpires: the CA goes away after the
// first certificate; its expiry must be logged as such.
func TestRotatorSaysLoudlyWhenTheCertificateExpires(t *testing.T) {
	m := newTestMesh(t)
	issuer := m.issuer(t, 2*time.Second)
	var calls int
	var mu sync.Mutex
	issue := func(ctx context.Context) (*Bundle, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n > 1 {
			return nil, errors.New("CA unavailable")
		}
		return issuer.Issue(ctx)
	}
	logs, log := newLogs(t)
	r := NewRotator(issue, log, RotatorOptions{MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	runRotator(t, r)
	line := logs.waitForLog(t, "WORKLOAD CERTIFICATE EXPIRED")
	cur := r.Current()
	if cur == nil {
		t.Fatal("no certificate")
	}
	if !time.Now().After(cur.Leaf.NotAfter) {
		t.Errorf("expiry logged before NotAfter %s: %s", cur.Leaf.NotAfter, line)
	}
	if logs.find("Renewing the workload certificate failed; the current one is served until it expires") == "" {
		t.Error("renewal failures were not logged")
	}
}

// A CA backdates NotBefore for clock skew; half life counts from when the
// certificate was obtained, or a 6 s certificate backdated by a minute would
// be renewed at once, again and again.
func TestRenewalCountsFromWhenObtained(t *testing.T) {
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	r := NewRotator(nil, logr.Discard(), RotatorOptions{Now: func() time.Time { return now }, Random: func() float64 { return 0.5 }})
	b := &Bundle{Obtained: now, Leaf: &x509.Certificate{NotBefore: now.Add(-time.Minute), NotAfter: now.Add(6 * time.Second)}}
	if got := r.renewIn(b); got != 3*time.Second {
		t.Errorf("renew a backdated 6 s certificate in %s, want 3s", got)
	}
	// Without a backdate, the same.
	b = &Bundle{Obtained: now, Leaf: &x509.Certificate{NotBefore: now, NotAfter: now.Add(6 * time.Second)}}
	if got := r.renewIn(b); got != 3*time.Second {
		t.Errorf("renew a 6 s certificate in %s, want 3s", got)
	}
}
