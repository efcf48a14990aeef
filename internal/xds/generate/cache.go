package generate

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
	"github.com/meshplane/meshplane/internal/xds"
)

// Cache is a Generate that builds every resource that does not depend on the
// proxy once, and hands the same message (the same pointer) to every proxy
// that gets it:
//
//   - per *model.Service pointer, across worlds (discovery keeps the pointer
//     of an unchanged Service): its Envoy and gRPC clusters, its
//     ClusterLoadAssignments (shared by Envoys and gRPC clients), and its
//     gRPC client listeners and route configurations (those for the
//     qualified names, and those for the short name, which only clients in
//     the Service's namespace get). None of them read the mesh config.
//     Entries of Services that are in none of the retained worlds are
//     dropped when a new world is first seen, so memory is bounded by the
//     mesh, not by its history;
//   - per world: the sorted lists of outbound clusters and endpoints, the
//     sidecar outbound listeners (per IP family) and route configurations
//     (per client namespace: short names), the gRPC client listeners and
//     routes (per client namespace), and the virtual inbound listeners (per
//     IP family and set of workload ports). Only the last few worlds are
//     retained (a build of the previous world may still be running when the
//     next one arrives).
//
// Only the per-proxy remainder (inbound clusters, gRPC server listeners,
// gateway listeners) is built per call, and the per-proxy lists are fresh
// slices of shared messages. The output equals Generate's, resource for
// resource (proto.Equal) and in the same order. As with Generate, returned
// resources must never be modified. A Cache is safe for concurrent use.
type Cache struct {
	mu       sync.Mutex
	services map[*model.Service]*serviceEntry
	worlds   []*worldEntry // most recent last; at most retainedWorlds

	passthrough, blackHole types.Resource
	inboundPassthrough     [2]types.Resource // IPv4, IPv6
	inboundClusters        sync.Map          // inboundKey → types.Resource
}

var _ xds.Generator = (*Cache)(nil).Generate

// retainedWorlds is how many worlds keep their per-world state.
const retainedWorlds = 2

// NewCache returns an empty Cache.
func NewCache() *Cache {
	return &Cache{
		services:           map[*model.Service]*serviceEntry{},
		passthrough:        passthroughCluster(),
		blackHole:          blackHoleCluster(),
		inboundPassthrough: [2]types.Resource{inboundPassthroughCluster(false), inboundPassthroughCluster(true)},
	}
}

// lazy is a value built once, on first use.
type lazy[T any] struct {
	once sync.Once
	v    T
	err  error
}

func (l *lazy[T]) get(build func() (T, error)) (T, error) {
	l.once.Do(func() { l.v, l.err = build() })
	return l.v, l.err
}

// serviceEntry holds the resources of one Service (pointer), one per port in
// svc.Ports order.
type serviceEntry struct {
	svc   *model.Service
	envoy lazy[[]types.Resource] // outboundCluster per port
	eds   lazy[[]types.Resource] // loadAssignment per port
	grpc  lazy[*grpcServiceResources]
	// ruled holds the clusters and subset endpoints under a
	// DestinationRule, per rule (pointer), client kind and mesh mTLS facts.
	ruled sync.Map // ruleKey → *lazy[ruledResources]
	// secured holds the clusters with automatic mTLS and no rule, per
	// client kind and mesh mTLS facts.
	secured sync.Map // securedKey → *lazy[[]types.Resource]
}

type ruleKey struct {
	rule *model.DestinationRule
	grpc bool
	tls  string // serviceTLS.key()
}

type securedKey struct {
	grpc bool
	tls  string
}

// ruledResources are a Service's clusters under a rule (ruleClusters, per
// port) and its subsets' endpoints.
type ruledResources struct {
	clusters, endpoints []types.Resource
}

func (e *serviceEntry) underRule(dr *model.DestinationRule, grpc bool, st serviceTLS) ruledResources {
	k := ruleKey{dr, grpc, st.key()}
	l, ok := e.ruled.Load(k)
	if !ok {
		l, _ = e.ruled.LoadOrStore(k, &lazy[ruledResources]{})
	}
	v, _ := l.(*lazy[ruledResources]).get(func() (ruledResources, error) {
		var r ruledResources
		base := outboundCluster
		if grpc {
			base = grpcCluster
		}
		for _, port := range e.svc.Ports {
			r.clusters = append(r.clusters, ruleClusters(e.svc, port, dr, grpc, base, st)...)
			r.endpoints = append(r.endpoints, ruleLoadAssignments(e.svc, port, dr)...)
		}
		return r, nil
	})
	return v
}

