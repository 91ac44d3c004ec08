#!/usr/bin/env bash
# `moat docker` with IPv6 networks (issue 16) against a private real dockerd
# (docker_lib.sh) with iptables:false: networks created with `docker network
# create --ipv6 --subnet fd…/64`, containers given IPv6 addresses by
# Docker's IPAM. Without moat nothing isolates them over IPv6 either; with
# the agent following the Engine, IPv6 between containers is judged as IPv4
# is: one network talks, another is dropped, icc=false isolates, the
# gateway (the host) is reachable, and IPv6 beyond moat's networks stays
# closed (no IPv6 masquerade yet).
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"
N=$(echo "dk6$$" | cut -c1-12)
I="dk6$$"
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
# The host routes between its bridges for IPv6 as for IPv4, so what stops
# traffic below is moat, not a missing forward.
dk_host sysctl -qw net.ipv6.conf.all.forwarding=1
dk network create --ipv6 --subnet fd6d:6f61:a1::/64 n6a >/dev/null &&
  dk network create --ipv6 --subnet fd6d:6f61:a2::/64 n6b >/dev/null &&
  dk network create --ipv6 --subnet fd6d:6f61:a3::/64 -o com.docker.network.bridge.enable_icc=false q6 >/dev/null ||
  { bad "docker network create --ipv6"; finish; }
for c in a1:n6a a2:n6a b1:n6b q1:q6 q2:q6; do
  dk run -d --name "${c%%:*}" --network "${c##*:}" "$DK_IMAGE" sleep 1000 >/dev/null
done
ip6_of_c() { dk inspect -f '{{range .NetworkSettings.Networks}}{{.GlobalIPv6Address}}{{end}}' "$1"; }
ip4_of_c() { dk inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$1"; }
A1=$(ip6_of_c a1) A2=$(ip6_of_c a2) B1=$(ip6_of_c b1) Q2=$(ip6_of_c q2)
check "Docker gave the containers IPv6 addresses ($A1 $A2 $B1 $Q2)" \
  [ -n "$A1" ] && [ -n "$A2" ] && [ -n "$B1" ] && [ -n "$Q2" ]
pings() { dk exec "$1" ping -c1 -W1 "$2" >/dev/null 2>&1; }
# Bounded retries: a fresh address is tentative until duplicate address
# detection is done (about a second).
reach() { local i; for i in 1 2 3 4 5; do pings "$1" "$2" && return 0; sleep 0.3; done; return 1; }
no_reach() { ! pings "$1" "$2"; }

check "baseline without moat: a1 reaches b1 over IPv6 on another network" reach a1 "$B1"
check "baseline without moat: q1 reaches q2 over IPv6 (icc=false is iptables' job)" reach q1 "$Q2"

nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
  2>"$TMP/agent.log" &
AGENT=$!
status_json() { nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null; }
enforced() {  # enforced N: the instance has N container endpoints
  [ "$(status_json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null)" = "$1" ]
}
check "the agent enforces the 5 containers" dk_poll 30 enforced 5
check "a1 reaches a2 over IPv6 (same network)" reach a1 "$A2"
check "a1 does not reach b1 over IPv6 (another network)" no_reach a1 "$B1"
check "b1 does not reach a1 over IPv6" no_reach b1 "$A1"
check "q1 does not reach q2 over IPv6 (icc=false)" no_reach q1 "$Q2"
check "a1 reaches its gateway over IPv6 (the host)" reach a1 fd6d:6f61:a1::1
check "a1 reaches a2 over IPv4 still" reach a1 "$(ip4_of_c a2)"
check "a1 does not reach b1 over IPv4" no_reach a1 "$(ip4_of_c b1)"
# The world over IPv6: an address beyond every network, routed by the host
# if it could; this host's uplink has no IPv6 address to masquerade behind,
# so the uplink drops it (NAT66 itself: test_ipv6_isolation).
dk_host ip -6 route add 2001:db8::/32 dev "$DK_UPLINK" 2>/dev/null
# A neighbour entry, so the packet is sent (not held for resolution) and
# meets the uplink's program.
dk_host ip -6 neigh replace 2001:db8::1 lladdr 02:00:5e:00:53:01 dev "$DK_UPLINK" nud permanent
check "a1 does not reach an IPv6 address of the world" no_reach a1 2001:db8::1
drops() {  # drops REASON: summed over the instance's endpoints and uplinks
  status_json | python3 -c '
import json,sys
d=json.load(sys.stdin)
print(sum(c["drops"].get(sys.argv[1],0) for e in d["endpoints"] + d.get("uplinks",[]) for c in e["counters"].values()))' "$1"
}
n=$(drops network-isolation); check "network-isolation drops counted ($n)" [ "${n:-0}" -gt 0 ]
n=$(drops icc-disabled); check "icc-disabled drops counted ($n)" [ "${n:-0}" -gt 0 ]
n=$(drops ipv6-not-enabled); check "ipv6-not-enabled drops counted: the world, at the uplink ($n)" [ "${n:-0}" -gt 0 ]
stop_agent
finish
