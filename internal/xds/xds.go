// Package xds holds what meshd's xDS generators and server share: the shape of
// one proxy's configuration. Generators (internal/xds/generate) produce it from
// the mesh model; the server (internal/xds/server) validates, hashes and serves it.
package xds

import (
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshplane/meshplane/internal/model"
)

// Resources is one proxy's configuration: for each xDS type URL
// (resourcev3.ListenerType, RouteType, ClusterType, EndpointType, ...), its
// resources sorted by name.
type Resources map[resourcev3.Type][]types.Resource

// Generator builds the configuration of one proxy from the world. It must be
// deterministic (same inputs, same output, same order) and must not call the
// API server. Returned resources are never modified afterwards (the server
// marshals them later), and a resource shared by several proxies should be the
// same pointer: the server validates and hashes each pointer once per world.
type Generator func(world *model.World, proxy *model.Proxy) (Resources, error)

// Types lists the xDS types meshd serves, in the order a client should apply
// them (clusters before the listeners that reference them).
var Types = []resourcev3.Type{
	resourcev3.ClusterType,
	resourcev3.EndpointType,
	resourcev3.ListenerType,
	resourcev3.RouteType,
}
