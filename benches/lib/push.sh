# Sourced by benches/compare.sh: scenario 2, commit to converged through each tool's webhook
# receiver (ferry's /hooks/github; Flux's notification-controller Receiver of type github).
#
# A 20-object app (repository push-20.git, interval 1h for both tools, so only the webhook
# explains a sync within seconds). Per push: commit a new image tag for Deployment app-9 in a
# work clone, start the clock, `git push` to the bare repository, POST the signed GitHub push
# event, and poll until the tool reports the pushed commit applied and Ready AND the Deployment
# has rolled out: the new image, its status observed for that generation, one updated and
# available replica and no old one left. The
# second half is the same for both tools, so neither can report early.
#
# Needs from compare.sh: $work, $timeout, $git_http_port, publish_repo, record, log, die, create_ns,
# ferry_for, ferry_apply_app, kubectl; from flux.sh: flux_start, flux_apply_app,
# flux_receiver_path, flux_stop.
# shellcheck shell=bash disable=SC2154

push_token="bench-webhook-token"
push_tag=0

push_prepare() {
  rm -rf "$work/clone-push"
  generate 20 "$work/clone-push/objects"
  publish_repo push-20 "$work/clone-push" "20 objects"
}

# The revision each tool reports as applied.
declare -A push_revision_field=([ferry]=.status.sync.revision [flux]=.status.lastAppliedRevision)

# Prints "<revision>|<Ready>|<image>|<replicas>|<updated>|<available>|<generation>|<observed>" of
# the tool's object and of Deployment app-9, one line each.
push_observe() { # tool namespace tool-resource
  kubectl get "$3" deployment/app-9 -n "$2" -o "jsonpath={range .items[*]}{${push_revision_field[$1]}}|{.status.conditions[?(@.type==\"Ready\")].status}|{.spec.template.spec.containers[0].image}|{.status.replicas}|{.status.updatedReplicas}|{.status.availableReplicas}|{.metadata.generation}|{.status.observedGeneration}{\"\\n\"}{end}" 2>/dev/null
}

push_wait() { # tool namespace tool-resource revision image
  local tool="$1" deadline=$((SECONDS + timeout)) tool_line dep_line rev ready image replicas updated available
  local generation observed
  shift
  while :; do
    { read -r tool_line; read -r dep_line; } < <(push_observe "$tool" "$1" "$2") || true
    IFS='|' read -r rev ready _ <<<"${tool_line:-}"
    IFS='|' read -r _ _ image replicas updated available generation observed <<<"${dep_line:-}"
    # observedGeneration: the status describes the new spec, not the old ReplicaSet's.
    if [[ "$rev" == "$3" && "$ready" == True && "$image" == "$4" && "$replicas" == 1 &&
      "$updated" == 1 && "$available" == 1 && -n "$generation" && "$generation" == "$observed" ]]; then
      return 0
    fi
    ((SECONDS < deadline)) || die "$2 not converged at $3 within ${timeout}s (last: $tool_line / $dep_line)"
    sleep 0.05
  done
}

# Pushes (one warm-up, then $pushes counted) to a tool already Ready on push-20.git.
push_series() { # tool namespace tool-resource hook-url pushes
  local tool="$1" ns="$2" resource="$3" url="$4" pushes="$5" clone="$work/clone-push" i sha image
  local body signature code t0 secs
  for ((i = 0; i <= pushes; i++)); do
    push_tag=$((push_tag + 1))
    image="registry.example/bench/app-9:2.0.$push_tag"
    sed -i "s|image: registry.example/bench/app-9:.*|image: $image|" "$clone/objects/objects-0000.yaml"
    git -C "$clone" -c user.name=bench -c user.email=bench@ferry.invalid commit -q -am "app-9 $image"
    sha="$(git -C "$clone" rev-parse HEAD)"
    body="{\"ref\":\"refs/heads/main\",\"before\":\"$(git -C "$clone" rev-parse HEAD~1)\",\"after\":\"$sha\",\"repository\":{\"clone_url\":\"http://127.0.0.1:$git_http_port/push-20.git\"}}"
    signature="sha256=$(printf '%s' "$body" | openssl dgst -sha256 -hmac "$push_token" -r | cut -d' ' -f1)"
    t0="$(now)"
    git -C "$clone" push -q origin main
    code="$(curl -sS -o "$work/hook-answer" -w '%{http_code}' -X POST "$url" \
      -H 'Content-Type: application/json' -H 'X-GitHub-Event: push' -H "X-GitHub-Delivery: bench-$push_tag" \
      -H "X-Hub-Signature-256: $signature" --data-binary "$body")"
    [[ "$code" == 2* ]] || die "$tool's webhook answered $code: $(cat "$work/hook-answer")"
    push_wait "$tool" "$ns" "$resource" "main@sha1:$sha" "$image"
    secs="$(elapsed "$t0" "$(now)")"
    if ((i == 0)); then
      log "$tool: warm-up push converged after ${secs}s (not counted)"
    else
      record "push-$tool" "$secs"
      log "$tool: push $i converged after ${secs}s"
    fi
  done
}

run_push() { # pushes
  local ns="cmp-ferry-push" url path
  ferry_for "$ns" --webhook-secret "$ns/ferry-webhook"
  kubectl create secret generic ferry-webhook -n "$ns" --from-literal=github="$push_token" >/dev/null
  ferry_apply_app "$ns" push-20 1h
  kubectl wait --for=condition=Ready fapp/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
    die "ferry: the push app did not become Ready"
  push_series ferry "$ns" fapp/bench "http://$(ferry_http_address)/hooks/github" "$1"
  stop_ferry
  delete_ns "$ns"

  ns="cmp-flux-push"
  delete_ns "$ns"
  create_ns "$ns"
  flux_start "$ns" "$work/flux-$ns" receiver
  flux_apply_app "$ns" bench "http://127.0.0.1:$git_http_port/push-20.git" objects 1h
  path="$(flux_receiver_path "$ns" bench "$push_token")"
  [[ -n "$path" ]] || die "the Flux Receiver has no webhook path"
  kubectl wait --for=condition=Ready kustomization/bench -n "$ns" --timeout="${timeout}s" >/dev/null ||
    die "Flux: the push app did not become Ready"
  push_series flux "$ns" kustomization/bench "http://$flux_receiver$path" "$1"
  flux_stop
  delete_ns "$ns"
}
