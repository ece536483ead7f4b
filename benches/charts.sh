#!/usr/bin/env bash
# Chart benchmarks (issue 21), against a real Helm repository (charts packaged with the real
# `helm package`, indexed with `helm repo index`, served by benches/lib/chart_repo.py, which
# counts requests and answers If-None-Match with 304):
#
# 1. One Application whose source is a chart of N objects (90% ConfigMaps, 10% Deployments with
#    1 replica) from the repository: a fresh `ferry run --namespace <ns>`, clock from applying
#    the Application to Ready=True (Synced and Healthy), next to the floor in the same run:
#    `helm template` of the same archive piped to `kubectl apply --server-side`, then a watch until
#    every Deployment is available. Plus ferry's peak RSS.
# 2. 50 Applications of one small chart on the same repository, interval 1m: the repository's
#    requests (index.yaml downloads, 304 revalidations, archive downloads) until all are Ready
#    and in a window of steady state after. Shared per repository and credentials, the index is
#    checked about once per half interval, not once per Application.
#
# Results: target/bench/charts.txt. Needs the running local cluster (`make testenv-up`) and a
# ferry binary (`make bench` builds target/release/ferry).
#
# Environment:
#   FERRY_TESTENV_STATE           the control plane's state directory (as for testenv.sh)
#   FERRY_BIN                     ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_CHARTS_OBJECTS    objects of the big chart (default: 500)
#   FERRY_BENCH_CHARTS_RUNS       repetitions of scenario 1 (default: 3)
#   FERRY_BENCH_CHARTS_APPS       Applications of scenario 2 (default: 50)
#   FERRY_BENCH_CHARTS_WINDOW     seconds of steady state in scenario 2 (default: 150)
#   FERRY_BENCH_CHARTS_TIMEOUT    seconds one measurement may take (default: 600)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
objects="${FERRY_BENCH_CHARTS_OBJECTS:-500}"
runs="${FERRY_BENCH_CHARTS_RUNS:-3}"
apps="${FERRY_BENCH_CHARTS_APPS:-50}"
window="${FERRY_BENCH_CHARTS_WINDOW:-150}"
timeout="${FERRY_BENCH_CHARTS_TIMEOUT:-600}"
out_dir="$target/bench"
out="$out_dir/charts.txt"
work="$out_dir/charts-work"
bench_label="ferry.dev/bench=charts"

