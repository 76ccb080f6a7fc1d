# Siren's install logic, sourced by scripts/setup.sh, scripts/test.sh, scripts/check-packaging.sh
# and scripts/check-fresh-machine.sh (which runs it in a new Debian root to prove it there).
#
# Each step installs only what is missing and never replaces what the machine has: a command that
# is already on PATH is used as it is, whichever package brought it. Debian packages come from
# apt; Python packages go into a virtual environment of Siren's own ($SIREN_VENV), never into the
# machine's Python, so neither a pyenv interpreter nor Debian's externally managed one is touched.

SIREN_CACHE="${SIREN_CACHE:-$HOME/.cache/siren}"
SIREN_VENV="${SIREN_VENV:-$SIREN_CACHE/venv}"
_siren_apt_updated=false

_siren_log() { echo "setup: $*" >&2; }

_siren_sudo() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs the named Debian packages that are not installed yet; refreshes the package lists once
# per shell before the first install, since a new machine's lists may be stale or absent.
siren_apt_install() {
  local missing=() package
  for package in "$@"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" \
      || missing+=("$package")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  _siren_log "installing ${missing[*]} (apt)"
  if ! $_siren_apt_updated; then
    _siren_sudo apt-get update -qq
    _siren_apt_updated=true
  fi
  _siren_sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# What `scripts/quickstart.sh` needs: the Fashion-MNIST files.
siren_quickstart_deps() {
  [ -d /usr/share/datasets/fashion-mnist ] || siren_apt_install dataset-fashion-mnist
}

# Siren's Python environment, made once, on PATH from here on: moto's S3 server, the cargo-lambda
# emulator and the packaging check's modules live there.
siren_python_env() {
  if [ ! -x "$SIREN_VENV/bin/python3" ]; then
    command -v python3 >/dev/null 2>&1 || siren_apt_install python3
    # Debian's python3 leaves ensurepip, which venv needs, to python3-venv.
    python3 -c 'import ensurepip' 2>/dev/null || siren_apt_install python3-venv
    _siren_log "creating the Python environment $SIREN_VENV"
    rm -rf "$SIREN_VENV"
    python3 -m venv "$SIREN_VENV"
  fi
  export PATH="$SIREN_VENV/bin:$PATH"
  local wanted=()
  python3 -c 'import moto.moto_server.werkzeug_app' 2>/dev/null || wanted+=('moto[server]==5.2.1')
  python3 -c 'import yaml' 2>/dev/null || wanted+=('PyYAML==6.0.3')
  python3 -c 'import jsonschema' 2>/dev/null || wanted+=('jsonschema==4.26.0')
  python3 -c 'import cffi' 2>/dev/null || wanted+=('cffi==2.0.0')
  if [ ${#wanted[@]} -gt 0 ]; then
    _siren_log "installing ${wanted[*]} (pip, into $SIREN_VENV)"
    python3 -m pip install --quiet --disable-pip-version-check "${wanted[@]}"
  fi
  # The Lambda emulator (`cargo lambda watch`); its ziglang dependency only serves
  # cross-compilation, which the emulator does not need.
  if [ ! -x "$SIREN_VENV/bin/cargo-lambda" ]; then
    _siren_log "installing cargo-lambda 1.9.2 (pip, into $SIREN_VENV)"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps 'cargo-lambda==1.9.2'
  fi
}

# The Helm Go library of PyPI's helm-sdkpy wheel (Linux x86_64 only), driven through cffi by
# scripts/check-packaging.sh; prints its path, or nothing where there is no build of it.
siren_helm_library() {
  [ "$(uname -s)-$(uname -m)" = "Linux-x86_64" ] || return 0
  local target="$SIREN_CACHE/packaging/helm-sdkpy"
  local library="$target/helm_sdkpy/_lib/linux-amd64/libhelm_sdkpy.so"
  if [ ! -f "$library" ]; then
    # The wheel says Python >= 3.12 for its Python layer; the Go library under it needs nothing.
    _siren_log "installing the Helm library (helm-sdkpy 0.1.32, pip) into $target"
    python3 -m pip install --quiet --disable-pip-version-check --no-deps \
      --ignore-requires-python --target "$target" 'helm-sdkpy==0.1.32' >&2
  fi
  echo "$library"
}

# etcd, and the kube-apiserver and kubectl that e2e/kube/build-apiserver.sh builds from one Debian
# source tree. The tests call both binaries by path (SIREN_KUBE_APISERVER, SIREN_KUBECTL): a
# kubectl already on PATH (say Google Cloud SDK's 1.32) is left alone and is not used, since a
# client more than one minor version from its server is outside Kubernetes' supported skew.
# With --install-only, the packages alone, not the build.
siren_kube_tools() {
  command -v etcd >/dev/null 2>&1 || siren_apt_install etcd-server
  if [ "${1:-}" = "--install-only" ]; then
    bash e2e/kube/build-apiserver.sh --install-only
    return
  fi
  local bin_dir
  bin_dir="$(dirname "$(bash e2e/kube/build-apiserver.sh)")"
  export SIREN_KUBE_APISERVER="$bin_dir/kube-apiserver" SIREN_KUBECTL="$bin_dir/kubectl"
}

# Everything scripts/test.sh needs besides cargo.
siren_test_deps() {
  siren_quickstart_deps
  local packages=()
  command -v redis-server >/dev/null 2>&1 || packages+=(redis-server)
  command -v openssl >/dev/null 2>&1 || packages+=(openssl)
  # The scheduler evaluation's charts are drawn with DejaVu Sans.
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || packages+=(fonts-dejavu-core)
  [ ${#packages[@]} -eq 0 ] || siren_apt_install "${packages[@]}"
  siren_python_env
}

# Daemonless containers for scripts/build-images.sh and the container tests: Debian's buildah and
# podman with runc. On machines of this kind, which are themselves containers (cgroups v1, no
# CAP_SYS_RESOURCE), podman needs runc with the cgroupfs manager (crun refuses the hybrid cgroup
# layout) and no default ulimits (raising RLIMIT_NOFILE/NPROC fails), and buildah and podman must
# share one storage driver (vfs works everywhere). Those settings live in configuration files of
# Siren's own, selected by CONTAINERS_CONF and CONTAINERS_STORAGE_CONF, so the machine's
# /etc/containers is neither read nor changed. With --install-only, the packages alone.
siren_container_tools() {
  local packages=()
  command -v buildah >/dev/null 2>&1 || packages+=(buildah)
  command -v podman >/dev/null 2>&1 || packages+=(podman)
  [ -x /usr/sbin/runc ] || command -v runc >/dev/null 2>&1 || packages+=(runc)
  [ ${#packages[@]} -eq 0 ] || siren_apt_install "${packages[@]}"
  [ "${1:-}" = "--install-only" ] && return 0
  local dir="$SIREN_CACHE/containers" runc
  runc="$(command -v runc || echo /usr/sbin/runc)"
  mkdir -p "$dir"
  cat >"$dir/containers.conf" <<CONF
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"

[engine.runtimes]
runc = ["$runc"]
CONF
  cat >"$dir/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$dir/storage"
runroot = "$dir/run"
CONF
  export CONTAINERS_CONF="$dir/containers.conf" CONTAINERS_STORAGE_CONF="$dir/storage.conf"
}

# What scripts/check-node.sh runs a node with besides the binaries it builds: containerd, the CNI
# plugins, iptables (kube-proxy, the bridge's masquerading) and a static libc for its pause image.
siren_node_tools() {
  local packages=()
  command -v containerd >/dev/null 2>&1 || packages+=(containerd)
  [ -x /usr/lib/cni/bridge ] || packages+=(containernetworking-plugins)
  command -v iptables >/dev/null 2>&1 || packages+=(iptables)
  command -v gcc >/dev/null 2>&1 || packages+=(gcc)
  dpkg-query -W -f='${Status}' libc6-dev 2>/dev/null | grep -q "install ok installed" || packages+=(libc6-dev)
  [ ${#packages[@]} -eq 0 ] || siren_apt_install "${packages[@]}"
}
