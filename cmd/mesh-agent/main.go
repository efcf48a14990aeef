// Command mesh-agent runs beside every workload of the mesh: it obtains the
// workload's certificate from meshd's CA and keeps it fresh, hands it to
// Envoy over SDS or to a proxyless gRPC application as files, and relays
// xDS to meshd so the application never holds the pod's token.
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
