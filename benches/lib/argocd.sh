# Sourced by the side-by-side benchmarks: Argo CD's application controller and repo-server (one
# multi-call binary, built by `tests/testenv/build.sh argo-cd` from the github.com/argoproj/argo-cd/v3
# module) and a redis-server for their cache, as local processes against the local control plane.
# The git smart-HTTP server every tool reads from is in common.sh.
#
# How Argo CD runs here, and why:
#   - Control namespace = application namespace = the bench namespace: argocd-cm, argocd-secret,
#     argocd-rbac-cm, argocd-cmd-params-cm and the `default` AppProject live there, as in an
#     install into that namespace, and the controller (--namespace) reconciles Applications there.
#   - Destination: the in-cluster cluster, `https://kubernetes.default.svc`. Argo CD builds its
#     client for that address with rest.InClusterConfig(), which a local process has not; with
#     ARGOCD_FAKE_IN_CLUSTER=true (pkg/apis/application/v1alpha1, Cluster.RawRestConfig; what
#     Argo CD's own Procfile uses for local development) it reads $KUBECONFIG instead. No cluster
#     Secret is needed, and Applications name the destination exactly as in a real install.
#   - Git: the repo-server clones the bench's plain http:// URLs with the git CLI, anonymously, as
#     for any public repository; no repository Secret.
#   - Settings the manifests pass as environment from argocd-cm / argocd-cmd-params-cm (the
#     resync period, processors, QPS) are passed here as flags and environment directly: a local
#     process does not read them from the ConfigMaps, which are written anyway so that what ran
#     is visible in the cluster.
#
# Needs $root, $bin and $KUBECONFIG (tests/testenv/use.sh), kubectl(), log() and die() from the
# sourcing script, and free_port (benches/lib/common.sh).
# shellcheck shell=bash disable=SC2154  # $root, $bin and $KUBECONFIG come from the sourcing script

# shellcheck source=../../tests/testenv/versions.env
source "$root/tests/testenv/versions.env"
argocd_dir="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv/argo-cd-$ARGO_CD_VERSION"
argocd_bin="$argocd_dir/bin/argocd"
argocd_in_cluster="https://kubernetes.default.svc"

# Builds Argo CD (once; build.sh skips a finished build) and installs Debian's redis-server, a
# bench-only package `make test` never needs (deps.sh bench).
argocd_build() {
  "$root/tests/testenv/deps.sh" bench
  "$root/tests/testenv/build.sh" argo-cd
}

# Application and AppProject, server-side (the Application CRD is ~330 KB, over the 256 KiB a
# client-side apply's last-applied annotation may hold). ApplicationSet (~1 MB) is not needed by
# the benches: tried, and skipped with a message if the API server refuses it.
argocd_install_crds() {
  kubectl apply --server-side --force-conflicts -f "$argocd_dir/crds/application-crd.yaml" \
    -f "$argocd_dir/crds/appproject-crd.yaml" >/dev/null
  kubectl apply --server-side --force-conflicts -f "$argocd_dir/crds/applicationset-crd.yaml" \
    >/dev/null 2>&1 || log "Argo CD's ApplicationSet CRD was refused; not needed, skipped"
  wait_established \
    crd/applications.argoproj.io crd/appprojects.argoproj.io >/dev/null
}

# --- the processes ---------------------------------------------------------------------------

argocd_controller_pid=""
argocd_repo_pid=""
argocd_redis_pid=""
argocd_controller_metrics="" # host:port of the controller's /metrics and /healthz
argocd_repo_metrics=""       # host:port of the repo-server's /metrics and /healthz
argocd_interval=""           # the running controller's resync period (timeout.reconciliation)

