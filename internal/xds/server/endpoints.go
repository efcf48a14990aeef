package server

import (
	"errors"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
)

// An endpoint change is the most frequent change in a mesh (every pod that
// starts, stops or fails a probe) and touches one Service's
// ClusterLoadAssignments. Regenerating every proxy for it costs the full
// build per proxy; instead, when the new world differs from the last pushed
// one only in the endpoints of Services that have a cluster IP, a round
// replaces those ClusterLoadAssignments in each proxy's current EDS result:
// once per distinct result (all sidecars share one), then per proxy a map
// copy and a wake-up. Proxies whose own inbound configuration may depend on
// the change (their IP is an old or new endpoint address of a changed
// Service), or whose configuration was not built from the last pushed world,
// get the full build. TestEndpointPushEqualsFullBuild holds the two paths to
// the same output.

// endpointPlan is one round's endpoint-only change.
type endpointPlan struct {
	prev, next *model.World
	// loadAssignments by name: the changed Services' new resources.
	loadAssignments map[string]types.Resource
	// addresses of the changed Services' endpoints, before and after.
	addresses map[netip.Addr]bool
	rawAddrs  map[string]bool // those that do not parse

	mu      sync.Mutex
	patched map[uint64]*patchedResult // by the old EDS result's id
}

type patchedResult struct {
	once sync.Once
	tr   *typeResult
	err  error
}

// planEndpointPush returns the plan when next differs from prev only in the
// endpoints of Services with a cluster IP, else nil.
func (s *Server) planEndpointPush(prev, next *model.World) *endpointPlan {
	if s.endpoints == nil || !endpointOnlyChange(prev, next) {
		return nil
	}
	plan := &endpointPlan{
		prev: prev, next: next,
		loadAssignments: map[string]types.Resource{},
		addresses:       map[netip.Addr]bool{},
		rawAddrs:        map[string]bool{},
		patched:         map[uint64]*patchedResult{},
	}
	for i, b := range next.Services {
		a := prev.Services[i]
		if a == b {
			continue
		}
		resources, ok := s.endpoints(next, a, b)
		if !ok {
			return nil
		}
		for _, r := range resources {
			name := cache.GetResourceName(r)
			if name == "" {
				return nil
			}
			plan.loadAssignments[name] = r
		}
		for _, ep := range slices.Concat(a.Endpoints, b.Endpoints) {
			plan.addAddress(ep.Address)
		}
	}
	if len(plan.loadAssignments) == 0 {
		return nil
	}
	return plan
}

// endpointOnlyChange reports whether next differs from prev only in the
// endpoints of Services with a cluster IP (same mesh config, Istio config,
// workloads and Services otherwise).
func endpointOnlyChange(prev, next *model.World) bool {
	if prev == nil || next == nil || prev == next || prev.Mesh != next.Mesh ||
		!model.SameConfig(prev, next) || !slices.Equal(prev.Workloads, next.Workloads) ||
		len(prev.Services) != len(next.Services) {
		return false
	}
	changed := false
	for i, b := range next.Services {
		a := prev.Services[i]
		if a == b {
			continue
		}
		if !sameButEndpoints(a, b) || b.ClusterIP == "" {
			return false
		}
		changed = true
	}
	return changed
}

// sameButEndpoints reports whether two Services differ at most in their
// endpoints.
func sameButEndpoints(a, b *model.Service) bool {
	return a.Name == b.Name && a.Namespace == b.Namespace && a.Hostname == b.Hostname &&
		a.ClusterIP == b.ClusterIP && slices.Equal(a.Ports, b.Ports) && maps.Equal(a.Labels, b.Labels) &&
		a.Resolution == b.Resolution && a.ServiceEntry == b.ServiceEntry && a.External == b.External
}

func (p *endpointPlan) addAddress(ip string) {
	if a, err := netip.ParseAddr(ip); err == nil {
		p.addresses[a.Unmap()] = true
	} else {
		p.rawAddrs[ip] = true
	}
}

func (p *endpointPlan) hasAddress(ip string) bool {
	if ip == "" {
		return false
	}
	if a, err := netip.ParseAddr(ip); err == nil {
		return p.addresses[a.Unmap()]
	}
	return p.rawAddrs[ip]
}

// affects reports whether a proxy's configuration beyond EDS may change:
// its inbound side is built from the endpoints at its own address.
func (p *endpointPlan) affects(last *setState, ident *model.Proxy) bool {
	if p.hasAddress(ident.IP) {
		return true
	}
	if last.proxy != nil {
		if p.hasAddress(last.proxy.IP) {
			return true
		}
		if wl := last.proxy.Workload; wl != nil && p.hasAddress(wl.IP) {
			return true
		}
	}
	return false
}

// patch returns old with the plan's resources in place of those of the same
// names, built once per old result.
func (p *endpointPlan) patch(old *typeResult, m *memo) (*typeResult, error) {
	p.mu.Lock()
	pr := p.patched[old.id]
	if pr == nil {
		pr = &patchedResult{}
		p.patched[old.id] = pr
	}
	p.mu.Unlock()
	pr.once.Do(func() {
		if len(old.drops) > 0 {
			pr.err = errors.New("the result dropped invalid resources")
			return
		}
		list := slices.Clone(old.list)
		for name, r := range p.loadAssignments {
			i, ok := old.index[name]
			if !ok {
				continue // this proxy does not get that Service
			}
			c := m.check(r)
			if c.err != nil {
				pr.err = c.err
				return
			}
			list[i] = entry{name: name, res: r, any: c.any, digest: c.digest, refs: c.refs}
		}
		pr.tr = finishType(old.typeURL, list, nil)
	})
	return pr.tr, pr.err
}

// pushEndpoints applies the plan to one proxy. It reports false when the
// proxy needs the full build instead.
func (s *Server) pushEndpoints(p *proxyState, plan *endpointPlan, m *memo, changeTime time.Time) bool {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()
	s.mu.RLock()
	current := s.proxies[p.id] == p
	s.mu.RUnlock()
	if !current {
		return true // disconnected
	}
	last := p.last.Load()
	if last == nil || last.world != plan.prev && last.world != plan.next || plan.affects(last, &p.ident) {
		return false
	}
	start := time.Now()
	old := last.types[resourcev3.EndpointType]
	if old == nil {
		return false
	}
	tr, err := plan.patch(old, m)
	if err != nil {
		return false
	}
	next := &setState{
		types:     maps.Clone(last.types),
		versions:  maps.Clone(last.versions),
		resources: maps.Clone(last.resources),
		proxy:     last.proxy,
		world:     plan.next,
		at:        time.Now(),
	}
	next.types[resourcev3.EndpointType] = tr
	next.versions[resourcev3.EndpointType] = tr.version
	next.resources[resourcev3.EndpointType] = tr.items
	if tr.version == old.version {
		next.at = last.at
		p.last.Store(next) // nothing to send; the world moves on
		return true
	}
	p.last.Store(next)
	p.setVersions(map[resourcev3.Type]string{resourcev3.EndpointType: tr.version}, changeTime)
	p.wakeStreams()
	s.metrics.pushDuration.Observe(time.Since(start).Seconds())
	return true
}
