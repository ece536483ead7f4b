#!/usr/bin/env bash
# Image update benchmark (issue 24): time from `crane push` of a new tag to the Deployment in
# the cluster running it, end to end through ferry: the ImagePolicy's scan of a real registry
# (CNCF distribution), the commit to the marked line, the push to a Git smart-HTTP server
# (benches/lib/git_http.py), the Application woken at once and its sync.
#
# The Application's interval is 1h, so only ferry's wake after its own push explains a deploy
# within seconds. The ImagePolicy scans every FERRY_BENCH_IMAGE_INTERVAL: on average half of it
# is spent waiting for the next scan, and the figure includes that wait (it is what a user
# sees). Each push waits a random fraction of the interval first, so pushes do not fall in step
# with the scans (right after a deploy, the next scan is a whole interval away). Per push: the
# clock starts, `crane append` pushes tag 1.0.N (a one-layer image on
# scratch: no internet), then the Deployment's image is polled every 0.1 s until it is 1.0.N.
# Results: target/bench/image-update.txt (median, min, max).
#
# Environment:
#   FERRY_TESTENV_STATE          the control plane's state directory (as for testenv.sh)
#   FERRY_BIN                    ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_IMAGE_PUSHES     pushes measured (default: 10; one more, untimed, warms up)
#   FERRY_BENCH_IMAGE_INTERVAL   the ImagePolicy's scan interval, in seconds: `2s` (default)
#   FERRY_BENCH_IMAGE_TIMEOUT    seconds one push may take to reach the Deployment (default: 120)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
pushes="${FERRY_BENCH_IMAGE_PUSHES:-10}"
interval="${FERRY_BENCH_IMAGE_INTERVAL:-2s}"
timeout="${FERRY_BENCH_IMAGE_TIMEOUT:-120}"
out_dir="$target/bench"
out="$out_dir/image-update.txt"
work="$out_dir/image-update-work"
ns="ferry-bench-images"

