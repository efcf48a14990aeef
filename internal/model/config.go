package model

import (
	"maps"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1"
)

// Config is the Istio traffic configuration meshd serves from: the
// networking.istio.io objects (any served version; the specs are the same
// messages), each list sorted by namespace then name. Specs are never
// modified once in a World.
type Config struct {
	VirtualServices  []*VirtualService
	DestinationRules []*DestinationRule
	Gateways         []*Gateway
	ServiceEntries   []*ServiceEntry
	Sidecars         []*Sidecar

	// The security.istio.io kinds (security.go).
	PeerAuthentications    []*PeerAuthentication
	AuthorizationPolicies  []*AuthorizationPolicy
	RequestAuthentications []*RequestAuthentication
	// JWKS holds the key sets meshd fetched for RequestAuthentications'
	// jwksUri, by URI, so generators inline them (proxies never fetch).
	JWKS map[string]string

	// Credentials are the TLS Secrets gateways may name (credentialName),
	// by namespace/name.
	Credentials map[string]*Credential
}

// Credential is a TLS Secret's material: a certificate chain and key, and
// optionally a CA bundle to verify clients (ca.crt).
type Credential struct {
	Meta
	Cert, Key, CA []byte
}

// Meta identifies a configuration object.
type Meta struct {
	Name, Namespace string
	// CreationUnix orders conflicting objects as Istio does: the oldest
	// first, then by namespace/name.
	CreationUnix int64
	Generation   int64
}

// Key is namespace/name.
func (m Meta) Key() string { return m.Namespace + "/" + m.Name }

// VirtualService is a networking.istio.io VirtualService.
type VirtualService struct {
	Meta
	Spec *networking.VirtualService
}

// DestinationRule is a networking.istio.io DestinationRule.
type DestinationRule struct {
	Meta
	Spec *networking.DestinationRule
}

// Gateway is a networking.istio.io Gateway.
type Gateway struct {
	Meta
	Spec *networking.Gateway
}

// ServiceEntry is a networking.istio.io ServiceEntry.
type ServiceEntry struct {
	Meta
	Spec *networking.ServiceEntry

	derived serviceEntryServices
}

// Sidecar is a networking.istio.io Sidecar.
type Sidecar struct {
	Meta
	Spec *networking.Sidecar
}

// sortConfig sorts every list by namespace/name unless it already is.
func sortConfig(c *Config) {
	sortIfNeeded(c.VirtualServices, func(a, b *VirtualService) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.DestinationRules, func(a, b *DestinationRule) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.Gateways, func(a, b *Gateway) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.ServiceEntries, func(a, b *ServiceEntry) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.Sidecars, func(a, b *Sidecar) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.PeerAuthentications, func(a, b *PeerAuthentication) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.AuthorizationPolicies, func(a, b *AuthorizationPolicy) int { return compareMeta(a.Meta, b.Meta) })
	sortIfNeeded(c.RequestAuthentications, func(a, b *RequestAuthentication) int { return compareMeta(a.Meta, b.Meta) })
}

func compareMeta(a, b Meta) int {
	if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
		return c
	}
	return strings.Compare(a.Name, b.Name)
}

// olderFirst orders conflicting objects: creation time, then namespace/name.
func olderFirst(a, b Meta) int {
	if a.CreationUnix != b.CreationUnix {
		if a.CreationUnix < b.CreationUnix {
			return -1
		}
		return 1
	}
	return compareMeta(a, b)
}

// Exported reports whether an object in namespace ns with exportTo is
// visible from namespace from: no exportTo or "*" is everywhere, "." is its
// own namespace, "~" nowhere, any other entry a namespace by name.
func Exported(exportTo []string, ns, from string) bool {
	if len(exportTo) == 0 {
		return true
	}
	for _, e := range exportTo {
		switch e {
		case "*":
			return true
		case ".":
			if ns == from {
				return true
			}
		case "~":
		default:
			if e == from {
				return true
			}
		}
	}
	return false
}

