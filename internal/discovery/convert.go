package discovery

import (
	"bytes"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"
	istionetworking "istio.io/client-go/pkg/apis/networking/v1"
	istiosecurity "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplane/meshplane/internal/model"
)

// This file is the pure conversion layer: Kubernetes objects in, model values
// out. Nothing here touches an API server, a cache or shared state, and no
// result aliases the input object (labels and Istio specs are copied), so the
// input may come straight from an informer's store.

// Node and pod labels that give a locality.
const (
	LabelSubZone = "topology.istio.io/subzone"
)

// DefaultServiceAccount is the service account of a pod that names none, as
// the API server's ServiceAccount admission plugin would set it.
const DefaultServiceAccount = "default"

// ServiceFromKube converts a Service, without endpoints (those come from its
// EndpointSlices). ok is false for Services the model cannot express:
// ExternalName Services (a DNS alias, not a set of endpoints).
//
// Ports whose L4 protocol is not TCP (UDP, SCTP) are left out: the mesh proxies
// only TCP. The remaining ports are sorted by number; the protocol comes from
// model.ProtocolOf(appProtocol, name). A headless Service ("None") has an empty
// ClusterIP; of a dual-stack Service's cluster IPs only the primary one is kept.
func ServiceFromKube(svc *corev1.Service, domainSuffix string) (s *model.Service, ok bool) {
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, false
	}
	if domainSuffix == "" {
		domainSuffix = DefaultDomainSuffix
	}
	s = &model.Service{
		Name:      svc.Name,
		Namespace: svc.Namespace,
		Hostname:  model.Hostname(svc.Name, svc.Namespace, domainSuffix),
		ClusterIP: clusterIP(svc.Spec.ClusterIP),
		Labels:    cloneLabels(svc.Labels),
		ExportTo:  exportTo(svc.Annotations[ExportToAnnotation]),
	}
	for _, p := range svc.Spec.Ports {
		if !isTCP(p.Protocol) {
			continue
		}
		appProtocol := ""
		if p.AppProtocol != nil {
			appProtocol = *p.AppProtocol
		}
		s.Ports = append(s.Ports, model.ServicePort{
			Name:     p.Name,
			Port:     p.Port,
			Protocol: model.ProtocolOf(appProtocol, p.Name),
		})
	}
	slices.SortStableFunc(s.Ports, func(a, b model.ServicePort) int { return int(a.Port) - int(b.Port) })
	return s, true
}

// ExportToAnnotation restricts the namespaces whose proxies see a Service,
// as Istio reads it: comma-separated namespaces, "." (its own), "*" (all).
const ExportToAnnotation = "networking.istio.io/exportTo"

func exportTo(annotation string) []string {
	var out []string
	for _, ns := range strings.Split(annotation, ",") {
		if ns = strings.TrimSpace(ns); ns != "" {
			out = append(out, ns)
		}
	}
	return out
}

func clusterIP(ip string) string {
	if ip == corev1.ClusterIPNone {
		return ""
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		return a.String()
	}
	return ip
}

// SliceEndpoint is one endpoint of an EndpointSlice, before the pod and node
// it runs on are known. Endpoints of one slice share their Ports map, which
// must not be modified.
type SliceEndpoint struct {
	Address string
	// Ports maps a service port name to the port on the endpoint.
	Ports                       map[string]int32
	Ready, Serving, Terminating bool
	// Pod and PodNamespace come from the targetRef, when it is a Pod.
	Pod, PodNamespace string
	// NodeName and Zone are the endpoint's own fields; empty when unset.
	NodeName, Zone string
}

