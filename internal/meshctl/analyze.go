package meshctl

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/meshplane/meshplane/internal/istio/config"
	"github.com/meshplane/meshplane/internal/istio/validation"
)

// stdinName stands for standard input in -f and in findings.
const stdinName = "-"

type analyzeOptions struct {
	files         []string
	output        string
	namespace     string
	rootNamespace string
	listCodes     bool
}

// defaultRootNamespace is meshd's namespace when the MeshControlPlane names none: the mesh's
// root namespace, as Istio's is istiod's.
const defaultRootNamespace = "meshplane-system"

func newAnalyzeCommand() *cobra.Command {
	var o analyzeOptions
	cmd := &cobra.Command{
		Use:   "analyze -f FILE_OR_DIR [-f ...]",
		Short: "Find mistakes in Istio networking and security configuration",
		Long: `analyze reads YAML and JSON files (directories recursively: *.yaml, *.yml, *.json; "-" is
standard input) and reports, one line per finding:

  file:line  Severity  Code  Kind namespace/name  field.path: message

  - what the API server and an admission webhook would reject in each object on its own
    (unknown fields, invalid hosts, weights, regexes, durations, ports, conflicting fields;
    for PeerAuthentication, AuthorizationPolicy and RequestAuthentication also selectors,
    rules, conditions, path templates, JWKS and their URIs), and what Istio accepts but
    rarely means (an ALLOW policy without rules, a "*" in the middle of a value);
  - what only shows when the objects are seen together: route destinations that match no
    Service or ServiceEntry, subsets no DestinationRule defines, Gateways that do not exist,
    VirtualServices competing for a host, subsets that select none of a Service's workloads,
    PeerAuthentications of which Istio applies only the oldest (PeerAuthentications without a
    selector in --root-namespace are mesh-wide).

Only the objects given are known: include the Services, Gateways and DestinationRules your
routes refer to. Findings are sorted by file and line. Exit code: 0 when there is no error
(warnings are allowed), 1 when there are errors, 2 when the input cannot be read or the flags
are wrong. --list-codes explains every code.`,
		Example: `  meshctl analyze -f bookinfo/
  kustomize build overlays/prod | meshctl analyze -f -
  meshctl analyze -f gateway.yaml -f routes/ -o json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd.InOrStdin(), cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringArrayVarP(&o.files, "filename", "f", nil, `file or directory to analyze, or "-" for standard input (repeatable)`)
	cmd.Flags().StringVarP(&o.output, "output", "o", "text", "output format: text or json")
	cmd.Flags().StringVarP(&o.namespace, "namespace", "n", "default", "namespace of objects that do not name one")
	cmd.Flags().StringVar(&o.rootNamespace, "root-namespace", defaultRootNamespace,
		"the mesh's root namespace (meshd's namespace), whose policies without a selector apply mesh-wide")
	cmd.Flags().BoolVar(&o.listCodes, "list-codes", false, "list every finding code with its meaning, and exit")
	return cmd
}

func (o *analyzeOptions) run(stdin io.Reader, stdout, stderr io.Writer) error {
	if o.output != "text" && o.output != "json" {
		return fmt.Errorf("unknown output format %q: use text or json", o.output)
	}
	if o.listCodes {
		return listCodes(stdout)
	}
	if len(o.files) == 0 {
		return fmt.Errorf(`nothing to analyze: give files or directories with -f (or "-f -" for standard input)`)
	}
	loaded, err := loadInput(o.files, o.namespace, stdin)
	if err != nil {
		return err
	}
	findings := validation.CheckWith(loaded, validation.Options{RootNamespace: o.rootNamespace})
	if o.output == "json" {
		err = writeJSON(stdout, findings)
	} else {
		err = writeText(stdout, findings)
	}
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, summary(findings, len(loaded.Objects)))
	if validation.HasErrors(findings) {
		return &exitError{code: ExitFindings}
	}
	return nil
}

// loadInput reads every file or directory of files ("-" is stdin), in the order given.
// The error is for input that cannot be read; problems with the content are in the result.
func loadInput(files []string, namespace string, stdin io.Reader) (*config.Result, error) {
	opts := config.Options{DefaultNamespace: namespace}
	all := &config.Result{}
	for _, path := range files {
		var result *config.Result
		if path == stdinName {
			data, err := io.ReadAll(stdin)
			if err != nil {
				return nil, fmt.Errorf("reading standard input: %w", err)
			}
			result = config.LoadBytes(stdinName, data, opts)
		} else {
			var err error
			if result, err = config.Load([]string{path}, opts); err != nil {
				return nil, err
			}
		}
		all.Objects = append(all.Objects, result.Objects...)
		all.Problems = append(all.Problems, result.Problems...)
	}
	return all, nil
}

// writeText prints one line per finding, columns separated by two spaces.
func writeText(w io.Writer, findings []validation.Finding) error {
	for _, f := range findings {
		columns := []string{f.Source.String(), f.Severity().String(), f.Code.ID}
		if object := f.Object(); object != "" {
			columns = append(columns, object)
		}
		message := f.Message
		if f.Field != "" {
			message = f.Field + ": " + message
		}
		columns = append(columns, message)
		if _, err := fmt.Fprintln(w, strings.Join(columns, "  ")); err != nil {
			return err
		}
	}
	return nil
}

// jsonFinding is the JSON form of a finding; the field names are part of meshctl's interface.
type jsonFinding struct {
	File      string `json:"file,omitempty"`
	Line      int    `json:"line,omitempty"`
	Severity  string `json:"severity"`
	Code      string `json:"code"`
	CodeName  string `json:"codeName"`
	Kind      string `json:"kind,omitempty"`
	Namespace string `json:"namespace,omitempty"`
	Name      string `json:"name,omitempty"`
	Field     string `json:"field,omitempty"`
	Message   string `json:"message"`
}

func writeJSON(w io.Writer, findings []validation.Finding) error {
	out := struct {
		Findings []jsonFinding `json:"findings"`
	}{Findings: []jsonFinding{}}
	for _, f := range findings {
		out.Findings = append(out.Findings, jsonFinding{
			File: f.Source.File, Line: f.Source.Line,
			Severity: f.Severity().String(), Code: f.Code.ID, CodeName: f.Code.Name,
			Kind: f.Kind, Namespace: f.Namespace, Name: f.Name,
			Field: f.Field, Message: f.Message,
		})
	}
	encoder := json.NewEncoder(w)
	encoder.SetIndent("", "  ")
	return encoder.Encode(out)
}

func summary(findings []validation.Finding, objects int) string {
	var errors, warnings int
	for _, f := range findings {
		if f.Severity() == validation.Error {
			errors++
		} else {
			warnings++
		}
	}
	if errors+warnings == 0 {
		return fmt.Sprintf("No problems found in %s.", plural(objects, "object"))
	}
	return fmt.Sprintf("%s and %s in %s.", plural(errors, "error"), plural(warnings, "warning"), plural(objects, "object"))
}

func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("1 %s", noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}

func listCodes(w io.Writer) error {
	table := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, code := range validation.Codes {
		fmt.Fprintf(table, "%s\t%s\t%s\t%s\n", code.ID, code.Severity, code.Name, code.Description)
	}
	return table.Flush()
}
