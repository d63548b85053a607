#!/usr/bin/env bash
# Kubernetes' CRI validation suite (../shared/critest) through the private
# containerd of containerd-env.sh, for handler runc (the reference: Go shim
# + pause container) and handler husk, in one run. Fails unless husk
# passes every spec runc passes, but for the specs containerd 2.1.9 itself
# keeps from a sandboxer = 'shim' handler (listed below with their reason),
# and unless husk fails nothing.
#
#   scripts/critest.sh [OUT_DIR]     (containerd-env.sh must be up)
set -euo pipefail
cd "$(dirname "$0")/.."
CRITEST_DIR=${CRITEST_DIR:-../shared/critest}
OUT=${1:-target/critest}
[ -x "$CRITEST_DIR/run.sh" ] || { echo "critest: no $CRITEST_DIR/run.sh" >&2; exit 1; }
eval "$(bash scripts/containerd-env.sh env)"
rm -rf "$OUT" && mkdir -p "$OUT"
# The suite's image cache lives with the project's other downloads. The
# subnet is the CNI range of containerd-env.sh (a /16): the host's route to
# pods must cover every address IPAM hands out, also after density runs.
CR=("$CRITEST_DIR/run.sh" --endpoint "unix://$HUSK_E2E_CRI_SOCK"
    --ctr "$HUSK_E2E_CTR --address $HUSK_E2E_CRI_SOCK"
    --bridge husk-e2e0 --subnet 10.222.0.0/16 --cache "$PWD/.cache/critest")
status=0
for h in runc husk; do
  echo "== critest, handler $h"
  "${CR[@]}" --handler "$h" --out "$OUT/$h" >"$OUT/$h.log" 2>&1 || status=1
  grep -E "^failed" "$OUT/$h.log" | cut -c1-240 || true
  grep -E "^[0-9]+ passed, [0-9]+ failed" "$OUT/$h.log" | sed "s/^/$h: /"
done
parity=0
python3 - "$OUT/runc/summary.txt" "$OUT/husk/summary.txt" <<'PY' || parity=1
import sys

# Specs containerd 2.1.9 keeps from any sandboxer = 'shim' handler; the
# shim side of each is tested directly (see docs/KUBERNETES.md).
CONTAINERD = {
    "Security Context NamespaceOption runtime should support HostNetwork is true":
        "hostNetwork shim sandboxes crash containerd 2.1.9 (containerd #12983, fixed by PR #13131)",
    "Streaming runtime should support streaming interfaces runtime should support portforward in host network":
        "hostNetwork shim sandboxes crash containerd 2.1.9 (containerd #12983, fixed by PR #13131)",
}
RRO = ("CRI 2.1.9 introspects features of io.containerd.runc.v2 handlers only "
       "(containerd PR #13504, 2.4.0-beta); husk's -info reports its own runtime's rro")
def read(p):
    out = {}
    for line in open(p):
        state, _, name = line.rstrip("\n").partition(" ")
        name = name.strip().split("  | ")[0].strip()
        if state in ("passed", "failed", "skipped"):
            out[name] = state
    return out
runc, husk = read(sys.argv[1]), read(sys.argv[2])
missing, excused = [], []
for name, st in sorted(runc.items()):
    if st != "passed" or husk.get(name) == "passed":
        continue
    why = CONTAINERD.get(name) or (RRO if name.startswith("Container Mount Readonly") and husk.get(name) == "skipped" else None)
    (excused if why else missing).append((name, husk.get(name, "absent"), why))
failed = [n for n, s in husk.items() if s == "failed"]
count = lambda d, s: sum(1 for v in d.values() if v == s)
print(f"critest: runc {count(runc,'passed')} passed, {count(runc,'failed')} failed; "
      f"husk {count(husk,'passed')} passed, {count(husk,'failed')} failed, {count(husk,'skipped')} skipped")
for n, st, why in excused:
    print(f"critest: SKIPPED on husk ({why}): {n}")
for n, st, _ in missing:
    print(f"critest: husk {st}, runc passed: {n}")
sys.exit(1 if missing or failed else 0)
PY
[ "$parity" -eq 0 ] && [ "$status" -eq 0 ] && echo "critest: husk passes every spec runc passes" && exit 0
exit 1
