#!/usr/bin/env bash
# The seed stories (/work/shared/seeds 000-004) replayed with the real docker
# CLI against a private dockerd (docker_lib.sh, iptables:false) while
# `moat docker --policies DIR` enforces: what the tutorials promise passes
# and what they promise is closed is dropped, for Compose-labelled services
# segmented by a policy file that is re-read while the agent runs, networks
# joined with `docker network connect`, ports published on a user network
# and on the default bridge, `--network none` and `--network host`
# containers (skipped without disturbing the rest), Docker's embedded DNS
# with aliases, masquerade, hairpin, and no direct route from outside.
# Baselines taken before the agent starts show each drop is moat's: without
# it the same probes pass.
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"
N=$(echo "dks$$" | cut -c1-12)
I="ds$$"
AGENT=""
PEERSRV=""
POL=$TMP/policies
stop_agent() {
  if [ -n "$AGENT" ] && kill -0 "$AGENT" 2>/dev/null; then
    kill -TERM "$AGENT"; wait_exit "$AGENT" 10 || kill -KILL "$AGENT"
  fi
  AGENT=""
}
teardown() {
  stop_agent
  [ -n "$PEERSRV" ] && { kill "$PEERSRV" 2>/dev/null; wait "$PEERSRV" 2>/dev/null; }
  [ -n "${DK_NETNS:-}" ] && [ -e "$DK_NETNS" ] && nsenter --net="$DK_NETNS" "$MOAT" down --instance "$I" >/dev/null 2>&1
  docker_down_all; cleanup
}
trap teardown EXIT

UP=198.18.0.1
WORLD=198.19.0.1
PROJECT=rechnung-app

docker_up "$N" || { bad "docker_up $N"; finish; }
ok "private dockerd up (${DK_UP_SECONDS}s)"

# srv NAME PORT...: a container command serving, on each PORT, a page that is
# its own name (so a probe proves which container answered) and /message.
srv() {
  local name=$1 p cmd="mkdir -p /w && echo $name >/w/index.html && echo 'using container aliases works!' >/w/message"
  shift
  for p in "$@"; do cmd="$cmd && httpd -p $p -h /w"; done
  echo "$cmd && exec sleep 100000"
}
run() {  # run NAME [docker run options...] -- PORT...
  local name=$1 opts=()
  shift
  while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
  shift
  dk run -d --name "$name" "${opts[@]}" "$DK_IMAGE" sh -c "$(srv "$name" "$@")" >/dev/null ||
    bad "docker run $name ${opts[*]}"
}
compose() {  # Compose's labels for a service of the invoice project
  echo "--label com.docker.compose.project=$PROJECT --label com.docker.compose.service=$1"
}

# Seed 000, Beispiel 2: rechnung publishes 5000, sicherheit (6000) and
# datenbank (7000) publish nothing and only rechnung may talk to them.
dk network create rechnungswesen >/dev/null
# shellcheck disable=SC2046
run rechnung --network rechnungswesen -p 5000:5000 $(compose rechnung) -- 5000
# shellcheck disable=SC2046
run sicherheit --network rechnungswesen $(compose sicherheit) -- 6000
# shellcheck disable=SC2046
run datenbank --network rechnungswesen $(compose datenbank) -- 7000
# Seed 001: network-a / network-b, container-a publishing 8080:80.
dk network create network-a >/dev/null
dk network create network-b >/dev/null
run container-a --network network-a --publish 8080:80 -- 80
run container-b --network network-b -- 80
run container-c --network network-b -- 80
# Seeds 002/003: the default bridge, -p 8000:80.
run web -p 8000:80 -- 80
# Seed 004: a custom network, the server known by its name and aliases.
dk network create networking-test >/dev/null
run server --network networking-test --network-alias web-alias --network-alias api-alias -- 8080
run client --network networking-test -- 80

