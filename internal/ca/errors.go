package ca

import (
	"errors"
	"fmt"
)

// Reason says why a CA bundle was refused, in the CamelCase a Kubernetes
// condition's reason takes.
type Reason string

// Reasons of a BundleError.
const (
	// ReasonMissingKey: ca-cert.pem, ca-key.pem or root-cert.pem is absent or empty.
	ReasonMissingKey Reason = "MissingKey"
	// ReasonMalformed: a value is not the PEM it should be, or does not parse.
	ReasonMalformed Reason = "Malformed"
	// ReasonUnsupportedKey: the CA key is not ECDSA P-256/P-384 or RSA >= 2048 bits.
	ReasonUnsupportedKey Reason = "UnsupportedKey"
	// ReasonKeyMismatch: ca-key.pem is not the key of ca-cert.pem.
	ReasonKeyMismatch Reason = "KeyMismatch"
	// ReasonNotCA: a certificate that must sign others is not a CA.
	ReasonNotCA Reason = "NotCA"
	// ReasonExpired: a certificate of the chain has expired.
	ReasonExpired Reason = "Expired"
	// ReasonNotYetValid: a certificate of the chain is not valid yet.
	ReasonNotYetValid Reason = "NotYetValid"
	// ReasonChainInvalid: ca-cert.pem does not chain to root-cert.pem through
	// cert-chain.pem.
	ReasonChainInvalid Reason = "ChainInvalid"
)

// BundleError is the error NewAuthority and Holder.Update return for a bundle
// they refuse. Reason suits a condition's reason and Error() its message: no
// key material is ever part of either.
//
//	var be *ca.BundleError
//	if errors.As(err, &be) { setCondition(..., string(be.Reason), be.Error()) }
type BundleError struct {
	Reason Reason
	// Key is the Secret key the problem is in (SecretKeyCACert, ...).
	Key string
	// Message explains the problem; it names certificates by subject.
	Message string
	// Err is the underlying parse or verification error, if any.
	Err error
}

func (e *BundleError) Error() string {
	msg := e.Key + ": " + e.Message
	if e.Err != nil {
		msg += ": " + e.Err.Error()
	}
	return msg
}

func (e *BundleError) Unwrap() error { return e.Err }

func bundleErr(reason Reason, key string, err error, format string, args ...any) *BundleError {
	return &BundleError{Reason: reason, Key: key, Message: fmt.Sprintf(format, args...), Err: err}
}

// ErrInvalidRequest marks a signing request that cannot succeed as made: a
// malformed CSR, a bad CSR signature, an unsupported key, a CSR asking for an
// identity the caller does not have (IdentityError), a non-positive TTL. The
// certificate service answers it with InvalidArgument.
var ErrInvalidRequest = errors.New("invalid certificate request")

// ErrUnavailable marks a signer that cannot sign now: no CA loaded, an expired
// CA, cert-manager denying, failing or not answering in time. The
// certificate service answers it with Unavailable.
var ErrUnavailable = errors.New("signer unavailable")

// IdentityError refuses a CSR that asks for an identity other than the
// caller's. It matches ErrInvalidRequest.
type IdentityError struct {
	// Requested lists every identity the CSR asks for, as "uri:...",
	// "dns:...", "ip:...", "email:..." or "cn:...".
	Requested []string
	// Allowed is the caller's identity, the only one it may have.
	Allowed Identity
}

func (e *IdentityError) Error() string {
	return fmt.Sprintf("CSR asks for %v, but the caller may only have %s", e.Requested, e.Allowed)
}

// Is makes errors.Is(err, ErrInvalidRequest) true.
func (e *IdentityError) Is(target error) bool { return target == ErrInvalidRequest }

func invalidRequest(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
}
