#!/usr/bin/env bash
# Builds Siren's images from the release binaries, daemonless (buildah, no Docker engine):
#
#   siren-worker:VERSION     the function image (Knative Services, OpenFaaS functions)
#   siren-operator:VERSION   the operator image (the chart's default image); its binary is also
#                            siren-worker, for `process` jobs
#   siren-operator:VERSION-fashion-mnist   the same with Debian's Fashion-MNIST, for `builtin`
#                            datasets (the quickstart)
#   siren-lambda-VERSION-x86_64.zip   the Lambda bundle (`bootstrap` of a provided.al2023 runtime)
#
# Each image is one layer assembled from scratch (the Fashion-MNIST variant adds a second): the stripped binaries, the shared libraries
# `ldd` lists for them (at the same paths), CA certificates, /etc/passwd and /etc/group naming
# the nonroot user 65532, and writable /tmp. The layout (paths, user, entrypoint, environment,
# port) is the one docker/*.Dockerfile produce on distroless's cc-debian12:nonroot;
# scripts/check-image-layout.py compares the two.
#
# Writes to OUT (default: $CARGO_TARGET_DIR/images, or ~/.cache/siren/target/images):
#   siren-worker-VERSION.oci.tar, siren-operator-VERSION[-fashion-mnist].oci.tar: OCI image
#     layouts (gzip layers) with a Docker manifest.json beside index.json, as `docker save` writes
#     them since Docker 25, so that `docker load`, `podman load` and `kind load image-archive` all
#     take them;
#   siren-lambda-VERSION-x86_64.zip;
#   sizes.tsv: each artefact's size.
# and loads both images into the local container storage as localhost/siren-*:VERSION.
#
# Usage: scripts/build-images.sh [--out DIR] [--no-build] [--source URL]
#   --no-build   use the release binaries as they are (scripts/test.sh has just built them)
#   --source     the org.opencontainers.image.source label (default: git's origin URL)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
# buildah mounts the images' root file systems, and the files keep their owners (0 and 65532).
[ "$(id -u)" -eq 0 ] || { echo "build-images: needs root (buildah mount, chown)" >&2; exit 1; }

target_dir="${CARGO_TARGET_DIR:-$HOME/.cache/siren/target}"
out="$target_dir/images"
build=true
# Without credentials an https origin may carry (user:token@).
source_url="$(git config --get remote.origin.url 2>/dev/null | sed -E 's#://[^/@]*@#://#' || true)"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="${2:?--out needs a directory}"; shift 2 ;;
    --no-build) build=false; shift ;;
    --source) source_url="${2:?--source needs a URL}"; shift 2 ;;
    *) echo "usage: $0 [--out DIR] [--no-build] [--source URL]" >&2; exit 2 ;;
  esac
done

mkdir -p "$out"
out="$(cd "$out" && pwd)"

log() { echo "build-images: $*" >&2; }
fail() { log "$*"; exit 1; }

# Image size targets (uncompressed layer bytes, what `docker images` shows), from issue 20.
WORKER_LIMIT_MB=50
OPERATOR_LIMIT_MB=60
# Amazon Linux 2023, Lambda's provided.al2023 runtime, has glibc 2.34.
LAMBDA_GLIBC="2.34"

siren_container_tools
siren_quickstart_deps
command -v objcopy >/dev/null 2>&1 || siren_apt_install binutils

version="$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)"
[ -n "$version" ] || fail "no workspace version in Cargo.toml"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  revision="$revision-dirty"
fi
# The commit's time, not the clock's, so the same commit gives the same image config.
created="$(git log -1 --format=%ct 2>/dev/null || date +%s)"

release="$target_dir/release"
if $build; then
  log "building the release binaries"
  # The whole workspace's features, as `cargo test --workspace` builds them, so that nothing is
  # rebuilt for the images.
  cargo build --release --locked --workspace --bins
fi
for binary in siren-worker siren-operator siren-lambda; do
  [ -x "$release/$binary" ] || fail "no $release/$binary (cargo build --release --bin $binary)"
done

