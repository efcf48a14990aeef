package generate

import (
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/meshplane/meshplane/internal/model"
)

// Names on the wire. Cluster and route names follow Istio's, so tooling and
// habits carry over (see docs/architecture.md, "Names on the wire").
const (
	// GRPCServerListenerTemplate names the inbound listener of a proxyless gRPC
	// server (xds.NewGRPCServer): grpc-go substitutes %s with the listening
	// "ip:port" ("0.0.0.0:8080", "[::]:8080", "10.0.0.7:8080"). The gRPC
	// bootstrap's server_listener_resource_name_template must be exactly this.
	GRPCServerListenerTemplate = "xds.meshplane.io/grpc/lds/inbound/%s"

	// OutboundCapturePort is where iptables sends a sidecar's outbound traffic.
	OutboundCapturePort = 15001
	// InboundCapturePort is where iptables sends a sidecar's inbound traffic.
	InboundCapturePort = 15006

	// VirtualOutboundListener listens on OutboundCapturePort and hands
	// connections to the per-port listener of their original destination.
	VirtualOutboundListener = "virtualOutbound"
	// VirtualInboundListener listens on InboundCapturePort.
	VirtualInboundListener = "virtualInbound"

	// PassthroughCluster forwards to the original destination (ALLOW_ANY).
	PassthroughCluster = "PassthroughCluster"
	// BlackHoleCluster has no endpoints (REGISTRY_ONLY).
	BlackHoleCluster = "BlackHoleCluster"
	// InboundPassthroughCluster forwards inbound traffic for ports no Service
	// declares to the workload's original destination.
	InboundPassthroughCluster = "InboundPassthroughCluster"
)

// GRPCServerListenerName is the listener a proxyless gRPC server listening on
// host:port asks for. IPv6 hosts are bracketed, as grpc-go writes them.
func GRPCServerListenerName(host string, port int32) string {
	return strings.Replace(GRPCServerListenerTemplate, "%s", hostPort(host, port), 1)
}

// OutboundClusterName is "outbound|<port>|<subset>|<fqdn>".
func OutboundClusterName(port int32, subset, fqdn string) string {
	return "outbound|" + itoa(port) + "|" + subset + "|" + fqdn
}

// InboundClusterName is "inbound|<port>||".
func InboundClusterName(port int32) string {
	return "inbound|" + itoa(port) + "||"
}

// SidecarRouteName is a sidecar's route configuration for an outbound port:
// the port number.
func SidecarRouteName(port int32) string { return itoa(port) }

// GatewayRouteName is a gateway's route configuration for a listening port:
// "http.<port>".
func GatewayRouteName(port int32) string { return "http." + itoa(port) }

// OutboundListenerName is a sidecar's per-port outbound listener, and a
// gateway's listener: "0.0.0.0_<port>".
func OutboundListenerName(port int32) string { return "0.0.0.0_" + itoa(port) }

// ServiceHosts returns the names under which a client in namespace clientNS may
// reach svc, most qualified first: the FQDN, <name>.<ns>.svc, <name>.<ns> and,
// for a client in the service's namespace, <name>. It does not include the
// cluster IP. A ServiceEntry's Service has its host only. It allocates the
// slice it returns.
func ServiceHosts(svc *model.Service, clientNS string) []string {
	if svc.ServiceEntry != "" {
		return []string{svc.Hostname} // a ServiceEntry's host is the only name
	}
	n := 3
	if clientNS == svc.Namespace {
		n = 4
	}
	hosts := make([]string, 0, n)
	short := svc.Name + "." + svc.Namespace
	if svc.Hostname != "" {
		hosts = append(hosts, svc.Hostname)
	}
	if svcName := short + ".svc"; svcName != svc.Hostname {
		hosts = append(hosts, svcName)
	}
	hosts = append(hosts, short)
	if clientNS == svc.Namespace {
		hosts = append(hosts, svc.Name)
	}
	return hosts
}

// hostPort joins host and port, bracketing IPv6 addresses.
func hostPort(host string, port int32) string {
	return net.JoinHostPort(host, itoa(port))
}

func itoa(port int32) string { return strconv.FormatInt(int64(port), 10) }

// canonicalIP returns ip in Go's canonical text form (as grpc-go and the
// kernel report addresses), or ip unchanged when it does not parse.
func canonicalIP(ip string) string {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	return a.Unmap().WithZone("").String()
}

// proxyIP is the proxy's address: from the node, else from its workload.
func proxyIP(p *model.Proxy) string {
	ip := p.IP
	if ip == "" && p.Workload != nil {
		ip = p.Workload.IP
	}
	if ip == "" {
		return ""
	}
	return canonicalIP(ip)
}

// proxyNamespace is the proxy's namespace: from the node, else from its workload.
func proxyNamespace(p *model.Proxy) string {
	if p.Namespace != "" || p.Workload == nil {
		return p.Namespace
	}
	return p.Workload.Namespace
}

// isIPv6 reports whether ip is an IPv6 (and not IPv4-mapped) address.
func isIPv6(ip string) bool {
	a, err := netip.ParseAddr(ip)
	return err == nil && a.Is6() && !a.Is4In6()
}
