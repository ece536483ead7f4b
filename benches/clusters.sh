#!/usr/bin/env bash
# Many clusters (issue 23): what each extra cluster costs one ferry at steady state, with the
# same Applications on each. Per remote cluster ferry keeps one link (one connection pool, one
# discovery, one metadata-only watch per kind it manages there) shared by all its Applications;
# this bench shows what that costs and that it does not grow with the Applications.
#
# Set-up: the local control plane (tests/testenv, the one `make testenv-up` starts) where ferry
# runs and the Applications live, and N extra control planes (FERRY_TESTENV_PROFILE=small, state
# in <target>/testenv-bench-<n>, stopped at the end, also on failure), each prepared with
# `scripts/remote-cluster-kubeconfig.sh --admin` and registered in the local cluster as a
# `Cluster` (bench-<n>) with its kubeconfig Secret, as a user would. One repository (served by
# benches/lib/git_http.py) holds A apps of 6 objects (5 ConfigMaps, 1 Deployment with replicas
# 0); one ferry (`ferry run --namespace`) reconciles every Application, interval 1m, automated,
# prune, self-heal.
#
# Phases, each adding A Applications (one per app of the repository) on one more cluster:
#   a  A Applications deploying to the local cluster;
#   b  plus A on remote cluster 1 (first FEW of them, measured once Ready, then the rest);
#   c  plus A on remote cluster 2; and so on for N clusters.
# Each phase waits until every Application is Ready (a timeout fails the bench), lets ferry
# settle, then measures a window of steady state:
#   - ferry's RSS at the window's end (VmRSS) and its peak (VmHWM), CPU seconds in the window;
#   - ferry's own API requests in the window by cluster and verb (ferry_api_requests_total, whose
#     cluster label is the Cluster's name, in-cluster for the local one), and since ferry started;
#   - each remote API server's own view: the requests it dispatched for ferry's identity (API
#     Priority and Fairness, flow schema `service-accounts`, which nothing else in those clusters
#     uses: the controllers there run as kube-system ServiceAccounts, kwok as an admin) and the
#     watches it holds open (apiserver_longrunning_requests, verb WATCH, by resource), less what
#     it held just before ferry first used it; the same watch count for the local API server
#     (less what it held before ferry started);
#   - the links ferry made to each remote cluster (its log's "connected to a remote cluster").
#   - Git requests in the window (ref advertisements, fetches).
# In phase b the watches and RSS are also taken at FEW Applications on remote cluster 1, to show
# that the watches do not grow with Applications and to tell the link's memory from the
# Applications'.
#
# A measurement, not a test: no timing is asserted. The bench fails (non-zero) when something is
# functionally wrong: an Application not Ready within the timeout, objects missing in a cluster,
# ferry exiting.
#
# Usage: clusters.sh [full|quick]. full (make bench; 2 clusters, 50 Applications each, 120 s
# windows, ~8 min) writes target/bench/clusters.md and rewrites the "Many clusters" section of
# BENCHMARKS.md (benches/lib/report.py); quick (1 cluster, 10 Applications, 30 s windows, ~2 min)
# writes target/bench/clusters-quick.md only. Samples: target/bench/clusters-<mode>/samples.tsv.
# By hand, smaller still: FERRY_BENCH_CLUSTER_APPS=5 FERRY_BENCH_CLUSTERS=1 benches/clusters.sh quick
#
# Needs the running local cluster (`make testenv-up`) and a ferry binary (`make bench` builds
# target/release/ferry).
#
# Environment:
#   FERRY_TESTENV_STATE            the local control plane's state directory (as for testenv.sh)
#   FERRY_BIN                      ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_CLUSTERS           remote clusters (default: full 2, quick 1)
#   FERRY_BENCH_CLUSTER_APPS       Applications per cluster (default: full 50, quick 10)
#   FERRY_BENCH_CLUSTER_FEW        Applications on remote cluster 1 at the intermediate step
#                                  (default: a fifth of the Applications, at least 1)
#   FERRY_BENCH_CLUSTER_WINDOW     seconds of steady state per phase (default: full 120, quick 30)
#   FERRY_BENCH_CLUSTER_SETTLE     seconds between all Ready and the window (default: full 15, quick 5)
#   FERRY_BENCH_CLUSTER_INTERVAL   the Applications' interval (default: 1m)
#   FERRY_BENCH_CLUSTER_TIMEOUT    seconds a phase may take to be Ready (default: 600)
#   FERRY_BENCH_CLUSTER_KEEP       1: leave the extra control planes running at the end (a later
#                                  run reuses them); default 0, stop them
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
mode="${1:-full}"
case "$mode" in
  full) d_clusters=2 d_apps=50 d_window=120 d_settle=15 ;;
  quick) d_clusters=1 d_apps=10 d_window=30 d_settle=5 ;;
  *) echo "usage: $0 [full|quick]" >&2; exit 2 ;;
