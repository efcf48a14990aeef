// Package model is meshd's typed, immutable view of the mesh: services, their
// ports and endpoints, and workloads, as Kubernetes reports them. Discovery
// builds a new World on every change; generators read it and never call the API
// server. The model imports no xDS types.
package model

import (
	"slices"
	"strings"
)

// Protocol of a service port, from appProtocol or the port-name prefix.
type Protocol string

const (
	ProtocolHTTP    Protocol = "HTTP"
	ProtocolHTTP2   Protocol = "HTTP2"
	ProtocolGRPC    Protocol = "GRPC"
	ProtocolHTTPS   Protocol = "HTTPS"
	ProtocolTLS     Protocol = "TLS"
	ProtocolTCP     Protocol = "TCP"
	ProtocolUnknown Protocol = "UNKNOWN" // sniffed by sidecars, treated as TCP elsewhere
)

// IsHTTP reports whether the protocol is routed with an HTTP connection manager.
func (p Protocol) IsHTTP() bool {
	return p == ProtocolHTTP || p == ProtocolHTTP2 || p == ProtocolGRPC
}

// ProtocolOf derives a port's protocol the way Istio does: appProtocol first,
// then the port name's prefix ("http", "http-web", "grpc-api", ...).
func ProtocolOf(appProtocol, portName string) Protocol {
	if p, ok := protocolByName(appProtocol); ok {
		return p
	}
	prefix, _, _ := strings.Cut(strings.ToLower(portName), "-")
	if p, ok := protocolByName(prefix); ok {
		return p
	}
	return ProtocolUnknown
}

func protocolByName(name string) (Protocol, bool) {
	switch strings.ToLower(name) {
	case "http":
		return ProtocolHTTP, true
	case "http2", "h2c", "kubernetes.io/h2c":
		return ProtocolHTTP2, true
	case "grpc", "grpc-web":
		return ProtocolGRPC, true
	case "https":
		return ProtocolHTTPS, true
	case "tls":
		return ProtocolTLS, true
	case "tcp", "mongo", "mysql", "redis":
		return ProtocolTCP, true
	}
	return "", false
}

// World is everything generators know, at one instant. It is never modified
// after NewWorld returns; a change produces a new World.
type World struct {
	// Services sorted by Hostname.
	Services []*Service
	// Workloads sorted by namespace/name.
	Workloads []*Workload
	// Mesh is the mesh-wide configuration.
	Mesh MeshConfig
	// Config is the Istio traffic configuration.
	Config Config

	servicesByHost     map[string]*Service
	workloadsByIP      map[string]*Workload
	workloadsByName    map[string]*Workload
	servicesByVIP      map[string]*Service
	restrictedExports  bool                          // some Service has a restricting ExportTo
	sourceLabelMatches bool                          // some VirtualService matches on sourceLabels
	l4Routes           bool                          // some VirtualService has TCP or TLS routes
	rulesByHost        map[string][]*DestinationRule // exact hosts, resolved
	wildcardRules      []*DestinationRule            // rules with a wildcard host
}

// MeshConfig is the part of the mesh configuration generators need.
type MeshConfig struct {
	TrustDomain string
	// DomainSuffix of service hostnames; "cluster.local".
	DomainSuffix string
	// OutboundAllowAny: unknown destinations pass through (ALLOW_ANY), else they
	// are blackholed (REGISTRY_ONLY).
	OutboundAllowAny bool
	// RootNamespace holds the mesh-wide security policies (PeerAuthentication,
	// AuthorizationPolicy, RequestAuthentication without a selector there
	// apply to every workload): the control plane's namespace, as Istio's
	// root namespace is istiod's.
	RootNamespace string
	// ExtAuthz are the external authorizers CUSTOM AuthorizationPolicies
	// name (mesh config extensionProviders); nil when there are none.
	ExtAuthz *ExtAuthzProviders
}

