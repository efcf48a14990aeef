package ca

import (
	"context"
	"crypto/tls"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrNoAuthority: a Holder that never loaded a valid bundle cannot sign. It
// matches ErrUnavailable.
var ErrNoAuthority = fmt.Errorf("%w: no valid CA bundle loaded", ErrUnavailable)

// Holder holds the current Authority and replaces it when the CA Secret
// changes, so that an intermediate CA can be rotated without restarting meshd.
// Signing never waits for an update: the swap is atomic, and requests in
// flight finish with the Authority they started with.
//
// The zero value holds nothing and refuses to sign with ErrNoAuthority.
type Holder struct {
	mu         sync.Mutex // serialises Update
	current    atomic.Pointer[Authority]
	generation atomic.Uint64
}

// Update validates b and, if it is valid, makes it the CA that signs from now
// on. An invalid bundle returns its *BundleError and keeps the last good
// Authority signing, so a bad edit of the Secret never stops issuance. A
// bundle identical to the current one changes nothing.
//
// A bundle with another root is accepted: certificates issued before are then
// trusted only by peers that still trust the old root, which the root
// rotation procedure in the package documentation avoids.
func (h *Holder) Update(b Bundle) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if cur := h.current.Load(); cur != nil && cur.fingerprint == fingerprint(b) {
		return nil
	}
	a, err := NewAuthority(b)
	if err != nil {
		return err
	}
	h.current.Store(a)
	h.generation.Add(1)
	return nil
}

// Authority returns the current Authority, nil before the first successful
// Update.
func (h *Holder) Authority() *Authority { return h.current.Load() }

// Generation counts the Authorities the Holder has held; it changes whenever
// the CA does (certservice's serving certificate follows it).
func (h *Holder) Generation() uint64 { return h.generation.Load() }

// Sign signs with the current Authority (see Authority.Sign). The context is
// only checked: local signing does not block.
func (h *Holder) Sign(ctx context.Context, csrPEM []byte, id Identity, ttl time.Duration) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	a := h.current.Load()
	if a == nil {
		return nil, ErrNoAuthority
	}
	return a.Sign(csrPEM, id, ttl)
}

// IssueServing issues meshd's serving certificate from the current Authority
// (see Authority.IssueServing).
func (h *Holder) IssueServing(dnsNames []string, ttl time.Duration) (*tls.Certificate, error) {
	a := h.current.Load()
	if a == nil {
		return nil, ErrNoAuthority
	}
	return a.IssueServing(dnsNames, ttl)
}