log() { printf '[bench charts] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/objects.sh
source "$here/lib/objects.sh"
helm="$bin/helm"

repo_pid=""
cleanup() {
  local status=$? ns
  stop_ferry
  [[ -n "$repo_pid" ]] && kill "$repo_pid" 2>/dev/null
  for ns in $(kubectl get namespace -l "$bench_label" -o 'jsonpath={.items[*].metadata.name}' 2>/dev/null); do
    delete_ns "$ns" || true
  done
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

create_ns() { # namespace
  kubectl create namespace "$1" >/dev/null
  kubectl label namespace "$1" "$bench_label" >/dev/null
}

# --- the repository --------------------------------------------------------------------------

charts="$work/repo"
start_repo() {
  rm -f "$work/repo.port"
  python3 "$here/lib/chart_repo.py" "$charts" "$work/repo.port" &
  repo_pid=$!
  local deadline=$((SECONDS + 10))
  until [[ -f "$work/repo.port" ]]; do
    ((SECONDS < deadline)) || die "the chart repository did not start"
    sleep 0.05
  done
  repo_url="http://127.0.0.1:$(cat "$work/repo.port")"
}

# counts PATH STATUS: requests the repository answered so.
counts() { # path status
  curl -sf "$repo_url/__counts" | python3 -c "import json,sys; print(json.load(sys.stdin).get('$1', {}).get('$2', 0))"
}

# tgz_downloads: archive downloads (200) of every chart.
tgz_downloads() {
  curl -sf "$repo_url/__counts" | python3 -c "import json,sys; print(sum(v.get('200', 0) for k, v in json.load(sys.stdin).items() if k.endswith('.tgz')))"
}

make_chart() { # name version dir-of-templates-generator-args...
  local name="$1" version="$2" dir="$work/src/$1"
  shift 2
  rm -rf "$dir"
  mkdir -p "$dir/templates"
  printf 'apiVersion: v2\nname: %s\nversion: %s\ntype: application\n' "$name" "$version" >"$dir/Chart.yaml"
  "$@" "$dir/templates"
  "$helm" package "$dir" --destination "$charts" >/dev/null
}

big_templates() { generate "$objects" "$1"; }
small_templates() {
  printf 'apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "{{ .Release.Name }}-a"}\ndata: {k: v}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: "{{ .Release.Name }}-b"}\ndata: {k: v}\n' >"$1/cms.yaml"
}

# --- scenario 1 ------------------------------------------------------------------------------

declare -A samples
record() { samples[$1]="${samples[$1]:-}${samples[$1]:+ }$2"; }

application() { # name namespace chart
  cat <<YAML
---
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: $1, namespace: $2}
spec:
  source:
    chart: {repoURL: "$repo_url", name: $3, version: 1.0.0}
  destination: {namespace: $2}
  interval: 1m
  syncPolicy: {automated: true, prune: false, selfHeal: true}
YAML
}

run_ferry() { # run-label record(0|1)
  local ns="ferry-bench-c-$1" keep="$2" logf t0 secs hwm line
  logf="$work/ferry-$ns.log"
  delete_ns "$ns"
  rm -rf "$work/cache-$ns"
  create_ns "$ns"
  start_ferry "$logf" --namespace "$ns" --cache-dir "$work/cache-$ns" --http-address 127.0.0.1:0 --helm "$helm"
  t0="$(now)"
  application bench "$ns" big | kubectl apply -f - >/dev/null
  if ! kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null; then
    tail -n 40 "$logf" >&2
    die "ferry: the chart of $objects objects not Ready after ${timeout}s (log $logf)"
  fi
  secs="$(elapsed "$t0" "$(now)")"
  hwm="$(hwm_kib "$ferry_pid")"
  line="$(kubectl get fapp bench -n "$ns" -o 'jsonpath={.status.sync.status}|{.status.health.status}|{.status.sync.revision}')"
  [[ "$line" == Synced\|Healthy\|big@1.0.0@sha256:* ]] || die "ferry: Ready but status $line"
  log "ferry   chart of $objects objects ($1): ${secs}s to Ready, VmHWM $(mib "$hwm") MiB, revision ${line##*|}"
  if ((keep)); then
    record ferry "$secs"
    record hwm "$(mib "$hwm")"
  fi
  kubectl delete fapp bench -n "$ns" --wait=true --timeout=120s >/dev/null 2>&1 || log "WARNING: finalizer of $ns/bench"
  stop_ferry
  delete_ns "$ns"
}

wait_available() { # namespace want
  local ns="$1" want="$2" deadline=$((SECONDS + timeout)) n
  while :; do
    n="$(kubectl get deployment -n "$ns" -o 'jsonpath={range .items[*]}{.status.availableReplicas}{"\n"}{end}' | grep -c '^1$' || true)"
    ((n >= want)) && return 0
    ((SECONDS < deadline)) || die "kubectl: $n of $want Deployments available after ${timeout}s"
    sleep 0.1
  done
}

run_floor() { # run-label record(0|1)
  local ns="ferry-bench-h-$1" keep="$2" t0 t1 t2
  delete_ns "$ns"
  create_ns "$ns"
  t0="$(now)"
  "$helm" template bench "$charts/big-1.0.0.tgz" --namespace "$ns" | kubectl apply --server-side --field-manager=bench -n "$ns" -f - >/dev/null
  t1="$(now)"
  wait_available "$ns" $((objects / 10))
  t2="$(now)"
  log "helm template | kubectl apply ($1): apply $(elapsed "$t0" "$t1")s, + Available $(elapsed "$t0" "$t2")s"
  if ((keep)); then
    record apply "$(elapsed "$t0" "$t1")"
    record avail "$(elapsed "$t0" "$t2")"
  fi
  delete_ns "$ns"
}

# --- scenario 2 ------------------------------------------------------------------------------

fleet() {
  local ns="ferry-bench-fleet" logf="$work/ferry-fleet.log" i t0 ready_secs
  delete_ns "$ns"
  rm -rf "$work/cache-fleet"
  create_ns "$ns"
  start_ferry "$logf" --namespace "$ns" --cache-dir "$work/cache-fleet" --http-address 127.0.0.1:0 --helm "$helm"
  local idx0 tgz0
  idx0="$(counts /index.yaml 200)"
  tgz0="$(tgz_downloads)"
  t0="$(now)"
  for ((i = 0; i < apps; i++)); do application "app-$(printf %02d "$i")" "$ns" small; done | kubectl apply -f - >/dev/null
  local created
  created="$(kubectl get fapp -n "$ns" -o name | wc -l)"
  ((created == apps)) || die "fleet: $created of $apps Applications created"
  if ! kubectl wait --for=condition=Ready fapp --all -n "$ns" --timeout="${timeout}s" >/dev/null; then
    tail -n 40 "$logf" >&2
    die "ferry: not every one of $apps Applications Ready after ${timeout}s"
  fi
  ready_secs="$(elapsed "$t0" "$(now)")"
  fleet_ready="$ready_secs"
  fleet_index_full_ready=$(($(counts /index.yaml 200) - idx0))
  fleet_index_304_ready="$(counts /index.yaml 304)"
  fleet_tgz_ready=$(($(tgz_downloads) - tgz0))
  log "fleet: $apps Applications Ready in ${ready_secs}s; index.yaml downloads $fleet_index_full_ready, 304s $fleet_index_304_ready, archives $fleet_tgz_ready"
  local full0 r0 tg0
  full0="$(counts /index.yaml 200)"; r0="$(counts /index.yaml 304)"; tg0="$(tgz_downloads)"
  sleep "$window"
  fleet_index_full_window=$(($(counts /index.yaml 200) - full0))
  fleet_index_304_window=$(($(counts /index.yaml 304) - r0))
  fleet_tgz_window=$(($(tgz_downloads) - tg0))
  kubectl wait --for=condition=Ready fapp --all -n "$ns" --timeout=60s >/dev/null || die "ferry: an Application left Ready in the window"
  fleet_hwm="$(mib "$(hwm_kib "$ferry_pid")")"
  log "fleet window ${window}s: index.yaml downloads $fleet_index_full_window, 304s $fleet_index_304_window, archives $fleet_tgz_window"
  kubectl delete fapp --all -n "$ns" --wait=true --timeout=120s >/dev/null 2>&1 || log "WARNING: fleet finalizers"
  stop_ferry
  delete_ns "$ns"
}

# --- main ------------------------------------------------------------------------------------

rm -rf "$work"
mkdir -p "$work" "$charts" "$out_dir"
log "ferry: $ferry ($("$ferry" version 2>/dev/null || echo '?')); cluster: $KUBECONFIG"
for ns in $(kubectl get namespace -l "$bench_label" -o 'jsonpath={.items[*].metadata.name}'); do
  delete_ns "$ns"
done
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/applications.ferry.dev >/dev/null
((objects % 10 == 0 && objects / 10 <= 200)) || die "FERRY_BENCH_CHARTS_OBJECTS must be a multiple of 10 with at most 200 Deployments: $objects"

start_repo
make_chart big 1.0.0 big_templates
make_chart small 1.0.0 small_templates
"$helm" repo index "$charts" --url "$repo_url" >/dev/null

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
log "warm-up (not counted)"
run_ferry warmup 0
run_floor warmup 0
for ((r = 1; r <= runs; r++)); do
  if ((r % 2)); then run_ferry "r$r" 1; run_floor "r$r" 1; else run_floor "r$r" 1; run_ferry "r$r" 1; fi
done
fleet
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

row() { # label values unit
  local s
  read -r -a s <<<"$(stats "$2")"
  printf '  %-44s median %9.3f %s   min %9.3f %s   max %9.3f %s   (%s)\n' "$1" "${s[0]}" "$3" "${s[1]}" "$3" "${s[2]}" "$3" "$2"
}
{
  echo "ferry chart benchmark ($started)"
  echo "ferry:    $("$ferry" version 2>/dev/null || echo '?') ($ferry)"
  echo "machine:  nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "load average $load_before (start) / $load_after (end)"
  echo "repo:     a Helm repository of charts packaged by helm $("$helm" version --short 2>/dev/null), served by benches/lib/chart_repo.py on loopback"
  echo
  echo "1. A chart of $objects objects ($((objects - objects / 10)) ConfigMaps, $((objects / 10)) Deployments) from the repository; $runs runs after a warm-up"
  row "ferry: Application applied -> Ready" "${samples[ferry]}" s
  row "helm template | kubectl apply --server-side" "${samples[apply]}" s
  row "  ... + Deployments Available (the floor)" "${samples[avail]}" s
  echo "  ratio ferry / floor = $(ratio "${samples[ferry]}" "${samples[avail]}")"
  row "ferry peak RSS (VmHWM at Ready)" "${samples[hwm]}" MiB
  echo
  echo "2. $apps Applications of one chart on one repository, interval 1m (index shared per repository and credentials)"
  echo "  until all Ready (${fleet_ready}s): index.yaml downloaded $fleet_index_full_ready time(s), revalidated (304) $fleet_index_304_ready time(s), archives downloaded $fleet_tgz_ready"
  echo "  in ${window}s of steady state after: index.yaml downloaded $fleet_index_full_window time(s), revalidated (304) $fleet_index_304_window time(s), archives downloaded $fleet_tgz_window"
  echo "  (one index check per half interval is about $((window / 30)) in the window; one per Application and interval would be about $((apps * window / 60)))"
  echo "  ferry peak RSS with $apps Applications: $fleet_hwm MiB"
} >"$out"
echo
cat "$out"
echo "written to $out"
