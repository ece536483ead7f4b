#!/usr/bin/env bash
# ferry next to Flux on the same cluster, the same Git server and the same objects (issue 7).
# Each tool runs alone, freshly started and scoped to a fresh namespace (ferry --namespace; Flux
# RUNTIME_NAMESPACE, as in-cluster), reading the same bare repositories through the same git
# smart-HTTP server (benches/lib/git_http.py); namespaces are deleted between runs, and the
# order alternates between repetitions.
#
#   1. Mean time to production, as in Flux's own benchmark: one Application / one
#      GitRepository+Kustomization (prune, wait) of N objects (90% ConfigMaps, 10% Deployments),
#      from creating it to Ready (ferry: Ready=True, Synced and Healthy; Flux: Ready=True with
#      wait: every object ready). Peak RSS: VmHWM of ferry; of source- + kustomize-controller.
#   2. Commit to converged through each tool's webhook receiver (benches/lib/push.sh).
#   3. Fleet steady state: CPU, memory, API requests and Git requests (benches/lib/fleet.sh);
#      ferry, Flux and Argo CD (benches/lib/argocd.sh).
#   4. Drift: `kubectl delete` of a managed Deployment until it is back and Available; ferry,
#      Flux and Argo CD.
#   5. The floor: `kubectl apply --server-side` of the same objects as scenario 1.
#
# Usage: compare.sh [full|quick]. full (make bench) rewrites BENCHMARKS.md and
# docs/benchmarks.svg; quick (make bench-quick: 100 objects, one run, 3 pushes, 20 apps for 60s)
# writes target/bench/compare-quick.md and .svg only. The samples of the last run are in
# target/bench/compare-<mode>/samples.tsv; benches/lib/report.py turns them into the report.
#
# Environment: FERRY_BIN, FERRY_TESTENV_STATE, and to change a mode's set:
# FERRY_BENCH_COMPARE_SIZES, _RUNS, _PUSHES, _FLEET_APPS, _FLEET_WINDOW, _FLEET_BASELINE,
# _DRIFT_RUNS, _DRIFT_INTERVAL (default 1m), _TIMEOUT (600 seconds per wait).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
mode="${1:-full}"
case "$mode" in
  full) d_sizes="100 500 1000" d_runs=3 d_pushes=10 d_apps=200 d_window=300 d_baseline=120 d_drift=3 ;;
  quick) d_sizes="100" d_runs=1 d_pushes=3 d_apps=20 d_window=60 d_baseline=30 d_drift=1 ;;
  *) echo "usage: $0 [full|quick]" >&2; exit 2 ;;
esac
read -r -a sizes <<<"${FERRY_BENCH_COMPARE_SIZES:-$d_sizes}"
runs="${FERRY_BENCH_COMPARE_RUNS:-$d_runs}"
pushes="${FERRY_BENCH_COMPARE_PUSHES:-$d_pushes}"
fleet_apps="${FERRY_BENCH_COMPARE_FLEET_APPS:-$d_apps}"
fleet_window="${FERRY_BENCH_COMPARE_FLEET_WINDOW:-$d_window}"
fleet_baseline="${FERRY_BENCH_COMPARE_FLEET_BASELINE:-$d_baseline}"
drift_runs="${FERRY_BENCH_COMPARE_DRIFT_RUNS:-$d_drift}"
drift_interval="${FERRY_BENCH_COMPARE_DRIFT_INTERVAL:-1m}"
timeout="${FERRY_BENCH_COMPARE_TIMEOUT:-600}"
out_dir="$target/bench"
work="$out_dir/compare-$mode"
samples_file="$work/samples.tsv"
if [[ "$mode" == full ]]; then
  report="$root/BENCHMARKS.md" chart="$root/docs/benchmarks.svg" chart_ref="docs/benchmarks.svg"
else
  report="$out_dir/compare-quick.md" chart="$out_dir/compare-quick.svg" chart_ref="compare-quick.svg"
fi
bench_label="ferry.dev/bench=compare"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
t_start="$SECONDS"

