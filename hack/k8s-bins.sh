#!/usr/bin/env bash
# Builds the real Kubernetes parts the tests and the demo run on, from the Go module
# proxy, into bin/k8s/<version>/. Each binary is skipped when its versioned copy exists,
# so a warm machine pays nothing. The versions live in the wrapper modules under
# hack/tools/ (go.mod); the ones here must match them and are checked below.
set -euo pipefail

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.6.16
KWOK_VERSION=v0.8.0

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/bin/k8s/$KUBE_VERSION"
mkdir -p "$out"

check_pin() { # module dir, module path, version
  grep -q "$2 $3" "$root/hack/tools/$1/go.mod" || {
    echo "hack/tools/$1/go.mod does not pin $2 $3" >&2; exit 1; }
}
check_pin k8s k8s.io/kubernetes "$KUBE_VERSION"
check_pin etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
check_pin kwok sigs.k8s.io/kwok "$KWOK_VERSION"

build() { # module dir, output name, package, ldflags
  local dest="$out/$2"
  if [ -x "$dest" ]; then return 0; fi
  echo ">> building $2 ($3)"
  local start=$SECONDS
  (cd "$root/hack/tools/$1" && CGO_ENABLED=0 go build -trimpath -ldflags "$4" -o "$dest.tmp" "$3")
  mv "$dest.tmp" "$dest"
  echo ">> built $2 in $((SECONDS - start))s"
}

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/component-base/version.buildDate=1970-01-01T00:00:00Z"
kwok_ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION \
 -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=$KUBE_VERSION"

build etcd etcd go.etcd.io/etcd/server/v3 "-s -w"
build k8s kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build k8s kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build k8s kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler "$kube_ldflags"
build kwok kwok sigs.k8s.io/kwok/cmd/kwok "$kwok_ldflags"
build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl "$kwok_ldflags"
