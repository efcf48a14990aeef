package validation

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/internal/istio/config"
)

// The known-good fixtures are the traffic management tasks of Istio's documentation (request
// routing, fault injection, traffic shifting, circuit breaking, ingress) in knowngood, and its
// security tasks (mutual TLS, HTTP, TCP and ingress authorization, JWT authentication) in
// knowngood-security, written for these tests in the same style. Each task directory is loaded
// together with the platform directory (the bookinfo and httpbin Services, Deployments and
// DestinationRules) and must produce no finding at all: valid configuration that users copy
// from the docs must pass without noise.
func TestKnownGoodConfigurationHasNoFindings(t *testing.T) {
	platform := filepath.Join("testdata", "knowngood", "platform")
	for root, want := range map[string]int{
		filepath.Join("testdata", "knowngood"):          7,
		filepath.Join("testdata", "knowngood-security"): 5,
	} {
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
				loaded, err := config.Load([]string{platform, filepath.Join(root, entry.Name())}, config.Options{})
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
		if tasks != want {
			t.Errorf("found %d task directories in %s, want %d", tasks, root, want)
		}
	}
}

func formatFindings(findings []Finding) string {
	var b strings.Builder
	for _, f := range findings {
		fmt.Fprintf(&b, "  %s  %s  %s  %s  %s: %s\n", f.Source, f.Severity(), f.Code.ID, f.Object(), f.Field, f.Message)
	}
	return b.String()
}

// The known-bad fixtures are realistic mistakes with the security kinds, loaded together with
// the platform (whose workloads the PeerAuthentication selectors select): every one is found,
// at its line, with its code, and nothing else is.
func TestKnownBadConfigurationHasEveryFinding(t *testing.T) {
	root := filepath.Join("testdata", "knowngood", "platform")
	bad := filepath.Join("testdata", "knownbad")
	loaded, err := config.Load([]string{root, bad}, config.Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"authorization-policies.yaml:7 Warning MP0155 AuthorizationPolicy default/allow-nothing spec.rules",
		"authorization-policies.yaml:25 Warning MP0157 AuthorizationPolicy default/deny-delete spec.rules[0]",
		"authorization-policies.yaml:34 Error MP0102 AuthorizationPolicy default/ext-authz spec.provider.name",
		"authorization-policies.yaml:42 Error MP0103 AuthorizationPolicy default/ext-authz spec.rules[0].from[0].source.principals",
		"authorization-policies.yaml:56 Error MP0101 AuthorizationPolicy default/ratings spec.rules[0].from[0].source.ipBlocks[0]",
		"authorization-policies.yaml:59 Error MP0109 AuthorizationPolicy default/ratings spec.rules[0].to[0].operation.ports[0]",
		"authorization-policies.yaml:60 Warning MP0156 AuthorizationPolicy default/ratings spec.rules[0].to[0].operation.paths[0]",
		"authorization-policies.yaml:62 Error MP0113 AuthorizationPolicy default/ratings spec.rules[0].when[0].key",
		"authorization-policies.yaml:71 Error MP0002 AuthorizationPolicy default/productpage spec.action",
		"peer-authentications.yaml:11 Error MP0103 PeerAuthentication default/default spec.portLevelMtls",
		"peer-authentications.yaml:16 Warning MP1006 PeerAuthentication default/permissive ",
		"peer-authentications.yaml:35 Error MP0002 PeerAuthentication default/reviews spec.mtls.mdoe",
		"peer-authentications.yaml:37 Error MP0109 PeerAuthentication default/reviews spec.portLevelMtls[80000]",
		"peer-authentications.yaml:48 Warning MP1006 PeerAuthentication default/reviews-v2 spec.selector.matchLabels",
		"request-authentications.yaml:13 Error MP0112 RequestAuthentication default/httpbin spec.jwtRules[0].jwksUri",
		"request-authentications.yaml:14 Error MP0102 RequestAuthentication default/httpbin spec.jwtRules[1].issuer",
		"request-authentications.yaml:17 Error MP0103 RequestAuthentication default/httpbin spec.jwtRules[2].jwks",
		"request-authentications.yaml:17 Warning MP0153 RequestAuthentication default/httpbin spec.jwtRules[2].jwks",
		"request-authentications.yaml:31 Error MP0112 RequestAuthentication default/productpage spec.jwtRules[0].jwks",
		"request-authentications.yaml:33 Error MP0101 RequestAuthentication default/productpage spec.jwtRules[0].outputClaimToHeaders[0].header",
	}
	findings := Check(loaded)
	var got []string
	for _, f := range findings {
		file := strings.TrimPrefix(f.Source.File, bad+string(filepath.Separator))
		got = append(got, fmt.Sprintf("%s:%d %s %s %s %s", file, f.Source.Line, f.Severity(), f.Code.ID, f.Object(), f.Field))
	}
	if !slices.Equal(got, want) {
		t.Errorf("findings:\n  got  %q\n  want %q\n%s", got, want, formatFindings(findings))
	}
	// The messages users read say what to do.
	for _, fragment := range []string{
		`PeerAuthentication default/reviews (testdata/knownbad/peer-authentications.yaml:25) also selects Deployment reviews-v2 and is older`,
		`jwksUri "accounts.example.com/.well-known/jwks.json" must be an absolute http:// or https:// URL`,
		`jwks is a single JSON Web Key; a key set lists its keys: {"keys": [...]}`,
		`unknown key request.auth.claim[groups]; the keys are request.headers[<name>]`,
	} {
		if !strings.Contains(formatFindings(findings), fragment) {
			t.Errorf("no message contains %q", fragment)
		}
	}
}
