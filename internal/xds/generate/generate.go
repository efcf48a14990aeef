// Package generate builds each proxy's xDS configuration from the mesh model:
// listeners, route configurations, clusters and endpoints, for Envoy sidecars,
// Envoy gateways and proxyless gRPC applications.
//
// Generate is the entry point (an xds.Generator). Output is deterministic: the
// same World and Proxy give the same resources, in the same order (sorted by
// name within each type), with the same bytes under deterministic marshalling.
// Every resource passes go-control-plane's ValidateAll, including the typed
// configs packed inside it.
//
// Names on the wire (see names.go):
//   - clusters: outbound|<port>||<fqdn> per service port; inbound|<port>|| per
//     workload port (sidecars); PassthroughCluster, BlackHoleCluster,
//     InboundPassthroughCluster;
//   - endpoints: named by their cluster (EDS clusters only);
//   - sidecar listeners: virtualOutbound (15001), virtualInbound (15006),
//     0.0.0.0_<port> per outbound service port; sidecar routes: "<port>";
//   - gateway listeners: 0.0.0.0_<target port>; gateway routes: http.<port>;
//   - gRPC client listeners and routes: <host>:<port> for every host in
//     ServiceHosts; gRPC server listeners: GRPCServerListenerTemplate with
//     <ip>:<port>, 0.0.0.0:<port>, [::]:<port>.
//
// Checks: Validate (ValidateAll on every resource and on the typed configs
// inside it) and CheckReferences (listeners → routes → clusters → endpoints,
// API listeners included, which go-control-plane's Snapshot.Consistent skips).
// RenderYAML renders resources as the golden files show them.
//
// One small file per resource kind and proxy type. The builders of resources
// that depend on a service port alone (outboundCluster, grpcCluster,
// loadAssignment) and of those that depend on a name alone
// (grpcClientListener, grpcClientRoute) take no proxy, so a cache can build
// each once per model version and hand the same message to every proxy.
//
// Returned resources share sub-messages with each other and with package
// state: treat them as immutable.
package generate

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

var _ xds.Generator = Generate

// Generate builds proxy's configuration from world, by proxy type. The result
// has an entry (possibly empty) for every type in xds.Types, each sorted by
// resource name.
func Generate(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	if world == nil {
		return nil, errors.New("generate: nil world")
	}
	if proxy == nil {
		return nil, errors.New("generate: nil proxy")
	}
	if sc, scoped := proxyScope(world, proxy); scoped {
		world = world.ScopedFor(proxyNamespace(proxy), sc)
	}
	var (
		res xds.Resources
		err error
	)
	switch proxy.Type {
	case model.ProxyGRPC:
		res, err = grpcResources(world, proxy)
	case model.ProxySidecar:
		res, err = sidecarResources(world, proxy)
	case model.ProxyRouter:
		res, err = gatewayResources(world, proxy)
	default:
		return nil, fmt.Errorf("generate: proxy %q: unknown proxy type %q", proxy.ID, proxy.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("generate: %s proxy %q: %w", proxy.Type, proxy.ID, err)
	}
	for _, t := range xds.Types {
		rs := res[t]
		if rs == nil {
			rs = []types.Resource{}
		}
		sortByName(rs)
		res[t] = rs
	}
	return res, nil
}

// proxyScope reports whether proxy sees less than the whole world: some
// Service is not exported to its namespace, or a Sidecar resource (the one
// returned, maybe nil) scopes it (sidecars and proxyless gRPC clients;
// gateways are not scoped by Sidecars).
func proxyScope(world *model.World, proxy *model.Proxy) (*model.Sidecar, bool) {
	var sc *model.Sidecar
	if proxy.Type != model.ProxyRouter && len(world.Config.Sidecars) > 0 {
		var labels map[string]string
		if proxy.Workload != nil {
			labels = proxy.Workload.Labels
		}
		sc = world.SidecarFor(proxyNamespace(proxy), labels)
	}
	return sc, sc != nil || world.HasExportRestrictions()
}

// ResourceName is the xDS name of a generated resource: its name, or for a
// ClusterLoadAssignment its cluster name.
func ResourceName(r types.Resource) string {
	switch r := r.(type) {
	case *endpointv3.ClusterLoadAssignment:
		return r.GetClusterName()
	case interface{ GetName() string }:
		return r.GetName()
	}
	return ""
}

func sortByName(rs []types.Resource) {
	slices.SortFunc(rs, func(a, b types.Resource) int {
		return strings.Compare(ResourceName(a), ResourceName(b))
	})
}
