#!/usr/bin/env bash
# Runs every test (unit, property and end-to-end) and ends with one total line,
# "N passed, N failed", summed over all the test binaries cargo ran.
set -uo pipefail
cd "$(dirname "$0")/.."

log=$(mktemp)
trap 'rm -f "$log"' EXIT

cargo build -p kate || exit 1
# The kubelet and runtime tests run containers from this image.
[ -f target/images/busybox.tar ] || ./scripts/build-busybox-image.sh || exit 1
cargo test --workspace --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}

echo
awk '/^test result:/ { for (i = 1; i < NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
