#!/usr/bin/env bash
# Copy the generated CRDs (crds/) into the Helm chart (charts/bkops/crds/), which Helm installs
# on first install. tests/chart.rs fails when the two differ.
#
# Usage: hack/sync-chart-crds.sh   (after `cargo run -- crds --out-dir crds`)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
rm -f "$root"/charts/bkops/crds/*.yaml
cp "$root"/crds/*.yaml "$root"/charts/bkops/crds/
echo "copied $(ls "$root"/crds/*.yaml | wc -l) CRDs into charts/bkops/crds/"
