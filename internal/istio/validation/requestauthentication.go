package validation

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
	securityv1beta1 "istio.io/api/security/v1beta1"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (v *validator) requestAuthentication(spec *securityv1beta1.RequestAuthentication) {
	specPath := field.NewPath("spec")
	v.policyTargets(specPath, spec.Selector, spec.TargetRef, spec.TargetRefs)
	for i, rule := range spec.JwtRules {
		if rule != nil {
			v.jwtRule(specPath.Child("jwtRules").Index(i), rule)
		}
	}
}

func (v *validator) jwtRule(path *field.Path, rule *securityv1beta1.JWTRule) {
	if rule.Issuer == "" {
		v.required(path.Child("issuer"), "a JWT rule needs the issuer its tokens name in their iss claim")
	}
	v.nonEmptyEntries(path.Child("audiences"), rule.Audiences, "audiences")
	v.nonEmptyEntries(path.Child("fromParams"), rule.FromParams, "query parameter names")
	v.nonEmptyEntries(path.Child("fromCookies"), rule.FromCookies, "cookie names")
	v.nonEmptyEntries(path.Child("spaceDelimitedClaims"), rule.SpaceDelimitedClaims, "claim names")

	if rule.JwksUri != "" && rule.Jwks != "" {
		v.forbidden(path.Child("jwks"), "set either jwks or jwksUri, not both")
	}
	if rule.JwksUri != "" {
		if problem := jwksURIProblem(rule.JwksUri); problem != "" {
			v.invalid(CodeInvalidJWKS, path.Child("jwksUri"), rule.JwksUri, "%s", problem)
		}
	}
	if rule.Jwks != "" {
		// The value is a whole document: messages say what is wrong instead of repeating it.
		set, problem := parseJWKS(rule.Jwks)
		switch {
		case problem != "":
			v.invalid(CodeInvalidJWKS, path.Child("jwks"), "", "%s", problem)
		case set.usable == 0:
			v.warn(CodeIneffectiveConfig, path.Child("jwks"), "",
				"jwks has no key a proxy can use, so no token of issuer %q can be verified and requests carrying one are refused", rule.Issuer)
		}
		if len(set.private) > 0 {
			v.warn(CodePrivateKeyInJWKS, path.Child("jwks"), "",
				"jwks keys%v hold private keys, which every proxy that verifies the tokens receives; publish the public keys only", set.private)
		}
	}

	for i, header := range rule.FromHeaders {
		namePath := path.Child("fromHeaders").Index(i).Child("name")
		switch name := header.GetName(); {
		case name == "":
			v.required(namePath, "a header to read the token from needs a name")
		case !isHeaderName(name):
			v.warn(CodeIneffectiveConfig, namePath, name,
				"%q is not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~), so no request carries the token there", name)
		}
	}
	if name := rule.OutputPayloadToHeader; name != "" && !isHeaderName(name) {
		v.warn(CodeIneffectiveConfig, path.Child("outputPayloadToHeader"), name,
			"%q is not an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~), so the payload cannot be forwarded in it", name)
	}
	for i, claimToHeader := range rule.OutputClaimToHeaders {
		entryPath := path.Child("outputClaimToHeaders").Index(i)
		if claimToHeader == nil {
			continue
		}
		if claimToHeader.Claim == "" {
			v.required(entryPath.Child("claim"), "name the claim to copy into the header")
		}
		switch header := claimToHeader.Header; {
		case header == "":
			v.required(entryPath.Child("header"), "name the header to copy the claim into")
		case !claimHeaderName.MatchString(header):
			v.invalid(CodeInvalidField, entryPath.Child("header"), header,
				"%q is not a header name Istio accepts here: letters, digits, '-' and '_' only", header)
		}
	}
	v.duration(path.Child("timeout"), rule.Timeout)
}

// nonEmptyEntries reports the empty strings of a list.
func (v *validator) nonEmptyEntries(path *field.Path, values []string, what string) {
	for i, value := range values {
		if value == "" {
			v.invalid(CodeInvalidField, path.Index(i), value, "%s must not be empty", what)
		}
	}
}

// claimHeaderName is the header names Istio's schema accepts for outputClaimToHeaders.
var claimHeaderName = regexp.MustCompile(`^[-_A-Za-z0-9]+$`)

// isHeaderName reports whether name is an HTTP field name (an RFC 9110 token).
func isHeaderName(name string) bool {
	if name == "" {
		return false
	}
	for _, c := range name {
		isAlphanumeric := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !isAlphanumeric && !strings.ContainsRune("!#$%&'*+-.^_`|~", c) {
			return false
		}
	}
	return true
}

// jwksURIProblem says why a jwksUri cannot be fetched, or "".
func jwksURIProblem(uri string) string {
	u, err := url.Parse(uri)
	switch {
	case err != nil:
		return fmt.Sprintf("jwksUri %q is not a URL: %v", uri, unwrapURLError(err))
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("jwksUri %q must be an absolute http:// or https:// URL", uri)
	case u.Hostname() == "":
		return fmt.Sprintf("jwksUri %q has no host", uri)
	}
	return ""
}

func unwrapURLError(err error) error {
	if urlErr, ok := err.(*url.Error); ok {
		return urlErr.Err
	}
	return err
}

// jwksContent is what an inline JSON Web Key Set holds.
type jwksContent struct {
	// usable counts the keys of types a proxy knows.
	usable int
	// private are the indexes of asymmetric keys given with their private half.
	private []int
}

// parseJWKS reads an inline JSON Web Key Set as a proxy must: a JSON object whose "keys" list
// holds keys. Keys of types it does not know are skipped, as RFC 7517 asks; a malformed key is
// a problem.
func parseJWKS(text string) (content jwksContent, problem string) {
	var set struct {
		Keys *[]json.RawMessage `json:"keys"`
		Kty  *string            `json:"kty"`
	}
	if err := json.Unmarshal([]byte(text), &set); err != nil {
		return content, fmt.Sprintf("jwks is not a JSON Web Key Set: %v", err)
	}
	switch {
	case set.Keys == nil && set.Kty != nil:
		return content, `jwks is a single JSON Web Key; a key set lists its keys: {"keys": [...]}`
	case set.Keys == nil:
		return content, `jwks is not a JSON Web Key Set: it has no "keys" list`
	}
	for i, raw := range *set.Keys {
		var key jose.JSONWebKey
		err := json.Unmarshal(raw, &key)
		switch {
		case errors.Is(err, jose.ErrUnsupportedKeyType):
			continue
		case err != nil:
			return content, fmt.Sprintf("jwks keys[%d] is not a usable key: %s", i, strings.TrimPrefix(err.Error(), "go-jose/go-jose: "))
		}
		content.usable++
		if _, symmetric := key.Key.([]byte); !symmetric && !key.IsPublic() {
			content.private = append(content.private, i)
		}
	}
	return content, ""
}
