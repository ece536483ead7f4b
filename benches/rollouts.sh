#!/usr/bin/env bash
# Progressive delivery beside Argo Rollouts (issue 25, item 5): the same replica-ratio canary,
# the same canary with an analysis step against the same real Prometheus (passing, then failing
# and aborting), and the same blue-green switch, run by ferry and by Argo Rollouts' controller
# (built from the github.com/argoproj/argo-rollouts Go module, tests/testenv/build.sh
# argo-rollouts) on the same local control plane (tests/testenv; one kwok node makes Pods Ready).
#
# Each measurement: a fresh namespace; the tool alone, freshly started as a local process and
# scoped to that namespace (ferry `run --namespace`, rollouts-controller `--namespaced`); the
# same workload (REPLICAS replicas of one container at registry.example/web:1.0, Service `web`,
# for blue-green also `web-preview`) deployed and Healthy first, untimed; then the image changes
# to :2.0 and the bench waits until the scenario is over:
#   canary     steps setWeight 20, pause 0, setWeight 50, pause 0, setWeight 100; until fully
#              promoted (new version at full size, old at 0, the tool's status saying so);
#   analysis   setWeight 20, analysis, setWeight 50, pause 0, setWeight 100, the query passing;
#   abort      the same, the query failing: until traffic is back on stable (stable at full
#              size and available, no canary pod);
#   bluegreen  active + preview Service, automatic promotion, scale-down delay 5s: the switch
#              (the active Service's selector changes) and the old version scaled down.
# Times come from watches (kubectl get --watch, stamped as each event is read) of each tool's
# status (ferry Application status.rollout; Argo Rollout status.currentStepIndex, stableRS,
# AnalysisRun phase), the Deployments or ReplicaSets and the Services; benches/lib/
# rollouts_report.py replays them. Per window (image change to end): the tool's own API request
# count (ferry_api_requests_total; Argo Rollouts' controller_clientset_k8s_request_total), the
# API server's apiserver_request_total delta (every client), the tool's CPU seconds; and its
# peak RSS (VmHWM) over the whole run.
#
# Fairness of the image change: Argo Rollouts gets it as `kubectl patch` of the Rollout's image,
# its normal path when Argo CD drives it (Argo CD's own detection and sync are not counted).
# ferry's normal path is a Git commit: the commit is pushed to the Git server (benches/lib/
# git_http.py) before the clock starts, and the clock starts at the `ferry.dev/reconcile-at`
# annotation `ferry sync` sets (the Application's interval is 1h), so Git polling is not
# counted; ferry's fetch of the commit and its render are (they are ferry's job, not Argo's).
# Analysis: Debian's /usr/bin/prometheus (scrape interval 1s) scraping a local exporter of one
# gauge, bench_canary_error_ratio (0.01 to pass, 0.5 to fail), the same query, condition
# (< 0.05), interval, count and failureLimit 0 for both.
#
# A measurement, not a test: no timing is asserted; the bench fails when a scenario does not
# finish within the timeout or a process exits.
#
# Usage: rollouts.sh [full|quick]. Both write target/bench/rollouts.md; full (3 runs) also puts
# the section "Progressive delivery beside Argo Rollouts" into BENCHMARKS.md (replacing its last
# version, between this bench's markers); quick runs once. Samples and watch logs:
# target/bench/rollouts-<mode>/.
#
# Environment:
#   FERRY_TESTENV_STATE                 the control plane's state directory (as for testenv.sh)
#   FERRY_BIN                           ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_ROLLOUTS_RUNS           runs per scenario and tool (default: full 3, quick 1)
#   FERRY_BENCH_ROLLOUTS_REPLICAS       the workload's replicas (default: 10)
#   FERRY_BENCH_ROLLOUTS_SCENARIOS      which, in order (default: canary analysis abort bluegreen)
#   FERRY_BENCH_ROLLOUTS_INTERVAL       analysis interval (default: 1s)
#   FERRY_BENCH_ROLLOUTS_COUNT          analysis measurements (default: 2)
#   FERRY_BENCH_ROLLOUTS_TIMEOUT        seconds a scenario (or a deploy before it) may take (default: 180)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
mode="${1:-full}"
case "$mode" in
  full) d_runs=3 ;;
  quick) d_runs=1 ;;
  *) echo "usage: $0 [full|quick]" >&2; exit 2 ;;
