#!/usr/bin/env bash
# Builds a real kube-apiserver from Debian's `kubernetes` source package (upstream 1.20.2), offline
# from its vendored modules, for the operator's end-to-end tests, and makes sure etcd and kubectl
# are installed. Prints the API server binary's path; e2e/tests/operator.rs finds it there.
#
# The binary, the source tree and Go's build cache live under $SIREN_KUBE_DIR (default
# ~/.cache/siren/kube), outside any clone, so the build runs once per machine (3-4 min cold on
# 2 cores); later runs find the binary and return at once.
set -euo pipefail

kube_dir="${SIREN_KUBE_DIR:-$HOME/.cache/siren/kube}"
binary="$kube_dir/bin/kube-apiserver"
version="v1.20.2"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v kubectl >/dev/null || ! command -v etcd >/dev/null; then
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq kubernetes-client etcd-server >/dev/null
fi
if [ -x "$binary" ]; then
  echo "$binary"
  exit 0
fi

log() { echo "build-apiserver: $*" >&2; }

# The source package needs a deb-src entry; Debian's archive keyring signs it.
sources=/etc/apt/sources.list.d/siren-deb-src.sources
if ! grep -rqs "deb-src" /etc/apt/sources.list /etc/apt/sources.list.d/; then
  log "adding a deb-src entry for bookworm ($sources)"
  $SUDO tee "$sources" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  $SUDO apt-get update -qq
fi
need=()
for package in golang-go etcd-server make rsync dpkg-dev golang-github-modern-go-reflect2-dev; do
  dpkg -s "$package" >/dev/null 2>&1 || need+=("$package")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing ${need[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
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

log "building kube-apiserver $version (a few minutes on 2 cores)"
ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags="$ldflags -X $package.gitVersion=$version -X $package.gitMajor=1 -X $package.gitMinor=20"
done
go build -tags providerless -ldflags "$ldflags" -o "$binary.partial" ./cmd/kube-apiserver
mv "$binary.partial" "$binary"
echo "$binary"