// grpcServiceResources are a Service's resources for proxyless gRPC clients.
type grpcServiceResources struct {
	clusters []types.Resource
	// listeners and routes for the names every client may dial, and for
	// <name>:<port>, which only clients in the Service's namespace may.
	listeners, routes           []types.Resource
	localListeners, localRoutes []types.Resource
}

func (e *serviceEntry) envoyClusters() []types.Resource {
	v, _ := e.envoy.get(func() ([]types.Resource, error) {
		out := make([]types.Resource, len(e.svc.Ports))
		for i, port := range e.svc.Ports {
			out[i] = outboundCluster(e.svc, port)
		}
		return out, nil
	})
	return v
}

// securedClusters are the Service's clusters without a rule, with
// automatic mTLS as st says (st.auto(grpc) holds).
func (e *serviceEntry) securedClusters(grpc bool, st serviceTLS) ([]types.Resource, error) {
	k := securedKey{grpc, st.key()}
	l, ok := e.secured.Load(k)
	if !ok {
		l, _ = e.secured.LoadOrStore(k, &lazy[[]types.Resource]{})
	}
	return l.(*lazy[[]types.Resource]).get(func() ([]types.Resource, error) {
		base := e.envoyClusters()
		if grpc {
			g, err := e.grpcResources()
			if err != nil {
				return nil, err
			}
			base = g.clusters
		}
		out := make([]types.Resource, len(base))
		for i, c := range base {
			out[i] = secureCluster(c.(*clusterv3.Cluster), st, nil, grpc)
		}
		return out, nil
	})
}

func (e *serviceEntry) loadAssignments() []types.Resource {
	v, _ := e.eds.get(func() ([]types.Resource, error) {
		out := make([]types.Resource, len(e.svc.Ports))
		for i, port := range e.svc.Ports {
			out[i] = loadAssignment(e.svc, port)
		}
		return out, nil
	})
	return v
}

func (e *serviceEntry) grpcResources() (*grpcServiceResources, error) {
	return e.grpc.get(func() (*grpcServiceResources, error) {
		svc := e.svc
		g := &grpcServiceResources{clusters: make([]types.Resource, len(svc.Ports))}
		hosts := ServiceHosts(svc, svc.Namespace) // the last one is the short name
		for i, port := range svc.Ports {
			c := grpcCluster(svc, port)
			g.clusters[i] = c
			for j, h := range hosts {
				name := hostPort(h, port.Port)
				l, err := grpcClientListener(name)
				if err != nil {
					return nil, err
				}
				r := grpcClientRoute(name, h, c.Name)
				if j == len(hosts)-1 && svc.ServiceEntry == "" {
					g.localListeners = append(g.localListeners, l)
					g.localRoutes = append(g.localRoutes, r)
				} else {
					g.listeners = append(g.listeners, l)
					g.routes = append(g.routes, r)
				}
			}
		}
		return g, nil
	})
}

// worldEntry is the per-world state.
type worldEntry struct {
	world *model.World

	// Envoy (sidecar and gateway) clusters and endpoints, sorted.
	envoy lazy[[2][]types.Resource]
	// gRPC clusters and endpoints, sorted.
	grpc  lazy[[2][]types.Resource]
	ports lazy[[]outboundPort]

	mu sync.Mutex
	// keyed lazily built values: sidecar outbound listeners per wildcard,
	// sidecar routes and gRPC client listeners/routes per namespace, virtual
	// inbound listeners per wildcard and ports.
	keyed map[string]*lazy[any]
}

func (w *worldEntry) get(key string, build func() (any, error)) (any, error) {
	w.mu.Lock()
	l := w.keyed[key]
	if l == nil {
		l = &lazy[any]{}
		w.keyed[key] = l
	}
	w.mu.Unlock()
	return l.get(build)
}

