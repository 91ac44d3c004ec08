#!/usr/bin/env bash
# fuzz.sh - the long run of the differential packet fuzzer (tests/fuzz):
# builds moat_fuzz if needed, then feeds N frames (default 1,000,000) through
# the real TC programs and through the independent model, over every fixed
# configuration and random ones. Prints the packet count, both verdict mixes,
# the disagreements by kind and the first ones as reproducible cases (seed,
# case, frames in hex, config, replay commands; case files in --out, default
# /tmp/moat-fuzz). Exit 1 when the kernel passed a frame the model drops.
#
#   scripts/fuzz.sh [--packets N] [--seed S] [--json] [moat_fuzz options...]
#
# --seed defaults to a new one each run (printed); --json prints moat_fuzz's
# machine-readable summary instead of the text. Other options go to moat_fuzz
# as they are (see `moat_fuzz --help`: --config NAME, --show N, --focus TEXT,
# --cases-per-config N, --no-random for the fixed configurations only).
# Everything runs in a network namespace of moat_fuzz's own.
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"

packets=1000000 seed=$(date +%s) random=--random-configs
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --packets) packets=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-random) random=; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

need_root
install_missing
log "building moat_fuzz in $MOAT_BUILD"
cmake -S "$MOAT_ROOT" -B "$MOAT_BUILD" -Wno-dev >/dev/null || exit 1
cmake --build "$MOAT_BUILD" -j"${MOAT_JOBS:-$(nproc)}" --target moat_fuzz 2>&1 |
  grep -E 'error|Error' || true
fuzz=$MOAT_BUILD/tests/fuzz/moat_fuzz
[ -x "$fuzz" ] || { echo "build failed: $fuzz missing" >&2; exit 1; }

log "$packets packets, seed $seed ($fuzz; replay commands below name it moat_fuzz)"
"$fuzz" --packets "$packets" --seed "$seed" $random "${args[@]}"