// sameConfig reports whether two Configs hold the same objects (pointers).
func sameConfig(a, b *Config) bool {
	return slices.Equal(a.VirtualServices, b.VirtualServices) &&
		slices.Equal(a.DestinationRules, b.DestinationRules) &&
		slices.Equal(a.Gateways, b.Gateways) &&
		slices.Equal(a.ServiceEntries, b.ServiceEntries) &&
		slices.Equal(a.Sidecars, b.Sidecars) &&
		slices.Equal(a.PeerAuthentications, b.PeerAuthentications) &&
		slices.Equal(a.AuthorizationPolicies, b.AuthorizationPolicies) &&
		slices.Equal(a.RequestAuthentications, b.RequestAuthentications) &&
		maps.Equal(a.Credentials, b.Credentials) &&
		maps.Equal(a.JWKS, b.JWKS)
}

// SameConfig reports whether two worlds hold the same configuration objects.
func SameConfig(a, b *World) bool { return sameConfig(&a.Config, &b.Config) }

// ResolveHost qualifies a host named in a configuration object of namespace
// ns: a short name (no dot, not a wildcard) is a Service of ns. Other names
// are taken as written.
func ResolveHost(host, ns, suffix string) string {
	if host == "" || host == "*" || strings.Contains(host, ".") {
		return host
	}
	return Hostname(host, ns, suffix)
}

// HostMatches reports whether a configuration host (resolved; possibly a
// wildcard "*" or "*.suffix") covers a concrete hostname.
func HostMatches(pattern, host string) bool {
	switch {
	case pattern == "*":
		return true
	case strings.HasPrefix(pattern, "*."):
		return strings.HasSuffix(host, pattern[1:])
	}
	return pattern == host
}

// QualifyHost is ResolveHost for a host named in an object of namespace
// ns, also completing "name.namespace" and "name.namespace.svc" to the
// Service they name when there is one (Kubernetes DNS resolves them so;
// Istio takes them literally, which routes nowhere).
func (w *World) QualifyHost(host, ns string) string {
	host = ResolveHost(host, ns, w.Mesh.DomainSuffix)
	if _, ok := w.servicesByHost[host]; ok || strings.HasPrefix(host, "*") {
		return host
	}
	var full string
	switch strings.Count(host, ".") {
	case 1:
		full = host + ".svc." + w.Mesh.DomainSuffix
	case 2:
		if strings.HasSuffix(host, ".svc") {
			full = host + "." + w.Mesh.DomainSuffix
		}
	}
	if _, ok := w.servicesByHost[full]; ok {
		return full
	}
	return host
}

// UsesSourceLabels reports whether some VirtualService matches on the
// client's labels (then what a proxy gets depends on its labels).
func (w *World) UsesSourceLabels() bool { return w.sourceLabelMatches }

// UsesL4Routes reports whether some VirtualService has TCP or TLS routes.
func (w *World) UsesL4Routes() bool { return w.l4Routes }

func (w *World) indexConfig() {
	for _, vs := range w.Config.VirtualServices {
		w.l4Routes = w.l4Routes || len(vs.Spec.GetTcp()) > 0 || len(vs.Spec.GetTls()) > 0
		for _, hr := range vs.Spec.GetHttp() {
			for _, m := range hr.GetMatch() {
				w.sourceLabelMatches = w.sourceLabelMatches || len(m.GetSourceLabels()) > 0
			}
		}
	}
	w.rulesByHost = map[string][]*DestinationRule{}
	for _, dr := range w.Config.DestinationRules {
		host := w.QualifyHost(dr.Spec.GetHost(), dr.Namespace)
		if strings.HasPrefix(host, "*") {
			w.wildcardRules = append(w.wildcardRules, dr)
			continue
		}
		w.rulesByHost[host] = append(w.rulesByHost[host], dr)
	}
}

