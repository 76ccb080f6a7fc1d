#!/usr/bin/env bash
# Siren's test suite: formatting, lints, the CRD's freshness, unit and integration tests, the Helm
# chart and plain manifests, and the acceptance runs of the shipped samples on full Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# redis-server, openssl, fonts, and Siren's Python environment (moto's S3 server, cargo-lambda's
# emulator, the packaging check's modules); then etcd, and the kube-apiserver and kubectl that
# e2e/kube/build-apiserver.sh builds from Debian's source package (once per machine, 5-6 min).
siren_test_deps
siren_kube_tools
# The same install steps on a new Debian root (with a kubectl package owning /usr/bin/kubectl, as
# a new machine of this kind has), so that a step that only works on a prepared machine fails here.
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/check-fresh-machine.sh
else
  echo "test: scripts/check-fresh-machine.sh skipped: it needs root (chroot)" >&2
fi
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
# The quickstart's build of `siren` (scripts/quickstart.sh): no default features.
cargo clippy --release --locked -p siren-cli --no-default-features --bin siren -- -D warnings
cargo test --release --locked --workspace
# The Helm chart and config/operator's manifests (about 25 s): static checks (CRD copies, values
# schema, helm lint, docs/api-reference.md), then installs into a real kube-apiserver, where the
# siren-operator the tests above built must run a job with nothing but the chart's permissions.
# The images, built daemonless from the release binaries above (scripts/build-images.sh: sizes
# within their targets), checked against docker/'s Dockerfiles, then run: the operator image as the
# chart's pod with in-cluster configuration (in check-packaging.sh), the worker image as the
# replicas of the Knative stand-in and the OpenFaaS fake gateway, and the Lambda bundle's
# `bootstrap` against the Lambda Runtime API emulator.
if [ "$(id -u)" -eq 0 ]; then
  siren_container_tools
  bash scripts/build-images.sh --no-build
  images="$CARGO_TARGET_DIR/images"
  version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
  python3 scripts/check-image-layout.py docker/worker.Dockerfile "$images/siren-worker-$version.oci.tar"
  python3 scripts/check-image-layout.py docker/operator.Dockerfile "$images/siren-operator-$version.oci.tar"
  python3 scripts/check-image-layout.py docker/operator.Dockerfile:fashion-mnist \
    "$images/siren-operator-$version-fashion-mnist.oci.tar"
  bash scripts/check-packaging.sh --require-operator \
    --operator-image "localhost/siren-operator:$version-fashion-mnist"
  SIREN_E2E_WORKER_IMAGE="localhost/siren-worker:$version" \
    cargo test --release --locked --workspace --test operator_platforms
  SIREN_E2E_LAMBDA_BUNDLE="$images/siren-lambda-$version-x86_64.zip" \
    cargo test --release --locked --workspace --test lambda_backend
else
  echo "test: the images and their containers skipped: buildah needs root here" >&2
  bash scripts/check-packaging.sh --require-operator
fi
# A one-node cluster (kubelet, containerd, runc, kube-proxy, the controller manager and scheduler
# built from the API server's source tree): the operator image as the Deployment's pod, passing its
# probes, runs the quickstart to Succeeded. It needs root (about 2 min, plus 4 builds once).
if [ "$(id -u)" -eq 0 ]; then
  bash scripts/check-node.sh
else
  echo "test: scripts/check-node.sh skipped: a kubelet needs root" >&2
fi
# Every TrainingJob field, enum value and condition reason the operator writes is in the user guide.
python3 scripts/check-user-guide.py
# The acceptance runs. `--workspace --test NAME` rather than `-p PACKAGE`: cargo then resolves
# features for the whole workspace, as above, and reuses that build; `-p` resolves one package's
# features and rebuilds Siren's crates (4 min on 2 cores). Test names are unique in the workspace.
cargo test --release --locked --workspace --test fashion_mnist -- --ignored --test-threads 1
cargo test --release --locked --workspace --test calibrate -- --ignored --test-threads 1
cargo test --release --locked --workspace --test acceptance -- --ignored
cargo test --release --locked --workspace --test operator -- --ignored
cargo test --release --locked --workspace --test lease_under_load -- --ignored
cargo test --release --locked --workspace --test process_backend -- --ignored
cargo test --release --locked --workspace --test s3_store -- --ignored
