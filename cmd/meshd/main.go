// Command meshd is the Meshplane control plane.
//
// This release loads the mesh config, serves xDS (plaintext, and over TLS for
// authenticated callers), runs the mesh CA (Istio's certificate service on the
// TLS port, the root published to every namespace), serves the monitoring
// endpoints (/healthz, /ready, /metrics) and the validating admission webhook
// (/validate). The sidecar injector webhook is not implemented yet; `meshd
// --help` says so.
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