// Generate is Generate, with every proxy-independent resource shared.
func (c *Cache) Generate(world *model.World, proxy *model.Proxy) (xds.Resources, error) {
	if world == nil {
		return nil, errors.New("generate: nil world")
	}
	if proxy == nil {
		return nil, errors.New("generate: nil proxy")
	}
	w := c.worldEntry(world)
	if sc, scoped := proxyScope(world, proxy); scoped {
		w = c.scopedEntry(w, proxyNamespace(proxy), sc)
	}
	var (
		res xds.Resources
		err error
	)
	switch proxy.Type {
	case model.ProxyGRPC:
		res, err = c.grpcResources(w, proxy)
	case model.ProxySidecar:
		res, err = c.sidecarResources(w, proxy)
	case model.ProxyRouter:
		res, err = c.gatewayResources(w, proxy)
	default:
		return nil, fmt.Errorf("generate: proxy %q: unknown proxy type %q", proxy.ID, proxy.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("generate: %s proxy %q: %w", proxy.Type, proxy.ID, err)
	}
	for _, t := range xds.Types {
		if res[t] == nil {
			res[t] = []types.Resource{}
		}
	}
	return res, nil
}

// worldEntry returns world's state, creating it (and dropping the oldest
// world and the Services no retained world has) when world is new.
func (c *Cache) worldEntry(world *model.World) *worldEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.worlds {
		if w.world == world {
			return w
		}
	}
	w := &worldEntry{world: world, keyed: map[string]*lazy[any]{}}
	c.worlds = append(c.worlds, w)
	if len(c.worlds) > retainedWorlds {
		c.worlds[0] = nil
		c.worlds = c.worlds[1:]
	}
	live := make(map[*model.Service]bool, len(world.Services))
	for _, w := range c.worlds {
		for _, svc := range w.world.Services {
			live[svc] = true
		}
	}
	for svc := range c.services {
		if !live[svc] {
			delete(c.services, svc)
		}
	}
	return w
}

// scopedEntry is the state of w's world as a proxy in namespace ns under
// Sidecar sc (may be nil) sees it (model.World.ScopedFor), kept with w (not
// among the retained worlds): it shares the per-Service entries, and its
// own per-world lists live as long as w. Without export restrictions the
// scope depends on the Sidecar only.
func (c *Cache) scopedEntry(w *worldEntry, ns string, sc *model.Sidecar) *worldEntry {
	key := "scoped\x00"
	if sc != nil {
		key += sc.Key()
	}
	if w.world.HasExportRestrictions() {
		key += "\x00" + ns
	}
	v, _ := w.get(key, func() (any, error) {
		return &worldEntry{world: w.world.ScopedFor(ns, sc), keyed: map[string]*lazy[any]{}}, nil
	})
	return v.(*worldEntry)
}

// entries returns the entries of the world's services, in world order.
func (c *Cache) entries(world *model.World) []*serviceEntry {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*serviceEntry, len(world.Services))
	for i, svc := range world.Services {
		e := c.services[svc]
		if e == nil {
			e = &serviceEntry{svc: svc}
			c.services[svc] = e
		}
		out[i] = e
	}
	return out
}

// LoadAssignments returns svc's ClusterLoadAssignments in world, as
// Generate hands them to every proxy that gets them (Envoys and gRPC clients
// alike): one per port, and one per port and subset of every
// DestinationRule that may apply to svc. They depend on the Service and the
// rules alone, never on the proxy: the xDS server relies on it to push an
// endpoint change by replacing these resources instead of regenerating
// every proxy (server.Options.Endpoints). It reports false when two rules
// define the same subset name differently (the resource of that name then
// depends on the client's namespace).
func (c *Cache) LoadAssignments(world *model.World, prev, svc *model.Service) ([]types.Resource, bool) {
	st := serviceTLSFor(world, svc)
	if prev != nil && serviceTLSFor(world, prev).key() != st.key() {
		return nil, false // the Service's clusters change too (mTLS)
	}
	c.mu.Lock()
	e := c.services[svc]
	if e == nil {
		e = &serviceEntry{svc: svc}
		c.services[svc] = e
	}
	c.mu.Unlock()
	out := slices.Clone(e.loadAssignments())
	subsets := map[string]string{} // subset name → rule key
	for _, dr := range world.DestinationRulesFor(svc.Hostname) {
		for _, s := range dr.Spec.GetSubsets() {
			if prev, ok := subsets[s.GetName()]; ok && prev != dr.Key() {
				return nil, false
			}
			subsets[s.GetName()] = dr.Key()
		}
		out = append(out, e.underRule(dr, false, st).endpoints...)
	}
	return out, true
}

// envoyOutbound is outboundClusters(world, ns), shared and sorted: one list
// for every namespace while the world has no DestinationRule.
func (c *Cache) envoyOutbound(w *worldEntry, ns string) (clusters, endpoints []types.Resource) {
	if len(w.world.Config.DestinationRules) == 0 {
		v, _ := w.envoy.get(func() ([2][]types.Resource, error) { return c.buildOutbound(w, "", false) })
		return v[0], v[1]
	}
	v, _ := w.get("envoy-outbound\x00"+ns, func() (any, error) { return c.buildOutbound(w, ns, false) })
	l := v.([2][]types.Resource)
	return l[0], l[1]
}

