#!/usr/bin/env bash
# Pods through containerd's CRI, husk vs containerd's Go shim + pause, in
# one run: builds the static shim, brings up the private containerd, runs
# bench-pods with the given arguments (default -n 20 --pss-pods 10), and
# stops containerd again if this script started it.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_release
use_private_containerd
cargo build --release --quiet -p husk-e2e --bin bench-pods
if [ "$#" -eq 0 ]; then set -- -n 20 --pss-pods 10; fi
target/release/bench-pods "$@"
