package validation

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// The known-good fixtures are the traffic management tasks of Istio's documentation (request
// routing, fault injection, traffic shifting, circuit breaking, ingress), written for these tests
// in the same style. Each task directory is loaded together with the platform directory (the
// bookinfo and httpbin Services, Deployments and DestinationRules) and must produce no finding at
// all: valid configuration that users copy from the docs must pass without noise.
func TestKnownGoodConfigurationHasNoFindings(t *testing.T) {
	root := filepath.Join("testdata", "knowngood")
	entries, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	tasks := 0
	for _, entry := range entries {
		if !entry.IsDir() || entry.Name() == "platform" {
			continue
		}
		tasks++
		t.Run(entry.Name(), func(t *testing.T) {
			loaded, err := config.Load([]string{filepath.Join(root, "platform"), filepath.Join(root, entry.Name())}, config.Options{})
			if err != nil {
				t.Fatal(err)
			}
			if len(loaded.Objects) < 10 {
				t.Fatalf("loaded only %d objects; the fixtures did not load", len(loaded.Objects))
			}
			if findings := Check(loaded); len(findings) > 0 {
				t.Errorf("known-good configuration has findings:\n%s", formatFindings(findings))
			}
			for i := range loaded.Objects {
				if errs, warnings := ValidateWithWarnings(loaded.Objects[i].Object); len(errs)+len(warnings) > 0 {
					t.Errorf("%s %s: Validate: %v %v", loaded.Objects[i].Kind, loaded.Objects[i].Ref(), errs, warnings)
				}
			}
		})
	}
	if tasks != 7 {
		t.Errorf("found %d task directories, want 7", tasks)
	}
}

func formatFindings(findings []Finding) string {
	var b strings.Builder
	for _, f := range findings {
		fmt.Fprintf(&b, "  %s  %s  %s  %s  %s: %s\n", f.Source, f.Severity(), f.Code.ID, f.Object(), f.Field, f.Message)
	}
	return b.String()
}
