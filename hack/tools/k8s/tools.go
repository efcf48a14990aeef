//go:build tools

// Package k8s pins the Kubernetes control-plane binaries the tests run against.
// It is its own module so that kubernetes' dependency graph never touches ours.
package k8s

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
)
