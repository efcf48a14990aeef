package harness

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"

	"k8s.io/client-go/rest"
)

// WriteRequest is one mutating request (POST, PUT, PATCH or DELETE) seen by a
// WriteCounter.
type WriteRequest struct {
	// N is the request's 1-based position among all the writes the counter saw
	// (refused ones included).
	N int
	// Verb is the HTTP method.
	Verb string
	// Path is the URL path, e.g. /apis/apps/v1/namespaces/x/deployments/y.
	Path string
	// Status is the HTTP status code of the response; 0 when there was none.
	Status int
	// Err is the transport error, if any (ErrWriteRefused after CutOffAfter).
	Err error
}

func (w WriteRequest) String() string {
	switch {
	case w.Err != nil:
		return fmt.Sprintf("#%d %s %s: %v", w.N, w.Verb, w.Path, w.Err)
	default:
		return fmt.Sprintf("#%d %s %s -> %d", w.N, w.Verb, w.Path, w.Status)
	}
}

// ErrWriteRefused is returned, without contacting the API server, for the writes
// after the cut-off set with WriteCounter.CutOffAfter.
var ErrWriteRefused = errors.New("harness: write refused: the client was cut off (simulated crash)")

// recentWrites is how many writes a WriteCounter remembers for Writes.
const recentWrites = 200

// WriteCounter counts the mutating requests made through the rest.Config that
// CountWrites returned. It is safe for concurrent use.
type WriteCounter struct {
	mu      sync.Mutex
	seen    int // writes seen, refused ones included; numbers WriteRequest.N
	sent    int // writes passed to the API server
	refused int
	recent  []WriteRequest
	ignore  func(WriteRequest) bool
	hooks   map[int][]func(WriteRequest)
	cutOff  int // refuse writes whose N > cutOff; 0: never
}

// CountWrites returns a copy of cfg whose transport reports every POST, PUT,
// PATCH and DELETE to the returned WriteCounter (cfg is not modified; an existing
// WrapTransport is kept, under the counter). Give the copy to the code under test,
// such as the operator's manager, and keep using cfg for the test's own requests.
//
// Two uses:
//
//   - Steady state: reconcile until settled, Reset, wait, and expect Count() == 0;
//     on failure print Summary(), which lists the writes that happened.
//   - A crash midway: AfterWrite(n, func(WriteRequest) { cancel() }) stops the
//     manager right after its n-th write, and CutOffAfter(n) makes sure nothing
//     else it does while shutting down reaches the API server; then start a fresh
//     operator with a fresh counter and check it converges.
//
// Every client built from the copy shares the counter, including the event
// recorder and leader election; IgnoreWrites can leave those out.
func CountWrites(cfg *rest.Config) (*rest.Config, *WriteCounter) {
	wc := &WriteCounter{hooks: map[int][]func(WriteRequest){}}
	out := rest.CopyConfig(cfg)
	out.Wrap(func(rt http.RoundTripper) http.RoundTripper {
		return &countingRoundTripper{next: rt, wc: wc}
	})
	return out, wc
}

// IgnoreWrites makes the counter skip (neither count, number, record nor refuse)
// the writes for which ignore returns true; Status and Err are not set yet when
// it is called. See IsEventWrite and IsLeaseWrite.
func (wc *WriteCounter) IgnoreWrites(ignore func(WriteRequest) bool) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	wc.ignore = ignore
}

// IsEventWrite matches writes of Events (core/v1 and events.k8s.io).
func IsEventWrite(w WriteRequest) bool {
	return strings.Contains(w.Path, "/events")
}

// IsLeaseWrite matches writes of coordination.k8s.io Leases (leader election).
func IsLeaseWrite(w WriteRequest) bool {
	return strings.HasPrefix(w.Path, "/apis/coordination.k8s.io/")
}

// Count returns how many writes were sent to the API server since the counter
// was made or last Reset (refused ones are not included).
func (wc *WriteCounter) Count() int {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.sent
}

// Refused returns how many writes were refused after the cut-off since the
// counter was made or last Reset.
func (wc *WriteCounter) Refused() int {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return wc.refused
}

// Writes returns the most recent writes (up to 200) since the counter was made or
// last Reset, oldest first.
func (wc *WriteCounter) Writes() []WriteRequest {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	return append([]WriteRequest(nil), wc.recent...)
}

// Summary describes the writes for a failure message: the count and one line per
// recent write.
func (wc *WriteCounter) Summary() string {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d write(s) sent", wc.sent)
	if wc.refused > 0 {
		fmt.Fprintf(&b, ", %d refused after the cut-off", wc.refused)
	}
	if dropped := wc.sent + wc.refused - len(wc.recent); dropped > 0 {
		fmt.Fprintf(&b, " (the first %d not listed)", dropped)
	}
	for _, w := range wc.recent {
		b.WriteString("\n  ")
		b.WriteString(w.String())
	}
	return b.String()
}

// Reset forgets the writes counted so far; Count, Refused and Writes start again
// from zero. Numbering (WriteRequest.N), hooks and the cut-off are not affected.
func (wc *WriteCounter) Reset() {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	wc.sent, wc.refused, wc.recent = 0, 0, nil
}

// AfterWrite runs fn once, right after the n-th write (numbered from 1 since the
// counter was made, Reset notwithstanding) got its response and before that
// response reaches the caller. A write refused by the cut-off does not run hooks.
func (wc *WriteCounter) AfterWrite(n int, fn func(WriteRequest)) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	wc.hooks[n] = append(wc.hooks[n], fn)
}

// CutOffAfter makes every write after the n-th (numbered as for AfterWrite) fail
// with ErrWriteRefused without reaching the API server, as if the process had
// died; reads still go through. n <= 0 removes the cut-off.
func (wc *WriteCounter) CutOffAfter(n int) {
	wc.mu.Lock()
	defer wc.mu.Unlock()
	wc.cutOff = max(n, 0)
}

type countingRoundTripper struct {
	next http.RoundTripper
	wc   *WriteCounter
}

func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

func (rt *countingRoundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	if !isWrite(req.Method) {
		return rt.next.RoundTrip(req)
	}
	wc := rt.wc
	w := WriteRequest{Verb: req.Method, Path: req.URL.Path}

	wc.mu.Lock()
	if wc.ignore != nil && wc.ignore(w) {
		wc.mu.Unlock()
		return rt.next.RoundTrip(req)
	}
	wc.seen++
	w.N = wc.seen
	if wc.cutOff > 0 && w.N > wc.cutOff {
		w.Err = ErrWriteRefused
		wc.refused++
		wc.record(w)
		wc.mu.Unlock()
		if req.Body != nil {
			_ = req.Body.Close()
		}
		return nil, fmt.Errorf("%s %s: %w", req.Method, req.URL.Path, ErrWriteRefused)
	}
	wc.mu.Unlock()

	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		w.Err = err
	} else {
		w.Status = resp.StatusCode
	}

	wc.mu.Lock()
	wc.sent++
	wc.record(w)
	hooks := wc.hooks[w.N]
	delete(wc.hooks, w.N)
	wc.mu.Unlock()

	for _, fn := range hooks {
		fn(w)
	}
	return resp, err
}

// record keeps w among the recent writes; wc.mu must be held.
func (wc *WriteCounter) record(w WriteRequest) {
	wc.recent = append(wc.recent, w)
	if len(wc.recent) > recentWrites {
		n := copy(wc.recent, wc.recent[len(wc.recent)-recentWrites:])
		wc.recent = wc.recent[:n]
	}
}