// buildOutbound lists the clusters and endpoints of every Service for
// clients in ns, Envoy's or gRPC's, sorted.
func (c *Cache) buildOutbound(w *worldEntry, ns string, grpc bool) ([2][]types.Resource, error) {
	var n int
	for _, svc := range w.world.Services {
		n += len(svc.Ports)
	}
	clusters := make([]types.Resource, 0, n)
	endpoints := make([]types.Resource, 0, n)
	for _, e := range c.entries(w.world) {
		if grpc && grpcSkips(e.svc) {
			continue
		}
		var dr *model.DestinationRule
		if ns != "" {
			dr = w.world.DestinationRule(e.svc.Hostname, ns)
		}
		st := serviceTLSFor(w.world, e.svc)
		switch {
		case dr != nil:
			r := e.underRule(dr, grpc, st)
			clusters = append(clusters, r.clusters...)
			endpoints = append(endpoints, r.endpoints...)
		case st.auto(grpc):
			secured, err := e.securedClusters(grpc, st)
			if err != nil {
				return [2][]types.Resource{}, err
			}
			clusters = append(clusters, secured...)
		case grpc:
			g, err := e.grpcResources()
			if err != nil {
				return [2][]types.Resource{}, err
			}
			clusters = append(clusters, g.clusters...)
		default:
			clusters = append(clusters, e.envoyClusters()...)
		}
		if grpc && grpcHasEndpoints(e.svc) || !grpc && hasEndpoints(e.svc) {
			endpoints = append(endpoints, e.loadAssignments()...)
		}
	}
	sortByName(clusters)
	sortByName(endpoints)
	return [2][]types.Resource{clusters, endpoints}, nil
}

// grpcOutbound is every gRPC cluster and endpoints resource for clients in
// ns, shared and sorted (one list for all while there is no rule).
func (c *Cache) grpcOutbound(w *worldEntry, ns string) (clusters, endpoints []types.Resource, err error) {
	if len(w.world.Config.DestinationRules) == 0 {
		v, err := w.grpc.get(func() ([2][]types.Resource, error) { return c.buildOutbound(w, "", true) })
		return v[0], v[1], err
	}
	v, err := w.get("grpc-outbound\x00"+ns, func() (any, error) { return c.buildOutbound(w, ns, true) })
	if err != nil {
		return nil, nil, err
	}
	l := v.([2][]types.Resource)
	return l[0], l[1], nil
}

func (c *Cache) outboundPorts(w *worldEntry) []outboundPort {
	v, _ := w.ports.get(func() ([]outboundPort, error) { return outboundPorts(w.world), nil })
	return v
}

