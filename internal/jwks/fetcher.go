package jwks

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultTimeout  = 10 * time.Second
	DefaultMaxBytes = 512 << 10
	DefaultRefresh  = 20 * time.Minute
	DefaultRetryMin = 10 * time.Second
	// maxConcurrentFetches bounds the fetches in flight, so one slow
	// issuer does not hold the others back and many do not flood.
	maxConcurrentFetches = 4
)

// Options configure a Fetcher.
type Options struct {
	// OnUpdate receives the key sets by URI (a fresh map, the caller's to
	// keep) whenever they change: a set fetched for the first time or with
	// new content, or a URI no longer asked for. Required. It is called from
	// Run's goroutine, one call at a time.
	OnUpdate func(keys map[string]string)
	// OnError receives every failed fetch. The URI keeps its last good key
	// set meanwhile. Optional.
	OnError func(uri string, err error)
	// Client makes the requests; nil is a client of its own.
	Client *http.Client
	// Timeout of one fetch; DefaultTimeout when zero.
	Timeout time.Duration
	// MaxBytes a key set may have; DefaultMaxBytes when zero.
	MaxBytes int64
	// Refresh is how often a key set is fetched again after a success
	// (issuers rotate keys); DefaultRefresh when zero.
	Refresh time.Duration
	// RetryMin is the wait after a first failure, doubled after each further
	// one up to Refresh; DefaultRetryMin when zero.
	RetryMin time.Duration
}

// Fetcher keeps the JSON Web Key Sets of a set of URIs (SetURIs) fresh:
// it fetches a new URI at once, every one again each Refresh, retries a
// failure with backoff and meanwhile keeps the last good set, and hands
// every change to OnUpdate. Start it with Run.
type Fetcher struct {
	opts   Options
	client *http.Client
	wake   chan struct{}

	mu      sync.Mutex
	entries map[string]*entry
	removed bool // a URI with a key set was dropped since the last update
}

type entry struct {
	keys     string    // last good key set; "" before the first success
	next     time.Time // when to fetch; zero: now
	failures int
	fetching bool
}

// NewFetcher returns a Fetcher with no URIs.
func NewFetcher(opts Options) *Fetcher {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Refresh <= 0 {
		opts.Refresh = DefaultRefresh
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = DefaultRetryMin
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: opts.Timeout}
	}
	return &Fetcher{opts: opts, client: client, wake: make(chan struct{}, 1), entries: map[string]*entry{}}
}

// SetURIs replaces the URIs to keep fresh (jwks.URIs of the current
// RequestAuthentications). New ones are fetched at once; dropped ones leave
// the key sets. It never blocks.
func (f *Fetcher) SetURIs(uris []string) {
	f.mu.Lock()
	want := make(map[string]bool, len(uris))
	for _, u := range uris {
		want[u] = true
		if f.entries[u] == nil {
			f.entries[u] = &entry{}
		}
	}
	for u, e := range f.entries {
		if !want[u] {
			delete(f.entries, u)
			f.removed = f.removed || e.keys != ""
		}
	}
	f.mu.Unlock()
	f.poke()
}

func (f *Fetcher) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Keys returns the current key sets by URI (a fresh map).
func (f *Fetcher) Keys() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snapshot()
}

func (f *Fetcher) snapshot() map[string]string {
	out := make(map[string]string, len(f.entries))
	for u, e := range f.entries {
		if e.keys != "" {
			out[u] = e.keys
		}
	}
	return out
}

// Run fetches until ctx ends, and returns ctx's error.
func (f *Fetcher) Run(ctx context.Context) error {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last map[string]string
	for {
		f.fetchDue(ctx)
		f.mu.Lock()
		keys := f.snapshot()
		changed := f.removed || !maps.Equal(keys, last)
		f.removed = false
		wait := f.untilNext(time.Now())
		f.mu.Unlock()
		if changed && ctx.Err() == nil {
			last = keys
			f.opts.OnUpdate(maps.Clone(keys))
		}
		timer.Reset(wait) // Go ≥ 1.23: no stale tick survives a Reset
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-f.wake:
		case <-timer.C:
		}
	}
}

// untilNext is how long until the next fetch is due (f.mu held).
func (f *Fetcher) untilNext(now time.Time) time.Duration {
	wait := f.opts.Refresh
	for _, e := range f.entries {
		if d := e.next.Sub(now); d < wait {
			wait = max(d, 0)
		}
	}
	return wait
}

// fetchDue fetches every URI that is due, a few at a time, and records the
// outcomes.
func (f *Fetcher) fetchDue(ctx context.Context) {
	now := time.Now()
	f.mu.Lock()
	var due []string
	for u, e := range f.entries {
		if !e.fetching && !e.next.After(now) {
			e.fetching = true
			due = append(due, u)
		}
	}
	f.mu.Unlock()
	slices.Sort(due)

	sem := make(chan struct{}, maxConcurrentFetches)
	var wg sync.WaitGroup
	for _, u := range due {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			keys, err := f.fetch(ctx, u)
			f.record(u, keys, err)
		}()
	}
	wg.Wait()
}

// record stores a fetch's outcome for u, unless u was dropped meanwhile.
func (f *Fetcher) record(u string, keys []byte, err error) {
	f.mu.Lock()
	e := f.entries[u]
	if e != nil {
		e.fetching = false
		if err == nil {
			e.keys, e.failures = string(keys), 0
			e.next = time.Now().Add(f.opts.Refresh)
		} else {
			e.failures++
			backoff := f.opts.RetryMin << min(e.failures-1, 20)
			e.next = time.Now().Add(min(backoff, f.opts.Refresh))
		}
	}
	f.mu.Unlock()
	if err != nil && e != nil && f.opts.OnError != nil {
		f.opts.OnError(u, err)
	}
}

// fetch gets and validates one key set.
func (f *Fetcher) fetch(ctx context.Context, uri string) ([]byte, error) {
	u, err := url.Parse(uri)
	if err != nil {
		return nil, fmt.Errorf("jwksUri %q: %w", uri, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("jwksUri %q: only http and https URLs can be fetched", uri)
	}
	ctx, cancel := context.WithTimeout(ctx, f.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, uri, nil)
	if err != nil {
		return nil, fmt.Errorf("jwksUri %q: %w", uri, err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch %q: %w", uri, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch %q: %s", uri, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, f.opts.MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("fetch %q: %w", uri, err)
	}
	if int64(len(body)) > f.opts.MaxBytes {
		return nil, fmt.Errorf("fetch %q: key set larger than %d bytes", uri, f.opts.MaxBytes)
	}
	body = bytes.TrimSpace(body)
	if err := Validate(body); err != nil {
		return nil, fmt.Errorf("fetch %q: %w", uri, err)
	}
	return body, nil
}
