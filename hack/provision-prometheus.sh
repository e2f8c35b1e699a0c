#!/usr/bin/env bash
# Provision `promtool` and the `prometheus` server for tests/prometheus.rs, once.
#
# Source: Debian bookworm's `prometheus` package (2.42), which ships both binaries in /usr/bin.
# The tests start their own server on a free port with a temporary config and storage; they never
# use the package's service (which Debian starts on :9090 where services may start; containers with
# a policy-rc.d that forbids it keep it stopped).
#
# Usage: hack/provision-prometheus.sh
# Idempotent: exits at once when both binaries are on PATH. Needs root (apt-get) otherwise.
set -euo pipefail

provisioned() { command -v promtool >/dev/null && command -v prometheus >/dev/null; }
if provisioned; then
  echo "prometheus already provisioned: $(command -v prometheus), $(command -v promtool)"
  exit 0
fi

log() { printf '[provision-prometheus] %s\n' "$*" >&2; }
die() { printf '[provision-prometheus] error: %s\n' "$*" >&2; exit 1; }

command -v apt-get >/dev/null || die "apt-get not found: install Prometheus (promtool and prometheus on PATH) another way"
[[ $(id -u) == 0 ]] || die "must run as root to apt-get install prometheus; or put promtool and prometheus on PATH"

export DEBIAN_FRONTEND=noninteractive
log "apt-get update"
apt-get update -qq
log "apt-get install prometheus"
# No recommends: they pull in node-exporter, which the tests do not use.
apt-get install -y -qq --no-install-recommends prometheus >/dev/null

provisioned || die "prometheus was installed but promtool or prometheus is still not on PATH"
echo "prometheus provisioned: $(prometheus --version 2>&1 | head -n 1)"