// DestinationRule returns the rule that applies to traffic from namespace
// clientNS to host, as Istio picks it: among the rules visible from clientNS
// (exportTo) whose host covers it, one in clientNS first, then one in the
// host's own namespace (its Service's), then any other; an exact host before
// a wildcard; among equals, the oldest. Nil when none applies.
func (w *World) DestinationRule(host, clientNS string) *DestinationRule {
	serviceNS := ""
	if svc := w.servicesByHost[host]; svc != nil {
		serviceNS = svc.Namespace
	}
	var best *DestinationRule
	bestRank := 0
	consider := func(dr *DestinationRule, exact bool) {
		if !Exported(dr.Spec.GetExportTo(), dr.Namespace, clientNS) {
			return
		}
		rank := 1
		switch dr.Namespace {
		case clientNS:
			rank = 3
		case serviceNS:
			rank = 2
		}
		rank *= 2
		if exact {
			rank++
		}
		if best == nil || rank > bestRank || rank == bestRank && olderFirst(dr.Meta, best.Meta) < 0 {
			best, bestRank = dr, rank
		}
	}
	for _, dr := range w.rulesByHost[host] {
		consider(dr, true)
	}
	for _, dr := range w.wildcardRules {
		if HostMatches(w.QualifyHost(dr.Spec.GetHost(), dr.Namespace), host) {
			consider(dr, false)
		}
	}
	return best
}

// VirtualServicesFor returns the VirtualServices a proxy in namespace
// clientNS applies for the gateway named gateway ("mesh" for sidecars and
// proxyless clients; "ns/name" for a Gateway), oldest first: those visible
// from clientNS that name the gateway (no gateways means "mesh").
func (w *World) VirtualServicesFor(gateway, clientNS string) []*VirtualService {
	var out []*VirtualService
	for _, vs := range w.Config.VirtualServices {
		if gateway == "mesh" && !Exported(vs.Spec.GetExportTo(), vs.Namespace, clientNS) {
			continue
		}
		if !appliesTo(vs, gateway) {
			continue
		}
		out = append(out, vs)
	}
	slices.SortStableFunc(out, func(a, b *VirtualService) int { return olderFirst(a.Meta, b.Meta) })
	return out
}

// appliesTo reports whether a VirtualService is bound to gateway.
func appliesTo(vs *VirtualService, gateway string) bool {
	gws := vs.Spec.GetGateways()
	if len(gws) == 0 {
		return gateway == "mesh"
	}
	for _, g := range gws {
		if g == gateway {
			return true
		}
		if g != "mesh" && !strings.Contains(g, "/") && vs.Namespace+"/"+g == gateway {
			return true
		}
	}
	return false
}

// DestinationRulesFor returns every rule whose host covers host, whoever
// the client: exact hosts first, each group in namespace/name order.
func (w *World) DestinationRulesFor(host string) []*DestinationRule {
	out := slices.Clone(w.rulesByHost[host])
	for _, dr := range w.wildcardRules {
		if HostMatches(w.QualifyHost(dr.Spec.GetHost(), dr.Namespace), host) {
			out = append(out, dr)
		}
	}
	return out
}

// SidecarFor returns the Sidecar that scopes a proxy in namespace ns with
// workload labels: one of the namespace whose workloadSelector matches the
// labels (the oldest if several), else the namespace's one without a
// selector (the oldest), else nil.
func (w *World) SidecarFor(ns string, labels map[string]string) *Sidecar {
	var selected, fallback *Sidecar
	for _, sc := range w.Config.Sidecars {
		if sc.Namespace != ns {
			continue
		}
		sel := sc.Spec.GetWorkloadSelector()
		switch {
		case sel == nil || len(sel.GetLabels()) == 0:
			if fallback == nil || olderFirst(sc.Meta, fallback.Meta) < 0 {
				fallback = sc
			}
		case labels != nil && LabelsMatch(sel.GetLabels(), labels):
			if selected == nil || olderFirst(sc.Meta, selected.Meta) < 0 {
				selected = sc
			}
		}
	}
	if selected != nil {
		return selected
	}
	return fallback
}

// Scoped returns the world as a proxy under sc sees it; see ScopedFor.
func (w *World) Scoped(sc *Sidecar) *World { return w.ScopedFor(sc.Namespace, sc) }

// HasExportRestrictions reports whether some Service is exported to some
// namespaces only (then what a proxy sees depends on its namespace).
func (w *World) HasExportRestrictions() bool { return w.restrictedExports }

