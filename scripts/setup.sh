#!/usr/bin/env bash
# Sourced by quickstart.sh and test.sh: the quickstart's Debian packages, cargo, and the build
# directory outside the clone. scripts/deps.sh says how things are installed.
set -euo pipefail
source scripts/deps.sh
siren_quickstart_deps

if ! command -v cargo >/dev/null 2>&1; then
  echo "setup: cargo is missing; install a stable Rust toolchain (rustup) first" >&2
  exit 1
fi

# Builds live outside the clone so that fresh clones (and CI) reuse them.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/siren/target}"
