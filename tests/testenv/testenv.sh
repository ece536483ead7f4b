#!/usr/bin/env bash
# A real Kubernetes control plane on loopback for ferry's tests and demo.
#
#   testenv.sh up       build (once, cached) and start etcd, kube-apiserver, kube-controller-manager,
#                       kube-scheduler and kwok; reuse them if already running and healthy
#   testenv.sh down     stop the processes `up` started (by recorded PID) and remove the state
#   testenv.sh env      print KUBECONFIG=... and FERRY_TESTENV_BIN=... (kubectl, kustomize, helm,
#                       and for charts over HTTP/OCI and SOPS: registry, oras, sops, age, age-keygen)
#   testenv.sh status   print each process and whether the API server is ready; exit 1 if not
#   testenv.sh stop-apiserver
#                       stop kube-apiserver only: the cluster is unreachable while etcd, the
#                       certificates and the port stay (tests of a remote cluster going away)
#   testenv.sh start-apiserver
#                       start it again with the command line it was started with (saved in
#                       $state/cmdline/); returns once /readyz answers
#   testenv.sh restart-apiserver
#                       the two above in one: same port, etcd and certificates; etcd and the
#                       other daemons keep running
#
# Environment:
#   FERRY_TESTENV_STATE       state directory (default: <repo>/target/testenv)
#   FERRY_TESTENV_COMPONENTS  `full` (default) or `apiserver` (etcd + kube-apiserver only: a bare
#                             cluster, used to test ferry against an API server without its CRD)
#   FERRY_TESTENV_PROFILE     `default` or `small`: for the extra clusters of multi-cluster tests,
#                             several idle beside the main one, so each keeps its memory low (Go
#                             GC settings, fewer controllers, lower request limits, see
#                             set_profile); read by `up` only, when it starts the daemons
#   FERRY_CACHE               build cache root (default: ~/.cache/ferry)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

state="${FERRY_TESTENV_STATE:-$repo/target/testenv}"
components="${FERRY_TESTENV_COMPONENTS:-full}"
profile="${FERRY_TESTENV_PROFILE:-default}"
cache="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv"

k8s_bin="$cache/kubernetes-$KUBERNETES_VERSION/bin"
etcd_bin="$cache/etcd-$ETCD_VERSION/bin"
kwok_dir="$cache/kwok-$KWOK_VERSION"
kustomize_bin="$cache/kustomize-$KUSTOMIZE_VERSION/bin"
helm_bin="$cache/helm-$HELM_VERSION/bin"
gateway_api_crds="$cache/gateway-api-$GATEWAY_API_VERSION/crds"
age_bin="$cache/age-$AGE_VERSION/bin"
sops_bin="$cache/sops-$SOPS_VERSION/bin"
registry_bin="$cache/registry-$REGISTRY_VERSION/bin"
oras_bin="$cache/oras-$ORAS_VERSION/bin"
# Not needed by the control plane itself: the tools the chart (HTTP and OCI) and SOPS tests run.
# gitea (the forge of the notification, revert and image update tests) takes about 5 minutes to
# build the first time, crane about one: built with the control plane, not in the middle of a
# parallel test run.
artifact_tools=(age sops registry oras gitea crane)

pki="$state/pki"
logs="$state/logs"
pids="$state/pids"
kubeconfig="$state/kubeconfig"
node_name="kwok-node-0"

log() { printf '[testenv] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

case "$components" in
  full) daemons=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok) ;;
  apiserver) daemons=(etcd kube-apiserver) ;;
  *) die "FERRY_TESTENV_COMPONENTS must be 'full' or 'apiserver', not '$components'" ;;
esac
[[ "$profile" == default || "$profile" == small ]] ||
  die "FERRY_TESTENV_PROFILE must be 'default' or 'small', not '$profile'"

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

pid_of() { [[ -f "$pids/$1" ]] && cat "$pids/$1"; }

# Resident memory of a running daemon, in MiB.
rss_mib() { # name
  local kib; kib="$(ps -o rss= -p "$(pid_of "$1")" 2>/dev/null)" || return 1
  echo $((kib / 1024))
}

# A recorded PID counts only while it is still the process we started: PIDs get reused, and we
# must never signal someone else's process.
is_ours() { # name
  local pid; pid="$(pid_of "$1")" || return 1
  [[ -n "$pid" && -r "/proc/$pid/cmdline" ]] || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$state"
}

