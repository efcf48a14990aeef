package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"sync"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/meshplane/meshplane/internal/xds"
)

// buildProxy generates, checks and (when some type's content changed) sets
// the snapshot of one proxy from the current world. changeTime is the change
// event being pushed, zero for a proxy's first build.
func (s *Server) buildProxy(p *proxyState, changeTime time.Time) {
	p.buildMu.Lock()
	defer p.buildMu.Unlock()

	// The world is read under buildMu, so successive builds of a proxy never
	// go back to an older world.
	s.mu.RLock()
	world, memo, current := s.world, s.memo, s.proxies[p.id] == p
	s.mu.RUnlock()
	if !current {
		return // disconnected
	}
	if world == nil {
		s.log.V(1).Info("no world yet; proxy waits for the first update", "proxy", p.id)
		return
	}

	start := time.Now()
	proxy := resolve(world, &p.ident)
	res, err := s.gen(world, proxy)
	if err != nil {
		s.metrics.buildErrors.WithLabelValues("generate").Inc()
		s.log.Error(err, "generating xDS configuration failed; proxy keeps its last configuration", "proxy", p.id)
		return
	}
	a, err := s.assemble(p.id, res, memo)
	s.metrics.build.Observe(time.Since(start).Seconds())
	if err != nil {
		s.metrics.buildErrors.WithLabelValues("snapshot").Inc()
		s.log.Error(err, "xDS snapshot refused; proxy keeps its last configuration", "proxy", p.id)
		return
	}

	prev := p.last.Load()
	changed := map[resourcev3.Type]string{}
	for t, v := range a.versions {
		if prev == nil || prev.versions[t] != v {
			changed[t] = v
		}
	}
	if prev != nil {
		for t := range prev.versions {
			if _, ok := a.versions[t]; !ok {
				changed[t] = ""
			}
		}
	}
	if len(changed) == 0 {
		return // unchanged hashes are not re-sent
	}

	s.mu.RLock()
	if s.proxies[p.id] != p {
		s.mu.RUnlock()
		return // disconnected while building
	}
	err = s.cache.SetSnapshot(s.ctx, p.id, a.snapshot)
	s.mu.RUnlock()
	if err != nil {
		s.metrics.buildErrors.WithLabelValues("set").Inc()
		s.log.Error(err, "setting xDS snapshot failed", "proxy", p.id)
		return
	}
	p.last.Store(&setState{snapshot: a.snapshot, versions: a.versions, resources: a.resources, proxy: proxy, at: time.Now()})
	p.setVersions(changed, changeTime)
	s.metrics.pushDuration.Observe(time.Since(start).Seconds())
	if s.log.V(1).Enabled() {
		types := slices.Sorted(maps.Keys(changed))
		s.log.V(1).Info("xDS snapshot set", "proxy", p.id, "changed", types, "took", time.Since(start))
	}
}

// assembled is a checked snapshot.
type assembled struct {
	snapshot  *cache.Snapshot
	versions  map[resourcev3.Type]string
	resources xds.Resources
}

type entry struct {
	name   string
	res    types.Resource
	digest string
	refs   map[resourcev3.Type]map[string]bool // EDS/RDS names it refers to
}

