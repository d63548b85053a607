#!/usr/bin/env bash
# Churn and soak with a leak census after each phase; fails on any leak.
#
#   sudo bash scripts/soak.sh [ARGS]         straight through the shim (no containerd):
#                                            `huskctl churn ARGS` (default: the full figures
#                                            of docs/RELIABILITY.md)
#   sudo bash scripts/soak.sh --cri [ARGS]   through the private containerd's CRI, handler
#                                            husk: `soak-cri ARGS` (default: full figures)
#
# CI's short runs:
#   bash scripts/soak.sh -n 300 --every 100 --container-cycles 30 --execs 100
#   bash scripts/soak.sh --cri --execs 200 --container-cycles 50 --pods 50
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_release
if [ "${1:-}" = "--cri" ]; then
  shift
  use_private_containerd
  cargo build --release --quiet -p husk-e2e --bin soak-cri
  target/release/soak-cri "$@"
  exit
fi
if [ "$#" -eq 0 ]; then set -- -n 10000 -c 4 --every 1000 --container-cycles 500 --execs 2000; fi
"$HUSK_BIN/huskctl" --json --namespace soak churn "$@"