ip_of_c() { dk inspect -f "{{(index .NetworkSettings.Networks \"$2\").IPAddress}}" "$1"; }
gw_of() { dk network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$1"; }
RECHNUNG=$(ip_of_c rechnung rechnungswesen)
SICHERHEIT=$(ip_of_c sicherheit rechnungswesen)
DATENBANK=$(ip_of_c datenbank rechnungswesen)
CA=$(ip_of_c container-a network-a)
CB=$(ip_of_c container-b network-b)
CC=$(ip_of_c container-c network-b)
SERVER=$(ip_of_c server networking-test)
GW_A=$(gw_of network-a)

# cget CONTAINER HOST PORT [SECONDS] [PATH]: what an HTTP GET prints, from
# inside CONTAINER (busybox nc; `timeout` because a port dockerd holds
# accepts and never answers).
cget() {
  dk exec "$1" timeout "${4:-3}" sh -c \
    "printf 'GET /${5:-} HTTP/1.0\r\n\r\n' | nc -w ${4:-3} $2 $3" 2>/dev/null | tr -d '\r'
}
# hget WHERE HOST PORT [SECONDS]: the same with the machine's curl, WHERE
# being dk_out (the world) or dk_host (the Docker host).
hget() { "$1" curl -s -m "${4:-3}" "http://$2:$3/" 2>/dev/null; }
# What must pass is retried (3 tries) and must be answered by the expected
# container; what must be dropped gets one short try and must time out
# while connecting: a refusal would mean the packet got through. On a
# failure the last thing seen is printed.
GOT=
said() { [ -n "$GOT" ] && echo "    got: $(echo "$GOT" | tr '\n' ' ' | cut -c1-200)"; return 1; }
reach() {  # reach SRC HOST PORT WANT: SRC's GET is answered by container WANT
  local i
  for i in 1 2 3; do GOT=$(cget "$1" "$2" "$3"); echo "$GOT" | grep -qx "$4" && return 0; done
  said
}
no_reach() {  # no_reach SRC HOST PORT: SRC's connection is dropped
  GOT=$(dk exec "$1" timeout 4 sh -c "printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 1 $2 $3" 2>&1)
  [ "$GOT" = "nc: timed out" ] || said
}
reach_from() {  # reach_from WHERE HOST PORT WANT
  local i
  for i in 1 2 3; do GOT=$(hget "$1" "$2" "$3"); [ "$GOT" = "$4" ] && return 0; done
  said
}
# curl_connect WHERE HOST PORT: "exit-code connect-time" of one short try.
curl_connect() { "$1" curl -s -o /dev/null -m 1 -w '%{time_connect}' "http://$2:$3/" 2>/dev/null; echo " $?"; }
no_reach_from() {  # no_reach_from WHERE HOST PORT: the connection is never established
  GOT=$(curl_connect "$@")
  [[ $GOT =~ ^0\.0+\ 28$ ]] || said
}
silent_from() {  # silent_from WHERE HOST PORT: connected, but nothing answers
  GOT=$(curl_connect "$@")
  [[ $GOT =~ ^0\.0*[1-9][0-9]*\ 28$ ]] || said
}
pings() { GOT=$(dk exec "$1" ping -c1 -W1 "$2" 2>&1); echo "$GOT" | grep -q ' 1 packets received'; }
reach_ping() { local i; for i in 1 2 3; do pings "$1" "$2" && return 0; done; said; }
no_ping() {
  GOT=$(dk exec "$1" ping -c1 -W1 "$2" 2>&1)
  echo "$GOT" | grep -q ' 0 packets received' || said
}

# The world's server that tells each client the address it sees.
timeout 300 nsenter --net="$DK_OUT_NETNS" socat \
  "TCP-LISTEN:7777,bind=$WORLD,reuseaddr,fork" SYSTEM:'echo $SOCAT_PEERADDR' \
  </dev/null >>"$TMP/peersrv.log" 2>&1 &
PEERSRV=$!
peer_listens() { [ -n "$(ss -N "$DK_OUT_NS" -Hltn 'sport = :7777' 2>/dev/null)" ]; }
check "the world's server listens on $WORLD:7777" dk_poll 5 peer_listens
seen_as() {  # seen_as CONTAINER ADDRESS: the world sees CONTAINER's connection from ADDRESS
  local i
  for i in 1 2 3; do
    GOT=$(dk exec "$1" timeout 3 sh -c "echo x | nc -w 3 $WORLD 7777" 2>&1)
    [ "$GOT" = "$2" ] && return 0
  done
  said
}
# A route from the world into the containers' subnets, as a neighbour on the
# uplink could add: only moat stands between it and the containers.
check "the world gets a route to 172.16.0.0/12 via $UP" dk_out ip route add 172.16.0.0/12 via "$UP"

echo "baselines without moat (nothing isolates, nothing publishes)"
check "sicherheit reaches datenbank:7000" reach sicherheit "$DATENBANK" 7000 datenbank
check "container-b reaches container-a:80 on another network" reach container-b "$CA" 80 container-a
check "the world reaches container-a's own address $CA:80 over its route" reach_from dk_out "$CA" 80 container-a
check "the world reaches sicherheit's own address $SICHERHEIT:6000 over its route" \
  reach_from dk_out "$SICHERHEIT" 6000 sicherheit
check "the world reaches rechnung's own address $RECHNUNG:5000 over its route" \
  reach_from dk_out "$RECHNUNG" 5000 rechnung
ping_out() { dk_out ping -c1 -W2 "$1" >/dev/null 2>&1; }
check "the world pings server's own address $SERVER over its route" ping_out "$SERVER"
check "the host reaches datenbank:7000" reach_from dk_host "$DATENBANK" 7000 datenbank
check "container-a pings container-b on another network" reach_ping container-a "$CB"
check "the world sees container-a as its own address $CA (no masquerade)" seen_as container-a "$CA"
check "the world connects to $UP:5000 but gets no answer (dockerd only holds the port)" \
  silent_from dk_out $UP 5000

# The policy file, Compose labels as selectors: datenbank and sicherheit
# accept only rechnung (the story: "Direkte Anfragen an die Datenbank sind
# nicht gewünscht"). $1: the services datenbank accepts besides rechnung.
write_policy() {
  local extra="" s
  for s in "$@"; do
    extra="$extra, {\"podSelector\": {\"matchLabels\": {\"com.docker.compose.project\": \"$PROJECT\", \"com.docker.compose.service\": \"$s\"}}}"
  done
  mkdir -p "$POL"
  cat >"$POL/invoice.json.tmp" <<EOF
{"policies": [
  {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
   "metadata": {"name": "datenbank-from-rechnung", "namespace": "default"},
   "spec": {"podSelector": {"matchLabels": {"com.docker.compose.project": "$PROJECT", "com.docker.compose.service": "datenbank"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"com.docker.compose.project": "$PROJECT", "com.docker.compose.service": "rechnung"}}}$extra],
                         "ports": [{"protocol": "TCP", "port": 7000}]}]}},
  {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
   "metadata": {"name": "sicherheit-from-rechnung", "namespace": "default"},
   "spec": {"podSelector": {"matchLabels": {"com.docker.compose.project": "$PROJECT", "com.docker.compose.service": "sicherheit"}},
            "policyTypes": ["Ingress"],
            "ingress": [{"from": [{"podSelector": {"matchLabels": {"com.docker.compose.project": "$PROJECT", "com.docker.compose.service": "rechnung"}}}],
                         "ports": [{"protocol": "TCP", "port": 6000}]}]}}
]}
EOF
  # One rename: the agent never reads half a file.
  mv "$POL/invoice.json.tmp" "$POL/invoice.json"
}
write_policy

nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
  --policies "$POL" 2>"$TMP/agent.log" &
AGENT=$!
endpoints() {
  nsenter --net="$DK_NETNS" "$MOAT" status --instance "$I" --json 2>/dev/null |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))' 2>/dev/null
}
enforced() { [ "$(endpoints)" = "$1" ]; }  # enforced N: the instance has N container endpoints
agent_healthy() { kill -0 "$AGENT" 2>/dev/null && ! grep -q 'sync failed' "$TMP/agent.log"; }
check "the agent enforces the 9 containers" dk_poll 30 enforced 9

echo "seed 000: the invoice app, segmented by Compose labels"
check "rechnung reaches datenbank:7000 (allowed)" reach rechnung "$DATENBANK" 7000 datenbank
check "rechnung reaches sicherheit:6000 (allowed)" reach rechnung "$SICHERHEIT" 6000 sicherheit
check "sicherheit does not reach datenbank:7000 (policy)" no_reach sicherheit "$DATENBANK" 7000
check "datenbank does not reach sicherheit:6000 (policy)" no_reach datenbank "$SICHERHEIT" 6000
# "Sicherheit und Datenbank [werden] vom Host System nicht gesehen"
check "the host does not reach datenbank:7000 (policy)" no_reach_from dk_host "$DATENBANK" 7000
check "the host does not reach sicherheit:6000 (policy)" no_reach_from dk_host "$SICHERHEIT" 6000
check "the world reaches rechnung at $UP:5000" reach_from dk_out $UP 5000 rechnung
check "the host reaches rechnung at 127.0.0.1:5000" reach_from dk_host 127.0.0.1 5000 rechnung

