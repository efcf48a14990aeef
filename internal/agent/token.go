package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/credentials"
)

// DefaultTokenFile is where the sidecar injector mounts the pod's projected
// service-account token (audience "istio-ca"), as Istio does.
const DefaultTokenFile = "/var/run/secrets/tokens/istio-token"

// TokenSource returns the pod's current service-account token.
type TokenSource func() (string, error)

// FileToken reads the token at path on every call: the kubelet rewrites a
// projected token well before it expires, so a token read once goes stale.
func FileToken(path string) TokenSource {
	return func() (string, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return "", fmt.Errorf("reading the service-account token: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return "", fmt.Errorf("reading the service-account token: %s is empty", path)
		}
		return token, nil
	}
}

// bearerCredentials sends a token as "authorization: Bearer <token>",
// which is how meshd (like istiod) authenticates certificate requests and
// xDS streams from workloads.
type bearerCredentials struct {
	token TokenSource
}

// GetRequestMetadata reads the token afresh for every RPC.
func (c bearerCredentials) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	token, err := c.token()
	if err != nil {
		return nil, err
	}
	return map[string]string{"authorization": "Bearer " + token}, nil
}

// RequireTransportSecurity is true: a token sent in the clear is a stolen identity.
func (bearerCredentials) RequireTransportSecurity() bool { return true }

var _ credentials.PerRPCCredentials = bearerCredentials{}

// ErrTokenRefused marks a certificate request the CA refused because of the
// token: missing, expired, for the wrong audience, or not a token at all.
var ErrTokenRefused = errors.New("the CA refused the service-account token")
