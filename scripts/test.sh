#!/usr/bin/env bash
# test.sh - install what is missing, build, run every test tier:
#   unit (no privileges) -> bpf (BPF_PROG_TEST_RUN) -> e2e (lab namespaces).
# Ends with one line "N passed, N failed" over all tiers; exit 0 only if all pass.
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"
prepare
trap restore_bpffs EXIT

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
  fi
}
tier unit
tier bpf
tier e2e
echo
echo "tiers unit, bpf, e2e (ctest tests; each e2e test holds many checks)"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