# Reload on change: the same file rewritten while the agent runs.
sicherheit_in() { [ -n "$(cget sicherheit "$DATENBANK" 7000 1)" ]; }
sicherheit_out() { no_reach sicherheit "$DATENBANK" 7000; }
write_policy sicherheit
check "policy file changed to allow sicherheit: sicherheit reaches datenbank:7000 within 15 s" \
  dk_poll 15 sicherheit_in
check "... and the answer is datenbank's" reach sicherheit "$DATENBANK" 7000 datenbank
write_policy
check "allow removed again: sicherheit is dropped at datenbank:7000 within 15 s" dk_poll 15 sicherheit_out
check "... while rechnung still reaches datenbank:7000" reach rechnung "$DATENBANK" 7000 datenbank
rm -f "$POL/invoice.json"
check "policy file deleted: sicherheit reaches datenbank:7000 again within 15 s" dk_poll 15 sicherheit_in
write_policy
check "policy file back: sicherheit is dropped again within 15 s" dk_poll 15 sicherheit_out

echo "seed 001: network-a / network-b, docker network connect, --publish"
check "container-b does not reach container-a:80 (another network)" no_reach container-b "$CA" 80
check "container-a does not ping container-b (another network)" no_ping container-a "$CB"
check "container-b reaches container-c:80 (same network)" reach container-b "$CC" 80 container-c
check "the world reaches container-a at $UP:8080 (--publish 8080:80)" reach_from dk_out $UP 8080 container-a
check "the host reaches container-a at 127.0.0.1:8080" reach_from dk_host 127.0.0.1 8080 container-a

