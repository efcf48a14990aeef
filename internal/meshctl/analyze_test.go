package meshctl

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/meshplane/meshplane/internal/istio/validation"
)

// run executes meshctl in-process and returns its exit code and output.
func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = Run("v0.0.0-test", args, strings.NewReader(stdin), &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestAnalyzeReportsEveryProblemInTheBrokenExamples(t *testing.T) {
	code, stdout, stderr := run(t, "", "analyze", "-f", filepath.Join("testdata", "broken"))
	if code != ExitFindings {
		t.Errorf("exit code = %d, want %d; stderr: %s", code, ExitFindings, stderr)
	}
	dir := filepath.Join("testdata", "broken") + string(filepath.Separator)
	// Every finding: file:line, severity, code, object and field path, in output order.
	want := []string{
		"cart-routing.yaml:18  Error  MP1001  VirtualService shop/cart  spec.http[0].route[0].destination.subset",
		"cart-routing.yaml:36  Warning  MP1005  DestinationRule shop/cart  spec.subsets[1].labels",
		"checkout-faults.yaml:14  Error  MP0111  VirtualService shop/checkout  spec.http[0].fault.abort.httpStatus",
		"checkout-faults.yaml:18  Error  MP0106  VirtualService shop/checkout  spec.http[0].fault.delay.fixedDelay",
		"checkout-faults.yaml:21  Warning  MP0151  VirtualService shop/checkout  spec.http[0].route",
		"checkout-faults.yaml:26  Error  MP1002  VirtualService shop/checkout  spec.http[0].route[1].destination.host",
		"checkout-policy.yaml:11  Error  MP0002  DestinationRule shop/checkout  spec.trafficPolicy.loadBalancer.simpel",
		"checkout-policy.yaml:16  Error  MP0108  DestinationRule shop/checkout  spec.subsets[1].name",
		"egress.yaml:11  Error  MP0107  Sidecar shop/default  spec.egress[0].hosts[1]",
		"egress.yaml:18  Warning  MP0153  ServiceEntry shop/payments  spec.endpoints",
		"not-yaml.yaml:7  Error  MP0001  yaml",
		"storefront-gateway.yaml:18  Error  MP0102  Gateway shop/storefront  spec.servers[0].tls.credentialName",
		"storefront-gateway.yaml:30  Error  MP1003  VirtualService shop/storefront  spec.gateways[0]",
		"storefront-gateway.yaml:35  Error  MP0103  VirtualService shop/storefront  spec.http[0].redirect",
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != len(want) {
		t.Fatalf("got %d findings, want %d:\n%s", len(lines), len(want), stdout)
	}
	for i, line := range lines {
		// The line is "<prefix>: <message>" (or "<prefix>: <yaml message>" for parse errors).
		prefix, message, _ := strings.Cut(strings.TrimPrefix(line, dir), ": ")
		if prefix != want[i] || message == "" {
			t.Errorf("finding %d:\n  got  %s\n  want %s: <message>", i, line, want[i])
		}
	}
	// Spot-check the messages users read.
	for _, fragment := range []string{
		`subset "preview" is not defined by any DestinationRule for host cart.shop.svc.cluster.local (defined: canary, stable)`,
		`unknown field "simpel", did you mean "simple"?`,
		`host "chekout" matches no Service (looked for chekout.shop.svc.cluster.local)`,
		`Gateway shop/storefront-gateway is not defined in the input`,
	} {
		if !strings.Contains(stdout, fragment) {
			t.Errorf("output lacks %q", fragment)
		}
	}
	if !strings.Contains(stderr, "11 errors and 3 warnings in 12 objects.") {
		t.Errorf("summary on stderr = %q", stderr)
	}
}

func TestAnalyzeAcceptsTheKnownGoodConfiguration(t *testing.T) {
	testdata := filepath.Join("..", "istio", "validation", "testdata")
	platform := filepath.Join(testdata, "knowngood", "platform")
	var tasks []string
	for _, root := range []string{filepath.Join(testdata, "knowngood"), filepath.Join(testdata, "knowngood-security")} {
		entries, err := os.ReadDir(root)
		if err != nil {
			t.Fatal(err)
		}
		for _, entry := range entries {
			if entry.IsDir() && entry.Name() != "platform" {
				tasks = append(tasks, filepath.Join(root, entry.Name()))
			}
		}
	}
	if len(tasks) < 12 {
		t.Fatalf("found %d known-good tasks, want the 7 traffic and 5 security ones", len(tasks))
	}
	for _, task := range tasks {
		t.Run(filepath.Base(task), func(t *testing.T) {
			code, stdout, stderr := run(t, "", "analyze", "-f", platform, "-f", task)
			if code != ExitOK || stdout != "" {
				t.Errorf("exit code %d, output:\n%s%s", code, stdout, stderr)
			}
			if !strings.HasPrefix(stderr, "No problems found in ") {
				t.Errorf("stderr = %q", stderr)
			}
		})
	}
}

func TestAnalyzeExitsZeroWithWarningsOnly(t *testing.T) {
	code, stdout, _ := run(t, "", "analyze", "-f", filepath.Join("testdata", "warnings-only"))
	if code != ExitOK {
		t.Errorf("exit code = %d, want 0", code)
	}
	if got := strings.Count(stdout, "  Warning  "); got != 2 || strings.Contains(stdout, "  Error  ") {
		t.Errorf("want two warnings and no error, got:\n%s", stdout)
	}
}

func TestAnalyzeOutputDoesNotDependOnArgumentOrder(t *testing.T) {
	broken := filepath.Join("testdata", "broken")
	files := []string{"storefront-gateway.yaml", "services.yaml", "cart-routing.yaml", "checkout-faults.yaml"}
	var args []string
	for _, file := range files {
		args = append(args, "-f", filepath.Join(broken, file))
	}
	_, first, _ := run(t, "", append([]string{"analyze"}, args...)...)
	slices.Reverse(files)
	args = nil
	for _, file := range files {
		args = append(args, "-f", filepath.Join(broken, file))
	}
	_, second, _ := run(t, "", append([]string{"analyze"}, args...)...)
	if first != second || first == "" {
		t.Errorf("output changed with argument order:\n%s\n---\n%s", first, second)
	}
}

func TestAnalyzeReadsStandardInput(t *testing.T) {
	input := `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: cart
spec:
  host: cart
  subsets:
  - labels: {track: stable}
`
	code, stdout, _ := run(t, input, "analyze", "-n", "shop", "-f", "-")
	want := "-:8  Error  MP0102  DestinationRule shop/cart  spec.subsets[0].name: every subset needs a name; routes refer to subsets by name\n"
	if code != ExitFindings || stdout != want {
		t.Errorf("exit code %d, output:\n%s\nwant:\n%s", code, stdout, want)
	}
}

// TestAnalyzeSecurityPolicies: the security kinds are checked like the networking ones, and
// --root-namespace says which namespace's policies are mesh-wide.
func TestAnalyzeSecurityPolicies(t *testing.T) {
	input := `apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: STRICT}}
---
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: permissive, namespace: istio-system}
spec: {mtls: {mode: PERMISSIVE}}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  action: CUSTOM
  rules: [{}]
`
	code, stdout, stderr := run(t, input, "analyze", "-n", "shop", "--root-namespace", "istio-system", "-f", "-")
	want := []string{
		"-:6  Warning  MP1006  PeerAuthentication istio-system/permissive  PeerAuthentication istio-system/default (-:1) " +
			"is the oldest mesh-wide PeerAuthentication (root namespace istio-system), so Istio applies it and ignores this one; merge them into one",
		"-:14  Error  MP0102  AuthorizationPolicy shop/ext-authz  spec.provider.name: a CUSTOM policy needs the name of the " +
			"extension provider (meshConfig.extensionProviders) that decides",
	}
	if code != ExitFindings || stdout != strings.Join(want, "\n")+"\n" {
		t.Errorf("exit code %d, output:\n%s\nwant:\n%s", code, stdout, strings.Join(want, "\n"))
	}
	if !strings.Contains(stderr, "1 error and 1 warning in 3 objects.") {
		t.Errorf("summary on stderr = %q", stderr)
	}

	// By default the root namespace is meshd's default namespace.
	_, stdout, _ = run(t, input, "analyze", "-f", "-")
	if !strings.Contains(stdout, "is the oldest namespace-wide PeerAuthentication of namespace istio-system") {
		t.Errorf("with the default root namespace:\n%s", stdout)
	}
}

func TestAnalyzeJSONOutput(t *testing.T) {
	code, stdout, _ := run(t, "", "analyze", "-o", "json", "-f", filepath.Join("testdata", "broken", "cart-routing.yaml"),
		"-f", filepath.Join("testdata", "broken", "services.yaml"))
	if code != ExitFindings {
		t.Errorf("exit code = %d, want 1", code)
	}
	var out struct {
		Findings []map[string]any `json:"findings"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, stdout)
	}
	if len(out.Findings) != 2 {
		t.Fatalf("findings: %v", out.Findings)
	}
	first := out.Findings[0]
	for key, want := range map[string]any{
		"file":      filepath.Join("testdata", "broken", "cart-routing.yaml"),
		"line":      float64(18),
		"severity":  "Error",
		"code":      "MP1001",
		"codeName":  "ReferencedSubsetNotFound",
		"kind":      "VirtualService",
		"namespace": "shop",
		"name":      "cart",
		"field":     "spec.http[0].route[0].destination.subset",
	} {
		if first[key] != want {
			t.Errorf("%s = %v, want %v", key, first[key], want)
		}
	}

	_, stdout, _ = run(t, "", "analyze", "-o", "json", "-f", filepath.Join("testdata", "broken", "services.yaml"))
	if !strings.Contains(stdout, `"findings": []`) {
		t.Errorf("no findings must be an empty list, got %s", stdout)
	}
}

func TestAnalyzeUsageAndInputErrors(t *testing.T) {
	tests := []struct {
		name       string
		args       []string
		wantStderr string
	}{
		{"no input", []string{"analyze"}, "nothing to analyze"},
		{"missing file", []string{"analyze", "-f", filepath.Join("testdata", "no-such-file.yaml")}, "no such file or directory"},
		{"unknown output format", []string{"analyze", "-o", "yaml", "-f", "testdata"}, `unknown output format "yaml"`},
		{"unknown flag", []string{"analyze", "--fix"}, "unknown flag: --fix"},
		{"positional argument", []string{"analyze", "testdata"}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stdout, stderr := run(t, "", tt.args...)
			if code != ExitUsage || stdout != "" || !strings.Contains(stderr, tt.wantStderr) {
				t.Errorf("exit code %d, stdout %q, stderr %q; want %d and stderr containing %q", code, stdout, stderr, ExitUsage, tt.wantStderr)
			}
		})
	}
}

func TestAnalyzeListsEveryCode(t *testing.T) {
	code, stdout, _ := run(t, "", "analyze", "--list-codes")
	if code != ExitOK {
		t.Errorf("exit code = %d", code)
	}
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if len(lines) != len(validation.Codes) {
		t.Fatalf("%d lines for %d codes:\n%s", len(lines), len(validation.Codes), stdout)
	}
	for i, code := range validation.Codes {
		if fields := strings.Fields(lines[i]); len(fields) < 4 || fields[0] != code.ID || fields[1] != code.Severity.String() || fields[2] != code.Name {
			t.Errorf("line %d = %q, want %s %s %s ...", i, lines[i], code.ID, code.Severity, code.Name)
		}
	}
}

func TestVersion(t *testing.T) {
	code, stdout, _ := run(t, "", "--version")
	if code != ExitOK || stdout != "meshctl version v0.0.0-test\n" {
		t.Errorf("exit code %d, output %q", code, stdout)
	}
}
