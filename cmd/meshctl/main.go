// Command meshctl checks Meshplane and Istio configuration files and renders the xDS
// configuration meshd would push to a proxy; see `meshctl --help`.
package main

import (
	"os"

	"github.com/meshplane/meshplane/internal/meshctl"
)

// version of meshctl, set at build time with
//
//	go build -ldflags "-X main.version=v0.1.0" ./cmd/meshctl
var version = "v0.1.0-dev"

func main() {
	os.Exit(meshctl.Run(version, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
