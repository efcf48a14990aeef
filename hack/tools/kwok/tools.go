//go:build tools

// Package kwok pins kwok (fake nodes and kubelets) and kwokctl (cluster runner)
// for the simulated cluster the end-to-end tests and the demo use.
package kwok

import (
	_ "sigs.k8s.io/kwok/cmd/kwok"
	_ "sigs.k8s.io/kwok/cmd/kwokctl"
)
