#!/usr/bin/env bash
# The routed fast path (bpf/lib/fast_route.h, lib/fast_reply.h): with
# `moat fastpath --routed on`, what a container sends to the world leaves
# its network's bridge straight for the uplink (bpf_redirect_neigh), and
# the replies go from the uplink straight into the container's namespace
# (bpf_redirect_peer): the lab host's IP stack forwards neither, so the
# kernel's own count of forwarded datagrams (/proc/net/snmp, Ip
# ForwDatagrams, in the lab host) stays put while the fast path's counters
# grow by the requests and by the replies. It is off by default.
# What must still hold, holds: the outside sees the uplink's address
# (to_world masquerades on the way out), TCP transfers arrive whole both
# ways, the outside still cannot open a connection to a container, an
# internal network reaches nothing, and `--routed off` gives the stack its
# packets back.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/masquerade.json
L=$(unique_lab froute)
UP=198.18.0.1
NET=198.19.0.1
GV=$(gateway_of "$F" vault)
M1=$(ip_of "$F" m1 natted)
NNET=$(subnet_of "$F" natted)
P1=$(ip_of "$F" p1 plain)
PNET=$(subnet_of "$F" plain)
PINGS=20
SIZE=20000000

lab_up "$L" "$F"  # guards its bridges: from_bridge is where the routed fast path lives

fast_field() {
  "$MOAT" fastpath --lab "$L" --json |
    python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"
}
# The lab host's forwarded datagrams, as its kernel counts them.
forwarded() {
  "$MOAT" lab exec --lab "$L" host -- cat /proc/net/snmp | python3 -c '
import sys
ip = [l.split() for l in sys.stdin if l.startswith("Ip:")]
print(ip[1][ip[0].index("ForwDatagrams")])'
}
# pings SRC: PINGS echo requests to the internet server; sets D_FWD,
# D_ROUTED and D_IN (the deltas of the three counters) and ANSWERED.
pings() {
  local f0 r0 i0
  f0=$(forwarded); r0=$(fast_field routed_packets); i0=$(fast_field routed_in_packets)
  ANSWERED=$("$MOAT" lab exec --lab "$L" "$1" -- ping -n -q -c $PINGS -i 0.05 -W 1 $NET 2>/dev/null |
    sed -n 's/.* \([0-9]*\) received.*/\1/p')
  D_FWD=$(($(forwarded) - f0)); D_ROUTED=$(($(fast_field routed_packets) - r0))
  D_IN=$(($(fast_field routed_in_packets) - i0))
  echo "    $ANSWERED of $PINGS answered; forwarded by the host +$D_FWD, routed fast path +$D_ROUTED out, +$D_IN in"
}

check "routed fast path off by default" [ "$(fast_field routed)" = False ]
check "the peer fast path is on regardless" [ "$(fast_field peer)" = True ]

echo "off: the host forwards both ways"
pings m1
check "all $PINGS answered" [ "$ANSWERED" = $PINGS ]
check "the host forwarded requests and replies (+$D_FWD >= $((2 * PINGS)))" [ "$D_FWD" -ge $((2 * PINGS)) ]
check "nothing took the routed fast path (+$D_ROUTED out, +$D_IN in)" [ "$D_ROUTED" -eq 0 -a "$D_IN" -eq 0 ]

"$MOAT" fastpath --routed on --lab "$L" >/dev/null
check "moat fastpath --routed on" [ "$(fast_field routed)" = True ]

echo "on: requests and replies skip the host's stack"
pings m1
check "all $PINGS answered" [ "$ANSWERED" = $PINGS ]
check "the routed fast path carried the requests (+$D_ROUTED >= $PINGS)" [ "$D_ROUTED" -ge $PINGS ]
# A reply whose neighbour entry was not resolved yet takes the stack: the
# pings before resolved m1's, so at most a stray one or two.
check "and the replies (+$D_IN >= $((PINGS - 2)))" [ "$D_IN" -ge $((PINGS - 2)) ]
check "the host forwarded next to nothing (+$D_FWD <= 2)" [ "$D_FWD" -le 2 ]
for c in m1 m2; do
  must_pass "$c -> $NET:80/tcp, the outside still sees $UP" "$L" $c tcp $NET 80 $UP
  must_pass "$c -> $NET:80/udp, the outside still sees $UP" "$L" $c udp $NET 80 $UP
done

serve "$L" outside tcp 5001 TCP-LISTEN:5001,reuseaddr,fork SYSTEM:"wc -c"
r0=$(fast_field routed_bytes)
GOT=$("$MOAT" lab exec --lab "$L" m1 -- sh -c \
  "head -c $SIZE /dev/zero | socat -t10 - TCP:$NET:5001" 2>/dev/null | tr -d ' \n')
