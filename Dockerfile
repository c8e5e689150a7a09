# cortex-gateway container image.
#
#   docker build -t cortex-gateway .
#   docker run --rm -p 8080:8080 cortex-gateway            # example config baked in
#   docker run --rm cortex-gateway --help
#
# The config baked into the image is config/cortex-gateway.toml: an example
# that points at localhost:9009 and carries a secret for local testing only.
# In production mount your own config over /etc/cortex-gateway (the
# Kubernetes manifests in deploy/kubernetes do) or pass flags/environment.

# ---------------------------------------------------------------------------
# Build stage. Debian 12 (bookworm), so that the glibc the binary links
# against is the one of the runtime stage below.
FROM rust:1-bookworm AS build
WORKDIR /build

# 1. Dependencies only. This layer depends on Cargo.toml, Cargo.lock and
#    patches/ (the patched actix-http and tokio that Cargo.toml's
#    [patch.crates-io] points at) alone, so editing the gateway's sources does not rebuild the
#    crates under it. The dummy targets give cargo a lib and a bin to build.
#    Cargo.toml declares a criterion bench, whose file must exist for the
#    manifest to load; a stub stands in for it (benches are not built here).
COPY Cargo.toml Cargo.lock ./
COPY patches ./patches
RUN mkdir src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && echo 'fn main() {}' > benches/hot_path.rs \
    && cargo build --release --locked \
    && rm -rf src

# 2. The gateway itself. COPY keeps the build context's modification times,
#    which can be older than the dummy build's outputs: touch the crate roots
#    so that cargo sees them as changed and rebuilds our crate (and only it).
#    build.rs records the source revision for cortex_gateway_build_info; the
#    build context has no .git, so pass it: --build-arg REVISION=$(git rev-parse --short=12 HEAD)
ARG REVISION=unknown
ENV CORTEX_GATEWAY_REVISION=$REVISION
COPY build.rs ./
COPY src ./src
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked \
    && cp target/release/cortex-gateway /usr/local/bin/cortex-gateway

# ---------------------------------------------------------------------------
# Runtime stage: distroless "cc" rather than debian:bookworm-slim, because
#  - it has exactly what the binary needs: glibc and libgcc_s (the binary is
#    dynamically linked against bookworm's glibc) and the CA bundle that
#    rustls-native-certs reads for https upstreams;
#  - it has no shell, package manager or setuid binaries, so there is less to
#    patch and less for an intruder to use, at a fraction of the size;
#  - its :nonroot tag ships the non-root user 65532 ("nonroot").
# Without a shell, debug with `kubectl debug -it POD --image=busybox
# --target=cortex-gateway` (ephemeral container) instead of `kubectl exec`.
FROM gcr.io/distroless/cc-debian12:nonroot

COPY --from=build /usr/local/bin/cortex-gateway /usr/local/bin/cortex-gateway
COPY config/cortex-gateway.toml /etc/cortex-gateway/cortex-gateway.toml

# 65532 is distroless' "nonroot" user. Numeric on purpose: Kubernetes can only
# verify `runAsNonRoot: true` against a numeric USER (with a name it refuses to
# start the pod unless the pod also sets runAsUser).
USER 65532:65532

# The HTTP port of the example config: proxy, /health, /ready and /metrics.
EXPOSE 8080

# No HEALTHCHECK: there is no shell or curl in the image to run one, and
# orchestrators probe /health and /ready over HTTP themselves.
ENTRYPOINT ["cortex-gateway"]
CMD ["--config", "/etc/cortex-gateway/cortex-gateway.toml"]
