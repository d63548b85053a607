#!/usr/bin/env bash
# Pods through containerd's CRI, husk vs containerd's Go shim + pause, in
# one run: builds the static shim, brings up the private containerd, runs
# bench-pods with the given arguments (default -n 20 --pss-pods 10), and
# stops containerd again if this script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_release
started=0
# (Not `tee /dev/stderr`: with stderr on a file, that reopens and
# truncates the file, and a CI log loses all it had.)
up_out=$(bash scripts/containerd-env.sh up 2>&1) || { echo "$up_out" >&2; exit 1; }
echo "$up_out" >&2
if ! grep -q "already running" <<<"$up_out"; then started=1; fi
[ "$started" = 1 ] && trap 'bash scripts/containerd-env.sh down' EXIT
set -a
eval "$(bash scripts/containerd-env.sh env)"
set +a
cargo build --release --quiet -p husk-e2e --bin bench-pods
if [ "$#" -eq 0 ]; then set -- -n 20 --pss-pods 10; fi
target/release/bench-pods "$@"
