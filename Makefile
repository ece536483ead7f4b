# ferry: the two commands are `make demo` and `make test`; everything else is a building block.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TESTENV := tests/testenv/testenv.sh
export GOTOOLCHAIN := local
# ferry's own binaries and the control plane share one kubeconfig, written by `testenv.sh up`.
KUBECONFIG_TESTENV = $(shell $(TESTENV) env 2>/dev/null | sed -n 's/^KUBECONFIG=//p')
KUBECTL = target/testenv/bin/kubectl --kubeconfig "$(KUBECONFIG_TESTENV)"

.PHONY: help deps testenv-up testenv-down testenv-status build test lint crds demo bench

help:
	@echo "make demo          start the local cluster, install the CRD and an example Application"
	@echo "make test          lint and run every test (unit and integration) against the local cluster"
	@echo "make crds          regenerate crds/ from the Rust types"
	@echo "make bench         render benchmarks (1,000 objects, plain and Kustomize) -> target/bench/render.txt"
	@echo "make lint          cargo fmt --check and clippy with warnings as errors"
	@echo "make testenv-up    build (once) and start the local control plane"
	@echo "make testenv-down  stop it"

deps:
	@tests/testenv/deps.sh

testenv-up: deps
	@$(TESTENV) up

testenv-down:
	@$(TESTENV) down

testenv-status:
	@$(TESTENV) status

build:
	cargo build

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings

crds:
	cargo run -q -- crd > crds/application.yaml

# Needs only the kustomize binary, not a running cluster; build.sh skips it when already built.
bench:
	tests/testenv/build.sh kustomize
	cargo bench --bench render

test: deps lint testenv-up
	cargo test

demo: testenv-up build
	@echo "--- installing the Application CRD (ferry crd | kubectl apply --server-side -f -)"
	target/debug/ferry crd | $(KUBECTL) apply --server-side --field-manager=ferry -f -
	$(KUBECTL) wait --for=condition=Established --timeout=60s crd/applications.ferry.dev
	@echo "--- applying examples/application.yaml"
	$(KUBECTL) apply -n default -f examples/application.yaml
	@echo "--- checking that ferry connects and finds the CRD"
	KUBECONFIG="$(KUBECONFIG_TESTENV)" timeout -s TERM 5 target/debug/ferry run || [[ $$? -eq 124 ]]
	@echo "--- kubectl get applications"
	$(KUBECTL) get applications -A -o wide
	@echo
	@echo "The cluster keeps running. Use it with:"
	@echo "  export KUBECONFIG=$(KUBECONFIG_TESTENV) PATH=$(CURDIR)/target/testenv/bin:\$$PATH"
	@echo "Stop it with: make testenv-down"