// Service is a Kubernetes Service and what the mesh knows of it.
type Service struct {
	Name, Namespace string
	// Hostname is the fully qualified name: <name>.<namespace>.svc.<suffix>.
	Hostname string
	// ClusterIP is empty for headless Services.
	ClusterIP string
	// Ports sorted by Port.
	Ports  []ServicePort
	Labels map[string]string
	// Endpoints sorted by Address then Pod.
	Endpoints []*Endpoint

	// Resolution is how proxies find the endpoints: "" for a Kubernetes
	// Service (EDS behind a cluster IP; the address dialled for a headless
	// one), else a ServiceEntry's.
	Resolution Resolution
	// ServiceEntry is the namespace/name of the ServiceEntry the Service
	// comes from; empty for a Kubernetes Service. Its Hostname is the host
	// as written (maybe a wildcard), and it has no short names.
	ServiceEntry string
	// External: a MESH_EXTERNAL ServiceEntry (outside the mesh: no mTLS).
	External bool
	// ExportTo restricts the namespaces whose proxies see the Service
	// (model.Exported); empty: every namespace.
	ExportTo []string
}

// Resolution of a ServiceEntry's endpoints.
type Resolution string

const (
	// ResolutionNone forwards to the address the client dialled.
	ResolutionNone Resolution = "NONE"
	// ResolutionStatic balances over the listed addresses.
	ResolutionStatic Resolution = "STATIC"
	// ResolutionDNS resolves every listed name (or the host) and balances
	// over all the addresses.
	ResolutionDNS Resolution = "DNS"
	// ResolutionDNSRoundRobin connects to the first address a name
	// resolves to.
	ResolutionDNSRoundRobin Resolution = "DNS_ROUND_ROBIN"
)

// UsesEDS reports whether proxies get the Service's endpoints over EDS: a
// Kubernetes Service with a cluster IP, or a STATIC ServiceEntry.
func (s *Service) UsesEDS() bool {
	if s.ServiceEntry != "" {
		return s.Resolution == ResolutionStatic
	}
	return s.ClusterIP != ""
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name     string
	Port     int32
	Protocol Protocol
}

// Endpoint is one backend address of a Service, from its EndpointSlices.
type Endpoint struct {
	Address string
	// Ports maps a service port name to the port on this endpoint.
	Ports map[string]int32
	// Ready, Serving and Terminating are the EndpointSlice conditions.
	Ready, Serving, Terminating bool
	// Pod, ServiceAccount and Labels come from the backing pod, when there is one.
	Pod            string
	ServiceAccount string
	Labels         map[string]string
	Locality       Locality
	NodeName       string
}

// Locality of an endpoint, from its node's topology labels.
type Locality struct {
	Region, Zone, SubZone string
}

// Workload is a pod that may run a proxy.
type Workload struct {
	Name, Namespace string
	IP              string
	ServiceAccount  string
	Labels          map[string]string
	Locality        Locality
}

// NewWorld indexes and sorts services and workloads. The inputs become part of
// the World and must not be modified afterwards. Inputs that are already sorted
// are never written to, so a Service may be shared by successive Worlds.
func NewWorld(mesh MeshConfig, services []*Service, workloads []*Workload) *World {
	return NewWorldWithConfig(mesh, services, workloads, Config{})
}

