#!/usr/bin/env bash
# `moat docker` against a private real dockerd (docker_lib.sh) with
# iptables:false: without moat nothing isolates Docker's networks; with the
# agent following the Engine, containers of one network reach each other,
# other networks are dropped, an icc=false network isolates its members,
# a container started while the agent runs is enforced at once (from the
# events), the outside sees masqueraded traffic, and a published port
# (-p 8080:80, which dockerd itself holds with a socket that never answers)
# is reached from outside and from the host's localhost through moat; after
# kill -9 of the agent enforcement stays and a new agent changes nothing;
# `docker network disconnect` removes the endpoint.
# Fail closed: every Docker bridge carries moat's guard, so a container moat
# has not identified yet (just started, or started while the agent is down)
# cannot leave its network. Measured with a container on an internal network
# that pings the host's uplink address every 10 ms from its first instant:
# with the guard none of its packets reaches the host (the window is
# closed); with the guard removed and the agent down, they do (the
# measurement can fail).
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"
N=$(echo "dka$$" | cut -c1-12)
I="dk$$"
AGENT=""
stop_agent() {
  if [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; then
    kill -TERM "$AGENT"; wait_exit "$AGENT" 10 || kill -KILL "$AGENT"
  fi
  AGENT=""
}
teardown() {
  stop_agent
  [ -n "${DK_NETNS:-}" ] && [ -e "$DK_NETNS" ] && nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
  docker_down_all; cleanup
}
trap teardown EXIT

docker_up "$N" || { bad "docker_up $N"; finish; }
ok "private dockerd up (${DK_UP_SECONDS}s)"
dk network create n1 >/dev/null && dk network create n2 >/dev/null &&
  dk network create -o com.docker.network.bridge.enable_icc=false quiet >/dev/null &&
  dk network create --internal --subnet 10.77.0.0/24 intn >/dev/null
for c in a1:n1 a2:n1 b1:n2 q1:quiet q2:quiet; do
  dk run -d --name "${c%%:*}" --network "${c##*:}" "$DK_IMAGE" sleep 1000 >/dev/null
done
dk run -d --name web --network n2 -p 8080:80 "$DK_IMAGE" httpd -f -p 80 -h / >/dev/null
ip_of_c() { dk inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
A2=$(ip_of_c a2); B1=$(ip_of_c b1); Q2=$(ip_of_c q2)
pings() { dk exec "$1" ping -c1 -W1 "$2" >/dev/null 2>&1; }
reach() { local i; for i in 1 2 3; do pings "$1" "$2" && return 0; done; return 1; }
no_reach() { ! pings "$1" "$2"; }

check "baseline without moat: a1 reaches b1 on another network (nothing isolates)" reach a1 "$B1"
http_code() { "$@" curl -s -o /dev/null -m 3 -w '%{http_code}' http://"$HOSTPORT"/ 2>/dev/null; }
answers() { local i c; for i in 1 2 3; do c=$(http_code "$@"); [ -n "$c" ] && [ "$c" != 000 ] && return 0; done; return 1; }
HOSTPORT=198.18.0.1:8080
silent() { [ "$(http_code "$@")" = 000 ]; }
check "baseline without moat: outside gets no answer from 198.18.0.1:8080 (dockerd only holds the port)" \
  silent dk_out

# The instance's map sizes (issue 17): flags, as a file's `limits`.
LIMITS=(--limit conntrack=8192 --limit socket_nat=1024)
nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 "${LIMITS[@]}" \
  2>"$TMP/agent.log" &
AGENT=$!
enforced() {  # enforced N: the instance has N container endpoints
  [ "$(nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
       python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null)" = "$1" ]
}
guards() {  # guards: the guarded bridges in the instance's status
  nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin).get("bridges", [])))'
}
check "the agent enforces the 6 containers" dk_poll 30 enforced 6
check "a1 reaches a2 (same network)" reach a1 "$A2"
check "a1 does not reach b1 (another network)" no_reach a1 "$B1"
check "q1 does not reach q2 (icc=false)" no_reach q1 "$Q2"
check "a1 reaches the outside, masqueraded" reach a1 198.19.0.1
check "outside reaches web through 198.18.0.1:8080 (published by moat)" answers dk_out
HOSTPORT=127.0.0.1:8080
check "the host reaches web at 127.0.0.1:8080 (socket hooks)" answers dk_host
dk run -d --name a3 --network n1 "$DK_IMAGE" sleep 1000 >/dev/null
check "a container started later is enforced from the events" dk_poll 30 enforced 7
a3_enforced() { reach a3 "$A2" && no_reach a3 "$B1"; }
check "a3 reaches a2 and not b1" a3_enforced
# The agent keeps the maps and programs it opened for as long as the pin
# directory's stamp holds (dataplane/apply.cpp): `moat down` under its feet,
# and the next sync builds the instance anew and enforces everyone in it.
nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
check "moat down under the running agent removes the instance's pins" test ! -e "/sys/fs/bpf/moat/$I"
dk run -d --name a4 --network n1 "$DK_IMAGE" sleep 1000 >/dev/null
check "the next sync (a4's start) builds the instance anew: 8 containers enforced" \
  dk_poll 30 enforced 8
