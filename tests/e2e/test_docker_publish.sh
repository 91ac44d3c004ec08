#!/usr/bin/env bash
# Every `docker run -p` form through `moat docker` (private dockerd,
# iptables:false, userland-proxy:false, so without moat none of them
# answers): HOST:CONTAINER, an address of the host (127.0.0.1:...), ranges,
# /udp, a random host port, and a network's host_binding_ipv4. Each port
# answers where Docker promises it and nowhere else: an address-bound port
# stays closed on the host's other addresses, a TCP port does not answer UDP.
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"
N=$(echo "dkp$$" | cut -c1-12)
I="dp$$"
AGENT=""
UDPSRV=""
teardown() {
  [ -n "$UDPSRV" ] && { kill "$UDPSRV" 2>/dev/null; wait "$UDPSRV" 2>/dev/null; }
  if [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; then
    kill -TERM "$AGENT"; wait_exit "$AGENT" 10 || kill -KILL "$AGENT"
  fi
  [ -n "${DK_NETNS:-}" ] && [ -e "$DK_NETNS" ] && nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
  docker_down_all; cleanup
}
trap teardown EXIT
UP=198.18.0.1

docker_up "$N" || { bad "docker_up $N"; finish; }
ok "private dockerd up (${DK_UP_SECONDS}s)"
# page NAME PORT...: serve a page that is NAME on each PORT.
page() {
  local name=$1 p cmd
  cmd="mkdir -p /w && echo $name >/w/index.html"
  shift
  for p in "$@"; do cmd="$cmd && httpd -p $p -h /w"; done
  echo "$cmd && exec sleep 100000"
}
dk network create pn >/dev/null
dk network create -o com.docker.network.bridge.host_binding_ipv4=$UP bound >/dev/null
dk run -d --name plain --network pn -p 8080:80 "$DK_IMAGE" sh -c "$(page plain 80)" >/dev/null
dk run -d --name local --network pn -p 127.0.0.1:8081:80 "$DK_IMAGE" sh -c "$(page local 80)" >/dev/null
dk run -d --name range --network pn -p 8090-8091:80-81 "$DK_IMAGE" sh -c "$(page range 80 81)" >/dev/null
dk run -d --name udp --network pn -p 5300:53/udp "$DK_IMAGE" sleep 100000 >/dev/null
dk run -d --name random --network pn -p 80 "$DK_IMAGE" sh -c "$(page random 80)" >/dev/null
dk run -d --name onup --network bound -p 8095:80 "$DK_IMAGE" sh -c "$(page onup 80)" >/dev/null
RANDOM_PORT=$(dk port random 80/tcp | sed -n 's/^0\.0\.0\.0://p' | head -1)
check "docker gave random a host port ($RANDOM_PORT)" test -n "$RANDOM_PORT"
# A UDP server in udp's namespace: the machine's socat answers pong.
UDP_PID=$(dk_pid udp)
nsenter --net="/proc/$UDP_PID/ns/net" timeout 300 socat UDP4-RECVFROM:53,fork SYSTEM:'echo pong' \
  </dev/null >/dev/null 2>&1 &
UDPSRV=$!

GOT=
said() { echo "    got: ${GOT:-nothing}"; return 1; }
page_of() { GOT=$("$1" curl -s -m 2 "http://$2/" 2>/dev/null); }
answers() {  # answers WHERE HOST:PORT NAME: bounded retries, NAME's page
  local i
  for i in 1 2 3; do page_of "$1" "$2"; [ "$GOT" = "$3" ] && return 0; done
  said
}
no_page() { page_of "$1" "$2"; [ -z "$GOT" ] || said; }  # one short try: no page
udp_ask() { GOT=$(echo ping | "$1" socat -T 2 - "UDP4:$2" 2>/dev/null); }
udp_answers() { local i; for i in 1 2 3; do udp_ask "$@"; [ "$GOT" = pong ] && return 0; done; said; }

check "baseline without moat: 8080 gives no page from outside" no_page dk_out $UP:8080
check "baseline without moat: 5300/udp gives no answer from outside" \
  bash -c "! { echo ping | nsenter --net='$DK_OUT_NETNS' socat -T 2 - UDP4:$UP:5300 2>/dev/null | grep -q pong; }"

nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
  2>"$TMP/agent.log" &
AGENT=$!
enforced() {
  [ "$(nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
       python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null)" = 6 ]
}
check "the agent enforces the 6 containers" dk_poll 30 enforced

check "-p 8080:80: outside reaches plain at $UP:8080" answers dk_out $UP:8080 plain
check "-p 8080:80: the host reaches plain at 127.0.0.1:8080" answers dk_host 127.0.0.1:8080 plain
check "-p 127.0.0.1:8081:80: the host reaches local at 127.0.0.1:8081" answers dk_host 127.0.0.1:8081 local
check "-p 127.0.0.1:8081:80: outside gets nothing at $UP:8081" no_page dk_out $UP:8081
check "-p 8090-8091:80-81: outside reaches range at $UP:8090" answers dk_out $UP:8090 range
check "-p 8090-8091:80-81: outside reaches range at $UP:8091" answers dk_out $UP:8091 range
check "-p 5300:53/udp: outside gets udp's answer at $UP:5300/udp" udp_answers dk_out $UP:5300
check "-p 5300:53/udp: outside gets no TCP page at $UP:5300" no_page dk_out $UP:5300
check "-p 80 (random host port): outside reaches random at $UP:$RANDOM_PORT" \
  answers dk_out "$UP:$RANDOM_PORT" random
check "host_binding_ipv4=$UP, -p 8095:80: outside reaches onup at $UP:8095" answers dk_out $UP:8095 onup
check "host_binding_ipv4=$UP, -p 8095:80: the host gets nothing at 127.0.0.1:8095" \
  no_page dk_host 127.0.0.1:8095
from_ctr() {  # from_ctr CONTAINER HOST:PORT NAME: a container gets NAME's page there
  local i
  for i in 1 2 3; do
    # busybox-static's wget crashes in these containers (exit 139): nc.
    GOT=$(dk exec "$1" sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 2 ${2%:*} ${2#*:}" 2>/dev/null |
      tr -d '\r' | tail -1)
    [ "$GOT" = "$3" ] && return 0
  done
  said
}
check "plain reaches range's published $UP:8090 (another container, through the host)" \
  from_ctr plain $UP:8090 range
check "onup (another network) reaches plain's published $UP:8080" from_ctr onup $UP:8080 plain
sed 's/^/    | /' "$TMP/agent.log" | head -5
finish
