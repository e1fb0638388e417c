# The `platform` image: REST API, web UI, controller and gateway (`platform serve`).
# Build from the repository root:
#   docker build -f deploy/platform.Dockerfile -t platform:0.1.0 .
# Multi-stage: the toolchain stays in the builder; the final image is distroless (glibc and
# libgcc, no shell) and runs as the numeric non-root user 65532, so that Kubernetes can verify
# `runAsNonRoot` and the `restricted` Pod Security Standard admits it.

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
# The cache mounts keep the registry and build artifacts between builds (BuildKit).
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p control-plane --bin platform \
    && install -D target/release/platform /out/platform

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/platform /usr/local/bin/platform
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/platform"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
