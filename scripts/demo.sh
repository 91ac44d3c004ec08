#!/usr/bin/env bash
# demo.sh [FILE...] - build moat, bring up a lab for each file (default: the
# three seed scenarios in policies/), probe every pair of containers on their
# ports over TCP, UDP and ICMP and the published ports from outside, the host
# and other containers, print expected vs observed reachability and the
# per-container counters kept by the eBPF programs, then tear it all down.
# Without arguments, the three seeds again dual-stack, probed over IPv6 too,
# and at the end seed 000's segmentation policies.
set -uo pipefail
source "$(dirname "$0")/common.sh"
become_root "$@"
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
# The same three seeds dual-stack (tests/e2e/seeds-ipv6/: each seed with
# "ipv6": true on every network): `moat lab probe` probes both families; the
# IPv4 matrices above are only counted here, the IPv6 ones shown.
if [ $# -eq 0 ]; then
  for name in segmentation multi-network invoice-app; do
    log "lab for $name.json over IPv6 (tests/e2e/seeds-ipv6/$name.json)"
    "$MOAT_BIN" lab up "$MOAT_ROOT/tests/e2e/seeds-ipv6/$name.json" --name "$lab" >/dev/null || exit 1
    out=$("$MOAT_BIN" lab probe --lab "$lab")
    rc=$?
    if [ $rc -ne 0 ] || ! grep -q '^IPv6 ' <<<"$out"; then
      echo "$out"
      status=1
    else
      sed -n '/^IPv6 /q; s/^\([0-9]*\) probes, \([0-9]*\) as expected.*/\1 \2/p' <<<"$out" |
        awk '{n += $1; ok += $2} END {printf "IPv4: %d probes, %d as expected\n\n", n, ok}'
      sed -n '/^IPv6 /,$p' <<<"$out"
    fi
    echo
    "$MOAT_BIN" lab down --name "$lab"
  done
fi
# Seed 000's story with segmentation policies: only rechnung reaches datenbank
# (7000) and sicherheit (6000); the host and the outside reach only 5000.
if [ $# -eq 0 ]; then
  log "segmentation policies on the invoice app (policies/segmentation-policies.json)"
  "$MOAT_BIN" lab up "$MOAT_ROOT/policies/invoice-app.json" --name "$lab" >/dev/null || exit 1
  "$MOAT_BIN" lab apply --lab "$lab" "$MOAT_ROOT/policies/segmentation-policies.json" || status=1
  echo
  "$MOAT_BIN" lab probe --lab "$lab" || status=1
  echo
  "$MOAT_BIN" explain --lab "$lab" sicherheit datenbank 7000/tcp || status=1
  "$MOAT_BIN" explain --lab "$lab" rechnung datenbank 7000/tcp || status=1
  echo
  log "flows the kernel tracks (moat ct list)"
  "$MOAT_BIN" ct list --lab "$lab" | tail -n 4
  "$MOAT_BIN" lab down --name "$lab"
fi
left=$(ip netns list | grep -c "moat-$lab-" || true)
echo "namespaces left behind: $left"
exit $status