echo "seeds 002/003: --network none, --network host, the default bridge"
# once_report: `moat docker --once --json` (with the agent's own options, so
# it has nothing to change) as "skipped N changed BOOL"; moat also counts
# Docker's own host and none networks as skipped.
once_report() {
  nsenter --net="$DK_NETNS" "$MOAT" docker --socket "$DK_SOCK" --instance "$I" --uplink uplink0 \
    --policies "$POL" --once --json >"$TMP/once.json" 2>>"$TMP/once.err" || { echo "exit $?"; return 1; }
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("skipped", d["skipped"], "changed", d["changed"])' \
    "$TMP/once.json" 2>&1
}
once_skips() { GOT=$(once_report); [ "$GOT" = "skipped $(( SKIPPED0 + 2 )) changed False" ] || said; }
SKIPPED0=$(once_report | sed -n 's/^skipped \([0-9]*\) changed False$/\1/p')
check "moat docker --once before: exit 0, nothing to change (skipped ${SKIPPED0:-?})" [ -n "$SKIPPED0" ]
dk run -d --name c1 --network none "$DK_IMAGE" sleep 100000 >/dev/null || bad "docker run --network none"
run hostnet --network host -- 9090
only_lo() { [ "$(dk exec c1 ip -o link show | grep -vc ': lo:')" = 0 ]; }
check "--network none: c1 has no interface but lo" only_lo
sleep 2  # the agent has seen both starts: nothing of them may show up
check "--network none and --network host are skipped: still 9 endpoints" enforced 9
check "... moat docker --once agrees: exit 0, 2 more skipped, nothing to change" once_skips
check "... the agent is alive and logged no failed sync" agent_healthy
check "... and still enforces: container-b does not reach container-a:80" no_reach container-b "$CA" 80
hostnet_listens() { [ -n "$(dk_host ss -Hltn 'sport = :9090')" ]; }
check "--network host: the container's port 9090 listens in the host's namespace" dk_poll 10 hostnet_listens
check "--network host: the host reaches it at 127.0.0.1:9090" reach_from dk_host 127.0.0.1 9090 hostnet
check "--network host: the world reaches it at $UP:9090 (the host's own port)" reach_from dk_out $UP 9090 hostnet
check "default bridge: the world reaches web at $UP:8000 (-p 8000:80)" reach_from dk_out $UP 8000 web
check "default bridge: the host reaches web at 127.0.0.1:8000" reach_from dk_host 127.0.0.1 8000 web
check "default bridge: web does not reach container-a:80 (another network)" no_reach web "$CA" 80

echo "seed 001 again: container-b joins network-a"
dk network connect network-a container-b || bad "docker network connect network-a container-b"
check "the agent enforces container-b's second endpoint (10)" dk_poll 30 enforced 10
check "container-b reaches container-a:80 (network-a now)" dk_poll 10 reach container-b "$CA" 80 container-a
check "container-b still reaches container-c:80 (network-b)" reach container-b "$CC" 80 container-c
check "container-a reaches container-b on network-a" \
  reach_ping container-a "$(ip_of_c container-b network-a)"
check "container-c still does not reach container-a:80" no_reach container-c "$CA" 80

echo "seed 004: embedded DNS, names and aliases"
resolves() {  # resolves CONTAINER NAME IP
  GOT=$(dk exec "$1" nslookup "$2" 2>&1)
  echo "$GOT" | grep -q '^Server:.*127\.0\.0\.11' && echo "$GOT" | grep -q "^Address.*$3\$"
}
for n in server web-alias api-alias; do
  check "client resolves $n to $SERVER" dk_poll 10 resolves client $n "$SERVER"
  check "client pings $n" reach_ping client $n
done
msg() {  # msg NAME: client GETs /message from NAME:8080
  local i
  for i in 1 2 3; do
    GOT=$(cget client "$1" 8080 3 message)
    [ "$(echo "$GOT" | tail -1)" = 'using container aliases works!' ] && return 0
  done
  said
}
check "client GETs server:8080/message by name" msg server
check "client GETs web-alias:8080/message by alias" msg web-alias
check "container-c does not reach server:8080 (another network)" no_reach container-c "$SERVER" 8080

echo "cross-cutting: masquerade, hairpin, published ports via the host, no direct route in"
check "container-a reaches the world, which sees $UP" seen_as container-a $UP
check "web (default bridge) reaches the world, which sees $UP" seen_as web $UP
check "hairpin: rechnung reaches its own published $UP:5000" reach rechnung $UP 5000 rechnung
check "hairpin: sicherheit reaches its network's published $UP:5000" reach sicherheit $UP 5000 rechnung
check "container-c (network-b) reaches container-a's published $UP:8080" reach container-c $UP 8080 container-a
check "container-c reaches container-a's published port at network-a's gateway $GW_A:8080 (seed 001's telnet)" \
  reach container-c "$GW_A" 8080 container-a
