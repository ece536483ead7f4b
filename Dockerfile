# syntax=docker/dockerfile:1
# ferry's container image: the release binary plus the pinned kustomize and helm it runs, on a
# distroless base (no shell, no package manager), as a non-root user.
#
#   docker build -t ferry:0.1.0 .
#
# kustomize and helm are built by tests/testenv/build.sh at the versions in
# tests/testenv/versions.env: the very binaries ferry's tests run against.

ARG RUST_VERSION=1.95
ARG GO_VERSION=1.26

FROM docker.io/library/rust:${RUST_VERSION}-bookworm AS ferry
WORKDIR /src
# zlib linked in statically too: the distroless base has glibc and libgcc, not libz.
ENV LIBZ_SYS_STATIC=1
# Dependencies first, so a source change does not rebuild them.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs && echo 'fn main() {}' > benches/render.rs \
 && cargo build --release --locked --bin ferry \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
COPY scripts/image-check.sh ./scripts/
RUN touch src/main.rs src/lib.rs \
 && cargo build --release --locked --bin ferry \
 && scripts/image-check.sh binary target/release/ferry

FROM docker.io/library/golang:${GO_VERSION}-bookworm AS tools
WORKDIR /src
COPY tests/testenv/build.sh tests/testenv/versions.env tests/testenv/
RUN FERRY_CACHE=/out tests/testenv/build.sh kustomize helm \
 && . tests/testenv/versions.env \
 && mkdir -p /out/bin \
 && cp /out/testenv/kustomize-$KUSTOMIZE_VERSION/bin/kustomize /out/testenv/helm-$HELM_VERSION/bin/helm /out/bin/ \
 && /out/bin/kustomize version && /out/bin/helm version --short

# glibc and libgcc for the Rust binary (libgit2 and OpenSSL are linked in statically); the
# nonroot variant runs as uid 65532.
FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ferry" \
      org.opencontainers.image.description="GitOps reconciliation agent for Kubernetes: sync Git to the cluster, progressive delivery, Prometheus metrics" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=ferry /src/target/release/ferry /usr/local/bin/ferry
COPY --from=tools /out/bin/kustomize /out/bin/helm /usr/local/bin/
USER 65532:65532
ENV HOME=/tmp TMPDIR=/tmp
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ferry"]
CMD ["run", "--cache-dir=/var/cache/ferry"]
