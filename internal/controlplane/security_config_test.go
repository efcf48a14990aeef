package controlplane

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/controller-runtime/pkg/client"

	"github.com/meshplane/meshplane/internal/meshd"
)

// The mesh config's external authorizers reach the model the generators read,
// and meshd fetches a RequestAuthentication's jwksUri itself: its key set
// reaches the World, so proxies get it inline and never fetch.
func TestJWKSAndExtAuthzReachTheWorld(t *testing.T) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(jwks)
	}))
	t.Cleanup(issuer.Close)
	jwksURI := issuer.URL + "/jwks"

	c, err := client.New(apiConfig, client.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ns := fmt.Sprintf("jwt-%d", namesUsed.Add(1))
	if err := c.Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}); err != nil {
		t.Fatal(err)
	}
	ra := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "security.istio.io/v1",
		"kind":       "RequestAuthentication",
		"metadata":   map[string]any{"name": "issuer", "namespace": ns},
		"spec": map[string]any{"jwtRules": []any{map[string]any{
			"issuer": "https://issuer.example", "jwksUri": jwksURI,
		}}},
	}}
	if err := c.Create(ctx, ra); err != nil {
		t.Fatal(err)
	}

	cfg := &meshd.MeshConfig{TrustDomain: "cluster.local", OutboundTrafficPolicy: "ALLOW_ANY",
		ExtensionProviders: []meshd.ExtensionProvider{{Name: "opa", EnvoyExtAuthzGRPC: &meshd.EnvoyExtAuthzGRPCProvider{
			Service: "opa.authz.svc.cluster.local", Port: 9191,
		}}}}
	cp, stop := startControlPlane(t, Options{RestConfig: apiConfig}, cfg)
	defer stop()
	deadline := time.Now().Add(time.Minute)
	for {
		var got string
		if d := cp.discovery.Load(); d != nil && cp.synced.Load() {
			w := d.World()
			got = w.Config.JWKS[jwksURI]
			if _, ok := w.Mesh.ExtAuthz.Lookup("opa"); ok && got == string(jwks) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the World holds JWKS %q for %s; want the issuer's key set, and the opa provider", got, jwksURI)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