check "client (networking-test) reaches web's published $UP:8000" reach client $UP 8000 web
check "the world does not reach container-a's own address $CA:80 (the published container port)" \
  no_reach_from dk_out "$CA" 80
check "the world does not reach sicherheit's own address $SICHERHEIT:6000 (not published)" \
  no_reach_from dk_out "$SICHERHEIT" 6000
check "the world does not reach rechnung's own address $RECHNUNG:5000 (published, but not at this address)" \
  no_reach_from dk_out "$RECHNUNG" 5000
no_ping_out() { GOT=$(dk_out ping -c1 -W1 "$1" 2>&1); echo "$GOT" | grep -q ' 0 received' || said; }
check "the world does not ping server's own address $SERVER" no_ping_out "$SERVER"

echo "observation names Docker's containers, networks and Compose services"
mo() { nsenter --net="$DK_NETNS" "$MOAT" "$@" --instance "$I" --json 2>>"$TMP/obs.err"; }
explained() {  # explained FROM TO PORT ALLOWED: moat explain's verdict, model and kernel agreeing
  GOT=$(mo explain "$1" "$2" "$3" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["allowed"], d["agree"])')
  [ "$GOT" = "$4 True" ] || said
}
check "explain: rechnung -> datenbank 7000/tcp allowed, model and kernel agree" \
  explained rechnung datenbank 7000/tcp True
check "explain: sicherheit -> datenbank 7000/tcp denied, model and kernel agree" \
  explained sicherheit datenbank 7000/tcp False
stats_service() {  # datenbank's counters carry its Compose service and project
  GOT=$(mo stats | python3 -c '
import json, sys
d = json.load(sys.stdin)
a = [x for x in d["attachments"] if x.get("container") == "datenbank"]
print(a[0].get("service"), a[0].get("project"), a[0]["network"]) if a else print("no datenbank")')
  [ "$GOT" = "datenbank $PROJECT rechnungswesen" ] || said
}
check "stats: datenbank's counters name service datenbank of $PROJECT on rechnungswesen" stats_service
no_reach sicherheit "$DATENBANK" 7000 >/dev/null  # one more policy drop, queued for flows
flows_drop() {  # a queued drop names both ends' services
  GOT=$(mo flows --verdict dropped --container datenbank | python3 -c '
import json, sys
for line in sys.stdin:
    e = json.loads(line)
    if e.get("reason") == "policy-default-deny" and e["dst"].get("service") == "datenbank":
        print(e["src"].get("container"), e["src"].get("service"), e["dst"].get("project")); break')
  [ "$GOT" = "sicherheit sicherheit $PROJECT" ] || said
}
check "flows: sicherheit's drop at datenbank names both services and the project" flows_drop
top_names() { GOT=$(nsenter --net="$DK_NETNS" "$MOAT" top --once --instance "$I" 2>&1); echo "$GOT" | grep -q datenbank || said; }
check "top --once lists datenbank" top_names

# serve: the Prometheus exporter in the host's namespace, scraped once.
nsenter --net="$DK_NETNS" "$MOAT" serve --instance "$I" --metrics-addr 127.0.0.1:19464 \
  2>>"$TMP/obs.err" &
SERVE=$!
metrics_name() {
  GOT=$(dk_host curl -s -m 2 http://127.0.0.1:19464/metrics 2>/dev/null | grep '^moat_packets_total{' | grep 'container="datenbank"' | head -1)
  echo "$GOT" | grep -q "service=\"datenbank\"" && echo "$GOT" | grep -q 'network="rechnungswesen"' || said
}
check "serve: /metrics names datenbank's network and Compose service" dk_poll 10 metrics_name
kill -TERM "$SERVE"; wait "$SERVE" 2>/dev/null

check "at the end the agent is alive and logged no failed sync" agent_healthy
sed 's/^/    | /' "$TMP/agent.log" | head -30
finish
