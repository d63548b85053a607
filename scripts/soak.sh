#!/usr/bin/env bash
# Churn and soak straight through the shim (no containerd), with a leak
# census after each phase; fails on any leak. Arguments go to
# `huskctl churn` (default: the full figures of docs/RELIABILITY.md).
#
#   sudo bash scripts/soak.sh                       # 10,000 sandbox cycles, 500 container cycles, 2,000 execs
#   sudo bash scripts/soak.sh -n 300 --every 100 --container-cycles 30 --execs 100   # CI's short run
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_release
if [ "$#" -eq 0 ]; then set -- -n 10000 -c 4 --every 1000 --container-cycles 500 --execs 2000; fi
"$HUSK_BIN/huskctl" --json --namespace soak churn "$@"
