// Package jwks fetches and keeps fresh the JSON Web Key Sets that
// RequestAuthentications name by jwksUri, so that generators inline them
// into proxy configuration (proxies never fetch them, and generators never
// do I/O).
package jwks

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/meshplane/meshplane/internal/model"
)

// Validate checks that doc is a JSON Web Key Set Envoy can verify tokens
// with: at least one usable key, and no private half of an asymmetric key
// (the set ends up in every proxy's configuration). Keys of types go-jose
// does not know are ignored, as RFC 7517 asks.
func Validate(doc []byte) error {
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &set); err != nil {
		return fmt.Errorf("not a JSON Web Key Set: %w", err)
	}
	usable := 0
	for i, raw := range set.Keys {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(raw); errors.Is(err, jose.ErrUnsupportedKeyType) {
			continue
		} else if err != nil {
			return fmt.Errorf("not a JSON Web Key Set: key %d: %w", i, err)
		}
		switch key := k.Key.(type) {
		case []byte: // symmetric (HMAC) key
			if len(key) == 0 {
				return fmt.Errorf("key %d (%q) is empty", i, k.KeyID)
			}
		default:
			if !k.Valid() {
				return fmt.Errorf("key %d (%q) is not valid", i, k.KeyID)
			}
			if !k.IsPublic() {
				return fmt.Errorf("key %d (%q) is a private key; a key set must hold public keys only", i, k.KeyID)
			}
		}
		usable++
	}
	if usable == 0 {
		return errors.New("the key set holds no usable key")
	}
	return nil
}

// URIs are the jwksUri the RequestAuthentications name for rules without
// inline keys (an inline jwks wins, as in Istio), sorted and unique.
func URIs(ras []*model.RequestAuthentication) []string {
	var out []string
	for _, ra := range ras {
		for _, r := range ra.Spec.GetJwtRules() {
			if r.GetJwks() != "" || r.GetJwksUri() == "" {
				continue
			}
			out = append(out, r.GetJwksUri())
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
