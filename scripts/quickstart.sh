#!/usr/bin/env bash
# Trains the quickstart TrainingJob (LeNet-5 on Fashion-MNIST, 4 in-process functions).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --release --locked --bin siren -- train -f config/samples/quickstart.yaml "$@"