esac
runs="${FERRY_BENCH_ROLLOUTS_RUNS:-$d_runs}"
replicas="${FERRY_BENCH_ROLLOUTS_REPLICAS:-10}"
read -r -a scenarios <<<"${FERRY_BENCH_ROLLOUTS_SCENARIOS:-canary analysis abort bluegreen}"
interval="${FERRY_BENCH_ROLLOUTS_INTERVAL:-1s}"
count="${FERRY_BENCH_ROLLOUTS_COUNT:-2}"
timeout="${FERRY_BENCH_ROLLOUTS_TIMEOUT:-180}"
out_dir="$target/bench"
work="$out_dir/rollouts-$mode"
samples_file="$work/samples.tsv"
section="$out_dir/rollouts.md"
report=""
[[ "$mode" == full ]] && report="$root/BENCHMARKS.md"
bench_label="ferry.dev/bench=rollouts"
query='max(bench_canary_error_ratio)'
good=0.01 bad=0.5
steps=5 # every canary scenario has five steps
t_start="$SECONDS"
started="$(date -u +%Y-%m-%dT%H:%MZ)"
load="$(cut -d' ' -f1 /proc/loadavg)"

log() { printf '[bench rollouts] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
[[ "$runs" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_ROLLOUTS_RUNS must be a positive number: $runs"
[[ "$replicas" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_ROLLOUTS_REPLICAS must be a positive number: $replicas"
[[ "$timeout" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_ROLLOUTS_TIMEOUT must be seconds: $timeout"
[[ "$interval" =~ ^[1-9][0-9]*s$ ]] || die "FERRY_BENCH_ROLLOUTS_INTERVAL must be whole seconds such as 1s: $interval"
[[ "$count" =~ ^[1-9][0-9]*$ ]] || die "FERRY_BENCH_ROLLOUTS_COUNT must be a positive number: $count"
for s in "${scenarios[@]}"; do
  [[ "$s" =~ ^(canary|analysis|abort|bluegreen)$ ]] || die "unknown scenario $s (canary analysis abort bluegreen)"
done
[[ -x /usr/bin/prometheus ]] || die "/usr/bin/prometheus is missing (make deps installs Debian's prometheus)"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=lib/argo_rollouts.sh
source "$here/lib/argo_rollouts.sh"

exporter_pid="" prometheus_pid=""
watch_pids=()
cleanup() {
  local status=$? pid
  for pid in "${watch_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  stop_ferry
  argo_rollouts_stop
  git_http_stop
  for pid in "$exporter_pid" "$prometheus_pid"; do
    [[ -n "$pid" ]] && { kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; }
  done
  delete_bench_namespaces
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

argo_rollouts_build >&2
rm -rf "$work"
mkdir -p "$work/repos" "$out_dir"
: >"$samples_file"
record() { printf '%s\t%s\n' "$1" "$2" >>"$samples_file"; }

delete_bench_namespaces
wait_no_terminating
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
wait_established crd/applications.ferry.dev >/dev/null
argo_rollouts_install_crds

# --- Prometheus and the exporter it scrapes ----------------------------------------------------

# One gauge, its value read from a file at each scrape, so a scenario sets what the query returns.
value_file="$work/error-ratio"
echo "$good" >"$value_file"
exporter_port="$(free_port)"
python3 -c '
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        with open(sys.argv[2]) as f:
            v = f.read().strip()
        body = ("# TYPE bench_canary_error_ratio gauge\nbench_canary_error_ratio{variant=\"canary\"} %s\n" % v).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *a):
        pass
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
' "$exporter_port" "$value_file" &
exporter_pid=$!

prometheus_port="$(free_port)"
prometheus_url="http://127.0.0.1:$prometheus_port"
cat >"$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
scrape_configs:
- job_name: bench
  static_configs: [{targets: ["127.0.0.1:$exporter_port"]}]
EOF
/usr/bin/prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
  --web.listen-address="127.0.0.1:$prometheus_port" --log.level=warn >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
deadline=$((SECONDS + 60))
until curl -sf "$prometheus_url/-/ready" >/dev/null; do
  kill -0 "$prometheus_pid" 2>/dev/null || die "prometheus exited: $(tail -n 5 "$work/prometheus.log")"
  ((SECONDS < deadline)) || die "prometheus not ready after 60s"
  sleep 0.1
done

# Sets the gauge and waits until Prometheus answers the query with it.
set_error_ratio() { # value
  echo "$1" >"$value_file"
  local deadline=$((SECONDS + 30)) seen
  while :; do
    seen="$(curl -sf --get --data-urlencode "query=$query" "$prometheus_url/api/v1/query" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null || true)"
    [[ "$seen" == "$1" ]] && return 0
    ((SECONDS < deadline)) || die "Prometheus does not answer $1 for $query (answers '$seen')"
    sleep 0.2
  done
}

git_http_start "$work/repos" "$work/git-requests.log"

# --- the strategies ----------------------------------------------------------------------------

ferry_strategy_yaml() { # scenario
  case "$1" in
    canary) cat <<EOF
    canary:
      workload: {name: web}
      steps:
      - setWeight: 20
      - pause: {duration: 0s}
      - setWeight: 50
      - pause: {duration: 0s}
      - setWeight: 100
EOF
      ;;
    analysis | abort) cat <<EOF
    canary:
      workload: {name: web}
      steps:
      - setWeight: 20
      - analysis:
          metrics:
          - name: error-ratio
            prometheus: {query: '$query'}
            interval: $interval
            count: $count
            successCondition: result < 0.05
      - setWeight: 50
      - pause: {duration: 0s}
      - setWeight: 100
EOF
      ;;
    bluegreen) cat <<EOF
    blueGreen:
      workload: {name: web}
      activeService: web
      previewService: web-preview
      autoPromotion: true
      scaleDownDelay: 5s
EOF
      ;;
  esac
}

argo_strategy_yaml() { # scenario
  case "$1" in
    canary) cat <<EOF
    canary:
      steps:
      - setWeight: 20
      - pause: {duration: 0}
      - setWeight: 50
      - pause: {duration: 0}
      - setWeight: 100
EOF
      ;;
    analysis | abort) cat <<EOF
    canary:
      steps:
      - setWeight: 20
      - analysis: {templates: [{templateName: error-ratio}]}
      - setWeight: 50
      - pause: {duration: 0}
      - setWeight: 100
EOF
      ;;
    bluegreen) cat <<EOF
    blueGreen:
      activeService: web
      previewService: web-preview
      autoPromotionEnabled: true
      scaleDownDelaySeconds: 5
EOF
      ;;
  esac
}

services_yaml() { # scenario
  service_yaml web web
  [[ "$1" != bluegreen ]] || service_yaml web-preview web
}

# --- one measurement ---------------------------------------------------------------------------

# `kubectl get --watch` of KIND in NS, every event a line "<epoch>\t<TYPE>|<JSONPATH fields>" in
# FILE; waits for the first line (the current state) unless told the list may be empty.
watch_to() { # file ns kind jsonpath [may-be-empty]
  local file="$1" deadline
  : >"$file"
  "$bin/kubectl" get "$3" -n "$2" --watch --output-watch-events -o "jsonpath={.type}|$4{\"\\n\"}" \
    > >(while IFS= read -r line; do printf '%s\t%s\n' "$EPOCHREALTIME" "$line"; done >>"$file") 2>/dev/null &
  watch_pids+=($!)
  [[ -z "${5:-}" ]] || return 0
  deadline=$((SECONDS + 30))
  until [[ -s "$file" ]]; do
    ((SECONDS < deadline)) || die "no event from the watch of $3 in $2"
    sleep 0.05
  done
}

stop_watches() {
  local pid
  for pid in "${watch_pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${watch_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  watch_pids=()
}

apiserver_total() { apiserver_requests | awk '{ n += $2 } END { printf "%d", n }'; }

# ferry: the repository at 1.0, ferry, the Application; returns once it is Ready and the
# Deployment available. Sets tool_pid.
ferry_setup() { # scenario ns dir
  local clone="$3/clone"
  mkdir -p "$clone/app"
  { echo "apiVersion: apps/v1"; echo "kind: Deployment"; echo "metadata: {name: web}"; echo "spec:"
    echo "  replicas: $replicas"; pod_template_yaml web registry.example/web:1.0; } >"$clone/app/deployment.yaml"
  services_yaml "$1" >"$clone/app/service.yaml"
  publish_repo "$2" "$clone" "web 1.0"
  start_ferry "$3/ferry.log" --namespace "$2" --cache-dir "$3/cache" --http-address "127.0.0.1:$(free_port)" \
    --prometheus-url "$prometheus_url"
  tool_pid="$ferry_pid"
  kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: $2}
spec:
  source: {repoURL: "http://127.0.0.1:$git_http_port/$2.git", ref: {branch: main}, path: app}
  destination: {namespace: $2}
  interval: 1h
  strategy:
$(ferry_strategy_yaml "$1")
EOF
  kubectl wait --for=condition=Ready application.ferry.dev/web -n "$2" --timeout="${timeout}s" >/dev/null ||
    { tail -n 30 "$3/ferry.log" >&2; die "the Application in $2 did not become Ready"; }
  wait_available "$2" 1
  watch_to "$3/app" "$2" applications.ferry.dev \
    '{.object.status.rollout.phase}|{.object.status.rollout.step}|{.object.status.rollout.canaryWeight}|{.object.status.rollout.revision}|{.object.status.rollout.analysis.phase}'
  watch_to "$3/deploy" "$2" deployments \
    '{.object.metadata.name}|{.object.spec.replicas}|{.object.status.availableReplicas}|{.object.spec.template.spec.containers[0].image}|{.object.status.replicas}'
  watch_to "$3/svc" "$2" services '{.object.metadata.name}|{.object.spec.selector}'
}

