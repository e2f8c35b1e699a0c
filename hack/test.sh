#!/usr/bin/env bash
# The test command: every test, against a real kube-apiserver + etcd (`bkops::local`).
#
# Usage: hack/test.sh [cargo test arguments...]
#   With no arguments: `cargo test --all-targets`, then the doc tests.
#   With arguments they replace `--all-targets`, e.g. `hack/test.sh --test control_plane`.
#
# 1. Provisions the control plane once, before any test binary starts, so test binaries never race
#    to do it (needs root the first time; skipped when KUBEBUILDER_ASSETS is set).
# 2. Runs `cargo test`, which runs one test binary at a time, each starting one control plane
#    (tests/support) shared by its tests, which run on RUST_TEST_THREADS threads (default: cores).
#    nextest is not used: it runs each test in its own process, so every test would start its own
#    kube-apiserver (~4 s and several hundred MB each).
# 3. Prints a summary: totals over all binaries and the failed tests.
#
# Environment: BKOPS_TEST_TIMEOUT (default 45m) bounds the whole run so a hung test fails CI instead
# of using its whole budget.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [[ -z "${KUBEBUILDER_ASSETS:-}" ]]; then
  bash hack/provision-control-plane.sh
fi
bash hack/provision-prometheus.sh  # promtool and prometheus for tests/prometheus.rs
bash hack/provision-helm.sh # Helm's engine for tests/chart.rs and tests/rbac.rs
# Provisioned above: a test that still finds nothing should fail at once, not build for 15 minutes.
export BKOPS_NO_PROVISION=1

log=$(mktemp "${TMPDIR:-/tmp}/bkops-test.XXXXXX")
trap 'rm -f "$log"' EXIT

run() {
  printf '+ %s\n' "$*"
  set +e
  timeout --signal=TERM --kill-after=30s "${BKOPS_TEST_TIMEOUT:-45m}" "$@" 2>&1 | tee -a "$log"
  local status=${PIPESTATUS[0]}
  set -e
  if [[ $status == 124 ]]; then
    echo "timed out after ${BKOPS_TEST_TIMEOUT:-45m}" | tee -a "$log"
  fi
  return "$status"
}

status=0
if [[ $# -gt 0 ]]; then
  run cargo test "$@" || status=$?
else
  run cargo test --all-targets --no-fail-fast || status=$?
  run cargo test --doc --no-fail-fast || status=$?
fi

# `test result: ok. 6 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 9.92s`
summary=$(awk '
  /^test result:/ {
    for (i = 1; i <= NF; i++) {
      if ($(i) ~ /^(passed|failed|ignored);?$/) { sub(";", "", $(i)); total[$(i)] += $(i - 1) }
    }
    binaries++
  }
  END { printf "%d passed, %d failed, %d ignored in %d test binaries", total["passed"], total["failed"], total["ignored"], binaries }
' "$log")
echo
echo "==== test summary: $summary ===="
if grep -qE '^test .* \.\.\. FAILED$' "$log"; then
  echo "failed tests:"
  grep -E '^test .* \.\.\. FAILED$' "$log" | sed -e 's/^test /  /' -e 's/ \.\.\. FAILED$//'
fi
if [[ $status != 0 ]]; then
  echo "cargo test exited with status $status"
fi
exit "$status"