# Settings for SIZE Applications, from Argo CD's scalability guidance ("status/operation
# processors, QPS" in the words of issue 25):
#   - --status-processors / --operation-processors: 20 / 10 by default; "For 1000 application we
#     use 50 for --status-processors and 25 for --operation-processors" (operator manual, High
#     Availability, argocd-application-controller; argo-cd docs/operator-manual/high_availability.md).
#     The AWS and CNOE scalability tests keep 50 / 25 at 10,000 Applications.
#   - ARGOCD_K8S_CLIENT_QPS / _BURST: 50 / 100 by default (v1alpha1/cluster_constants.go); the
#     client QPS is what the AWS test ("Argo CD Application Controller Scalability Testing on
#     Amazon EKS", aws.amazon.com/blogs/opensource) and CNOE ("Argo CD Benchmarking",
#     cnoe.io/blog/argo-cd-application-scalability) found to limit 10,000 Applications on one
#     cluster: tuned to 200 (burst 400, twice, as the default ratio), their sync of 10,000
#     one-ConfigMap Applications fell to about 11 minutes. Raised from 1,000 Applications on.
#   - --kubectl-parallelism-limit (controller.kubectl.parallelism.limit, default 20) bounds
#     concurrent applies; kept at least the operation processors, so that no sync waits for one.
#   - Repo server --parallelismlimit (reposerver.parallelism.limit, default 0 = no limit) guards
#     against OOM from forked Helm/Kustomize; plain-directory apps fork nothing: left unlimited.
#     (The controller has no repo-server parallelism flag in v3.2; --repo-server-timeout-seconds
#     is raised from 60 to 180 at 1,000 Applications and more, as the HA guide suggests when
#     manifest generation queues up.)
argocd_settings() { # size -> "status operation kubectl-limit qps burst repo-timeout"
  local size="$1"
  if ((size >= 1000)); then
    echo "50 25 25 200 400 180"
  elif ((size > 200)); then
    echo "50 25 25 50 100 60"
  else
    echo "20 10 20 50 100 60"
  fi
}

# Seconds of a duration such as 3m, 90s, 1h or 45.
argocd_seconds() {
  case "$1" in
    *h) echo $((${1%h} * 3600)) ;;
    *m) echo $((${1%m} * 60)) ;;
    *s) echo "${1%s}" ;;
    *) echo "$1" ;;
  esac
}

# The ConfigMaps and Secret an install has, and the default AppProject (which argocd-server
# creates in an install; no argocd-server runs here). The settings informers select
# app.kubernetes.io/part-of=argocd.
argocd_settings_yaml() { # namespace interval status operation kubectl-limit qps burst repo-timeout
  local ns="$1" key
  key="$(head -c 32 /dev/urandom | base64 | tr -d '\n')"
  cat <<EOF
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cm, namespace: $ns, labels: {app.kubernetes.io/part-of: argocd}}
data:
  timeout.reconciliation: "$2"
  # Argo CD's default jitter (60s) would stretch a 1m period to 1-2m; the benches compare tools
  # at one period.
  timeout.reconciliation.jitter: "0s"
${argocd_cm_extra:-}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-cmd-params-cm, namespace: $ns, labels: {app.kubernetes.io/part-of: argocd}}
data:
  controller.status.processors: "$3"
  controller.operation.processors: "$4"
  controller.kubectl.parallelism.limit: "$5"
  controller.repo.server.timeout.seconds: "$8"
  controller.k8sclient.qps: "$6"
  controller.k8sclient.burst: "$7"
  reposerver.parallelism.limit: "0"
---
apiVersion: v1
kind: ConfigMap
metadata: {name: argocd-rbac-cm, namespace: $ns, labels: {app.kubernetes.io/part-of: argocd}}
---
apiVersion: v1
kind: Secret
metadata: {name: argocd-secret, namespace: $ns, labels: {app.kubernetes.io/part-of: argocd}}
stringData: {server.secretkey: "$key"}
---
apiVersion: argoproj.io/v1alpha1
kind: AppProject
metadata: {name: default, namespace: $ns}
spec:
  sourceRepos: ["*"]
  destinations: [{server: "*", namespace: "*"}]
  clusterResourceWhitelist: [{group: "*", kind: "*"}]
EOF
}

# Starts redis-server, argocd-repo-server and argocd-application-controller for NAMESPACE, with
# logs and state in WORKDIR, set for SIZE Applications (default 100) and a resync period of
# INTERVAL (default 3m, Argo CD's), and waits until both Argo CD processes answer /healthz.
argocd_start() { # namespace workdir [size] [interval]
  local ns="$1" work="$2" size="${3:-100}" interval="${4:-3m}" settings redis repo
  read -r -a settings <<<"$(argocd_settings "$size")"
  argocd_interval="$interval"
  mkdir -p "$work/redis" "$work/tmp" "$work/tls" "$work/ssh" "$work/gpg"
  argocd_settings_yaml "$ns" "$interval" "${settings[@]}" | kubectl apply -f - >/dev/null
  redis="127.0.0.1:$(free_port)"
  repo="127.0.0.1:$(free_port)"
  argocd_repo_metrics="127.0.0.1:$(free_port)"
  argocd_controller_metrics="127.0.0.1:$(free_port)"
  # A throw-away cache, as Argo CD's own: no RDB snapshots, no append-only file.
  redis-server --bind 127.0.0.1 --port "${redis#*:}" --save '' --appendonly no \
    --dir "$work/redis" --logfile "$work/redis.log" &
  argocd_redis_pid=$!
  argocd_start_repo_server "$work" "$redis" "$repo" "$interval"
  argocd_start_controller "$ns" "$work" "$redis" "$repo" "$interval" "${settings[@]}"
  argocd_wait_healthy "$work"
  log "Argo CD for $size apps: status/operation processors ${settings[0]}/${settings[1]}," \
    "client QPS/burst ${settings[3]}/${settings[4]}, resync $interval"
}

