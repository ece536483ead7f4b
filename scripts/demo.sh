#!/usr/bin/env bash
# `make demo`: ferry syncing a real Git repository into the local cluster, end to end.
#
#   1. install the Application CRD (`ferry crd | kubectl apply --server-side`)
#   2. create a local Git repository (outside the source tree) holding the example app: a
#      Namespace, a ConfigMap, a Service and a Deployment running nginx:1.27.0
#   3. apply an Application pointing at it (file:// URL, prune on, interval 1m)
#   4. start `ferry run` in the background (PID file, log file), scoped to the demo namespace
#   5. wait until `kubectl get fapp` shows Synced/Healthy, show it and the managed objects
#   6. commit a new image tag, `ferry sync`, wait until the Deployment runs it and the
#      Application is Synced/Healthy at the new revision
#   7. give the Application a canary strategy, commit another tag and show the rollout step by
#      step (25% -> pause 10s -> 50% -> pause until `ferry promote`), then promote it
#   8. print what to try next; ferry keeps running until `kill $(cat <pid file>)`
#
# Run it through `make demo` (which starts the cluster and builds ferry first). Running it again
# stops the previous demo's ferry, recreates the repository and converges to it again.
#
# Environment:
#   FERRY_TESTENV_STATE  the control plane's state directory (as for tests/testenv/testenv.sh)
#   FERRY_DEMO_DIR       where the repository, ferry's Git cache, log and PID file go
#                        (default: <repo>/target/demo)
#   FERRY_BIN            the ferry binary (default: <target dir>/debug/ferry)
#   FERRY_DEMO_TIMEOUT   seconds to wait for each convergence (default 180)
#   FERRY_DEMO_HTTP_ADDRESS  where ferry serves /metrics, /healthz, /readyz (default 127.0.0.1:0: a free port)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
demo="${FERRY_DEMO_DIR:-$target/demo}"
ferry="${FERRY_BIN:-$target/debug/ferry}"
timeout="${FERRY_DEMO_TIMEOUT:-180}"

app=guestbook
app_ns="ferry-demo"    # where the Application lives; ferry is scoped to it with --namespace
dest_ns=guestbook      # where the app's objects go (the repository creates this Namespace)
old_tag=1.27.0
new_tag=1.27.1
canary_tag=1.27.2

repo_dir="$demo/repo"
cache_dir="$demo/cache"
log_file="$demo/ferry.log"
pid_file="$demo/ferry.pid"