// NewWorldWithConfig is NewWorld with Istio configuration, whose lists are
// sorted by namespace/name unless they already are.
func NewWorldWithConfig(mesh MeshConfig, services []*Service, workloads []*Workload, config Config) *World {
	if mesh.DomainSuffix == "" {
		mesh.DomainSuffix = "cluster.local"
	}
	w := &World{
		Services:        services,
		Workloads:       workloads,
		Mesh:            mesh,
		Config:          config,
		servicesByHost:  make(map[string]*Service, len(services)),
		servicesByVIP:   make(map[string]*Service, len(services)),
		workloadsByIP:   make(map[string]*Workload, len(workloads)),
		workloadsByName: make(map[string]*Workload, len(workloads)),
	}
	services = withServiceEntries(services, workloads, config.ServiceEntries)
	w.Services = services
	sortIfNeeded(services, func(a, b *Service) int { return strings.Compare(a.Hostname, b.Hostname) })
	for _, s := range services {
		sortIfNeeded(s.Ports, func(a, b ServicePort) int { return int(a.Port) - int(b.Port) })
		sortIfNeeded(s.Endpoints, func(a, b *Endpoint) int {
			if c := strings.Compare(a.Address, b.Address); c != 0 {
				return c
			}
			return strings.Compare(a.Pod, b.Pod)
		})
		w.servicesByHost[s.Hostname] = s
		if len(s.ExportTo) > 0 && !slices.Contains(s.ExportTo, "*") {
			w.restrictedExports = true
		}
		if s.ClusterIP != "" {
			w.servicesByVIP[s.ClusterIP] = s
		}
	}
	sortIfNeeded(workloads, func(a, b *Workload) int {
		if c := strings.Compare(a.Namespace, b.Namespace); c != 0 {
			return c
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, wl := range workloads {
		w.workloadsByName[wl.Namespace+"/"+wl.Name] = wl
		if wl.IP != "" {
			w.workloadsByIP[wl.IP] = wl
		}
	}
	sortConfig(&w.Config)
	w.indexConfig()
	return w
}

// withServiceEntries returns services with the ServiceEntries' Services
// added, sorted by hostname (a new slice; services is not written to when
// there is nothing to add). A host that a Kubernetes Service or an older
// ServiceEntry already has is left out.
func withServiceEntries(services []*Service, workloads []*Workload, entries []*ServiceEntry) []*Service {
	if len(entries) == 0 {
		return services
	}
	taken := make(map[string]bool, len(services))
	for _, s := range services {
		taken[s.Hostname] = true
	}
	ordered := slices.Clone(entries)
	slices.SortStableFunc(ordered, func(a, b *ServiceEntry) int { return olderFirst(a.Meta, b.Meta) })
	out := slices.Clone(services)
	for _, se := range ordered {
		for _, s := range se.Services(workloads) {
			if !taken[s.Hostname] {
				taken[s.Hostname] = true
				out = append(out, s)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Service) int { return strings.Compare(a.Hostname, b.Hostname) })
	return out
}

// sortIfNeeded sorts s unless it already is, so shared inputs stay untouched.
func sortIfNeeded[T any](s []T, cmp func(a, b T) int) {
	if !slices.IsSortedFunc(s, cmp) {
		slices.SortFunc(s, cmp)
	}
}

// ServiceByHostname finds a service by its fully qualified name.
func (w *World) ServiceByHostname(host string) *Service { return w.servicesByHost[host] }

// ServiceByVIP finds a service by its cluster IP.
func (w *World) ServiceByVIP(ip string) *Service { return w.servicesByVIP[ip] }

// Workload finds a pod by namespace and name.
func (w *World) Workload(namespace, name string) *Workload {
	return w.workloadsByName[namespace+"/"+name]
}

// WorkloadByIP finds a pod by its IP.
func (w *World) WorkloadByIP(ip string) *Workload { return w.workloadsByIP[ip] }

// Hostname builds a service's fully qualified name.
func Hostname(name, namespace, suffix string) string {
	return name + "." + namespace + ".svc." + suffix
}

// ProxyType is the kind of xDS client.
type ProxyType string

const (
	// ProxySidecar is an Envoy beside a workload.
	ProxySidecar ProxyType = "sidecar"
	// ProxyRouter is an Envoy gateway.
	ProxyRouter ProxyType = "router"
	// ProxyGRPC is a proxyless gRPC application (grpc-go's xDS client).
	ProxyGRPC ProxyType = "grpc"
)

// Proxy is one connected xDS client, as identified by its node.
type Proxy struct {
	// ID is the xDS node id.
	ID   string
	Type ProxyType
	// Namespace, Pod and IP come from the node metadata (or the id).
	Namespace, Pod, IP string
	// Workload is the pod the proxy runs for, when meshd knows it.
	Workload *Workload
	// Metadata is the node metadata, flattened to strings.
	Metadata map[string]string
}
