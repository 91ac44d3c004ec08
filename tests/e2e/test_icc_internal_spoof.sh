#!/usr/bin/env bash
# icc: false, internal: true, anti-spoofing, 802.1Q tags (dropped, though
# the kernel hands them over in the skb's metadata), and IPv6 (neighbour discovery
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

echo "802.1Q"
# o1 sends 802.1Q-tagged UDP frames to o2 from its own MAC and address (a
# packet socket writes the tag into the frame). The kernel moves the tag
# into the skb's metadata before TC ingress, so the programs would see plain
# IPv4 unless they ask; o2's packet socket counts what arrives.
mac_of() { ex "$1" -- ip -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
cat >"$TMP/vlan.py" <<'PY'
import socket, struct, sys, time
MARK = b"moat-vlan-probe"
if sys.argv[1] == "count":
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.settimeout(0.2)
    open(sys.argv[3], "w").close()
    end, n = time.time() + float(sys.argv[2]), 0
    while time.time() < end:
        try:
            if MARK in s.recv(65535):
                n += 1
        except socket.timeout:
            pass
    print(n)
    sys.exit()
_, src_mac, dst_mac, src, dst = sys.argv[1:]
mac = lambda m: bytes(int(x, 16) for x in m.split(":"))
udp = struct.pack("!HHHH", 40000, 9, 8 + len(MARK), 0) + MARK
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
words = struct.unpack("!10H", ip)
c = sum(words)
while c >> 16: c = (c & 0xffff) + (c >> 16)
ip = ip[:10] + struct.pack("!H", ~c & 0xffff) + ip[12:]
frame = mac(dst_mac) + mac(src_mac) + struct.pack("!HHH", 0x8100, 5, 0x0800) + ip + udp
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(5):
    s.send(frame)
PY
O1_MAC=$(mac_of o1) O2_MAC=$(mac_of o2)
before=$(drops "$L" unsupported-protocol)
ex o2 -- python3 "$TMP/vlan.py" count 3 "$TMP/vlan.ready" >"$TMP/vlan.count" &
VPID=$!
for _ in $(seq 50); do [ -e "$TMP/vlan.ready" ] && break; sleep 0.1; done
ex o1 -- python3 "$TMP/vlan.py" send "$O1_MAC" "$O2_MAC" 10.79.0.2 10.79.0.3
wait "$VPID"
n=$(cat "$TMP/vlan.count")
check "o1's tagged frames to o2 do not arrive (arrived: ${n:-?})" [ "${n:-x}" = 0 ]
n=$(drops "$L" unsupported-protocol); check "... dropped as unsupported-protocol ($before -> $n)" [ "$n" -ge $((before + 5)) ]
must_pass "o1 still reaches o2 untagged" "$L" o1 tcp 10.79.0.3 80 o2

echo "IPv6"
LL2=$(link_local "$L" o2)
check "o2 has a link-local address" [ -n "$LL2" ]
ex o1 -- ping -6 -n -c1 -W1 "$LL2%eth0" >/dev/null 2>&1
check "o1 -> o2 IPv6 echo is dropped" bash -c "! '$MOAT' lab exec --lab '$L' o1 -- ping -6 -n -c1 -W1 '$LL2%eth0' >/dev/null 2>&1"
check "neighbour discovery still resolves o2 from o1" \
  bash -c "'$MOAT' lab exec --lab '$L' o1 -- ip -6 neigh show dev eth0 | grep -F '$LL2 ' | grep -q lladdr"
n=$(drops "$L" ipv6-not-enabled); check "ipv6-not-enabled drops counted ($n)" [ "$n" -gt 0 ]

check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
down_and_finish "$L"