step() { printf '\n\033[1m--- %s\033[0m\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() { printf 'demo: error: %s\n' "$*" >&2; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build (make demo does)"
# KUBECONFIG, kubectl and the renderers of the local control plane.
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use demo

# A PID counts as the demo's ferry only while its command line is still ours (PIDs get reused).
demo_ferry_pid() {
  local pid
  [[ -f "$pid_file" ]] || return 1
  pid="$(cat "$pid_file")"
  [[ "$pid" =~ ^[0-9]+$ && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "--cache-dir $cache_dir" || return 1
  echo "$pid"
}

stop_previous() {
  local pid deadline
  pid="$(demo_ferry_pid)" || { rm -f "$pid_file"; return 0; }
  info "stopping the previous demo's ferry (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + 20))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      info "ferry (pid $pid) ignored SIGTERM for 20s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.2
  done
  rm -f "$pid_file"
}

# jsonpath of the Application, empty when missing.
app_field() { kubectl get fapp "$app" -n "$app_ns" -o "jsonpath=$1" 2>/dev/null || true; }

# Wait until the Application is Synced, Healthy and Ready at `revision`, and `extra` (a command)
# succeeds; print progress every few seconds and ferry's log tail on failure.
wait_converged() { # revision description [extra command...]
  local revision="$1" what="$2"; shift 2
  local start=$SECONDS last=-100 line
  while true; do
    line="$(app_field '{.status.sync.status}|{.status.health.status}|{.status.sync.revision}|{.status.conditions[?(@.type=="Ready")].status}|{.status.conditions[?(@.type=="Ready")].reason}|{.status.conditions[?(@.type=="Ready")].message}')"
    IFS='|' read -r sync health rev ready reason message <<<"$line"
    if [[ "$sync" == Synced && "$health" == Healthy && "$rev" == "$revision" && "$ready" == True ]] &&
      { (($# == 0)) || "$@"; }; then
      info "$what after $((SECONDS - start))s"
      return 0
    fi
    if ! demo_ferry_pid >/dev/null; then
      printf 'demo: ferry exited; last lines of %s:\n' "$log_file" >&2
      tail -n 40 "$log_file" >&2
      exit 1
    fi
    if ((SECONDS - start >= timeout)); then
      printf 'demo: timed out after %ss waiting for: %s\n' "$timeout" "$what" >&2
      kubectl get fapp "$app" -n "$app_ns" -o yaml >&2 || true
      printf 'last lines of %s:\n' "$log_file" >&2
      tail -n 40 "$log_file" >&2
      exit 1
    fi
    if ((SECONDS - last >= 5)); then
      last=$SECONDS
      info "[$((SECONDS - start))s] sync=${sync:-?} health=${health:-?} ready=${ready:-?} reason=${reason:-?} revision=${rev:-none}${message:+ — $message}"
    fi
    sleep 1
  done
}

deployment_image() {
  kubectl get deployment web -n "$dest_ns" -o 'jsonpath={.spec.template.spec.containers[0].image}' 2>/dev/null || true
}
deployment_runs() { # image: template updated and the rollout finished
  [[ "$(deployment_image)" == "$1" ]] &&
    kubectl rollout status deployment/web -n "$dest_ns" --timeout=1s >/dev/null 2>&1
}

replicas_of() { # deployment
  kubectl get deployment "$1" -n "$dest_ns" -o 'jsonpath={.status.availableReplicas}/{.spec.replicas} {.spec.template.spec.containers[0].image}' 2>/dev/null || echo "-"
}

# Prints the rollout each time it moves, until `done` (a command) succeeds.
watch_rollout() { # description done-command...
  local what="$1"; shift
  local start=$SECONDS last="" line
  while true; do
    line="$(app_field '{.status.rollout.phase} step={.status.rollout.step} weight={.status.rollout.canaryWeight}%')"
    line="$line | web $(replicas_of web) | web-canary $(replicas_of web-canary)"
    if [[ "$line" != "$last" ]]; then
      info "[$((SECONDS - start))s] $line"
      last="$line"
    fi
    if "$@"; then
      info "$what after $((SECONDS - start))s"
      return 0
    fi
    if ((SECONDS - start >= timeout)); then
      printf 'demo: timed out after %ss waiting for: %s\n' "$timeout" "$what" >&2
      kubectl get fapp "$app" -n "$app_ns" -o yaml >&2 || true
      tail -n 40 "$log_file" >&2
      exit 1
    fi
    sleep 1
  done
}
rollout_at() { # phase step
  [[ "$(app_field '{.status.rollout.phase}/{.status.rollout.step}')" == "$1/$2" ]]
}
rollout_done() {
  [[ "$(app_field '{.status.rollout.phase}|{.status.sync.revision}|{.status.health.status}')" == "Completed|$1|Healthy" ]] &&
    deployment_runs "nginx:$canary_tag"
}

show_app() {
  echo
  kubectl get fapp -n "$app_ns" -o wide
  echo
  info "managed objects (label app.kubernetes.io/managed-by=ferry, ferry.dev/app-name=$app):"
  kubectl get namespace -l "ferry.dev/app-name=$app,ferry.dev/app-namespace=$app_ns"
  kubectl get configmap,service,deployment -n "$dest_ns" -o wide \
    -l "ferry.dev/app-name=$app,ferry.dev/app-namespace=$app_ns"
  echo
  kubectl get pods -n "$dest_ns" -o wide
}

write_app() { # image tag
  mkdir -p "$repo_dir/$app"
  cat >"$repo_dir/$app/namespace.yaml" <<EOF
apiVersion: v1
kind: Namespace
metadata:
  name: $dest_ns
EOF
  cat >"$repo_dir/$app/configmap.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-config
data:
  index.html: |
    <h1>Hello from ferry</h1>
  GREETING: hello
EOF
  cat >"$repo_dir/$app/service.yaml" <<EOF
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: http
EOF
  cat >"$repo_dir/$app/deployment.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 4
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:$1
        ports:
        - {name: http, containerPort: 80}
        envFrom:
        - configMapRef: {name: web-config}
EOF
}

git_repo() { git -C "$repo_dir" -c user.name="ferry demo" -c user.email="demo@ferry.invalid" "$@"; }
revision() { echo "main@sha1:$(git -C "$repo_dir" rev-parse HEAD)"; }

mkdir -p "$demo"

step "stopping the previous demo, if any"
stop_previous

step "installing the Application CRD: ferry crd | kubectl apply --server-side -f -"
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f -
kubectl wait --for=condition=Established --timeout=60s crd/applications.ferry.dev

step "creating a Git repository with the example app in $repo_dir"
rm -rf "$repo_dir" "$cache_dir"
mkdir -p "$repo_dir"
git -C "$repo_dir" init -q -b main
write_app "$old_tag"
git_repo add -A
git_repo commit -q -m "guestbook: nginx $old_tag"
git_repo log --oneline
(cd "$repo_dir" && find "$app" -type f | sort | sed 's/^/    /')
rev1="$(revision)"

step "applying the Application $app_ns/$app (source file://$repo_dir, path $app)"
kubectl create namespace "$app_ns" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -f - <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata:
  name: $app
  namespace: $app_ns
spec:
  source:
    repoURL: file://$repo_dir
    ref: {branch: main}
    path: $app
  destination: {namespace: $dest_ns}
  interval: 1m
  syncPolicy: {automated: true, prune: true, selfHeal: true}
EOF

step "starting ferry in the background: ferry run --namespace $app_ns (log: $log_file)"
: >"$log_file"
# --allow-file-urls: the demo's repository is a local file:// one (off by default: in a shared
# install a file:// URL would read ferry's own disk).
# setsid + the wrapper that records its own PID before exec: ferry outlives `make` and the
# terminal, and the PID file names ferry itself.
# shellcheck disable=SC2016 # expanded by the inner bash
setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pid_file" \
  "$ferry" run --namespace "$app_ns" --cache-dir "$cache_dir" --allow-file-urls \
  --http-address "${FERRY_DEMO_HTTP_ADDRESS:-127.0.0.1:0}" \
  </dev/null >>"$log_file" 2>&1 &
for _ in $(seq 100); do [[ -s "$pid_file" ]] && break; sleep 0.1; done
pid="$(demo_ferry_pid)" || { tail -n 40 "$log_file" >&2; die "ferry did not start"; }
deadline=$((SECONDS + 60))
until grep -q 'ferry is ready' "$log_file"; do
  kill -0 "$pid" 2>/dev/null || { tail -n 40 "$log_file" >&2; die "ferry exited during start-up"; }
  ((SECONDS < deadline)) || { tail -n 40 "$log_file" >&2; die "ferry not ready after 60s"; }
  sleep 0.2
done
http_address="$(grep -m1 'ferry is ready' "$log_file" | sed -n 's/.*http_address=\([^ ]*\).*/\1/p')"
info "ferry is ready (pid $pid), serving /metrics, /healthz and /readyz on http://$http_address"

step "waiting for $app to be Synced/Healthy at ${rev1#main@sha1:} (timeout ${timeout}s)"
wait_converged "$rev1" "Synced/Healthy at $rev1" deployment_runs "nginx:$old_tag"
show_app

step "committing a new image tag (nginx:$old_tag -> nginx:$new_tag) and running: ferry sync $app -n $app_ns"
write_app "$new_tag"
git_repo commit -q -am "guestbook: nginx $new_tag"
git_repo log --oneline -n 2
git_repo show --stat --format= HEAD | sed 's/^/   /'
rev2="$(revision)"
"$ferry" sync "$app" -n "$app_ns"
info "annotation ferry.dev/reconcile-at=$(app_field '{.metadata.annotations.ferry\.dev/reconcile-at}')"

step "waiting for the Deployment to run nginx:$new_tag and $app to be Synced/Healthy at ${rev2#main@sha1:}"
wait_converged "$rev2" "rolled out nginx:$new_tag, Synced/Healthy at $rev2" deployment_runs "nginx:$new_tag"
show_app
echo
info "Deployment web: template image $(deployment_image), revision $(kubectl get deployment web -n "$dest_ns" -o 'jsonpath={.metadata.annotations.deployment\.kubernetes\.io/revision}')"
info "sync history (newest first):"
kubectl get fapp "$app" -n "$app_ns" \
  -o 'jsonpath={range .status.history[*]}{"      "}{.result}{"  "}{.revision}{"  "}{.finishedAt}{"  "}{.message}{"\n"}{end}'
info "events on the Application:"
kubectl get events -n "$app_ns" --field-selector "involvedObject.name=$app" \
  --sort-by=.lastTimestamp -o 'custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message' | sed 's/^/      /'
if [[ -n "$http_address" ]]; then
  info "its metrics (curl http://$http_address/metrics):"
  curl -sf "http://$http_address/metrics" |
    grep -E '^ferry_(app_info|app_sync_status|app_health_status|deployments_total|lead_time_seconds_count)' |
    grep -v ' 0$' | sed 's/^/      /' || true
fi

step "progressive delivery: a canary strategy for Deployment web (kubectl patch fapp $app)"
kubectl patch fapp "$app" -n "$app_ns" --type merge -p '{"spec":{"strategy":{"canary":{"workload":{"name":"web"},"steps":[{"setWeight":25},{"pause":{"duration":"10s"}},{"setWeight":50},{"pause":{}}]}}}}'
info "steps: setWeight 25 -> pause 10s -> setWeight 50 -> pause until \`ferry promote\`"
info "(with analysis steps, ferry would ask Prometheus between steps and roll back by itself)"

step "committing nginx:$canary_tag: it runs as web-canary beside web, replicas shift step by step"
write_app "$canary_tag"
git_repo commit -q -am "guestbook: nginx $canary_tag"
rev3="$(revision)"
"$ferry" sync "$app" -n "$app_ns"
watch_rollout "paused at 50% for a person" rollout_at Paused 3
echo
"$ferry" status "$app" -n "$app_ns" | sed 's/^/    /'

step "ferry promote $app -n $app_ns: web takes nginx:$canary_tag on every replica, web-canary goes"
"$ferry" promote "$app" -n "$app_ns"
watch_rollout "promoted; Synced/Healthy at ${rev3#main@sha1:}" rollout_done "$rev3"
info "events on the Application:"
kubectl get events -n "$app_ns" --field-selector "involvedObject.name=$app" \
  --sort-by=.lastTimestamp -o 'custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message' | grep -i rollout | sed 's/^/      /'

cat <<EOF

ferry keeps running in the background (pid $pid), reconciling Applications in namespace $app_ns.
Try it:

  export KUBECONFIG=$KUBECONFIG PATH=$bin:\$PATH
  kubectl get fapp -n $app_ns -w                    # watch SYNC, HEALTH, REVISION, READY
  tail -f $log_file
  curl -s http://$http_address/metrics | grep '^ferry_'   # what Prometheus scrapes

  # change the app in Git, then refresh at once (or wait for the 1m interval)
  cd $repo_dir
  sed -i 's/replicas: 4/replicas: 5/' $app/deployment.yaml && git commit -qam "5 replicas"
  $ferry sync $app -n $app_ns
  git rm -q $app/configmap.yaml && git commit -qm "drop the ConfigMap"   # pruned (and the
      # Deployment's envFrom then names a missing ConfigMap: kwok does not mind)

  # another canary: a new tag goes 25% -> 10s -> 50%, then waits for you
  sed -i 's/nginx:$canary_tag/nginx:1.27.3/' $app/deployment.yaml && git commit -qam "nginx 1.27.3"
  $ferry sync $app -n $app_ns && $ferry status $app -n $app_ns
  $ferry promote $app -n $app_ns          # next step (--full: all the way), or:
  $ferry abort $app -n $app_ns            # back to the stable version; \`ferry retry\` tries again

  # drift: ferry notices within seconds and reverts it (selfHeal: true)
  kubectl edit deployment web -n $dest_ns           # e.g. change the image or replicas
  kubectl delete service web -n $dest_ns
  kubectl get events -n $app_ns --field-selector involvedObject.name=$app

  # stop ferry (make demo stops it too before starting a new one)
  kill \$(cat $pid_file)
  # remove the app and what it manages (prune: true deletes it; ferry must be running)
  kubectl delete fapp $app -n $app_ns
  make testenv-down                                 # stop the local cluster
EOF