// EndpointsFromSlice converts an EndpointSlice. service is the name of the
// Service it belongs to (label kubernetes.io/service-name); ok is false for a
// slice without that label and for FQDN slices, which the mesh does not use.
//
// Conditions follow the API: a nil ready or serving means true, a nil
// terminating false. Only TCP ports with a number are mapped, by port name;
// of an endpoint's addresses only the first is used, as kube-proxy does, and
// an address that does not parse as the slice's address type is skipped.
func EndpointsFromSlice(slice *discoveryv1.EndpointSlice) (service string, eps []SliceEndpoint, ok bool) {
	service = slice.Labels[discoveryv1.LabelServiceName]
	if service == "" {
		return "", nil, false
	}
	switch slice.AddressType {
	case discoveryv1.AddressTypeIPv4, discoveryv1.AddressTypeIPv6:
	default:
		return "", nil, false
	}
	ports := make(map[string]int32, len(slice.Ports))
	for _, p := range slice.Ports {
		if p.Port == nil || (p.Protocol != nil && !isTCP(*p.Protocol)) {
			continue
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		ports[name] = *p.Port
	}
	eps = make([]SliceEndpoint, 0, len(slice.Endpoints))
	for _, e := range slice.Endpoints {
		if len(e.Addresses) == 0 {
			continue
		}
		addr, err := netip.ParseAddr(e.Addresses[0])
		if err != nil || addr.Zone() != "" ||
			(slice.AddressType == discoveryv1.AddressTypeIPv4) != addr.Is4() {
			continue
		}
		se := SliceEndpoint{
			Address:     addr.String(),
			Ports:       ports,
			Ready:       boolOr(e.Conditions.Ready, true),
			Serving:     boolOr(e.Conditions.Serving, true),
			Terminating: boolOr(e.Conditions.Terminating, false),
			NodeName:    stringOr(e.NodeName),
			Zone:        stringOr(e.Zone),
		}
		if ref := e.TargetRef; ref != nil && ref.Kind == "Pod" && (ref.APIVersion == "" || ref.APIVersion == "v1") {
			se.Pod = ref.Name
			se.PodNamespace = ref.Namespace
			if se.PodNamespace == "" {
				se.PodNamespace = slice.Namespace
			}
		}
		eps = append(eps, se)
	}
	return service, eps, true
}

// Pod is what the mesh needs of a pod, for its workload and for the endpoints
// that name it. Labels must not be modified.
type Pod struct {
	Name, Namespace string
	// IP is the primary pod IP; empty until one is assigned.
	IP             string
	ServiceAccount string
	NodeName       string
	Labels         map[string]string
	// Finished pods (Succeeded or Failed) are not workloads.
	Finished bool
}

// PodFromKube converts a pod. A pod naming no service account gets
// DefaultServiceAccount.
func PodFromKube(pod *corev1.Pod) *Pod {
	p := &Pod{
		Name:           pod.Name,
		Namespace:      pod.Namespace,
		ServiceAccount: pod.Spec.ServiceAccountName,
		NodeName:       pod.Spec.NodeName,
		Labels:         cloneLabels(pod.Labels),
		Finished:       pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed,
	}
	if p.ServiceAccount == "" {
		p.ServiceAccount = DefaultServiceAccount
	}
	if a, err := netip.ParseAddr(pod.Status.PodIP); err == nil {
		p.IP = a.String()
	}
	return p
}

// Workload returns the pod as a workload, or nil when it is not one: a pod is a
// workload once it has an IP and until it has finished. loc is the locality of
// the pod's node.
func (p *Pod) Workload(loc model.Locality) *model.Workload {
	if p.IP == "" || p.Finished {
		return nil
	}
	return &model.Workload{
		Name:           p.Name,
		Namespace:      p.Namespace,
		IP:             p.IP,
		ServiceAccount: p.ServiceAccount,
		Labels:         p.Labels,
		Locality:       loc,
	}
}

// WorkloadFromPod converts a pod to a workload; nil when it is not one (no IP
// yet, or finished).
func WorkloadFromPod(pod *corev1.Pod, nodeLocality model.Locality) *model.Workload {
	return PodFromKube(pod).Workload(nodeLocality)
}

// LocalityFromNodeLabels reads a node's topology labels: region and zone
// (topology.kubernetes.io/..., else the deprecated failure-domain.beta
// labels) and subzone (topology.istio.io/subzone).
func LocalityFromNodeLabels(labels map[string]string) model.Locality {
	l := model.Locality{
		Region:  labels[corev1.LabelTopologyRegion],
		Zone:    labels[corev1.LabelTopologyZone],
		SubZone: labels[LabelSubZone],
	}
	if l.Region == "" {
		l.Region = labels[corev1.LabelFailureDomainBetaRegion]
	}
	if l.Zone == "" {
		l.Zone = labels[corev1.LabelFailureDomainBetaZone]
	}
	return l
}

// BuildEndpoint completes a slice endpoint with what its pod (nil when the
// endpoint names none or the pod is unknown) and its node tell. The node is
// the endpoint's nodeName, else the pod's; node is that node's locality (zero
// when unknown). The endpoint's own zone field wins over the node's zone.
func BuildEndpoint(se SliceEndpoint, pod *Pod, node model.Locality) *model.Endpoint {
	ep := &model.Endpoint{
		Address:     se.Address,
		Ports:       se.Ports,
		Ready:       se.Ready,
		Serving:     se.Serving,
		Terminating: se.Terminating,
		Pod:         se.Pod,
		NodeName:    se.NodeName,
		Locality:    node,
	}
	if pod != nil {
		ep.ServiceAccount = pod.ServiceAccount
		ep.Labels = pod.Labels
		if ep.NodeName == "" {
			ep.NodeName = pod.NodeName
		}
	}
	if se.Zone != "" {
		ep.Locality.Zone = se.Zone
	}
	return ep
}

func isTCP(p corev1.Protocol) bool { return p == "" || p == corev1.ProtocolTCP }

func boolOr(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

func stringOr(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// cloneLabels copies a label map; nil and empty maps become nil.
func cloneLabels(l map[string]string) map[string]string {
	if len(l) == 0 {
		return nil
	}
	return maps.Clone(l)
}

// configMeta is the identity of an Istio config object or a TLS Secret. A
// zero creation time
// (objects from files) is 0, not the Unix time of year 1.
func configMeta(m *metav1.ObjectMeta) model.Meta {
	var created int64
	if !m.CreationTimestamp.IsZero() {
		created = m.CreationTimestamp.Unix()
	}
	return model.Meta{Name: m.Name, Namespace: m.Namespace, CreationUnix: created, Generation: m.Generation}
}

// VirtualServiceFromKube converts a VirtualService; its spec is a copy.
func VirtualServiceFromKube(vs *istionetworking.VirtualService) *model.VirtualService {
	return &model.VirtualService{Meta: configMeta(&vs.ObjectMeta), Spec: proto.CloneOf(&vs.Spec)}
}

// DestinationRuleFromKube converts a DestinationRule; its spec is a copy.
func DestinationRuleFromKube(dr *istionetworking.DestinationRule) *model.DestinationRule {
	return &model.DestinationRule{Meta: configMeta(&dr.ObjectMeta), Spec: proto.CloneOf(&dr.Spec)}
}

// GatewayFromKube converts a Gateway; its spec is a copy.
func GatewayFromKube(gw *istionetworking.Gateway) *model.Gateway {
	return &model.Gateway{Meta: configMeta(&gw.ObjectMeta), Spec: proto.CloneOf(&gw.Spec)}
}

// ServiceEntryFromKube converts a ServiceEntry; its spec is a copy.
func ServiceEntryFromKube(se *istionetworking.ServiceEntry) *model.ServiceEntry {
	return &model.ServiceEntry{Meta: configMeta(&se.ObjectMeta), Spec: proto.CloneOf(&se.Spec)}
}

// SidecarFromKube converts a Sidecar; its spec is a copy.
func SidecarFromKube(sc *istionetworking.Sidecar) *model.Sidecar {
	return &model.Sidecar{Meta: configMeta(&sc.ObjectMeta), Spec: proto.CloneOf(&sc.Spec)}
}

// PeerAuthenticationFromKube converts a PeerAuthentication; its spec is a copy.
func PeerAuthenticationFromKube(pa *istiosecurity.PeerAuthentication) *model.PeerAuthentication {
	return &model.PeerAuthentication{Meta: configMeta(&pa.ObjectMeta), Spec: proto.CloneOf(&pa.Spec)}
}

// AuthorizationPolicyFromKube converts an AuthorizationPolicy; its spec is a copy.
func AuthorizationPolicyFromKube(ap *istiosecurity.AuthorizationPolicy) *model.AuthorizationPolicy {
	return &model.AuthorizationPolicy{Meta: configMeta(&ap.ObjectMeta), Spec: proto.CloneOf(&ap.Spec)}
}

// RequestAuthenticationFromKube converts a RequestAuthentication; its spec is a copy.
func RequestAuthenticationFromKube(ra *istiosecurity.RequestAuthentication) *model.RequestAuthentication {
	return &model.RequestAuthentication{Meta: configMeta(&ra.ObjectMeta), Spec: proto.CloneOf(&ra.Spec)}
}

// CACertKey is the key of a TLS Secret's optional CA bundle, which a MUTUAL
// gateway server verifies client certificates with (Istio's convention).
const CACertKey = "ca.crt"

// CredentialFromSecret converts a kubernetes.io/tls Secret: tls.crt, tls.key
// and ca.crt become Cert, Key and CA, as copies; other keys are ignored. ok
// is false for a Secret of any other type (Istio also reads Opaque Secrets
// with cert/key/cacert keys; meshd does not). Like the API server on write,
// a stringData entry wins over the data entry of the same key: only a Secret
// read from a file has stringData.
func CredentialFromSecret(s *corev1.Secret) (c *model.Credential, ok bool) {
	if s.Type != corev1.SecretTypeTLS {
		return nil, false
	}
	value := func(key string) []byte {
		if v, ok := s.StringData[key]; ok {
			return []byte(v)
		}
		return bytes.Clone(s.Data[key])
	}
	return &model.Credential{
		Meta: configMeta(&s.ObjectMeta),
		Cert: value(corev1.TLSCertKey),
		Key:  value(corev1.TLSPrivateKeyKey),
		CA:   value(CACertKey),
	}, true
}
