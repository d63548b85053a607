#!/usr/bin/env bash
# Fuzzes what husk reads from outside: the cargo-fuzz targets in fuzz/.
#
#   bash scripts/fuzz.sh                      # every target, 30 s each (CI)
#   bash scripts/fuzz.sh --seconds 600 oci_spec
#   bash scripts/fuzz.sh --runs 10000000      # every target, 10 M executions
#   bash scripts/fuzz.sh --asan ...           # with AddressSanitizer (slower)
#
# Each target first replays fuzz/regressions/<target>/ (every input that
# ever crashed it, kept), then fuzzes from its committed seeds and the
# corpus kept in .cache/fuzz/<target> (git-ignored, grows run to run).
# Prints one line per target: executions, rate, corpus size. A crash
# fails the run and leaves its input in .cache/fuzz/artifacts/<target>/;
# fix the bug and add the input to fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

seconds=30 runs="" sanitizer=none targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) seconds=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --asan) sanitizer=address; shift ;;
    -*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done

# The nightly toolchain (installed beside stable) and cargo-fuzz, kept in
# .cache so a later run does not build it again.
if ! cargo +nightly --version >/dev/null 2>&1; then
  rustup toolchain install nightly --profile minimal
fi
export PATH="$ROOT/.cache/cargo-fuzz/bin:$PATH"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo-fuzz" ]; then
    export PATH="$PATH:$HOME/.cargo/bin"
  else
    cargo install --quiet --locked --root "$ROOT/.cache/cargo-fuzz" cargo-fuzz
  fi
fi

cd fuzz
if [ "${#targets[@]}" -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -O -s "$sanitizer"

status=0
for t in "${targets[@]}"; do
  corpus="$ROOT/.cache/fuzz/$t" artifacts="$ROOT/.cache/fuzz/artifacts/$t/"
  mkdir -p "$corpus" "$artifacts" "regressions/$t"
  log=$(mktemp)
  # Every input that ever crashed the target, once each.
  if compgen -G "regressions/$t/*" >/dev/null; then
    if ! cargo +nightly fuzz run -O -s "$sanitizer" "$t" regressions/$t/* -- -runs=1 >"$log" 2>&1; then
      echo "$t: a regression input fails again:" >&2; tail -30 "$log" >&2; status=1; continue
    fi
  fi
  limit=(-max_total_time="$seconds")
  [ -n "$runs" ] && limit=(-runs="$runs")
  start=$(date +%s)
  if ! cargo +nightly fuzz run -O -s "$sanitizer" "$t" "$corpus" "seeds/$t" -- \
      "${limit[@]}" -artifact_prefix="$artifacts" -print_final_stats=1 >"$log" 2>&1; then
    echo "$t: CRASH (input in $artifacts)" >&2; tail -40 "$log" >&2; status=1; continue
  fi
  took=$(( $(date +%s) - start ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  printf '%-18s %12s execs  %8s/s  %5ss  corpus %s inputs\n' \
    "$t" "${execs:-?}" "${rate:-?}" "$took" "$(find "$corpus" -type f | wc -l)"
  rm -f "$log"
done
exit $status
