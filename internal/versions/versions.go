// Package versions is the catalogue of control-plane versions this operator can
// install, and the container images each one runs.
//
// api/v1alpha1.SupportedVersions is the list users see (it backs the CRD enum on
// spec.version); this package is where each of those versions gets its images.
// A test keeps the two in step.
package versions

import (
	"fmt"
	"sort"
	"strings"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// Release is one installable control-plane version and the images it runs.
type Release struct {
	// Version as written in spec.version, e.g. "v0.1.0".
	Version string
	// MeshdImage is the control-plane (meshd) image.
	MeshdImage string
	// ProxyImage is the Envoy image of gateways and sidecars.
	ProxyImage string
}

// catalogue holds every release this operator ships, keyed by version.
// Images are pinned to exact tags so a version always means the same bits.
var catalogue = map[string]Release{
	v1alpha1.Version010: {
		Version:    v1alpha1.Version010,
		MeshdImage: "ghcr.io/meshplane/meshd:v0.1.0",
		ProxyImage: "docker.io/envoyproxy/envoy:v1.36.2",
	},
}

// Lookup returns the release of a version, or an error naming the supported
// versions when this operator does not ship it.
func Lookup(version string) (Release, error) {
	r, ok := catalogue[version]
	if !ok {
		return Release{}, fmt.Errorf("unsupported control-plane version %q: supported versions are %s",
			version, strings.Join(v1alpha1.SupportedVersions, ", "))
	}
	return r, nil
}

// Versions returns the versions in the catalogue, sorted.
func Versions() []string {
	vs := make([]string, 0, len(catalogue))
	for v := range catalogue {
		vs = append(vs, v)
	}
	sort.Strings(vs)
	return vs
}