argocd_start_repo_server() { # workdir redis repo-address interval
  local work="$1" revision_cache=180
  # The repo-server answers "which commit is main?" from its cache for 3m
  # (--revision-cache-expiration): with a shorter resync the controller would look at Git only
  # every 3m. The cache is kept no longer than the resync, so that the period is the promise to
  # look at Git, as for the other tools.
  (($(argocd_seconds "$4") < revision_cache)) && revision_cache="$(argocd_seconds "$4")"
  # Clones go to TMPDIR; TLS/SSH/GPG data paths default to /app/config/... of the image.
  env ARGOCD_BINARY_NAME=argocd-repo-server ARGOCD_FAKE_IN_CLUSTER=true TMPDIR="$work/tmp" \
    ARGOCD_TLS_DATA_PATH="$work/tls" ARGOCD_SSH_DATA_PATH="$work/ssh" \
    ARGOCD_GNUPGHOME="$work/gpg" ARGOCD_GPG_DATA_PATH="$work/gpg" ARGOCD_GPG_ENABLED=false \
    "$argocd_bin" --address 127.0.0.1 --port "${3#*:}" --disable-tls --redis "$2" \
    --metrics-address 127.0.0.1 --metrics-port "${argocd_repo_metrics#*:}" --parallelismlimit 0 \
    --revision-cache-expiration "${revision_cache}s" --loglevel info --logformat text >"$work/repo-server.log" 2>&1 &
  argocd_repo_pid=$!
}

argocd_start_controller() { # ns workdir redis repo interval status operation kubectl qps burst repo-timeout
  local ns="$1" work="$2"
  # HOSTNAME: the StatefulSet's pod name, from which the controller takes its shard (0 of 1).
  # ARGOCD_RECONCILIATION_*: what the StatefulSet maps from argocd-cm's timeout.reconciliation*.
  # The metrics port has no address flag: it listens on every interface.
  env ARGOCD_BINARY_NAME=argocd-application-controller ARGOCD_FAKE_IN_CLUSTER=true \
    HOSTNAME=argocd-application-controller-0 TMPDIR="$work/tmp" \
    ARGOCD_RECONCILIATION_TIMEOUT="$5" ARGOCD_RECONCILIATION_JITTER=0s \
    ARGOCD_K8S_CLIENT_QPS="$9" ARGOCD_K8S_CLIENT_BURST="${10}" \
    "$argocd_bin" --kubeconfig "$KUBECONFIG" --namespace "$ns" --redis "$3" \
    --repo-server "$4" --repo-server-plaintext --repo-server-timeout-seconds "${11}" \
    --status-processors "$6" --operation-processors "$7" --kubectl-parallelism-limit "$8" \
    --metrics-port "${argocd_controller_metrics#*:}" --loglevel info --logformat text \
    >"$work/application-controller.log" 2>&1 &
  argocd_controller_pid=$!
}

argocd_wait_healthy() { # workdir
  local work="$1" deadline=$((SECONDS + 60)) addr
  for addr in "$argocd_repo_metrics" "$argocd_controller_metrics"; do
    until curl -sf "http://$addr/healthz" >/dev/null; do
      kill -0 "$argocd_redis_pid" 2>/dev/null || { tail -n 20 "$work/redis.log" >&2; die "redis-server exited"; }
      kill -0 "$argocd_repo_pid" 2>/dev/null || { tail -n 20 "$work/repo-server.log" >&2; die "argocd-repo-server exited"; }
      kill -0 "$argocd_controller_pid" 2>/dev/null ||
        { tail -n 20 "$work/application-controller.log" >&2; die "argocd-application-controller exited"; }
      ((SECONDS < deadline)) || die "Argo CD not healthy after 60s (logs in $work)"
      sleep 0.1
    done
  done
}

# "controller repo-server redis" pids, for CPU and RSS.
argocd_pids() { echo "$argocd_controller_pid $argocd_repo_pid $argocd_redis_pid"; }

