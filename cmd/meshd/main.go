// Command meshd is the Meshplane control plane.
//
// This release serves only the monitoring endpoints (/healthz, /ready,
// /metrics) and loads the mesh config. The xDS server, the CA and the sidecar
// injector webhook are not implemented yet; their addresses are accepted as
// flags but nothing listens on them.
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
