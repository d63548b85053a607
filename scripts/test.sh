#!/usr/bin/env bash
# Runs every test tier: format and lints, unit tests, privileged
# integration tests against the real shim binary (as root), and the
# demo as a smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== format and lints"
rustup component list --installed 2>/dev/null | grep -q rustfmt && cargo fmt --all -- --check
rustup component list --installed 2>/dev/null | grep -q clippy && cargo clippy --all-targets --quiet -- -D warnings

echo "== unit and privileged integration tests"
mkdir -p target
cargo test --workspace 2>&1 | tee target/test.log
grep -q "SKIPPED" target/test.log && { echo "privileged tests were skipped" >&2; exit 1; }

echo "== demo (static release build)"
build_release
"$HUSK_BIN/huskctl" demo
