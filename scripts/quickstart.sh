#!/usr/bin/env bash
# Trains the quickstart TrainingJob (LeNet-5 on Fashion-MNIST, 4 in-process functions).
#
# It builds `siren` without the features the quickstart does not use (the operator, the Knative,
# OpenFaaS and Lambda backends, the Redis and S3 stores): the AWS SDK and kube's client are most
# of a full cold build. scripts/test.sh builds everything.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

# Measured on 2 cores with an empty build directory (see README.md).
cold_build_minutes=7
built_once="$CARGO_TARGET_DIR/.siren-quickstart-built"
if [ ! -f "$built_once" ]; then
  echo "first run: building Siren, about $cold_build_minutes minutes on 2 cores (later runs start at once)" >&2
fi
started=$SECONDS
cargo build --release --locked -p siren-cli --no-default-features --bin siren
elapsed=$((SECONDS - started))
touch "$built_once"
printf 'build: %d min %02d s\n' $((elapsed / 60)) $((elapsed % 60)) >&2
exec "$CARGO_TARGET_DIR/release/siren" train -f config/samples/quickstart.yaml "$@"
