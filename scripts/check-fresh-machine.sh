#!/usr/bin/env bash
# Proves the README commands' install logic (scripts/deps.sh, e2e/kube/build-apiserver.sh) on a
# machine state like a new one: a Debian root made by mmdebstrap from the machine's own Debian
# archive, holding what a new machine of this kind holds that matters here (python3, and a
# `kubectl` package owning /usr/bin/kubectl as Google Cloud SDK's does) and none of what Siren
# installs (no etcd, Redis, Fashion-MNIST, Go, Python environment or Helm library).
#
# It runs every install step of both commands there twice: the first run must install everything
# without touching the kubectl package, the second must find everything and install nothing.
# Not covered here: cargo and the builds (the root has no Rust toolchain; the builds are the same
# on every machine once their inputs are installed) and the fetch of the kubernetes source
# package (about 30 MB; its deb-src entry and build packages are covered).
#
# The base root is made once per machine under ~/.cache/siren/fresh-machine (a few minutes);
# every run starts from a new copy of it. Needs root (chroot, mounts in a private namespace).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

log() { echo "check-fresh-machine: $*" >&2; }
failures=0
check() {
  if [ "$2" = true ]; then
    echo "ok: $1"
  else
    echo "FAILED: $1${3:+: $3}"
    failures=$((failures + 1))
  fi
}

if [ "$(id -u)" -ne 0 ]; then
  echo "$0: needs root (chroot and mounts)" >&2
  exit 2
fi
siren_apt_install mmdebstrap

cache="$SIREN_CACHE/fresh-machine"
base="$cache/bookworm-base.tar"
mkdir -p "$cache"
if [ ! -f "$base" ]; then
  sources="$(grep -lE '^Types:(.* )?deb( |$)' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -n 1 || true)"
  [ -n "$sources" ] || sources=/etc/apt/sources.list
  suite="$(. /etc/os-release && echo "$VERSION_CODENAME")"
  log "making a $suite root from $sources (once per machine)"
  mmdebstrap --quiet --variant=minbase --include=python3,ca-certificates \
    "$suite" "$cache/partial.tar" "$sources"
  mv "$cache/partial.tar" "$base"
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"
# Commands in the root with its own PATH, not this shell's (which may hold Siren's venv).
in_root_plain() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
tar -xf "$base" -C "$root"
cp /etc/resolv.conf "$root/etc/resolv.conf"
# A new machine trusts the same certificate authorities as this one (its registries may be reached
# through a proxy with a CA of its own), and pip is told where that bundle is.
if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
  cp /usr/local/share/ca-certificates/*.crt "$root/usr/local/share/ca-certificates/"
  in_root_plain update-ca-certificates >/dev/null 2>&1
fi
[ ! -f /etc/pip.conf ] || cp /etc/pip.conf "$root/etc/pip.conf"
# No service may start inside the root (etcd's and Redis's packages try to).
printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
chmod +x "$root/usr/sbin/policy-rc.d"

# The machine's `kubectl` package: same name, version and file as Google Cloud SDK's, which no
# Debian package may overwrite.
package="$work/kubectl-package"
mkdir -p "$package/DEBIAN" "$package/usr/bin"
cat >"$package/DEBIAN/control" <<'EOF'
Package: kubectl
Version: 1:528.0.0-0
Architecture: amd64
Maintainer: Siren's fresh-machine check <siren@localhost>
Description: stand-in for Google Cloud SDK's kubectl package
EOF
printf '#!/bin/sh\necho "Client Version: v1.32.4 (the machine'"'"'s own)"\n' >"$package/usr/bin/kubectl"
chmod +x "$package/usr/bin/kubectl"
dpkg-deb --build --root-owner-group "$package" "$root/tmp/kubectl.deb" >/dev/null
in_root_plain dpkg -i /tmp/kubectl.deb >/dev/null

mkdir -p "$root/siren/scripts" "$root/siren/e2e/kube"
cp scripts/deps.sh "$root/siren/scripts/"
cp e2e/kube/build-apiserver.sh "$root/siren/e2e/kube/"

# What README's two commands install, in the order they install it.
# One statement a line, as the scripts run them, so that `set -e` stops at the first failure
# (inside a && list it would not).
install_steps='set -euo pipefail
cd /siren
source scripts/deps.sh
siren_quickstart_deps
siren_test_deps
siren_kube_tools --install-only
siren_container_tools --install-only
siren_node_tools
siren_helm_library >/dev/null'
in_root() {
  unshare --mount --propagation private -- bash -c '
    root="$1"; shift
    mount --rbind /dev "$root/dev"
    mount -t proc proc "$root/proc"
    mount -t sysfs sysfs "$root/sys"
    exec chroot "$root" env -i HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
      LANG=C.UTF-8 bash -c "$1"' _ "$root" "$1"
}

log "first run: installing into the fresh root"
first_ok=true
in_root "$install_steps" >"$work/first.log" 2>&1 || first_ok=false
check "the install steps pass on a fresh root with the machine's kubectl package" "$first_ok" \
  "$(tail -n 20 "$work/first.log")"

status_of() { in_root_plain dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null || true; }
owner="$(in_root_plain dpkg -S /usr/bin/kubectl 2>/dev/null || true)"
check "/usr/bin/kubectl still belongs to the kubectl package" \
  "$([ "$owner" = "kubectl: /usr/bin/kubectl" ] && echo true || echo false)" "$owner"
check "the kubectl package is untouched" \
  "$([ "$(status_of kubectl)" = "install ok installed 1:528.0.0-0" ] && echo true || echo false)" \
  "$(status_of kubectl)"
check "Debian's kubernetes-client is not installed" \
  "$([ -z "$(status_of kubernetes-client | grep 'ok installed')" ] && echo true || echo false)"
for command in etcd redis-server openssl go make rsync dpkg-source buildah podman runc containerd iptables; do
  check "$command is installed" "$(in_root_plain sh -c "command -v $command" >/dev/null && echo true || echo false)"
done
for path in /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz \
  /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf \
  /usr/share/gocode/src/github.com/modern-go/reflect2/reflect2.go \
  /root/.cache/siren/venv/bin/cargo-lambda \
  /root/.cache/siren/packaging/helm-sdkpy/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so; do
  check "$path is there" "$([ -e "$root$path" ] && echo true || echo false)"
done
check "Siren's Python environment imports moto's server, yaml, jsonschema and cffi" \
  "$(in_root_plain /root/.cache/siren/venv/bin/python3 -c \
    'import moto.moto_server.werkzeug_app, yaml, jsonschema, cffi' 2>/dev/null && echo true || echo false)"
check "the system Python was left alone (no moto in it)" \
  "$(in_root_plain python3 -c 'import moto' 2>/dev/null && echo false || echo true)"
check "a deb-src entry sits beside the machine's Debian source" \
  "$(grep -rqs '^Types: deb-src' "$root/etc/apt/sources.list.d/" && echo true || echo false)"

log "second run: everything is there, nothing may be installed"
second_ok=true
in_root "$install_steps" >"$work/second.log" 2>&1 || second_ok=false
check "the install steps pass again" "$second_ok" "$(tail -n 20 "$work/second.log")"
check "the second run installs nothing" \
  "$(grep -q 'installing\|creating' "$work/second.log" && echo false || echo true)" \
  "$(grep 'installing\|creating' "$work/second.log" || true)"

log "what the first run installed:"
grep '^setup:\|^build-apiserver:' "$work/first.log" >&2 || true
if [ "$failures" -gt 0 ]; then
  echo "check-fresh-machine: $failures checks failed" >&2
  exit 1
fi
echo "check-fresh-machine: all checks passed"