// assemble validates the generated resources (dropping, logging and counting
// invalid ones), restores consistency if drops broke it, hashes every type
// and builds the snapshot. Every type in xds.Types is in the snapshot, empty
// if need be, so that wildcard requests are answered.
func (s *Server) assemble(proxyID string, res xds.Resources, m *memo) (*assembled, error) {
	typeSet := map[resourcev3.Type]bool{}
	for _, t := range xds.Types {
		typeSet[t] = true
	}
	for t := range res {
		typeSet[t] = true
	}
	byType := map[resourcev3.Type][]entry{}
	for _, t := range slices.Sorted(maps.Keys(typeSet)) {
		if cache.GetResponseType(t) == types.UnknownType {
			s.invalid(proxyID, t, "", fmt.Errorf("unknown resource type"), len(res[t]))
			continue
		}
		seen := map[string]bool{}
		list := make([]entry, 0, len(res[t]))
		for _, r := range res[t] {
			if r == nil {
				s.invalid(proxyID, t, "", errors.New("nil resource"), 1)
				continue
			}
			name := cache.GetResourceName(r)
			if name == "" {
				s.invalid(proxyID, t, "", errors.New("resource without a name"), 1)
				continue
			}
			if seen[name] {
				s.invalid(proxyID, t, name, errors.New("duplicate name"), 1)
				continue
			}
			c := m.check(r)
			if c.err != nil {
				s.invalid(proxyID, t, name, c.err, 1)
				continue
			}
			seen[name] = true
			list = append(list, entry{name: name, res: r, digest: c.digest, refs: c.refs})
		}
		sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
		byType[t] = list
	}

	if dropped := repair(byType); len(dropped) > 0 {
		s.metrics.buildErrors.WithLabelValues("inconsistent").Inc()
		s.log.Error(errors.New("inconsistent resources"), "dropped resources to keep the snapshot consistent",
			"proxy", proxyID, "dropped", dropped)
	}

	a := &assembled{
		snapshot:  &cache.Snapshot{VersionMap: map[string]map[string]string{}},
		versions:  map[resourcev3.Type]string{},
		resources: xds.Resources{},
	}
	// go-control-plane computes per-resource versions for delta by
	// marshalling every resource again (ConstructVersionMap) unless the map
	// is set; ours are the digests just computed.
	for i := range types.UnknownType {
		u, err := cache.GetResponseTypeURL(i)
		if err != nil {
			return nil, err
		}
		a.snapshot.VersionMap[u] = map[string]string{}
	}
	for t, list := range byType {
		h := sha256.New()
		items := make([]types.Resource, len(list))
		for i, e := range list {
			h.Write([]byte(e.name))
			h.Write([]byte{0})
			h.Write([]byte(e.digest))
			h.Write([]byte{'\n'})
			items[i] = e.res
			a.snapshot.VersionMap[t][e.name] = e.digest
		}
		version := hex.EncodeToString(h.Sum(nil)[:versionBytes])
		a.snapshot.Resources[cache.GetResponseType(t)] = cache.NewResources(version, items)
		a.versions[t] = version
		a.resources[t] = items
	}
	if err := consistent(byType); err != nil {
		return nil, err
	}
	return a, nil
}

// versionBytes of a SHA-256 make a version: 128 bits, 32 hex digits.
const versionBytes = 16

func (s *Server) invalid(proxyID string, t resourcev3.Type, name string, err error, n int) {
	if n == 0 {
		return
	}
	s.metrics.invalid.WithLabelValues(typeLabel(t)).Add(float64(n))
	s.log.Error(err, "invalid xDS resource dropped", "proxy", proxyID, "type", t, "name", name)
}

// memo validates and hashes each resource once in its life, by pointer:
// generators that share resources between proxies and between worlds (as
// they must, to scale; generate.Cache does) pay for it once, not once per
// proxy and per world. A resource must not be modified once a generator
// returned it.
//
// Entries live in two generations: cur holds those checked or reused since
// the last rotate (the end of a push round), prev those of the round before.
// A lookup that finds its entry in prev moves it to cur; rotate drops prev,
// so entries no build of the last round used are evicted, and the memo
// holds at most the resources of the last two rounds.
type memo struct {
	mu        sync.Mutex
	cur, prev map[types.Resource]*checked
	validate  func(types.Resource) error
}

type checked struct {
	once   sync.Once
	digest string
	refs   map[resourcev3.Type]map[string]bool
	err    error
}

// newMemo validates with validate, or with ValidateAll when it is nil.
func newMemo(validate func(types.Resource) error) *memo {
	if validate == nil {
		validate = validateAll
	}
	return &memo{cur: map[types.Resource]*checked{}, prev: map[types.Resource]*checked{}, validate: validate}
}

// check runs ValidateAll on r, computes its content digest (the SHA-256 of
// its deterministic wire bytes) and its references. m may be nil.
func (m *memo) check(r types.Resource) *checked {
	if m == nil {
		c := &checked{}
		c.run(r, validateAll)
		return c
	}
	m.mu.Lock()
	c := m.cur[r]
	if c == nil {
		if c = m.prev[r]; c != nil {
			delete(m.prev, r)
		} else {
			c = &checked{}
		}
		m.cur[r] = c
	}
	m.mu.Unlock()
	c.once.Do(func() { c.run(r, m.validate) })
	return c
}

// rotate ends a push round: the entries no check used since the previous
// rotate are dropped. It returns how many entries were kept and dropped.
func (m *memo) rotate() (kept, dropped int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	dropped = len(m.prev)
	kept = len(m.cur)
	m.prev, m.cur = m.cur, make(map[types.Resource]*checked, len(m.cur))
	return kept, dropped
}

