# ferry: the two commands are `make demo` and `make test`; everything else is a building block.
SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

TESTENV := tests/testenv/testenv.sh
export GOTOOLCHAIN := local
# ferry's own binaries and the control plane share one kubeconfig, written by `testenv.sh up`.
# FERRY_TESTENV_STATE (as for testenv.sh) points at another control plane's state, e.g. one that
# another work tree already runs.
KUBECONFIG_TESTENV = $(shell $(TESTENV) env 2>/dev/null | sed -n 's/^KUBECONFIG=//p')
TESTENV_STATE = $(or $(FERRY_TESTENV_STATE),$(CURDIR)/target/testenv)
KUBECTL = $(TESTENV_STATE)/bin/kubectl --kubeconfig "$(KUBECONFIG_TESTENV)"

.PHONY: help deps testenv-up testenv-down testenv-status build test unit lint crds chart image-check demo bench bench-quick soak

help:
	@echo "make demo          start the local cluster and ferry, sync an example app from a local Git"
	@echo "                   repo to Synced/Healthy, roll out a new image tag; ferry keeps running"
	@echo "make test          lint and run every test (unit and integration) against the local cluster"
	@echo "make unit          the unit tests only (cargo test --lib --bins): no cluster, a quick loop"
	@echo "make crds          regenerate crds/ and charts/ferry/crds/ from the Rust types"
	@echo "make chart         crds, then render examples/install/ from the chart (helm template)"
	@echo "make image-check   what of the Dockerfile can be checked here: the release build it makes,"
	@echo "                   its shared libraries, and the kustomize and helm it copies"
	@echo "make bench         every benchmark, ~90 min once built (it builds Flux's controllers, Argo CD and"
	@echo "                   Argo Rollouts too): ferry next to Flux and Argo CD on the same cluster ->"
	@echo "                   BENCHMARKS.md and docs/benchmarks.svg; fleet scale (Flux's benchmark shape at"
	@echo "                   100/500/1,000 apps, 10,000 one-ConfigMap Applications, one of 10,000 objects)"
	@echo "                   -> BENCHMARKS.md and docs/scale.svg; canary and blue-green next to Argo Rollouts"
	@echo "                   -> BENCHMARKS.md,"
	@echo "                   render (1,000 objects) -> target/bench/render.txt, sync (ferry vs kubectl apply)"
	@echo "                   -> target/bench/sync.txt, git push + webhook -> target/bench/webhook.txt,"
	@echo "                   crane push -> new image in the Deployment -> target/bench/image-update.txt,"
	@echo "                   many clusters (2 extra control planes, 50 Applications each) -> BENCHMARKS.md"
	@echo "make bench-quick   a reduced ferry-next-to-Flux run in minutes -> target/bench/compare-quick.md"
	@echo "make soak          the chaos soak for 30 minutes (FERRY_SOAK_SECS): two ferry replicas, 50"
	@echo "                   Applications, a stream of commits and random faults, invariants checked"
	@echo "                   throughout; a 3-minute version runs in make test"
	@echo "make lint          cargo fmt --check, clippy with warnings as errors, and no import cycles"
	@echo "                   among src/'s modules (scripts/check-cycles.py), no function over 80 lines in"
	@echo "                   src/controller/ or src/rollout/ without a \`// long:\` reason (scripts/fn-stats.py)"
	@echo "make testenv-up    build (once) and start the local control plane"
	@echo "make testenv-down  stop it, and the extra clusters of the multi-cluster tests and benches"

deps:
	@tests/testenv/deps.sh

testenv-up: deps
	@$(TESTENV) up

# The extra clusters of the multi-cluster tests (Cluster::extra) go down with the main one, and
# those benches/clusters.sh left running (FERRY_BENCH_CLUSTER_KEEP=1).
TESTENV_EXTRA_ROOT = $(or $(FERRY_TESTENV_EXTRA_ROOT),$(CURDIR)/target)

testenv-down:
	@$(TESTENV) down
	@for state in $(TESTENV_EXTRA_ROOT)/testenv-extra-*/ $(CURDIR)/target/testenv-bench-*/; do \
	  if [[ -d "$$state" ]]; then FERRY_TESTENV_STATE="$${state%/}" $(TESTENV) down; fi; \
	done

testenv-status:
	@$(TESTENV) status

build:
	cargo build

lint:
	cargo fmt --all -- --check
	cargo clippy --all-targets -- -D warnings
	scripts/check-cycles.py --self-test
	scripts/check-cycles.py
	scripts/fn-stats.py --check

crds:
	cargo run -q -- crd > crds/application.yaml
	scripts/chart.sh crds

chart: crds
	scripts/chart.sh examples

image-check:
	scripts/image-check.sh all

# The render bench needs only the kustomize binary (build.sh skips it when already built); the
# others need the local cluster and a release build of ferry. benches/compare.sh builds Flux's
# controllers and Argo CD once (tests/testenv/build.sh, cached by version) and says how it
# measures; it rewrites BENCHMARKS.md but keeps the sections the later scripts put in it between
# their markers: benches/clusters.sh (which starts and stops its own extra control planes),
# benches/rollouts.sh (Argo Rollouts) and benches/scale.sh (fleet scale). Each script's header
# lists the FERRY_BENCH_* variables that change what it runs.
bench: testenv-up
	tests/testenv/build.sh kustomize
	cargo bench --bench render
	cargo build --release --bin ferry
	benches/sync.sh
	benches/webhook.sh
	benches/image-update.sh
	benches/charts.sh
	benches/compare.sh full
	benches/clusters.sh full
	benches/rollouts.sh full
	benches/scale.sh full

bench-quick: testenv-up
	cargo build --release --bin ferry
	benches/compare.sh quick

test: deps lint testenv-up
	cargo test

# The tests inside src/: pure functions and fakes, no control plane, nothing to install.
unit:
	cargo test --lib --bins

# The chaos soak (tests/integration/soak.rs) at its full length; `make test` runs it for 3 minutes.
FERRY_SOAK_SECS ?= 1800
soak: deps testenv-up
	FERRY_SOAK_SECS=$(FERRY_SOAK_SECS) cargo test --test integration soak:: -- --nocapture

# scripts/demo.sh: a local Git repo with the example app, an Application, ferry in the background,
# Synced/Healthy, then a new image tag rolled out. It prints what to try next.
demo: testenv-up build
	scripts/demo.sh
