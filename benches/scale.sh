#!/usr/bin/env bash
# ferry at fleet scale, next to Flux and Argo CD on the same cluster and Git server (issue 25).
# Each tool runs alone as a local process, freshly started and scoped to a fresh namespace,
# reading bare repositories through the same git smart-HTTP server (benches/lib/git_http.py).
#
#   A. Flux's own benchmark shape (fluxcd/flux-benchmark): N apps from one repository, each a
#      Deployment with replicas 0, a ServiceAccount, a Service and an Ingress. ferry: N
#      Applications; Flux: one GitRepository (created and Ready first, untimed) and N
#      Kustomizations (prune, wait); Argo CD: N Applications (automated, prune, selfHeal). The
#      clock runs from the first `kubectl create` of the N apps until every one has been Ready
#      at least once (ferry Ready; Flux Ready; Argo CD Synced and Healthy). kwok runs no ingress
#      controller, so no Ingress ever gets an address: ferry (--health-checks) and Argo CD
#      (resource.customizations.health) are told "an Ingress that exists is Healthy", which is
#      what Flux's kstatus already says of it.
#   B. 10,000 Applications of one ConfigMap each (the Argo CD scalability test's shape), ferry
#      with one replica: time until all are Ready, the time `kubectl create` itself took, peak
#      RSS, CPU seconds, API requests (ferry's own client count, and the API server's count less
#      the creates). Argo CD runs the same shape at a size it finishes within the bench's time
#      (FERRY_BENCH_SCALE_ARGOCD_CM_APPS).
#   C. One Application of 10,000 objects (80% ConfigMaps, 10% Services, 10% ServiceAccounts:
#      nothing waits for a controller) to Ready, next to `kubectl apply --server-side` of the
#      same files (the floor), with ferry's peak RSS.
#   D. What each request of a one-ConfigMap Application's first sync costs the control plane
#      (benches/lib/api_cost.py, no ferry running): milliseconds of kube-apiserver + etcd CPU per
#      Application create (without and with the chart's cleanup-finalizer policy), finalizer
#      patch, ConfigMap apply, status apply and Event, each over COST_APPS objects: what bounds B.
#
# Usage: scale.sh [full|quick]. full (make bench) writes target/bench/scale.md and rewrites the
# "Fleet scale" section of BENCHMARKS.md and docs/scale.svg; quick (100 apps, 1,000 ConfigMap
# apps, 1,000 objects, no Argo CD unless built) writes target/bench/scale-quick.md only.
#
# Environment: FERRY_BIN, FERRY_TESTENV_STATE, and FERRY_BENCH_SCALE_SHAPE_SIZES ("100 500
# 1000"), _CM_APPS (10000), _ARGOCD_CM_APPS (1000), _OBJECTS (10000), _OBJECT_RUNS (3),
# _TOOLS ("ferry flux argocd"), _TIMEOUT (1800 seconds per wait), _CONCURRENCY (ferry's
# --concurrency, its default if unset), _COST_APPS (2000; 0 skips D), _COST_ROUNDS (3).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
mode="${1:-full}"
case "$mode" in
  full) d_sizes="100 500 1000" d_cm=10000 d_argo_cm=1000 d_objects=10000 d_runs=3 d_cost=2000 d_cost_rounds=3 ;;
  quick) d_sizes="100" d_cm=1000 d_argo_cm=100 d_objects=1000 d_runs=1 d_cost=500 d_cost_rounds=1 ;;
  *) echo "usage: $0 [full|quick]" >&2; exit 2 ;;
esac
read -r -a shape_sizes <<<"${FERRY_BENCH_SCALE_SHAPE_SIZES:-$d_sizes}"
cm_apps="${FERRY_BENCH_SCALE_CM_APPS:-$d_cm}"
argo_cm_apps="${FERRY_BENCH_SCALE_ARGOCD_CM_APPS:-$d_argo_cm}"
objects="${FERRY_BENCH_SCALE_OBJECTS:-$d_objects}"
object_runs="${FERRY_BENCH_SCALE_OBJECT_RUNS:-$d_runs}"
read -r -a tools <<<"${FERRY_BENCH_SCALE_TOOLS:-ferry flux argocd}"
timeout="${FERRY_BENCH_SCALE_TIMEOUT:-1800}"
concurrency="${FERRY_BENCH_SCALE_CONCURRENCY:-}"
cost_apps="${FERRY_BENCH_SCALE_COST_APPS:-$d_cost}"
cost_rounds="${FERRY_BENCH_SCALE_COST_ROUNDS:-$d_cost_rounds}"
out_dir="$target/bench"
work="$out_dir/scale-$mode"
samples_file="$work/samples.tsv"
if [[ "$mode" == full ]]; then
  section="$out_dir/scale.md" report="$root/BENCHMARKS.md" chart="$root/docs/scale.svg"