# The new image as a commit, pushed before the clock starts.
ferry_prepare() { # ns dir
  sed -i 's|registry.example/web:1.0|registry.example/web:2.0|' "$2/clone/app/deployment.yaml"
  git -C "$2/clone" -c user.name=bench -c user.email=bench@ferry.invalid commit -qam "web 2.0"
  git -C "$2/clone" push -q origin main
}
# What `ferry sync` does: a reconcile request, which fetches the branch at once.
ferry_trigger() { # ns
  kubectl annotate application.ferry.dev/web -n "$1" --overwrite "ferry.dev/reconcile-at=$(date -u +%Y-%m-%dT%H:%M:%S.%NZ)" >/dev/null
}

argo_setup() { # scenario ns dir
  argo_rollouts_start "$2" "$3/rollouts-controller.log"
  tool_pid="$argo_pid"
  {
    services_yaml "$1"
    [[ "$1" != analysis && "$1" != abort ]] || argo_analysis_template_yaml "$prometheus_url" "$query" "$interval" "$count"
    argo_strategy_yaml "$1" | argo_rollout_yaml web registry.example/web:1.0 "$replicas"
  } | kubectl apply -n "$2" -f - >/dev/null
  kubectl wait --for=jsonpath='{.status.phase}'=Healthy rollout/web -n "$2" --timeout="${timeout}s" >/dev/null ||
    { tail -n 30 "$3/rollouts-controller.log" >&2; die "the Rollout in $2 did not become Healthy"; }
  watch_to "$3/rollout" "$2" rollouts.argoproj.io \
    '{.object.status.currentStepIndex}|{.object.status.phase}|{.object.status.stableRS}|{.object.status.currentPodHash}|{.object.status.abort}'
  watch_to "$3/rs" "$2" replicasets \
    '{.object.metadata.name}|{.object.metadata.labels.rollouts-pod-template-hash}|{.object.spec.replicas}|{.object.status.availableReplicas}|{.object.status.replicas}'
  watch_to "$3/run" "$2" analysisruns.argoproj.io '{.object.metadata.name}|{.object.status.phase}' may-be-empty
  watch_to "$3/svc" "$2" services '{.object.metadata.name}|{.object.spec.selector}'
}

