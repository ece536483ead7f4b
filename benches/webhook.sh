#!/usr/bin/env bash
# Webhook benchmark (issue 6): time from `git push` plus a signed GitHub push webhook to the
# Application being Synced and Healthy at the pushed commit, for a 10-object Application
# (9 ConfigMaps and 1 Deployment whose image tag each push changes, so every push is a real
# rollout: a new ReplicaSet and Pod until the Deployment is Available again).
#
# The Application's interval is 1h, so only the webhook can explain a sync within seconds.
# Per push: commit in a work clone, then the clock starts; `git push` to the bare repository
# (file://), POST /hooks/github (HMAC-SHA256 of the body, as GitHub signs it), and one
# `kubectl get --watch` of the Application until status.sync.revision is the pushed commit and
# Ready is True. Results: target/bench/webhook.txt (median, min, max of all pushes).
#
# Environment:
#   FERRY_TESTENV_STATE          the control plane's state directory (as for testenv.sh)
#   FERRY_BIN                    ferry binary (default: <target dir>/release/ferry)
#   FERRY_BENCH_WEBHOOK_PUSHES   pushes measured (default: 10; one more, untimed, warms up)
#   FERRY_BENCH_WEBHOOK_TIMEOUT  seconds one push may take to converge (default: 120)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
ferry="${FERRY_BIN:-$target/release/ferry}"
pushes="${FERRY_BENCH_WEBHOOK_PUSHES:-10}"
timeout="${FERRY_BENCH_WEBHOOK_TIMEOUT:-120}"
out_dir="$target/bench"
out="$out_dir/webhook.txt"
work="$out_dir/webhook-work"
ns="ferry-bench-webhook"
secret_value="bench-webhook-secret"