else
  section="$out_dir/scale-quick.md" report="" chart="$out_dir/scale-quick.svg"
fi
# shellcheck disable=SC2034  # read by common.sh
bench_label="ferry.dev/bench=scale"
started="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
t_start="$SECONDS"

log() { printf '[bench scale] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/flux.sh
source "$here/lib/flux.sh"
has_tool() { [[ " ${tools[*]} " == *" $1 "* ]]; }
if has_tool argocd; then
  # shellcheck source=lib/argocd.sh
  source "$here/lib/argocd.sh"
  # Extra argocd-cm data (argocd.sh): an Ingress that exists is Healthy, as for ferry (see the
  # header); a Lua health check is Argo CD's way to say so.
  # shellcheck disable=SC2089  # the quotes are the Lua's, not the shell's
  argocd_cm_extra='  resource.customizations.health.networking.k8s.io_Ingress: |
    hs = {}
    hs.status = "Healthy"
    hs.message = "no ingress controller in this cluster"
    return hs'
else
  argocd_stop() { :; }
fi

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

record() { printf '%s\t%s\n' "$1" "$2" >>"$samples_file"; }

# --- waiting for a whole fleet -----------------------------------------------------------------

# Waits until WANT objects of KIND in NS have each shown OK in the jsonpath FIELDS at least once
# (a fleet busy reconciling is rarely all Ready at one instant; Flux turns Ready to Unknown while
# it works on a Kustomization again), from one watch: a list of 10,000 objects a second would
# cost the machine more than the tool being measured.
wait_fleet() { # kind namespace want fields ok
  local kind="$1" ns="$2" want="$3" fields="$4" ok="$5" fd kpid name value n=0
  local -A seen=()
  # --chunk-size=0: a list kubectl reads in chunks (over 500 objects) is printed in watch mode as
  # one List, which the jsonpath does not see into.
  exec {fd}< <(exec "$bin/kubectl" get "$kind" -n "$ns" --watch --chunk-size=0 \
    -o "jsonpath={.metadata.name}|$fields{\"\\n\"}")
  kpid=$!
  while ((n < want)) && IFS='|' read -r -t "$timeout" name value <&"$fd"; do
    [[ "$value" == "$ok" ]] && seen[$name]=1
    n=${#seen[@]}
  done
  kill "$kpid" 2>/dev/null || true
  exec {fd}<&-
  ((n >= want)) || die "$n of $want $kind in $ns were ever $ok within ${timeout}s"
}

ferry_ready_fields='{.status.conditions[?(@.type=="Ready")].status}'
flux_ready_fields='{.status.conditions[?(@.type=="Ready")].status}'
argocd_ready_fields='{.status.sync.status}/{.status.health.status}'

# --- the repositories --------------------------------------------------------------------------

prepare_repo() { # name what n
  local clone="$work/clone-$1"
  rm -rf "$clone"
  python3 "$here/lib/scale_repo.py" "$2" "$3" "$clone"
  publish_repo "$1" "$clone" "$3 $2"
}

repo_url() { echo "http://127.0.0.1:$git_http_port/$1.git"; }

# N ferry Applications, one per apps/<prefix>NNNN directory of REPO, as one YAML stream.
ferry_apps_yaml() { # namespace repo n prefix width
  local ns="$1" url n="$3" prefix="$4" width="$5" a name
  url="$(repo_url "$2")"
  for ((a = 0; a < n; a++)); do
    printf -v name "%s%0${width}d" "$prefix" "$a"
    printf -- '---\napiVersion: ferry.dev/v1alpha1\nkind: Application\nmetadata: {name: %s, namespace: %s}\nspec:\n  source: {repoURL: "%s", ref: {branch: main}, path: apps/%s}\n  destination: {namespace: %s}\n  interval: 1h\n  syncPolicy: {automated: true, prune: true, selfHeal: true}\n' \
      "$name" "$ns" "$url" "$name" "$ns"
  done
}

flux_kustomizations_yaml() { # namespace n prefix width
  local ns="$1" n="$2" prefix="$3" width="$4" a name
  for ((a = 0; a < n; a++)); do
    printf -v name "%s%0${width}d" "$prefix" "$a"
    flux_kustomization_yaml "$ns" "$name" fleet "apps/$name" 1h
  done
}

# Creates the apps of one YAML stream and records how long that took. One kubectl sends one
# request per object and throttles itself to about 50 a second (client-go's QPS), which alone
# would take 200 s for 10,000 apps: $create_parallelism kubectl processes share the work, each
# on every k-th document.
create_parallelism="${FERRY_BENCH_SCALE_CREATE_PARALLELISM:-8}"
create_apps() { # key file
  local t0 k pids=()
  awk -v k="$create_parallelism" -v out="$2" '/^---$/ { n++ } { print > (out "." (n % k)) }' "$2"
  t0="$(now)"
  for ((k = 0; k < create_parallelism; k++)); do
    [[ -s "$2.$k" ]] || continue
    kubectl create -f "$2.$k" >/dev/null &
    pids+=($!)
  done
  for k in "${pids[@]}"; do wait "$k" || die "kubectl create of $2 failed"; done
  record "$1-create" "$(elapsed "$t0" "$(now)")"
}

# kube-apiserver's and etcd's pids (the state directory is the kubeconfig's): their CPU seconds
# over a run say how much of the machine the control plane needed for what the tool asked.
control_plane_pids() {
  cat "$(dirname "$KUBECONFIG")/pids/kube-apiserver" "$(dirname "$KUBECONFIG")/pids/etcd"
}

# Snapshots what record_fleet compares: the API server's requests by verb, then (last line) the
# control plane's CPU seconds.
snapshot_before() { # key
  # shellcheck disable=SC2046  # one word per pid
  { apiserver_requests; echo "cpu $(cpu_seconds $(control_plane_pids))"; } >"$work/$1-before"
}

# Records the end of one fleet run of a tool: seconds since T0, peak RSS and CPU of PIDS, the
# tool's own API request count, the API server's count and the control plane's CPU since the
# BEFORE snapshot (snapshot_before).
record_fleet() { # key t0 client-requests before-file pid...
  local key="$1" t0="$2" client="$3" before="$4" secs hwm=0 pid cp0 cp1
  shift 4
  secs="$(elapsed "$t0" "$(now)")"
  # shellcheck disable=SC2046  # one word per pid
  cp1="$(cpu_seconds $(control_plane_pids))"
  cp0="$(awk '$1 == "cpu" { print $2 }' "$before")"
  record "$key-control-plane-cpu" "$(awk -v a="$cp1" -v b="$cp0" 'BEGIN { printf "%.2f", a - b }')"
  for pid in "$@"; do hwm=$((hwm + $(hwm_kib "$pid"))); done
  record "$key-seconds" "$secs"
  record "$key-rss" "$(mib "$hwm")"
  record "$key-cpu" "$(cpu_seconds "$@")"
  record "$key-client-requests" "$($client)"
  apiserver_requests >"$work/$key-after"
  record "$key-apiserver-requests" "$(awk 'FILENAME == ARGV[1] { if ($1 != "cpu") b += $2; next } { a += $2 } END { print a - b }' "$before" "$work/$key-after")"
  log "$key: every app Ready after ${secs}s, peak RSS $((hwm / 1024)) MiB, CPU $(cpu_seconds "$@") s"
}

# --- one fleet per tool ------------------------------------------------------------------------

# ferry with one replica for NAMESPACE; ingress health as Flux's kstatus says (see the header).
ferry_fleet_start() { # namespace
  local ns="$1" flags=()
  [[ -n "$concurrency" ]] && flags+=(--concurrency "$concurrency")
  delete_ns "$ns"
  create_ns "$ns"
  start_ferry "$work/ferry-$ns.log" --namespace "$ns" --cache-dir "$work/cache-$ns" \
    --http-address 127.0.0.1:0 --health-checks "$work/health-checks.yaml" "${flags[@]}"
}

run_ferry_fleet() { # key repo n prefix width
  local key="$1" ns="scale-ferry-$1" t0
  ferry_fleet_start "$ns"
  ferry_apps_yaml "$ns" "$2" "$3" "$4" "$5" >"$work/$key-ferry.yaml"
  snapshot_before "$key-ferry"
  t0="$(now)"
  create_apps "$key-ferry" "$work/$key-ferry.yaml"
  wait_fleet fapp "$ns" "$3" "$ferry_ready_fields" True
  record_fleet "$key-ferry" "$t0" ferry_client_requests "$work/$key-ferry-before" "$ferry_pid"
  curl -sf "http://$(ferry_http_address)/metrics" >"$work/$key-ferry.metrics" || true
  stop_ferry
  delete_ns "$ns"
}

run_flux_fleet() { # key repo n prefix width
  local key="$1" ns="scale-flux-$1" t0
  delete_ns "$ns"
  create_ns "$ns"
  flux_start "$ns" "$work/flux-$ns"
  # The GitRepository first, untimed, as in Flux's benchmark (and as compare.sh's fleet does).
  flux_source_yaml "$ns" fleet "$(repo_url "$2")" 1h | kubectl apply -f - >/dev/null
  kubectl wait --for=condition=Ready gitrepository/fleet -n "$ns" --timeout="${timeout}s" >/dev/null
  flux_kustomizations_yaml "$ns" "$3" "$4" "$5" >"$work/$key-flux.yaml"
  snapshot_before "$key-flux"
  t0="$(now)"
  create_apps "$key-flux" "$work/$key-flux.yaml"
  wait_fleet kustomization "$ns" "$3" "$flux_ready_fields" True
  record_fleet "$key-flux" "$t0" flux_client_requests "$work/$key-flux-before" "$flux_sc_pid" "$flux_kc_pid"
  flux_stop
  delete_ns "$ns"
}

run_argocd_fleet() { # key repo n prefix width
  local key="$1" ns="scale-argocd-$1" t0
  delete_ns "$ns"
  create_ns "$ns"
  argocd_start "$ns" "$work/argocd-$ns" "$3" 1h
  argocd_apps_yaml "$ns" "$4" "$3" "$(repo_url "$2")" "apps/$4%0${5}d" >"$work/$key-argocd.yaml"
  snapshot_before "$key-argocd"
  t0="$(now)"
  create_apps "$key-argocd" "$work/$key-argocd.yaml"
  wait_fleet applications.argoproj.io "$ns" "$3" "$argocd_ready_fields" Synced/Healthy
  # shellcheck disable=SC2046  # one word per pid
  record_fleet "$key-argocd" "$t0" argocd_client_requests "$work/$key-argocd-before" $(argocd_pids)
  argocd_stop
  delete_ns "$ns"
}

run_fleet_all() { # key repo n prefix width [argocd-n]
  local tool
  for tool in "${tools[@]}"; do
    case "$tool" in
      ferry) run_ferry_fleet "$@" ;;
      flux) [[ "$1" == shape-* ]] && run_flux_fleet "$@" ;;
      argocd) run_argocd_fleet "$@" ;;
    esac
  done
}