work="$(mktemp -d)"
containers=()
cleanup() {
  for container in "${containers[@]}"; do buildah rm "$container" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT
mkdir -p "$out"

strip_into() { # binary destination
  objcopy --strip-all "$1" "$2"
  chmod 0755 "$2"
}

# Copies what a nonroot, dynamically linked Rust binary needs besides itself into ROOT.
base_files() { # root binary...
  local root="$1" library
  shift
  mkdir -p "$root/etc/ssl/certs" "$root/tmp" "$root/home/nonroot"
  chmod 1777 "$root/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' \
    >"$root/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
  [ -f /etc/ssl/certs/ca-certificates.crt ] || siren_apt_install ca-certificates
  cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
  # The dynamic loader and every library, at the paths the binaries were linked against.
  for library in $(ldd "$@" | grep -o '/[^ ]*\.so[^ ]*' | sort -u); do
    mkdir -p "$root$(dirname "$library")"
    cp -L "$library" "$root$library"
  done
  # /lib64 is a symlink on Debian's merged /usr; the loader path in the ELF header uses it.
  if [ -d "$root/usr/lib64" ] && [ ! -e "$root/lib64" ]; then ln -s usr/lib64 "$root/lib64"; fi
  if [ -d "$root/usr/lib" ] && [ ! -e "$root/lib" ]; then ln -s usr/lib "$root/lib"; fi
}

# Commits ROOT as a one-layer image NAME:VERSION and writes its archive. Extra arguments are
# `buildah config` options.
commit_image() { # name root description [--from IMAGE] [--tag-suffix SUFFIX] config-args...
  local name="$1" root="$2" description="$3" container from=scratch suffix=""
  shift 3
  while [ $# -gt 0 ]; do
    case "$1" in
      --from) from="$2"; shift 2 ;;
      --tag-suffix) suffix="$2"; shift 2 ;;
      *) break ;;
    esac
  done
  local tag="$version$suffix"
  container="$(buildah from --pull-never "$from")"
  containers+=("$container")
  # cp -a, not `buildah copy`, which would make every file root's: /home/nonroot is the user's.
  local mount
  mount="$(buildah mount "$container")"
  cp -a "$root/." "$mount/"
  buildah umount "$container" >/dev/null
  buildah config \
    --user 65532:65532 \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
    --workingdir / \
    --label "org.opencontainers.image.title=$name" \
    --label "org.opencontainers.image.description=$description" \
    --label "org.opencontainers.image.version=$tag" \
    --label "org.opencontainers.image.revision=$revision" \
    --label "org.opencontainers.image.source=$source_url" \
    --label "org.opencontainers.image.licenses=Apache-2.0" \
    "$@" "$container"
  buildah commit --quiet --rm --timestamp "$created" "$container" "localhost/$name:$tag" >/dev/null
  unset 'containers[${#containers[@]}-1]'
  local archive="$out/$name-$tag.oci.tar"
  rm -f "$archive"
  buildah push --quiet "localhost/$name:$tag" "oci-archive:$archive:$name:$tag" >/dev/null
  python3 scripts/add-docker-manifest.py "$archive" "$name:$tag"
  log "$name:$tag -> $archive"
}

image_bytes() { # image [tag-suffix]: the bytes of its uncompressed layers
  podman image inspect --format '{{.Size}}' "localhost/$1:$version${2:-}"
}

check_size() { # name limit-MB
  local bytes limit=$(($2 * 1000 * 1000))
  bytes="$(image_bytes "$1")"
  printf '%s\t%s\t%s\n' "$1:$version" "$bytes" "$limit" >>"$out/sizes.tsv"
  log "$1:$version is $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB (target <= $2 MB)"
  [ "$bytes" -le "$limit" ] || fail "$1:$version is over its target of $2 MB"
}

printf 'artefact\tbytes\tlimit\n' >"$out/sizes.tsv"

# The function image.
worker_root="$work/worker"
mkdir -p "$worker_root/usr/local/bin"
strip_into "$release/siren-worker" "$worker_root/usr/local/bin/siren-worker"
base_files "$worker_root" "$worker_root/usr/local/bin/siren-worker"
commit_image siren-worker "$worker_root" "Siren's function: runs training tasks over HTTP (Knative, OpenFaaS)" \
  --env PORT=8080 \
  --port 8080/tcp \
  --entrypoint '["/usr/local/bin/siren-worker"]'
