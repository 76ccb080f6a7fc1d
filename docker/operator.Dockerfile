# syntax=docker/dockerfile:1
# The operator image: siren-operator, with siren-worker beside it (jobs whose backend is `process`,
# or an operator started with --dev-process-functions, run their functions as worker processes in
# the operator's pod) and Debian's Fashion-MNIST for jobs with `dataset.builtin: fashion-mnist` (the
# driver evaluates every epoch on the test split where the operator runs).
#
# Build from the repository's root (BuildKit reads docker/operator.Dockerfile.dockerignore):
#   docker build -f docker/operator.Dockerfile -t siren-operator:0.1.0 .
# Build arguments:
#   FASHION_MNIST=false   leave the dataset out (about 30 MB)
#   STRIP=debuginfo       what Cargo strips from the binaries: debuginfo (default; keeps symbol
#                         names for backtraces), symbols, or none (the workspace's line tables,
#                         about 300 MB per binary)

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG STRIP=debuginfo
ARG FASHION_MNIST=true
WORKDIR /src
RUN mkdir -p /out/bin /out/datasets \
 && if [ "$FASHION_MNIST" = "true" ]; then \
      apt-get update -qq \
      && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist \
      && cp -r /usr/share/datasets/fashion-mnist /out/datasets/ \
      && rm -rf /var/lib/apt/lists/*; \
    fi
COPY . .
RUN --mount=type=cache,id=siren-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=siren-operator-target,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP="$STRIP" \
    cargo build --release --locked --bin siren-operator --bin siren-worker \
 && cp target/release/siren-operator target/release/siren-worker /out/bin/

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/bin/ /usr/local/bin/
COPY --from=build /out/datasets/ /usr/share/datasets/
# distroless's `nonroot` user; the chart runs the pod as the same uid with a read-only root file
# system and emptyDirs at /tmp and /var/lib/siren.
USER 65532:65532
ENV SIREN_STATE_DIR=/var/lib/siren
# /metrics, /healthz and /readyz (--probe-address, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/siren-operator"]
