package server

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/maphash"
	"maps"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/go-logr/logr"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

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
		// Unchanged hashes are not re-sent; the configuration is now that
		// of this world (what an endpoint round checks).
		p.last.Store(&setState{types: a.types, versions: a.versions, resources: a.resources, proxy: proxy, world: world, at: prev.at})
		return
	}

	s.mu.RLock()
	current = s.proxies[p.id] == p
	s.mu.RUnlock()
	if !current {
		return // disconnected while building
	}
	p.last.Store(&setState{types: a.types, versions: a.versions, resources: a.resources, proxy: proxy, world: world, at: time.Now()})
	p.setVersions(changed, changeTime)
	p.wakeStreams()
	s.metrics.pushDuration.Observe(time.Since(start).Seconds())
	if s.log.V(1).Enabled() {
		types := slices.Sorted(maps.Keys(changed))
		s.log.V(1).Info("xDS snapshot set", "proxy", p.id, "changed", types, "took", time.Since(start))
	}
}

// assembled is one proxy's checked configuration: per type, a shared result.
type assembled struct {
	types     map[resourcev3.Type]*typeResult
	versions  map[resourcev3.Type]string
	resources xds.Resources
}

type entry struct {
	name   string
	res    types.Resource
	any    *anypb.Any // res, encoded once: what every response carries
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
	byType := map[resourcev3.Type]*typeResult{}
	for _, t := range slices.Sorted(maps.Keys(typeSet)) {
		if cache.GetResponseType(t) == types.UnknownType {
			s.invalid(proxyID, t, "", fmt.Errorf("unknown resource type"), len(res[t]))
			continue
		}
		tr := m.typed(t, res[t])
		for _, d := range tr.drops {
			s.invalid(proxyID, t, d.name, d.err, d.n)
		}
		byType[t] = tr
	}
	if m != nil && consistentTyped(byType) {
		// The common case: nothing to repair, every type's version, items
		// and version map as computed for the first proxy with this list.
		return assembleTyped(byType)
	}

	lists := map[resourcev3.Type][]entry{}
	for t, tr := range byType {
		lists[t] = slices.Clone(tr.list)
	}
	if dropped := repair(lists); len(dropped) > 0 {
		s.metrics.buildErrors.WithLabelValues("inconsistent").Inc()
		s.log.Error(errors.New("inconsistent resources"), "dropped resources to keep the snapshot consistent",
			"proxy", proxyID, "dropped", dropped)
		if s.onDrop != nil {
			for _, d := range dropped {
				s.onDrop(d)
			}
		}
	}
	for t, list := range lists {
		byType[t] = finishType(t, list, nil)
	}
	a, err := assembleTyped(byType)
	if err != nil {
		return nil, err
	}
	if err := consistent(lists); err != nil {
		return nil, err
	}
	return a, nil
}

// assembleTyped collects the per-type results, which it shares (they are
// never modified once built).
func assembleTyped(byType map[resourcev3.Type]*typeResult) (*assembled, error) {
	a := &assembled{
		types:     byType,
		versions:  make(map[resourcev3.Type]string, len(byType)),
		resources: make(xds.Resources, len(byType)),
	}
	for t, tr := range byType {
		a.versions[t] = tr.version
		a.resources[t] = tr.items
	}
	return a, nil
}

// typeResult is the checked, sorted and hashed form of one type's resource
// list. Results are shared between proxies with the same list (see
// memo.typed) and must not be modified once built.
type typeResult struct {
	id      uint64 // unique, for diffs (see diffFrom)
	typeURL resourcev3.Type
	in      []types.Resource                    // the generator's list it was built from
	drops   []drop                              // invalid resources, replayed per proxy
	list    []entry                             // valid, sorted by name
	index   map[string]int                      // name → position in list
	refs    map[resourcev3.Type]map[string]bool // union of the entries' references
	items   []types.Resource                    // the generator's resources, sorted by name
	anys    []*anypb.Any                        // the encoded resources, sorted by name
	version string

	// deltaResources are the entries as delta xDS carries them, built on
	// first use and shared by every delta stream.
	deltaResources func() []*discoveryv3.Resource
	// diffs memoizes diffFrom by the older result's id.
	diffs diffMemo

	// consistentWith caches whether the last referenced type's result
	// checked against this one is consistent with it.
	consistentWith atomic.Pointer[consistency]
}

type consistency struct {
	ref *typeResult
	ok  bool
}