check_size siren-worker "$WORKER_LIMIT_MB"

# The operator image: one binary, serving as siren-worker too when started under that name (the
# process backend starts workers from beside the operator's own binary).
operator_root="$work/operator"
mkdir -p "$operator_root/usr/local/bin"
strip_into "$release/siren-operator" "$operator_root/usr/local/bin/siren-operator"
ln -s siren-operator "$operator_root/usr/local/bin/siren-worker"
base_files "$operator_root" "$operator_root/usr/local/bin/siren-operator"
chown 65532:65532 "$operator_root/home/nonroot"
operator_config=(--env SIREN_STATE_DIR=/var/lib/siren --port 8080/tcp
  --entrypoint '["/usr/local/bin/siren-operator"]')
commit_image siren-operator "$operator_root" "Siren's Kubernetes operator: runs TrainingJobs" \
  "${operator_config[@]}"
check_size siren-operator "$OPERATOR_LIMIT_MB"

# The same with Debian's Fashion-MNIST, for `dataset.builtin: fashion-mnist` jobs such as the
# quickstart: a second layer over the first, so a node that has both stores the binary once.
dataset_root="$work/fashion-mnist"
mkdir -p "$dataset_root/usr/share/datasets"
cp -r /usr/share/datasets/fashion-mnist "$dataset_root/usr/share/datasets/"
commit_image siren-operator "$dataset_root" "Siren's Kubernetes operator, with Fashion-MNIST" \
  --from "localhost/siren-operator:$version" --tag-suffix -fashion-mnist "${operator_config[@]}"
printf '%s\t%s\t%s\n' "siren-operator:$version-fashion-mnist" "$(image_bytes siren-operator -fashion-mnist)" "" >>"$out/sizes.tsv"
log "siren-operator:$version-fashion-mnist is $(awk -v b="$(image_bytes siren-operator -fashion-mnist)" 'BEGIN { printf "%.1f", b / 1e6 }') MB (the dataset's layer over siren-operator:$version)"

# The Lambda bundle, from the same release binary: a zip holding `bootstrap`. A binary linked
# against a glibc newer than Amazon Linux 2023's would not start there, so that is checked.
lambda_zip="$out/siren-lambda-$version-x86_64.zip"
[ "$(uname -m)" = "x86_64" ] || fail "the Lambda bundle from the release binary is x86_64 only (scripts/lambda-bundle.sh builds arm64)"
strip_into "$release/siren-lambda" "$work/bootstrap"
newest_glibc="$({ objdump -T "$work/bootstrap" | grep -o 'GLIBC_[0-9.]*' || true; } | sed 's/GLIBC_//' | sort -V | tail -n 1)"
[ -n "$newest_glibc" ] || fail "objdump -T finds no glibc symbol versions in siren-lambda: is it a dynamically linked Linux binary?"
if [ "$(printf '%s\n%s\n' "$newest_glibc" "$LAMBDA_GLIBC" | sort -V | tail -n 1)" != "$LAMBDA_GLIBC" ]; then
  fail "siren-lambda needs glibc $newest_glibc, newer than provided.al2023's $LAMBDA_GLIBC: build the bundle with scripts/lambda-bundle.sh (zig links for 2.34)"
fi
rm -f "$lambda_zip"
# zipfile keeps the file mode: Lambda runs `bootstrap` only when it is executable.
(cd "$work" && python3 -m zipfile -c "$lambda_zip" bootstrap)
lambda_bytes="$(stat -c %s "$lambda_zip")"
printf '%s\t%s\t%s\n' "$(basename "$lambda_zip")" "$lambda_bytes" "" >>"$out/sizes.tsv"
log "$(basename "$lambda_zip"): $(awk -v b="$lambda_bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB zipped; needs glibc $newest_glibc (Lambda has $LAMBDA_GLIBC)"

# Images of earlier builds, now untagged: full copies under the vfs driver.
buildah rmi --prune >/dev/null 2>&1 || true
log "done: $out"
