#!/usr/bin/env bash
# Sync benchmark (issue 5): time to first Synced/Healthy for one Application of 100 and of 1,000
# objects (90% ConfigMaps, 10% Deployments with 1 replica), next to `kubectl apply --server-side`
# of the same objects on the same cluster in the same run, plus ferry's peak RSS.
#
# Per size and repetition, each in a fresh namespace (deleted before the next run):
#   ferry    a fresh `ferry run --namespace <ns>` is started and waited for ("ferry is ready");
#            the clock starts when the Application is applied (file:// repository, objects
#            committed beforehand) and stops when its Ready condition is True (= Synced and
#            Healthy: every Deployment Available). Then sync/health/revision/inventory are
#            checked and VmHWM (peak RSS) is read from /proc/<pid>/status.
#   kubectl  `kubectl apply --server-side --field-manager=bench -n <ns> -f <dir>` (apply only),
#            then a `kubectl get deployment --watch` until every Deployment is updated and
#            available (apply + Available: what ferry's Healthy also waits for, so the fair
#            comparison; `kubectl wait --for=condition=Available --all` would add ~0.1s per
#            Deployment, as it waits for one after the other).
# The order of ferry and kubectl alternates between repetitions. One untimed warm-up of the
# smallest size runs first. Results: target/bench/sync.txt (median, min, max, ratios, machine).
#
# Needs the running local cluster (`make testenv-up`) and a ferry binary (`make bench` builds
# target/release/ferry).
#
# Environment:
#   FERRY_TESTENV_STATE        the control plane's state directory (as for testenv.sh)
#   FERRY_BIN                  ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_SYNC_SIZES     object counts (default: "100 1000")
#   FERRY_BENCH_SYNC_RUNS      repetitions per size (default: 3)
#   FERRY_BENCH_SYNC_WARMUP    1 (default) or 0
#   FERRY_BENCH_SYNC_TIMEOUT   seconds one measurement may take (default: 600)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
read -r -a sizes <<<"${FERRY_BENCH_SYNC_SIZES:-100 1000}"
runs="${FERRY_BENCH_SYNC_RUNS:-3}"
warmup="${FERRY_BENCH_SYNC_WARMUP:-1}"
timeout="${FERRY_BENCH_SYNC_TIMEOUT:-600}"
out_dir="$target/bench"
out="$out_dir/sync.txt"
work="$out_dir/sync-work"
bench_label="ferry.dev/bench=sync"

