#!/usr/bin/env bash
# Chart benchmarks (issue 21), against a real Helm repository: charts packaged with the real
# `helm package`, indexed with `helm repo index`, served on loopback by benches/lib/chart_repo.py
# (which counts requests by path and answer, and answers If-None-Match / If-Modified-Since with
# 304 when the file did not change).
#
# 1. One Application whose source is a chart of N objects (90% ConfigMaps, 10% Deployments with
#    1 replica; benches/lib/objects.sh, as benches/sync.sh) from the repository. Per repetition,
#    each in a fresh namespace (deleted before the next):
#      ferry  a fresh `ferry run --namespace <ns>` (fresh cache) is started and waited for; the
#             clock starts when the Application is applied and stops when its Ready condition is
#             True (Synced and Healthy: every Deployment Available). Then the status (revision =
#             the archive's SHA-256), the inventory, the Deployments and the repository's
#             requests of that run are checked, and VmHWM (peak RSS) is read.
#      floor  `helm template` of the same archive piped to `kubectl apply --server-side`, then
#             one `kubectl get deployment --watch` until every Deployment is updated and
#             available (as benches/sync.sh).
#    The order alternates between repetitions; one untimed warm-up of both runs first.
# 2. A fleet: one ferry, N Applications (default 50) in one namespace, each its own release
#    (release name = Application name) of one small chart (2 ConfigMaps) on the same repository,
#    interval 1m. Until all are Ready, then over a window of steady state: the repository's
#    index.yaml downloads (200), revalidations (304), archive downloads, with the time between
#    index requests, and ferry's reconciles and CPU. The index is shared per repository and
#    credentials and checked at most once per min(interval/2, --git-ref-cache-seconds) = 30s, so
#    about window/30 revalidations are expected, not one per Application and interval.
#
# A measurement, not a test: no timing is asserted. The script fails (non-zero) when something is
# functionally wrong: an Application never Ready, a wrong revision, missing objects.
# Results: target/bench/charts.txt (median, min, max, ratios, machine).
#
# Needs the running local cluster (`make testenv-up`) and a ferry binary (`make bench` builds
# target/release/ferry).
#
# Environment:
#   FERRY_TESTENV_STATE           the control plane's state directory (as for testenv.sh)
#   FERRY_BIN                     ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_CHARTS_OBJECTS    objects of the big chart (default: 500; a multiple of 10)
#   FERRY_BENCH_CHARTS_RUNS       repetitions of scenario 1 (default: 3)
#   FERRY_BENCH_CHARTS_WARMUP     1 (default) or 0
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
warmup="${FERRY_BENCH_CHARTS_WARMUP:-1}"
apps="${FERRY_BENCH_CHARTS_APPS:-50}"
window="${FERRY_BENCH_CHARTS_WINDOW:-150}"
timeout="${FERRY_BENCH_CHARTS_TIMEOUT:-600}"
interval_s=60 # the Applications' interval (1m)
ref_cache_s=30 # ferry's --git-ref-cache-seconds (its default, passed explicitly)
out_dir="$target/bench"
out="$out_dir/charts.txt"
work="$out_dir/charts-work"
bench_label="ferry.dev/bench=charts"

