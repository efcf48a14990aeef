package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	security "istio.io/api/security/v1beta1"

	"github.com/meshplane/meshplane/internal/model"
)

// keySet is a JWKS of a fresh key, public (or private when private is set).
func keySet(t *testing.T, kid string, private bool) string {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	var key any = &k.PublicKey
	if private {
		key = k
	}
	b, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key, KeyID: kid, Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestValidate(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaSet, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rsaKey.PublicKey, KeyID: "r"}}})
	cases := []struct {
		name, doc string
		want      string // substring of the error; "" for valid
	}{
		{"EC public key", keySet(t, "a", false), ""},
		{"RSA public key", string(rsaSet), ""},
		{"symmetric key", `{"keys":[{"kty":"oct","k":"c2VjcmV0LXNlY3JldC1zZWNyZXQ","alg":"HS256"}]}`, ""},
		{"unknown key types are ignored", `{"keys":[{"kty":"future","crv":"x"},` + strings.TrimPrefix(keySet(t, "b", false), `{"keys":[`), ""},
		{"private key", keySet(t, "p", true), "private key"},
		{"no keys", `{"keys":[]}`, "no usable key"},
		{"only unknown key types", `{"keys":[{"kty":"future"}]}`, "no usable key"},
		{"broken key", `{"keys":[{"kty":"RSA","n":"AQAB"}]}`, "not a JSON Web Key Set"},
		{"not JSON", `<html>`, "not a JSON Web Key Set"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate([]byte(tc.doc))
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func TestURIs(t *testing.T) {
	ra := func(rules ...*security.JWTRule) *model.RequestAuthentication {
		return &model.RequestAuthentication{Spec: &security.RequestAuthentication{JwtRules: rules}}
	}
	got := URIs([]*model.RequestAuthentication{
		ra(&security.JWTRule{JwksUri: "https://b.example/jwks"}, &security.JWTRule{JwksUri: "https://a.example/jwks"}),
		ra(&security.JWTRule{JwksUri: "https://b.example/jwks"}),
		ra(&security.JWTRule{JwksUri: "https://inline.example/jwks", Jwks: `{"keys":[]}`}), // inline wins
		ra(&security.JWTRule{Issuer: "no-keys"}),
	})
	if want := []string{"https://a.example/jwks", "https://b.example/jwks"}; !slices.Equal(got, want) {
		t.Errorf("URIs %q, want %q", got, want)
	}
}

// issuer serves key sets by path; a path's document can change, or fail.
type issuer struct {
	mu     sync.Mutex
	docs   map[string]string
	status map[string]int
	hits   map[string]int
}

func newIssuer(t *testing.T) (*issuer, *httptest.Server) {
	is := &issuer{docs: map[string]string{}, status: map[string]int{}, hits: map[string]int{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		is.mu.Lock()
		defer is.mu.Unlock()
		is.hits[r.URL.Path]++
		if code := is.status[r.URL.Path]; code != 0 {
			w.WriteHeader(code)
			return
		}
		doc, ok := is.docs[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write([]byte(doc))
	}))
	t.Cleanup(srv.Close)
	return is, srv
}

func (is *issuer) set(path, doc string, status int) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.docs[path], is.status[path] = doc, status
}

// recorder collects a Fetcher's updates and errors.
type recorder struct {
	updates chan map[string]string
	mu      sync.Mutex
	errs    []string
}

func newRecorder() *recorder { return &recorder{updates: make(chan map[string]string, 16)} }

func (r *recorder) options(o Options) Options {
	o.OnUpdate = func(k map[string]string) { r.updates <- k }
	o.OnError = func(uri string, err error) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.errs = append(r.errs, uri+": "+err.Error())
	}
	return o
}

func (r *recorder) next(t *testing.T) map[string]string {
	t.Helper()
	select {
	case k := <-r.updates:
		return k
	case <-time.After(5 * time.Second):
		t.Fatal("no update")
		return nil
	}
}