log() { printf '[bench image-update] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ "$interval" =~ ^([0-9]+)s$ ]] || die "FERRY_BENCH_IMAGE_INTERVAL must be whole seconds such as 2s"
interval_s="${BASH_REMATCH[1]}"

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench
# shellcheck source=lib/common.sh
source "$here/lib/common.sh"
# shellcheck source=../tests/testenv/versions.env
source "$root/tests/testenv/versions.env"

"$root/tests/testenv/build.sh" registry crane
cache="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv"
registry_bin="$cache/registry-$REGISTRY_VERSION/bin/registry"
crane_bin="$cache/crane-$CRANE_VERSION/bin/crane"

registry_pid=""
cleanup() {
  local status=$?
  stop_ferry
  git_http_stop
  [[ -n "$registry_pid" ]] && { kill "$registry_pid" 2>/dev/null || true; wait "$registry_pid" 2>/dev/null || true; }
  delete_ns "$ns" || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

rm -rf "$work"
mkdir -p "$work/repos" "$out_dir"

# --- the registry and the first image ----------------------------------------------------------

registry_port="$(free_port)"
registry="127.0.0.1:$registry_port"
cat >"$work/registry.yml" <<EOF
version: 0.1
log: {level: warn}
storage:
  filesystem: {rootdirectory: $work/registry}
http: {addr: $registry, secret: bench}
EOF
"$registry_bin" serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
deadline=$((SECONDS + 30))
until curl -sf "http://$registry/v2/" >/dev/null; do
  ((SECONDS < deadline)) || die "the registry did not start: $(tail -n 5 "$work/registry.log")"
  sleep 0.05
done

push_image() { # tag
  local layer="$work/layer-$1"
  mkdir -p "$layer"
  echo "web $1" >"$layer/version.txt"
  tar --owner=0 --group=0 --numeric-owner --mtime=@0 -cf "$layer.tar" -C "$layer" version.txt
  DOCKER_CONFIG="$work/crane" "$crane_bin" append --insecure -f "$layer.tar" -t "$registry/bench/web:$1" >/dev/null 2>&1 ||
    die "crane append $1 failed"
}
push_image 1.0.0

# --- the repository ----------------------------------------------------------------------------

clone="$work/clone"
mkdir -p "$clone/app"
cat >"$clone/app/web.yaml" <<EOF
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: $registry/bench/web:1.0.0 # {"\$imagepolicy": "$ns:web"}
EOF
publish_repo deploy "$clone" "web 1.0.0"
# git http-backend takes pushes only from an authenticated user, or when told.
git -C "$work/repos/deploy.git" config http.receivepack true
git_http_start "$work/repos" "$work/git-requests.log"
repo_url="http://127.0.0.1:$git_http_port/deploy.git"

# --- ferry, the Application and the ImagePolicy ------------------------------------------------

delete_ns "$ns"
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
wait_established crd/applications.ferry.dev crd/imagepolicies.ferry.dev >/dev/null
kubectl create namespace "$ns" >/dev/null
kubectl create secret generic push -n "$ns" --from-literal=username=bench --from-literal=password=bench >/dev/null

logf="$work/ferry.log"
start_ferry "$logf" --namespace "$ns" --cache-dir "$work/cache" --http-address "127.0.0.1:$(free_port)"

kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: web, namespace: $ns}
spec:
  source: {repoURL: "$repo_url", ref: {branch: main}, path: app}
  destination: {namespace: $ns}
  interval: 1h
---
apiVersion: ferry.dev/v1alpha1
kind: ImagePolicy
metadata: {name: web, namespace: $ns}
spec:
  image: $registry/bench/web
  insecure: true
  interval: $interval
  policy: {semver: {range: ">=1.0.0"}}
  update:
    applicationRef: {name: web}
    write: {secretRef: {name: push}}
EOF
kubectl wait --for=condition=Ready fapp/web -n "$ns" --timeout="${timeout}s" >/dev/null ||
  { tail -n 40 "$logf" >&2; die "the Application did not become Ready"; }

deployed() { kubectl get deployment web -n "$ns" -o 'jsonpath={.spec.template.spec.containers[0].image}' 2>/dev/null; }

declare -a totals=()
for ((i = 0; i <= pushes; i++)); do
  tag="1.0.$((i + 1))"
  sleep "$(awk -v r="$RANDOM" -v i="$interval_s" 'BEGIN { printf "%.3f", r / 32767 * i }')"
  t0="$(now)"
  push_image "$tag"
  deadline=$((SECONDS + timeout))
  until [[ "$(deployed)" == "$registry/bench/web:$tag" ]]; do
    ((SECONDS < deadline)) || { tail -n 40 "$logf" >&2; die "the Deployment did not get $tag within ${timeout}s"; }
    sleep 0.1
  done
  total="$(elapsed "$t0" "$(now)")"
  if ((i == 0)); then
    log "warm-up push: ${total}s (not counted)"
    continue
  fi
  totals+=("$total")
  log "push $i: ${total}s from crane push to the Deployment running $tag"
done

read -r -a s <<<"$(stats "${totals[*]}")"
commits="$(git -C "$work/repos/deploy.git" rev-list --count main)"
{
  echo "ferry image update benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "ferry:    $("$ferry" version 2>/dev/null || echo '?') ($ferry)"
  echo "machine:  nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "method:   ImagePolicy (semver >=1.0.0, scan interval $interval) -> commit to the marked line -> push over HTTP"
  echo "          -> Application (interval 1h, woken by ferry) -> Deployment; clock from 'crane append' to the Deployment's image"
  echo "          (pushes at a random phase of the scan interval: on average half an interval of each figure is the wait for the scan)"
  echo
  printf 'crane push -> Deployment image, %d pushes: median %.3f s   min %.3f s   max %.3f s   (%s)\n' \
    "$pushes" "${s[0]}" "${s[1]}" "${s[2]}" "${totals[*]}"
  echo "commits on the branch: $commits (1 initial + $((pushes + 1)) image updates expected)"
} >"$out"
echo
cat "$out"
echo "written to $out"
