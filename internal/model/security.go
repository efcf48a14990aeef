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

// MTLSMode is the mutual TLS a workload port accepts (PeerAuthentication).
type MTLSMode int

const (
	// MTLSPermissive accepts mesh mTLS and plaintext (Istio's default).
	MTLSPermissive MTLSMode = iota
	// MTLSStrict accepts mesh mTLS only.
	MTLSStrict
	// MTLSDisable accepts plaintext only.
	MTLSDisable
)

func (m MTLSMode) String() string {
	switch m {
	case MTLSStrict:
		return "STRICT"
	case MTLSDisable:
		return "DISABLE"
	}
	return "PERMISSIVE"
}

// PeerAuthenticationMode is the mTLS mode of port (the workload's own port,
// not a Service port) of a workload in namespace ns with labels, as Istio
// resolves it: the oldest policy with a selector matching the labels, else
// the oldest namespace-wide policy (no selector) of ns, else the oldest
// mesh-wide one (no selector, root namespace), else PERMISSIVE. An UNSET
// mode inherits from the next wider policy; a selector policy's port-level
// setting overrides its own mode for that port. labels nil asks for the
// namespace's mode (no selector matches).
func (w *World) PeerAuthenticationMode(ns string, labels map[string]string, port uint32) MTLSMode {
	var mesh, namespace, workload *PeerAuthentication
	older := func(cur, pa *PeerAuthentication) *PeerAuthentication {
		if cur == nil || olderFirst(pa.Meta, cur.Meta) < 0 {
			return pa
		}
		return cur
	}
	for _, pa := range w.Config.PeerAuthentications {
		selector := pa.Spec.GetSelector().GetMatchLabels()
		switch {
		case len(selector) == 0 && pa.Namespace == w.Mesh.RootNamespace && w.Mesh.RootNamespace != "":
			mesh = older(mesh, pa)
			if ns == pa.Namespace {
				namespace = older(namespace, pa)
			}
		case len(selector) == 0 && pa.Namespace == ns:
			namespace = older(namespace, pa)
		case len(selector) > 0 && pa.Namespace == ns && labels != nil && LabelsMatch(selector, labels):
			workload = older(workload, pa)
		}
	}
	mode := MTLSPermissive
	apply := func(m securityMTLSMode) {
		switch m {
		case securityStrict:
			mode = MTLSStrict
		case securityPermissive:
			mode = MTLSPermissive
		case securityDisable:
			mode = MTLSDisable
		}
	}
	for _, pa := range []*PeerAuthentication{mesh, namespace, workload} {
		if pa != nil {
			apply(pa.Spec.GetMtls().GetMode())
		}
	}
	if workload != nil {
		if pl, ok := workload.Spec.GetPortLevelMtls()[port]; ok && port != 0 {
			apply(pl.GetMode())
		}
	}
	return mode
}

type securityMTLSMode = security.PeerAuthentication_MutualTLS_Mode

const (
	securityStrict     = security.PeerAuthentication_MutualTLS_STRICT
	securityPermissive = security.PeerAuthentication_MutualTLS_PERMISSIVE
	securityDisable    = security.PeerAuthentication_MutualTLS_DISABLE
)

// UsesPeerAuthentication reports whether any PeerAuthentication exists (else
// every port is PERMISSIVE).
func (w *World) UsesPeerAuthentication() bool { return len(w.Config.PeerAuthentications) > 0 }

// DefaultTrustDomain is the trust domain of SPIFFE identities when the mesh
// config names none.
const DefaultTrustDomain = "cluster.local"
