#!/usr/bin/env bash
# Provision etcd + kube-apiserver (+ kubectl) 1.20.2 into a cache folder, once.
#
# Source of the binaries: Debian bookworm's `etcd-server` package and
# Kubernetes 1.20.2 built from Debian's `kubernetes` source package with Debian's Go 1.19.
# Go >= 1.18 crashes the server with the vendored reflect2 1.0.1, so that folder is replaced
# with reflect2 1.0.2 from `golang-github-modern-go-reflect2-dev`.
#
# Usage: hack/provision-control-plane.sh [CACHE_DIR]
#   CACHE_DIR defaults to $BKOPS_CACHE_DIR or ~/.cache/bkops; binaries land in CACHE_DIR/k8s-1.20.2/bin.
# Idempotent: exits at once when the binaries are already there. Needs root (apt-get).
# Also installs openssl, which `bkops::local` needs at run time for the service-account key.
#
# Concurrent runs provision once: the script holds an exclusive flock on CACHE_DIR/provision.lock,
# the same lock `bkops::local` takes before it runs this script (and then sets
# BKOPS_PROVISION_LOCK_HELD=1 so the script does not wait for its own caller).
set -euo pipefail

cache="${1:-${BKOPS_CACHE_DIR:-$HOME/.cache/bkops}}"
dest="$cache/k8s-1.20.2"
bin="$dest/bin"
provisioned() { [[ -x "$bin/kube-apiserver" && -x "$bin/etcd" && -x "$bin/kubectl" ]]; }
if provisioned; then
  echo "control plane already provisioned in $bin"
  exit 0
fi

log() { printf '[provision] %s\n' "$*" >&2; }
die() { printf '[provision] error: %s\n' "$*" >&2; exit 1; }

if [[ "${BKOPS_PROVISION_LOCK_HELD:-}" != 1 ]] && command -v flock >/dev/null; then
  mkdir -p "$cache"
  exec 9>>"$cache/provision.lock"
  if ! flock -n 9; then
    log "another process is provisioning into $cache; waiting"
    flock 9
  fi
  if provisioned; then
    echo "control plane provisioned in $bin (by another process)"
    exit 0
  fi
fi

command -v apt-get >/dev/null || die "apt-get not found: provision needs Debian bookworm, or set KUBEBUILDER_ASSETS to a folder with kube-apiserver and etcd"
[[ $(id -u) == 0 ]] || die "must run as root to apt-get install; or set KUBEBUILDER_ASSETS to a folder with kube-apiserver and etcd"

export DEBIAN_FRONTEND=noninteractive
src_list=/etc/apt/sources.list.d/bkops-deb-src.sources
if ! grep -rqs '^Types:.*deb-src' /etc/apt/sources.list.d/ && ! grep -qs '^deb-src' /etc/apt/sources.list; then
  log "adding a deb-src entry for bookworm main"
  cat >"$src_list" <<SRC
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
log "apt-get update"
apt-get update -qq
log "installing etcd-server golang-go rsync dpkg-dev make openssl and reflect2 sources"
apt-get install -y -qq --no-install-recommends etcd-server golang-go rsync dpkg-dev \
  golang-github-modern-go-reflect2-dev make openssl >/dev/null

work="$dest/build"
mkdir -p "$work"
cd "$work"
if [[ ! -d "$work/src" ]]; then
  log "fetching Debian's kubernetes source package"
  rm -rf "$work/fetch" && mkdir -p "$work/fetch"
  (cd "$work/fetch" && apt-get source -qq kubernetes >/dev/null)
  srcdir=$(find "$work/fetch" -maxdepth 1 -mindepth 1 -type d -name 'kubernetes-*' | head -n1)
  [[ -n "$srcdir" ]] || die "apt-get source kubernetes produced no source tree"
  mv "$srcdir" "$work/src"
fi

gopath="$work/.go"
mkdir -p "$gopath/src/k8s.io"
ln -sfn "$work/src" "$gopath/src/k8s.io/kubernetes"

r2=/usr/share/gocode/src/github.com/modern-go/reflect2
vend="$work/src/vendor/github.com/modern-go/reflect2"
[[ -d "$r2" ]] || die "reflect2 1.0.2 sources not found at $r2"
if [[ -d "$vend" ]] && ! grep -qs 'bkops: reflect2 1.0.2' "$vend/BKOPS"; then
  log "replacing vendored reflect2 1.0.1 with 1.0.2"
  find "$vend" -maxdepth 1 -type f \( -name '*.go' -o -name '*.s' \) -delete
  cp "$r2"/*.go "$vend"/
  cp "$r2"/*.s "$vend"/ 2>/dev/null || true
  echo 'bkops: reflect2 1.0.2' >"$vend/BKOPS"
fi

log "building kube-apiserver and kubectl (several minutes on 2 cores)"
cd "$gopath/src/k8s.io/kubernetes"
# GOPATH mode (GO111MODULE=off) builds from the vendored tree; a -mod flag inherited through
# GOFLAGS has no place there, so clear it.
export GOPATH="$gopath" GO111MODULE=off CGO_ENABLED=0 GOCACHE="$work/.gocache"
unset GOFLAGS
make WHAT="cmd/kube-apiserver cmd/kubectl" KUBE_VERBOSE=0 >"$work/build.log" 2>&1 \
  || { tail -n 40 "$work/build.log" >&2; die "kube-apiserver build failed (log: $work/build.log)"; }

out=$(find "$work/src/_output" -type f -name kube-apiserver -path '*bin*' | head -n1)
kctl=$(find "$work/src/_output" -type f -name kubectl -path '*bin*' | head -n1)
[[ -x "$out" && -x "$kctl" ]] || die "build finished but produced no binaries"
etcd_bin=$(command -v etcd || true)
[[ -x "$etcd_bin" ]] || die "etcd not found after installing etcd-server"

tmp="$dest/bin.tmp.$$"
mkdir -p "$tmp"
cp "$out" "$kctl" "$tmp"/
cp "$etcd_bin" "$tmp/etcd"
rm -rf "$bin"
mv "$tmp" "$bin"
# The source tree and Go build cache are large; keep only the binaries.
rm -rf "$work"
log "done: $bin"
