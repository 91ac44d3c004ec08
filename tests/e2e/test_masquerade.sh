#!/usr/bin/env bash
# Masquerade: containers reach the internet server (198.19.0.1, in the
# outside namespace, which answers with the client address it sees) with the
# lab host's uplink address as source; `"masquerade": false` sends no
# masqueraded traffic; an internal network reaches nothing outside. Traffic
# inside a network and to the host keeps its real source.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/masquerade.json
L=$(unique_lab masq)
UP=198.18.0.1
NET=198.19.0.1
M2=$(ip_of "$F" m2 natted)
M1=$(ip_of "$F" m1 natted)
GN=$(gateway_of "$F" natted)
GV=$(gateway_of "$F" vault)
P1=$(ip_of "$F" p1 plain)
PNET=$(subnet_of "$F" plain)

lab_up "$L" "$F"
must_pass "the host itself reaches the internet server (sees $UP)" "$L" host tcp $NET 80 $UP
for c in m1 m2; do
  must_pass "$c -> $NET:80/tcp, the outside sees $UP" "$L" $c tcp $NET 80 $UP
  must_pass "$c -> $NET:80/udp, the outside sees $UP" "$L" $c udp $NET 80 $UP
  must_pass "$c -> $NET icmp" "$L" $c icmp $NET
done

# Two containers at once, each with several connections in flight.
both() {
  local i c pids=()
  for i in 1 2 3; do
    for c in m1 m2; do
      ( for try in 1 2 3; do reach "$L" $c tcp $NET 80 $UP && { touch "$TMP/both-$c-$i"; break; }; done ) &
      pids+=($!)
    done
  done
  wait "${pids[@]}"
  for i in 1 2 3; do for c in m1 m2; do [ -e "$TMP/both-$c-$i" ] || return 1; done; done
}
check "m1 and m2 at the same time (3 connections each) all answered with $UP" both

out=$(echo probe | "$MOAT" lab exec --lab "$L" p1 -- nc -n -w2 $NET 80 2>/dev/null)
check "masquerade false: p1 gets no answer showing $UP over tcp (got \"$out\")" [ "$out" != $UP ]
out=$(echo probe | "$MOAT" lab exec --lab "$L" p1 -- nc -n -u -w2 $NET 80 2>/dev/null)
check "masquerade false: p1 gets no answer showing $UP over udp (got \"$out\")" [ "$out" != $UP ]
# With a route back (as a routed, non-NAT setup has), the outside sees p1's
# own address, and still cannot open connections to it.
check "outside gets a route to plain ($PNET) via $UP" \
  "$MOAT" lab exec --lab "$L" outside -- ip route add "$PNET" via $UP
must_pass "masquerade false + route back: the outside sees p1 as $P1 (tcp)" "$L" p1 tcp $NET 80 "$P1"
must_pass "masquerade false + route back: the outside sees p1 as $P1 (udp)" "$L" p1 udp $NET 80 "$P1"
must_drop "outside -> p1 $P1:80 directly (not published)" "$L" outside tcp "$P1" 80
must_drop "outside -> p1 $P1 icmp directly" "$L" outside icmp "$P1"

# The lab gives an internal network no default route (as Docker does); add
# one so that a drop is moat's and not routing's.
check "v1 gets a default route via its gateway $GV" \
  "$MOAT" lab exec --lab "$L" v1 -- ip route add default via "$GV"
must_drop "internal: v1 -> $NET:80/tcp" "$L" v1 tcp $NET 80
must_drop "internal: v1 -> $NET:80/udp" "$L" v1 udp $NET 80
must_drop "internal: v1 -> $NET icmp" "$L" v1 icmp $NET
must_drop "internal: v1 -> $UP icmp (the uplink)" "$L" v1 icmp $UP

echo "no masquerade inside a network or towards the host: m2 serves its peer's address"
check "m2 listens on 7000 (peer address reporter)" \
  serve "$L" m2 tcp 7000 TCP-LISTEN:7000,reuseaddr,fork 'SYSTEM:read -r _; echo "$SOCAT_PEERADDR"'
must_pass "m1 -> m2:7000 is seen as m1 ($M1)" "$L" m1 tcp "$M2" 7000 "$M1"
must_pass "host -> m2:7000 is seen as the gateway ($GN)" "$L" host tcp "$M2" 7000 "$GN"
stop_server "$SERVED"

echo "a container's tuple keeps its outside tuple, flow after flow"
check "the outside listens on 81 (peer address and port reporter)" \
  serve "$L" outside tcp 81 TCP-LISTEN:81,bind=$NET,reuseaddr,fork \
  'SYSTEM:read -r _; echo "$SOCAT_PEERADDR:$SOCAT_PEERPORT"'
# m1's port 40000 (Linux's ephemeral range) lands on 40000 - 32768 + 1024.
from_40000() {  # one connection from m1's port 40000: what the outside saw
  "$MOAT" lab exec --lab "$L" m1 -- python3 -c '
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.settimeout(2)
s.bind(("0.0.0.0", 40000))
s.connect(("'"$NET"'", 81))
s.sendall(b"x\n")
got = b""
while True:  # until the outside closes: it keeps TIME_WAIT, m1 none
    b = s.recv(64)
    if not b:
        break
    got += b
print(got.decode().strip())' 2>/dev/null
}
# The second connection after the first flow's 1 s hold: a new flow, not
# the first one reopened.
for i in 1 2; do
  [ "$i" = 2 ] && sleep 1.5
  for try in 1 2 3; do seen=$(from_40000) && [ -n "$seen" ] && break; sleep 0.2; done
  check "m1:40000 -> $NET:81, connection $i, is seen as $UP:8256 ($seen)" [ "$seen" = "$UP:8256" ]
done
stop_server "$SERVED"

echo "the host's own source ports stay out of the masquerade's (1024-32767)"
hostsys() { "$MOAT" lab exec --lab "$L" host -- sysctl -qw "$@"; }
check "the lab host's ephemeral ports widened to 1024-65535" hostsys net.ipv4.ip_local_port_range="1024 65535"
out=$("$MOAT" lab apply --lab "$L" 2>&1) && rc=0 || rc=$?
check "an apply is refused while the host may pick them (rc $rc)" [ "$rc" != 0 ]
check "... naming the sysctl and the ports: $out" \
  grep -q "ip_local_port_range (1024-65535) lets the host pick 31744 of them" <<<"$out"
must_pass "... and the masquerade goes on as it was" "$L" m1 tcp $NET 80 $UP
check "the lab host reserves 1024-32767" hostsys net.ipv4.ip_local_reserved_ports=1024-32767
check "with them reserved the apply goes through" "$MOAT" lab apply --lab "$L"
must_pass "... and m1 is masqueraded" "$L" m1 tcp $NET 80 $UP

check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"
check "no socket listens in the lab host" host_listens_nothing "$L"
down_and_finish "$L"
