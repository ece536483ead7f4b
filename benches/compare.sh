#!/usr/bin/env bash
# ferry next to Flux on the same cluster, the same Git server and the same objects (issue 7).
# Work in progress: scenarios 1 (mean time to production), 4 (drift) and 5 (the kubectl floor)
# so far; scenarios 2 and 3 (commit to converged with each tool's webhook receiver, fleet steady
# state) are still to come, and the results go to target/bench/compare.txt, not yet to
# BENCHMARKS.md.
#
# Scenario 1, as in Flux's own benchmark: one Application / one GitRepository+Kustomization
# (prune, wait) of N objects (90% ConfigMaps, 10% Deployments), from creating it to Ready
# (ferry: Ready=True = Synced and Healthy; Flux: Kustomization Ready=True with wait: every
# object ready). Each tool runs alone, freshly started, scoped to a fresh namespace (ferry
# --namespace; Flux RUNTIME_NAMESPACE), reading the same bare repository through the same git
# smart-HTTP server (benches/lib/git_http.py); the order alternates between repetitions.
# Peak RSS: VmHWM of ferry, and of source-controller + kustomize-controller together.
# Scenario 5: `kubectl apply --server-side` of the same objects, and the wait for Available.
#
# Environment: FERRY_BIN, FERRY_TESTENV_STATE, FERRY_BENCH_COMPARE_SIZES (default
# "100 500 1000"), FERRY_BENCH_COMPARE_RUNS (default 3), FERRY_BENCH_COMPARE_TIMEOUT (600).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
read -r -a sizes <<<"${FERRY_BENCH_COMPARE_SIZES:-100 500 1000}"
runs="${FERRY_BENCH_COMPARE_RUNS:-3}"
timeout="${FERRY_BENCH_COMPARE_TIMEOUT:-600}"
out_dir="$target/bench"
out="$out_dir/compare.txt"
work="$out_dir/compare-work"
label="ferry.dev/bench=compare"