client_requests() { # tool
  if [[ "$1" == ferry ]]; then ferry_client_requests; else argo_rollouts_client_requests; fi
}

# The request counters by verb and resource, kept beside the watch logs to explain a count:
# the tool's own and the API server's.
dump_requests() { # tool file
  if [[ "$1" == ferry ]]; then
    curl -sf "http://$(ferry_http_address)/metrics" | grep '^ferry_api_requests_total' || true
  else
    curl -sf "http://$argo_metrics/metrics" | grep '^controller_clientset_k8s_request_total' || true
  fi >"$2"
  kubectl get --raw /metrics | grep '^apiserver_request_total' >>"$2" || true
}

measure() { # scenario tool run
  local scenario="$1" tool="$2" run="$3" ns dir t0 deadline out api0 req0 cpu0 api1 req1 cpu1 key value
  ns="ferry-bench-ro-$scenario-$tool-$run"
  dir="$work/$scenario-$tool-$run"
  mkdir -p "$dir"
  case "$scenario" in
    analysis) set_error_ratio "$good" ;;
    abort) set_error_ratio "$bad" ;;
  esac
  create_ns "$ns"
  "${tool}_setup" "$scenario" "$ns" "$dir"
  [[ "$tool" == ferry ]] && ferry_prepare "$ns" "$dir"
  dump_requests "$tool" "$dir/requests-before.txt"
  api0="$(apiserver_total)" req0="$(client_requests "$tool")" cpu0="$(cpu_seconds "$tool_pid")"
  t0="$(now)"
  if [[ "$tool" == ferry ]]; then ferry_trigger "$ns"; else argo_rollout_set_image "$ns" web registry.example/web:2.0; fi
  deadline=$((SECONDS + timeout))
  until out="$(python3 "$here/lib/rollouts_report.py" measure "$scenario" "$tool" "$dir" "$t0" "$replicas" "$steps")"; do
    ((SECONDS < deadline)) || die "$scenario by $tool in $ns not finished after ${timeout}s (watch logs and the tool's log in $dir)"
    kill -0 "$tool_pid" 2>/dev/null || die "$tool exited during $scenario (log in $dir)"
    sleep 0.2
  done
  cpu1="$(cpu_seconds "$tool_pid")" req1="$(client_requests "$tool")" api1="$(apiserver_total)"
  dump_requests "$tool" "$dir/requests-after.txt"
  while read -r key value; do record "$scenario.$tool.$key" "$value"; done <<<"$out"
  record "$scenario.$tool.client_requests" "$((req1 - req0))"
  record "$scenario.$tool.apiserver_requests" "$((api1 - api0))"
  record "$scenario.$tool.cpu" "$(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN { printf "%.2f", b - a }')"
  record "$scenario.$tool.rss_mib" "$(mib "$(hwm_kib "$tool_pid")")"
  log "$scenario run $run, $tool: $(tr '\n' ' ' <<<"$out")requests $((req1 - req0)) (API server $((api1 - api0)))"
  stop_watches
  if [[ "$tool" == ferry ]]; then stop_ferry; else argo_rollouts_stop; fi
  delete_ns "$ns"
  wait_no_terminating
}

