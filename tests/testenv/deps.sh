#!/usr/bin/env bash
# Installs the Debian packages ferry's tests and demo need, if any are missing, and checks the
# toolchains that cannot come from apt here (Rust, Go 1.26).
#
# Usage: deps.sh [bench]. With `bench`, also the packages only the benchmarks need (Argo CD's
# redis-server; benches/lib/argocd.sh asks for them), which `make test` never installs.
set -euo pipefail

log() { printf '[deps] %s\n' "$*" >&2; }

# command -> package that provides it
declare -A want=(
  [git]=git
  [curl]=curl
  [openssl]=openssl
  [python3]=python3
  [flock]=util-linux
  [setsid]=util-linux
  [base64]=coreutils
  [ssh-keygen]=openssh-client
  # bcrypt htpasswd files for the OCI registry's basic auth (distribution accepts bcrypt only).
  [htpasswd]=apache2-utils
)
if [[ "${1:-}" == bench ]]; then
  # Argo CD's cache (benches/lib/argocd.sh runs redis-server itself, never the packaged service).
  want[redis-server]=redis-server
fi

missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
# git http-backend ships with git but lives outside PATH.
[[ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]] || missing+=(git)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)
# The SSH Git fixture runs sshd itself (never as a service); it lives outside a user's PATH.
[[ -x /usr/sbin/sshd ]] || missing+=(openssh-server)
# The dashboard test runs a real Prometheus (the harness starts /usr/bin/prometheus itself, never
# the packaged service).
[[ -x /usr/bin/prometheus ]] || missing+=(prometheus)

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing ${missing[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  # openssh-server's, prometheus's and redis-server's postinsts would start system services (sshd
  # on port 22, prometheus on 9090, redis on 6379); the tests only need the binaries. Deny service starts for the install
  # (the usual policy-rc.d), unless one exists.
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [[ ! -e $policy ]]; then
    printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    own_policy=1
  fi
  status=0
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || status=$?
  ((own_policy)) && "${sudo[@]}" rm -f "$policy"
  ((status == 0)) || exit "$status"
fi

command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
command -v go >/dev/null || { log "go not found: install Go 1.26 (https://go.dev/dl)"; exit 1; }
gov="$(GOTOOLCHAIN=local go env GOVERSION)"
case "$gov" in
  go1.2[6-9]* | go1.[3-9][0-9]*) ;;
  *) log "Go $gov is too old: the control plane needs Go 1.26 or newer"; exit 1 ;;
esac