api_ready() {
  [[ -f "$state/apiserver.port" ]] || return 1
  curl -fsS --max-time 5 --cacert "$pki/ca.crt" --cert "$pki/admin.crt" --key "$pki/admin.key" \
    "https://127.0.0.1:$(cat "$state/apiserver.port")/readyz" >/dev/null 2>&1
}

healthy() {
  local d
  for d in "${daemons[@]}"; do is_ours "$d" || return 1; done
  api_ready
}

wait_for() { # description timeout-seconds log-to-show command...
  local what="$1" timeout="$2" show="$3"; shift 3
  local deadline=$((SECONDS + timeout))
  until "$@"; do
    if ((SECONDS >= deadline)); then
      log "timed out after ${timeout}s waiting for $what"
      [[ -n "$show" && -f "$logs/$show.log" ]] && { log "last lines of $logs/$show.log:"; tail -n 30 "$logs/$show.log" >&2; }
      exit 1
    fi
    if [[ -n "$show" ]] && ! is_ours "$show"; then
      log "$show exited while waiting for $what; last lines of $logs/$show.log:"
      tail -n 30 "$logs/$show.log" >&2
      exit 1
    fi
    sleep 0.5
  done
}

start() { # name binary args...
  local name="$1"; shift
  # Saved because a stopped daemon's command line is gone with its process: start-apiserver
  # starts it again from here, exactly as it was.
  mkdir -p "$state/cmdline"
  printf '%s\0' "$@" >"$state/cmdline/$name"
  # The wrapper records its own PID, then execs: the recorded PID is the daemon's even when
  # setsid has to fork. setsid keeps the daemons alive after the caller's terminal or make exits.
  setsid bash -c 'echo $$ >"$0"; exec "$@"' "$pids/$name" "$@" </dev/null >>"$logs/$name.log" 2>&1 8>&- &
  local i
  for i in $(seq 50); do [[ -s "$pids/$name" ]] && return 0; sleep 0.1; done
  die "$name did not start"
}

stop_one() { # name [seconds to wait after SIGTERM before SIGKILL]
  local d="$1" grace="${2:-15}" pid deadline
  is_ours "$d" || return 0
  pid="$(pid_of "$d")"
  kill "$pid" 2>/dev/null || true
  deadline=$((SECONDS + grace))
  while is_ours "$d"; do
    if ((SECONDS >= deadline)); then
      log "$d (pid $pid) ignored SIGTERM for ${grace}s; killing it"
      kill -9 "$pid" 2>/dev/null || true
    fi
    sleep 0.2
  done
}

stop_all() {
  local d
  [[ -d "$pids" ]] || return 0
  # Dependents first, one at a time: kube-apiserver waits forever on shutdown if etcd goes first.
  for d in kwok kube-scheduler kube-controller-manager kube-apiserver etcd; do
    stop_one "$d"
  done
  rm -rf "$pids"
}

