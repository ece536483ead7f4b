# Sourced by benches/compare.sh: scenario 3, the fleet at steady state.
#
# One repository (fleet.git) holding N apps of 10 objects each (apps/app-NNN/: 9 ConfigMaps, 1
# Deployment, names prefixed fNNN-), all in one namespace. ferry: N Applications on that repo.
# Flux: one GitRepository and N Kustomizations on it (the Flux way to share a repository), prune
# and wait. Argo CD: N Applications (automated, prune, self-heal) on the same repository, its
# controller and repo-server set for N (benches/lib/argocd.sh). Every interval is the same for
# every tool (FLEET_INTERVAL, 1m; Argo CD's timeout.reconciliation, no jitter, and its
# repo-server's revision cache as long): the promise to look at Git and at drift every minute.
#
# Once every app is Ready, a window of $window seconds in which nothing changes, measuring:
#   - CPU seconds of the tool's processes (utime + stime from /proc; Flux: source- and
#     kustomize-controller together; Argo CD: application controller, repo-server and redis);
#   - peak RSS (VmHWM, which includes the initial sync) and RSS at the end of the window;
#   - API requests: apiserver_request_total by verb, the API server's own count, minus what the
#     cluster does without any GitOps tool (kube-controller-manager, the scheduler, kwok: a
#     baseline window measured with the apps in place and no tool running, scaled to the window
#     length); and the requests the tool's own clients report (ferry_api_requests_total; Flux's
#     rest_client_requests_total; Argo CD's argocd_kubectl_requests_total, client-go's count
#     under its name), which need no subtraction;
#   - Git: ref advertisements and pack negotiations the git HTTP server served.
#
# Needs from compare.sh: $work, $timeout, $git_http_port, publish_repo, record, log, die, create_ns,
# ferry_for, kubectl; from flux.sh: flux_*; from argocd.sh: argocd_*; from common.sh: cpu_seconds, hwm_kib, rss_kib,
# apiserver_requests, ferry_client_requests, git_http_requests.
# shellcheck shell=bash disable=SC2154

fleet_interval="${FERRY_BENCH_FLEET_INTERVAL:-1m}"

fleet_prepare() { # apps
  local apps="$1" clone="$work/clone-fleet" a
  rm -rf "$clone"
  for ((a = 0; a < apps; a++)); do
    generate 10 "$clone/apps/app-$(printf '%03d' "$a")" "f$(printf '%03d' "$a")-"
  done
  publish_repo fleet "$clone" "$apps apps"
}

# Snapshot of the counters a window compares: "cpu client-requests git-refs git-fetches" on one
# line, then the API server's "VERB count" lines.
fleet_snapshot() { # client-requests-command pid...
  local client="$1"
  shift
  echo "$(cpu_seconds "$@") $($client) $(git_http_requests)"
  apiserver_requests
}