log() { printf '[bench compare] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/flux.sh
source "$here/lib/flux.sh"
# shellcheck source=lib/argocd.sh
source "$here/lib/argocd.sh"
# shellcheck source=lib/objects.sh
source "$here/lib/objects.sh"

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/push.sh
source "$here/lib/push.sh"
# shellcheck source=lib/fleet.sh
source "$here/lib/fleet.sh"

cleanup() {
  local status=$?
  stop_ferry
  flux_stop
  argocd_stop
  git_http_stop
  delete_bench_namespaces
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Every measurement is one "key<TAB>value" line of $samples_file, read by benches/lib/report.py.
record() { printf '%s\t%s\n' "$1" "$2" >>"$samples_file"; }

prepare() { # n: a bare repository repo-<n>.git with the objects under objects/
  rm -rf "$work/clone-$1"
  generate "$1" "$work/clone-$1/objects"
  publish_repo "repo-$1" "$work/clone-$1" "$1 objects"
}

# A fresh namespace with a fresh ferry for it (log: $work/ferry-<ns>.log), more ferry flags after.
ferry_for() { # namespace [flags...]
  local ns="$1"
  shift
  delete_ns "$ns"
  create_ns "$ns"
  start_ferry "$work/ferry-$ns.log" --namespace "$ns" --cache-dir "$work/cache-$ns" \
    --http-address 127.0.0.1:0 "$@"
}

# The ferry counterpart of flux_apply_app: the Application `bench` on <repo>.git, path objects.
ferry_apply_app() { # namespace repo interval
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: bench, namespace: $1}
spec:
  source: {repoURL: "http://127.0.0.1:$git_http_port/$2.git", ref: {branch: main}, path: objects}
  destination: {namespace: $1}
  interval: $3
  syncPolicy: {automated: true, prune: true, selfHeal: true}
EOF
}

record_mttp() { # tool n seconds peak-rss-kib
  record "mttp-$1-$2" "$3"
  record "rss-$1-$2" "$(mib "$4")"
}

run_ferry() { # n label keep
  local n="$1" ns="cmp-ferry-$1-$2" keep="$3" logf t0 secs hwm
  logf="$work/ferry-$ns.log"
  ferry_for "$ns"
  t0="$(now)"
  ferry_apply_app "$ns" "repo-$n" 1h
  kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
    { tail -n 30 "$logf" >&2; die "ferry: $n objects not Ready after ${timeout}s"; }
  secs="$(elapsed "$t0" "$(now)")"
  hwm="$(hwm_kib "$ferry_pid")"
  log "ferry $n objects ($2): ${secs}s to Ready, peak RSS $((hwm / 1024)) MiB"
  ((keep)) && record_mttp ferry "$n" "$secs" "$hwm"
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
  ((keep)) && record_mttp flux "$n" "$secs" "$hwm"
  flux_stop
  delete_ns "$ns"
}

# Scenario 4: a 20-object app (both tools with the same interval, $drift_interval), Ready; then
# `kubectl delete deployment app-9`, and the clock runs until a Deployment of that name exists
# again with a new uid (recreated) and is Available.
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
  local interval="$drift_interval" ns
  ns="cmp-ferry-drift-$1"
  ferry_for "$ns"
  ferry_apply_app "$ns" repo-20 "$interval"
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

  ns="cmp-argocd-drift-$1"
  delete_ns "$ns"
  create_ns "$ns"
  argocd_start "$ns" "$work/argocd-$ns" 1 "$interval"
  argocd_apply_app "$ns" bench "http://127.0.0.1:$git_http_port/repo-20.git" objects "$interval"
  argocd_wait_synced "$ns" 1 "$timeout"
  drift_once argocd "$ns"
  argocd_stop
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
: >"$samples_file"
flux_build
argocd_build
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
flux_install_crds
argocd_install_crds
for n in "${sizes[@]}" 20; do prepare "$n"; done
push_prepare
fleet_prepare "$fleet_apps"
git_http_start "$work/repos" "$work/git-requests.log"

log "scenario 1 and 5: creation to Ready, ${sizes[*]} objects, $runs runs"
log "warm-up (not counted): ${sizes[0]} objects"
run_ferry "${sizes[0]}" warmup 0
run_flux "${sizes[0]}" warmup 0
for ((r = 1; r <= runs; r++)); do
  for n in "${sizes[@]}"; do
    if ((r % 2)); then run_ferry "$n" "r$r" 1; run_flux "$n" "r$r" 1; else run_flux "$n" "r$r" 1; run_ferry "$n" "r$r" 1; fi
    run_floor "$n" "r$r" 1
  done
done

log "scenario 2: commit to converged through the webhook, $pushes pushes"
run_push "$pushes"

log "scenario 3: $fleet_apps apps of 10 objects, ${fleet_window}s of steady state"
run_fleet "$fleet_apps" "$fleet_window" "$fleet_baseline"

log "scenario 4: drift, $drift_runs runs"
for ((r = 1; r <= drift_runs; r++)); do run_drift "r$r"; done

{
  printf 'mode\t%s\n' "$mode"
  printf 'date\t%s\n' "$started"
  printf 'duration\t%s\n' "$((SECONDS - t_start))"
  printf 'ferry\t%s\n' "$("$ferry" version)"
  printf 'ferry_commit\t%s\n' "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'flux\tsource-controller %s, kustomize-controller %s, notification-controller %s\n' \
    "$FLUX_SOURCE_CONTROLLER_VERSION" "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" "$FLUX_NOTIFICATION_CONTROLLER_VERSION"
  printf 'argocd\tapplication-controller and repo-server %s, redis-server %s\n' "$ARGO_CD_VERSION" \
    "$(redis-server --version | sed -n 's/.* v=\([^ ]*\).*/\1/p')"
  printf 'kubernetes\t%s (kube-apiserver, etcd %s, kwok %s)\n' "$KUBERNETES_VERSION" "$ETCD_VERSION" "$KWOK_VERSION"
  printf 'go\t%s\n' "$(go env GOVERSION)"
  printf 'rustc\t%s\n' "$(rustc --version)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'memory\t%s\n' "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'load\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
  printf 'sizes\t%s\n' "${sizes[*]}"
  printf 'runs\t%s\n' "$runs"
  printf 'pushes\t%s\n' "$pushes"
  printf 'fleet_apps\t%s\n' "$fleet_apps"
  printf 'fleet_interval\t%s\n' "$fleet_interval"
  printf 'drift_runs\t%s\n' "$drift_runs"
  printf 'drift_interval\t%s\n' "$drift_interval"
} >"$work/meta.tsv"
mkdir -p "$(dirname "$chart")"
python3 "$here/lib/report.py" "$work/meta.tsv" "$samples_file" "$report" "$chart" "$chart_ref"
log "done in $((SECONDS - t_start))s: $report, $chart"
