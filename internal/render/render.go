// Package render turns a MeshControlPlane into the Kubernetes objects that
// install it, by rendering the charts embedded in package charts with the Helm
// library.
//
// Rendering is pure: no Helm releases, no cluster access, and the same input
// always gives the same objects in the same order. Applying them (server-side
// apply), owner references and garbage collection are the controller's job.
package render

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"strings"

	"helm.sh/helm/v3/pkg/chart"
	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/meshplane/meshplane/api/v1alpha1"
	"github.com/meshplane/meshplane/charts"
	"github.com/meshplane/meshplane/internal/versions"
)

// DefaultRevision is the revision served by istio-injection=enabled and
// sidecar.istio.io/inject=true, as in Istio.
const DefaultRevision = "default"

// Renderer renders MeshControlPlanes. It loads the charts once and is safe for
// concurrent use: rendering never modifies the loaded charts.
type Renderer struct {
	controlPlane *chart.Chart
	gateway      *chart.Chart
}

// NewRenderer loads the embedded charts.
func NewRenderer() (*Renderer, error) {
	return newRenderer(charts.FS)
}

func newRenderer(fsys fs.FS) (*Renderer, error) {
	cp, err := loadChart(fsys, charts.ControlPlane)
	if err != nil {
		return nil, err
	}
	gw, err := loadChart(fsys, charts.Gateway)
	if err != nil {
		return nil, err
	}
	return &Renderer{controlPlane: cp, gateway: gw}, nil
}

// loadChart loads the chart in directory dir of fsys.
func loadChart(fsys fs.FS, dir string) (*chart.Chart, error) {
	var files []*loader.BufferedFile
	err := fs.WalkDir(fsys, dir, func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(fsys, name)
		if err != nil {
			return err
		}
		files = append(files, &loader.BufferedFile{Name: strings.TrimPrefix(name, dir+"/"), Data: data})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read chart %s: %w", dir, err)
	}
	c, err := loader.LoadFiles(files)
	if err != nil {
		return nil, fmt.Errorf("load chart %s: %w", dir, err)
	}
	return c, nil
}

// Revision is the control-plane revision a MeshControlPlane installs: what
// workloads select with istio.io/rev, and what the rendered names derive from.
// With InPlace updates, the only strategy implemented, it is the
// MeshControlPlane's name.
func Revision(mcp *v1alpha1.MeshControlPlane) string {
	return mcp.Revision()
}

// MeshdName names meshd's Deployment, Service, ServiceAccount, Role and
// RoleBinding: "meshd" for the default revision, so that the common case reads
// like Istio's istiod, else "meshd-<revision>".
func MeshdName(revision string) string {
	if revision == DefaultRevision {
		return "meshd"
	}
	return "meshd-" + revision
}

// ClusterRoleName names meshd's ClusterRole and ClusterRoleBinding; unique per
// revision because cluster-scoped names are shared by all MeshControlPlanes.
func ClusterRoleName(revision string) string {
	return "meshplane-meshd-" + revision
}

// WebhookConfigurationName names the sidecar injector's MutatingWebhookConfiguration.
func WebhookConfigurationName(revision string) string {
	return "meshplane-sidecar-injector-" + revision
}

// Render returns the objects that install mcp, in apply order (see SortForApply).
// It fills in defaults for fields left empty, so mcp need not have been through
// the API server. It does not modify mcp.
func (r *Renderer) Render(mcp *v1alpha1.MeshControlPlane) ([]*unstructured.Unstructured, error) {
	if mcp == nil {
		return nil, errors.New("render: nil MeshControlPlane")
	}
	if mcp.Name == "" {
		return nil, errors.New("render: MeshControlPlane has no name")
	}
	spec := withDefaults(&mcp.Spec)
	rel, err := versions.Lookup(spec.Version)
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", mcp.Name, err)
	}

	cp := controlPlaneValues(Revision(mcp), spec, rel)
	objs, err := r.renderChart(r.controlPlane, mcp.Name, spec.Namespace, cp, spec.Values, "")
	if err != nil {
		return nil, fmt.Errorf("render %s: %w", mcp.Name, err)
	}
	for i := range spec.Gateways {
		gw := &spec.Gateways[i]
		ns := gw.Namespace
		if ns == "" {
			ns = spec.Namespace
		}
		gwObjs, err := r.renderChart(r.gateway, mcp.Name, ns, gatewayChartValues(cp, gw), spec.Values, gw.Name)
		if err != nil {
			return nil, fmt.Errorf("render %s: gateway %s: %w", mcp.Name, gw.Name, err)
		}
		objs = append(objs, gwObjs...)
	}
	SortForApply(objs)
	if err := checkUnique(objs); err != nil {
		return nil, fmt.Errorf("render %s: %w", mcp.Name, err)
	}
	return objs, nil
}

// renderChart renders one chart into namespace with the computed values and
// spec.values merged over them. gateway names the gateway being rendered, if any.
func (r *Renderer) renderChart(c *chart.Chart, release, namespace string, computed values,
	user *apiextensionsv1.JSON, gateway string) ([]*unstructured.Unstructured, error) {
	vals, err := mergeValues(computed, user, gateway)
	if err != nil {
		return nil, err
	}
	if gateway != "" {
		if err := setGatewayBootstrap(vals); err != nil {
			return nil, err
		}
	}
	// Release.Name carries the MeshControlPlane's name into the ownership label,
	// out of reach of spec.values.
	opts := chartutil.ReleaseOptions{Name: release, Namespace: namespace}
	top, err := chartutil.ToRenderValues(c, vals, opts, nil)
	if err != nil {
		return nil, fmt.Errorf("chart %s: values: %w", c.Name(), err)
	}
	manifests, err := engine.Render(c, top)
	if err != nil {
		return nil, fmt.Errorf("chart %s: %w", c.Name(), err)
	}
	return parseManifests(manifests, namespace)
}

// mergeValues merges spec.values over the computed values: user values win,
// tables merge key by key, lists and scalars are replaced, and a null removes
// a key, as with helm --values. For a gateway, spec.values.gateways.<name> is
// then merged over spec.values.gateway, so one gateway can differ from the rest.
func mergeValues(computed values, user *apiextensionsv1.JSON, gateway string) (map[string]any, error) {
	base, err := toMap(computed)
	if err != nil {
		return nil, err
	}
	overrides, err := userValues(user)
	if err != nil {
		return nil, err
	}
	if gateway != "" {
		mergeGatewayOverrides(overrides, gateway)
	}
	return chartutil.CoalesceTables(overrides, base), nil
}

// mergeGatewayOverrides merges spec.values.gateways.<gateway> over
// spec.values.gateway; the per-gateway values are the more specific, so they win.
func mergeGatewayOverrides(overrides map[string]any, gateway string) {
	all, _ := overrides["gateways"].(map[string]any)
	own, ok := all[gateway].(map[string]any)
	if !ok {
		return
	}
	shared, _ := overrides["gateway"].(map[string]any)
	overrides["gateway"] = chartutil.CoalesceTables(own, shared)
}

// userValues decodes spec.values; each call returns a fresh map, because
// merging modifies the maps it is given.
func userValues(raw *apiextensionsv1.JSON) (map[string]any, error) {
	m := map[string]any{}
	if raw == nil || len(raw.Raw) == 0 {
		return m, nil
	}
	if err := json.Unmarshal(raw.Raw, &m); err != nil {
		return nil, fmt.Errorf("spec.values must be an object: %w", err)
	}
	if m == nil { // "null"
		m = map[string]any{}
	}
	return m, nil
}