// ScopedFor returns the world as a proxy in namespace ns sees it: only the
// Services exported to ns, and under a Sidecar sc (may be nil) only those
// (and the mesh VirtualServices) its egress hosts name, with its outbound
// traffic policy. It is w itself when nothing is hidden. Services,
// workloads and configuration objects are the same pointers.
func (w *World) ScopedFor(ns string, sc *Sidecar) *World {
	if sc == nil && !w.restrictedExports {
		return w
	}
	var hosts []egressHost
	for _, eg := range sc.GetSpecEgress() {
		for _, h := range eg.GetHosts() {
			if eh, ok := parseEgressHost(h, sc.Namespace); ok {
				hosts = append(hosts, eh)
			}
		}
	}
	visible := func(svcNS, host string) bool {
		if sc == nil || len(sc.Spec.GetEgress()) == 0 {
			return true // no egress section: everything, as without a Sidecar
		}
		for _, eh := range hosts {
			if eh.matches(svcNS, host) {
				return true
			}
		}
		return false
	}
	services := make([]*Service, 0, len(w.Services))
	for _, s := range w.Services {
		if Exported(s.ExportTo, s.Namespace, ns) && visible(s.Namespace, s.Hostname) {
			services = append(services, s)
		}
	}
	cfg := w.Config
	cfg.VirtualServices = nil
	for _, vs := range w.Config.VirtualServices {
		for _, h := range vs.Spec.GetHosts() {
			if visible(vs.Namespace, w.QualifyHost(h, vs.Namespace)) {
				cfg.VirtualServices = append(cfg.VirtualServices, vs)
				break
			}
		}
	}
	mesh := w.Mesh
	if p := sc.GetSpecOutboundTrafficPolicy(); p != nil {
		mesh.OutboundAllowAny = p.GetMode() == networking.OutboundTrafficPolicy_ALLOW_ANY
	}
	// The ServiceEntries' Services are in services already (or were left
	// out on purpose): the scoped world must not add them again.
	cfg.ServiceEntries = nil
	scoped := NewWorldWithConfig(mesh, services, w.Workloads, cfg)
	scoped.Config.ServiceEntries = w.Config.ServiceEntries
	scoped.restrictedExports = false // already applied
	return scoped
}

// GetSpecEgress is sc's egress listeners (sc may be nil).
func (sc *Sidecar) GetSpecEgress() []*networking.IstioEgressListener {
	if sc == nil {
		return nil
	}
	return sc.Spec.GetEgress()
}

// GetSpecOutboundTrafficPolicy is sc's outbound traffic policy (sc may be
// nil).
func (sc *Sidecar) GetSpecOutboundTrafficPolicy() *networking.OutboundTrafficPolicy {
	if sc == nil {
		return nil
	}
	return sc.Spec.GetOutboundTrafficPolicy()
}

// egressHost is one "namespace/host" entry of a Sidecar's egress.
type egressHost struct {
	ns, host string // ns: a namespace, "*" or "~"; host: a name, "*" or "*.suffix"
}

func parseEgressHost(s, sidecarNS string) (egressHost, bool) {
	ns, host, ok := strings.Cut(s, "/")
	if !ok || host == "" {
		return egressHost{}, false
	}
	if ns == "." {
		ns = sidecarNS
	}
	return egressHost{ns: ns, host: host}, true
}

func (e egressHost) matches(ns, host string) bool {
	if e.ns == "~" || e.ns != "*" && e.ns != ns {
		return false
	}
	return HostMatches(e.host, host)
}

// GatewaysFor returns the Gateways whose selector matches a gateway
// workload's labels (in any namespace, as Istio selects by default), in
// namespace/name order. A Gateway without a selector selects nothing.
func (w *World) GatewaysFor(labels map[string]string) []*Gateway {
	var out []*Gateway
	for _, g := range w.Config.Gateways {
		if sel := g.Spec.GetSelector(); len(sel) > 0 && LabelsMatch(sel, labels) {
			out = append(out, g)
		}
	}
	return out
}

// Credential finds a TLS Secret by namespace and name.
func (w *World) Credential(ns, name string) *Credential { return w.Config.Credentials[ns+"/"+name] }
