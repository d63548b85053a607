#!/usr/bin/env bash
# Runs every test tier: format and lints; unit tests; privileged
# integration tests against the real shim binary (as root); end-to-end
# tests through a private containerd 2.1 on the CRI path; and the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

echo "== format and lints"
rustup component list --installed 2>/dev/null | grep -q rustfmt && cargo fmt --all -- --check
rustup component list --installed 2>/dev/null | grep -q clippy && cargo clippy --all-targets --quiet -- -D warnings

echo "== static release build (the shim containerd launches)"
build_release

echo "== private containerd 2.1"
bash scripts/containerd-env.sh up
trap 'bash scripts/containerd-env.sh down' EXIT
set -a
eval "$(bash scripts/containerd-env.sh env)"
HUSK_PAUSE_BIN="$HUSK_BIN/husk-pause"
set +a

echo "== unit, privileged integration and end-to-end tests"
mkdir -p target
cargo test --workspace -- --nocapture 2>&1 | tee target/test.log
# A tier that skipped for lack of root or of containerd did not run: fail.
if grep -E "SKIPPED: (privileged|huskctl CLI test needs root|no private containerd|no cgroup v2|no tiny pause)" target/test.log; then
  echo "a test tier was skipped" >&2
  exit 1
fi

echo "== demo"
"$HUSK_BIN/huskctl" demo
