#!/usr/bin/env bash
# One container flooding new tuples cannot evict another's flows (issue 13,
# conntrack abuse). m2 holds an idle TCP connection to the outside server,
# masqueraded. m1 then sends UDP datagrams to 150,000 different tuples of
# the outside, more flows than the whole table holds. m1 may hold only its
# quota of flows: the rest of its flood is dropped as conntrack-quota at the
# uplink, m2's connection answers, m2 and the host still open new ones, m1
# does not. (With the old LRU table this pattern did not evict m2's entries
# either: the kernel's LRU keeps recently used entries on its active list
# while never-answered ones fill the inactive one. The eviction the quota
# prevents is shown by Nat.AFloodOfNewFlowsCostsOnlyTheFlooder in tests/bpf.)
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/masquerade.json
L=$(unique_lab ctflood)
NET=198.19.0.1
UP=198.18.0.1
lab_up "$L" "$F"

# uplink_drops REASON -> that drop reason summed over the lab's uplinks.
uplink_drops() {
  "$MOAT" stats --lab "$L" --json | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(v["drops"].get(sys.argv[1],0) for u in d["uplinks"] for v in u["directions"].values()))' "$1"
}


serve "$L" outside tcp 9000 TCP-LISTEN:9000,reuseaddr,fork \
  'SYSTEM:while read -r l; do echo "ans:$l"; done'
conn_open c "$L" m2 "$NET" 9000
asked() { conn_answered c "$@"; }
ok_before=0
for i in 1 2 3; do asked "before-$i" 2 && { ok_before=1; break; }; done
check "m2's connection to the outside answers" [ "$ok_before" = 1 ]

# 3 sockets x 50,000 destination ports. Paced in bursts so that the lab
# host's backlog (1,000 packets a CPU) does not drop the flood before the
# uplink sees it.
quota_before=$(uplink_drops conntrack-quota)
sent=$("$MOAT" lab exec --lab "$L" m1 -- python3 -c '
import socket, time
socks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(3)]
n = 0
for s in socks:
    for port in range(1, 50001):
        try:
            s.sendto(b"x", ("'"$NET"'", port))
            n += 1
        except OSError:
            time.sleep(0.001)
        if port % 200 == 0:
            time.sleep(0.0005)
print(n)')
quota=$(( $(uplink_drops conntrack-quota) - quota_before ))
echo "  m1 sent $sent datagrams to distinct tuples; $quota dropped as conntrack-quota"
check "the flood reached the uplink beyond m1's quota ($quota quota drops)" [ "$quota" -ge 100000 ]

ok_after=0
for i in 1 2 3; do asked "after-$i" 2 && { ok_after=1; break; }; done
check "m2's idle connection survived the flood and answers" [ "$ok_after" = 1 ]
check "m2's connection was never reset" conn_alive c
conn_close c
must_pass "m2 opens a new connection to the outside (sees $UP)" "$L" m2 tcp $NET 80 $UP
must_pass "the host opens a new connection to the outside" "$L" host tcp $NET 80 $UP
# m1's own established flows are its business; its new ones wait for room.
must_drop "m1 at its quota opens no new flow" "$L" m1 tcp $NET 80 $UP
n=$(( $(uplink_drops conntrack-quota) - quota_before - quota ))
check "which is counted as conntrack-quota too ($n)" [ "$n" -ge 1 ]

down_and_finish "$L"
