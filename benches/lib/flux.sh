# Sourced by the side-by-side benchmarks: Flux's source-controller and kustomize-controller (and
# for the webhook scenario notification-controller, whose Receiver is Flux's webhook endpoint)
# as local processes against the local control plane. Built by `tests/testenv/build.sh
# flux-source-controller flux-kustomize-controller flux-notification-controller`. The git
# smart-HTTP server both tools read from is in common.sh.
#
# Needs $root, $bin (from tests/testenv/use.sh), kubectl(), log() and die() from the sourcing
# script, and free_port (benches/lib/common.sh).
# shellcheck shell=bash disable=SC2154  # $root and $bin come from the sourcing script

# shellcheck source=../../tests/testenv/versions.env
source "$root/tests/testenv/versions.env"
flux_cache="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv"
flux_sc_dir="$flux_cache/flux-source-controller-$FLUX_SOURCE_CONTROLLER_VERSION"
flux_kc_dir="$flux_cache/flux-kustomize-controller-$FLUX_KUSTOMIZE_CONTROLLER_VERSION"
flux_nc_dir="$flux_cache/flux-notification-controller-$FLUX_NOTIFICATION_CONTROLLER_VERSION"

flux_build() {
  "$root/tests/testenv/build.sh" flux-source-controller flux-kustomize-controller \
    flux-notification-controller
}

flux_install_crds() {
  kubectl apply --server-side --force-conflicts -f "$flux_sc_dir/crds" -f "$flux_kc_dir/crds" \
    -f "$flux_nc_dir/crds" >/dev/null
  wait_established \
    crd/gitrepositories.source.toolkit.fluxcd.io crd/kustomizations.kustomize.toolkit.fluxcd.io \
    crd/receivers.notification.toolkit.fluxcd.io >/dev/null
}

# --- the controllers -------------------------------------------------------------------------

flux_sc_pid=""
flux_kc_pid=""
flux_nc_pid=""
flux_sc_metrics=""
flux_kc_metrics=""
flux_receiver=""

# Starts both controllers for one namespace (RUNTIME_NAMESPACE, as in-cluster; no leader
# election, no events address) and waits until both answer /readyz. With "receiver" as the third
# argument, notification-controller too, its webhook receiver at $flux_receiver (host:port).
flux_start() { # namespace work-dir [receiver]
  local ns="$1" work="$2" with_receiver="${3:-}" storage health_sc health_kc health_nc=""
  storage="$(free_port)"
  health_sc="$(free_port)"
  health_kc="$(free_port)"
  flux_sc_metrics="127.0.0.1:$(free_port)"
  flux_kc_metrics="127.0.0.1:$(free_port)"
  mkdir -p "$work/flux-storage"
  RUNTIME_NAMESPACE="$ns" "$flux_sc_dir/bin/source-controller" \
    --watch-all-namespaces=false --enable-leader-election=false --log-level=info \
    --storage-path="$work/flux-storage" --storage-addr="127.0.0.1:$storage" \
    --storage-adv-addr="127.0.0.1:$storage" --metrics-addr="$flux_sc_metrics" \
    --health-addr="127.0.0.1:$health_sc" >"$work/source-controller.log" 2>&1 &
  flux_sc_pid=$!
  RUNTIME_NAMESPACE="$ns" "$flux_kc_dir/bin/kustomize-controller" \
    --watch-all-namespaces=false --enable-leader-election=false --log-level=info \
    --no-remote-bases=true --metrics-addr="$flux_kc_metrics" \
    --health-addr="127.0.0.1:$health_kc" >"$work/kustomize-controller.log" 2>&1 &
  flux_kc_pid=$!
  if [[ "$with_receiver" == receiver ]]; then
    health_nc="$(free_port)"
    flux_receiver="127.0.0.1:$(free_port)"
    RUNTIME_NAMESPACE="$ns" "$flux_nc_dir/bin/notification-controller" \
      --watch-all-namespaces=false --enable-leader-election=false --log-level=info \
      --receiverAddr="$flux_receiver" --events-addr="127.0.0.1:$(free_port)" \
      --metrics-addr="127.0.0.1:$(free_port)" --health-addr="127.0.0.1:$health_nc" \
      >"$work/notification-controller.log" 2>&1 &
    flux_nc_pid=$!
  fi
  local deadline=$((SECONDS + 60)) port
  for port in "$health_sc" "$health_kc" $health_nc; do
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do
      kill -0 "$flux_sc_pid" 2>/dev/null || { tail -n 20 "$work/source-controller.log" >&2; die "source-controller exited"; }
      kill -0 "$flux_kc_pid" 2>/dev/null || { tail -n 20 "$work/kustomize-controller.log" >&2; die "kustomize-controller exited"; }
      [[ -z "$flux_nc_pid" ]] || kill -0 "$flux_nc_pid" 2>/dev/null ||
        { tail -n 20 "$work/notification-controller.log" >&2; die "notification-controller exited"; }
      ((SECONDS < deadline)) || die "Flux controllers not ready after 60s (logs in $work)"
      sleep 0.1
    done
  done
}

