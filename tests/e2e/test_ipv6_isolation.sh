#!/usr/bin/env bash
# IPv6 between containers in a dual-stack lab (issue 16): the networks of
# test_icc_internal_spoof again, each with an IPv6 subnet beside its IPv4
# one. Isolation, icc: false and internal: true hold over IPv6 as over
# IPv4; a container sends only from its own addresses; link-local peers are
# the host (always) or the network's containers (icc). What moat does not
# carry over IPv6 yet (the world, published ports) stays closed.
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

echo "what IPv6 does not carry yet stays closed"
# The host's uplink has no IPv6 and masquerade is IPv4 only: an address
# beyond every network is the world, dropped at the container's veth.
must_drop "f1 -> an IPv6 address in the world" "$L" f1 icmp 2001:db8::1
n=$(drops "$L" ipv6-not-enabled); check "ipv6-not-enabled drops counted ($n)" [ "$n" -gt 0 ]
finish