log() { printf '[bench sync] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
# KUBECONFIG, kubectl and the renderers of the local control plane.
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

# --- cleanup ---------------------------------------------------------------------------------

cleanup() {
  local status=$?
  stop_ferry
  delete_bench_namespaces
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- objects ---------------------------------------------------------------------------------

# generate N DIR: the objects (benches/lib/objects.sh, shared with the Flux comparison).
# shellcheck source=lib/objects.sh
source "$here/lib/objects.sh"

declare -A revision
prepare() { # n: a Git repository with the objects under objects/
  local n="$1" repo="$work/repo-$1"
  rm -rf "$repo"
  generate "$n" "$repo/objects"
  git -C "$repo" init -q -b main
  git -C "$repo" add -A
  git -C "$repo" -c user.name=bench -c user.email=bench@ferry.invalid commit -q -m "$n objects"
  revision[$n]="main@sha1:$(git -C "$repo" rev-parse HEAD)"
}

# --- measurements ----------------------------------------------------------------------------

declare -A samples # key -> space-separated values

record() { samples[$1]="${samples[$1]:-}${samples[$1]:+ }$2"; }

run_ferry() { # n run-label record(0|1)
  local n="$1" ns="ferry-bench-f$1-$2" keep="$3" logf t0 t1 secs startup line hwm rss
  logf="$work/ferry-$ns.log"
  delete_ns "$ns"
  rm -rf "$work/cache-$ns"
  create_ns "$ns"
  start_ferry "$logf" --namespace "$ns" --cache-dir "$work/cache-$ns" --http-address 127.0.0.1:0
  startup="$ferry_startup"
  t0="$(now)"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: bench, namespace: $ns}
spec:
  source:
    repoURL: file://$work/repo-$n
    ref: {branch: main}
    path: objects
  destination: {namespace: $ns}
  interval: 1m
  syncPolicy: {automated: true, prune: false, selfHeal: true}
EOF
  if ! kubectl wait --for=condition=Ready "fapp/bench" -n "$ns" --timeout="${timeout}s" >/dev/null; then
    kubectl get fapp bench -n "$ns" -o yaml | grep -v '^ *- {group' >&2 || true
    tail -n 40 "$logf" >&2
    die "ferry: $n objects not Ready after ${timeout}s (log $logf)"
  fi
  t1="$(now)"
  secs="$(elapsed "$t0" "$t1")"
  hwm="$(awk '/^VmHWM:/ { print $2 }' "/proc/$ferry_pid/status")"
  rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/$ferry_pid/status")"

  # What Ready=True promised: Synced, Healthy, this revision, every object in the inventory, every
  # Deployment available.
  line="$(kubectl get fapp bench -n "$ns" -o 'jsonpath={.status.sync.status}|{.status.health.status}|{.status.sync.revision}|{.status.conditions[?(@.type=="Ready")].reason}')"
  local inventory available
  inventory="$(kubectl get fapp bench -n "$ns" -o 'jsonpath={range .status.inventory[*]}x{"\n"}{end}' | grep -c x || true)"
  available="$(kubectl get deployment -n "$ns" -o 'jsonpath={range .items[*]}{.status.availableReplicas}{"\n"}{end}' | grep -c '^1$' || true)"
  if [[ "$line" != "Synced|Healthy|${revision[$n]}|ReconciliationSucceeded" || "$inventory" != "$n" || "$available" != "$((n / 10))" ]]; then
    log "WARNING ferry run $ns: Ready=True but status '$line', inventory $inventory of $n, $available of $((n / 10)) Deployments available"
    record "warn" "$ns"
  fi
  # ferry's own "synced ... applied=N" log line marks the end of its apply (health comes after):
  # the counterpart of `kubectl apply` alone. Its timestamp is this machine's clock too.
  local synced_at applied=""
  synced_at="$(grep -m1 -E "synced app=$ns/bench .*applied=" "$logf" | cut -d' ' -f1 || true)"
  [[ -n "$synced_at" ]] && applied="$(elapsed "$t0" "$(date -d "$synced_at" +%s.%N)")"
  log "ferry   $n objects ($2): ${secs}s to Ready (applied after ${applied:-?}s, start-up ${startup}s), VmHWM $((hwm / 1024)) MiB, VmRSS $((rss / 1024)) MiB"
  if ((keep)); then
    [[ -n "$applied" ]] && record "fapplied-$n" "$applied"
    record "ferry-$n" "$secs"
    record "startup-$n" "$startup"
    record "hwm-$n" "$(mib "$hwm")"
  fi

  # Clean up: prune is off, so deleting the Application orphans the objects (ferry only removes
  # its finalizer) and the namespace deletion removes them.
  if ! kubectl delete fapp bench -n "$ns" --wait=true --timeout=120s >/dev/null 2>&1; then
    log "WARNING ferry did not remove its finalizer from $ns/bench within 120s; removing it by hand"
    record "warn" "$ns finalizer"
  fi
  stop_ferry
  delete_ns "$ns"
}

run_kubectl() { # n run-label record(0|1)
  local n="$1" ns="ferry-bench-k$1-$2" keep="$3" t0 t1 t2 apply total
  delete_ns "$ns"
  create_ns "$ns"
  t0="$(now)"
  kubectl apply --server-side --field-manager=bench -n "$ns" -f "$work/repo-$n/objects" >/dev/null
  t1="$(now)"
  wait_available "$ns" $((n / 10))
  t2="$(now)"
  apply="$(elapsed "$t0" "$t1")"
  total="$(elapsed "$t0" "$t2")"
  log "kubectl $n objects ($2): apply ${apply}s, apply + Available ${total}s"
  if ((keep)); then
    record "apply-$n" "$apply"
    record "avail-$n" "$total"
  fi
  delete_ns "$ns"
}

# --- statistics ------------------------------------------------------------------------------


# --- main ------------------------------------------------------------------------------------

mkdir -p "$work" "$out_dir"
log "ferry: $ferry ($("$ferry" version 2>/dev/null || echo '?'))"
log "cluster: $KUBECONFIG"

# Leftovers of an interrupted run.
for ns in $(kubectl get namespace -l "$bench_label" -o 'jsonpath={.items[*].metadata.name}'); do
  log "deleting leftover namespace $ns"
  delete_ns "$ns"
done

"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
wait_established crd/applications.ferry.dev >/dev/null

for n in "${sizes[@]}"; do
  ((n % 10 == 0 && n / 10 <= 200)) || die "sizes must be multiples of 10 with at most 200 Deployments (the kwok Node holds 250 Pods): $n"
  prepare "$n"
done

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

if ((warmup)); then
  log "warm-up (not counted): ${sizes[0]} objects"
  run_ferry "${sizes[0]}" warmup 0
  run_kubectl "${sizes[0]}" warmup 0
fi

for ((r = 1; r <= runs; r++)); do
  for n in "${sizes[@]}"; do
    if ((r % 2)); then
      run_ferry "$n" "r$r" 1
      run_kubectl "$n" "r$r" 1
    else
      run_kubectl "$n" "r$r" 1
      run_ferry "$n" "r$r" 1
    fi
  done
done

load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

# --- report ----------------------------------------------------------------------------------

row() { # label values unit
  local s
  read -r -a s <<<"$(stats "$2")"
  printf '  %-40s median %9.3f %s   min %9.3f %s   max %9.3f %s   (%s)\n' \
    "$1" "${s[0]}" "$3" "${s[1]}" "$3" "${s[2]}" "$3" "$2"
}

server_version="$(kubectl version -o json 2>/dev/null | awk -F'"' '/"gitVersion"/ { v = $4 } END { print v }')"
{
  echo "ferry sync benchmark ($started)"
  echo "ferry:    $("$ferry" version 2>/dev/null || echo '?') ($ferry)"
  echo "cluster:  local testenv, kube-apiserver $server_version, kwok (1 fake Node, 250 Pods)"
  echo "machine:  nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)," \
    "$(awk '/^MemTotal/ { printf "%.1f GiB RAM", $2 / 1048576 }' /proc/meminfo)," \
    "load average $load_before (start) / $load_after (end)"
  echo "method:   $runs runs per size after ${warmup} warm-up, a fresh namespace each; objects 90% ConfigMaps, 10% Deployments (replicas 1)"
  echo "          ferry: a fresh 'ferry run --namespace <ns>', clock from applying the Application (file:// repo) to Ready=True (Synced/Healthy)"
  echo "          kubectl: 'kubectl apply --server-side --field-manager=bench -n <ns> -f <dir>', then one 'kubectl get deployment --watch'"
  echo "          until every Deployment is updated and available ('kubectl wait --all' would add ~0.1s per Deployment)"
  for n in "${sizes[@]}"; do
    echo
    echo "$n objects ($((n - n / 10)) ConfigMaps, $((n / 10)) Deployments):"
    row "ferry: Application applied -> Ready" "${samples[ferry-$n]}" s
    [[ -n "${samples[fapplied-$n]:-}" ]] && row "ferry: applied (its 'synced' log line)" "${samples[fapplied-$n]}" s
    row "kubectl apply --server-side" "${samples[apply-$n]}" s
    row "kubectl apply + Deployments Available" "${samples[avail-$n]}" s
    echo "  ratio ferry / (kubectl apply + Available) = $(ratio "${samples[ferry-$n]}" "${samples[avail-$n]}")" \
      "   ferry / kubectl apply alone = $(ratio "${samples[ferry-$n]}" "${samples[apply-$n]}")"
    [[ -n "${samples[fapplied-$n]:-}" ]] &&
      echo "  ratio ferry applied / kubectl apply alone = $(ratio "${samples[fapplied-$n]}" "${samples[apply-$n]}")"
    row "ferry start-up to 'ferry is ready'" "${samples[startup-$n]}" s
    row "ferry peak RSS (VmHWM at Ready)" "${samples[hwm-$n]}" MiB
  done
  if [[ -n "${samples[warn]:-}" ]]; then
    echo
    echo "WARNINGS (see the log above): ${samples[warn]}"
  fi
} >"$out"

echo
cat "$out"
echo "written to $out"
