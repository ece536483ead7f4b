#!/usr/bin/env bash
# What of the Dockerfile can be checked without a container engine:
#
#   scripts/image-check.sh binary PATH   PATH runs (`ferry version`) and needs no shared library
#                                        beyond glibc and libgcc (what the distroless base has)
#   scripts/image-check.sh all           the release build the Dockerfile makes (same flags and
#                                        environment), `binary` on it, and the kustomize and helm
#                                        it copies, built by the same tests/testenv/build.sh
#
# The Dockerfile runs `binary` on its own build, so an image whose ferry would not start on the
# distroless base fails to build.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

binary() {
  local bin="$1"
  "$bin" version
  # Everything the dynamic loader would need; the distroless cc base ships only these.
  local libs extra
  libs="$(ldd "$bin" | awk '{print $1}')"
  extra="$(grep -vE '^(linux-vdso\.so|libgcc_s\.so|libm\.so|libc\.so|libdl\.so|libpthread\.so|librt\.so|/lib6?4?/ld-linux)' <<<"$libs" || true)"
  if [[ -n "$extra" ]]; then
    echo "error: $bin needs shared libraries the distroless base does not have: $extra" >&2
    exit 1
  fi
  echo "$bin links only against glibc and libgcc"
}

all() {
  cd "$repo"
  LIBZ_SYS_STATIC=1 cargo build --release --locked --bin ferry
  binary target/release/ferry
  # shellcheck source=../tests/testenv/versions.env
  source tests/testenv/versions.env
  tests/testenv/build.sh kustomize helm
  local cache="${FERRY_CACHE:-$HOME/.cache/ferry}/testenv"
  "$cache/kustomize-$KUSTOMIZE_VERSION/bin/kustomize" version
  "$cache/helm-$HELM_VERSION/bin/helm" version --short
}

case "${1:-}" in
  binary) binary "${2:?usage: $0 binary PATH}" ;;
  all) all ;;
  *) echo "usage: $0 binary PATH | all" >&2; exit 2 ;;
esac
