#!/usr/bin/env bash
# Prepares a cluster for ferry to deploy to from another cluster, and prints the kubeconfig ferry
# reaches it with. Run it against the *remote* cluster (your kubectl and KUBECONFIG, or
# --context), as someone who may create RBAC there:
#
#   scripts/remote-cluster-kubeconfig.sh --name prod-eu > prod-eu.kubeconfig
#
# It applies examples/remote-cluster/serviceaccount.yaml (Namespace ferry-system, ServiceAccount
# ferry, a long-lived service-account-token Secret ferry-token) and the RBAC file of the mode,
# waits for the token, and prints a kubeconfig with only what ferry accepts: the https:// server,
# the CA inline and the bearer token. The commands that hand it to ferry in the management
# cluster (a Secret and a Cluster) are printed to stderr. Running it again changes nothing but
# the mode; deleting the Secret ferry-token and running it again rotates the token.
#
# Options:
#   --impersonate      (default) ferry only lists and watches, and impersonates the
#                      ServiceAccount each Application names; you grant those ServiceAccounts'
#                      user names what they deploy (examples/remote-cluster/rbac-impersonate.yaml)
#   --admin            ferry writes as itself, with cluster-admin: for installs without tenancy
#                      (examples/remote-cluster/rbac-admin.yaml). Each mode removes the other's
#                      binding, so switching to --impersonate takes cluster-admin away again.
#   --name NAME        the Cluster's name, in the kubeconfig and the printed commands (default remote)
#   --server URL       the API server as ferry reaches it (default: the current context's server)
#   --ca-file FILE     the CA (PEM) that signs that server's certificate (default: the current
#                      context's, else the cluster CA from the token Secret)
#   --context CONTEXT  the kubectl context of the remote cluster (default: the current one)
#   --timeout SECONDS  how long to wait for the token (default 60)
#
# Environment: KUBECTL, the kubectl to run (default: kubectl on PATH).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifests="$here/../examples/remote-cluster"
namespace=ferry-system
secret=ferry-token

mode=impersonate name=remote server="" ca_file="" timeout=60
context_args=()

log() { printf '%s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
usage() { # exit-status
  sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2
  exit "$1"
}

while (($#)); do
  case "$1" in
    --impersonate) mode="impersonate" ;;
    --admin) mode="admin" ;;
    --name) name="${2:?--name needs a value}"; shift ;;
    --server) server="${2:?--server needs a value}"; shift ;;
    --ca-file) ca_file="${2:?--ca-file needs a value}"; shift ;;
    --context) context_args=(--context "${2:?--context needs a value}"); shift ;;
    --timeout) timeout="${2:?--timeout needs a value}"; shift ;;
    -h | --help) usage 0 ;;
    *) log "unknown argument: $1"; usage 2 ;;
  esac
  shift
done

[[ "$name" =~ ^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$ ]] ||
  die "--name must be a Kubernetes name (lower-case letters, digits, '-' and '.'), not '$name'"
[[ "$timeout" =~ ^[0-9]+$ ]] || die "--timeout must be a number of seconds, not '$timeout'"
[[ -z "$ca_file" || -r "$ca_file" ]] || die "cannot read --ca-file $ca_file"

kc() { "${KUBECTL:-kubectl}" "${context_args[@]}" "$@"; }

# The current context's cluster entry, with files read inline (--flatten).
current_cluster() { # jsonpath field
  kc config view --minify --flatten -o "jsonpath={.clusters[0].cluster.$1}"
}

apply_rbac() {
  local other=admin
  [[ "$mode" == admin ]] && other=impersonate
  kc apply --server-side --field-manager=ferry-remote-cluster \
    -f "$manifests/serviceaccount.yaml" -f "$manifests/rbac-$mode.yaml" >&2
  # Never both: the admin binding left behind would undo the impersonate mode's limits.
  kc delete --ignore-not-found -f "$manifests/rbac-$other.yaml" >&2
}

# The token controller fills the Secret in shortly after it is created.
wait_for_token() {
  local deadline=$((SECONDS + timeout)) token
  while :; do
    token="$(kc -n "$namespace" get secret "$secret" -o 'jsonpath={.data.token}' 2>/dev/null || true)"
    [[ -n "$token" ]] && { printf '%s' "$token" | base64 -d; return 0; }
    ((SECONDS < deadline)) || die "no token in Secret $namespace/$secret after ${timeout}s (is kube-controller-manager's serviceaccount-token controller running?)"
    sleep 1
  done
}

ca_data() {
  local data
  if [[ -n "$ca_file" ]]; then base64 -w0 <"$ca_file"; return 0; fi
  data="$(current_cluster certificate-authority-data)"
  [[ -n "$data" ]] || data="$(kc -n "$namespace" get secret "$secret" -o 'jsonpath={.data.ca\.crt}')"
  [[ -n "$data" ]] || die "no CA: the current context has none and Secret $namespace/$secret has no ca.crt; give --ca-file"
  printf '%s' "$data"
}

print_kubeconfig() { # server ca-data token
  cat <<EOF
apiVersion: v1
kind: Config
clusters:
- name: $name
  cluster:
    server: $1
    certificate-authority-data: $2
users:
- name: ferry
  user:
    token: $3
contexts:
- name: $name
  context:
    cluster: $name
    user: ferry
current-context: $name
EOF
}

print_hint() {
  cat >&2 <<EOF

With the kubeconfig (stdout) saved as $name.kubeconfig, run in the management cluster, in the
namespace of the Applications that deploy to $name:

kubectl -n NAMESPACE create secret generic $name-kubeconfig --from-file=value=$name.kubeconfig
kubectl -n NAMESPACE apply -f - <<'YAML'
apiVersion: ferry.dev/v1alpha1
kind: Cluster
metadata:
  name: $name
  labels: {}   # what ApplicationSets select clusters by, e.g. env: prod
spec:
  kubeConfig:
    secretRef: {name: $name-kubeconfig}
YAML
EOF
  [[ "$mode" == impersonate ]] || return 0
  cat >&2 <<EOF

ferry writes here only as the ServiceAccounts Applications name. Grant each one, in this
cluster, what it deploys (its namespace need not exist here), e.g.:

kubectl -n TARGET-NAMESPACE create rolebinding deployer --clusterrole=edit --serviceaccount=APP-NAMESPACE:SERVICEACCOUNT
EOF
}

main() {
  [[ -n "$server" ]] || server="$(current_cluster server)"
  [[ "$server" == https://* ]] || die "the server must be an https:// URL (ferry accepts no other), not '$server'; give --server"
  apply_rbac
  local token ca
  token="$(wait_for_token)"
  ca="$(ca_data)"
  print_kubeconfig "$server" "$ca" "$token"
  print_hint
}

main
