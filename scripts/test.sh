#!/usr/bin/env bash
# Siren's test suite: formatting, lints, the CRD's freshness, unit and integration tests, the Helm
# chart and plain manifests, and the acceptance runs of the shipped samples on full Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
# The S3 store's tests run against moto's S3 server (PyPI), which supports conditional writes.
python3 -c "import moto.moto_server.werkzeug_app" 2>/dev/null \
  || python3 -m pip install --quiet 'moto[server]==5.2.1'
# The Lambda backend's tests invoke functions through `cargo lambda watch`'s emulator (PyPI). Its
# ziglang dependency only serves cross-compilation, which the emulator does not need.
command -v cargo-lambda >/dev/null 2>&1 \
  || { python3 -m pip install --quiet --no-deps 'cargo-lambda==1.9.2' && { command -v pyenv >/dev/null 2>&1 && pyenv rehash || true; }; }
# The operator's end-to-end tests run against a real kube-apiserver built from Debian's source
# package (once per machine, a few minutes), with etcd and kubectl from Debian.
SIREN_KUBE_APISERVER="$(bash e2e/kube/build-apiserver.sh)"
export SIREN_KUBE_APISERVER
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked --workspace
# The Helm chart and config/operator's manifests (about 25 s): static checks (CRD copies, values
# schema, helm lint, docs/api-reference.md), then installs into a real kube-apiserver, where the
# siren-operator the tests above built must run a job with nothing but the chart's permissions.
bash scripts/check-packaging.sh --require-operator
# Every TrainingJob field, enum value and condition reason the operator writes is in the user guide.
python3 scripts/check-user-guide.py
cargo test --release --locked -p siren-operator --test fashion_mnist -- --ignored --test-threads 1
cargo test --release --locked -p siren-operator --test calibrate -- --ignored --test-threads 1
cargo test --release --locked -p siren-scheduler --test acceptance -- --ignored
cargo test --release --locked -p siren-e2e --test operator -- --ignored
cargo test --release --locked -p siren-e2e --test process_backend -- --ignored
cargo test --release --locked -p siren-e2e --test s3_store -- --ignored
