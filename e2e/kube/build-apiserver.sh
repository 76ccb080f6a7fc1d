#!/usr/bin/env bash
# Builds a real kube-apiserver and the kubectl of the same version from Debian's `kubernetes`
# source package (upstream 1.20.2), offline from its vendored modules, for the operator's
# end-to-end tests and scripts/check-packaging.sh. Prints the API server binary's path; kubectl is
# beside it. A kubectl the machine already has is neither replaced nor used.
#
# The binaries, the source tree and Go's build cache live under $SIREN_KUBE_DIR (default
# ~/.cache/siren/kube), outside any clone, so the build runs once per machine (5-6 min cold on
# 2 cores); later runs find the binaries and return at once.
#
# --install-only: install the build's Debian packages and its deb-src entry, then stop (what
# scripts/check-fresh-machine.sh proves on a new Debian root).
# --node: build kubelet, kube-controller-manager, kube-scheduler and kube-proxy too (about a
# minute each once the API server is built), for scripts/check-node.sh.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
source "$here/../../scripts/deps.sh"

install_only=false
node=false
for argument in "$@"; do
  case "$argument" in
    --install-only) install_only=true ;;
    --node) node=true ;;
    *) echo "usage: $0 [--install-only] [--node]" >&2; exit 2 ;;
  esac
done
kube_dir="${SIREN_KUBE_DIR:-$HOME/.cache/siren/kube}"
apiserver="$kube_dir/bin/kube-apiserver"
kubectl="$kube_dir/bin/kubectl"
version="v1.20.2"
if ! $install_only && [ -x "$apiserver" ] && [ -x "$kubectl" ] \
  && { ! $node || [ -x "$kube_dir/bin/kube-proxy" ]; }; then
  echo "$apiserver"
  exit 0
fi

log() { echo "build-apiserver: $*" >&2; }

# The source package needs a deb-src entry. It is made from the machine's own Debian entry (same
# archive, suite and keyring), so it points wherever the machine's packages come from.
sources=/etc/apt/sources.list.d/siren-deb-src.sources
if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  entry="$(python3 - <<'PY'
import glob, sys
stanzas = []
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    stanzas += open(path).read().split("\n\n")
for stanza in stanzas:
    fields = {}
    for line in stanza.splitlines():
        if ":" in line and not line.startswith(("#", " ")):
            key, value = line.split(":", 1)
            fields[key.strip()] = value.strip()
    suites = fields.get("Suites", "").split()
    if fields.get("Types") == "deb" and suites and not suites[0].endswith("-security"):
        print(f"Types: deb-src\nURIs: {fields['URIs']}\nSuites: {suites[0]}\nComponents: main")
        if "Signed-By" in fields:
            print(f"Signed-By: {fields['Signed-By']}")
        sys.exit(0)
for line in open("/etc/apt/sources.list") if glob.glob("/etc/apt/sources.list") else []:
    words = line.split()
    if len(words) >= 3 and words[0] == "deb" and not words[2].endswith("-security"):
        print(f"Types: deb-src\nURIs: {words[1]}\nSuites: {words[2]}\nComponents: main")
        sys.exit(0)
sys.exit("no Debian package source found in /etc/apt to add a deb-src entry beside")
PY
)"
  log "adding a deb-src entry ($sources) beside the machine's Debian source"
  echo "$entry" | _siren_sudo tee "$sources" >/dev/null
  _siren_sudo apt-get update -qq
  _siren_apt_updated=true
fi
siren_apt_install golang-go make rsync dpkg-dev golang-github-modern-go-reflect2-dev
if $install_only; then
  exit 0
fi

mkdir -p "$kube_dir/bin"
src_parent="$kube_dir/src"
tree="$(find "$src_parent" -maxdepth 1 -type d -name 'kubernetes-*' 2>/dev/null | head -n 1 || true)"
if [ -z "$tree" ]; then
  log "fetching the kubernetes source package"
  mkdir -p "$src_parent"
  (cd "$src_parent" && apt-get source -qq kubernetes >/dev/null)
  tree="$(find "$src_parent" -maxdepth 1 -type d -name 'kubernetes-*' | head -n 1)"
fi
cd "$tree"

# Fix 1: Go 1.19 reads the packages listed under a version-less replacement header (`# X => X v`)
# as belonging to version "" of X, which outranks every real version, so the vendored module no
# longer matches go.mod ("updates to go.mod needed"). Moving those header lines (alone, not the
# package lines under them) to the end of the file gives the packages back to the versioned entry.
if [ ! -f .siren-modules-fixed ]; then
  log "moving version-less replacement headers in vendor/modules.txt"
  python3 - <<'PY'
lines = open("vendor/modules.txt").read().splitlines()
def versionless(line):
    fields = line.split()
    return line.startswith("# ") and len(fields) >= 3 and fields[2] == "=>"
kept = [line for line in lines if not versionless(line)]
moved = [line for line in lines if versionless(line)]
open("vendor/modules.txt", "w").write("\n".join(kept + moved) + "\n")
PY
  touch .siren-modules-fixed
fi

# Fix 2: reflect2 1.0.1 crashes under Go >= 1.18 on the first custom-resource write; Debian's
# 1.0.2 sources replace it.
if [ ! -f .siren-reflect2-fixed ]; then
  log "replacing the vendored modern-go/reflect2 with Debian's 1.0.2"
  reflect2=vendor/github.com/modern-go/reflect2
  rm -rf "$reflect2"
  mkdir -p "$reflect2"
  cp -r /usr/share/gocode/src/github.com/modern-go/reflect2/. "$reflect2/"
  rm -rf "$reflect2"/tests "$reflect2"/test* 2>/dev/null || true
  sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' go.mod vendor/modules.txt
  find . -name go.mod -path './staging/*' -exec sed -i 's#github.com/modern-go/reflect2 v1.0.1#github.com/modern-go/reflect2 v1.0.2#g' {} +
  touch .siren-reflect2-fixed
fi

export GOFLAGS=-mod=vendor GOPROXY=off CGO_ENABLED=0
export GOCACHE="$kube_dir/go-cache" GOPATH="$kube_dir/gopath"

# Fix 3: the OpenAPI definitions are generated at build time.
if [ ! -f pkg/generated/openapi/zz_generated.openapi.go ]; then
  log "generating the OpenAPI definitions (make gen_openapi)"
  make gen_openapi >/dev/null
fi

ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $package.gitVersion=$version -X $package.gitMajor=1 -X $package.gitMinor=20"
done
commands=(kube-apiserver kubectl)
# --node: also what a node and its control loops run (scripts/check-node.sh).
if $node; then commands+=(kubelet kube-controller-manager kube-scheduler kube-proxy); fi
for command in "${commands[@]}"; do
  binary="$kube_dir/bin/$command"
  [ -x "$binary" ] && continue
  log "building $command $version (a few minutes on 2 cores)"
  go build -tags providerless -ldflags "$ldflags" -o "$binary.partial" "./cmd/$command"
  mv "$binary.partial" "$binary"
done
echo "$apiserver"