log() { printf '[bench charts] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
if ! [[ "$objects" =~ ^[1-9][0-9]*0$ ]] || ((objects / 10 > 200)); then
  die "FERRY_BENCH_CHARTS_OBJECTS must be a multiple of 10 with at most 200 Deployments (the kwok Node holds 250 Pods): $objects"
fi
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_CHARTS_RUNS must be at least 1: $runs"
[[ "$apps" =~ ^[1-9][0-9]{0,2}$ ]] || die "FERRY_BENCH_CHARTS_APPS must be 1..999: $apps"
[[ "$window" =~ ^[0-9]+$ ]] || die "FERRY_BENCH_CHARTS_WINDOW must be seconds: $window"
# KUBECONFIG, kubectl and the renderers of the local control plane.
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# generate N DIR: the objects (shared with benches/sync.sh and the Flux comparison).
# shellcheck source=lib/objects.sh
source "$here/lib/objects.sh"
helm="$bin/helm"
[[ -x "$helm" ]] || die "no helm at $helm; run: make testenv-up"

# --- cleanup ---------------------------------------------------------------------------------

repo_pid=""
cleanup() {
  local status=$?
  stop_ferry
  if [[ -n "$repo_pid" ]]; then
    kill "$repo_pid" 2>/dev/null || true
    wait "$repo_pid" 2>/dev/null || true
  fi
  # delete_ns drops the Applications' finalizers first (ferry is stopped by now).
  delete_bench_namespaces
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the repository --------------------------------------------------------------------------

charts="$work/repo"
start_repo() {
  rm -f "$work/repo.port"
  python3 "$here/lib/chart_repo.py" "$charts" "$work/repo.port" "$$" &
  repo_pid=$!
  local deadline=$((SECONDS + 10))
  until [[ -s "$work/repo.port" ]]; do
    kill -0 "$repo_pid" 2>/dev/null || die "the chart repository exited during start-up"
    ((SECONDS < deadline)) || die "the chart repository did not start within 10s"
    sleep 0.05
  done
  repo_url="http://127.0.0.1:$(cat "$work/repo.port")/"
}

# The repository's counts so far, one line: index.yaml 200s, 304s, conditional requests that got
# a 200 (failed revalidations), requests with If-None-Match, with If-Modified-Since; archive
# (.tgz) 200s; 404s of any path.
repo_counts() {
  curl -sf --max-time 10 "${repo_url}__counts" | python3 -c '
import json, sys
c = json.load(sys.stdin)
i = c.get("/index.yaml", {})
tgz = sum(v.get("200", 0) for k, v in c.items() if k.endswith(".tgz"))
e404 = sum(v.get("404", 0) for v in c.values())
print(i.get("200", 0), i.get("304", 0), i.get("cond-200", 0), i.get("inm", 0), i.get("ims", 0), tgz, e404)
' || die "the chart repository did not answer /__counts"
}
# delta BEFORE AFTER: field-wise AFTER - BEFORE of two repo_counts lines.
delta() {
  local -a a b d=()
  read -r -a a <<<"$1"
  read -r -a b <<<"$2"
  local i
  for i in "${!a[@]}"; do d+=($((b[i] - a[i]))); done
  echo "${d[*]}"
}

make_chart() { # name templates-function
  local name="$1" dir="$work/src/$1"
  rm -rf "$dir"
  mkdir -p "$dir/templates"
  printf 'apiVersion: v2\nname: %s\ndescription: ferry chart benchmark\nversion: 1.0.0\ntype: application\n' "$name" >"$dir/Chart.yaml"
  "$2" "$dir/templates"
  "$helm" package "$dir" --destination "$charts" >/dev/null
  [[ -f "$charts/$name-1.0.0.tgz" ]] || die "helm package wrote no $charts/$name-1.0.0.tgz"
}
big_templates() { generate "$objects" "$1"; }
small_templates() {
  cat >"$1/configmaps.yaml" <<'EOF'
{{- range $part := list "a" "b" }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-{{ $part }}
  labels: {tier: bench, release: {{ $.Release.Name }}}
data:
  part: {{ $part | quote }}
{{- end }}
EOF
}

# --- scenario 1: one big chart ---------------------------------------------------------------

declare -A samples # key -> space-separated values
record() { samples[$1]="${samples[$1]:-}${samples[$1]:+ }$2"; }
warn() { log "WARNING $*"; record warn "$(tr ' ' '_' <<<"$*")"; }

application() { # name namespace chart
  cat <<YAML
---
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: $1, namespace: $2}
spec:
  source:
    chart: {repoURL: "$repo_url", name: $3, version: "1.0.0"}
  destination: {namespace: $2}
  interval: 1m
  syncPolicy: {automated: true, prune: false, selfHeal: true}
YAML
}

start_bench_ferry() { # log namespace cache
  # The log exists before start_ferry's first grep of it (the background ferry may not have
  # opened it yet: "grep: ...log: No such file or directory").
  : >"$1"
  start_ferry "$1" --namespace "$2" --cache-dir "$3" --http-address 127.0.0.1:0 \
    --helm "$helm" --git-ref-cache-seconds "$ref_cache_s"
}

# Sum of one counter family on ferry's /metrics (0 when absent).
ferry_metric_sum() { # metric-name-prefix
  curl -sf --max-time 10 "http://$(ferry_http_address)/metrics" |
    awk -v m="$1" 'index($0, m) == 1 { n += $NF } END { printf "%d", n }'
}

run_ferry() { # run-label record(0|1)
  local ns="ferry-bench-c-$1" keep="$2" logf t0 secs hwm line before after want inventory available
  logf="$work/ferry-$ns.log"
  delete_ns "$ns"
  rm -rf "$work/cache-$ns"
  create_ns "$ns"
  start_bench_ferry "$logf" "$ns" "$work/cache-$ns"
  local startup="$ferry_startup"
  before="$(repo_counts)"
  t0="$(now)"
  application bench "$ns" bigchart | kubectl apply -f - >/dev/null
  if ! kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null; then
    kubectl get fapp bench -n "$ns" -o yaml | grep -v '^ *- {group' | tail -n 60 >&2 || true
    tail -n 40 "$logf" >&2
    die "ferry: the chart of $objects objects not Ready after ${timeout}s (log $logf)"
  fi
  secs="$(elapsed "$t0" "$(now)")"
  hwm="$(hwm_kib "$ferry_pid")"
  after="$(repo_counts)"
  # ferry's own account of the way to Ready: its reconciles and the time in each stage.
  curl -sf --max-time 10 "http://$(ferry_http_address)/metrics" >"$work/metrics-$ns.txt" || true
  local reconciles stages
  reconciles="$(awk '/^ferry_reconcile_total/ { n += $NF } END { printf "%d", n }' "$work/metrics-$ns.txt")"
  stages="$(awk -F'"' '/^ferry_reconcile_duration_seconds_sum\{stage="/ { split($3, v, " "); printf "%s %.2fs  ", $2, v[2] }' "$work/metrics-$ns.txt")"

  # What Ready=True promised: Synced, Healthy, the archive's revision, every object in the
  # inventory, every Deployment available.
  want="Synced|Healthy|bigchart@1.0.0@sha256:$big_digest|ReconciliationSucceeded"
  line="$(kubectl get fapp bench -n "$ns" -o 'jsonpath={.status.sync.status}|{.status.health.status}|{.status.sync.revision}|{.status.conditions[?(@.type=="Ready")].reason}')"
  inventory="$(kubectl get fapp bench -n "$ns" -o 'jsonpath={range .status.inventory[*]}x{"\n"}{end}' | grep -c x || true)"
  available="$(kubectl get deployment -n "$ns" -o 'jsonpath={range .items[*]}{.status.availableReplicas}{"\n"}{end}' | grep -c '^1$' || true)"
  [[ "$line" == "$want" ]] || die "ferry run $1: Ready=True but status '$line', want '$want'"
  if [[ "$inventory" != "$objects" || "$available" != "$((objects / 10))" ]]; then
    die "ferry run $1: Ready=True but inventory $inventory of $objects, $available of $((objects / 10)) Deployments available"
  fi
  # A fresh ferry with a fresh cache: one index download and one archive download, no more.
  local -a d
  read -r -a d <<<"$(delta "$before" "$after")"
  if ((d[0] != 1 || d[1] != 0 || d[5] != 1 || d[6] != 0)); then
    warn "ferry run $1: repository requests index 200 x${d[0]}, 304 x${d[1]}, archives x${d[5]}, 404 x${d[6]} (want 1, 0, 1, 0)"
  fi
  # ferry's "synced ... applied=N" line marks the end of its apply (health comes after): the
  # counterpart of `helm template | kubectl apply` alone. Its timestamp is this machine's clock.
  local synced_at applied=""
  synced_at="$(grep -m1 -E "synced app=$ns/bench .*applied=" "$logf" | cut -d' ' -f1 || true)"
  [[ -n "$synced_at" ]] && applied="$(elapsed "$t0" "$(date -d "$synced_at" +%s.%N)")"
  log "ferry   chart of $objects objects ($1): ${secs}s to Ready (applied after ${applied:-?}s, start-up ${startup}s), VmHWM $(mib "$hwm") MiB"
  log "        $reconciles reconcile(s) to Ready; time by stage: ${stages:-?}"
  if ((keep)); then
    record reconciles "$reconciles"
    record ferry "$secs"
    [[ -n "$applied" ]] && record fapplied "$applied"
    record startup "$startup"
    record hwm "$(mib "$hwm")"
  fi

  # prune is off: deleting the Application orphans the objects (ferry only removes its
  # finalizer, so it must still run) and the namespace deletion removes them.
  if ! kubectl delete fapp bench -n "$ns" --wait=true --timeout=120s >/dev/null 2>&1; then
    warn "ferry did not remove its finalizer from $ns/bench within 120s"
  fi
  stop_ferry
  delete_ns "$ns"
}

run_floor() { # run-label record(0|1)
  local ns="ferry-bench-h-$1" keep="$2" t0 t1 t2 apply total
  delete_ns "$ns"
  create_ns "$ns"
  t0="$(now)"
  "$helm" template bench "$charts/bigchart-1.0.0.tgz" --namespace "$ns" |
    kubectl apply --server-side --field-manager=bench -n "$ns" -f - >/dev/null
  t1="$(now)"
  wait_available "$ns" $((objects / 10))
  t2="$(now)"
  apply="$(elapsed "$t0" "$t1")"
  total="$(elapsed "$t0" "$t2")"
  log "floor   helm template | kubectl apply ($1): apply ${apply}s, apply + Available ${total}s"
  if ((keep)); then
    record apply "$apply"
    record avail "$total"
  fi
  delete_ns "$ns"
}

# --- scenario 2: a fleet on one repository ---------------------------------------------------

# index.yaml requests in the server's request log between two times, and the gaps (seconds)
# between consecutive ones: "count min median max" ("count - - -" with fewer than two).
index_gaps() { # from to
  python3 - "$1" "$2" "$work/repo.port.log" <<'PY'
import sys
a, b = float(sys.argv[1]), float(sys.argv[2])
t = []
for line in open(sys.argv[3]):
    at, path, _ = line.split()
    if path == "/index.yaml" and a <= float(at) <= b:
        t.append(float(at))
g = sorted(y - x for x, y in zip(t, t[1:]))
print(len(t), *(["%.1f" % g[0], "%.1f" % g[(len(g) - 1) // 2], "%.1f" % g[-1]] if g else ["-"] * 3))
PY
}

fleet() {
  local ns="ferry-bench-fleet" logf="$work/ferry-fleet.log" i t0 t1 c0 c1 c2
  delete_ns "$ns"
  rm -rf "$work/cache-fleet"
  create_ns "$ns"
  start_bench_ferry "$logf" "$ns" "$work/cache-fleet"
  c0="$(repo_counts)"
  t0="$(now)"
  for ((i = 0; i < apps; i++)); do application "app-$(printf %03d "$i")" "$ns" smallchart; done |
    kubectl apply -f - >/dev/null
  local created
  created="$(kubectl get fapp -n "$ns" -o name | wc -l)"
  ((created == apps)) || die "fleet: $created of $apps Applications created"
  if ! kubectl wait --for=condition=Ready fapp --all -n "$ns" --timeout="${timeout}s" >/dev/null; then
    kubectl get fapp -n "$ns" >&2 || true
    tail -n 40 "$logf" >&2
    die "fleet: not every one of $apps Applications Ready after ${timeout}s (log $logf)"
  fi
  t1="$(now)"
  c1="$(repo_counts)"
  fleet_ready="$(elapsed "$t0" "$t1")"

  # Every Application at the small chart's revision, each with its release's two ConfigMaps.
  local want bad cms
  want="Synced|Healthy|smallchart@1.0.0@sha256:$small_digest"
  bad="$(kubectl get fapp -n "$ns" -o 'jsonpath={range .items[*]}{.metadata.name} {.status.sync.status}|{.status.health.status}|{.status.sync.revision}{"\n"}{end}' |
    awk -v w="$want" '$2 != w' | head -n 5)"
  [[ -z "$bad" ]] || die "fleet: Applications Ready but not at '$want': $bad"
  cms="$(kubectl get configmap -n "$ns" -l tier=bench -o name | grep -c '^configmap/app-[0-9]*-[ab]$' || true)"
  ((cms == 2 * apps)) || die "fleet: $cms of $((2 * apps)) ConfigMaps in $ns"
  fleet_to_ready="$(delta "$c0" "$c1")"
  log "fleet: $apps Applications Ready in ${fleet_ready}s; repository requests (index 200 304 cond-200 inm ims, archives, 404): $fleet_to_ready"

  # The window: reconciles and CPU from ferry's side, requests from the repository's.
  local w0 w1 r0 r1 cpu0 cpu1 end
  r0="$(ferry_metric_sum ferry_reconcile_total)"
  cpu0="$(cpu_seconds "$ferry_pid")"
  w0="$(now)"
  log "fleet: steady-state window of ${window}s"
  end=$((SECONDS + window))
  while ((SECONDS < end)); do
    kill -0 "$ferry_pid" 2>/dev/null || { tail -n 40 "$logf" >&2; die "fleet: ferry exited during the window (log $logf)"; }
    sleep $((end - SECONDS < 5 ? end - SECONDS : 5))
  done
  w1="$(now)"
  c2="$(repo_counts)"
  r1="$(ferry_metric_sum ferry_reconcile_total)"
  cpu1="$(cpu_seconds "$ferry_pid")"
  fleet_window="$(delta "$c1" "$c2")"
  fleet_window_secs="$(elapsed "$w0" "$w1")"
  fleet_reconciles=$((r1 - r0))
  fleet_cpu="$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')"
  fleet_gaps="$(index_gaps "$w0" "$w1")"
  fleet_gaps_all="$(index_gaps "$t0" "$w1")"
  fleet_hwm="$(mib "$(hwm_kib "$ferry_pid")")"
  fleet_rss="$(mib "$(rss_kib "$ferry_pid")")"
  log "fleet: window ${fleet_window_secs}s: repository requests $fleet_window, ferry reconciles $fleet_reconciles, CPU ${fleet_cpu}s, index request gaps (n min median max) $fleet_gaps"
  if ! kubectl wait --for=condition=Ready fapp --all -n "$ns" --timeout=60s >/dev/null; then
    kubectl get fapp -n "$ns" >&2 || true
    die "fleet: an Application left Ready in the window (log $logf)"
  fi
  if ! kubectl delete fapp --all -n "$ns" --wait=true --timeout=120s >/dev/null 2>&1; then
    warn "fleet: ferry did not remove every finalizer in $ns within 120s"
  fi
  stop_ferry
  delete_ns "$ns"
}

# --- main ------------------------------------------------------------------------------------

rm -rf "$work"
mkdir -p "$work" "$charts" "$out_dir"
log "ferry: $ferry ($("$ferry" version 2>/dev/null || echo '?'))"
log "cluster: $KUBECONFIG"

# Leftovers of an interrupted run.
for ns in $(kubectl get namespace -l "$bench_label" -o 'jsonpath={.items[*].metadata.name}'); do
  log "deleting leftover namespace $ns"
  delete_ns "$ns"
done

"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
wait_established crd/applications.ferry.dev >/dev/null

start_repo
make_chart bigchart big_templates
make_chart smallchart small_templates
"$helm" repo index "$charts" --url "${repo_url%/}" >/dev/null
big_digest="$(sha256sum "$charts/bigchart-1.0.0.tgz" | cut -d' ' -f1)"
small_digest="$(sha256sum "$charts/smallchart-1.0.0.tgz" | cut -d' ' -f1)"
rendered="$("$helm" template bench "$charts/bigchart-1.0.0.tgz" | grep -c '^kind: ' || true)"
((rendered == objects)) || die "helm template of bigchart renders $rendered objects, not $objects"
log "repository: $repo_url (bigchart $(du -k "$charts/bigchart-1.0.0.tgz" | cut -f1) KiB, index $(wc -c <"$charts/index.yaml") bytes)"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

if ((warmup)); then
  log "warm-up (not counted)"
  run_ferry warmup 0
  run_floor warmup 0
fi
for ((r = 1; r <= runs; r++)); do
  if ((r % 2)); then
    run_ferry "r$r" 1
    run_floor "r$r" 1
  else
    run_floor "r$r" 1
    run_ferry "r$r" 1
  fi
done
fleet
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ----------------------------------------------------------------------------------

row() { # label values unit
  local s
  read -r -a s <<<"$(stats "$2")"
  printf '  %-46s median %9.3f %s   min %9.3f %s   max %9.3f %s   (%s)\n' \
    "$1" "${s[0]}" "$3" "${s[1]}" "$3" "${s[2]}" "$3" "$2"
}
requests() { # "repo_counts delta"
  local -a d
  read -r -a d <<<"$1"
  printf 'index.yaml downloaded (200) %d, revalidated (304) %d, archives downloaded %d' "${d[0]}" "${d[1]}" "${d[5]}"
  ((d[2] || d[6])) && printf ' (failed revalidations %d, 404s %d)' "${d[2]}" "${d[6]}"
  printf '\n'
}
gaps() { # "n min median max"
  local -a g
  read -r -a g <<<"$1"
  if [[ "${g[1]}" == - ]]; then echo "${g[0]} index request(s)"; else
    echo "${g[0]} index requests, ${g[1]}s min / ${g[2]}s median / ${g[3]}s max apart"
  fi
}

server_version="$(kubectl version -o json 2>/dev/null | awk -F'"' '/"gitVersion"/ { v = $4 } END { print v }')"
half=$((interval_s / 2 < ref_cache_s ? interval_s / 2 : ref_cache_s))
read -r -a fw <<<"$fleet_window"
read -r -a fr <<<"$fleet_to_ready"
{
  echo "ferry chart benchmark ($started)"
  echo "ferry:    $("$ferry" version 2>/dev/null || echo '?') ($ferry)"
  echo "cluster:  local testenv, kube-apiserver $server_version, kwok (1 fake Node, 250 Pods)"
  echo "machine:  nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
    "load average $load_before (start) / $load_after (end)"
  echo "repo:     charts packaged and indexed by $("$helm" version --short 2>/dev/null || echo 'helm ?'), served on loopback by benches/lib/chart_repo.py"
  echo "          (ETag + Last-Modified, 304 on If-None-Match / If-Modified-Since)"
  echo
  echo "1. A chart of $objects objects ($((objects - objects / 10)) ConfigMaps, $((objects / 10)) Deployments, replicas 1) from the repository;"
  echo "   $runs run(s) after ${warmup} warm-up, a fresh namespace each, order alternating"
  echo "   ferry: a fresh 'ferry run --namespace <ns>' (empty cache), clock from applying the Application to Ready=True"
  echo "   floor: 'helm template' of the same .tgz | 'kubectl apply --server-side', then one 'kubectl get deployment --watch'"
  echo "          until every Deployment is updated and available"
  row "ferry: Application applied -> Ready" "${samples[ferry]}" s
  [[ -n "${samples[fapplied]:-}" ]] && row "ferry: applied (its 'synced' log line)" "${samples[fapplied]}" s
  row "helm template | kubectl apply --server-side" "${samples[apply]}" s
  row "  ... + Deployments Available (the floor)" "${samples[avail]}" s
  echo "  ratio ferry / floor = $(ratio "${samples[ferry]}" "${samples[avail]}")" \
    "   ferry / (helm template | kubectl apply) alone = $(ratio "${samples[ferry]}" "${samples[apply]}")"
  [[ -n "${samples[fapplied]:-}" ]] &&
    echo "  ratio ferry applied / (helm template | kubectl apply) alone = $(ratio "${samples[fapplied]}" "${samples[apply]}")"
  row "ferry reconciles to Ready" "${samples[reconciles]}" ""
  row "ferry start-up to 'ferry is ready'" "${samples[startup]}" s
  row "ferry peak RSS (VmHWM at Ready)" "${samples[hwm]}" MiB
  echo
  echo "2. $apps Applications (one namespace, one release each) of one 2-ConfigMap chart on one repository, interval 1m"
  echo "   (the index is shared per repository and credentials, checked at most every min(interval/2, --git-ref-cache-seconds) = ${half}s)"
  echo "  until all Ready (${fleet_ready}s): $(requests "$fleet_to_ready")"
  echo "  steady-state window (${fleet_window_secs}s): $(requests "$fleet_window")"
  echo "    $fleet_reconciles reconciles in the window, ferry CPU ${fleet_cpu}s, RSS ${fleet_rss} MiB (peak ${fleet_hwm} MiB)"
  echo "    index requests in the window: $(gaps "$fleet_gaps"); over the whole run: $(gaps "$fleet_gaps_all")"
  echo "  expected: at most one index request per ${half}s, so at most $((window / half + 1)) in the window (fewer when the Applications"
  echo "    reconcile together: then one per interval), one full download at start; one per Application and interval would be"
  echo "    about $((apps * window / interval_s)) in the window and $apps at start"
  echo "  whole run: $((fr[0] + fw[0])) index.yaml downloads and $((fr[1] + fw[1])) revalidations for $apps Applications, $((fr[5] + fw[5])) archive download(s)"
  echo "  conditional headers ferry sent on index.yaml: If-None-Match $((fr[3] + fw[3])), If-Modified-Since $((fr[4] + fw[4]))"
  if [[ -n "${samples[warn]:-}" ]]; then
    echo
    echo "WARNINGS (see the log above): ${samples[warn]}"
  fi
} >"$out"

echo
cat "$out"
echo "written to $out"