flux_stop() {
  local pid
  for pid in "$flux_sc_pid" "$flux_kc_pid" "$flux_nc_pid"; do
    [[ -n "$pid" ]] || continue
    kill -TERM "$pid" 2>/dev/null || true
  done
  for pid in "$flux_sc_pid" "$flux_kc_pid" "$flux_nc_pid"; do
    [[ -n "$pid" ]] || continue
    wait "$pid" 2>/dev/null || true
  done
  flux_sc_pid=""
  flux_kc_pid=""
  flux_nc_pid=""
}

# Requests the controllers' own clients made, from controller-runtime's rest_client_requests_total
# on both metrics endpoints (source- and kustomize-controller), summed.
flux_client_requests() {
  local addr
  for addr in "$flux_sc_metrics" "$flux_kc_metrics"; do
    curl -sf "http://$addr/metrics"
  done | awk '/^rest_client_requests_total/ { n += $NF } END { printf "%d", n }'
}

# The Flux counterpart of a ferry Application: a GitRepository and a Kustomization with prune
# and wait (wait = every object Ready, as ferry's Healthy), both with the same interval.
flux_apply_app() { # namespace name repo-url path interval
  { flux_source_yaml "$1" "$2" "$3" "${5:-1h}"; flux_kustomization_yaml "$1" "$2" "$2" "$4" "${5:-1h}"; } |
    kubectl apply -f - >/dev/null
}

flux_source_yaml() { # namespace name repo-url interval
  cat <<EOF
---
apiVersion: source.toolkit.fluxcd.io/v1
kind: GitRepository
metadata: {name: $2, namespace: $1}
spec:
  url: $3
  ref: {branch: main}
  interval: $4
EOF
}

flux_kustomization_yaml() { # namespace name source path interval
  cat <<EOF
---
apiVersion: kustomize.toolkit.fluxcd.io/v1
kind: Kustomization
metadata: {name: $2, namespace: $1}
spec:
  sourceRef: {kind: GitRepository, name: $3}
  path: ./$4
  targetNamespace: $1
  prune: true
  wait: true
  timeout: 10m
  interval: $5
EOF
}

# A GitHub Receiver for GitRepository NAME with token TOKEN; prints its URL path once Ready.
flux_receiver_path() { # namespace name token
  kubectl create secret generic "$2-webhook" -n "$1" --from-literal=token="$3" >/dev/null
  kubectl apply -f - >/dev/null <<EOF
apiVersion: notification.toolkit.fluxcd.io/v1
kind: Receiver
metadata: {name: $2, namespace: $1}
spec:
  type: github
  events: ["push"]
  secretRef: {name: $2-webhook}
  resources: [{apiVersion: source.toolkit.fluxcd.io/v1, kind: GitRepository, name: $2}]
EOF
  kubectl wait --for=condition=Ready "receiver/$2" -n "$1" --timeout=60s >/dev/null
  kubectl get "receiver/$2" -n "$1" -o 'jsonpath={.status.webhookPath}'
}
