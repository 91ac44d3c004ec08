#!/usr/bin/env bash
# The fast path between containers of one network (bpf/lib/redirect.h):
# real TCP from c1 to c2 passes and is counted at both endpoints, and its
# data goes straight into c2's namespace: the fast path's counter grows by
# the transfer while c2's host-side veth (where the bridge would hand it to
# c2, and c2's to_container would judge it) transmits almost nothing of it.
# With the kill switch (`moat fastpath off`) the same transfer crosses that
# veth again. Policy still holds: c3 may not reach c2.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/fast-path.json
L=$(unique_lab fast)
C2=$(ip_of "$F" c2 front)
SIZE=20000000

lab_up "$L" "$F"
HOST_NS=moat-$L-host

fast_json() { "$MOAT" fastpath --lab "$L" --json; }
fast_field() { fast_json | python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

# The host-side interface of CONTAINER, from the lab's status.
host_if() {
  "$MOAT" lab status --lab "$L" --json | python3 -c '
import json,sys
print([e["name"] for e in json.load(sys.stdin)["endpoints"] if e["container"]==sys.argv[1]][0])' "$1"
}
# counter CONTAINER DIRECTION FIELD: moat's counter of that endpoint.
counter() {
  "$MOAT" lab status --lab "$L" --json | python3 -c '
import json,sys
e=[e for e in json.load(sys.stdin)["endpoints"] if e["container"]==sys.argv[1]][0]
print(e["counters"][sys.argv[2]][sys.argv[3]])' "$1" "$2" "$3"
}
# What the kernel's own counter says the interface transmitted (to its container).
tx_bytes() {
  ip -n "$HOST_NS" -s -j link show dev "$1" | python3 -c '
import json,sys; print(json.load(sys.stdin)[0]["stats64"]["tx"]["bytes"])'
}

check "fast path on by default" [ "$(fast_field peer)" = True ]
V2=$(host_if c2)
check "c2 has a host-side interface ($V2)" [ -n "$V2" ]

must_pass "c1 -> c2:80 (allowed by c2's policy)" "$L" c1 tcp "$C2" 80 c2
must_drop "c3 -> c2:80 (c2's policy)" "$L" c3 tcp "$C2" 80

# A listener in c2 that answers with the number of bytes it received.
serve "$L" c2 tcp 5001 TCP-LISTEN:5001,reuseaddr,fork SYSTEM:"wc -c"

# transfer SRC: SIZE bytes of TCP to c2:5001; prints what c2 says it got.
transfer() {
  "$MOAT" lab exec --lab "$L" "$1" -- sh -c \
    "head -c $SIZE /dev/zero | socat -t10 - TCP:$C2:5001" 2>/dev/null | tr -d ' \n'
}

# measure SRC: one transfer; sets GOT and the deltas of the counters.
measure() {
  local f0 t0 r0 s0 f1 t1 r1 s1
  f0=$(fast_field peer_bytes); t0=$(tx_bytes "$V2")
  r0=$(counter c2 to_container bytes); s0=$(counter "$1" from_container bytes)
  GOT=$(transfer "$1")
  f1=$(fast_field peer_bytes); t1=$(tx_bytes "$V2")
  r1=$(counter c2 to_container bytes); s1=$(counter "$1" from_container bytes)
  D_FAST=$((f1 - f0)); D_TX=$((t1 - t0)); D_RX=$((r1 - r0)); D_SENT=$((s1 - s0))
  echo "    got $GOT bytes; fast path +$D_FAST B, $V2 transmitted +$D_TX B," \
    "c2 to_container +$D_RX B, $1 from_container +$D_SENT B"
}

echo "fast path on"
measure c1
check "c2 received all $SIZE bytes" [ "$GOT" = "$SIZE" ]
check "the transfer took the fast path (+$D_FAST B >= $SIZE)" [ "$D_FAST" -ge "$SIZE" ]
check "c2's host-side veth did not carry it (+$D_TX B < 1 MB)" [ "$D_TX" -lt 1000000 ]
check "counted at c2, to_container (+$D_RX B >= $SIZE)" [ "$D_RX" -ge "$SIZE" ]
check "counted at c1, from_container (+$D_SENT B >= $SIZE)" [ "$D_SENT" -ge "$SIZE" ]

echo "fast path off (the kill switch)"
"$MOAT" fastpath off --lab "$L" >/dev/null
check "moat fastpath off" [ "$(fast_field peer)" = False ]
measure c1
check "c2 received all $SIZE bytes" [ "$GOT" = "$SIZE" ]
check "nothing took the fast path (+$D_FAST B)" [ "$D_FAST" -eq 0 ]
check "c2's host-side veth carried it (+$D_TX B >= $SIZE)" [ "$D_TX" -ge "$SIZE" ]
check "counted at c2, to_container (+$D_RX B >= $SIZE)" [ "$D_RX" -ge "$SIZE" ]

"$MOAT" fastpath on --lab "$L" >/dev/null
check "moat fastpath on" [ "$(fast_field peer)" = True ]
measure c1
check "on again: c2 received all $SIZE bytes" [ "$GOT" = "$SIZE" ]
check "on again: the fast path carried it (+$D_FAST B >= $SIZE)" [ "$D_FAST" -ge "$SIZE" ]

echo "policy still holds with established flows on the fast path"
GOT=$(transfer c3)
check "c3 -> c2:5001 gets nothing through (got '${GOT}')" [ -z "$GOT" ]
must_drop "c3 -> c2:80 (c2's policy)" "$L" c3 tcp "$C2" 80
n=$(drops "$L" policy-default-deny)
check "policy drops counted ($n)" [ "$n" -gt 0 ]
must_pass "c1 -> c2:80 still" "$L" c1 tcp "$C2" 80 c2

echo "a kernel without bpf_redirect_peer() (simulated): the switch starts off"
"$MOAT" down --instance "lab-$L" >/dev/null
MOAT_KERNEL_LACKS=redirect_peer "$MOAT" lab apply --lab "$L" >/dev/null
check "fast path off on a new instance where the kernel lacks the helper" \
  [ "$(MOAT_KERNEL_LACKS=redirect_peer fast_field peer)" = False ]
MOAT_KERNEL_LACKS=redirect_peer "$MOAT" fastpath on --lab "$L" >/dev/null 2>&1
check "and turning it on there fails" [ $? -ne 0 ]
must_pass "c1 -> c2:80 on the plain path" "$L" c1 tcp "$C2" 80 c2
down_and_finish "$L"
