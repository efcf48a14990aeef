package v1alpha1

// The control-plane versions this operator can install. Each one has its charts
// embedded in the operator binary (see internal/versions for the images it maps to).
//
// The CRD exposes the same list as an enum on spec.version; a test fails when the
// marker below and SupportedVersions disagree, because controller-gen only reads
// literal markers.
const (
	// Version010 is the control plane this repository builds.
	Version010 = "v0.1.0"

	// DefaultVersion is installed when spec.version is omitted.
	DefaultVersion = Version010
)

// SupportedVersions lists, oldest first, every version spec.version accepts.
var SupportedVersions = []string{Version010}
