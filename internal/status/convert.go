package status

import (
	"google.golang.org/protobuf/proto"
	networkingv1 "istio.io/client-go/pkg/apis/networking/v1"
	securityv1 "istio.io/client-go/pkg/apis/security/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/meshplane/meshplane/internal/istio/config"
	"github.com/meshplane/meshplane/internal/model"
)

// analysisInput turns a World back into the typed objects validation.Analyze reads: the Istio
// kinds as networking.istio.io/v1 and security.istio.io/v1 client objects, Kubernetes Services
// (name, namespace, ports) and Workloads as Pods (name, namespace, labels). Services a
// ServiceEntry made are left out: the ServiceEntry itself is in the input and stands for its
// hosts.
//
// Specs are copied, because the client types hold them by value; the World stays untouched.
func analysisInput(world *model.World) []config.Object {
	c := &world.Config
	n := len(c.VirtualServices) + len(c.DestinationRules) + len(c.Gateways) + len(c.ServiceEntries) +
		len(c.Sidecars) + len(c.PeerAuthentications) + len(c.AuthorizationPolicies) + len(c.RequestAuthentications) +
		len(world.Services) + len(world.Workloads)
	objects := make([]config.Object, 0, n)
	add := func(kind, apiVersion string, object config.KubernetesObject) {
		objects = append(objects, config.Object{APIVersion: apiVersion, Kind: kind, Object: object})
	}
	for _, vs := range c.VirtualServices {
		out := &networkingv1.VirtualService{ObjectMeta: objectMeta(vs.Meta)}
		proto.Merge(&out.Spec, vs.Spec)
		add(config.KindVirtualService, istioAPIVersion, out)
	}
	for _, dr := range c.DestinationRules {
		out := &networkingv1.DestinationRule{ObjectMeta: objectMeta(dr.Meta)}
		proto.Merge(&out.Spec, dr.Spec)
		add(config.KindDestinationRule, istioAPIVersion, out)
	}
	for _, gw := range c.Gateways {
		out := &networkingv1.Gateway{ObjectMeta: objectMeta(gw.Meta)}
		proto.Merge(&out.Spec, gw.Spec)
		add(config.KindGateway, istioAPIVersion, out)
	}
	for _, se := range c.ServiceEntries {
		out := &networkingv1.ServiceEntry{ObjectMeta: objectMeta(se.Meta)}
		proto.Merge(&out.Spec, se.Spec)
		add(config.KindServiceEntry, istioAPIVersion, out)
	}
	for _, sc := range c.Sidecars {
		out := &networkingv1.Sidecar{ObjectMeta: objectMeta(sc.Meta)}
		proto.Merge(&out.Spec, sc.Spec)
		add(config.KindSidecar, istioAPIVersion, out)
	}
	for _, pa := range c.PeerAuthentications {
		out := &securityv1.PeerAuthentication{ObjectMeta: objectMeta(pa.Meta)}
		proto.Merge(&out.Spec, pa.Spec)
		add(config.KindPeerAuthentication, securityAPIVersion, out)
	}
	for _, ap := range c.AuthorizationPolicies {
		out := &securityv1.AuthorizationPolicy{ObjectMeta: objectMeta(ap.Meta)}
		proto.Merge(&out.Spec, ap.Spec)
		add(config.KindAuthorizationPolicy, securityAPIVersion, out)
	}
	for _, ra := range c.RequestAuthentications {
		out := &securityv1.RequestAuthentication{ObjectMeta: objectMeta(ra.Meta)}
		proto.Merge(&out.Spec, ra.Spec)
		add(config.KindRequestAuthentication, securityAPIVersion, out)
	}
	for _, svc := range world.Services {
		if svc.ServiceEntry != "" {
			continue
		}
		out := &corev1.Service{ObjectMeta: metav1.ObjectMeta{Name: svc.Name, Namespace: svc.Namespace, Labels: svc.Labels}}
		for _, port := range svc.Ports {
			out.Spec.Ports = append(out.Spec.Ports, corev1.ServicePort{Name: port.Name, Port: port.Port})
		}
		add(config.KindService, "v1", out)
	}
	for _, wl := range world.Workloads {
		add(config.KindPod, "v1", &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: wl.Name, Namespace: wl.Namespace, Labels: wl.Labels}})
	}
	return objects
}

// The versions meshd reads and writes the Istio kinds in.
const (
	istioAPIVersion    = config.IstioNetworkingGroup + "/v1"
	securityAPIVersion = config.IstioSecurityGroup + "/v1"
)

// objectMeta is an object's identity, generation and creation time (the analysis orders
// competing objects by age, as Istio does).
func objectMeta(m model.Meta) metav1.ObjectMeta {
	meta := metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, Generation: m.Generation}
	if m.CreationUnix != 0 {
		meta.CreationTimestamp = metav1.Unix(m.CreationUnix, 0)
	}
	return meta
}