func (r *recorder) waitError(t *testing.T, substr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		r.mu.Lock()
		for _, e := range r.errs {
			if strings.Contains(e, substr) {
				r.mu.Unlock()
				return
			}
		}
		r.mu.Unlock()
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("no error containing %q; errors: %q", substr, r.errs)
}

func run(t *testing.T, f *Fetcher) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != context.Canceled {
			t.Errorf("Run returned %v", err)
		}
	})
}

// TestFetcherKeepsKeysFresh: new URIs are fetched at once, changes are
// picked up by the refresh, a failure keeps the last good set and is
// reported, and a URI no longer asked for leaves the map.
func TestFetcherKeepsKeysFresh(t *testing.T) {
	is, srv := newIssuer(t)
	a, b := srv.URL+"/a", srv.URL+"/b"
	keysA1, keysA2, keysB := keySet(t, "a1", false), keySet(t, "a2", false), keySet(t, "b", false)
	is.set("/a", keysA1, 0)
	is.set("/b", keysB, 0)
	rec := newRecorder()
	f := NewFetcher(rec.options(Options{Refresh: 100 * time.Millisecond, RetryMin: 20 * time.Millisecond}))
	f.SetURIs([]string{a, b})
	run(t, f)

	if got := rec.next(t); got[a] != keysA1 || got[b] != keysB || len(got) != 2 {
		t.Fatalf("first update %v", got)
	}
	is.set("/a", keysA2, 0)
	if got := rec.next(t); got[a] != keysA2 || got[b] != keysB {
		t.Fatalf("after rotation %v", got)
	}

	// The issuer breaks: the keys stay, the failure is reported.
	is.set("/a", "", http.StatusInternalServerError)
	rec.waitError(t, "500 Internal Server Error")
	is.set("/a", "not a key set", 0)
	rec.waitError(t, "not a JSON Web Key Set")
	if got := f.Keys(); got[a] != keysA2 {
		t.Fatalf("keys of a after failures: %q, want the last good set", got[a])
	}
	select {
	case u := <-rec.updates:
		t.Fatalf("update %v after failures only", u)
	default:
	}

	f.SetURIs([]string{b})
	if got := rec.next(t); len(got) != 1 || got[b] != keysB {
		t.Fatalf("after dropping a: %v", got)
	}
}

// TestFetcherRefuses: what cannot be a key set is never handed on.
func TestFetcherRefuses(t *testing.T) {
	is, srv := newIssuer(t)
	is.set("/big", `{"keys":[`+strings.Repeat(" ", 2048)+`]}`, 0)
	is.set("/private", keySet(t, "p", true), 0)
	is.set("/good", keySet(t, "g", false), 0)
	rec := newRecorder()
	f := NewFetcher(rec.options(Options{MaxBytes: 1024, Refresh: time.Hour, RetryMin: time.Hour}))
	f.SetURIs([]string{srv.URL + "/big", srv.URL + "/private", srv.URL + "/missing", "file:///etc/passwd", srv.URL + "/good"})
	run(t, f)
	if got := rec.next(t); len(got) != 1 || got[srv.URL+"/good"] == "" {
		t.Fatalf("update %v, want the good set only", got)
	}
	rec.waitError(t, "larger than 1024 bytes")
	rec.waitError(t, "private key")
	rec.waitError(t, "404 Not Found")
	rec.waitError(t, "only http and https")
}

// TestFetcherTimeout: a slow issuer fails the fetch after Timeout and the
// retry backs off.
func TestFetcherTimeout(t *testing.T) {
	var hits atomic.Int32
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	rec := newRecorder()
	f := NewFetcher(rec.options(Options{Timeout: 50 * time.Millisecond, RetryMin: 50 * time.Millisecond, Refresh: time.Hour}))
	f.SetURIs([]string{slow.URL})
	run(t, f)
	rec.waitError(t, "context deadline exceeded")
	time.Sleep(400 * time.Millisecond)
	// 50 ms timeout, then waits of 50, 100, 200 ms: at most 4 attempts in
	// 400 ms plus the first timeout, far fewer than without backoff.
	if n := hits.Load(); n < 2 || n > 5 {
		t.Errorf("%d attempts, want 2..5 with backoff", n)
	}
}
