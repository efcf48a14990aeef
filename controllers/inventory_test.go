package controllers

import (
	"testing"

	"github.com/meshplane/meshplane/internal/render"
)

// Pruning and uninstall look only at the kinds the operator manages, so every
// kind the charts can render must be one of them; a kind added to the charts
// alone would otherwise be installed and never removed.
func TestEveryRenderedKindIsManaged(t *testing.T) {
	managed := map[string]bool{}
	for _, k := range managedKinds {
		managed[k.gvk.GroupKind().String()] = true
	}
	for _, gk := range render.RenderedKinds() {
		if !managed[gk.String()] {
			t.Errorf("the charts may render %s, which the operator does not prune or uninstall", gk)
		}
	}
	if len(render.RenderedKinds()) != len(managedKinds) {
		t.Errorf("the charts render %d kinds, the operator manages %d", len(render.RenderedKinds()), len(managedKinds))
	}
}
