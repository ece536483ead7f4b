# Sourced by the benchmark scripts: timing, statistics, a ferry process, the bench namespaces
# on the local cluster, and the git smart-HTTP server the benches' Applications read from. Needs
# kubectl() (tests/testenv/use.sh), log() and die() from the sourcing script, $ferry (the
# binary) for start_ferry, $root for git_http_start and $work for publish_repo.
# shellcheck shell=bash disable=SC2154  # $ferry, $root and $work come from the sourcing script

now() { echo "$EPOCHREALTIME"; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }
hwm_kib() { awk '/^VmHWM:/ { print $2 }' "/proc/$1/status"; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
mib() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; } # KiB -> MiB, one decimal
# Waits up to 60 s until these CRDs (crd/NAME ...) are Established. kubectl wait fails at once on
# a CRD created a moment ago that has no status.conditions yet, so it is asked again until then.
wait_established() {
  local deadline=$((SECONDS + 60))
  until kubectl wait --for=condition=Established --timeout=60s "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then
      kubectl wait --for=condition=Established --timeout=1s "$@" >/dev/null
      return 1
    fi
    sleep 0.5
  done
}
# CPU time (user + system) of processes so far, in seconds. Fields 14 and 15 of /proc/PID/stat
# count clock ticks; the command name (field 2) of the processes measured has no spaces.
cpu_seconds() { # pid...
  local pid ticks=0
  for pid in "$@"; do
    ticks=$((ticks + $(awk '{ print $14 + $15 }' "/proc/$pid/stat")))
  done
  awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
# The API server's own count of requests it served, by verb ("VERB count" lines), from
# apiserver_request_total over every resource, client and code.
apiserver_requests() {
  kubectl get --raw /metrics | awk '
    /^apiserver_request_total\{/ {
      match($0, /verb="[A-Z]+"/)
      n[substr($0, RSTART + 6, RLENGTH - 7)] += $NF
    }
    END { for (v in n) printf "%s %d\n", v, n[v] }' | sort
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# "median min max" of whitespace-separated numbers.
stats() {
  tr ' ' '\n' <<<"$1" | sort -g | awk '
    { v[NR] = $1 }
    END {
      m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
      printf "%s %s %s", m, v[1], v[NR]
    }'
}
median() { stats "$1" | cut -d' ' -f1; }
# Ratio of the medians of two sample lists.
ratio() { awk -v a="$(median "$1")" -v b="$(median "$2")" 'BEGIN { printf "%.2f", a / b }'; }

# Starts `ferry run ARGS...` in the background with its log in LOG and waits for "ferry is
# ready"; sets ferry_pid and ferry_startup (seconds). Not in a subshell: ferry_pid must reach
# the caller.
ferry_pid=""
ferry_startup=""
ferry_log=""
start_ferry() { # log args...
  local logf="$1" t0 deadline arg prev=""
  shift
  ferry_log="$logf"
  # Installing ferry is its CRDs (each bench applies them) and the chart's admission policy,
  # bound as the chart binds it for a ferry that reconciles one namespace.
  for arg in "$@"; do
    [[ "$prev" == --namespace ]] && ferry_admission_policy "$arg"
    prev="$arg"
  done
  t0="$(now)"
  # The benches' repositories are local file:// ones, which ferry refuses unless told.
  "$ferry" run --allow-file-urls "$@" >"$logf" 2>&1 &
  ferry_pid=$!
  deadline=$((SECONDS + 60))
  until grep -q 'ferry is ready' "$logf"; do
    if ! kill -0 "$ferry_pid" 2>/dev/null; then
      tail -n 30 "$logf" >&2
      ferry_pid=""
      die "ferry exited during start-up (log $logf)"
    fi
    ((SECONDS < deadline)) || { tail -n 30 "$logf" >&2; die "ferry not ready after 60s (log $logf)"; }
    sleep 0.05
  done
  ferry_startup="$(elapsed "$t0" "$(now)")"
}

# The chart's cleanup-finalizer MutatingAdmissionPolicy (charts/ferry/templates/
# cleanup-finalizer-policy.yaml) for a ferry that reconciles NAMESPACE only, as `helm install
# --set watchNamespace=NAMESPACE` renders it on this API server: new Applications there are
# admitted with ferry's finalizer, so ferry does not patch each one. Waits until the API server
# acts on it (a server-side dry run of a create) when the namespace exists. delete_ns removes it.
ferry_admission_policy() { # namespace
  local ns="$1" probe deadline=$((SECONDS + 60))
  "$bin/helm" template ferry "$root/charts/ferry" --namespace "$ns" --set "watchNamespace=$ns" \
    --api-versions admissionregistration.k8s.io/v1/MutatingAdmissionPolicy \
    --show-only templates/cleanup-finalizer-policy.yaml |
    kubectl apply --server-side --force-conflicts --field-manager=ferry-bench -f - >/dev/null
  probe="{\"apiVersion\": \"ferry.dev/v1alpha1\", \"kind\": \"Application\",
    \"metadata\": {\"name\": \"policy-probe\", \"namespace\": \"$ns\"},
    \"spec\": {\"source\": {\"repoURL\": \"https://example.invalid/probe.git\", \"ref\": {\"branch\": \"main\"},
    \"path\": \"probe\"}, \"destination\": {\"namespace\": \"$ns\"}}}"
  # (The probe needs the namespace; a bench that makes it later gets the policy all the same.)
  kubectl get namespace "$ns" >/dev/null 2>&1 || return 0
  until kubectl create --dry-run=server -o 'jsonpath={.metadata.finalizers}' -f - <<<"$probe" 2>/dev/null |
    grep -q ferry.dev/cleanup; do
    ((SECONDS < deadline)) || die "the cleanup-finalizer policy for $ns did not act within 60s"
    sleep 0.2
  done
}

# host:port of the running ferry's HTTP server (from its "ferry is ready" line).
ferry_http_address() {
  sed -n 's/.*ferry is ready.* http_address=\([^ ]*\).*/\1/p' "$ferry_log" | head -n 1
}

# Requests ferry's own clients made (ferry_api_requests_total, every verb and result).
ferry_client_requests() {
  curl -sf "http://$(ferry_http_address)/metrics" |
    awk '/^ferry_api_requests_total/ { n += $NF } END { printf "%d", n }'
}

stop_ferry() {
  [[ -n "$ferry_pid" ]] || return 0
  kill -TERM "$ferry_pid" 2>/dev/null || true
  local deadline=$((SECONDS + 20))
  while kill -0 "$ferry_pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      log "ferry (pid $ferry_pid) ignored SIGTERM for 20s; killing it"
      kill -KILL "$ferry_pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
  wait "$ferry_pid" 2>/dev/null || true
  ferry_pid=""
}

# Waits until no namespace is being deleted: the namespace controller's work on one (lists and
# deletes of every kind, again and again while a finalizer holds it) would count as API traffic
# of whatever a window measures.
wait_no_terminating() {
  local deadline=$((SECONDS + 300)) stuck
  while :; do
    stuck="$(kubectl get namespace -o 'jsonpath={range .items[?(@.status.phase=="Terminating")]}{.metadata.name} {end}')"
    [[ -z "$stuck" ]] && return 0
    ((SECONDS < deadline)) || die "namespaces still terminating after 300s: $stuck"
    sleep 1
  done
}

# Deletes a bench namespace and waits until it is gone. Applications (and Flux and Argo CD
# objects; Argo CD's resources-finalizer.argocd.argoproj.io among them) left in it lose their
# finalizers first, or the namespace would wait for a controller that no longer
# runs. Kinds whose CRD is not installed are skipped.
# Bench namespaces carry $bench_label (set by the bench before it calls these), so a cleanup
# finds every one it made.
create_ns() { # namespace
  kubectl create namespace "$1" >/dev/null
  kubectl label namespace "$1" "$bench_label" >/dev/null
}

delete_bench_namespaces() {
  local ns
  for ns in $(kubectl get namespace -l "$bench_label" -o 'jsonpath={.items[*].metadata.name}' 2>/dev/null); do
    delete_ns "$ns" || true
  done
}

delete_ns() { # namespace
  local ns="$1" api
  kubectl get namespace "$ns" >/dev/null 2>&1 || return 0
  # In one process (benches/lib/unfinalize.py), not one kubectl per object: a scale bench leaves
  # thousands. Kinds whose CRD is not installed are skipped.
  for api in "ferry.dev/v1alpha1 applications" "kustomize.toolkit.fluxcd.io/v1 kustomizations" \
    "source.toolkit.fluxcd.io/v1 gitrepositories" "notification.toolkit.fluxcd.io/v1 receivers" \
    "argoproj.io/v1alpha1 applications" "argoproj.io/v1alpha1 applicationsets"; do
    python3 "$root/benches/lib/unfinalize.py" "$KUBECONFIG" "$ns" "apis/${api% *}" "${api#* }" ||
      log "could not clear the finalizers of ${api#* } in $ns"
  done
  kubectl delete namespace "$ns" --wait=true --timeout=600s >/dev/null
  kubectl delete mutatingadmissionpolicybinding,mutatingadmissionpolicy "$ns-ferry-cleanup-finalizer" \
    --ignore-not-found >/dev/null 2>&1 || true
}

# Waits (up to $timeout seconds) until `want` Deployments in the namespace have every replica
# updated and available (what ferry's Healthy requires of a Deployment), with one watch: `kubectl
# wait --all` waits for one Deployment after the other and adds about 0.1s per Deployment even
# when all are available. Needs $bin (tests/testenv/use.sh) and die.
wait_available() { # namespace want
  local ns="$1" want="$2" fd kpid name replicas updated available observed generation n=0
  local -A ok=()
  exec {fd}< <(exec "$bin/kubectl" get deployment -n "$ns" --watch \
    -o 'jsonpath={.metadata.name}|{.spec.replicas}|{.status.updatedReplicas}|{.status.availableReplicas}|{.status.observedGeneration}|{.metadata.generation}{"\n"}')
  kpid=$!
  # A read loop, not awk: mawk reads a pipe in blocks and would see the lines late.
  while ((n < want)) && IFS='|' read -r -t "$timeout" name replicas updated available observed generation <&"$fd"; do
    if [[ -n "$replicas" && "$updated" == "$replicas" && "$available" == "$replicas" && "$observed" == "$generation" ]]; then
      ok[$name]=1
    else
      unset "ok[$name]"
    fi
    n=${#ok[@]}
  done
  kill "$kpid" 2>/dev/null || true
  exec {fd}<&-
  ((n >= want)) || die "$n of $want Deployments in $ns available after ${timeout}s"
}

# --- git server ------------------------------------------------------------------------------

git_http_pid=""
git_http_port=""
git_http_log=""
git_http_start() { # root dir of bare repositories, request log (benches/lib/git_http.py)
  local root_dir="$1" port_file
  git_http_log="$2"
  port_file="$(mktemp)"
  rm -f "$port_file"
  python3 "$root/benches/lib/git_http.py" "$root_dir" "$port_file" "$git_http_log" &
  git_http_pid=$!
  local deadline=$((SECONDS + 10))
  until [[ -s "$port_file" ]]; do
    ((SECONDS < deadline)) || die "the git HTTP server did not start"
    sleep 0.05
  done
  git_http_port="$(cat "$port_file")"
  rm -f "$port_file"
}
# Git requests so far: "<ref advertisements> <pack negotiations>".
git_http_requests() {
  awk '$2 == "refs" { r++ } $2 == "fetch" { f++ } END { printf "%d %d", r, f }' "$git_http_log"
}
git_http_stop() {
  [[ -n "$git_http_pid" ]] || return 0
  kill "$git_http_pid" 2>/dev/null || true
  wait "$git_http_pid" 2>/dev/null || true
  git_http_pid=""
}

# Commits what is in CLONE (a fresh directory) and pushes it to a new bare repository
# $work/repos/NAME.git, the clone's origin, which the git HTTP server serves.
publish_repo() { # name clone message
  local bare="$work/repos/$1.git"
  rm -rf "$bare"
  git init -q --bare -b main "$bare"
  git -C "$2" init -q -b main
  git -C "$2" add -A
  git -C "$2" -c user.name=bench -c user.email=bench@ferry.invalid commit -q -m "$3"
  git -C "$2" remote add origin "$bare"
  git -C "$2" push -q origin main
}
