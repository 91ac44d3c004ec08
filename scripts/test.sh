#!/usr/bin/env bash
# test.sh - install what is missing, build, run every test tier:
#   unit (no privileges) -> bpf (BPF_PROG_TEST_RUN) -> e2e (lab namespaces).
# Ends with one line "N passed, N failed" over all tiers; exit 0 only if all pass.
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"
prepare

passed=0 failed=0
tier() {
  local label=$1
  log "tier: $label"
  if (cd "$MOAT_BUILD" && ctest --output-on-failure -L "^$label\$"); then
    passed=$((passed + $(cd "$MOAT_BUILD" && ctest -N -L "^$label\$" | awk '/Total Tests:/ {print $3}')))
  else
    local total fails
    total=$(cd "$MOAT_BUILD" && ctest -N -L "^$label\$" | awk '/Total Tests:/ {print $3}')
    fails=$(grep -c . "$MOAT_BUILD/Testing/Temporary/LastTestsFailed.log" 2>/dev/null || echo "$total")
    failed=$((failed + fails)); passed=$((passed + total - fails))
    # A long tier's failure sits mid-log, where a shortened CI log cuts it
    # out: its lines are repeated at the very end.
    grep -E -A5 ': Failure$|^\[  FAILED  \] [A-Za-z0-9_/]+\.[A-Za-z0-9_/]+ \(|^  FAIL ' \
      "$MOAT_BUILD/Testing/Temporary/LastTest.log" 2>/dev/null | head -n 60 >>"$failure_lines"
  fi
}
failure_lines=$(mktemp)
trap 'rm -f "$failure_lines"; restore_bpffs' EXIT
tier unit
tier bpf
tier e2e
echo
echo "tiers unit, bpf, e2e (ctest tests; each e2e test holds many checks)"
if [ -s "$failure_lines" ]; then
  echo "what failed (repeated from above):"
  cat "$failure_lines"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
