#!/usr/bin/env bash
# Provision Helm's own engine for the chart tests, once: a Python venv with `helm-python-sdk`,
# which binds Helm v4's Go SDK (lint, values-schema validation, render) through a shared library
# in its wheel. No helm binary, no Go toolchain, no network at test time.
#
# Usage: hack/provision-helm.sh [CACHE_DIR]
#   CACHE_DIR defaults to $BKOPS_CACHE_DIR or ~/.cache/bkops; the venv lands in CACHE_DIR/helm-venv,
#   where tests/support/helm.rs and hack/helm.py look for it.
# Idempotent: exits at once when the venv already holds the pinned version. Needs Python >= 3.10
# with the venv module; on Debian without it, installs python3-venv (needs root then).
set -euo pipefail

# The pinned release (it bundles Helm SDK v4.2.3). Change it here only: the check below and the
# install both read it.
version=0.2.2

cache="${1:-${BKOPS_CACHE_DIR:-$HOME/.cache/bkops}}"
venv="$cache/helm-venv"
provisioned() {
  [[ -x "$venv/bin/python" ]] &&
    "$venv/bin/python" -c "import helm_python, sys; sys.exit(helm_python.__version__ != '$version')" 2>/dev/null
}
if provisioned; then
  echo "helm-python-sdk $version already provisioned in $venv"
  exit 0
fi

log() { printf '[provision-helm] %s\n' "$*" >&2; }
die() { printf '[provision-helm] error: %s\n' "$*" >&2; exit 1; }

mkdir -p "$cache"
if command -v flock >/dev/null; then
  exec 9>>"$cache/provision-helm.lock"
  if ! flock -n 9; then
    log "another process is provisioning $venv; waiting"
    flock 9
  fi
  if provisioned; then
    echo "helm-python-sdk $version provisioned in $venv (by another process)"
    exit 0
  fi
fi

python=$(command -v python3 || true)
[[ -n "$python" ]] || die "python3 not found (helm-python-sdk needs Python >= 3.10)"
"$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' ||
  die "$python is older than 3.10 (helm-python-sdk needs Python >= 3.10)"
if ! "$python" -c 'import venv, ensurepip' 2>/dev/null; then
  # Debian splits the venv module (and its pip bootstrap) into python3-venv.
  command -v apt-get >/dev/null || die "$python has no venv module and there is no apt-get to install python3-venv"
  [[ $(id -u) == 0 ]] || die "$python has no venv module: run as root to apt-get install python3-venv"
  log "installing python3-venv"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
fi

log "creating $venv with helm-python-sdk $version"
# A half-made venv from an interrupted run fails the check above: start it afresh.
rm -rf "$venv"
"$python" -m venv "$venv"
# Wheels only: the sdist would build the native library from Go sources.
"$venv/bin/python" -m pip install -q --disable-pip-version-check --only-binary=:all: \
  "helm-python-sdk==$version"
provisioned || die "helm-python-sdk $version does not import from $venv"
log "done: $venv ($("$venv/bin/python" -c 'import helm_python as h; print("Helm SDK", h.helm_sdk_version())'))"