for ((run = 1; run <= runs; run++)); do
  for scenario in "${scenarios[@]}"; do
    # The order alternates between runs, as in the other side-by-side benches.
    if ((run % 2)); then order=(ferry argo); else order=(argo ferry); fi
    for tool in "${order[@]}"; do measure "$scenario" "$tool" "$run"; done
  done
done

# --- the report --------------------------------------------------------------------------------

{
  printf 'mode\t%s\n' "$mode"
  printf 'runs\t%s\n' "$runs"
  printf 'replicas\t%s\n' "$replicas"
  printf 'started\t%s\n' "$started"
  printf 'nproc\t%s\n' "$(nproc)"
  printf 'load\t%s\n' "$load"
  printf 'ferry_version\t%s\n' "$("$ferry" version 2>/dev/null | head -n 1 || echo '?')"
  printf 'argo_version\t%s\n' "$ARGO_ROLLOUTS_VERSION"
  printf 'query\t%s\n' "$query"
  printf 'good\t%s\n' "$good"
  printf 'bad\t%s\n' "$bad"
  printf 'interval\t%s\n' "$interval"
  printf 'count\t%s\n' "$count"
  [[ -z "${FERRY_BENCH_ROLLOUTS_NOTE:-}" ]] || printf 'note\t%s\n' "$FERRY_BENCH_ROLLOUTS_NOTE"
} >"$work/meta.tsv"
python3 "$here/lib/rollouts_report.py" section "$work/meta.tsv" "$samples_file" "$section" ${report:+"$report"}
cat "$section"
log "done in $((SECONDS - t_start))s: $section${report:+, $report}"
