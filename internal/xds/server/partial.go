package server

import (
	"sync"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

// partialTypes are the types whose state-of-the-world responses carry only
// the resources that changed. For EDS and RDS, resources are requested by
// name and a client keeps a requested resource that a response does not
// carry (Envoy's grpc_mux; grpc-go: AllResourcesRequiredInSotW false), so a
// response needs only what the stream does not hold yet. LDS and CDS
// responses are the complete state and stay so.
var partialTypes = map[string]bool{
	resourcev3.EndpointType: true,
	resourcev3.RouteType:    true,
}

// partialWatcher is the cache as the SotW server sees it: it passes watches
// through to the snapshot cache and, for the partial types on a stream that
// names its resources, drops from each response the resources whose
// per-resource version (the snapshot's VersionMap: the content digests) the
// stream was already sent.
//
// What a stream was sent is go-control-plane's own per-stream state: the
// server records a response's GetReturnedResources in the stream's
// subscription when it sends the response, forgets the names the client no
// longer requests, and hands the subscription back on the next watch. For the
// partial types this watcher records there name → resource version (instead
// of the cache's name → type version; the cache only checks which names are
// present). So a name newly requested is sent even if unchanged, and a new
// stream, whose subscription is empty, gets everything. The version_info of a
// response is still the type's version. A NACKed response counts as sent, as
// for delta (the NACK rewrite in OnStreamRequest makes the cache wait for a
// new version, and a resource is sent again once it changes).
//
// Wildcard subscriptions of these types (no names) get full responses, with
// versions recorded all the same.
type partialWatcher struct {
	cache cache.SnapshotCache
}

func (w partialWatcher) CreateWatch(req *cache.Request, sub cache.Subscription, value chan cache.Response) (func(), error) {
	if !partialTypes[req.GetTypeUrl()] {
		return w.cache.CreateWatch(req, sub, value)
	}
	// The cache may answer at once (within CreateWatch) or from
	// SetSnapshot; either way it sends into mid, and the goroutine filters
	// the response into value. Each watch is answered at most once.
	mid := make(chan cache.Response, 1)
	pw := &partialWatch{stop: make(chan struct{})}
	innerCancel, err := w.cache.CreateWatch(req, sub, mid)
	if err != nil {
		return nil, err
	}
	go func() {
		select {
		case resp := <-mid:
			pw.mu.Lock()
			if pw.cancelled {
				// The server no longer reads value and may be
				// changing sub: the response is abandoned, as the
				// server abandons one of a closed watch.
				pw.mu.Unlock()
				return
			}
			out := w.filter(resp, sub)
			pw.mu.Unlock()
			select {
			case value <- out:
			case <-pw.stop:
			}
		case <-pw.stop:
		}
	}()
	return func() {
		if innerCancel != nil {
			innerCancel()
		}
		pw.cancel()
	}, nil
}

func (w partialWatcher) CreateDeltaWatch(req *cache.DeltaRequest, sub cache.Subscription, value chan cache.DeltaResponse) (func(), error) {
	return w.cache.CreateDeltaWatch(req, sub, value)
}

// partialWatch is the state of one watch of a partial type. cancel returns
// once the filtering goroutine no longer reads the subscription, which the
// server modifies after cancelling the watch.
type partialWatch struct {
	mu        sync.Mutex
	cancelled bool
	stop      chan struct{}
}

func (pw *partialWatch) cancel() {
	pw.mu.Lock()
	defer pw.mu.Unlock()
	if !pw.cancelled {
		pw.cancelled = true
		close(pw.stop)
	}
}

// filter returns resp with the resources the stream already holds at their
// current version left out, and the returned resources as name → resource
// version. It returns resp itself when it cannot tell the versions of its
// resources (the node's snapshot has moved on since the response was made:
// rare, and a full response is always correct).
func (w partialWatcher) filter(resp cache.Response, sub cache.Subscription) cache.Response {
	raw, ok := resp.(*cache.RawResponse)
	if !ok || raw.Heartbeat {
		return resp
	}
	req := raw.GetRequest()
	typeURL := req.GetTypeUrl()
	snap, err := w.cache.GetSnapshot(cache.IDHash{}.ID(req.GetNode()))
	if err != nil || snap.GetVersion(typeURL) != raw.Version {
		return resp
	}
	versions := snap.GetVersionMap(typeURL)
	all := raw.GetRawResources()
	known := sub.ReturnedResources()
	partial := !sub.IsWildcard()
	returned := make(map[string]string, len(all))
	send := make([]types.ResourceWithTTL, 0, len(all))
	for _, r := range all {
		if r.TTL != nil {
			return resp // not used by meshd; keep go-control-plane's handling
		}
		name := cache.GetResourceName(r.Resource)
		v, ok := versions[name]
		if !ok || v == "" {
			return resp
		}
		returned[name] = v
		if partial {
			if sent, ok := known[name]; ok && sent == v {
				continue
			}
		}
		send = append(send, r)
	}
	if len(send) == len(all) {
		return &fullResponse{RawResponse: raw, returned: returned}
	}
	out := &discoveryv3.DiscoveryResponse{
		VersionInfo: raw.Version,
		TypeUrl:     typeURL,
		Resources:   make([]*anypb.Any, 0, len(send)),
	}
	for _, r := range send {
		b, err := cache.MarshalResource(r.Resource)
		if err != nil {
			return resp // reported when the full response is marshalled
		}
		out.Resources = append(out.Resources, &anypb.Any{TypeUrl: typeURL, Value: b})
	}
	return &partialResponse{RawResponse: raw, out: out, returned: returned}
}

// fullResponse is a response of a partial type carrying every requested
// resource, with the returned resources as name → resource version.
type fullResponse struct {
	*cache.RawResponse
	returned map[string]string
}

func (r *fullResponse) GetReturnedResources() map[string]string { return r.returned }

// partialResponse is a response of a partial type carrying only the
// resources the stream does not hold at their current version.
type partialResponse struct {
	*cache.RawResponse // request, version, context
	out                *discoveryv3.DiscoveryResponse
	returned           map[string]string
}

func (r *partialResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return r.out, nil
}

func (r *partialResponse) GetReturnedResources() map[string]string { return r.returned }

var (
	_ cache.ConfigWatcher = partialWatcher{}
	_ cache.Response      = (*fullResponse)(nil)
	_ cache.Response      = (*partialResponse)(nil)
)
