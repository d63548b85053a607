#!/usr/bin/env bash
# Builds the static release binaries and runs `huskctl bench` with the
# given arguments (default: 200 sandboxes, concurrency 4, 20 alive for PSS).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_release
if [ "$#" -eq 0 ]; then set -- -n 200 -c 4 --pss-pods 20; fi
exec "$HUSK_BIN/huskctl" bench "$@"