# enforced_anew C: C (on n1) reaches a2 and not b1, a1 not b1, all 5 bridges guarded.
enforced_anew() { reach "$1" "$A2" && no_reach "$1" "$B1" && no_reach a1 "$B1" && test "$(guards)" = 5; }
check "a4 reaches a2 and not b1, a1 not b1, every bridge guarded again" enforced_anew a4
dk rm -f a4 >/dev/null
check "a4 removed: 7 containers enforced" dk_poll 30 enforced 7
# Another writer under the running agent: a file with no container applied
# to its instance takes every endpoint out of the kernel. The agent keeps
# what it wrote for its next sync only while the record is the one it
# wrote (dataplane/apply.cpp, KeptHave): its next sync must see the kernel
# as it is and put every endpoint back, not trust its own last write.
# (Its limits are the agent's: an instance keeps its maps' sizes.)
echo '{"limits": {"conntrack": 8192, "socket_nat": 1024}}' >"$TMP/empty.json"
kernel_eps() {  # the entries of the instance's endpoints map, in the kernel
  bpftool map dump pinned "/sys/fs/bpf/moat/$I/endpoints" -j 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'
}
kernel_eps_are() { test "$(kernel_eps)" = "$1"; }
nsenter --net="$DK_NETNS" "$MOAT" apply --instance "$I" "$TMP/empty.json" >/dev/null 2>"$TMP/other.err" ||
  sed 's/^/    | /' "$TMP/other.err"
check "another writer (moat apply of a file with no container) empties the endpoints map" \
  kernel_eps_are 0
dk run -d --name a5 --network n1 "$DK_IMAGE" sleep 1000 >/dev/null
check "the agent's next sync (a5's start) puts all 8 endpoints back in the kernel" \
  dk_poll 30 kernel_eps_are 8
check "a5 reaches a2 and not b1, a1 not b1, every bridge guarded" enforced_anew a5
dk rm -f a5 >/dev/null
check "a5 removed: 7 endpoints in the kernel" dk_poll 30 kernel_eps_are 7
# A writer killed after its last map write (MOAT_CRASH_AT=remove-stale)
# leaves the kernel changed, the record as the agent wrote it, byte for
# byte, and an intent; here the intent is damaged too, so settling it fails.
# The intent alone says the kernel may hold something else: the agent's
# next sync must read the kernel, not trust its own last write.
MOAT_CRASH_AT=remove-stale nsenter --net="$DK_NETNS" "$MOAT" apply --instance "$I" \
  "$TMP/empty.json" >/dev/null 2>&1
killed_midway() { kernel_eps_are 0 && test -e "/run/moat/$I/intent.json"; }
check "a writer killed after its last map write emptied the endpoints map, leaving its intent" \
  killed_midway
echo 'not an intent' >"/run/moat/$I/intent.json"
dk run -d --name a6 --network n1 "$DK_IMAGE" sleep 1000 >/dev/null
check "the agent's next sync (a6's start), the intent unreadable, puts all 8 endpoints back" \
  dk_poll 30 kernel_eps_are 8