log() { printf '[bench compare] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/flux.sh
source "$here/lib/flux.sh"
# shellcheck source=lib/objects.sh
source "$here/lib/objects.sh"

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

cleanup() {
  local status=$? ns
  stop_ferry
  flux_stop
  git_http_stop
  for ns in $(kubectl get namespace -l "$label" -o 'jsonpath={.items[*].metadata.name}' 2>/dev/null); do
    delete_ns "$ns" || true
  done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

create_ns() {
  kubectl create namespace "$1" >/dev/null
  kubectl label namespace "$1" "$label" >/dev/null
}

declare -A samples
record() { samples[$1]="${samples[$1]:-}${samples[$1]:+ }$2"; }

prepare() { # n: a bare repository repo-<n>.git with the objects under objects/
  local n="$1" clone="$work/clone-$1"
  rm -rf "$clone" "$work/repos/repo-$n.git"
  git init -q --bare -b main "$work/repos/repo-$n.git"
  generate "$n" "$clone/objects"
  git -C "$clone" init -q -b main
  git -C "$clone" add -A
  git -C "$clone" -c user.name=bench -c user.email=bench@ferry.invalid commit -q -m "$n objects"
  git -C "$clone" push -q "$work/repos/repo-$n.git" main
}

# A fresh namespace with a fresh ferry for it (log: $work/ferry-<ns>.log).
ferry_for() { # namespace
  delete_ns "$1"
  create_ns "$1"
  start_ferry "$work/ferry-$1.log" --namespace "$1" --cache-dir "$work/cache-$1" --http-address 127.0.0.1:0
}

# The ferry counterpart of flux_apply_app: the Application `bench` on repo-<n>.
ferry_apply_app() { # namespace n interval
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: bench, namespace: $1}
spec:
  source: {repoURL: "http://127.0.0.1:$git_http_port/repo-$2.git", ref: {branch: main}, path: objects}
  destination: {namespace: $1}
  interval: $3
  syncPolicy: {automated: true, prune: true, selfHeal: true}
EOF
}

run_ferry() { # n label keep
  local n="$1" ns="cmp-ferry-$1-$2" keep="$3" logf t0 secs hwm
  logf="$work/ferry-$ns.log"
  ferry_for "$ns"
  t0="$(now)"
  ferry_apply_app "$ns" "$n" 1h
  kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
    { tail -n 30 "$logf" >&2; die "ferry: $n objects not Ready after ${timeout}s"; }
  secs="$(elapsed "$t0" "$(now)")"
  hwm="$(hwm_kib "$ferry_pid")"
  log "ferry $n objects ($2): ${secs}s to Ready, peak RSS $((hwm / 1024)) MiB"
  if ((keep)); then
    record "ferry-$n" "$secs"
    record "ferry-rss-$n" "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
  fi
  stop_ferry
  delete_ns "$ns"
}

run_flux() { # n label keep
  local n="$1" ns="cmp-flux-$1-$2" keep="$3" t0 secs hwm
  delete_ns "$ns"
  create_ns "$ns"
  flux_start "$ns" "$work/flux-$ns"
  t0="$(now)"
  flux_apply_app "$ns" bench "http://127.0.0.1:$git_http_port/repo-$n.git" objects 1h
  kubectl wait --for=condition=Ready kustomization/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
    { tail -n 30 "$work/flux-$ns/kustomize-controller.log" >&2; die "Flux: $n objects not Ready after ${timeout}s"; }
  secs="$(elapsed "$t0" "$(now)")"
  hwm=$(($(hwm_kib "$flux_sc_pid") + $(hwm_kib "$flux_kc_pid")))
  log "Flux  $n objects ($2): ${secs}s to Ready, peak RSS (both controllers) $((hwm / 1024)) MiB"
  if ((keep)); then
    record "flux-$n" "$secs"
    record "flux-rss-$n" "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
  fi
  flux_stop
  delete_ns "$ns"
}

# Scenario 4: a 20-object app (both tools with the same interval, FERRY_BENCH_COMPARE_DRIFT_INTERVAL,
# default 1m), Ready; then `kubectl delete deployment app-9` and the clock runs until a Deployment
# of that name exists again with a new uid (recreated) and is Available.
drift_once() { # tool namespace
  local tool="$1" ns="$2" old t0 uid avail
  old="$(kubectl get deployment app-9 -n "$ns" -o 'jsonpath={.metadata.uid}')"
  t0="$(now)"
  kubectl delete deployment app-9 -n "$ns" --wait=false >/dev/null
  local deadline=$((SECONDS + timeout))
  while :; do
    read -r uid avail < <(kubectl get deployment app-9 -n "$ns" \
      -o 'jsonpath={.metadata.uid} {.status.availableReplicas}' 2>/dev/null || echo "- -") || true
    # (read fails at a last line without a newline, which jsonpath output is)
    [[ -n "$uid" && "$uid" != "-" && "$uid" != "$old" && "${avail:-}" == "1" ]] && break
    ((SECONDS < deadline)) || die "$tool: app-9 not back within ${timeout}s"
    sleep 0.1
  done
  local secs; secs="$(elapsed "$t0" "$(now)")"
  record "drift-$tool" "$secs"
  log "$tool: the deleted Deployment was back and Available after ${secs}s"
}

run_drift() { # label
  local interval="${FERRY_BENCH_COMPARE_DRIFT_INTERVAL:-1m}" ns
  ns="cmp-ferry-drift-$1"
  ferry_for "$ns"
  ferry_apply_app "$ns" 20 "$interval"
  kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null
  drift_once ferry "$ns"
  stop_ferry
  delete_ns "$ns"

  ns="cmp-flux-drift-$1"
  delete_ns "$ns"
  create_ns "$ns"
  flux_start "$ns" "$work/flux-$ns"
  flux_apply_app "$ns" bench "http://127.0.0.1:$git_http_port/repo-20.git" objects "$interval"
  kubectl wait --for=condition=Ready kustomization/bench -n "$ns" --timeout="${timeout}s" >/dev/null
  drift_once flux "$ns"
  flux_stop
  delete_ns "$ns"
}

run_floor() { # n label keep
  local n="$1" ns="cmp-kubectl-$1-$2" keep="$3" t0 secs
  delete_ns "$ns"
  create_ns "$ns"
  t0="$(now)"
  kubectl apply --server-side --field-manager=bench -n "$ns" -f "$work/clone-$n/objects" >/dev/null
  secs="$(elapsed "$t0" "$(now)")"
  kubectl wait --for=condition=Available deployment --all -n "$ns" --timeout="${timeout}s" >/dev/null
  log "kubectl $n objects ($2): apply ${secs}s"
  ((keep)) && record "floor-$n" "$secs"
  delete_ns "$ns"
}


# --- main ------------------------------------------------------------------------------------

rm -rf "$work"
mkdir -p "$work/repos" "$out_dir"
flux_build
"$ferry" crd | kubectl apply --server-side --field-manager=ferry -f - >/dev/null
flux_install_crds
for n in "${sizes[@]}" 20; do prepare "$n"; done
git_http_start "$work/repos"

log "warm-up (not counted): ${sizes[0]} objects"
run_ferry "${sizes[0]}" warmup 0
run_flux "${sizes[0]}" warmup 0
for ((r = 1; r <= runs; r++)); do
  for n in "${sizes[@]}"; do
    if ((r % 2)); then run_ferry "$n" "r$r" 1; run_flux "$n" "r$r" 1; else run_flux "$n" "r$r" 1; run_ferry "$n" "r$r" 1; fi
    run_floor "$n" "r$r" 1
  done
done

for ((r = 1; r <= runs; r++)); do run_drift "r$r"; done

{
  echo "ferry vs Flux ($(date -u +%Y-%m-%dT%H:%M:%SZ)); scenarios 1, 4 and 5 so far"
  echo "ferry:  $("$ferry" version) ($ferry)"
  echo "Flux:   source-controller $FLUX_SOURCE_CONTROLLER_VERSION, kustomize-controller $FLUX_KUSTOMIZE_CONTROLLER_VERSION (built from Go modules)"
  echo "machine: nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), load $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "method: $runs runs per size after one warm-up; medians (min max); ratio = Flux / ferry (above 1: ferry faster or lighter)"
  for n in "${sizes[@]}"; do
    echo
    echo "$n objects: creation -> Ready"
    printf '  %-28s %s\n' "ferry" "$(stats "${samples[ferry-$n]}")"
    printf '  %-28s %s\n' "Flux" "$(stats "${samples[flux-$n]}")"
    printf '  %-28s %s\n' "ratio Flux/ferry" "$(ratio "${samples[flux-$n]}" "${samples[ferry-$n]}")"
    printf '  %-28s %s\n' "kubectl apply (floor)" "$(stats "${samples[floor-$n]}")"
    printf '  %-28s ferry %s MiB, Flux %s MiB\n' "peak RSS (median)" \
      "$(median "${samples[ferry-rss-$n]}")" "$(median "${samples[flux-rss-$n]}")"
  done
  echo
  echo "drift: kubectl delete of a managed Deployment -> recreated and Available (interval ${FERRY_BENCH_COMPARE_DRIFT_INTERVAL:-1m} for both)"
  printf '  %-28s %s\n' "ferry" "$(stats "${samples[drift-ferry]}")"
  printf '  %-28s %s\n' "Flux" "$(stats "${samples[drift-flux]}")"
  printf '  %-28s %s\n' "ratio Flux/ferry" "$(ratio "${samples[drift-flux]}" "${samples[drift-ferry]}")"
} >"$out"
echo
cat "$out"
