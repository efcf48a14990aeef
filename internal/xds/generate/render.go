package generate

import (
	"encoding/json"
	"fmt"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"sigs.k8s.io/yaml"

	"github.com/meshplane/meshplane/internal/xds"
)

// typeKeys name the sections of RenderYAML's output.
var typeKeys = map[resourcev3.Type]string{
	resourcev3.ClusterType:  "clusters",
	resourcev3.EndpointType: "endpoints",
	resourcev3.ListenerType: "listeners",
	resourcev3.RouteType:    "routes",
}

// RenderYAML renders a proxy's resources as deterministic YAML: one section
// per type ("clusters", "endpoints", "listeners", "routes"; other types by
// type URL), each a list in the order given, each resource in protojson form
// with proto field names and typed configs expanded ("@type"). protojson's own
// whitespace is unstable on purpose; re-encoding through sigs.k8s.io/yaml
// sorts the keys and fixes the layout.
func RenderYAML(res xds.Resources) ([]byte, error) {
	opts := protojson.MarshalOptions{UseProtoNames: true}
	doc := make(map[string][]json.RawMessage, len(res))
	for t, rs := range res {
		key, ok := typeKeys[t]
		if !ok {
			key = t
		}
		list := make([]json.RawMessage, 0, len(rs))
		for _, r := range rs {
			js, err := opts.Marshal(r.(proto.Message))
			if err != nil {
				return nil, fmt.Errorf("render %s %q: %w", key, ResourceName(r), err)
			}
			list = append(list, js)
		}
		doc[key] = list
	}
	js, err := json.Marshal(doc)
	if err != nil {
		return nil, fmt.Errorf("render: %w", err)
	}
	out, err := yaml.JSONToYAML(js)
	if err != nil {
		return nil, fmt.Errorf("render: to YAML: %w", err)
	}
	return out, nil
}