func (c *Cache) sidecarResources(w *worldEntry, proxy *model.Proxy) (xds.Resources, error) {
	world := w.world
	ns := proxyNamespace(proxy)
	ip := proxyIP(proxy)
	wildcard := wildcardFor(ip)
	allowAny := world.Mesh.OutboundAllowAny

	outClusters, endpoints := c.envoyOutbound(w, ns)
	fallback := BlackHoleCluster
	fallbackCluster := c.blackHole
	if allowAny {
		fallback, fallbackCluster = PassthroughCluster, c.passthrough
	}

	// Outbound listeners (virtualOutbound and one per port), per IP family.
	var routesByNS tcpRoutes
	listenersKey := "sidecar-listeners\x00" + wildcard
	if world.UsesL4Routes() {
		routesByNS = tcpRoutes{world, ns}
		listenersKey += "\x00" + ns
	}
	v, err := w.get(listenersKey, func() (any, error) {
		ports := c.outboundPorts(w)
		listeners := make([]types.Resource, 0, len(ports)+1)
		l, err := virtualOutboundListener(wildcard, fallback)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		for _, op := range ports {
			l, err := sidecarOutboundListener(op, wildcard, fallback, routesByNS)
			if err != nil {
				return nil, err
			}
			listeners = append(listeners, l)
		}
		sortByName(listeners)
		return listeners, nil
	})
	if err != nil {
		return nil, err
	}
	outListeners := v.([]types.Resource)

	// Route configurations, per client namespace (and labels, when a
	// VirtualService matches on them).
	client := sidecarClient(world, proxy)
	v, _ = w.get("sidecar-routes\x00"+ns+"\x00"+labelsKey(client.labels), func() (any, error) {
		ports := c.outboundPorts(w)
		routes := make([]types.Resource, 0, len(ports))
		for _, op := range ports {
			if len(op.HTTP) > 0 {
				routes = append(routes, sidecarRoute(world, op.Port, op.HTTP, client, allowAny))
			}
		}
		sortByName(routes)
		return routes, nil
	})
	routes := v.([]types.Resource)

	// Inbound: per IP family and set of workload ports.
	inbound, passthroughMode := inboundModes(world, proxy, workloadPorts(world, ip))
	var key strings.Builder
	key.WriteString("virtual-inbound\x00")
	key.WriteString(wildcard)
	sec := inboundSecurityFor(world, proxy)
	fmt.Fprintf(&key, "\x00%d\x00%s", passthroughMode, sec.key())
	for _, wp := range inbound {
		fmt.Fprintf(&key, "\x00%d/%s/%d", wp.Port, wp.Protocol, wp.MTLS)
	}
	v, err = w.get(key.String(), func() (any, error) { return virtualInboundListener(wildcard, inbound, passthroughMode, sec) })
	if err != nil {
		return nil, err
	}
	listeners := mergeSorted(outListeners, []types.Resource{v.(types.Resource)})

	extra := make([]types.Resource, 0, len(inbound)+3)
	extra = append(extra, fallbackCluster)
	if fallback != BlackHoleCluster && refusesPlaintext(inbound, passthroughMode) {
		extra = append(extra, c.blackHole)
	}
	for _, wp := range inbound {
		extra = append(extra, c.inboundCluster(wp))
	}
	ipv6 := 0
	if isIPv6(ip) {
		ipv6 = 1
	}
	extra = append(extra, c.inboundPassthrough[ipv6])
	clusters := mergeSorted(outClusters, extra)

	res := xds.Resources{
		resourcev3.ClusterType:  clusters,
		resourcev3.EndpointType: slices.Clone(endpoints),
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    slices.Clone(routes),
	}
	if len(world.Config.DestinationRules) > 0 {
		v, _ := w.get("rule-secrets\x00"+ns, func() (any, error) { return ruleSecrets(world, ns), nil })
		if secrets := v.([]types.Resource); len(secrets) > 0 {
			res[resourcev3.SecretType] = slices.Clone(secrets)
		}
	}
	return res, nil
}

type inboundKey struct {
	port     int32
	protocol model.Protocol
}

// meshSources is meshSourceIPs of w's world, once per world.
func (c *Cache) meshSources(w *worldEntry) []string {
	v, _ := w.get("mesh-sources", func() (any, error) { return meshSourceIPs(w.world), nil })
	return v.([]string)
}

// inboundCluster is inboundCluster(wp), one message per port and protocol.
func (c *Cache) inboundCluster(wp workloadPort) types.Resource {
	k := inboundKey{wp.Port, wp.Protocol}
	if v, ok := c.inboundClusters.Load(k); ok {
		return v.(types.Resource)
	}
	v, _ := c.inboundClusters.LoadOrStore(k, types.Resource(inboundCluster(wp.Port, wp.Protocol)))
	return v.(types.Resource)
}

func (c *Cache) gatewayResources(w *worldEntry, proxy *model.Proxy) (xds.Resources, error) {
	ip := proxyIP(proxy)
	wildcard := wildcardFor(ip)
	clusters, endpoints := c.envoyOutbound(w, proxyNamespace(proxy))
	if l, r, secrets, ok, err := istioGatewayResources(w.world, proxy, wildcard); err != nil {
		return nil, err
	} else if ok {
		return xds.Resources{
			resourcev3.ClusterType:  slices.Clone(clusters),
			resourcev3.EndpointType: slices.Clone(endpoints),
			resourcev3.ListenerType: l,
			resourcev3.RouteType:    r,
			resourcev3.SecretType:   mergeSecrets(secrets, ruleSecrets(w.world, proxyNamespace(proxy))),
		}, nil
	}

	ports := workloadPorts(w.world, ip)
	listeners := make([]types.Resource, 0, len(ports))
	routes := make([]types.Resource, 0, len(ports))
	for _, wp := range ports {
		if isReserved(wp.Port) || !wp.Protocol.IsHTTP() {
			continue
		}
		l, err := gatewayListener(wildcard, wp.Port)
		if err != nil {
			return nil, err
		}
		listeners = append(listeners, l)
		routes = append(routes, gatewayRoute(wp.Port))
	}
	sortByName(listeners)
	sortByName(routes)
	return xds.Resources{
		resourcev3.ClusterType:  slices.Clone(clusters),
		resourcev3.EndpointType: slices.Clone(endpoints),
		resourcev3.ListenerType: listeners,
		resourcev3.RouteType:    routes,
	}, nil
}

