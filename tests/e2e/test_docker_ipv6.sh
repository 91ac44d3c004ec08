#!/usr/bin/env bash
# `moat docker` with IPv6 networks (issue 16) against a private real dockerd
# (docker_lib.sh) with iptables:false: networks created with `docker network
# create --ipv6 --subnet fd…/64`, containers given IPv6 addresses by
# Docker's IPAM. Without moat nothing isolates them over IPv6 either; with
# the agent following the Engine, IPv6 between containers is judged as IPv4
# is: one network talks, another is dropped, icc=false isolates, the
# gateway (the host) is reachable, and IPv6 beyond moat's networks stays
# closed (no IPv6 masquerade yet). Then published ports over IPv6, with
# the uplink given an IPv6 address: -p 8080:80 (Docker binds 0.0.0.0 and
# ::) from outside and from the host over both families, -p [::1]:8081:80
# on ::1 alone, -p 0.0.0.0:8082:80 published over IPv4 alone.
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

echo "== published ports over IPv6 (Docker's :: and ::1 HostIp bindings)"
# The uplink gets an IPv6 address now (the world check above needed it
# without one), in the test's namespaces only; the agent, started again,
# reads it with the host's facts.
UP6=2001:db8:1::1 OUT6=2001:db8:1::2
dk_host ip -6 addr add "$UP6/64" dev "$DK_UPLINK" nodad &&
  dk_out ip -6 addr add "$OUT6/64" dev "$DK_UPLINK" nodad || bad "IPv6 addresses on the uplink"
page() { echo "mkdir -p /w && echo $1 >/w/index.html && httpd -p 80 -h /w && exec sleep 100000"; }
dk run -d --name pall --network n6a -p 8080:80 "$DK_IMAGE" sh -c "$(page pall)" >/dev/null
dk run -d --name ploop --network n6a -p '[::1]:8081:80' "$DK_IMAGE" sh -c "$(page ploop)" >/dev/null
# -p 0.0.0.0:P:80 is IPv4's alone, as Docker publishes it, though the
# container has an IPv6 address.
dk run -d --name p4only --network n6a -p 0.0.0.0:8082:80 "$DK_IMAGE" sh -c "$(page p4only)" >/dev/null
bindings() { dk inspect -f '{{json .NetworkSettings.Ports}}' "$1"; }
check "dockerd binds 0.0.0.0 and :: for -p 8080:80 ($(bindings pall))" \
  bash -c '[[ $1 == *"\"HostIp\":\"0.0.0.0\",\"HostPort\":\"8080\""* && $1 == *"\"HostIp\":\"::\",\"HostPort\":\"8080\""* ]]' - "$(bindings pall)"
check "dockerd binds ::1 alone for -p [::1]:8081:80 ($(bindings ploop))" \
  bash -c '[ "$1" = "{\"80/tcp\":[{\"HostIp\":\"::1\",\"HostPort\":\"8081\"}]}" ]' - "$(bindings ploop)"
GOT=
said() { echo "    got: ${GOT:-nothing}"; return 1; }
page_of() { GOT=$("$1" curl -g -s -m 2 "http://$2/" 2>/dev/null); }
answers() {  # answers WHERE HOST:PORT NAME: bounded retries, NAME's page
  local i
  for i in 1 2 3 4 5; do page_of "$1" "$2"; [ "$GOT" = "$3" ] && return 0; sleep 0.3; done
  said
}
no_page() { page_of "$1" "$2"; [ -z "$GOT" ] || said; }  # one short try: no page
# dockerd (userland-proxy off) holds each port with a socket that never
# answers, and until the agent identifies pall the bridge's guard keeps it in.
check "before the agent follows pall: [::1]:8080 gives no page on the host" no_page dk_host "[::1]:8080"
check "before the agent follows pall: [$UP6]:8080 gives no page from outside" no_page dk_out "[$UP6]:8080"

nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
  2>"$TMP/agent2.log" &
AGENT=$!
check "the agent, started again, enforces the 8 containers" dk_poll 30 enforced 8
check "pall serves its page on its own IPv6 address (the listener is there)" \
  answers dk_host "[$(ip6_of_c pall)]:80" pall
check "-p 8080:80: outside reaches pall at [$UP6]:8080 (IPv6, the uplink's address)" \
  answers dk_out "[$UP6]:8080" pall
check "-p 8080:80: outside reaches pall at $DK_UPLINK_HOST_IP:8080 (IPv4 still)" \
  answers dk_out "$DK_UPLINK_HOST_IP:8080" pall
check "-p 8080:80: the host reaches pall at [::1]:8080" answers dk_host "[::1]:8080" pall
check "-p 8080:80: the host reaches pall at [$UP6]:8080 (a host IPv6 address)" \
  answers dk_host "[$UP6]:8080" pall
check "-p 8080:80: the host reaches pall at 127.0.0.1:8080" answers dk_host 127.0.0.1:8080 pall
check "-p [::1]:8081:80: the host reaches ploop at [::1]:8081" answers dk_host "[::1]:8081" ploop
check "-p [::1]:8081:80: the host gets nothing at 127.0.0.1:8081" no_page dk_host 127.0.0.1:8081
check "-p [::1]:8081:80: the host gets nothing at [$UP6]:8081 (another host address)" \
  no_page dk_host "[$UP6]:8081"
check "-p [::1]:8081:80: outside gets nothing at [$UP6]:8081" no_page dk_out "[$UP6]:8081"
check "-p [::1]:8081:80: outside gets nothing at $DK_UPLINK_HOST_IP:8081" \
  no_page dk_out "$DK_UPLINK_HOST_IP:8081"
check "-p 0.0.0.0:8082:80: outside reaches p4only at $DK_UPLINK_HOST_IP:8082 (IPv4)" \
  answers dk_out "$DK_UPLINK_HOST_IP:8082" p4only
check "-p 0.0.0.0:8082:80: the host reaches p4only at 127.0.0.1:8082" \
  answers dk_host 127.0.0.1:8082 p4only
check "-p 0.0.0.0:8082:80: nothing at [$UP6]:8082 from outside (not published wider)" \
  no_page dk_out "[$UP6]:8082"
check "-p 0.0.0.0:8082:80: nothing at [::1]:8082 on the host" no_page dk_host "[::1]:8082"
check "-p 0.0.0.0:8082:80: the agent enforces it, no 'not enforced' note" \
  bash -c '! grep -q "not enforced: p4only" "$1"' - "$TMP/agent2.log"
stop_agent
finish
