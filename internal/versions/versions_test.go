package versions

import (
	"slices"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/api/v1alpha1"
)

// Every version the API accepts must have images; otherwise a valid
// MeshControlPlane could never be installed.
func TestEverySupportedVersionResolves(t *testing.T) {
	for _, v := range v1alpha1.SupportedVersions {
		r, err := Lookup(v)
		if err != nil {
			t.Errorf("Lookup(%q): %v", v, err)
			continue
		}
		if r.Version != v {
			t.Errorf("Lookup(%q).Version = %q", v, r.Version)
		}
		if r.MeshdImage == "" || r.ProxyImage == "" {
			t.Errorf("Lookup(%q) has an empty image: %+v", v, r)
		}
	}
}

// A catalogue entry the API does not accept is dead weight at best and a sign
// the CRD enum was forgotten at worst.
func TestCatalogueHasOnlySupportedVersions(t *testing.T) {
	for _, v := range Versions() {
		if !slices.Contains(v1alpha1.SupportedVersions, v) {
			t.Errorf("catalogue has %q, which is not in v1alpha1.SupportedVersions %v", v, v1alpha1.SupportedVersions)
		}
	}
}

func TestDefaultVersionResolves(t *testing.T) {
	if _, err := Lookup(v1alpha1.DefaultVersion); err != nil {
		t.Fatalf("Lookup(DefaultVersion): %v", err)
	}
}

func TestV010Images(t *testing.T) {
	r, err := Lookup("v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	want := Release{
		Version:    "v0.1.0",
		MeshdImage: "ghcr.io/meshplane/meshd:v0.1.0",
		ProxyImage: "docker.io/envoyproxy/envoy:v1.36.2",
	}
	if r != want {
		t.Errorf("Lookup(v0.1.0) = %+v, want %+v", r, want)
	}
}

func TestUnknownVersionErrorListsSupported(t *testing.T) {
	_, err := Lookup("v9.9.9")
	if err == nil {
		t.Fatal("Lookup(v9.9.9) succeeded, want error")
	}
	for _, want := range append([]string{"v9.9.9"}, v1alpha1.SupportedVersions...) {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}
