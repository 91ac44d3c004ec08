#!/usr/bin/env bash
# icc: false, internal: true, anti-spoofing, and IPv6 (neighbour discovery
# works, data is dropped rather than passed unchecked).
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/icc-internal.json
L=$(unique_lab icc)
UPLINK=198.18.0.1   # the lab host's address on the uplink: a host address outside every network
lab_up "$L" "$F"
ex() { "$MOAT" lab exec --lab "$L" "$@"; }

echo "icc: false"
must_drop "q1 -> q2 tcp" "$L" q1 tcp 10.77.0.3 80
must_drop "q1 -> q2 udp" "$L" q1 udp 10.77.0.3 80
must_drop "q2 -> q1 icmp" "$L" q2 icmp 10.77.0.2
must_pass "q1 -> its gateway icmp" "$L" q1 icmp 10.77.0.1
must_pass "host -> q1 tcp" "$L" host tcp 10.77.0.2 80 q1
n=$(drops "$L" icc-disabled); check "icc-disabled drops counted ($n)" [ "$n" -gt 0 ]

echo "internal: true"
check "v1 has no default route" bash -c "! '$MOAT' lab exec --lab '$L' v1 -- ip route | grep -q default"
# Routing alone would stop v1 now; give it the route a rogue container would
# add, so what stops it below is moat.
ex v1 -- ip route add default via 10.78.0.1
must_pass "v1 -> v2 tcp" "$L" v1 tcp 10.78.0.3 80 v2
must_pass "v1 -> its gateway icmp" "$L" v1 icmp 10.78.0.1
must_pass "o1 -> the host's uplink address (non-internal)" "$L" o1 icmp $UPLINK
must_drop "v1 -> the host's uplink address" "$L" v1 icmp $UPLINK
must_drop "v1 -> open's gateway" "$L" v1 icmp 10.79.0.1
must_drop "v1 -> o1" "$L" v1 tcp 10.79.0.2 80
must_drop "o1 -> v1" "$L" o1 tcp 10.78.0.2 80
n=$(drops "$L" internal-network); check "internal-network drops counted ($n)" [ "$n" -gt 0 ]

echo "anti-spoofing"
must_pass "o1 -> its gateway from its own address" "$L" o1 icmp 10.79.0.1
ex o1 -- ip addr add 10.79.0.3/32 dev eth0   # o2's address
check "o1 pinging as o2 is dropped" bash -c "! '$MOAT' lab exec --lab '$L' o1 -- ping -n -c1 -W1 -I 10.79.0.3 10.79.0.1 >/dev/null"
ex o1 -- ip addr add 10.79.0.99/32 dev eth0  # an unassigned address
check "o1 pinging from an unassigned address is dropped" bash -c "! '$MOAT' lab exec --lab '$L' o1 -- ping -n -c1 -W1 -I 10.79.0.99 10.79.0.1 >/dev/null"
n=$(drops "$L" spoofed-source); check "spoofed-source drops counted ($n)" [ "$n" -gt 0 ]
ex o1 -- ip addr del 10.79.0.3/32 dev eth0
ex o1 -- ip addr del 10.79.0.99/32 dev eth0
must_pass "o1 still reaches o2 from its own address" "$L" o1 tcp 10.79.0.3 80 o2

echo "IPv6"
ll() {  # link-local address of CONTAINER's eth0 once DAD is done (bounded wait)
  local i a
  for i in $(seq 50); do
    a=$(ex "$1" -- ip -6 -o addr show dev eth0 scope link | grep -v tentative | awk '{print $4}' | cut -d/ -f1)
    [ -n "$a" ] && { echo "$a"; return; }
    sleep 0.1
  done
}
LL2=$(ll o2)
check "o2 has a link-local address" [ -n "$LL2" ]
ex o1 -- ping -6 -n -c1 -W1 "$LL2%eth0" >/dev/null 2>&1
check "o1 -> o2 IPv6 echo is dropped" bash -c "! '$MOAT' lab exec --lab '$L' o1 -- ping -6 -n -c1 -W1 '$LL2%eth0' >/dev/null 2>&1"
check "neighbour discovery still resolves o2 from o1" \
  bash -c "'$MOAT' lab exec --lab '$L' o1 -- ip -6 neigh show dev eth0 | grep -F '$LL2 ' | grep -q lladdr"
n=$(drops "$L" ipv6-not-enabled); check "ipv6-not-enabled drops counted ($n)" [ "$n" -gt 0 ]

check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
down_and_finish "$L"
