#!/usr/bin/env bash
# Builds the AWS Lambda bundles of the worker: `siren-lambda` as the `bootstrap` of a
# provided.al2023 custom runtime, zipped, for x86_64 and arm64 (Graviton):
#
#   target/lambda/x86_64/siren-lambda/bootstrap.zip
#   target/lambda/arm64/siren-lambda/bootstrap.zip
#
# Usage: scripts/lambda-bundle.sh [--arch x86_64|arm64]...   (default: both)
#
# The workspace's release profile keeps line tables (`debug = "line-tables-only"`) for readable
# backtraces, which makes siren-lambda about 300 MB, over Lambda's 250 MB limit for an unzipped
# bundle (and cargo lambda does not strip a profile that asks for debug info). The bundle is built
# without debug info, stripped of symbols and with link-time optimisation instead (about 30 MB, 10 MB
# zipped); the overrides below are environment variables, so Cargo.toml stays as it is.
#
# Deploy a zip with e.g.
#   aws lambda create-function --function-name siren-mlp-lambda --runtime provided.al2023 \
#     --handler bootstrap --architectures arm64 --memory-size 1769 --timeout 900 \
#     --role arn:aws:iam::ACCOUNT:role/siren-lambda \
#     --zip-file fileb://target/lambda/arm64/siren-lambda/bootstrap.zip
# and set `backend.pricing.model: lambda-arm` in jobs that use an arm64 function.
set -euo pipefail
cd "$(dirname "$0")/.."

arches=()
while [ $# -gt 0 ]; do
  case "$1" in
    --arch) arches+=("${2:?--arch needs x86_64 or arm64}"); shift 2 ;;
    --arch=*) arches+=("${1#--arch=}"); shift ;;
    *) echo "usage: $0 [--arch x86_64|arm64]..." >&2; exit 2 ;;
  esac
done
[ ${#arches[@]} -gt 0 ] || arches=(x86_64 arm64)

log() { echo "lambda-bundle: $*" >&2; }

if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is missing; install a stable Rust toolchain (rustup) first"
  exit 1
fi
# cargo lambda (PyPI: one static binary), as scripts/test.sh installs it.
if ! command -v cargo-lambda >/dev/null 2>&1; then
  log "installing cargo-lambda (pip)"
  python3 -m pip install --quiet --no-deps 'cargo-lambda==1.9.2'
  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi
fi
# Zig links for glibc versions older than the build machine's (Amazon Linux 2023 has glibc 2.34)
# and for the other architecture; cargo lambda finds it as `python3 -m ziglang`.
if ! command -v zig >/dev/null 2>&1 && ! python3 -c 'import ziglang' 2>/dev/null; then
  log "installing ziglang (pip)"
  python3 -m pip install --quiet "ziglang==${ZIGLANG_VERSION:-0.13.0}"
fi

# The bundle's own profile settings (see the header).
export CARGO_PROFILE_RELEASE_DEBUG=false
export CARGO_PROFILE_RELEASE_STRIP=symbols
export CARGO_PROFILE_RELEASE_LTO="${LTO:-thin}"

status=0
for arch in "${arches[@]}"; do
  case "$arch" in
    x86_64) triple=x86_64-unknown-linux-gnu; flag=--x86-64 ;;
    arm64) triple=aarch64-unknown-linux-gnu; flag=--arm64 ;;
    *) log "unknown architecture $arch (x86_64 or arm64)"; exit 2 ;;
  esac
  if command -v rustup >/dev/null 2>&1 && ! rustup target list --installed | grep -qx "$triple"; then
    log "adding the Rust standard library for $triple (rustup target add)"
    if ! rustup target add "$triple"; then
      log "no standard library for $triple: cannot build the $arch bundle"
      status=1
      continue
    fi
  fi
  out="target/lambda/$arch"
  log "building siren-lambda for $arch ($triple) into $out"
  cargo lambda build --release --locked --bin siren-lambda "$flag" \
    --output-format zip --lambda-dir "$out"
done

for arch in "${arches[@]}"; do
  zip="target/lambda/$arch/siren-lambda/bootstrap.zip"
  if [ -f "$zip" ]; then
    unzipped="$(python3 -c 'import sys, zipfile; print(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist()))' "$zip")"
    printf '%-7s %s: %s bytes zipped, %s bytes unzipped (Lambda allows 262144000 unzipped)\n' \
      "$arch" "$zip" "$(stat -c %s "$zip")" "$unzipped"
    if [ "$unzipped" -gt 262144000 ]; then
      log "the $arch bundle is over Lambda's limit"
      status=1
    fi
  fi
done
exit "$status"