# --- one Application of many objects, and the floor --------------------------------------------

run_objects_ferry() { # label keep
  local ns="scale-ferry-objects-$1" t0 secs
  ferry_fleet_start "$ns"
  t0="$(now)"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: bench, namespace: $ns}
spec:
  source: {repoURL: "$(repo_url objects)", ref: {branch: main}, path: objects}
  destination: {namespace: $ns}
  interval: 1h
  syncPolicy: {automated: true, prune: true, selfHeal: true}
EOF
  kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
    { tail -n 30 "$ferry_log" >&2; die "ferry: $objects objects not Ready after ${timeout}s"; }
  secs="$(elapsed "$t0" "$(now)")"
  log "ferry, one Application of $objects objects ($1): Ready after ${secs}s, peak RSS $(($(hwm_kib "$ferry_pid") / 1024)) MiB"
  if (($2)); then
    record objects-ferry "$secs"
    record objects-ferry-rss "$(mib "$(hwm_kib "$ferry_pid")")"
    record objects-ferry-cpu "$(cpu_seconds "$ferry_pid")"
  fi
  curl -sf "http://$(ferry_http_address)/metrics" >"$work/objects-ferry-$1.metrics" || true
  stop_ferry
  delete_ns "$ns"
}

run_objects_floor() { # label keep
  local ns="scale-kubectl-objects-$1" t0 secs
  delete_ns "$ns"
  create_ns "$ns"
  t0="$(now)"
  kubectl apply --server-side --field-manager=bench -n "$ns" -f "$work/clone-objects/objects" >/dev/null
  secs="$(elapsed "$t0" "$(now)")"
  log "kubectl apply --server-side of $objects objects ($1): ${secs}s"
  (($2)) && record objects-floor "$secs"
  delete_ns "$ns"
}

