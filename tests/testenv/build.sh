#!/usr/bin/env bash
# Builds the test environment's binaries from Go modules into a cache outside the repo:
#   ~/.cache/ferry/testenv/<component>-<version>/bin/
# Each component is built once per version; a finished build leaves a `.complete` marker so an
# interrupted build is redone rather than trusted.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

export GOTOOLCHAIN=local
export CGO_ENABLED=0
export GOFLAGS="${GOFLAGS:--buildvcs=false}"
cache="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv"
mkdir -p "$cache"

log() { printf '[testenv build] %s\n' "$*" >&2; }

component_dir() { printf '%s/%s-%s' "$cache" "$1" "$2"; }

# The staging modules k8s.io/kubernetes replaces with ./staging/...; a dependency's replace
# lines are ignored, so the wrapper module repeats them with published versions.
staging_modules() {
  local gomod
  gomod="$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  sed -n 's#^[[:space:]]*\(k8s.io/[^ ]*\) => ./staging/.*#\1#p' "$gomod"
}

build_kubernetes() {
  local dir; dir="$(component_dir kubernetes "$KUBERNETES_VERSION")"
  [[ -f "$dir/.complete" ]] && return 0
  log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $KUBERNETES_VERSION (first run only; 10-25 minutes on 2 cores)"
  rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin"
  (
    cd "$dir/src"
    go mod init ferry.local/testenv/kubernetes >/dev/null 2>&1
    local mods=() m
    mapfile -t mods < <(staging_modules)
    [[ ${#mods[@]} -gt 20 ]] || { log "could not read the staging module list of k8s.io/kubernetes@$KUBERNETES_VERSION"; exit 1; }
    for m in "${mods[@]}"; do
      go mod edit -replace "$m=$m@$KUBERNETES_STAGING_VERSION"
    done
    local cmds=(kube-apiserver kube-controller-manager kube-scheduler kubectl) pkgs=() c
    for c in "${cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
    go mod edit -require "k8s.io/kubernetes@$KUBERNETES_VERSION"
    for p in "${pkgs[@]}"; do go mod edit -tool "$p"; done
    go mod tidy >/dev/null
    local minor="${KUBERNETES_VERSION#v1.}"; minor="${minor%%.*}"
    local ld="" pkg
    for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
      ld+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
      ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
    done
    go build -trimpath -ldflags "-s -w$ld" -o "$dir/bin/" "${pkgs[@]}"
  )
  touch "$dir/.complete"
}

build_etcd() {
  local dir; dir="$(component_dir etcd "$ETCD_VERSION")"
  [[ -f "$dir/.complete" ]] && return 0
  log "building etcd $ETCD_VERSION"
  rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin"
  (
    cd "$dir/src"
    go mod init ferry.local/testenv/etcd >/dev/null 2>&1
    go mod edit -require "go.etcd.io/etcd/server/v3@$ETCD_VERSION" -tool go.etcd.io/etcd/server/v3
    go mod tidy >/dev/null
    go build -trimpath -ldflags "-s -w" -o "$dir/bin/etcd" go.etcd.io/etcd/server/v3
  )
  touch "$dir/.complete"
}

# Tools whose modules have no replace lines install directly.
go_install() { # name version package
  local name="$1" version="$2" pkg="$3" ldflags="${4:-}"
  local dir; dir="$(component_dir "$name" "$version")"
  [[ -f "$dir/.complete" ]] && return 0
  log "building $name $version"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  GOBIN="$dir/bin" go install -trimpath -ldflags "-s -w $ldflags" "$pkg@$version"
  touch "$dir/.complete"
}

# Several commands of one module at one version, into one component directory.
go_install_cmds() { # name version ldflags package...
  local name="$1" version="$2" ldflags="$3"; shift 3
  local dir; dir="$(component_dir "$name" "$version")"
  [[ -f "$dir/.complete" ]] && return 0
  log "building $name $version (${*##*/})"
  rm -rf "$dir"; mkdir -p "$dir/bin"
  local pkgs=() p
  for p in "$@"; do pkgs+=("$p@$version"); done
  GOBIN="$dir/bin" go install -trimpath -ldflags "-s -w $ldflags" "${pkgs[@]}"
  touch "$dir/.complete"
}

build_kwok() {
  go_install kwok "$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwok \
    "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
  local dir; dir="$(component_dir kwok "$KWOK_VERSION")"
  [[ -f "$dir/stages.yaml" ]] && return 0
  # Standalone kwok needs Stage objects; take the upstream ones from the module cache.
  local src; src="$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  local s out="$dir/stages.yaml.tmp"; : >"$out"
  for s in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
           pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
    { echo "---"; cat "$src/kustomize/stage/$s.yaml"; echo; } >>"$out"
  done
  mv "$out" "$dir/stages.yaml"
}

# The Gateway API's standard CRDs, from the module cache (nothing to build) into <dir>/crds/.
fetch_gateway_api() {
  local dir; dir="$(component_dir gateway-api "$GATEWAY_API_VERSION")"
  [[ -f "$dir/.complete" ]] && return 0
  local src; src="$(go mod download -json "sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
  [[ -n "$src" ]] || { log "could not download sigs.k8s.io/gateway-api@$GATEWAY_API_VERSION"; exit 1; }
  rm -rf "$dir"; mkdir -p "$dir/crds"
  local k
  for k in gatewayclasses gateways httproutes referencegrants; do
    cp "$src/config/crd/standard/gateway.networking.k8s.io_$k.yaml" "$dir/crds/"
  done
  touch "$dir/.complete"
}

# A Go program built through a wrapper module: its own go.mod requires the published module and
# copies the module's replace lines (a dependency's replaces are ignored), dropping the relative
# ones (`./api`: the published api module is required instead), plus a few extra pins. The CRDs
# come from the module cache (CRD_DIR of the module's source) into <dir>/crds/.
build_wrapped() { # component module version package binary crd-dir [extra replaces OLD=NEW@VERSION ...]
  local component="$1" module="$2" version="$3" package="$4" binary="$5" crd_dir="$6" extra="${7:-}"
  local dir; dir="$(component_dir "$component" "$version")"
  [[ -f "$dir/.complete" ]] && return 0
  log "building $component $version (first run only; several minutes on 2 cores)"
  rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin" "$dir/crds"
  (
    cd "$dir/src"
    local info gomod src
    info="$(go mod download -json "$module@$version")"
    gomod="$(sed -n 's/.*"GoMod": "\(.*\)",/\1/p' <<<"$info")"
    src="$(sed -n 's/.*"Dir": "\(.*\)",/\1/p' <<<"$info")"
    [[ -f "$gomod" && -d "$src" ]] || { log "cannot download $module@$version"; exit 1; }
    go mod init "ferry.local/bench/$component" >/dev/null 2>&1
    local replaces=() r
    mapfile -t replaces < <(go mod edit -json "$gomod" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    new = r["New"]
    if new["Path"].startswith("."):
        continue
    old = r["Old"]["Path"] + ("@" + r["Old"]["Version"] if r["Old"].get("Version") else "")
    print(old + "=" + new["Path"] + "@" + new["Version"])
')
    read -r -a more <<<"$extra"
    for r in "${replaces[@]}" "${more[@]}"; do go mod edit -replace "$r"; done
    # Not `go mod tidy`: it also resolves the tests of every dependency, and some of those
    # (fluxcd/pkg/helmtestserver v0.40.2) are gone from the proxy. `go get` needs only the build.
    go get "$module@$version" >/dev/null 2>&1 || go get "$module@$version"
    go build -mod=mod -trimpath -ldflags "-s -w" -o "$dir/bin/$binary" "$package"
    cp "$src/$crd_dir"/*.yaml "$dir/crds/"
    # Only the CRDs: a kustomization.yaml beside them would break `kubectl apply -f <dir>`.
    rm -f "$dir/crds/kustomization.yaml"
    chmod u+w "$dir"/crds/*.yaml
  )
  touch "$dir/.complete"
}

# A Flux controller (source-, kustomize- or notification-controller); CRDs from config/crd/bases.
build_flux() { # name version [extra replaces, space-separated OLD=NEW@VERSION]
  build_wrapped "flux-$1" "github.com/fluxcd/$1" "$2" "github.com/fluxcd/$1" "$1" config/crd/bases "${3:-}"
}

# Gitea (a real forge for the forge client's and the webhook's tests). Its go.mod names the module
# gitea.dev although the proxy serves it as code.gitea.io/gitea, and it has replace lines, so neither
# `go install pkg@version` nor a wrapper module can build it: the module source is copied out of the
# module cache and built as the main module (its go.sum and replaces apply). SQLite is the pure-Go
# modernc driver (v1.27's default, without the sqlite_mattn tag), so CGO stays off. Without the
# bindata tag Gitea reads templates and options (README/licence templates for auto-init) from
# STATIC_ROOT_PATH at run time: they are copied into <dir>/share. The web UI's compiled assets are
# missing; the API does not need them.
build_gitea() {
  local dir; dir="$(component_dir gitea "$GITEA_VERSION")"
  [[ -f "$dir/.complete" ]] && return 0
  log "building gitea $GITEA_VERSION (first run only; 5-15 minutes on 2 cores)"
  rm -rf "$dir"; mkdir -p "$dir/src" "$dir/bin" "$dir/share"
  (
    local src
    src="$(go mod download -json "code.gitea.io/gitea@$GITEA_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
    [[ -d "$src" ]] || { log "cannot download code.gitea.io/gitea@$GITEA_VERSION"; exit 1; }
    cp -r "$src/." "$dir/src/"
    chmod -R u+w "$dir/src"
    cd "$dir/src"
    go build -trimpath -ldflags "-s -w -X main.Version=${GITEA_VERSION#v}" -o "$dir/bin/gitea" .
    cp -r options templates public "$dir/share/"
  )
  rm -rf "$dir/src"
  touch "$dir/.complete"
}

main() {
  local what=("$@")
  [[ ${#what[@]} -gt 0 ]] || what=(etcd kwok kustomize helm gateway-api age sops registry oras kubernetes)
  local w
  for w in "${what[@]}"; do
    case "$w" in
      kubernetes) build_kubernetes ;;
      etcd) build_etcd ;;
      kwok) build_kwok ;;
      gateway-api) fetch_gateway_api ;;
      kustomize) go_install kustomize "$KUSTOMIZE_VERSION" sigs.k8s.io/kustomize/kustomize/v5 \
                   "-X sigs.k8s.io/kustomize/api/provenance.version=$KUSTOMIZE_VERSION" ;;
      # age and age-keygen (SOPS's age backend; test keys and fixtures).
      age) go_install_cmds age "$AGE_VERSION" "" filippo.io/age/cmd/age filippo.io/age/cmd/age-keygen ;;
      sops) go_install sops "$SOPS_VERSION" github.com/getsops/sops/v3/cmd/sops ;;
      # The OCI registry (CNCF distribution) and the oras CLI, for charts and artifacts over OCI.
      registry) go_install registry "$REGISTRY_VERSION" github.com/distribution/distribution/v3/cmd/registry \
                  "-X github.com/distribution/distribution/v3/version.version=$REGISTRY_VERSION" ;;
      oras) go_install oras "$ORAS_VERSION" oras.land/oras/cmd/oras ;;
      # Not in the default list: built on demand by the tests that need it (tests/support/gitea.rs).
      gitea) build_gitea ;;
      # crane pushes container images (ImagePolicy scans, the image update bench).
      crane) go_install crane "$CRANE_VERSION" github.com/google/go-containerregistry/cmd/crane ;;
      helm) go_install helm "$HELM_VERSION" helm.sh/helm/v3/cmd/helm \
              "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" ;;
      flux-source-controller) build_flux source-controller "$FLUX_SOURCE_CONTROLLER_VERSION" \
                                "${FLUX_SOURCE_CONTROLLER_REPLACES:-}" ;;
      flux-kustomize-controller) build_flux kustomize-controller "$FLUX_KUSTOMIZE_CONTROLLER_VERSION" ;;
      flux-notification-controller) build_flux notification-controller "$FLUX_NOTIFICATION_CONTROLLER_VERSION" ;;
      # Argo CD's multi-call binary (argocd-application-controller, argocd-repo-server, ... chosen by
      # ARGOCD_BINARY_NAME) and its CRDs, for the side-by-side scale benches.
      argo-cd) build_wrapped argo-cd github.com/argoproj/argo-cd/v3 "$ARGO_CD_VERSION" \
                 github.com/argoproj/argo-cd/v3/cmd argocd manifests/crds ;;
      # Argo Rollouts' controller and CRDs, for the progressive delivery bench.
      argo-rollouts) build_wrapped argo-rollouts github.com/argoproj/argo-rollouts "$ARGO_ROLLOUTS_VERSION" \
                       github.com/argoproj/argo-rollouts/cmd/rollouts-controller rollouts-controller manifests/crds ;;
      *) log "unknown component $w"; exit 2 ;;
    esac
  done
}

# One build at a time per machine: parallel test binaries or two checkouts share the cache.
exec 9>"$cache/.build.lock"
flock 9
main "$@"