func (c *Cache) grpcResources(w *worldEntry, proxy *model.Proxy) (xds.Resources, error) {
	ns := proxyNamespace(proxy)
	clusters, endpoints, err := c.grpcOutbound(w, ns)
	if err != nil {
		return nil, err
	}
	client := routeClient{namespace: ns, grpc: true}
	if w.world.UsesSourceLabels() && proxy.Workload != nil {
		client.labels = proxy.Workload.Labels
	}
	v, err := w.get("grpc-client\x00"+ns+"\x00"+labelsKey(client.labels), func() (any, error) {
		var listeners, routes []types.Resource
		for _, e := range c.entries(w.world) {
			if grpcSkips(e.svc) {
				continue
			}
			g, err := e.grpcResources()
			if err != nil {
				return nil, err
			}
			listeners = append(listeners, g.listeners...)
			if e.svc.Namespace == ns {
				listeners = append(listeners, g.localListeners...)
			}
			if custom := grpcServiceRoutes(w.world, e.svc, ns, client); custom != nil {
				routes = append(routes, custom...)
				continue
			}
			routes = append(routes, g.routes...)
			if e.svc.Namespace == ns {
				routes = append(routes, g.localRoutes...)
			}
		}
		sortByName(listeners)
		sortByName(routes)
		return [2][]types.Resource{listeners, routes}, nil
	})
	if err != nil {
		return nil, err
	}
	clientSide := v.([2][]types.Resource)

	ip := proxyIP(proxy)
	serverPorts, _ := inboundModes(w.world, proxy, workloadPorts(w.world, ip))
	sec := inboundSecurityFor(w.world, proxy)
	var server []types.Resource
	for _, wp := range serverPorts {
		for _, host := range grpcServerHosts(ip) {
			l, err := w.get(fmt.Sprintf("grpc-server\x00%s\x00%d\x00%s", hostPort(host, wp.Port), wp.MTLS, sec.key()), func() (any, error) {
				return grpcServerListener(host, wp.Port, wp.MTLS, c.meshSources(w), sec)
			})
			if err != nil {
				return nil, err
			}
			server = append(server, l.(types.Resource))
		}
	}
	return xds.Resources{
		resourcev3.ClusterType:  slices.Clone(clusters),
		resourcev3.EndpointType: slices.Clone(endpoints),
		resourcev3.ListenerType: mergeSorted(clientSide[0], server),
		resourcev3.RouteType:    slices.Clone(clientSide[1]),
	}, nil
}

// grpcServiceRoutes are svc's gRPC client route configurations for clients
// in ns when a VirtualService or a hashing DestinationRule shapes them; nil
// when the shared default ones apply.
func grpcServiceRoutes(world *model.World, svc *model.Service, ns string, client routeClient) []types.Resource {
	vs := virtualServiceFor(world, svc, ns)
	if vs == nil && world.DestinationRule(svc.Hostname, ns) == nil {
		return nil
	}
	var out []types.Resource
	for _, port := range svc.Ports {
		cluster := OutboundClusterName(port.Port, "", svc.Hostname)
		for _, h := range ServiceHosts(svc, ns) {
			out = append(out, grpcRouteFor(world, vs, svc, port.Port, hostPort(h, port.Port), h, cluster, client))
		}
	}
	return out
}

// labelsKey is a canonical form of a label set.
func labelsKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(labels[k])
		b.WriteByte(0)
	}
	return b.String()
}

// mergeSorted returns a new slice of sorted (sorted by name, not modified)
// and extra (sorted here), sorted by name.
func mergeSorted(sorted, extra []types.Resource) []types.Resource {
	sortByName(extra)
	out := make([]types.Resource, 0, len(sorted)+len(extra))
	i := 0
	for _, r := range extra {
		name := ResourceName(r)
		j, _ := slices.BinarySearchFunc(sorted[i:], name, func(a types.Resource, n string) int {
			return strings.Compare(ResourceName(a), n)
		})
		out = append(out, sorted[i:i+j]...)
		out = append(out, r)
		i += j
	}
	return append(out, sorted[i:]...)
}
