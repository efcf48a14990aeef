//go:build tools

// Package etcd pins the etcd server the test API servers store their state in.
package etcd

import _ "go.etcd.io/etcd/server/v3"