# Records the difference of two snapshots under fleet-<tool>-*.
fleet_record() { # tool before-file after-file
  local tool="$1" b a verb n
  read -r -a b <"$2"
  read -r -a a <"$3"
  record "fleet-$tool-cpu" "$(awk -v x="${a[0]}" -v y="${b[0]}" 'BEGIN { printf "%.2f", x - y }')"
  record "fleet-$tool-client-requests" "$((a[1] - b[1]))"
  record "fleet-$tool-git-refs" "$((a[2] - b[2]))"
  record "fleet-$tool-git-fetches" "$((a[3] - b[3]))"
  # Verbs: every verb in either snapshot, 0 where absent.
  while read -r verb n; do
    record "fleet-$tool-api-$verb" "$n"
  done < <(awk 'FNR == 1 { next } FILENAME == ARGV[1] { before[$1] = $2; seen[$1] = 1; next }
                { after[$1] = $2; seen[$1] = 1 }
                END { for (v in seen) print v, after[v] - before[v] }' "$2" "$3" | sort)
}

fleet_window() { # tool seconds client-requests-command pid...
  local tool="$1" seconds="$2" client="$3"
  shift 3
  wait_no_terminating
  fleet_snapshot "$client" "$@" >"$work/fleet-$tool-before"
  log "$tool: measuring ${seconds}s of steady state"
  sleep "$seconds" # the measurement window itself, not a wait for a condition
  fleet_snapshot "$client" "$@" >"$work/fleet-$tool-after"
  fleet_record "$tool" "$work/fleet-$tool-before" "$work/fleet-$tool-after"
}

# Until every app has been Ready at least once (the fleet's time to production), from one list
# of all the apps a second. Not "all Ready at the same moment": Flux turns a Kustomization's
# Ready to Unknown while it reconciles it again, every interval, so a busy fleet is rarely all
# True at once. Not `kubectl wait --all` either: it waits for one object after another, ~20 s
# of its own for 200 apps. Once a second, since a kubectl listing 200 objects takes a fair
# share of a core from the tool being measured.
# Ready is the Ready condition, or for Argo CD (kind applications.argoproj.io) Synced and Healthy.
fleet_wait_ready() { # tool kind namespace apps t0
  local tool="$1" kind="$2" ns="$3" apps="$4" t0="$5" deadline=$((SECONDS + timeout)) secs name status
  local ready='{.status.conditions[?(@.type=="Ready")].status}' want=True
  [[ "$kind" == applications.argoproj.io ]] && ready='{.status.sync.status}/{.status.health.status}' want=Synced/Healthy
  local -A seen=()
  while :; do
    while read -r name status; do
      [[ "$status" == "$want" ]] && seen[$name]=1
    done < <(kubectl get "$kind" -n "$ns" -o "jsonpath={range .items[*]}{.metadata.name} $ready{\"\\n\"}{end}")
    ((${#seen[@]} == apps)) && break
    ((SECONDS < deadline)) || die "$tool: ${#seen[@]} of $apps apps were Ready within ${timeout}s"
    sleep 1
  done
  secs="$(elapsed "$t0" "$(now)")"
  record "fleet-$tool-ready" "$secs"
  log "$tool: every one of $apps apps of 10 objects had been Ready after ${secs}s"
}

no_client() { echo 0; }

run_fleet() { # apps window-seconds baseline-seconds
  local apps="$1" window="$2" baseline="$3" ns a t0 url="http://127.0.0.1:$git_http_port/fleet.git"

  ns="cmp-ferry-fleet"
  ferry_for "$ns"
  t0="$(now)"
  for ((a = 0; a < apps; a++)); do
    cat <<EOF
---
apiVersion: ferry.dev/v1alpha1
kind: Application
metadata: {name: app-$(printf '%03d' "$a"), namespace: $ns}
spec:
  source: {repoURL: "$url", ref: {branch: main}, path: apps/app-$(printf '%03d' "$a")}
  destination: {namespace: $ns}
  interval: $fleet_interval
  syncPolicy: {automated: true, prune: true, selfHeal: true}
EOF
  done | kubectl apply -f - >/dev/null
  fleet_wait_ready ferry fapp "$ns" "$apps" "$t0"
  fleet_window ferry "$window" ferry_client_requests "$ferry_pid"
  record "fleet-ferry-rss-peak" "$(mib "$(hwm_kib "$ferry_pid")")"
  record "fleet-ferry-rss-end" "$(mib "$(rss_kib "$ferry_pid")")"
  stop_ferry
  delete_ns "$ns"

  ns="cmp-flux-fleet"
  delete_ns "$ns"
  create_ns "$ns"
  flux_start "$ns" "$work/flux-$ns"
  # The GitRepository first, untimed: Flux users have it before they add apps, and
  # Kustomizations that find no artifact yet retry only after 30 s.
  flux_source_yaml "$ns" fleet "$url" "$fleet_interval" | kubectl apply -f - >/dev/null
  kubectl wait --for=condition=Ready gitrepository/fleet -n "$ns" --timeout="${timeout}s" >/dev/null
  t0="$(now)"
  {
    for ((a = 0; a < apps; a++)); do
      flux_kustomization_yaml "$ns" "app-$(printf '%03d' "$a")" fleet "apps/app-$(printf '%03d' "$a")" "$fleet_interval"
    done
  } | kubectl apply -f - >/dev/null
  fleet_wait_ready flux kustomization "$ns" "$apps" "$t0"
  fleet_window flux "$window" flux_client_requests "$flux_sc_pid" "$flux_kc_pid"
  record "fleet-flux-rss-peak" "$(mib $(($(hwm_kib "$flux_sc_pid") + $(hwm_kib "$flux_kc_pid"))))"
  record "fleet-flux-rss-end" "$(mib $(($(rss_kib "$flux_sc_pid") + $(rss_kib "$flux_kc_pid"))))"
  flux_stop
  delete_ns "$ns"

  ns="cmp-argocd-fleet"
  run_fleet_argocd "$ns" "$apps" "$window" "$url"

  # The baseline: the same apps in place, no GitOps tool running. Its API requests, scaled from
  # $baseline to $window seconds, are what the cluster itself asks for.
  fleet_window baseline "$baseline" no_client "$$"
  record "fleet-baseline-seconds" "$baseline"
  record "fleet-window-seconds" "$window"
  delete_ns "$ns"
}

# Argo CD's part of run_fleet; leaves its namespace and apps in place for the baseline.
run_fleet_argocd() { # namespace apps window-seconds repo-url
  local ns="$1" apps="$2" window="$3" url="$4" t0 pid hwm=0 rss=0
  delete_ns "$ns"
  create_ns "$ns"
  argocd_start "$ns" "$work/argocd-$ns" "$apps" "$fleet_interval"
  t0="$(now)"
  argocd_apps_yaml "$ns" app- "$apps" "$url" 'apps/app-%03d' | kubectl apply -f - >/dev/null
  fleet_wait_ready argocd applications.argoproj.io "$ns" "$apps" "$t0"
  # shellcheck disable=SC2046  # one argument per pid
  fleet_window argocd "$window" argocd_client_requests $(argocd_pids)
  for pid in $(argocd_pids); do
    hwm=$((hwm + $(hwm_kib "$pid")))
    rss=$((rss + $(rss_kib "$pid")))
  done
  record "fleet-argocd-rss-peak" "$(mib "$hwm")"
  record "fleet-argocd-rss-end" "$(mib "$rss")"
  argocd_stop
}
