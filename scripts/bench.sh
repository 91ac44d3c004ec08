#!/usr/bin/env bash
# bench.sh - moat against no filtering, Docker-style iptables and nftables,
# in one run, on a lab of namespaces of its own (bench/bench.py says what
# each contender enforces and how each scenario is measured).
#
#   scripts/bench.sh            full run: 10 and 10,000 policy rules, 9 rounds (~45 min,
#                               and about 25 more for the memory of a lab of 4,000 containers)
#   scripts/bench.sh --quick    tiny sizes, two rounds: checks the suite works
#   scripts/bench.sh --out DIR  where results go (default bench/results)
#   scripts/bench.sh --reps N   rounds per figure
#   scripts/bench.sh --endpoints LIST  endpoint counts for the memory figure (default
#                               100,4000; "" for none; not with --fast-path)
#   scripts/bench.sh --fast-path  only c1 -> c2 on one network: no filtering, moat with
#                               its fast path off and on (bench/fastpath.py; ~10 min)
#   scripts/bench.sh --masquerade  only c1 -> the world: no translation, iptables
#                               MASQUERADE, moat with its routed fast path off and on
#                               (bench/masquerade.py; ~5 min)
#
# Writes DIR/<date>-<host>.json (every sample, medians, spreads, ratios with
# 95% bootstrap intervals and verdicts, CPU cost per request and per GB, the
# enforcement checks), .md (the tables) and .png (ratios to the baseline).
# Exit 0 only when every contender passed its enforcement checks. Not a
# test: CI runs only --quick, through tests/e2e/test_bench_quick.sh.
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"

mode=full out="$MOAT_ROOT/bench/results" reps=() eps=() fast=0 masq=0
while [ $# -gt 0 ]; do
  case $1 in
    --quick) mode=quick ;;
    --full) mode=full ;;
    --fast-path) fast=1 ;;
    --masquerade) masq=1 ;;
    --out) out=${2:?--out needs a directory}; shift ;;
    --reps) reps=(--reps "${2:?--reps needs a number}"); shift ;;
    --endpoints) eps=(--endpoints "${2?--endpoints needs a list}"); shift ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

prepare
trap restore_bpffs EXIT
if [ "$masq" = 1 ]; then
  python3 "$MOAT_ROOT/bench/masquerade.py" --moat "$MOAT_BIN" --out "$out" "${reps[@]}"
  exit $?
fi
if [ "$fast" = 1 ]; then
  python3 "$MOAT_ROOT/bench/fastpath.py" --moat "$MOAT_BIN" --out "$out" "${reps[@]}"
  exit $?
fi
python3 "$MOAT_ROOT/bench/bench.py" --moat "$MOAT_BIN" \
  --kernel-bench "$MOAT_BUILD/bench/moat_kernel_bench" --mode "$mode" --out "$out" "${reps[@]}" \
  "${eps[@]}"
