// Package charts holds the Helm charts the operator renders, embedded into the
// operator binary so that a version's manifests ship with the code that installs
// them and nothing is fetched at run time.
//
// The charts are rendered by internal/render with the Helm library; they are
// never installed as Helm releases.
package charts

import "embed"

// Names of the chart directories in FS.
const (
	ControlPlane = "control-plane"
	Gateway      = "gateway"
)

// FS holds one directory per chart. The all: prefix keeps files whose names
// start with '_' (the charts' _helpers.tpl), which go:embed skips otherwise.
//
//go:embed all:control-plane all:gateway
var FS embed.FS
