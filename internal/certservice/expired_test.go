package certservice

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
)

// TestRefusesExpiredToken needs a token that has already expired; the
// TokenRequest API will not mint one (10 minutes at least). envtest starts
// kube-apiserver with --service-account-signing-key-file in its certificate
// directory, so the test finds that key (the one whose public half the API
// server publishes at /openid/v1/jwks), takes the claims of a real token and
// signs them again with exp in the past. The same claims re-signed with exp in
// the future are accepted, so the refusal is the expiry's doing.
func TestRefusesExpiredToken(t *testing.T) {
	c := newCluster(t)
	c.serviceAccount(t, "cart")
	holder, _ := newHolder(t)
	auth, err := NewTokenReviewAuthenticator(c.kube, TokenReviewOptions{})
	if err != nil {
		t.Fatal(err)
	}
	client := startService(t, holder, Options{Authenticator: auth})
	ctx := context.Background()
	signer := apiServerTokenSigner(t, c)
	real := c.token(t, "cart", DefaultAudience)
	now := time.Now()

	valid := signer.resign(t, real, now.Add(-time.Minute), now.Add(30*time.Minute))
	chain, err := call(ctx, client, valid, newCSR(t, nil), 0)
	if err != nil {
		t.Fatalf("a re-signed token valid for 30 more minutes was refused: %v", err)
	}
	if leaf := verifiedLeaf(t, chain, holder.Authority().RootsPEM()); leaf.URIs[0].String() != c.identity("cart") {
		t.Errorf("identity %s", leaf.URIs[0])
	}

	expired := signer.resign(t, real, now.Add(-2*time.Hour), now.Add(-time.Hour))
	chain, err = call(ctx, client, expired, newCSR(t, nil), 0)
	if chain != nil {
		t.Error("a certificate was issued for an expired token")
	}
	wantCode(t, err, codes.Unauthenticated, "expired")
}

// tokenSigner signs JWTs with the API server's service-account key.
type tokenSigner struct {
	key crypto.Signer
	kid string
	alg string
}

// apiServerTokenSigner finds the private key, in envtest's certificate
// directory, of a public key the API server publishes.
func apiServerTokenSigner(t *testing.T, c *cluster) *tokenSigner {
	t.Helper()
	raw, err := c.kube.CoreV1().RESTClient().Get().AbsPath("/openid/v1/jwks").DoRaw(context.Background())
	if err != nil {
		t.Fatalf("reading the API server's JWKS: %v", err)
	}
	var jwks struct {
		Keys []struct {
			Kid, Kty, Alg, X, Y, N, E string
		} `json:"keys"`
	}
	if err := json.Unmarshal(raw, &jwks); err != nil {
		t.Fatal(err)
	}
	dir := api.Environment().ControlPlane.APIServer.CertDir
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			continue
		}
		key := parseAnyPrivateKey(data)
		if key == nil {
			continue
		}
		for _, k := range jwks.Keys {
			switch pub := key.Public().(type) {
			case *ecdsa.PublicKey:
				if k.Kty == "EC" && b64Int(k.X).Cmp(pub.X) == 0 && b64Int(k.Y).Cmp(pub.Y) == 0 {
					alg := map[int]string{256: "ES256", 384: "ES384", 521: "ES512"}[pub.Curve.Params().BitSize]
					t.Logf("signing tokens with %s (%s)", f.Name(), alg)
					return &tokenSigner{key: key, kid: k.Kid, alg: alg}
				}
			case *rsa.PublicKey:
				if k.Kty == "RSA" && b64Int(k.N).Cmp(pub.N) == 0 {
					t.Logf("signing tokens with %s (RS256)", f.Name())
					return &tokenSigner{key: key, kid: k.Kid, alg: "RS256"}
				}
			}
		}
	}
	t.Fatalf("no private key in %s matches the API server's JWKS %s", dir, raw)
	return nil
}

func parseAnyPrivateKey(data []byte) crypto.Signer {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	default:
		return nil
	}
	if err != nil {
		return nil
	}
	s, _ := key.(crypto.Signer)
	return s
}

func b64Int(s string) *big.Int {
	b, _ := base64.RawURLEncoding.DecodeString(s)
	return new(big.Int).SetBytes(b)
}

// resign returns token's claims with iat/nbf and exp replaced, signed with
// the API server's key.
func (s *tokenSigner) resign(t *testing.T, token string, issued, expires time.Time) string {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatal("not a JWT")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	claims["iat"], claims["nbf"], claims["exp"] = issued.Unix(), issued.Unix(), expires.Unix()
	header, _ := json.Marshal(map[string]string{"alg": s.alg, "kid": s.kid})
	body, _ := json.Marshal(claims)
	input := base64.RawURLEncoding.EncodeToString(header) + "." + base64.RawURLEncoding.EncodeToString(body)

	var sig []byte
	switch key := s.key.(type) {
	case *ecdsa.PrivateKey:
		size := (key.Curve.Params().BitSize + 7) / 8
		var digest []byte
		switch s.alg {
		case "ES256":
			d := sha256.Sum256([]byte(input))
			digest = d[:]
		case "ES384":
			d := sha512.Sum384([]byte(input))
			digest = d[:]
		default:
			d := sha512.Sum512([]byte(input))
			digest = d[:]
		}
		r, ss, err := ecdsa.Sign(rand.Reader, key, digest)
		if err != nil {
			t.Fatal(err)
		}
		sig = append(r.FillBytes(make([]byte, size)), ss.FillBytes(make([]byte, size))...)
	case *rsa.PrivateKey:
		d := sha256.Sum256([]byte(input))
		if sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, d[:]); err != nil {
			t.Fatal(err)
		}
	}
	return input + "." + base64.RawURLEncoding.EncodeToString(sig)
}
