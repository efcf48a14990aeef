// Command meshd is the Meshplane control plane.
//
// This release loads the mesh config, serves xDS (plaintext, also on the port
// meant for mTLS), the monitoring endpoints (/healthz, /ready, /metrics) and the
// validating admission webhook (/validate). The CA and the sidecar injector
// webhook are not implemented yet; `meshd --help` says what is missing.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
