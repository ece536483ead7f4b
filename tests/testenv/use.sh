# Sourced (not run) by scripts that drive the local cluster, such as scripts/demo.sh and
# benches/sync.sh: points KUBECONFIG, `kubectl` and ferry's renderers at the control plane that
# testenv.sh runs (FERRY_TESTENV_STATE is honoured, as there).
#
#   source "$root/tests/testenv/use.sh"; testenv_use demo
#
# Needs $root (the checkout) and a `die` function; the argument names the make target that
# starts the cluster, for the error message.
# shellcheck shell=bash disable=SC2154  # $root and die come from the sourcing script

testenv_use() {
  local env_out
  env_out="$("$root/tests/testenv/testenv.sh" env)" || die "no local cluster; run: make testenv-up (make $1 does)"
  KUBECONFIG="$(sed -n 's/^KUBECONFIG=//p' <<<"$env_out")"
  bin="$(sed -n 's/^FERRY_TESTENV_BIN=//p' <<<"$env_out")"
  export KUBECONFIG FERRY_KUSTOMIZE="$bin/kustomize" FERRY_HELM="$bin/helm"
}

kubectl() { "$bin/kubectl" "$@"; }
