package validation

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	networkingv1alpha3 "istio.io/api/networking/v1alpha3"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

func (v *validator) sidecar(spec *networkingv1alpha3.Sidecar) {
	specPath := field.NewPath("spec")
	if len(spec.Egress) == 0 && len(spec.Ingress) == 0 && spec.OutboundTrafficPolicy == nil && spec.InboundConnectionPool == nil {
		v.required(specPath, "a Sidecar needs egress, ingress, outboundTrafficPolicy or inboundConnectionPool")
	}
	if selector := spec.WorkloadSelector; selector != nil {
		v.labels(specPath.Child("workloadSelector", "labels"), selector.Labels)
	}

	ingressPorts := map[uint32]int{}
	for i, listener := range spec.Ingress {
		path := specPath.Child("ingress").Index(i)
		if listener == nil {
			continue
		}
		if listener.Port == nil {
			v.required(path.Child("port"), "an ingress listener needs a port")
			continue
		}
		v.sidecarPort(path.Child("port"), listener.Port)
		if first, ok := ingressPorts[listener.Port.Number]; ok {
			v.invalid(CodeDuplicateEntry, path.Child("port", "number"), listener.Port.Number, "port %d is already used by ingress[%d]", listener.Port.Number, first)
		} else {
			ingressPorts[listener.Port.Number] = i
		}
		if listener.Bind != "" && !isIPAddress(listener.Bind) {
			v.invalid(CodeInvalidField, path.Child("bind"), listener.Bind, "bind must be an IP address")
		}
		if problem := defaultEndpointProblem(listener.DefaultEndpoint); problem != "" {
			v.invalid(CodeInvalidField, path.Child("defaultEndpoint"), listener.DefaultEndpoint, "%s", problem)
		}
		v.connectionPool(path.Child("connectionPool"), listener.ConnectionPool)
	}
	v.connectionPool(specPath.Child("inboundConnectionPool"), spec.InboundConnectionPool)

	egressPorts := map[uint32]int{}
	for i, listener := range spec.Egress {
		path := specPath.Child("egress").Index(i)
		if listener == nil {
			continue
		}
		switch {
		case listener.Port == nil:
			if i != len(spec.Egress)-1 {
				v.invalid(CodeInvalidField, path, "", "an egress listener without a port catches all other traffic, so it must be the last one")
			}
		case listener.Port.Number == 0 && strings.HasPrefix(listener.Bind, unixAddressPrefix):
			// A Unix domain socket listener has no port number.
		default:
			v.sidecarPort(path.Child("port"), listener.Port)
			if first, ok := egressPorts[listener.Port.Number]; ok {
				v.invalid(CodeDuplicateEntry, path.Child("port", "number"), listener.Port.Number, "port %d is already used by egress[%d]", listener.Port.Number, first)
			} else {
				egressPorts[listener.Port.Number] = i
			}
		}
		if len(listener.Hosts) == 0 {
			v.required(path.Child("hosts"), `an egress listener needs at least one host in namespace/host form, such as "./*" or "istio-system/*"`)
		}
		for j, host := range listener.Hosts {
			if problem := sidecarHostProblem(host); problem != "" {
				v.invalid(CodeInvalidHost, path.Child("hosts").Index(j), host, "%s", problem)
			}
		}
	}

	if policy := spec.OutboundTrafficPolicy; policy != nil && policy.EgressProxy != nil {
		proxyPath := specPath.Child("outboundTrafficPolicy", "egressProxy")
		if policy.Mode != networkingv1alpha3.OutboundTrafficPolicy_ALLOW_ANY {
			v.forbidden(proxyPath, "egressProxy is only used with mode ALLOW_ANY")
		}
		if policy.EgressProxy.Port == nil {
			v.required(proxyPath.Child("port"), "egressProxy needs a port")
		}
		v.destination(proxyPath, policy.EgressProxy)
	}
}

func (v *validator) sidecarPort(path *field.Path, port *networkingv1alpha3.SidecarPort) {
	v.port(path.Child("number"), port.Number)
	if port.Name != "" && !isDNSLabel(port.Name) {
		v.invalid(CodeInvalidField, path.Child("name"), port.Name, "port name %q is not a DNS label", port.Name)
	}
	if port.Protocol != "" && !isKnownProtocol(port.Protocol) {
		v.invalid(CodeInvalidField, path.Child("protocol"), port.Protocol, "unknown protocol %q; use HTTP, HTTPS, HTTP2, GRPC, TCP, TLS, MONGO, REDIS or MYSQL", port.Protocol)
	}
}

// sidecarHostProblem checks an egress host: "namespace/host" where namespace is "*", ".", "~"
// or a namespace name (optionally "~"-prefixed to exclude it) and host is "*" or a fully
// qualified DNS name, optionally with a "*." wildcard.
func sidecarHostProblem(entry string) string {
	namespace, host, ok := strings.Cut(entry, "/")
	if !ok {
		return fmt.Sprintf(`egress host %q must be in namespace/host form, such as "./*", "istio-system/*" or "*/%s"`, entry, entry)
	}
	if namespace == "" || host == "" {
		return fmt.Sprintf("egress host %q must have both namespace and host", entry)
	}
	if name := strings.TrimPrefix(namespace, "~"); name != "" && name != "*" && name != "." && !isDNSLabel(name) {
		return fmt.Sprintf("namespace %q in egress host %q must be \"*\", \".\", \"~\" or a namespace name", namespace, entry)
	}
	switch {
	case host == "*":
		return ""
	case !strings.Contains(host, "."):
		return fmt.Sprintf("egress host %q uses the short name %q; write the fully qualified name, such as %s/%s.<namespace>.svc.cluster.local", entry, host, namespace, host)
	case isPartialWildcard(host):
		return fmt.Sprintf("egress host %q has a partial wildcard; a wildcard must be a whole leading label, as in \"*.example.com\"", entry)
	default:
		return hostNameProblem(host)
	}
}

// defaultEndpointProblem checks where an ingress listener forwards to: a loopback or
// unspecified address with a port (127.0.0.1:8080, 0.0.0.0:8080, [::1]:8080, [::]:8080,
// :8080), or a unix:// path.
func defaultEndpointProblem(endpoint string) string {
	if endpoint == "" || strings.HasPrefix(endpoint, unixAddressPrefix) {
		return ""
	}
	host, port, err := net.SplitHostPort(endpoint)
	if err != nil {
		return fmt.Sprintf("defaultEndpoint %q must be host:port, such as 127.0.0.1:8080, or a unix:// path", endpoint)
	}
	switch host {
	case "", "127.0.0.1", "0.0.0.0", "::1", "::":
	default:
		return fmt.Sprintf("defaultEndpoint %q must use 127.0.0.1, 0.0.0.0, [::1] or [::], not %s", endpoint, host)
	}
	if number, err := strconv.Atoi(port); err != nil || number < 1 || number > 65535 {
		return fmt.Sprintf("defaultEndpoint %q has port %q, which is not in 1-65535", endpoint, port)
	}
	return ""
}
