# Meshplane. `make help` lists the targets.

SHELL := /usr/bin/env bash -o pipefail
.SHELLFLAGS := -ec

KUBE_VERSION ?= v1.37.2
K8S_BIN_DIR  := $(CURDIR)/bin/k8s/$(KUBE_VERSION)
VERSION      ?= v0.1.0
LDFLAGS      := -X main.version=$(VERSION)
GO_TEST_FLAGS ?= -count=1 -timeout 40m

CONTROLLER_GEN := go tool controller-gen

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z0-9_-]+:.*##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Regenerate CRDs and RBAC under config/ from the API types and markers.
	$(CONTROLLER_GEN) rbac:roleName=meshplane-operator-manager crd:crdVersions=v1 webhook paths=./... \
		output:crd:artifacts:config=config/crd/bases \
		output:rbac:artifacts:config=config/rbac \
		output:webhook:artifacts:config=config/webhook

.PHONY: generate
generate: ## Regenerate deepcopy functions.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths=./api/...

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet every package.
	go vet ./...

.PHONY: build
build: ## Build the binaries into bin/.
	go build -ldflags "$(LDFLAGS)" -o bin/ ./cmd/...

##@ Test

.PHONY: k8s-bins
k8s-bins: ## Build kube-apiserver, controller-manager, scheduler, etcd, kwok from source into bin/k8s/ (cached).
	./hack/k8s-bins.sh

.PHONY: test
test: k8s-bins vet ## Run every test against real API servers (envtest and a simulated kwok cluster).
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	go test $(GO_TEST_FLAGS) ./...

##@ Demo

.PHONY: demo
demo: k8s-bins build ## Simulated cluster, operator, sample mesh, meshd, proxyless gRPC calls through it.
	go build -o bin/demo ./hack/demo
	bin/demo up

.PHONY: demo-down
demo-down: ## Stop what `make demo` started.
	go run ./hack/demo down

##@ Benchmark

BENCH_CLIENTS ?= 200,1000,2000
BENCH_FLAGS   ?=

.PHONY: bench
bench: k8s-bins ## Benchmark meshd: xDS with 1000 Services and N simulated Envoys (BENCH_CLIENTS=200,1000,2000; BENCH_FLAGS=-cpuprofile=/tmp/cp), then CSR signing throughput and TokenReview caching.
	go run ./test/bench -clients $(BENCH_CLIENTS) $(BENCH_FLAGS)
	go test -run '^$$' -bench 'Sign|CreateCertificate' -benchtime 2s ./internal/ca/ ./internal/certservice/
