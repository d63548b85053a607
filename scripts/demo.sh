#!/usr/bin/env bash
# Sets up, builds and runs `huskctl demo`: a real sandbox created,
# inspected, stopped and cleaned up, with no containerd.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
build_release
exec "$HUSK_BIN/huskctl" demo