dk rm -f a6 >/dev/null
check "a6 removed: 7 endpoints in the kernel, no intent left" \
  dk_poll 30 eval 'kernel_eps_are 7 && test ! -e "/run/moat/$I/intent.json"'

# Echo requests from intn's subnet that reach the host (its uplink address,
# which an internal network may not reach) within SECONDS, counted by a raw
# socket in the host's namespace.
cat >"$TMP/count_icmp.py" <<'PY'
import socket, struct, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.2)
open(sys.argv[2], "w").close()  # ready
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        continue
    if pkt[20] == 8 and pkt[12:15] == bytes([10, 77, 0]):
        n += 1
print(n)
PY
leaked() {  # leaked NAME: echo requests of a new intn container NAME that reach the host
  local ready="$TMP/ready.$1" out="$TMP/leak.$1"
  dk_host python3 "$TMP/count_icmp.py" 4 "$ready" >"$out" &
  local counter=$!
  dk_poll 5 test -e "$ready" || return 1
  dk run -d --name "$1" --network intn "$DK_IMAGE" \
    sh -c 'ping -q -i 0.01 -c 300 198.18.0.1; exec sleep 1000' >/dev/null
  wait "$counter"; cat "$out"
}
check "every Docker bridge (bridge, n1, n2, quiet, intn) carries the guard" test "$(guards)" = 5
W1=$(leaked w1)
check "window: none of w1's pings from its first instant reaches the host (leaked: ${W1:-?})" \
  test "${W1:-x}" = 0
kill -KILL "$AGENT"; wait "$AGENT" 2>/dev/null; AGENT=""
check "after kill -9 of the agent enforcement stays (a1 still does not reach b1)" no_reach a1 "$B1"
nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 "${LIMITS[@]}" \
  --once --json >"$TMP/resync.json" 2>>"$TMP/agent.log"
unchanged() { python3 -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["changed"])' "$TMP/resync.json"; }
check "a restarted agent reconciles without changing anything" unchanged
map_max() {  # map_max NAME: the instance's map NAME's max_entries
  nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null | python3 -c '
import json,sys; print([m["max_entries"] for m in json.load(sys.stdin)["maps"] if m["name"]==sys.argv[1]][0])' "$1"
}
check "--limit sized the maps: ct 8192, sock_rnat 1024 entries" \
  test "$(map_max ct) $(map_max sock_rnat)" = "8192 1024"
other_limits() {
  nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
    --limit conntrack=16384 --once >/dev/null 2>"$TMP/limits.err"
  [ $? = 1 ] && grep -q "limits.conntrack 16384 where its maps hold 8192" "$TMP/limits.err"
}
check "an agent asking other sizes is refused, naming them" other_limits
check "and the maps stay as they were" test "$(map_max ct)" = 8192

# Agent down: a container started now has no program of its own.
dk run -d --name late --network n1 "$DK_IMAGE" sleep 1000 >/dev/null
LATE_PID=$(dk_pid late)
late_pings() { nsenter --net="/proc/$LATE_PID/ns/net" ping -c1 -W1 "$1" >/dev/null 2>&1; }
late_reaches() { local i; for i in 1 2 3; do late_pings "$1" && return 0; done; return 1; }
A1=$(ip_of_c a1)
check "agent down: late (unidentified) reaches a1 on its own network" late_reaches "$A1"
late_blocked() { ! late_pings "$1"; }
check "agent down: late does not reach b1 (another network)" late_blocked "$B1"
check "agent down: late does not reach the outside" late_blocked 198.19.0.1
# dockerd binds a published port again when it restarts a container, and
# moat (down, or not caught up yet) still has the port published.
restarts() { dk restart -t 1 web >/dev/null 2>"$TMP/restart.err" || { sed 's/^/    /' "$TMP/restart.err"; return 1; }; }
check "agent down: docker restart web (-p 8080:80) succeeds, dockerd binds 8080 again" restarts
# The baseline that shows the measurement works: without intn's guard and
# without the agent, a new container's pings leave.
INTN_BR=br-$(dk network inspect -f '{{.Id}}' intn | cut -c1-12)
dk_host tc filter del dev "$INTN_BR" ingress pref 28015 handle 0x6d6f bpf 2>/dev/null
W2=$(leaked w2)
check "baseline: with intn's guard removed and the agent down, w2's pings reach the host (leaked: ${W2:-?})" \
  test "${W2:-0}" -gt 0
nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 "${LIMITS[@]}" \
  2>>"$TMP/agent.log" &
AGENT=$!
back() {  # 10 endpoints (late and w2 too) and 5 guarded bridges
  [ "$(nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
       python3 -c 'import json,sys; d=json.load(sys.stdin); print(len(d["endpoints"]), len(d["bridges"]))')" = "10 5" ]
}
check "the agent back: late and w2 are enforced, every bridge guarded" dk_poll 30 back
late_enforced() { late_reaches 198.19.0.1 && ! late_pings "$B1"; }
check "late now reaches the outside (masqueraded) and still not b1" late_enforced
HOSTPORT=198.18.0.1:8080
check "outside reaches the restarted web (a new veth) through 198.18.0.1:8080" answers dk_out
W3=$(leaked w3)
check "guard re-attached: none of w3's pings reaches the host (leaked: ${W3:-?})" test "${W3:-x}" = 0
# A network's `connect` (dockerd joined a veth to an enforced bridge,
# 0.7-0.9 s before the container's `start` here) makes the agent give every
# veth of those bridges without one a clsact qdisc, so the start's attach
# does not wait for a fresh qdisc's RCU grace periods (agent.cpp). A stray
# veth on n1's bridge shows it; the stopped agent removes what no filter
# uses; a qdisc it made and moat's filters use is the record's (moat down).
STRAY=mvs$$
N1_BR=$(dk_bridge_of n1)
dk_host ip link add "$STRAY" type veth peer name "${STRAY}p" &&
  dk_host ip link set "$STRAY" master "$N1_BR" up
has_clsact() { dk_host tc qdisc show dev "$1" | grep -q clsact; }
check "a stray veth on n1's bridge has no clsact qdisc before any connect" bash -c \
  "! nsenter --net='$DK_NETNS' tc qdisc show dev '$STRAY' | grep -q clsact"
dk run -d --name a8 --network n1 "$DK_IMAGE" sleep 1000 >/dev/null
check "a8's connect: the agent made a clsact qdisc on the stray veth ahead" dk_poll 30 has_clsact "$STRAY"
check "a8 is enforced (12 endpoints)" dk_poll 30 enforced 12
check "the stray veth's qdisc carries no filter" bash -c \
  "[ -z \"\$(nsenter --net='$DK_NETNS' tc filter show dev '$STRAY' ingress; nsenter --net='$DK_NETNS' tc filter show dev '$STRAY' egress)\" ]"
# The agent writes each intent over the inode its last one left
# (intent.json.tmp while it runs); stopped, it leaves no such file.
check "the running agent keeps its last intent's inode for the next (intent.json.tmp)" \
  test -e "/run/moat/$I/intent.json.tmp"
stop_agent
check "the stopped agent removed the clsact qdisc it made and no filter used (the stray veth)" \
  bash -c "! nsenter --net='$DK_NETNS' tc qdisc show dev '$STRAY' | grep -q clsact"
check "a8's veth keeps its qdisc (the instance is up)" has_clsact "$(dk_host_veth a8)"
dk_host ip link del "$STRAY"
check "the stopped agent leaves no temporary file in /run/moat/$I" \
  test -d "/run/moat/$I" -a -z "$(find "/run/moat/$I" -name '*.tmp')"
dk network disconnect n1 a3 >/dev/null
check "docker network disconnect: the agent (one sync) drops a3's endpoint" bash -c \
  "nsenter --net='$DK_NETNS' '$MOAT' docker --socket '$DK_SOCK' --instance '$I' --uplink uplink0 ${LIMITS[*]} --once >/dev/null 2>&1"
check "... and enforces 11 containers" enforced 11
check "a1 still reaches a2 after the resyncs" reach a1 "$A2"
nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
check "moat down leaves no clsact qdisc in dockerd's namespace (a8's too, made ahead or by its attach)" bash -c \
  "! nsenter --net='$DK_NETNS' tc qdisc show | grep -q clsact"
sed 's/^/    | /' "$TMP/agent.log" | head -20
finish