# --- main ------------------------------------------------------------------------------------

rm -rf "$work"
mkdir -p "$work/repos" "$out_dir"
: >"$samples_file"
cat >"$work/health-checks.yaml" <<'EOF'
# kwok runs no ingress controller: an Ingress that exists is Healthy (Flux's kstatus rule).
- apiVersion: networking.k8s.io/v1
  kind: Ingress
  current: "true"
EOF
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
if has_tool flux; then flux_build; flux_install_crds; fi
if has_tool argocd; then argocd_build; argocd_install_crds; fi
for n in "${shape_sizes[@]}"; do prepare_repo "shape-$n" shape "$n"; done
prepare_repo configmaps configmaps "$((cm_apps > argo_cm_apps ? cm_apps : argo_cm_apps))"
((objects > 0)) && prepare_repo objects objects "$objects"
git_http_start "$work/repos" "$work/git-requests.log"
wait_no_terminating

log "A: Flux's benchmark shape, ${shape_sizes[*]} apps of 4 objects (${tools[*]})"
for n in "${shape_sizes[@]}"; do
  run_fleet_all "shape-$n" "shape-$n" "$n" app- 4
done

log "B: $cm_apps Applications of one ConfigMap (ferry), $argo_cm_apps (Argo CD)"
has_tool ferry && ((cm_apps > 0)) && run_ferry_fleet "cm-$cm_apps" configmaps "$cm_apps" cm- 5
has_tool argocd && ((argo_cm_apps > 0)) && run_argocd_fleet "cm-$argo_cm_apps" configmaps "$argo_cm_apps" cm- 5