log() { printf '[bench webhook] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -x "$ferry" ]] || die "no ferry binary at $ferry; run: cargo build --release --bin ferry (make bench does)"
command -v curl >/dev/null || die "curl is needed (make deps installs it)"
# shellcheck source=tests/testenv/use.sh
source "$root/tests/testenv/use.sh"
testenv_use bench

# shellcheck source=lib/common.sh
source "$here/lib/common.sh"

cleanup() {
  local status=$?
  stop_ferry
  delete_ns "$ns" || true
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the repository --------------------------------------------------------------------------

rm -rf "$work"
mkdir -p "$work" "$out_dir"
bare="$work/deploy.git"
clone="$work/clone"
git init -q --bare -b main "$bare"
git clone -q "$bare" "$clone" 2>/dev/null
gitc() { git -C "$clone" -c user.name=bench -c user.email=bench@ferry.invalid "$@"; }

write_app() { # image tag
  mkdir -p "$clone/app"
  local i
  for ((i = 0; i < 9; i++)); do
    cat >"$clone/app/cfg-$i.yaml" <<EOF
apiVersion: v1
kind: ConfigMap
metadata: {name: cfg-$i}
data: {index: "$i"}
EOF
  done
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
        image: registry.example/bench/web:$1
EOF
}

write_app 1.0.0
gitc add -A
gitc commit -q -m "10 objects"
gitc push -q origin main

# --- ferry -----------------------------------------------------------------------------------

delete_ns "$ns"
"$ferry" crd | kubectl apply --server-side --force-conflicts --field-manager=ferry -f - >/dev/null
wait_established crd/applications.ferry.dev >/dev/null
kubectl create namespace "$ns" >/dev/null
kubectl create secret generic ferry-webhook -n "$ns" --from-literal=github="$secret_value" >/dev/null

port="$(free_port)"
logf="$work/ferry.log"
start_ferry "$logf" --namespace "$ns" --cache-dir "$work/cache" --http-address "127.0.0.1:$port" \
  --webhook-secret "$ns/ferry-webhook"

kubectl apply -f - >/dev/null <<EOF
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: bench, namespace: $ns}
spec:
  source: {repoURL: "file://$bare", ref: {branch: main}, path: app}
  destination: {namespace: $ns}
  interval: 1h
EOF
kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
  { tail -n 40 "$logf" >&2; die "the Application did not become Ready"; }

# --- pushes ----------------------------------------------------------------------------------

converged_line='{.status.sync.revision}|{.status.conditions[?(@.type=="Ready")].status}'

# Waits until the Application reports `revision` with Ready=True, through one watch. Returns 1
# when the watch stayed silent for 30 s although the Application had converged (it happened once
# in many runs, the kubectl watch printing nothing): that push cannot be timed and is not counted.
wait_converged() { # revision
  local want="$1" fd kpid rev ready done=0
  exec {fd}< <(exec "$bin/kubectl" get fapp bench -n "$ns" --watch -o "jsonpath=$converged_line{\"\\n\"}")
  kpid=$!
  while IFS='|' read -r -t 30 rev ready <&"$fd"; do
    if [[ "$rev" == "$want" && "$ready" == "True" ]]; then
      done=1
      break
    fi
  done
  kill "$kpid" 2>/dev/null || true
  exec {fd}<&-
  ((done)) && return 0
  IFS='|' read -r rev ready < <(kubectl get fapp bench -n "$ns" -o "jsonpath=$converged_line{\"\\n\"}")
  if [[ "$rev" == "$want" && "$ready" == "True" ]]; then
    log "the watch missed the update to $want; this push is not counted"
    return 1
  fi
  tail -n 40 "$logf" >&2
  die "not Synced/Healthy at $want within 30s"
}

declare -a totals=() hooks=()
for ((i = 0; i <= pushes; i++)); do
  write_app "1.0.$((i + 1))"
  gitc commit -q -am "web 1.0.$((i + 1))"
  sha="$(gitc rev-parse HEAD)"
  body="{\"ref\":\"refs/heads/main\",\"before\":\"$(gitc rev-parse HEAD~1)\",\"after\":\"$sha\",\"repository\":{\"clone_url\":\"file://$bare\"}}"
  signature="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$secret_value" -r | cut -d' ' -f1)"
  t0="$(now)"
  gitc push -q origin main
  code="$(curl -sS -o "$work/hook-answer" -w '%{http_code}' -X POST "http://127.0.0.1:$port/hooks/github" \
    -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' \
    -H "X-Hub-Signature-256: $signature" --data-binary "$body")"
  t1="$(now)"
  [[ "$code" == 2* ]] || die "the webhook answered $code: $(cat "$work/hook-answer")"
  grep -q "$ns/bench" "$work/hook-answer" || die "the webhook did not trigger $ns/bench: $(cat "$work/hook-answer")"
  wait_converged "main@sha1:$sha" || continue
  t2="$(now)"
  total="$(elapsed "$t0" "$t2")"
  if ((i == 0)); then
    log "warm-up push: ${total}s (not counted)"
    continue
  fi
  totals+=("$total")
  hooks+=("$(elapsed "$t0" "$t1")")
  log "push $i: ${total}s from git push to Synced/Healthy (push + webhook answered after $(elapsed "$t0" "$t1")s)"
done

seconds() { # samples -> "median X s   min Y s   max Z s"
  local s
  read -r -a s <<<"$(stats "$1")"
  printf 'median %.3f s   min %.3f s   max %.3f s' "${s[0]}" "${s[1]}" "${s[2]}"
}
interval_fetches="$(grep -c 'fetching from Git remote' "$logf" || true)"
{
  echo "ferry webhook benchmark ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
  echo "ferry:    $("$ferry" version 2>/dev/null || echo '?') ($ferry)"
  echo "machine:  nproc $(nproc), $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "method:   10-object Application (9 ConfigMaps, 1 Deployment), interval 1h; each push changes the Deployment's image"
  echo "          clock from 'git push' (file:// bare repo) + signed POST /hooks/github to status Synced/Healthy at the pushed commit"
  echo
  echo "git push + webhook -> Synced/Healthy, $pushes pushes: $(seconds "${totals[*]}")   (${totals[*]})"
  echo "git push + webhook answered:              $(seconds "${hooks[*]}")"
  echo "Git fetches ferry made: $interval_fetches (initial sync, warm-up and $pushes pushes)"
} >"$out"
echo
cat "$out"
echo "written to $out"
