#!/usr/bin/env bash
# Installs the Debian packages ferry's tests and demo need, if any are missing, and checks the
# toolchains that cannot come from apt here (Rust, Go 1.26).
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
)

missing=()
for cmd in "${!want[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${want[$cmd]}")
done
# git http-backend ships with git but lives outside PATH.
[[ -x "$(git --exec-path 2>/dev/null)/git-http-backend" ]] || missing+=(git)
[[ -f /etc/ssl/certs/ca-certificates.crt ]] || missing+=(ca-certificates)

if ((${#missing[@]})); then
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  log "installing ${missing[*]}"
  sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

command -v cargo >/dev/null || { log "cargo not found: install Rust (https://rustup.rs)"; exit 1; }
command -v go >/dev/null || { log "go not found: install Go 1.26 (https://go.dev/dl)"; exit 1; }
gov="$(GOTOOLCHAIN=local go env GOVERSION)"
case "$gov" in
  go1.2[6-9]* | go1.[3-9][0-9]*) ;;
  *) log "Go $gov is too old: the control plane needs Go 1.26 or newer"; exit 1 ;;
esac
