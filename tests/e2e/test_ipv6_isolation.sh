#!/usr/bin/env bash
# IPv6 between containers in a dual-stack lab (issue 16): the networks of
# test_icc_internal_spoof again, each with an IPv6 subnet beside its IPv4
# one. Isolation, icc: false and internal: true hold over IPv6 as over
# IPv4; a container sends only from its own addresses; link-local peers are
# the host (always) or the network's containers (icc). The world: NAT66
# behind the uplink's IPv6 address (routed for masquerade: false), published
# ports over IPv6 from the outside, nothing else in. An IPv6 flow that
# simply stops is ended by `moat ct gc` with its flow_end event.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/dual-stack.json
L=$(unique_lab v6iso)
lab_up "$L" "$F"
ex() { "$MOAT" lab exec --lab "$L" "$@"; }
# The lab's IPAM: the gateway is ::1, containers ::2, ::3 in file order.
F1=fd6d:6f61:81::2 F2=fd6d:6f61:81::3 FGW=fd6d:6f61:81::1
Q1=fd6d:6f61:82::2 Q2=fd6d:6f61:82::3 QGW=fd6d:6f61:82::1
V1=fd6d:6f61:83::2 V2=fd6d:6f61:83::3 VGW=fd6d:6f61:83::1
# A container's (or the host bridge's) link-local address on DEV.
link_local() { "$MOAT" lab exec --lab "$L" "$1" -- ip -6 -o addr show dev "$2" scope link |
  sed -n 's/.*inet6 \(fe80::[0-9a-f:]*\)\/64.*/\1/p' | head -1; }

echo "the lab is dual-stack"
check "f1 has its IPv6 address" bash -c "'$MOAT' lab exec --lab '$L' f1 -- ip -6 -o addr show dev eth0 | grep -q ' $F1/64 '"
check "f1 has an IPv6 default route via its gateway" bash -c "'$MOAT' lab exec --lab '$L' f1 -- ip -6 route show default | grep -q 'via $FGW'"

# A ping that simply stops, masqueraded (NAT66, so tracked in ct6): by the
# end of the test its ICMP timeout has passed and only `moat ct gc` (no
# reader runs, and no packet meets it again) ends it.
W6=2001:db8:2::53
ex f1 -- ping -6 -c1 -W3 $W6 >/dev/null 2>&1
check "a ping from f1 to the IPv6 internet server is answered" [ $? -eq 0 ]
PING6_AT=$SECONDS

echo "one network talks over IPv6"
must_pass "f1 -> f2 tcp" "$L" f1 tcp $F2 80 f2
must_pass "f1 -> f2 udp" "$L" f1 udp $F2 80 f2
must_pass "f2 -> f1 icmpv6" "$L" f2 icmp $F1
must_pass "f1 -> its gateway icmpv6" "$L" f1 icmp $FGW
must_pass "host -> f1 tcp" "$L" host tcp $F1 80 f1
must_pass "f1 -> f2 tcp over IPv4 still" "$L" f1 tcp 10.81.0.3 80 f2

