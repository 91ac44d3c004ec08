#!/usr/bin/env bash
# demo.sh [FILE...] - build moat, bring up a lab for each file (default: the
# three seed scenarios in policies/), probe every pair of containers on their
# ports over TCP, UDP and ICMP, print expected vs observed reachability and
# the per-container counters kept by the eBPF programs, then tear it all down.
set -uo pipefail
source "$(dirname "$0")/common.sh"
prepare

files=("$@")
[ ${#files[@]} -eq 0 ] && files=("$MOAT_ROOT/policies/segmentation.json" \
                                  "$MOAT_ROOT/policies/multi-network.json" \
                                  "$MOAT_ROOT/policies/invoice-app.json")
lab="demo$$"
cleanup() { "$MOAT_BIN" lab down --name "$lab" >/dev/null 2>&1; restore_bpffs; }
trap cleanup EXIT

status=0
for f in "${files[@]}"; do
  log "lab for $(basename "$f")"
  "$MOAT_BIN" lab up "$f" --name "$lab" || exit 1
  echo
  "$MOAT_BIN" lab probe --lab "$lab" || status=1
  echo
  log "counters kept in the kernel (moat lab status)"
  "$MOAT_BIN" lab status --lab "$lab" | sed -n '/^CONTAINER/,$p'
  echo
  ipt=$(ip netns exec "moat-$lab-host" iptables-save 2>/dev/null | grep -c '^-A' || true)
  nft=$(ip netns exec "moat-$lab-host" nft list ruleset 2>/dev/null | grep -c 'rule\|chain' || true)
  echo "iptables rules in the lab host: ${ipt:-0}, nftables chains/rules: ${nft:-0}"
  "$MOAT_BIN" lab down --name "$lab"
done
left=$(ip netns list | grep -c "moat-$lab-" || true)
echo "namespaces left behind: $left"
exit $status
