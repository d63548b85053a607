#!/usr/bin/env bash
# Density: pods held alive at once, husk beside containerd's Go shim.
#
#   bash scripts/density.sh                # 1,000 sandboxes direct, then 300 CRI pods per handler
#   bash scripts/density.sh --direct 200 --cri 50
#
# Direct (no containerd): `huskctl load`, N sandboxes alive at once.
# Through CRI: `density-cri`, N pods with a container each on handler husk,
# then on runc (Go shim + pause). Both print time per pod while loading,
# memory per pod at full load, teardown time, and fail on any leak.
set -euo pipefail
cd "$(dirname "$0")/.."
direct=1000 cri=300 inflight=4
while [ $# -gt 0 ]; do
  case "$1" in
    --direct) direct=$2; shift 2 ;;
    --cri) cri=$2; shift 2 ;;
    -c) inflight=$2; shift 2 ;;
    *) echo "density.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
source scripts/setup.sh
build_release
if [ "$direct" -gt 0 ]; then
  echo "== $direct sandboxes alive at once, straight through the shim"
  "$HUSK_BIN/huskctl" --namespace density load -n "$direct" -c "$inflight"
fi
if [ "$cri" -gt 0 ]; then
  use_private_containerd
  cargo build --release --quiet -p husk-e2e --bin density-cri
  echo "== $cri pods with a container each, alive at once, through containerd's CRI"
  target/release/density-cri -n "$cri" -c "$inflight"
fi
