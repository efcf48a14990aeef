package generate

import (
	"net"
	"slices"
	"strconv"
	"strings"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// GenerateGRPC builds only what the named listeners of a proxyless gRPC proxy
// need: each listener, and for a client (API) listener its route
// configuration, cluster and endpoints. grpc-go subscribes by name to the
// listeners of the targets it dials and of the servers it runs, and
// go-control-plane's ADS-mode cache answers a state-of-the-world request only
// when it names every resource of its type in the snapshot; a snapshot built
// from the names the client asked for (this) is answered, a full one
// (Generate) is not. It is also much smaller: Generate gives a gRPC proxy
// four listeners and four routes per service port of the mesh.
//
// Every resource returned is identical to the one Generate returns under the
// same name; names Generate would not produce are skipped. The result has an
// entry for every type in xds.Types, sorted by name, without duplicates.
func GenerateGRPC(world *model.World, proxy *model.Proxy, listenerNames []string) (xds.Resources, error) {
	ns := proxyNamespace(proxy)
	ip := proxyIP(proxy)
	var (
		listeners, routes, clusters, endpoints []types.Resource
		serverPorts                            []workloadPort
		serverPortsDone                        bool
		seenListener                           = make(map[string]bool, len(listenerNames))
		seenCluster                            = make(map[string]bool, len(listenerNames))
	)
	for _, name := range listenerNames {
		if seenListener[name] {
			continue
		}
		seenListener[name] = true

		if hp, ok := cutServerListenerName(name); ok {
			host, port, ok := splitHostPort(hp)
			if !ok || ip == "" || !slices.Contains(grpcServerHosts(ip), host) {
				continue
			}
			if !serverPortsDone {
				serverPorts, _ = inboundModes(world, proxy, workloadPorts(world, ip))
				serverPortsDone = true
			}
			i := slices.IndexFunc(serverPorts, func(wp workloadPort) bool { return wp.Port == port })
			if i < 0 {
				continue
			}
			l, err := grpcServerListener(host, port, serverPorts[i].MTLS, meshSourceIPs(world), inboundSecurityFor(world, proxy))
			if err != nil {
				return nil, err
			}
			listeners = append(listeners, l)
			continue
		}

		host, portNum, ok := splitHostPort(name)
		if !ok {
			continue
		}
		svc := serviceForHost(world, host, ns)
		if svc == nil {
			continue
		}
		i := slices.IndexFunc(svc.Ports, func(p model.ServicePort) bool { return p.Port == portNum })
		if i < 0 {
			continue
		}
		port := svc.Ports[i]
		if hostPort(host, port.Port) != name {
			continue // e.g. "web:080": not a name Generate produces
		}
		l, err := grpcClientListener(name)
		if err != nil {
			return nil, err
		}
		c := secureCluster(grpcCluster(svc, port), serviceTLSFor(world, svc), nil, true)
		listeners = append(listeners, l)
		routes = append(routes, grpcClientRoute(name, host, c.Name))
		if !seenCluster[c.Name] {
			seenCluster[c.Name] = true
			clusters = append(clusters, c)
			endpoints = append(endpoints, loadAssignment(svc, port))
		}
	}
	res := xds.Resources{
		resourcev3.ClusterType:  nonNil(clusters),
		resourcev3.EndpointType: nonNil(endpoints),
		resourcev3.ListenerType: nonNil(listeners),
		resourcev3.RouteType:    nonNil(routes),
	}
	for _, rs := range res {
		sortByName(rs)
	}
	return res, nil
}

// serviceForHost finds the service a client in namespace ns means by host,
// among the names ServiceHosts offers it.
func serviceForHost(world *model.World, host, ns string) *model.Service {
	suffix := world.Mesh.DomainSuffix
	candidates := [...]string{
		host,                               // FQDN
		host + "." + suffix,                // name.ns.svc
		host + ".svc." + suffix,            // name.ns
		host + "." + ns + ".svc." + suffix, // name, same namespace
	}
	for _, fqdn := range candidates {
		svc := world.ServiceByHostname(fqdn)
		if svc != nil && slices.Contains(ServiceHosts(svc, ns), host) {
			return svc
		}
	}
	return nil
}

// cutServerListenerName returns the "ip:port" of a name made from
// GRPCServerListenerTemplate.
func cutServerListenerName(name string) (string, bool) {
	prefix, suffix, _ := strings.Cut(GRPCServerListenerTemplate, "%s")
	rest, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, suffix)
}

// splitHostPort splits "host:port" ("[v6]:port"), with a port in 1-65535.
func splitHostPort(s string) (string, int32, bool) {
	host, p, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return "", 0, false
	}
	port, err := strconv.ParseUint(p, 10, 16)
	if err != nil || port == 0 {
		return "", 0, false
	}
	return host, int32(port), true
}

func nonNil(rs []types.Resource) []types.Resource {
	if rs == nil {
		return []types.Resource{}
	}
	return rs
}
