// Package meshctl is the meshctl command line: tools for users of the mesh that work on their
// configuration files, without a cluster. cmd/meshctl only calls Run, so every command is
// tested in-process.
package meshctl

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// Exit codes.
const (
	// ExitOK: the command succeeded; for analyze, no errors were found (warnings are allowed).
	ExitOK = 0
	// ExitFindings: analyze found errors; render refused input with errors or left a resource out.
	ExitFindings = 1
	// ExitUsage: wrong flags or arguments, or input that could not be read.
	ExitUsage = 2
)

// exitError ends a command with a specific exit code after it has printed its own output.
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit code %d", e.code) }

// NewRootCommand builds the meshctl command tree writing to stdout and stderr.
func NewRootCommand(version string, stdout, stderr io.Writer) *cobra.Command {
	root := &cobra.Command{
		Use:   "meshctl",
		Short: "Check Meshplane and Istio configuration, and see what proxies would receive",
		Long: `meshctl works with the configuration of a Meshplane mesh: Istio networking objects
(VirtualService, DestinationRule, Gateway, ServiceEntry, Sidecar) and the Kubernetes Services and
workloads they route to, read from files. analyze finds mistakes in them; render prints the xDS
configuration meshd would push to a proxy.`,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.AddCommand(newAnalyzeCommand(), newRenderCommand())
	return root
}

// Run executes meshctl with args and returns its exit code.
func Run(version string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := NewRootCommand(version, stdout, stderr)
	root.SetIn(stdin)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var exit *exitError
	if errors.As(err, &exit) {
		return exit.code
	}
	fmt.Fprintln(stderr, "Error:", err)
	return ExitUsage
}
