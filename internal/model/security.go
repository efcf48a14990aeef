package model

import (
	security "istio.io/api/security/v1beta1"
)

// The security.istio.io kinds (any served version; v1 and v1beta1 share the
// messages). Like the networking kinds, specs are never modified once in a
// World; lists are sorted by namespace then name.

// PeerAuthentication is a security.istio.io PeerAuthentication.
type PeerAuthentication struct {
	Meta
	Spec *security.PeerAuthentication
}

// AuthorizationPolicy is a security.istio.io AuthorizationPolicy.
type AuthorizationPolicy struct {
	Meta
	Spec *security.AuthorizationPolicy
}

// RequestAuthentication is a security.istio.io RequestAuthentication.
type RequestAuthentication struct {
	Meta
	Spec *security.RequestAuthentication
}

// TLSModeLabel is the pod label Istio's injector sets on workloads that run
// a mesh proxy (value TLSModeIstio); clients use mesh mTLS towards endpoints
// that carry it (automatic mTLS).
const (
	TLSModeLabel = "security.istio.io/tlsMode"
	TLSModeIstio = "istio"
)

// MeshTLS reports whether the endpoint's workload runs a mesh proxy that
// terminates mesh mTLS.
func (e *Endpoint) MeshTLS() bool { return e.Labels[TLSModeLabel] == TLSModeIstio }