echo "networks are isolated over IPv6"
must_drop "f1 -> q1 tcp" "$L" f1 tcp $Q1 80
must_drop "q1 -> f1 icmpv6" "$L" q1 icmp $F1
must_drop "f1 -> v1 tcp" "$L" f1 tcp $V1 80
n=$(drops "$L" network-isolation); check "network-isolation drops counted ($n)" [ "$n" -gt 0 ]
# The drop events name both ends by their IPv6 addresses.
"$MOAT" flows --lab "$L" --json >"$TMP/flows.json" 2>"$TMP/flows.err" || cat "$TMP/flows.err"
n=$(python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if (e.get("reason") == "network-isolation" and e.get("family") == "ipv6"
            and e["src"].get("container") == "f1" and e["src"]["ip"] == sys.argv[2]
            and e["dst"].get("container") == "q1" and e["dst"]["ip"] == sys.argv[3]
            and e["dst"].get("port") == 80):
        n += 1
print(n)' "$TMP/flows.json" $F1 $Q1)
check "moat flows: f1 -> q1:80 over IPv6 dropped, both named ($n events)" [ "$n" -ge 1 ]
must_pass "f1 -> quiet's gateway (a host address)" "$L" f1 icmp $QGW

echo "icc: false over IPv6"
must_drop "q1 -> q2 tcp" "$L" q1 tcp $Q2 80
must_drop "q2 -> q1 icmpv6" "$L" q2 icmp $Q1
must_pass "q1 -> its gateway icmpv6" "$L" q1 icmp $QGW
must_pass "host -> q1 tcp" "$L" host tcp $Q1 80 q1
Q2LL=$(link_local q2 eth0)
check "q2 has a link-local address ($Q2LL)" [ -n "$Q2LL" ]
must_drop "q1 -> q2's link-local address" "$L" q1 icmp "$Q2LL%eth0"
QBR=$("$MOAT" lab exec --lab "$L" host -- ip -6 -o addr show to $QGW/128 | awk '{print $2}')
must_pass "host -> q2's link-local address (through $QBR)" "$L" host icmp "$Q2LL%$QBR"
n=$(drops "$L" icc-disabled); check "icc-disabled drops counted ($n)" [ "$n" -gt 0 ]
F2LL=$(link_local f2 eth0)
must_pass "f1 -> f2's link-local address (icc on)" "$L" f1 icmp "$F2LL%eth0"

echo "internal: true over IPv6"
# Routing alone would stop v1; give it the route a rogue container would add.
ex v1 -- ip -6 route add default via $VGW
must_pass "v1 -> v2 tcp" "$L" v1 tcp $V2 80 v2
must_pass "v1 -> its gateway icmpv6" "$L" v1 icmp $VGW
must_drop "v1 -> front's gateway" "$L" v1 icmp $FGW
must_drop "v1 -> f1" "$L" v1 tcp $F1 80
n=$(drops "$L" internal-network); check "internal-network drops counted ($n)" [ "$n" -gt 0 ]

echo "anti-spoofing over IPv6"
ex f1 -- ip -6 addr add $F2/128 dev eth0 nodad   # f2's address
check "f1 pinging as f2 is dropped" bash -c "! '$MOAT' lab exec --lab '$L' f1 -- ping -c1 -W1 -I $F2 $FGW >/dev/null"
ex f1 -- ip -6 addr add fd6d:6f61:81::99/128 dev eth0 nodad   # an unassigned address
check "f1 pinging from an unassigned address is dropped" bash -c "! '$MOAT' lab exec --lab '$L' f1 -- ping -c1 -W1 -I fd6d:6f61:81::99 $FGW >/dev/null"
n=$(drops "$L" spoofed-source); check "spoofed-source drops counted ($n)" [ "$n" -gt 0 ]
ex f1 -- ip -6 addr del $F2/128 dev eth0
ex f1 -- ip -6 addr del fd6d:6f61:81::99/128 dev eth0
must_pass "f1 still reaches f2 from its own address" "$L" f1 tcp $F2 80 f2

echo "the world over IPv6: masquerade (NAT66) behind the uplink's IPv6 address"
# The lab's uplink has 2001:db8:ff::1 (the outside ::2); the internet server
# [2001:db8:2::53]:81 answers with the address it sees.
W6=2001:db8:2::53 UP6=2001:db8:ff::1 D1=fd6d:6f61:85::2
# socat writes the address unabbreviated and bracketed: compared canonical.
seen() { echo probe | "$MOAT" lab exec --lab "$L" "$1" -- nc ${3:+-u} -w1 $W6 81 2>/dev/null |
  head -1 | python3 -c 'import ipaddress,sys; t=sys.stdin.read().strip().strip("[]"); print(ipaddress.ip_address(t) if t else "")' 2>/dev/null; }
# A routed network needs the world to route its prefix back to the uplink.
ex outside -- ip -6 route add fd6d:6f61::/32 via $UP6
must_pass "f1 -> the IPv6 internet icmpv6" "$L" f1 icmp $W6
for proto in tcp udp; do
  got=""; for i in 1 2 3; do got=$(seen f1 $proto ${proto/tcp/}); [ -n "$got" ] && break; done
  check "f1 -> [$W6]:81/$proto: the world sees the uplink's address ($got)" \
    bash -c "[[ '$got' == *'$UP6'* && '$got' != *'$F1'* ]]"
done
must_drop "v1 (internal) -> the IPv6 internet" "$L" v1 icmp $W6
got=""; for i in 1 2 3; do got=$(seen d1 tcp); [ -n "$got" ] && break; done
check "d1 (masquerade: false) -> [$W6]:81: routed, the world sees its own address ($got)" \
  bash -c "[[ '$got' == *'$D1'* ]]"

echo "published ports over IPv6 from the outside"
must_pass "outside -> [$UP6]:8080 tcp reaches f1" "$L" outside tcp $UP6 8080 f1
must_pass "outside -> [$UP6]:8080 udp reaches f1" "$L" outside udp $UP6 8080 f1
# The outside routes the container prefixes to the uplink (above): only moat
# stops what is not published.
must_drop "outside -> f1's address directly" "$L" outside tcp $F1 80
must_drop "outside -> d1's address directly (routed network)" "$L" outside tcp $D1 80
n=$("$MOAT" lab status --lab "$L" --json | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(u["counters"][k]["drops"].get("not-published",0) for u in d.get("uplinks",[]) for k in u["counters"]))')
check "not-published drops counted at the uplink ($n)" [ "${n:-0}" -gt 0 ]

echo "an attachment without an IPv6 address sends no IPv6 data"
# o1's network has no IPv6 subnet; its kernel still has a link-local address.
ex o1 -- ping -6 -c1 -W1 ff02::1%eth0 >/dev/null 2>&1 || true
n=$(drops "$L" ipv6-not-enabled); check "ipv6-not-enabled drops counted ($n)" [ "$n" -gt 0 ]

echo "moat ct gc ends stopped IPv6 flows"
ICMP_TIMEOUT=$(awk '$2 == "MOAT_CT_TIMEOUT_ICMP" { print $3 }' "$REPO/bpf/abi.h")
left=$(( ICMP_TIMEOUT + 2 - (SECONDS - PING6_AT) ))
[ "$left" -gt 0 ] && sleep "$left"
"$MOAT" flows --lab "$L" --json >/dev/null 2>&1   # drain what is queued
gc=$("$MOAT" ct gc --lab "$L" --json)
check "ct gc ended IPv6 flows, counted as such ($gc)" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); f=d["by_family"]
assert f["ipv6"] >= 1 and d["flows_ended"] == f["ipv4"] + f["ipv6"]' "$gc"
"$MOAT" flows --lab "$L" --json >"$TMP/ended6.json" 2>"$TMP/ended6.err" || cat "$TMP/ended6.err"
n=$(python3 -c '
import json, sys
n = 0
for line in open(sys.argv[1]):
    e = json.loads(line)
    if (e.get("type") == "flow_end" and e.get("family") == "ipv6"
            and e.get("protocol") == "icmpv6" and e["src"].get("ip") == sys.argv[2]
            and e["dst"].get("ip") == sys.argv[3]
            and e.get("packets") == 1 and e.get("reply_packets") == 1):
        n += 1
print(n)' "$TMP/ended6.json" $F1 $W6)
# The pings of the world section above may have expired by now as well.
check "moat flows: the stopped ping f1 -> $W6 ended, 1 packet each way ($n events)" [ "$n" -ge 1 ]
finish