// len is the number of entries held.
func (m *memo) len() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.cur) + len(m.prev)
}

// validateAll is go-control-plane's generated validation of the resource
// itself (not of the configs packed in its Any fields).
func validateAll(r types.Resource) error {
	v, ok := r.(interface{ ValidateAll() error })
	if !ok {
		return fmt.Errorf("%T has no ValidateAll", r)
	}
	return v.ValidateAll()
}

func (c *checked) run(r types.Resource, validate func(types.Resource) error) {
	if err := validate(r); err != nil {
		c.err = err
		return
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		c.err = fmt.Errorf("marshal: %w", err)
		return
	}
	sum := sha256.Sum256(b)
	c.digest = hex.EncodeToString(sum[:versionBytes])
	c.refs = references(r)
}

// references returns the EDS and RDS names a resource refers to:
// go-control-plane's own reference extraction (EDS clusters, HTTP connection
// managers in filter chains), plus the RDS name of an api_listener's
// connection manager, which go-control-plane ignores and grpc-go's client
// listeners use.
func references(r types.Resource) map[resourcev3.Type]map[string]bool {
	refs := cache.GetResourceReferences(map[string]types.ResourceWithTTL{"": {Resource: r}})
	if l, ok := r.(*listenerv3.Listener); ok {
		if name := apiListenerRoute(l); name != "" {
			if refs[resourcev3.RouteType] == nil {
				refs[resourcev3.RouteType] = map[string]bool{}
			}
			refs[resourcev3.RouteType][name] = true
		}
	}
	return refs
}

func apiListenerRoute(l *listenerv3.Listener) string {
	a := l.GetApiListener().GetApiListener()
	if a == nil {
		return ""
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if a.UnmarshalTo(hcm) != nil {
		return ""
	}
	return hcm.GetRds().GetRouteConfigName()
}

// dependents maps a referenced type to the type that refers to it.
var dependents = map[resourcev3.Type]resourcev3.Type{
	resourcev3.EndpointType: resourcev3.ClusterType,
	resourcev3.RouteType:    resourcev3.ListenerType,
}

// repair makes the resources consistent in place, the way Consistent()
// defines it (every EDS/RDS resource referenced, every reference present):
// it drops clusters and listeners that refer to missing resources (they
// would never warm), then EDS and RDS resources nothing refers to. It returns
// the dropped names. A generator's output is consistent, so this only acts
// when invalid resources were dropped, or on a generator bug.
func repair(byType map[resourcev3.Type][]entry) []string {
	var dropped []string
	for ref, dep := range dependents {
		have := map[string]bool{}
		for _, e := range byType[ref] {
			have[e.name] = true
		}
		byType[dep] = slices.DeleteFunc(byType[dep], func(e entry) bool {
			for name := range e.refs[ref] {
				if !have[name] {
					dropped = append(dropped, fmt.Sprintf("%s %s (refers to missing %s)", typeLabel(dep), e.name, name))
					return true
				}
			}
			return false
		})
		used := map[string]bool{}
		for _, e := range byType[dep] {
			maps.Copy(used, e.refs[ref])
		}
		byType[ref] = slices.DeleteFunc(byType[ref], func(e entry) bool {
			if !used[e.name] {
				dropped = append(dropped, fmt.Sprintf("%s %s (not referenced)", typeLabel(ref), e.name))
				return true
			}
			return false
		})
	}
	sort.Strings(dropped)
	return dropped
}

// consistent is Snapshot.Consistent() with api_listener references counted:
// the EDS names are exactly those the clusters refer to, the RDS names
// exactly those the listeners refer to. Snapshot.Consistent() itself rejects
// every proxyless-gRPC snapshot, whose client listeners refer to their route
// configurations from an api_listener. It works on the checked entries, whose
// references were extracted once per resource.
func consistent(byType map[resourcev3.Type][]entry) error {
	for ref, dep := range dependents {
		used := map[string]bool{}
		for _, e := range byType[dep] {
			maps.Copy(used, e.refs[ref])
		}
		if len(used) != len(byType[ref]) {
			return fmt.Errorf("inconsistent snapshot: %d %s referenced, %d present", len(used), typeLabel(ref), len(byType[ref]))
		}
		for _, e := range byType[ref] {
			if !used[e.name] {
				return fmt.Errorf("inconsistent snapshot: %s %q not referenced", typeLabel(ref), e.name)
			}
		}
	}
	return nil
}