esac
clusters="${FERRY_BENCH_CLUSTERS:-$d_clusters}"
apps="${FERRY_BENCH_CLUSTER_APPS:-$d_apps}"
window="${FERRY_BENCH_CLUSTER_WINDOW:-$d_window}"
settle="${FERRY_BENCH_CLUSTER_SETTLE:-$d_settle}"
interval="${FERRY_BENCH_CLUSTER_INTERVAL:-1m}"
timeout="${FERRY_BENCH_CLUSTER_TIMEOUT:-600}"
keep="${FERRY_BENCH_CLUSTER_KEEP:-0}"
out_dir="$target/bench"
work="$out_dir/clusters-$mode"
samples_file="$work/samples.tsv"
if [[ "$mode" == full ]]; then
  section="$out_dir/clusters.md" report="$root/BENCHMARKS.md"
else
  section="$out_dir/clusters-quick.md" report=""
fi
ns="ferry-bench-clusters"   # the Applications, Clusters and Secrets; the local apps' objects
remote_ns="ferry-bench-apps" # the remote apps' objects, in each remote cluster
bench_label="ferry.dev/bench=clusters"
app_label="bench.ferry.dev/cluster"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
t_start="$SECONDS"

log() { printf '[bench clusters] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
[[ "$clusters" =~ ^[1-9]$ ]] || die "FERRY_BENCH_CLUSTERS must be 1..9: $clusters"
[[ "$apps" =~ ^[1-9][0-9]{0,2}$ ]] || die "FERRY_BENCH_CLUSTER_APPS must be 1..999: $apps"
few="${FERRY_BENCH_CLUSTER_FEW:-$((apps / 5 > 0 ? apps / 5 : 1))}"
if ! [[ "$few" =~ ^[0-9]+$ ]] || ((few < 1 || few > apps)); then
  die "FERRY_BENCH_CLUSTER_FEW must be 1..$apps: $few"
fi
[[ "$window" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_CLUSTER_WINDOW must be seconds: $window"
[[ "$settle" =~ ^[0-9]+$ ]] || die "FERRY_BENCH_CLUSTER_SETTLE must be seconds: $settle"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_CLUSTER_TIMEOUT must be seconds: $timeout"
command -v curl >/dev/null || die "curl is needed (make deps installs it)"
# KUBECONFIG, kubectl and the renderers of the local control plane.
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

# Every measurement is one "key<TAB>value" line of $samples_file, read by benches/lib/report.py.
record() { printf '%s\t%s\n' "$1" "$2" >>"$samples_file"; }

# --- the extra control planes ----------------------------------------------------------------

# Remote cluster n (1..N): its state directory, its Cluster's name, and kubectl as its admin.
remote_state() { echo "$target/testenv-bench-$1"; }
remote_name() { echo "bench-$1"; }
rkubectl() { # n args...
  local state
  state="$(remote_state "$1")"
  shift
  "$state/bin/kubectl" --kubeconfig "$state/kubeconfig" "$@"
}

remotes_started=()
remote_up() { # n
  local state
  state="$(remote_state "$1")"
  remotes_started+=("$1")
  FERRY_TESTENV_STATE="$state" FERRY_TESTENV_PROFILE=small "$root/tests/testenv/testenv.sh" up \
    >>"$work/testenv-bench-$1.log" 2>&1 ||
    { tail -n 20 "$work/testenv-bench-$1.log" >&2; die "remote cluster $1 did not start (log $work/testenv-bench-$1.log)"; }
}

remotes_down() {
  local n
  ((keep)) && { log "leaving the extra control planes running (FERRY_BENCH_CLUSTER_KEEP=1)"; return 0; }
  for n in "${remotes_started[@]}"; do
    FERRY_TESTENV_STATE="$(remote_state "$n")" "$root/tests/testenv/testenv.sh" down \
      >>"$work/testenv-bench-$n.log" 2>&1 || log "stopping remote cluster $n failed (see $work/testenv-bench-$n.log)"
  done
  remotes_started=()
}

# The remote cluster prepared as a user would (--admin: ferry writes there as itself, the
# Applications name no ServiceAccount), and registered here as Cluster bench-<n> with its
# kubeconfig Secret; its namespace for the apps' objects made empty.
remote_register() { # n
  local n="$1" name kc_file state
  name="$(remote_name "$n")"
  state="$(remote_state "$n")"
  kc_file="$work/$name.kubeconfig"
  KUBECONFIG="$state/kubeconfig" KUBECTL="$state/bin/kubectl" \
    "$root/scripts/remote-cluster-kubeconfig.sh" --name "$name" --admin >"$kc_file" 2>>"$work/testenv-bench-$n.log" ||
    die "scripts/remote-cluster-kubeconfig.sh failed for $name (log $work/testenv-bench-$n.log)"
  kubectl -n "$ns" create secret generic "$name-kubeconfig" --from-file=value="$kc_file" >/dev/null
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Cluster
metadata: {name: $name, namespace: $ns, labels: {bench: clusters}}
spec:
  kubeConfig:
    secretRef: {name: $name-kubeconfig}
EOF
  # A kept cluster of an earlier run: its objects go, so that every run syncs from nothing.
  rkubectl "$n" delete namespace "$remote_ns" --ignore-not-found --wait=true --timeout=300s >/dev/null
  rkubectl "$n" create namespace "$remote_ns" >/dev/null
}

# --- cleanup ---------------------------------------------------------------------------------

cleanup() {
  local status=$?
  stop_ferry
  git_http_stop
  # delete_ns drops the Applications' finalizers first (ferry is stopped by now).
  delete_bench_namespaces
  remotes_down
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the repository --------------------------------------------------------------------------

# App i: 5 ConfigMaps and 1 Deployment with no replicas (nothing for the small clusters'
# controllers and kwok to run), names prefixed aNNN- since the local apps share one namespace.
app_objects() { # dir prefix
  local dir="$1" p="$2" i
  mkdir -p "$dir"
  for ((i = 0; i < 5; i++)); do
    cat <<EOF
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: ${p}cfg-$i
  labels: {tier: bench}
data:
  greeting: hello $i
  settings.json: '{"index": $i}'
EOF
  done >"$dir/configmaps.yaml"
  cat >"$dir/deployment.yaml" <<EOF
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: ${p}app
  labels: {app: ${p}app, tier: bench}
spec:
  replicas: 0
  selector:
    matchLabels: {app: ${p}app}
  template:
    metadata:
      labels: {app: ${p}app, tier: bench}
    spec:
      containers:
      - name: app
        image: registry.example/bench/app:1.0.0
        envFrom: [{configMapRef: {name: ${p}cfg-0}}]
EOF
}

prepare_repo() {
  local clone="$work/clone" a id
  rm -rf "$clone"
  for ((a = 0; a < apps; a++)); do
    id="$(printf '%03d' "$a")"
    app_objects "$clone/apps/app-$id" "a$id-"
  done
  publish_repo clusters "$clone" "$apps apps"
}

# --- Applications and readiness --------------------------------------------------------------

# Applications FROM..TO-1 of the repository deploying to CLUSTER (in-cluster: the local one),
# named <cluster>-NNN and labelled with the cluster.
apply_apps() { # cluster from to
  local cluster="$1" from="$2" to="$3" a id dest
  if [[ "$cluster" == in-cluster ]]; then dest="{namespace: $ns}"; else dest="{cluster: $cluster, namespace: $remote_ns}"; fi
  for ((a = from; a < to; a++)); do
    id="$(printf '%03d' "$a")"
    cat <<EOF
---
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: $cluster-$id, namespace: $ns, labels: {$app_label: $cluster}}
spec:
  source: {repoURL: "http://127.0.0.1:$git_http_port/clusters.git", ref: {branch: main}, path: apps/app-$id}
  destination: $dest
  interval: $interval
  syncPolicy: {automated: true, prune: true, selfHeal: true}
EOF
  done | kubectl apply -f - >/dev/null
}

# "name Ready-status reason" of the Applications matching SELECTOR.
app_states() { # selector
  kubectl get fapp -n "$ns" -l "$1" \
    -o 'jsonpath={range .items[*]}{.metadata.name} {.status.conditions[?(@.type=="Ready")].status} {.status.conditions[?(@.type=="Ready")].reason}{"\n"}{end}'
}

# Until WANT Applications matching SELECTOR are Ready at once, polled once a second (a kubectl
# listing Applications costs the CPU ferry is being measured with). Dies after $timeout
# seconds, naming the ones not Ready and why. Prints the seconds since T0.
wait_ready() { # selector want t0
  local sel="$1" want="$2" t0="$3" deadline=$((SECONDS + timeout)) ready
  while :; do
    ready="$(app_states "$sel" | awk '$2 == "True"' | wc -l)"
    ((ready == want)) && break
    if ((SECONDS >= deadline)); then
      app_states "$sel" | awk '$2 != "True"' | head -n 10 >&2
      kubectl get fapp -n "$ns" -l "$sel" \
        -o 'jsonpath={range .items[*]}{.metadata.name}: {.status.conditions[?(@.type=="Ready")].message}{"\n"}{end}' |
        grep -v ': $' | head -n 5 >&2 || true
      tail -n 30 "$ferry_log" >&2
      die "$ready of $want Applications ($sel) Ready after ${timeout}s (ferry log $ferry_log)"
    fi
    kill -0 "$ferry_pid" 2>/dev/null || { tail -n 30 "$ferry_log" >&2; die "ferry exited (log $ferry_log)"; }
    sleep 1
  done
  elapsed "$t0" "$(now)"
}

# Every object of the first N apps is in the cluster: 5 ConfigMaps and a Deployment each.
check_objects() { # kubectl-function... -- n
  local -a kc=()
  while [[ "$1" != -- ]]; do kc+=("$1"); shift; done
  local n="$2" where="$3" cms deps
  cms="$("${kc[@]}" get configmap -n "$where" -l tier=bench -o name | grep -c '^configmap/a[0-9]*-cfg-[0-9]$' || true)"
  deps="$("${kc[@]}" get deployment -n "$where" -l tier=bench -o name | grep -c '^deployment.apps/a[0-9]*-app$' || true)"
  ((cms == 5 * n && deps == n)) || die "${kc[*]}: $cms of $((5 * n)) ConfigMaps and $deps of $n Deployments in $where"
}

# --- snapshots -------------------------------------------------------------------------------

# awk: label(line, name), the value of label NAME of a Prometheus sample line ("" when absent).
# shellcheck disable=SC2016  # awk's $0, not the shell's
awk_label='function label(s, name) {
  if (!match(s, "[{,]" name "=\"[^\"]*\"")) return ""
  return substr(s, RSTART + length(name) + 3, RLENGTH - length(name) - 4)
}'

# ferry's requests so far, "cluster verb count" (summed over results).
ferry_requests() {
  curl -sf --max-time 10 "http://$(ferry_http_address)/metrics" | awk "$awk_label"'
    /^ferry_api_requests_total\{/ { n[label($0, "cluster") " " label($0, "verb")] += $NF }
    END { for (k in n) print k, n[k] }' | sort || die "ferry's /metrics did not answer"
}

# An API server's view: "watch <group>/<resource>/<scope> <open>" per resource with open
# watches, and "dispatched <n>", the requests API Priority and Fairness dispatched for the
# flow schema `service-accounts` so far.
apiserver_view() { # kubectl-function...
  "$@" get --raw /metrics | awk "$awk_label"'
    /^apiserver_longrunning_requests\{/ && label($0, "verb") == "WATCH" {
      g = label($0, "group")
      w[(g == "" ? "core" : g) "/" label($0, "resource") "/" label($0, "scope")] += $NF
    }
    /^apiserver_flowcontrol_dispatched_requests_total\{/ && /flow_schema="service-accounts"/ { d += $NF }
    END { for (k in w) print "watch", k, w[k]; print "dispatched", d + 0 }' | sort
}

# Snapshot of everything a window compares, into DIR: ferry's requests, CPU, memory, Git, and
# each API server's view (local: local.view, remote n: remote-<n>.view).
snapshot() { # dir remotes-linked
  local dir="$1" linked="$2" n
  mkdir -p "$dir"
  ferry_requests >"$dir/requests"
  echo "$(cpu_seconds "$ferry_pid") $(rss_kib "$ferry_pid") $(hwm_kib "$ferry_pid") $(git_http_requests) $(now)" >"$dir/process"
  apiserver_view kubectl >"$dir/local.view"
  for ((n = 1; n <= linked; n++)); do apiserver_view rkubectl "$n" >"$dir/remote-$n.view"; done
}

# Open watches of a view less those of the baseline view (the API server before ferry
# started), per resource, "resource count" for those that differ.
watch_delta() { # baseline-view view
  awk '$1 == "watch" { if (FILENAME == ARGV[1]) b[$2] = $3; else a[$2] = $3; seen[$2] = 1 }
       END { for (k in seen) if (a[k] - b[k] != 0) print k, a[k] - b[k] }' "$1" "$2" | sort
}

# Records, under PREFIX, the watches ferry holds open in each cluster by the API servers' view:
# PREFIX/watches/<cluster>/<resource> and PREFIX/watches/<cluster> (the total).
record_watches() { # prefix dir linked
  local prefix="$1" dir="$2" linked="$3" n cluster view res count total
  for ((n = 0; n <= linked; n++)); do
    if ((n == 0)); then cluster=in-cluster; view=local.view; else cluster="$(remote_name "$n")"; view="remote-$n.view"; fi
    total=0
    while read -r res count; do
      record "$prefix/watches/$cluster/$res" "$count"
      total=$((total + count))
    done < <(watch_delta "$work/baseline/$view" "$dir/$view")
    record "$prefix/watches/$cluster" "$total"
  done
}

# Records PREFIX/connects/<cluster>: how many links to each remote cluster ferry made so far,
# by its log ("connected to a remote cluster"): one each, unless first uses raced.
record_connects() { # prefix linked
  local n name
  for ((n = 1; n <= $2; n++)); do
    name="$(remote_name "$n")"
    record "$1/connects/$name" "$(grep -c "connected to a remote cluster cluster=$ns/$name " "$ferry_log" || true)"
  done
}

# --- a phase ---------------------------------------------------------------------------------

# Phase P (0: the local cluster; n: remote cluster n) is in place and Ready: settle, measure a
# window, record.
measure() { # phase linked
  local p="$1" linked="$2" b="$work/p$1-before" a="$work/p$1-after" end
  local -a pb pa
  wait_no_terminating
  sleep "$settle" # ferry's last reconciles of the phase, not part of the steady state
  snapshot "$b" "$linked"
  log "phase $p: measuring ${window}s of steady state"
  end=$((SECONDS + window))
  while ((SECONDS < end)); do # the measurement window itself, checking that ferry still runs
    kill -0 "$ferry_pid" 2>/dev/null || { tail -n 30 "$ferry_log" >&2; die "ferry exited during the window (log $ferry_log)"; }
    sleep $((end - SECONDS < 5 ? end - SECONDS : 5))
  done
  snapshot "$a" "$linked"
  read -r -a pb <"$b/process"
  read -r -a pa <"$a/process"
  record "p$p/window" "$(elapsed "${pb[5]}" "${pa[5]}")"
  record "p$p/cpu" "$(awk -v x="${pa[0]}" -v y="${pb[0]}" 'BEGIN { printf "%.2f", x - y }')"
  record "p$p/rss" "${pa[1]}"
  record "p$p/hwm" "${pa[2]}"
  record "p$p/git-refs" "$((pa[3] - pb[3]))"
  record "p$p/git-fetches" "$((pa[4] - pb[4]))"
  local cluster verb count
  # ferry's requests by cluster and verb: in the window, and since it started.
  while read -r cluster verb count; do record "p$p/req/$cluster/$verb" "$count"; done < <(
    awk 'FILENAME == ARGV[1] { b[$1 " " $2] = $3; next } { print $1, $2, $3 - b[$1 " " $2] }' "$b/requests" "$a/requests")
  while read -r cluster verb count; do record "p$p/total/$cluster/$verb" "$count"; done <"$a/requests"
  local n d0 d1
  for ((n = 1; n <= linked; n++)); do
    d0="$(awk '$1 == "dispatched" { print $2 }' "$b/remote-$n.view")"
    d1="$(awk '$1 == "dispatched" { print $2 }' "$a/remote-$n.view")"
    record "p$p/apiserver/$(remote_name "$n")" "$((d1 - d0))"
  done
  record_watches "p$p" "$a" "$linked"
  record_connects "p$p" "$linked"
  # Still every Application Ready at the end of the window.
  local want not
  want="$(kubectl get fapp -n "$ns" -o name | wc -l)"
  not="$(app_states "$app_label" | awk '$2 != "True"' | head -n 5)"
  [[ -z "$not" ]] || die "phase $p: Applications left Ready in the window: $not"
  log "phase $p: $want Applications, RSS $(mib "${pa[1]}") MiB (peak $(mib "${pa[2]}")), CPU $(awk -v x="${pa[0]}" -v y="${pb[0]}" 'BEGIN { printf "%.2f", x - y }')s in the window"
}

# Phase 0: A Applications on the local cluster.
phase_local() {
  local t0 secs
  log "phase 0: $apps Applications on the local cluster"
  t0="$(now)"
  apply_apps in-cluster 0 "$apps"
  secs="$(wait_ready "$app_label=in-cluster" "$apps" "$t0")"
  record p0/ready "$secs"
  record p0/apps "$apps"
  check_objects kubectl -- "$apps" "$ns"
  log "phase 0: $apps Applications Ready after ${secs}s"
  measure 0 0
}

# Phase n: A more Applications, on remote cluster n. For cluster 1, FEW first: their watches
# and ferry's RSS once Ready and settled.
phase_remote() { # n
  local n="$1" name t0 secs first=0
  name="$(remote_name "$n")"
  log "phase $n: $apps Applications on remote cluster $name"
  # The remote API server before ferry uses it: the watches its own controllers hold.
  apiserver_view rkubectl "$n" >"$work/baseline/remote-$n.view"
  t0="$(now)"
  if ((n == 1 && few < apps)); then
    apply_apps "$name" 0 "$few"
    secs="$(wait_ready "$app_label=$name" "$few" "$t0")"
    record few/ready "$secs"
    log "phase $n: $few Applications on $name Ready after ${secs}s"
    sleep "$settle"
    snapshot "$work/few" 1
    local -a pf
    read -r -a pf <"$work/few/process"
    record few/apps "$few"
    record few/rss "${pf[1]}"
    record_watches few "$work/few" 1
    record_connects few 1
    local cluster verb count
    while read -r cluster verb count; do record "few/total/$cluster/$verb" "$count"; done <"$work/few/requests"
    first="$few"
    t0="$(now)"
  fi
  apply_apps "$name" "$first" "$apps"
  secs="$(wait_ready "$app_label=$name" "$apps" "$t0")"
  record "p$n/ready" "$secs"
  record "p$n/apps" "$((apps * (n + 1)))"
  check_objects rkubectl "$n" -- "$apps" "$remote_ns"
  log "phase $n: $apps Applications on $name Ready after ${secs}s"
  measure "$n" "$n"
}

# --- main ------------------------------------------------------------------------------------

rm -rf "$work"
mkdir -p "$work/repos" "$out_dir"
: >"$samples_file"
log "ferry: $ferry ($("$ferry" version 2>/dev/null || echo '?'))"
log "local cluster: $KUBECONFIG; $clusters remote cluster(s), $apps Applications each, ${window}s windows"

# Leftovers of an interrupted run.
for old in $(kubectl get namespace -l "$bench_label" -o 'jsonpath={.items[*].metadata.name}'); do
  log "deleting leftover namespace $old"
  delete_ns "$old"
done

"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
wait_established crd/applications.ferry.dev crd/clusters.ferry.dev >/dev/null

for ((n = 1; n <= clusters; n++)); do
  log "starting remote cluster $n ($(remote_state "$n"), profile small)"
  remote_up "$n"
done
create_ns "$ns"
for ((n = 1; n <= clusters; n++)); do remote_register "$n"; done

prepare_repo
git_http_start "$work/repos" "$work/git-requests.log"

# The local API server before ferry: the watches its own controllers hold. The
# controller-manager (garbage collector, quotas) starts watching new CRDs' kinds cluster-wide
# within ~30 s of their creation: waited for, or those watches would count as ferry's. (A remote
# cluster's baseline is taken just before ferry first uses it, long after its Gateway API CRDs
# were installed.)
deadline=$((SECONDS + 90))
until apiserver_view kubectl | grep -q '^watch ferry.dev/clusters/cluster [1-9]'; do
  ((SECONDS < deadline)) || { log "the controller-manager does not watch Clusters; local watch counts may include its watches"; break; }
  sleep 2
done
mkdir -p "$work/baseline"
apiserver_view kubectl >"$work/baseline/local.view"

load_start="$(cut -d' ' -f1-3 /proc/loadavg)"
start_ferry "$work/ferry.log" --namespace "$ns" --cache-dir "$work/cache" --http-address 127.0.0.1:0
log "ferry ready after ${ferry_startup}s (pid $ferry_pid, http $(ferry_http_address))"
sleep "$settle"
record start/rss "$(rss_kib "$ferry_pid")"

phase_local
for ((n = 1; n <= clusters; n++)); do phase_remote "$n"; done
load_end="$(cut -d' ' -f1-3 /proc/loadavg)"

server_version() { "$@" version -o json 2>/dev/null | awk -F'"' '/"gitVersion"/ { v = $4 } END { print v }'; }
{
  printf 'mode\t%s\n' "$mode"
  printf 'date\t%s\n' "$started"
  printf 'duration\t%s\n' "$((SECONDS - t_start))"
  printf 'ferry\t%s\n' "$("$ferry" version)"
  printf 'ferry_commit\t%s\n' "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'kubernetes\t%s\n' "$(server_version kubectl)"
  printf 'kubernetes_remote\t%s\n' "$(server_version rkubectl 1)"
  printf 'cpu\t%s\n' "$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'memory\t%s\n' "$(awk '/^MemTotal/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)"
  printf 'kernel\t%s\n' "$(uname -r)"
  printf 'load_start\t%s\n' "$load_start"
  printf 'load\t%s\n' "$load_end"
  printf 'clusters\t%s\n' "$clusters"
  printf 'apps\t%s\n' "$apps"
  printf 'few\t%s\n' "$few"
  printf 'window\t%s\n' "$window"
  printf 'settle\t%s\n' "$settle"
  printf 'interval\t%s\n' "$interval"
  printf 'ferry_startup\t%s\n' "$ferry_startup"
} >"$work/meta.tsv"
python3 "$here/lib/report.py" clusters "$work/meta.tsv" "$samples_file" "$section" ${report:+"$report"}
cat "$section"
log "done in $((SECONDS - t_start))s: $section${report:+, $report}"