// drop is an invalid resource left out of a typeResult.
type drop struct {
	name string
	err  error
	n    int
}

// buildType checks one type's resource list: it drops (and records) nil,
// nameless, duplicate and invalid resources, sorts by name and hashes.
func buildType(t resourcev3.Type, in []types.Resource, m *memo) *typeResult {
	var drops []drop
	seen := map[string]bool{}
	list := make([]entry, 0, len(in))
	for _, r := range in {
		if r == nil {
			drops = append(drops, drop{err: errors.New("nil resource"), n: 1})
			continue
		}
		name := cache.GetResourceName(r)
		if name == "" {
			drops = append(drops, drop{err: errors.New("resource without a name"), n: 1})
			continue
		}
		if seen[name] {
			drops = append(drops, drop{name: name, err: errors.New("duplicate name"), n: 1})
			continue
		}
		c := m.check(r)
		if c.err != nil {
			drops = append(drops, drop{name: name, err: c.err, n: 1})
			continue
		}
		seen[name] = true
		list = append(list, entry{name: name, res: r, any: c.any, digest: c.digest, refs: c.refs})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	return finishType(t, list, drops)
}

// finishType hashes a checked, sorted list and indexes it.
func finishType(t resourcev3.Type, list []entry, drops []drop) *typeResult {
	tr := &typeResult{
		id:      resultIDs.Add(1),
		typeURL: t,
		drops:   drops,
		list:    list,
		index:   make(map[string]int, len(list)),
		refs:    map[resourcev3.Type]map[string]bool{},
		items:   make([]types.Resource, len(list)),
		anys:    make([]*anypb.Any, len(list)),
	}
	h := sha256.New()
	for i, e := range list {
		h.Write([]byte(e.name))
		h.Write([]byte{0})
		h.Write([]byte(e.digest))
		h.Write([]byte{'\n'})
		tr.items[i] = e.res
		tr.anys[i] = e.any
		tr.index[e.name] = i
		for rt, names := range e.refs {
			if tr.refs[rt] == nil {
				tr.refs[rt] = map[string]bool{}
			}
			maps.Copy(tr.refs[rt], names)
		}
	}
	tr.version = hex.EncodeToString(h.Sum(nil)[:versionBytes])
	tr.deltaResources = sync.OnceValue(func() []*discoveryv3.Resource { return deltaForm(list) })
	return tr
}

// resultIDs numbers typeResults.
var resultIDs atomic.Uint64

// delta returns the entries as delta xDS resources (name, digest as
// version, encoded resource), built once per result.
func (tr *typeResult) delta() []*discoveryv3.Resource { return tr.deltaResources() }

// deltaForm builds a result's delta resources.
func deltaForm(list []entry) []*discoveryv3.Resource {
	out := make([]*discoveryv3.Resource, len(list))
	for i, e := range list {
		out[i] = &discoveryv3.Resource{Name: e.name, Version: e.digest, Resource: e.any}
	}
	return out
}

// emptyResult is the result of a type nobody generated anything of.
func emptyResult(t resourcev3.Type) *typeResult { return finishType(t, nil, nil) }

// consistentTyped reports whether the per-type results are consistent as
// they are (what consistent() checks): then repair has nothing to drop.
func consistentTyped(byType map[resourcev3.Type]*typeResult) bool {
	for ref, dep := range dependents {
		r, d := byType[ref], byType[dep]
		if r == nil || d == nil {
			return false
		}
		if c := d.consistentWith.Load(); c != nil && c.ref == r {
			if !c.ok {
				return false
			}
			continue
		}
		used := d.refs[ref]
		ok := len(used) == len(r.index)
		if ok {
			for name := range r.index {
				if !used[name] {
					ok = false
					break
				}
			}
		}
		d.consistentWith.Store(&consistency{ref: r, ok: ok})
		if !ok {
			return false
		}
	}
	return true
}

// versionBytes of a SHA-256 make a version: 128 bits, 32 hex digits.
const versionBytes = 16

func (s *Server) invalid(proxyID string, t resourcev3.Type, name string, err error, n int) {
	if n == 0 {
		return
	}
	s.metrics.invalid.WithLabelValues(typeLabel(t)).Add(float64(n))
	s.log.Error(err, "invalid xDS resource dropped", "proxy", proxyID, "type", t, "name", name)
	if s.onDrop != nil {
		s.onDrop(fmt.Sprintf("%s %q: %v", typeLabel(t), name, err))
	}
}

// Check validates, repairs and checks one proxy's generated resources
// exactly as the server does before serving them (validate as
// Options.Validate), and returns what it would serve, sorted by name, and
// what it leaves out, a line each. meshctl render shows meshd's output
// with it.
func Check(res xds.Resources, validate func(types.Resource) error) (xds.Resources, []string, error) {
	m, err := newMetrics(nil)
	if err != nil {
		return nil, nil, err
	}
	var dropped []string
	s := &Server{log: logr.Discard(), metrics: m, validate: validate, onDrop: func(d string) { dropped = append(dropped, d) }}
	a, err := s.assemble("", res, newMemo(validate))
	if err != nil {
		return nil, dropped, err
	}
	return a.resources, dropped, nil
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
//
// It also keeps, in the same two generations, the per-type results of
// assemble (typeResult) by resource list: proxies whose list of a type holds
// the same pointers in the same order share one result.
type memo struct {
	mu        sync.Mutex
	cur, prev map[types.Resource]*checked
	validate  func(types.Resource) error

	typesMu             sync.Mutex
	typesCur, typesPrev map[typeKey][]*typeResult
	seed                maphash.Seed
}

// typeKey is a type and a fingerprint of a resource list: a hash of its
// pointers and its length. Lists with the same key are compared pointer by
// pointer.
type typeKey struct {
	t  resourcev3.Type
	fp uint64
	n  int
}

type checked struct {
	once   sync.Once
	any    *anypb.Any
	digest string
	refs   map[resourcev3.Type]map[string]bool
	err    error
}

// newMemo validates with validate, or with ValidateAll when it is nil.
func newMemo(validate func(types.Resource) error) *memo {
	if validate == nil {
		validate = validateAll
	}
	return &memo{
		cur: map[types.Resource]*checked{}, prev: map[types.Resource]*checked{}, validate: validate,
		typesCur: map[typeKey][]*typeResult{}, typesPrev: map[typeKey][]*typeResult{},
		seed: maphash.MakeSeed(),
	}
}

// typed returns the checked form of a type's resource list, built once per
// distinct list (same pointers, same order) while it is in use. m may be
// nil: then it is built each time.
func (m *memo) typed(t resourcev3.Type, in []types.Resource) *typeResult {
	if m == nil {
		return buildType(t, in, nil)
	}
	var h maphash.Hash
	h.SetSeed(m.seed)
	for _, r := range in {
		maphash.WriteComparable(&h, r)
	}
	k := typeKey{t: t, fp: h.Sum64(), n: len(in)}
	find := func(l []*typeResult) (*typeResult, int) {
		for i, tr := range l {
			if slices.Equal(tr.in, in) {
				return tr, i
			}
		}
		return nil, -1
	}
	m.typesMu.Lock()
	tr, _ := find(m.typesCur[k])
	var fromPrev bool
	if tr == nil {
		var i int
		if tr, i = find(m.typesPrev[k]); tr != nil {
			l := m.typesPrev[k]
			m.typesPrev[k] = slices.Delete(slices.Clone(l), i, i+1)
			m.typesCur[k] = append(m.typesCur[k], tr)
			fromPrev = true
		}
	}
	m.typesMu.Unlock()
	if tr != nil {
		if fromPrev {
			// Keep its resources' entries for this round too, as the checks
			// of a rebuilt list would.
			m.touch(tr.in)
		}
		return tr
	}
	tr = buildType(t, in, m)
	tr.in = slices.Clone(in)
	m.typesMu.Lock()
	if other, _ := find(m.typesCur[k]); other != nil {
		tr = other // built concurrently by another proxy's build
	} else {
		m.typesCur[k] = append(m.typesCur[k], tr)
	}
	m.typesMu.Unlock()
	return tr
}

// touch moves the entries of rs that are in prev to cur.
func (m *memo) touch(rs []types.Resource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, r := range rs {
		if r == nil {
			continue
		}
		if c := m.prev[r]; c != nil {
			delete(m.prev, r)
			m.cur[r] = c
		}
	}
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
	m.typesMu.Lock()
	m.typesPrev, m.typesCur = m.typesCur, make(map[typeKey][]*typeResult, len(m.typesCur))
	m.typesMu.Unlock()
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
	c.any = &anypb.Any{TypeUrl: resourcev3.APITypePrefix + string(r.ProtoReflect().Descriptor().FullName()), Value: b}
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
