# Sourced by benches/rollouts.sh: Argo Rollouts' controller as a local process against the local
# control plane (namespaced, no leader election), its CRDs, its request count, and the Rollout,
# AnalysisTemplate and Services of each scenario. Built by `tests/testenv/build.sh
# argo-rollouts` (the controller from the github.com/argoproj/argo-rollouts Go module, the CRDs
# from its manifests/crds).
#
# Needs $root, $bin (tests/testenv/use.sh), kubectl(), log() and die() from the sourcing script,
# and free_port (benches/lib/common.sh).
# shellcheck shell=bash disable=SC2154  # $root and $bin come from the sourcing script

# shellcheck source=../../tests/testenv/versions.env
source "$root/tests/testenv/versions.env"
argo_rollouts_dir="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv/argo-rollouts-$ARGO_ROLLOUTS_VERSION"

argo_rollouts_build() { "$root/tests/testenv/build.sh" argo-rollouts; }

argo_rollouts_install_crds() {
  kubectl apply --server-side --force-conflicts -f "$argo_rollouts_dir/crds" >/dev/null
  wait_established crd/rollouts.argoproj.io \
    crd/analysistemplates.argoproj.io crd/analysisruns.argoproj.io crd/experiments.argoproj.io \
    crd/clusteranalysistemplates.argoproj.io >/dev/null
}

argo_pid=""
argo_metrics=""

# Starts the controller for one namespace (--namespaced, as a namespace-scoped install; its own
# configuration, none, is read from that namespace too) and waits until it answers /healthz.
argo_rollouts_start() { # namespace log
  local ns="$1" logf="$2" health deadline
  health="$(free_port)"
  argo_metrics="127.0.0.1:$(free_port)"
  POD_NAMESPACE="$ns" "$argo_rollouts_dir/bin/rollouts-controller" --namespaced --namespace "$ns" \
    --leader-elect=false --loglevel info --healthzPort "$health" --metricsPort "${argo_metrics##*:}" \
    >"$logf" 2>&1 &
  argo_pid=$!
  deadline=$((SECONDS + 60))
  # The metrics endpoint answers once the controllers run; /healthz is up before that.
  until curl -sf "http://$argo_metrics/metrics" >/dev/null && grep -q 'Started rollout workers' "$logf"; do
    kill -0 "$argo_pid" 2>/dev/null || { tail -n 20 "$logf" >&2; argo_pid=""; die "rollouts-controller exited (log $logf)"; }
    ((SECONDS < deadline)) || die "rollouts-controller not ready after 60s (log $logf)"
    sleep 0.05
  done
}

argo_rollouts_stop() {
  [[ -n "$argo_pid" ]] || return 0
  kill -TERM "$argo_pid" 2>/dev/null || true
  wait "$argo_pid" 2>/dev/null || true
  argo_pid=""
}

# Requests the controller's own clients made: controller_clientset_k8s_request_total (Argo
# Rollouts wraps the transport of every client it builds, Kubernetes and Argo kinds alike, with
# this counter), every kind, verb and status summed.
argo_rollouts_client_requests() {
  curl -sf "http://$argo_metrics/metrics" |
    awk '/^controller_clientset_k8s_request_total/ { n += $NF } END { printf "%d", n }'
}

# --- objects ---------------------------------------------------------------------------------

# The pod template every scenario's workload has, for both tools (NAME, IMAGE), indented for a
# Deployment's or a Rollout's spec.
pod_template_yaml() { # name image
  cat <<EOF
  selector:
    matchLabels: {app: $1}
  template:
    metadata:
      labels: {app: $1}
    spec:
      containers:
      - name: $1
        image: $2
        ports: [{containerPort: 8080}]
EOF
}

service_yaml() { # name selector-app
  cat <<EOF
---
apiVersion: v1
kind: Service
metadata: {name: $1}
spec:
  selector: {app: $2}
  ports: [{port: 80, targetPort: 8080}]
EOF
}

# An AnalysisTemplate `error-ratio` with one Prometheus metric: COUNT measurements INTERVAL apart,
# successful while the query's first value is below 0.05 (failureLimit 0: one failure fails it).
argo_analysis_template_yaml() { # prometheus-url query interval count
  cat <<EOF
---
apiVersion: argoproj.io/v1alpha1
kind: AnalysisTemplate
metadata: {name: error-ratio}
spec:
  metrics:
  - name: error-ratio
    interval: $3
    count: $4
    successCondition: result[0] < 0.05
    provider:
      prometheus:
        address: $1
        query: '$2'
EOF
}

# A Rollout of REPLICAS pods at IMAGE with the strategy (YAML of `strategy:`'s value, indented by
# four spaces) given on stdin.
argo_rollout_yaml() { # name image replicas
  local strategy
  strategy="$(cat)"
  cat <<EOF
---
apiVersion: argoproj.io/v1alpha1
kind: Rollout
metadata: {name: $1}
spec:
  replicas: $3
$(pod_template_yaml "$1" "$2")
  strategy:
$strategy
EOF
}

# The new image, as Argo CD would deliver it: one patch of the Rollout's pod template.
argo_rollout_set_image() { # namespace name image
  kubectl patch rollout "$2" -n "$1" --type=json \
    -p "[{\"op\":\"replace\",\"path\":\"/spec/template/spec/containers/0/image\",\"value\":\"$3\"}]" >/dev/null
}
