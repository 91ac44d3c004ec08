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
#   scripts/fuzz.sh --parsers [SECONDS]
#
# --parsers runs the libFuzzer targets on the file readers instead
# (tests/parser_fuzz: main file, policy files, publish specs), each for
# SECONDS (default 300), from the seed corpus plus what earlier runs found
# (kept in /tmp/moat-parser-fuzz/TARGET); a crash, sanitizer report, hang
# or broken invariant leaves its input there and exits 1.
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
parsers=
while [ $# -gt 0 ]; do
  case $1 in
    --parsers)
      parsers=300
      if [[ ${2:-} =~ ^[0-9]+$ ]]; then parsers=$2; shift; fi
      shift ;;
    --packets) packets=$2; shift 2 ;;
    --seed) seed=$2; shift 2 ;;
    --no-random) random=; shift ;;
    *) args+=("$1"); shift ;;
  esac
done

need_root
install_missing

if [ -n "$parsers" ]; then
  log "building the parser fuzzers in $MOAT_BUILD"
  cmake -S "$MOAT_ROOT" -B "$MOAT_BUILD" -Wno-dev >/dev/null || exit 1
  targets=(config policy publish)
  cmake --build "$MOAT_BUILD" -j"${MOAT_JOBS:-$(nproc)}" \
    $(printf -- '--target moat_fuzz_%s ' "${targets[@]}") 2>&1 | grep -E 'error|Error' || true
  failed=0
  for t in "${targets[@]}"; do
    bin=$MOAT_BUILD/tests/parser_fuzz/moat_fuzz_$t
    [ -x "$bin" ] || { echo "build failed: $bin missing" >&2; exit 1; }
    work=/tmp/moat-parser-fuzz/$t
    mkdir -p "$work/corpus"
    log "$t: $parsers s (corpus and findings in $work)"
    "$bin" -max_total_time="$parsers" -max_len=65536 -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$work/" -print_final_stats=1 \
      "$work/corpus" "$MOAT_ROOT/tests/parser_fuzz/corpus/$t" 2>"$work/log.txt"
    rc=$?
    grep -E '^stat::number_of_executed_units|^stat::peak_rss_mb' "$work/log.txt" | sed 's/^/  /'
    if [ $rc -ne 0 ]; then
      failed=1
      echo "  FOUND (exit $rc): $(grep -m1 -E 'ERROR|invariant broken|SUMMARY' "$work/log.txt")"
      echo "  input: $(grep -o "Test unit written to .*" "$work/log.txt" | head -1)"
    else
      echo "  no failure"
    fi
  done
  exit $failed
fi
log "building moat_fuzz in $MOAT_BUILD"
cmake -S "$MOAT_ROOT" -B "$MOAT_BUILD" -Wno-dev >/dev/null || exit 1
cmake --build "$MOAT_BUILD" -j"${MOAT_JOBS:-$(nproc)}" --target moat_fuzz 2>&1 |
  grep -E 'error|Error' || true
fuzz=$MOAT_BUILD/tests/fuzz/moat_fuzz
[ -x "$fuzz" ] || { echo "build failed: $fuzz missing" >&2; exit 1; }

log "$packets packets, seed $seed ($fuzz; replay commands below name it moat_fuzz)"
"$fuzz" --packets "$packets" --seed "$seed" $random "${args[@]}"