make_pki() {
  mkdir -p "$pki"
  local o=(-days 3650 -sha256)
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$pki/ca.key" -out "$pki/ca.crt" "${o[@]}" \
    -subj "/CN=ferry-testenv-ca" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" 2>/dev/null
  issue() { # name subject extensions
    openssl req -newkey rsa:2048 -nodes -keyout "$pki/$1.key" -out "$pki/$1.csr" -subj "$2" 2>/dev/null
    openssl x509 -req -in "$pki/$1.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
      -out "$pki/$1.crt" "${o[@]}" -extfile <(printf '%b' "$3") 2>/dev/null
    rm -f "$pki/$1.csr"
  }
  issue apiserver "/CN=kube-apiserver" \
    "subjectAltName=IP:127.0.0.1,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE"
  issue admin "/O=system:masters/CN=ferry-testenv-admin" \
    "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nbasicConstraints=CA:FALSE"
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
  chmod 600 "$pki"/*.key
}

write_kubeconfig() { # port
  local b64='base64 -w0'
  local tmp="$kubeconfig.tmp"
  cat >"$tmp" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: ferry-testenv
  cluster:
    server: https://127.0.0.1:$1
    certificate-authority-data: $($b64 <"$pki/ca.crt")
users:
- name: ferry-testenv-admin
  user:
    client-certificate-data: $($b64 <"$pki/admin.crt")
    client-key-data: $($b64 <"$pki/admin.key")
contexts:
- name: ferry-testenv
  context: {cluster: ferry-testenv, user: ferry-testenv-admin}
current-context: ferry-testenv
EOF
  chmod 600 "$tmp"
  mv "$tmp" "$kubeconfig"
}

link_tools() {
  mkdir -p "$state/bin"
  ln -sf "$k8s_bin/kubectl" "$state/bin/kubectl"
  if [[ "$components" == full ]]; then
    ln -sf "$kustomize_bin/kustomize" "$state/bin/kustomize"
    ln -sf "$helm_bin/helm" "$state/bin/helm"
    ln -sf "$age_bin/age" "$state/bin/age"
    ln -sf "$age_bin/age-keygen" "$state/bin/age-keygen"
    ln -sf "$sops_bin/sops" "$state/bin/sops"
    ln -sf "$registry_bin/registry" "$state/bin/registry"
    ln -sf "$oras_bin/oras" "$state/bin/oras"
  fi
}

kubectl() { "$k8s_bin/kubectl" --kubeconfig "$kubeconfig" "$@"; }

# Each daemon's environment and the flags that differ by profile. `default` serves every test of
# a run at once; `small` is an extra cluster a few tests talk to, several of them idle beside the
# main one on a small machine.
set_profile() {
  etcd_env=() apiserver_env=() kcm_env=() scheduler_env=() kwok_env=()
  etcd_flags=(--quota-backend-bytes=4294967296)
  apiserver_flags=()
  kcm_flags=(--kube-api-qps=200 --kube-api-burst=400 --concurrent-deployment-syncs=20 --concurrent-replicaset-syncs=20)
  scheduler_flags=(--kube-api-qps=200 --kube-api-burst=400)
  [[ "$profile" == small ]] || return 0
  # GOGC=50 collects at 1.5 times the live heap instead of twice it: idle daemons allocate
  # little, so that costs no measurable CPU. GOMEMLIMIT makes the runtime collect, and hand
  # memory back, before the heap passes it; it is soft, so it is set well above what each daemon
  # keeps live when idle: close to that, the collector would run without pause on a small machine.
  etcd_env=(env GOGC=50 GOMEMLIMIT=64MiB)
  apiserver_env=(env GOGC=50 GOMEMLIMIT=256MiB)
  kcm_env=(env GOGC=50 GOMEMLIMIT=96MiB)
  scheduler_env=(env GOGC=50 GOMEMLIMIT=48MiB)
  kwok_env=(env GOGC=50 GOMEMLIMIT=48MiB)
  # A bound on the disk each extra cluster's etcd may fill, and a shorter raft log kept in memory
  # between snapshots.
  etcd_flags=(--quota-backend-bytes=536870912 --snapshot-count=2000)
  apiserver_flags=(--max-requests-inflight=100 --max-mutating-requests-inflight=50)
  # Only the controllers a test of a remote cluster sees at work: workloads, namespaces and
  # garbage collection, ServiceAccounts and their token Secrets, RBAC's aggregated roles, and
  # the node lifecycle kwok's Node goes through. Each one left out is informers not kept.
  local controllers=(
    deployment replicaset statefulset daemonset job garbage-collector namespace
    serviceaccount serviceaccount-token root-ca-certificate-publisher clusterrole-aggregation
    endpoints endpointslice node-lifecycle pod-garbage-collector disruption service-cidr
    taint-eviction
  )
  kcm_flags=(--controllers="$(printf '%s-controller,' "${controllers[@]}" | sed 's/,$//')"
    --kube-api-qps=50 --kube-api-burst=100 --concurrent-deployment-syncs=2 --concurrent-replicaset-syncs=2)
  scheduler_flags=(--kube-api-qps=50 --kube-api-burst=100)
}

node_ready() {
  [[ "$(kubectl get node "$node_name" -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]]
}

default_sa() { kubectl -n default get serviceaccount default >/dev/null 2>&1; }

# Everything runs but kube-apiserver, and its command line is saved: a test stopped it
# (stop-apiserver) and ended before starting it again.
only_apiserver_stopped() {
  local d
  [[ -s "$state/cmdline/kube-apiserver" ]] && ! is_ours kube-apiserver || return 1
  for d in "${daemons[@]}"; do [[ "$d" == kube-apiserver ]] || is_ours "$d" || return 1; done
}

cmd_up() {
  lock_state
  if only_apiserver_stopped; then
    log "kube-apiserver was stopped; starting it again"
    start_apiserver
  fi

  if healthy; then
    # A control plane started before a tool was added still gets it (build.sh skips built ones).
    [[ "$components" == full ]] && "$here/build.sh" "${artifact_tools[@]}"
    link_tools
    log "reusing the running control plane ($components) in $state"
    if [[ "$components" == full ]]; then
      "$here/build.sh" gateway-api
      install_gateway_api
    fi
    return 0
  fi

  local build=(kubernetes etcd)
  [[ "$components" == full ]] && build+=(kwok kustomize helm gateway-api "${artifact_tools[@]}")
  "$here/build.sh" "${build[@]}"

  # Whatever is left of an earlier environment (a crash, a reboot) is stopped and wiped: a fresh
  # cluster is cheaper to reason about than a half-alive one.
  stop_all
  rm -rf "$state/etcd" "$pki" "$logs" "$state"/*.port "$kubeconfig" "$state/cmdline"
  mkdir -p "$logs" "$pids" "$state/etcd"
  log "starting the control plane ($components) in $state"
  make_pki
  link_tools

  local etcd_port etcd_peer api_port
  etcd_port="$(free_port)"; etcd_peer="$(free_port)"; api_port="$(free_port)"
  echo "$api_port" >"$state/apiserver.port"

  set_profile
  start etcd "${etcd_env[@]}" "$etcd_bin/etcd" --name=ferry-testenv --data-dir="$state/etcd" \
    --listen-client-urls="http://127.0.0.1:$etcd_port" --advertise-client-urls="http://127.0.0.1:$etcd_port" \
    --listen-peer-urls="http://127.0.0.1:$etcd_peer" --initial-advertise-peer-urls="http://127.0.0.1:$etcd_peer" \
    --initial-cluster="ferry-testenv=http://127.0.0.1:$etcd_peer" --unsafe-no-fsync=true \
    --log-level=warn "${etcd_flags[@]}"
  wait_for "etcd" 60 etcd curl -fs --max-time 2 "http://127.0.0.1:$etcd_port/health" -o /dev/null
  log "etcd is healthy on 127.0.0.1:$etcd_port"

  start kube-apiserver "${apiserver_env[@]}" "$k8s_bin/kube-apiserver" \
    --etcd-servers="http://127.0.0.1:$etcd_port" \
    --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$api_port" \
    --tls-cert-file="$pki/apiserver.crt" --tls-private-key-file="$pki/apiserver.key" \
    --client-ca-file="$pki/ca.crt" \
    --service-account-issuer=https://kubernetes.default.svc.cluster.local \
    --service-account-key-file="$pki/sa.pub" --service-account-signing-key-file="$pki/sa.key" \
    --service-cluster-ip-range=10.96.0.0/12 \
    --authorization-mode=Node,RBAC --allow-privileged=true --endpoint-reconciler-type=none \
    --cert-dir="$state/apiserver-certs" "${apiserver_flags[@]}"
  wait_for "kube-apiserver /readyz" 120 kube-apiserver api_ready
  write_kubeconfig "$api_port"
  log "kube-apiserver is ready on https://127.0.0.1:$api_port"

  if [[ "$components" == full ]]; then
    local kcm_port sched_port kwok_port
    kcm_port="$(free_port)"; sched_port="$(free_port)"; kwok_port="$(free_port)"
    start kube-controller-manager "${kcm_env[@]}" "$k8s_bin/kube-controller-manager" \
      --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
      --authorization-kubeconfig="$kubeconfig" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port="$kcm_port" \
      --root-ca-file="$pki/ca.crt" --service-account-private-key-file="$pki/sa.key" \
      --use-service-account-credentials=true --cert-dir="$state/kcm-certs" \
      --node-monitor-grace-period=60s "${kcm_flags[@]}"
    start kube-scheduler "${scheduler_env[@]}" "$k8s_bin/kube-scheduler" \
      --kubeconfig="$kubeconfig" --authentication-kubeconfig="$kubeconfig" \
      --authorization-kubeconfig="$kubeconfig" \
      --leader-elect=false --bind-address=127.0.0.1 --secure-port="$sched_port" \
      --cert-dir="$state/scheduler-certs" "${scheduler_flags[@]}"
    start kwok "${kwok_env[@]}" "$kwok_dir/bin/kwok" --kubeconfig="$kubeconfig" --config="$kwok_dir/stages.yaml" \
      --manage-all-nodes=true --cidr=10.244.0.0/16 --node-ip=127.0.0.1 \
      --node-lease-duration-seconds=40 --server-address="127.0.0.1:$kwok_port"

    # One fake Node; every node is fake, so no taint keeps ordinary Pods off it.
    kubectl apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Node
metadata:
  name: $node_name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    kubernetes.io/hostname: $node_name
    kubernetes.io/os: linux
    kubernetes.io/arch: amd64
    type: kwok
status:
  allocatable: {cpu: "32", memory: 256Gi, pods: "250"}
  capacity: {cpu: "32", memory: 256Gi, pods: "250"}
EOF
    wait_for "Node $node_name to be Ready" 120 kwok node_ready
    log "node $node_name is Ready"
    wait_for "the default ServiceAccount" 120 kube-controller-manager default_sa
    install_gateway_api
  fi
  log "control plane is up: export KUBECONFIG=$kubeconfig"
}

# The Gateway API CRDs (canary routing by HTTPRoute weights), once per cluster.
install_gateway_api() {
  kubectl get crd httproutes.gateway.networking.k8s.io >/dev/null 2>&1 && return 0
  kubectl apply --server-side -f "$gateway_api_crds" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd/httproutes.gateway.networking.k8s.io >/dev/null
  log "Gateway API $GATEWAY_API_VERSION CRDs installed"
}

cmd_down() {
  lock_state
  stop_all
  rm -rf "$state/etcd" "$pki" "$state"/*.port "$kubeconfig" "$state"/*-certs "$state/bin" "$state/cmdline"
  log "stopped; logs kept in $logs"
}

# For tests of clients that must survive an API server outage or restart: the same binary,
# flags and environment, so the port, etcd and certificates stay as they were.
lock_state() {
  mkdir -p "$state"
  exec 8>"$state/.lock"
  flock 8
}

stop_apiserver() {
  local pid
  is_ours kube-apiserver || return 0
  pid="$(pid_of kube-apiserver)"
  # A control plane started before command lines were saved: read it from the process.
  [[ -s "$state/cmdline/kube-apiserver" ]] || { mkdir -p "$state/cmdline"; cat "/proc/$pid/cmdline" >"$state/cmdline/kube-apiserver"; }
  # It stops listening at once, but open watches hold its graceful shutdown for up to a minute;
  # nothing is lost by not waiting that out (every object is in etcd).
  stop_one kube-apiserver 3
  rm -f "$pids/kube-apiserver"
  log "kube-apiserver stopped (was pid $pid); https://127.0.0.1:$(cat "$state/apiserver.port") is unreachable"
}

start_apiserver() {
  local args
  if ! is_ours kube-apiserver; then
    [[ -s "$state/cmdline/kube-apiserver" ]] || die "no saved kube-apiserver command line in $state; run: $0 up"
    is_ours etcd || die "etcd is not running in $state; run: $0 up"
    mapfile -d '' -t args <"$state/cmdline/kube-apiserver"
    start kube-apiserver "${args[@]}"
  fi
  wait_for "kube-apiserver /readyz" 120 kube-apiserver api_ready
  log "kube-apiserver ready (pid $(pid_of kube-apiserver)) on https://127.0.0.1:$(cat "$state/apiserver.port")"
}

cmd_stop_apiserver() { lock_state; stop_apiserver; }
cmd_start_apiserver() { lock_state; start_apiserver; }

cmd_restart_apiserver() {
  lock_state
  is_ours kube-apiserver || die "kube-apiserver is not running in $state; run: $0 up"
  stop_apiserver
  start_apiserver
}

cmd_env() {
  [[ -f "$kubeconfig" ]] || die "no control plane in $state; run: $0 up"
  printf 'KUBECONFIG=%s\n' "$kubeconfig"
  printf 'FERRY_TESTENV_BIN=%s\n' "$state/bin"
}

cmd_status() {
  local d ok=0
  for d in "${daemons[@]}"; do
    if is_ours "$d"; then printf '%-24s running (pid %s, %s MiB resident)\n' "$d" "$(pid_of "$d")" "$(rss_mib "$d")"
    else printf '%-24s stopped\n' "$d"; ok=1; fi
  done
  if api_ready; then printf '%-24s ready (https://127.0.0.1:%s)\n' api "$(cat "$state/apiserver.port")"
  else printf '%-24s not ready\n' api; ok=1; fi
  return "$ok"
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down ;;
  env) cmd_env ;;
  status) cmd_status ;;
  stop-apiserver) cmd_stop_apiserver ;;
  start-apiserver) cmd_start_apiserver ;;
  restart-apiserver) cmd_restart_apiserver ;;
  *) echo "usage: $0 up|down|env|status|stop-apiserver|start-apiserver|restart-apiserver" >&2; exit 2 ;;
esac
