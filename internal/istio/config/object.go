// Package config reads Istio configuration objects and the Kubernetes objects they refer to from
// YAML and JSON files, the way a user keeps them in Git, into typed objects that remember where
// they came from (file and line), so that every problem found later can point at its source.
//
// Istio kinds are accepted in every version Istio serves and always decoded into the v1 client
// types, since the versions of a kind share one spec schema: VirtualService, DestinationRule,
// Gateway, ServiceEntry and Sidecar in networking.istio.io v1, v1beta1 and v1alpha3;
// PeerAuthentication, AuthorizationPolicy and RequestAuthentication in security.istio.io v1 and
// v1beta1. Their specs are checked strictly against the protobuf schema before decoding (unknown
// fields, wrong types, unknown enum values, map keys that are not numbers where numbers are
// keys, two members of a one-of), because Istio's own JSON decoding silently drops unknown
// fields and lets the last member of a one-of win, which hides typos such as `perTryTimeOut`.
package config

import (
	"fmt"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// Kinds this package decodes into typed objects.
const (
	KindVirtualService  = "VirtualService"
	KindDestinationRule = "DestinationRule"
	KindGateway         = "Gateway"
	KindServiceEntry    = "ServiceEntry"
	KindSidecar         = "Sidecar"

	KindPeerAuthentication    = "PeerAuthentication"
	KindAuthorizationPolicy   = "AuthorizationPolicy"
	KindRequestAuthentication = "RequestAuthentication"

	KindService       = "Service"
	KindEndpointSlice = "EndpointSlice"
	KindDeployment    = "Deployment"
	KindPod           = "Pod"
	KindNamespace     = "Namespace"
)

// The API groups of the Istio kinds above.
const (
	IstioNetworkingGroup = "networking.istio.io"
	IstioSecurityGroup   = "security.istio.io"
)

// KubernetesObject is any API object: it has metadata and a kind. (The same as
// controller-runtime's client.Object, without pulling a Kubernetes client into meshctl.)
type KubernetesObject interface {
	metav1.Object
	runtime.Object
}

// Source says where an object or a problem was read from.
type Source struct {
	// File is the path as given on the command line or found walking a directory; empty for
	// objects that did not come from a file.
	File string
	// Line is 1-based; 0 when unknown.
	Line int
}

// String renders "file:line", "file", or "" when nothing is known.
func (s Source) String() string {
	switch {
	case s.File == "":
		return ""
	case s.Line == 0:
		return s.File
	default:
		return fmt.Sprintf("%s:%d", s.File, s.Line)
	}
}

// Object is one decoded object and where it came from.
type Object struct {
	// Source points at the first content line of the object's YAML document (or of its entry
	// in a List).
	Source Source
	// APIVersion and Kind as written in the file. Istio objects written as v1alpha3 or v1beta1
	// are decoded into v1 types, so APIVersion is kept here for messages.
	APIVersion string
	Kind       string
	// Object is the typed object: *networkingv1.VirtualService, ...,
	// *securityv1.PeerAuthentication, ..., *corev1.Service,
	// *discoveryv1.EndpointSlice, *appsv1.Deployment, *corev1.Pod, *corev1.Namespace, or
	// *unstructured.Unstructured for kinds this package does not know.
	Object KubernetesObject

	// fieldLines maps a field path (as segments joined by pathSeparator) to its line in File.
	fieldLines map[string]int
	// pathPrefix is prepended to field paths when looking up lines: "items[3]" for an entry of
	// a List, empty otherwise.
	pathPrefix []string
}

// Namespace of the object; namespaced objects without one get the loader's default namespace.
func (o *Object) Namespace() string { return o.Object.GetNamespace() }

// Name of the object.
func (o *Object) Name() string { return o.Object.GetName() }

// Ref renders "namespace/name", or "name" for cluster-scoped objects.
func (o *Object) Ref() string {
	if o.Namespace() == "" {
		return o.Name()
	}
	return o.Namespace() + "/" + o.Name()
}

// LineOf returns the line of the field at path (for example "spec.http[0].route[1].weight") in
// the object's file, or of the closest enclosing field that is written there (a missing field
// points at its parent), or the object's own line when nothing closer is known.
func (o *Object) LineOf(path string) int {
	segments := append(append([]string(nil), o.pathPrefix...), splitFieldPath(path)...)
	for n := len(segments); n > len(o.pathPrefix); n-- {
		if line, ok := o.fieldLines[strings.Join(segments[:n], pathSeparator)]; ok {
			return line
		}
	}
	return o.Source.Line
}

// SourceOf is Source with the line of the field at path, see LineOf.
func (o *Object) SourceOf(path string) Source {
	if o.Source.File == "" {
		return o.Source
	}
	return Source{File: o.Source.File, Line: o.LineOf(path)}
}

// pathSeparator joins path segments in fieldLines; it cannot occur in YAML keys users write.
const pathSeparator = "\x00"

// splitFieldPath splits a k8s.io/apimachinery field path such as
// "spec.http[0].match[0].headers[end-user].exact" into its segments
// ["spec" "http" "0" "match" "0" "headers" "end-user" "exact"]. Map keys in brackets may contain
// dots (label keys such as app.kubernetes.io/name), so brackets are read as one segment.
func splitFieldPath(path string) []string {
	var segments []string
	for i := 0; i < len(path); {
		switch path[i] {
		case '.':
			i++
		case '[':
			end := strings.IndexByte(path[i:], ']')
			if end < 0 {
				return append(segments, path[i+1:])
			}
			segments = append(segments, path[i+1:i+end])
			i += end + 1
		default:
			end := strings.IndexAny(path[i:], ".[")
			if end < 0 {
				return append(segments, path[i:])
			}
			segments = append(segments, path[i:i+end])
			i += end
		}
	}
	return segments
}
