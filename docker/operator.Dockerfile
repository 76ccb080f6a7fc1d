# syntax=docker/dockerfile:1
# The operator image: siren-operator, and siren-worker beside it as a link to the same binary (jobs
# whose backend is `process`, or an operator started with --dev-process-functions, run their
# functions as worker processes in the operator's pod; the operator's binary serves as the worker
# when started under that name). The target `fashion-mnist` adds Debian's Fashion-MNIST for jobs
# with `dataset.builtin: fashion-mnist`, such as the quickstart (the driver evaluates every epoch on
# the test split where the operator runs).
#
# Build from the repository's root (BuildKit reads docker/operator.Dockerfile.dockerignore):
#   docker build -f docker/operator.Dockerfile -t siren-operator:0.1.0 .
#   docker build -f docker/operator.Dockerfile --target fashion-mnist -t siren-operator:0.1.0-fashion-mnist .
# scripts/build-images.sh builds the same images without Docker.
# Build argument:
#   STRIP=debuginfo       what Cargo strips from the binaries: debuginfo (default; keeps symbol
#                         names for backtraces), symbols, or none (the workspace's line tables,
#                         about 300 MB per binary)

ARG RUST_IMAGE=rust:1-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS build
ARG STRIP=debuginfo
WORKDIR /src
RUN mkdir -p /out/bin /out/datasets \
 && apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends dataset-fashion-mnist \
 && cp -r /usr/share/datasets/fashion-mnist /out/datasets/ \
 && rm -rf /var/lib/apt/lists/*
COPY . .
RUN --mount=type=cache,id=siren-cargo-registry,target=/usr/local/cargo/registry \
    --mount=type=cache,id=siren-operator-target,target=/src/target \
    CARGO_PROFILE_RELEASE_STRIP="$STRIP" \
    cargo build --release --locked --bin siren-operator \
 && cp target/release/siren-operator /out/bin/ \
 && ln -s siren-operator /out/bin/siren-worker

FROM ${RUNTIME_IMAGE} AS operator
COPY --from=build /out/bin/ /usr/local/bin/
# distroless's `nonroot` user; the chart runs the pod as the same uid with a read-only root file
# system and emptyDirs at /tmp and /var/lib/siren.
USER 65532:65532
ENV SIREN_STATE_DIR=/var/lib/siren
# /metrics, /healthz and /readyz (--probe-address, default 0.0.0.0:8080).
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/siren-operator"]

FROM operator AS fashion-mnist
COPY --from=build /out/datasets/ /usr/share/datasets/

# The default target: the operator without the dataset.
FROM operator
