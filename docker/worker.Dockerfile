# syntax=docker/dockerfile:1
# The function image: siren-worker, an HTTP function for Knative Services and OpenFaaS functions.
# It listens on $PORT (default 8080; Knative sets it) on all interfaces, runs one task per
# `POST /`, and answers `GET /healthz` (and `GET /_/health`, the path OpenFaaS's faas-netes probes on
# port 8080). SIGTERM lets the task in flight finish. Logs are JSON lines on stderr ($SIREN_LOG).
#
# Build from the repository's root (BuildKit reads docker/worker.Dockerfile.dockerignore):
#   docker build -f docker/worker.Dockerfile -t siren-worker:0.1.0 .
# Build argument STRIP as in operator.Dockerfile (default debuginfo).

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG STRIP=debuginfo
WORKDIR /src
COPY . .
RUN --mount=type=cache,id=siren-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=siren-worker-target,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP="$STRIP" \
    cargo build --release --locked --bin siren-worker \
 && mkdir -p /out \
 && cp target/release/siren-worker /out/

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/siren-worker /usr/local/bin/siren-worker
USER 65532:65532
ENV PORT=8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/siren-worker"]
