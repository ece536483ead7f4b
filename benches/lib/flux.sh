# Sourced by the side-by-side benchmarks: Flux's source-controller and kustomize-controller as
# local processes against the local control plane, and the git smart-HTTP server both tools
# read from. Built by `tests/testenv/build.sh flux-source-controller flux-kustomize-controller`.
#
# Needs $root, $bin (from tests/testenv/use.sh), kubectl(), log() and die() from the sourcing
# script, and free_port (benches/lib/common.sh).
# shellcheck shell=bash disable=SC2154  # $root and $bin come from the sourcing script

# shellcheck source=../../tests/testenv/versions.env
source "$root/tests/testenv/versions.env"
flux_cache="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv"
flux_sc_dir="$flux_cache/flux-source-controller-$FLUX_SOURCE_CONTROLLER_VERSION"
flux_kc_dir="$flux_cache/flux-kustomize-controller-$FLUX_KUSTOMIZE_CONTROLLER_VERSION"

flux_build() {
  "$root/tests/testenv/build.sh" flux-source-controller flux-kustomize-controller
}

flux_install_crds() {
  kubectl apply --server-side --force-conflicts -f "$flux_sc_dir/crds" -f "$flux_kc_dir/crds" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s \
    crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io >/dev/null
}

# --- git server ------------------------------------------------------------------------------

git_http_pid=""
git_http_port=""
git_http_start() { # root dir of bare repositories
  local root_dir="$1" port_file
  port_file="$(mktemp)"
  rm -f "$port_file"
  python3 "$root/benches/lib/git_http.py" "$root_dir" "$port_file" &
  git_http_pid=$!
  local deadline=$((SECONDS + 10))
  until [[ -s "$port_file" ]]; do
    ((SECONDS < deadline)) || die "the git HTTP server did not start"
    sleep 0.05
  done
  git_http_port="$(cat "$port_file")"
  rm -f "$port_file"
}
git_http_stop() {
  [[ -n "$git_http_pid" ]] || return 0
  kill "$git_http_pid" 2>/dev/null || true
  wait "$git_http_pid" 2>/dev/null || true
  git_http_pid=""
}

# --- the controllers -------------------------------------------------------------------------

flux_sc_pid=""
flux_kc_pid=""
flux_sc_metrics=""
flux_kc_metrics=""

# Starts both controllers for one namespace (RUNTIME_NAMESPACE, as in-cluster; no leader
# election, no events receiver) and waits until both answer /readyz.
flux_start() { # namespace work-dir
  local ns="$1" work="$2" storage health_sc health_kc
  storage="$(free_port)"
  health_sc="$(free_port)"
  health_kc="$(free_port)"
  flux_sc_metrics="127.0.0.1:$(free_port)"
  flux_kc_metrics="127.0.0.1:$(free_port)"
  mkdir -p "$work/flux-storage"
  RUNTIME_NAMESPACE="$ns" "$flux_sc_dir/bin/source-controller" \
    --watch-all-namespaces=false --enable-leader-election=false --log-level=info \
    --storage-path="$work/flux-storage" --storage-addr="127.0.0.1:$storage" \
    --storage-adv-addr="127.0.0.1:$storage" --metrics-addr="$flux_sc_metrics" \
    --health-addr="127.0.0.1:$health_sc" >"$work/source-controller.log" 2>&1 &
  flux_sc_pid=$!
  RUNTIME_NAMESPACE="$ns" "$flux_kc_dir/bin/kustomize-controller" \
    --watch-all-namespaces=false --enable-leader-election=false --log-level=info \
    --no-remote-bases=true --metrics-addr="$flux_kc_metrics" \
    --health-addr="127.0.0.1:$health_kc" >"$work/kustomize-controller.log" 2>&1 &
  flux_kc_pid=$!
  local deadline=$((SECONDS + 60)) port
  for port in "$health_sc" "$health_kc"; do
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
      kill -0 "$flux_sc_pid" 2>/dev/null || { tail -n 20 "$work/source-controller.log" >&2; die "source-controller exited"; }
      kill -0 "$flux_kc_pid" 2>/dev/null || { tail -n 20 "$work/kustomize-controller.log" >&2; die "kustomize-controller exited"; }
      ((SECONDS < deadline)) || die "Flux controllers not ready after 60s (logs in $work)"
      sleep 0.1
    done
  done
}

flux_stop() {
  local pid
  for pid in "$flux_sc_pid" "$flux_kc_pid"; do
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$flux_sc_pid" "$flux_kc_pid"; do
    [[ -n "$pid" ]] || continue
    wait "$pid" 2>/dev/null || true
  done
  flux_sc_pid=""
  flux_kc_pid=""
}

# The Flux counterpart of a ferry Application: a GitRepository and a Kustomization with prune
# and wait (wait = every object Ready, as ferry's Healthy), both with a long interval.
flux_apply_app() { # namespace name repo-url path interval
  local ns="$1" name="$2" url="$3" path="$4" interval="${5:-1h}"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: $name, namespace: $ns}
spec:
  url: $url
  ref: {branch: main}
  interval: $interval
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: $name, namespace: $ns}
spec:
  sourceRef: {kind: GitRepository, name: $name}
  path: ./$path
  targetNamespace: $ns
  prune: true
  wait: true
  timeout: 10m
  interval: $interval
EOF
}
