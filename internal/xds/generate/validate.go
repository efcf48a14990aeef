package generate

import (
	"errors"
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshplane/meshplane/internal/xds"
)

// Validate runs go-control-plane's ValidateAll on every resource and on every
// typed config packed inside it (ValidateAll does not look inside Any fields,
// where HttpConnectionManager, TcpProxy, Router and the upstream protocol
// options live). It is meant for tests, meshctl and debugging; it unpacks
// every Any and so is not free.
func Validate(res xds.Resources) error {
	var errs []error
	for _, t := range sortedTypes(res) {
		for _, r := range res[t] {
			if err := validateDeep(r); err != nil {
				errs = append(errs, fmt.Errorf("%s %q: %w", typeKeyOf(t), ResourceName(r), err))
			}
		}
	}
	return errors.Join(errs...)
}

// ValidateResource validates one resource as Validate does, including the
// configs packed inside it. meshd's xDS server uses it before every push.
func ValidateResource(r types.Resource) error { return validateDeep(r) }

type validator interface{ ValidateAll() error }

func validateDeep(m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return err
		}
	}
	var errs []error
	walkAnys(m.ProtoReflect(), func(a *anypb.Any) {
		inner, err := a.UnmarshalNew()
		if err != nil {
			errs = append(errs, fmt.Errorf("unpack %s: %w", a.GetTypeUrl(), err))
			return
		}
		if err := validateDeep(inner); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", a.GetTypeUrl(), err))
		}
	})
	return errors.Join(errs...)
}

// walkAnys calls fn for every Any set in m, not descending into them.
func walkAnys(m protoreflect.Message, fn func(*anypb.Any)) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		fn(a)
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				walkAnys(l.Get(i).Message(), fn)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				walkAnys(mv.Message(), fn)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			walkAnys(v.Message(), fn)
		}
		return true
	})
}

// CheckReferences verifies that a proxy's resources reference each other
// completely and exactly:
//   - every route configuration a listener names over RDS (in a filter chain
//     or in an API listener) exists, and every route configuration is named;
//   - every cluster a route or TCP proxy names exists;
//   - every EDS cluster has its endpoints resource, and every endpoints
//     resource belongs to an EDS cluster.
//
// go-control-plane's Snapshot.Consistent checks the listener → route and
// cluster → endpoints directions but does not look into API listeners, so it
// reports the routes of a proxyless gRPC client as unreferenced; use this
// instead for ProxyGRPC (it is valid for every proxy type).
func CheckReferences(res xds.Resources) error {
	refs := references{routes: map[string]bool{}, clusters: map[string]bool{}}
	var errs []error
	for _, r := range res[resourcev3.ListenerType] {
		l, ok := r.(*listenerv3.Listener)
		if !ok {
			continue
		}
		if err := refs.listener(l); err != nil {
			errs = append(errs, fmt.Errorf("listener %q: %w", l.GetName(), err))
		}
	}
	routes := map[string]bool{}
	for _, r := range res[resourcev3.RouteType] {
		rc, ok := r.(*routev3.RouteConfiguration)
		if !ok {
			continue
		}
		routes[rc.GetName()] = true
		refs.routeConfig(rc)
	}
	clusters := map[string]bool{}
	eds := map[string]bool{}
	for _, r := range res[resourcev3.ClusterType] {
		c, ok := r.(*clusterv3.Cluster)
		if !ok {
			continue
		}
		clusters[c.GetName()] = true
		if c.GetType() == clusterv3.Cluster_EDS {
			name := c.GetEdsClusterConfig().GetServiceName()
			if name == "" {
				name = c.GetName()
			}
			eds[name] = true
		}
	}
	endpoints := map[string]bool{}
	for _, r := range res[resourcev3.EndpointType] {
		if cla, ok := r.(*endpointv3.ClusterLoadAssignment); ok {
			endpoints[cla.GetClusterName()] = true
		}
	}
	errs = append(errs, missing("route configuration %q is named by a listener but does not exist", refs.routes, routes)...)
	errs = append(errs, missing("route configuration %q is not named by any listener", routes, refs.routes)...)
	errs = append(errs, missing("cluster %q is named by a route or TCP proxy but does not exist", refs.clusters, clusters)...)
	errs = append(errs, missing("endpoints %q of an EDS cluster do not exist", eds, endpoints)...)
	errs = append(errs, missing("endpoints %q have no EDS cluster", endpoints, eds)...)
	return errors.Join(errs...)
}

// missing reports, with format, the names in want that are not in have.
func missing(format string, want, have map[string]bool) []error {
	var names []string
	for n := range want {
		if !have[n] {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	errs := make([]error, 0, len(names))
	for _, n := range names {
		errs = append(errs, fmt.Errorf(format, n))
	}
	return errs
}

type references struct {
	routes, clusters map[string]bool
}

func (refs references) listener(l *listenerv3.Listener) error {
	if api := l.GetApiListener().GetApiListener(); api != nil {
		return refs.filterConfig(api)
	}
	chains := l.GetFilterChains()
	if d := l.GetDefaultFilterChain(); d != nil {
		chains = append(slices.Clip(chains), d)
	}
	var errs []error
	for _, fc := range chains {
		for _, f := range fc.GetFilters() {
			if err := refs.filterConfig(f.GetTypedConfig()); err != nil {
				errs = append(errs, fmt.Errorf("filter chain %q: %w", fc.GetName(), err))
			}
		}
	}
	return errors.Join(errs...)
}

func (refs references) filterConfig(a *anypb.Any) error {
	if a == nil {
		return nil
	}
	m, err := a.UnmarshalNew()
	if err != nil {
		return err
	}
	switch m := m.(type) {
	case *hcmv3.HttpConnectionManager:
		if name := m.GetRds().GetRouteConfigName(); name != "" {
			refs.routes[name] = true
		}
		refs.routeConfig(m.GetRouteConfig())
	case *tcpproxyv3.TcpProxy:
		if c := m.GetCluster(); c != "" {
			refs.clusters[c] = true
		}
		for _, wc := range m.GetWeightedClusters().GetClusters() {
			refs.clusters[wc.GetName()] = true
		}
	}
	return nil
}

func (refs references) routeConfig(rc *routev3.RouteConfiguration) {
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if c := a.GetCluster(); c != "" {
				refs.clusters[c] = true
			}
			for _, wc := range a.GetWeightedClusters().GetClusters() {
				refs.clusters[wc.GetName()] = true
			}
		}
	}
}

func sortedTypes(res xds.Resources) []string {
	ts := make([]string, 0, len(res))
	for t := range res {
		ts = append(ts, t)
	}
	slices.Sort(ts)
	return ts
}

func typeKeyOf(t string) string {
	if k, ok := typeKeys[t]; ok {
		return k
	}
	return t
}