log "C: one Application of $objects objects, $object_runs runs after a warm-up, and the floor"
if has_tool ferry && ((objects > 0)); then
  run_objects_ferry warmup 0
  for ((r = 1; r <= object_runs; r++)); do
    if ((r % 2)); then run_objects_ferry "r$r" 1; run_objects_floor "r$r" 1
    else run_objects_floor "r$r" 1; run_objects_ferry "r$r" 1; fi
  done
fi

log "D: what each request of a new Application's first sync costs the control plane ($cost_apps objects, $cost_rounds rounds)"
if has_tool ferry && ((cost_apps > 0)); then
  for variant in plain policy; do
    ns="scale-cost-$variant"
    delete_ns "$ns"
    create_ns "$ns"
    policy=0
    if [[ "$variant" == policy ]]; then ferry_admission_policy "$ns"; policy=1; fi
    # shellcheck disable=SC2046  # one word per pid
    FERRY_COST_POLICY="$policy" python3 "$here/lib/api_cost.py" "$KUBECONFIG" "$ns" "$cost_apps" "$cost_rounds" \
      $(control_plane_pids) >>"$samples_file" || die "api_cost.py failed in $ns"
    delete_ns "$ns"
  done
fi

{
  printf 'mode\t%s\n' "$mode"
  printf 'date\t%s\n' "$started"
  printf 'duration\t%s\n' "$((SECONDS - t_start))"
  printf 'ferry\t%s\n' "$("$ferry" version)"
  printf 'ferry_commit\t%s\n' "$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
  printf 'flux\tsource-controller %s, kustomize-controller %s\n' \
    "$FLUX_SOURCE_CONTROLLER_VERSION" "$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
  printf 'argocd\t%s\n' "$ARGO_CD_VERSION"
  printf 'tools\t%s\n' "${tools[*]}"
  printf 'shape_sizes\t%s\n' "${shape_sizes[*]}"
  printf 'cm_apps\t%s\n' "$cm_apps"
  printf 'argo_cm_apps\t%s\n' "$argo_cm_apps"
  printf 'objects\t%s\n' "$objects"
  printf 'object_runs\t%s\n' "$object_runs"
  printf 'cost_apps\t%s\n' "$cost_apps"
  printf 'cost_rounds\t%s\n' "$cost_rounds"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'load\t%s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
} >"$work/meta.tsv"
python3 "$here/lib/scale_report.py" "$work/meta.tsv" "$samples_file" "$section" "$chart" ${report:+"$report"}
cat "$section"
log "done in $((SECONDS - t_start))s: $section${report:+, $report}"