argocd_stop() {
  local pid
  for pid in $(argocd_pids); do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $(argocd_pids); do wait "$pid" 2>/dev/null || true; done
  argocd_controller_pid=""
  argocd_repo_pid=""
  argocd_redis_pid=""
}

# Requests the controller's own Kubernetes clients made: argocd_kubectl_requests_total on its
# metrics endpoint, which is client-go's rest_client_requests_total under Argo CD's name
# (util/metrics/kubectl: every request of every client-go client in the process, by code and
# method: the cluster cache's lists and watches of every kind, the Application informer, status
# patches, the syncs' applies; a watch counts once, when it is made). The repo-server makes no
# Kubernetes requests (it clones and renders). argocd_app_k8s_request_total, the per-Application
# count, is a subset (sync applies and live-state lookups) and is not added.
argocd_client_requests() {
  curl -sf "http://$argocd_controller_metrics/metrics" |
    awk '/^argocd_kubectl_requests_total/ { n += $NF } END { printf "%d", n }'
}

# --- Applications ----------------------------------------------------------------------------

# One Application: automated sync with prune and self-heal, into NAMESPACE of the in-cluster
# cluster. Argo CD has no per-Application interval: its resync is the controller's
# (timeout.reconciliation), set by argocd_start; an INTERVAL that differs is refused rather than
# silently ignored.
argocd_apply_app() { # namespace name repo-url path [interval]
  if [[ -n "${5:-}" && -n "$argocd_interval" && "$(argocd_seconds "$5")" != "$(argocd_seconds "$argocd_interval")" ]]; then
    die "Argo CD's resync period is the controller's ($argocd_interval): pass $5 to argocd_start"
  fi
  argocd_app_yaml "$1" "$2" "$3" "$4" | kubectl apply -f - >/dev/null
}

argocd_app_yaml() { # namespace name repo-url path
  printf '%s\n' "---" "apiVersion: argoproj.io/v1alpha1" "kind: Application" \
    "metadata: {name: $2, namespace: $1}" "spec:" "  project: default" \
    "  source: {repoURL: \"$3\", targetRevision: main, path: $4}" \
    "  destination: {server: \"$argocd_in_cluster\", namespace: $1}" \
    "  syncPolicy: {automated: {prune: true, selfHeal: true}}"
}

# COUNT Applications as one multi-document YAML on stdout: names PREFIX0000.., paths from
# PATH_PATTERN, a printf pattern given the index (apps/app-%03d; a pattern without % is one path
# for all). Builtins only (no process per Application), for 10,000 of them. Pipe it to
# `kubectl apply -f -` or `kubectl create -f -`.
argocd_apps_yaml() { # namespace prefix count repo-url path-pattern
  local ns="$1" prefix="$2" count="$3" url="$4" pattern="$5" i width=3 name path
  ((${#count} - 1 > width)) && width=$((${#count} - 1))
  for ((i = 0; i < count; i++)); do
    printf -v name '%s%0*d' "$prefix" "$width" "$i"
    # shellcheck disable=SC2059  # the pattern is the caller's printf format
    printf -v path "$pattern" "$i"
    argocd_app_yaml "$ns" "$name" "$url" "$path"
  done
}

# Waits (up to TIMEOUT seconds) until COUNT Applications in NAMESPACE are Synced and Healthy at
# the same time, with one watch (as wait_available in common.sh), not a kubectl per app.
argocd_wait_synced() { # namespace count timeout
  local ns="$1" want="$2" wait_for="$3" fd kpid name sync health n=0 deadline
  local -A ok=()
  deadline=$((SECONDS + wait_for))
  exec {fd}< <(exec "$bin/kubectl" get applications.argoproj.io -n "$ns" --watch --chunk-size=0 \
    -o 'jsonpath={.metadata.name}|{.status.sync.status}|{.status.health.status}{"\n"}')
  kpid=$!
  while ((n < want && SECONDS < deadline)) &&
    IFS='|' read -r -t $((deadline - SECONDS > 0 ? deadline - SECONDS : 1)) name sync health <&"$fd"; do
    if [[ "$sync" == Synced && "$health" == Healthy ]]; then
      ok[$name]=1
    else
      unset "ok[$name]"
    fi
    n=${#ok[@]}
  done
  kill "$kpid" 2>/dev/null || true
  exec {fd}<&-
  ((n >= want)) || die "$n of $want Argo CD Applications in $ns Synced and Healthy after ${wait_for}s"
}
