# The `platform-runtime` image: the prebuilt ONNX serving container that deployed models of the
# prebuilt runtime run on Kubernetes. It speaks the Vertex custom-container contract (`AIP_*`
# environment), so it needs no arguments.
# Build from the repository root:
#   docker build -f deploy/platform-runtime.Dockerfile -t platform-runtime:0.1.0 .
# Distroless and the numeric non-root user 65532: the rendered pods set `runAsNonRoot`, which the
# kubelet can only check for a numeric user.

FROM rust:1.94-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p runtime --bin platform-runtime \
    && install -D target/release/platform-runtime /out/platform-runtime

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/platform-runtime /usr/local/bin/platform-runtime
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/platform-runtime"]