D_BYTES=$(($(fast_field routed_bytes) - r0))
echo "    got $GOT bytes; routed fast path +$D_BYTES B"
check "a TCP transfer to the outside arrives whole ($SIZE bytes)" [ "$GOT" = "$SIZE" ]
check "and went the routed fast path (+$D_BYTES B >= $SIZE)" [ "$D_BYTES" -ge $SIZE ]
stop_server "$SERVED"

serve "$L" outside tcp 5002 TCP-LISTEN:5002,reuseaddr,fork SYSTEM:"head -c $SIZE /dev/zero"
# download C: SIZE bytes from the outside to container C; sets GOT, D_BYTES
# (the way back's bytes) and D_FWD. A packet whose neighbour entry went
# stale meanwhile may take the stack: a tenth of the bytes and a few
# datagrams are the margin.
download() {
  local i0 f0
  i0=$(fast_field routed_in_bytes); f0=$(forwarded)
  GOT=$("$MOAT" lab exec --lab "$L" "$1" -- sh -c "socat -u -t10 TCP:$NET:5002 - | wc -c" 2>/dev/null |
    tr -d ' \n')
  D_BYTES=$(($(fast_field routed_in_bytes) - i0)); D_FWD=$(($(forwarded) - f0))
  echo "    got $GOT bytes; routed fast path +$D_BYTES B in; forwarded by the host +$D_FWD"
}
download m1
check "a TCP transfer from the outside arrives whole ($SIZE bytes)" [ "$GOT" = "$SIZE" ]
check "and came the routed fast path back (+$D_BYTES B >= 0.9 x $SIZE)" [ "$D_BYTES" -ge $((SIZE * 9 / 10)) ]
check "the host forwarded next to none of it (+$D_FWD <= 10)" [ "$D_FWD" -le 10 ]
# A network that does not masquerade, with a route back (as a routed setup
# has): its replies come to the container's own address, the same way.
check "outside gets a route to plain ($PNET) via $UP" \
  "$MOAT" lab exec --lab "$L" outside -- ip route add "$PNET" via $UP
must_pass "p1 -> $NET:80/tcp, the outside sees p1 as $P1" "$L" p1 tcp $NET 80 "$P1"
download p1
check "routed: a TCP transfer from the outside arrives whole ($SIZE bytes)" [ "$GOT" = "$SIZE" ]
check "routed: and came the routed fast path back (+$D_BYTES B >= 0.9 x $SIZE)" [ "$D_BYTES" -ge $((SIZE * 9 / 10)) ]
check "routed: the host forwarded next to none of it (+$D_FWD <= 10)" [ "$D_FWD" -le 10 ]
must_drop "outside -> p1 $P1:80 directly (not published)" "$L" outside tcp "$P1" 80
stop_server "$SERVED"
# Only replies come this way: with a route to the container (as a routed
# setup has), the outside still cannot open a connection to it.
check "outside gets a route to natted ($NNET) via $UP" \
  "$MOAT" lab exec --lab "$L" outside -- ip route add "$NNET" via $UP
check "m1 listens on 7000" serve "$L" m1 tcp 7000 TCP-LISTEN:7000,reuseaddr,fork SYSTEM:"echo hi"
must_drop "outside -> m1 $M1:7000 directly (not published)" "$L" outside tcp "$M1" 7000
stop_server "$SERVED"
for n in "$NNET" "$PNET"; do
  check "the outside's route to $n removed" "$MOAT" lab exec --lab "$L" outside -- ip route del "$n"
done

check "v1 gets a default route via its gateway $GV" \
  "$MOAT" lab exec --lab "$L" v1 -- ip route add default via "$GV"
must_drop "internal: v1 -> $NET:80/tcp still dropped" "$L" v1 tcp $NET 80
must_drop "internal: v1 -> $NET icmp still dropped" "$L" v1 icmp $NET

"$MOAT" fastpath --routed off --lab "$L" >/dev/null
check "moat fastpath --routed off" [ "$(fast_field routed)" = False ]
pings m2
check "off again: all $PINGS answered" [ "$ANSWERED" = $PINGS ]
check "off again: the host forwards both ways (+$D_FWD >= $((2 * PINGS)))" [ "$D_FWD" -ge $((2 * PINGS)) ]
check "off again: nothing took the routed fast path (+$D_ROUTED out, +$D_IN in)" [ "$D_ROUTED" -eq 0 -a "$D_IN" -eq 0 ]

MOAT_KERNEL_LACKS=redirect_neigh "$MOAT" fastpath --routed on --lab "$L" >/dev/null 2>&1
check "turning it on where the kernel lacks bpf_redirect_neigh() fails" [ $? -ne 0 ]
check "and leaves it off" [ "$(fast_field routed)" = False ]
down_and_finish "$L"
