#!/usr/bin/env bash
# Siren's test suite: formatting, lints, the CRD's freshness, unit and integration tests, and the
# acceptance runs of the shipped samples on full Fashion-MNIST.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo fmt --all -- --check
cargo clippy --release --locked --all-targets -- -D warnings
cargo test --release --locked --workspace
cargo test --release --locked -p siren-operator --test fashion_mnist -- --ignored --test-threads 1
