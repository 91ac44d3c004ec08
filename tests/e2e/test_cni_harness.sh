#!/usr/bin/env bash
# moat-cni chained after Debian's reference plugins (bridge + host-local from
# containernetworking-plugins), driven exactly as a runtime drives them
# (cni_runtime.py: CNI_* environment, configuration on stdin, prevResult
# chaining, DEL in reverse order, cached results), every result and error
# object checked against the spec. In namespaces of the test's own: a "host"
# (where the plugins run, as a runtime's host), an "outside" behind its
# uplink, and one namespace per container.
#   - VERSION; ADD on a 1.0.0 and a 0.4.0 network: results spec-valid and
#     unchanged by moat; traffic: same network passes, the other network is
#     isolated, a published port answers from outside and from the host's
#     localhost, a NetworkPolicy from policyDir selects by CNI_ARGS labels
#   - CHECK passes, and fails (code 101) once moat's filter is removed
#   - DEL, DEL again, DEL without prevResult; GC (1.1.0) keeps only the
#     listed attachments of its network; STATUS
#   - 20 concurrent ADDs: every one in the table and enforced; 20
#     concurrent DELs; the last DEL leaves no pin, record or rule
#   - errors: no prevResult, unknown key, unsupported version, a label
#     policy file that does not parse (the ADD fails, nothing changes)
source "$(dirname "$0")/lib.sh"
command -v python3 >/dev/null && [ -x /usr/lib/cni/bridge ] && [ -x /usr/lib/cni/host-local ] || {
  echo "containernetworking-plugins (/usr/lib/cni) and python3 are needed"; exit 1; }

S=$(echo "cn$$" | cut -c1-8)
INST=cni-$S
HOST=moat-$S-host
OUT=moat-$S-out
RUNTIME="python3 $E2E_DIR/cni_runtime.py"
BIN=$TMP/bin
NSES=()
PIDS=()

ON_EXIT+=("nsenter --net=/run/netns/$HOST '$MOAT' down --instance $INST")
ON_EXIT+=('for p in "${PIDS[@]}"; do kill "$p"; done')
ON_EXIT+=('for n in "${NSES[@]}"; do ip netns del "$n"; done')

mkns() { ip netns add "$1" && NSES+=("$1") && ip -n "$1" link set lo up; }
inhost() { nsenter --net=/run/netns/$HOST "$@"; }
cni() { inhost env CNI_TEST_PATH="$BIN" $RUNTIME "$@" --cache "$TMP/cache"; }

mkdir -p "$BIN" "$TMP/cache" "$TMP/policies"
for p in bridge host-local loopback; do ln -s "/usr/lib/cni/$p" "$BIN/$p"; done
ln -s "$(readlink -f "$MOAT")" "$BIN/moat-cni"

mkns "$HOST" && mkns "$OUT" || { bad "namespaces"; finish; }
ip -n "$HOST" link add up0 type veth peer name up0 netns "$OUT" &&
  ip -n "$HOST" addr add 192.0.2.1/24 dev up0 && ip -n "$OUT" addr add 192.0.2.2/24 dev up0 &&
  ip -n "$HOST" link set up0 up && ip -n "$OUT" link set up0 up &&
  ip -n "$HOST" route add default via 192.0.2.2 || { bad "uplink"; finish; }

# conflist NAME VERSION SUBNET BRIDGE [MOAT-KEYS-JSON]
conflist() {
  cat >"$TMP/$1.conflist" <<EOF
{"cniVersion": "$2", "name": "$1", "plugins": [
  {"type": "bridge", "bridge": "$4", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "dataDir": "$TMP/ipam",
            "ranges": [[{"subnet": "$3"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "moat-cni", "instance": "$INST", "uplinks": ["up0"], "policyDir": "$TMP/policies",
   "capabilities": {"portMappings": true}${5:+, $5}}]}
EOF
}
conflist n1 1.0.0 10.91.1.0/24 "br-$S-1"
conflist n2 0.4.0 10.91.2.0/24 "br-$S-2"
conflist n3 1.0.0 10.91.3.0/24 "br-$S-3" '"icc": false, "internal": true'
# GC and STATUS are 1.1.0 verbs; Debian's bridge 1.1.1 refuses 1.1.0, so
# they go to moat alone (--only), as a runtime's per-plugin GC would.
sed 's/"cniVersion": "1.0.0"/"cniVersion": "1.1.0"/' "$TMP/n1.conflist" >"$TMP/n1-11.conflist"

# add NAME NET [ARGS [PORT [cni_runtime options]]]: a container namespace and its ADD.
add() {
  local name=$1 net=$2 args=${3:-} port=${4:-}
  shift 4 2>/dev/null || shift $#
  mkns "moat-$S-$name" || return 1
  cni add --conflist "$TMP/$net.conflist" --netns "/run/netns/moat-$S-$name" \
    --id "id-$S-$name" --args "IgnoreUnknown=1;K8S_POD_NAME=$name${args:+;$args}" \
    ${port:+--port "$port"} "$@" >"$TMP/add-$name.json" 2>"$TMP/add-$name.err"
}
del() {  # del NAME NET [--no-prev]
  cni del --conflist "$TMP/$2.conflist" --netns "/run/netns/moat-$S-$1" --id "id-$S-$1" "${@:3}"
}
ip_of_c() { ip -n "moat-$S-$1" -4 -o addr show dev eth0 | awk '{print $4}' | cut -d/ -f1; }
ip6_of_c() { ip -n "moat-$S-$1" -6 -o addr show dev eth0 scope global | awk '{print $4}' | cut -d/ -f1; }
veth_of() {  # the host side of NAME's eth0
  local idx
  idx=$(ip -n "moat-$S-$1" -o link show dev eth0 | sed -n 's/.*eth0@if\([0-9]*\).*/\1/p')
  ip -n "$HOST" -o link show | awk -F': ' -v i="$idx" '$1 == i {print $2}' | cut -d@ -f1
}
serve_in() {  # serve_in NS PORT REPLY [TCP6]: a socat answering REPLY, waited for
  nsenter --net="/run/netns/$1" timeout 300 socat "${4:-TCP}-LISTEN:$2,fork,reuseaddr" \
    "SYSTEM:echo $3" </dev/null >/dev/null 2>&1 &
  PIDS+=($!)
  local i
  for i in $(seq 100); do
    [ -n "$(ss -N "$1" -H -l -n -t "sport = :$2" 2>/dev/null)" ] && return 0
    sleep 0.05
  done
  return 1
}
ask() {  # ask NS IP PORT EXPECTED [TRIES]: the reply is EXPECTED
  local i got
  for i in $(seq "${5:-3}"); do
    got=$(nsenter --net="/run/netns/$1" timeout 3 socat -T2 - "TCP:$2:$3,connect-timeout=2" \
      </dev/null 2>/dev/null)
    [ "$got" = "$4" ] && return 0
  done
  return 1
}
refused() { ! ask "$1" "$2" "$3" "$4" 1; }
passes() { check "$1" ask "${@:2}"; }
dropped() { check "$1" refused "${@:2}"; }
in_status() {  # in_status NAME...: each is a container of the instance
  local st
  st=$(inhost "$MOAT" status --instance "$INST" --json) || return 1
  for n in "$@"; do
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if any(e.get("container")==sys.argv[1] for e in d["endpoints"]) else 1)' "$n" <<<"$st" || {
      echo "    $n is not in moat status"; return 1; }
  done
}
not_in_status() {  # not_in_status NAME...: none of them is a container of the instance
  local n
  for n in "$@"; do in_status "$n" >/dev/null 2>&1 && { echo "    $n is still in moat status"; return 1; }; done
  return 0
}
has_code() { grep -q "\"code\": *$1[,}]" <<<"$2"; }
no_rules() {
  [ $(( $(ip netns exec "$HOST" iptables-save 2>/dev/null | grep -c '^-A') +
        $(ip netns exec "$HOST" nft list ruleset 2>/dev/null | grep -c chain) )) -eq 0 ]
}
readd() {  # readd NAME NET ARGS: DEL, a new namespace, ADD
  del "$1" n1 >/dev/null && ip netns del "moat-$S-$1" && add "$@"
}
filters_on() {  # filters_on VETH: our programs on both directions
  local v=$1
  [ -n "$(inhost tc filter show dev "$v" ingress 2>/dev/null | grep -i 'bpf')" ] &&
    [ -n "$(inhost tc filter show dev "$v" egress 2>/dev/null | grep -i 'bpf')" ]
}

echo "== VERSION, and ADD on a 1.0.0 and a 0.4.0 network"
check "VERSION of bridge, host-local and moat-cni list 1.0.0" cni version --conflist "$TMP/n1.conflist"
check "moat-cni's VERSION lists 0.4.0, 1.0.0 and 1.1.0" bash -c \
  "echo '{\"cniVersion\":\"1.1.0\"}' | CNI_COMMAND=VERSION '$BIN/moat-cni' | grep -q '\"supportedVersions\":\[\"0.4.0\",\"1.0.0\",\"1.1.0\"\]'"
cat >"$TMP/policies/web.yaml" <<EOF
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress]
  ingress:
  - from: [{podSelector: {matchLabels: {role: client}}}]
EOF
check "ADD web (n1, app=web, -p 8080:80): spec-valid 1.0.0 result, unchanged by moat" \
  add web n1 "app=web" 8080:80/tcp
check "ADD client (n1, role=client)" add client n1 "role=client"
check "ADD other (n1, no label)" add other n1
check "ADD open (n1, no label, -p 8081:80)" add open n1 "" 8081:80/tcp
check "ADD local (n1, -p 127.0.0.1:8082:80: hostIP)" add local n1 "" 127.0.0.1:8082:80/tcp
check "ADD web2 (n1, K8S_POD_NAMESPACE=shop, app=web)" add web2 n1 "K8S_POD_NAMESPACE=shop;app=web"
check "ADD viaargs (n1, role=client in args.cni.labels, none in CNI_ARGS)" add viaargs n1 "" "" --label role=client
check "ADD far (n2, cniVersion 0.4.0): spec-valid 0.4.0 result (ips[].version)" add far n2 "role=client"
grep -q '"version": "4"' "$TMP/add-far.json" 2>/dev/null || grep -q '"version":"4"' "$TMP/add-far.json" ||
  bad "the 0.4.0 result has no ips[].version: $(cat "$TMP/add-far.json")"
for f in "$TMP"/add-*.err; do [ -s "$f" ] && sed 's/^/    /' "$f"; done
check "moat status lists all seven by their K8S_POD_NAME" in_status web client other open web2 viaargs far
WEB=$(ip_of_c web)
serve_in "moat-$S-web" 80 web || bad "listener in web"
serve_in "moat-$S-far" 80 far || bad "listener in far"
serve_in "moat-$S-open" 80 open || bad "listener in open"
serve_in "moat-$S-web2" 80 web2 || bad "listener in web2"
serve_in "moat-$S-local" 80 local || bad "listener in local"
passes "client -> web:80 (same network, allowed by the label policy)" "moat-$S-client" "$WEB" 80 web
dropped "other -> web:80 (same network, no role=client label: the NetworkPolicy drops it)" "moat-$S-other" "$WEB" 80 web
passes "viaargs -> web:80 (role=client from args.cni.labels)" "moat-$S-viaargs" "$WEB" 80 web
passes "other -> web2:80 (app=web, but in namespace shop: the default namespace's policy does not select it)" "moat-$S-other" "$(ip_of_c web2)" 80 web2
check "the host forwards (bridge's isGateway): without moat, far would reach web" \
  bash -c '[ "$(ip netns exec "$1" sysctl -n net.ipv4.ip_forward)" = 1 ]' - "$HOST"
dropped "far -> web:80 (another CNI network: isolated)" "moat-$S-far" "$WEB" 80 web
dropped "web -> far:80 (the other way too)" "moat-$S-web" "$(ip_of_c far)" 80 far
passes "outside -> 192.0.2.1:8081 (open's published port, from outside)" "$OUT" 192.0.2.1 8081 open
passes "host -> 127.0.0.1:8081 (from the host's localhost)" "$HOST" 127.0.0.1 8081 open
dropped "outside -> 192.0.2.1:8080 (web's published port: the policy admits only role=client)" "$OUT" 192.0.2.1 8080 web
passes "host -> 127.0.0.1:8082 (hostIP 127.0.0.1)" "$HOST" 127.0.0.1 8082 local
dropped "outside -> 192.0.2.1:8082 (published on 127.0.0.1 only)" "$OUT" 192.0.2.1 8082 local
check "no iptables or nft rule in the host namespace" no_rules

echo "== per-network options: masquerade (default), icc false and internal"
nsenter --net="/run/netns/$OUT" timeout 300 socat TCP-LISTEN:9000,fork,reuseaddr \
  'SYSTEM:echo $SOCAT_PEERADDR' </dev/null >/dev/null 2>&1 &
PIDS+=($!)
for i in $(seq 100); do [ -n "$(ss -N "$OUT" -H -l -n -t 'sport = :9000')" ] && break; sleep 0.05; done
passes "client -> outside:9000 arrives from the uplink's address (masquerade)" "moat-$S-client" 192.0.2.2 9000 192.0.2.1
check "ADD i1 (n3: icc false, internal)" add i1 n3
check "ADD i2 (n3)" add i2 n3
serve_in "moat-$S-i2" 80 i2 || bad "listener in i2"
dropped "i1 -> i2:80 (icc false)" "moat-$S-i1" "$(ip_of_c i2)" 80 i2
dropped "i1 -> outside:9000 (internal)" "moat-$S-i1" 192.0.2.2 9000 10.91.3.2

echo "== IPv6: dual-stack networks (host-local with an IPv6 range beside the IPv4 one)"
# dualstack NAME V4 V6: n1's conflist with a second range and an IPv6 default route.
dualstack() {
  conflist "$1" 1.0.0 "$2" "br-$S-${1#d}"
  sed -i "s|\"ranges\": \[\[{\"subnet\": \"$2\"}\]\], \"routes\": \[{\"dst\": \"0.0.0.0/0\"}\]|\"ranges\": [[{\"subnet\": \"$2\"}], [{\"subnet\": \"$3\"}]], \"routes\": [{\"dst\": \"0.0.0.0/0\"}, {\"dst\": \"::/0\"}]|" "$TMP/$1.conflist"
  grep -q "$3" "$TMP/$1.conflist"
}
if dualstack d4 10.91.4.0/24 fd6d:6f61:91:4::/64 && dualstack d5 10.91.5.0/24 fd6d:6f61:91:5::/64; then
  ok "dual-stack conflists d4 and d5"
else
  bad "dual-stack conflists"
fi
inhost sysctl -qw net.ipv6.conf.all.forwarding=1
# The uplink's IPv6 address: published ports over IPv6 are reachable there.
UP6=2001:db8:2::1
ip -n "$HOST" addr add "$UP6/64" dev up0 nodad && ip -n "$OUT" addr add 2001:db8:2::2/64 dev up0 nodad ||
  bad "IPv6 addresses on the uplink"
check "ADD x1 (d4, dual-stack)" add x1 d4
check "ADD x2 (d4)" add x2 d4
check "ADD y1 (d5, another dual-stack network)" add y1 d5
X2=$(ip6_of_c x2)
check "x2 has an IPv6 address from host-local ($X2)" bash -c "[[ '$X2' == fd6d:6f61:91:4::* ]]"
check "moat status lists x1, x2 and y1" in_status x1 x2 y1
check "the instance records x2's IPv6 address" bash -c \
  "nsenter --net=/run/netns/$HOST '$MOAT' status --instance $INST --json | grep -q '\"$X2\"'"
serve_in "moat-$S-x2" 80 x2 TCP6 || bad "IPv6 listener in x2"
passes "x1 -> x2:80 over IPv6 (same network)" "moat-$S-x1" "[$X2]" 80 x2
passes "host -> x2:80 over IPv6" "$HOST" "[$X2]" 80 x2
passes "x1 -> x2:80 over IPv4 (the same listener)" "moat-$S-x1" "$(ip_of_c x2)" 80 x2
dropped "y1 -> x2:80 over IPv6 (another network: isolated)" "moat-$S-y1" "[$X2]" 80 x2
dropped "y1 -> x2:80 over IPv4" "moat-$S-y1" "$(ip_of_c x2)" 80 x2

echo "== IPv6: portMappings (portmap's hostIP forms: none, ::1, ::, 0.0.0.0)"
check "ADD w1 (d4, -p 8090:80: no hostIP, both families)" add w1 d4 "" 8090:80/tcp
check "ADD w2 (d4, -p [::1]:8091:80: hostIP ::1)" add w2 d4 "" "[::1]:8091:80/tcp"
check "ADD w3 (d4, -p [::]:8092:80: hostIP ::, every IPv6 address)" add w3 d4 "" "[::]:8092:80/tcp"
for n in w1 w2 w3; do serve_in "moat-$S-$n" 80 "$n" TCP6 || bad "IPv6 listener in $n"; done
passes "outside -> [$UP6]:8090 (w1, over IPv6 at the uplink's address)" "$OUT" "[$UP6]" 8090 w1
passes "outside -> 192.0.2.1:8090 (w1, over IPv4 too)" "$OUT" 192.0.2.1 8090 w1
passes "host -> [::1]:8090 (w1)" "$HOST" "[::1]" 8090 w1
passes "host -> 127.0.0.1:8090 (w1)" "$HOST" 127.0.0.1 8090 w1
passes "host -> [::1]:8091 (w2, hostIP ::1)" "$HOST" "[::1]" 8091 w2
dropped "host -> 127.0.0.1:8091 (w2 is published on ::1 only)" "$HOST" 127.0.0.1 8091 w2
dropped "host -> [$UP6]:8091 (another host address)" "$HOST" "[$UP6]" 8091 w2
dropped "outside -> [$UP6]:8091" "$OUT" "[$UP6]" 8091 w2
passes "outside -> [$UP6]:8092 (w3, hostIP ::)" "$OUT" "[$UP6]" 8092 w3
dropped "outside -> 192.0.2.1:8092 (w3 is published over IPv6 only)" "$OUT" 192.0.2.1 8092 w3
check "ADD w4 (d4, -p 0.0.0.0:8093:80: hostIP 0.0.0.0, every IPv4 address)" \
  add w4 d4 "" 0.0.0.0:8093:80/tcp
serve_in "moat-$S-w4" 80 w4 TCP6 || bad "IPv6 listener in w4"
passes "outside -> 192.0.2.1:8093 (w4, hostIP 0.0.0.0)" "$OUT" 192.0.2.1 8093 w4
passes "host -> 127.0.0.1:8093 (w4)" "$HOST" 127.0.0.1 8093 w4
dropped "outside -> [$UP6]:8093 (w4 is published over IPv4 only, as portmap does)" \
  "$OUT" "[$UP6]" 8093 w4
dropped "host -> [::1]:8093 (w4: IPv4 only)" "$HOST" "[::1]" 8093 w4
! add w5 n1 "" "[::1]:8094:80/tcp"
out=$(cat "$TMP/add-w5.json")
check "ADD w5 (n1 without IPv6, hostIP ::1): code 7, the container has no IPv6 address" \
  bash -c 'grep -q "\"code\": *7," <<<"$1" && grep -q "no IPv6 address on network n1" <<<"$1"' - "$out"
check "w5 is not enforced" not_in_status w5
for n in w1 w2 w3 w4; do del "$n" d4 >/dev/null; done
del w5 n1 --no-prev >/dev/null
check "DEL w1, w2, w3, w4: gone from moat status" not_in_status w1 w2 w3 w4
for n in x1 x2; do del "$n" d4 >/dev/null; done
del y1 d5 >/dev/null
check "DEL x1, x2, y1: gone from moat status" not_in_status x1 x2 y1

echo "== CHECK"
check "CHECK web passes" cni check --conflist "$TMP/n1.conflist" --netns "/run/netns/moat-$S-web" --id "id-$S-web"
V=$(veth_of client)
inhost tc filter del dev "$V" ingress 2>/dev/null
out=$(cni check --conflist "$TMP/n1.conflist" --netns "/run/netns/moat-$S-client" --id "id-$S-client")
check "CHECK client fails with code 101 once moat's filter on $V is gone" has_code 101 "$out"
check "DEL and ADD client again (a new namespace)" readd client n1 role=client
check "CHECK client passes again" cni check --conflist "$TMP/n1.conflist" --netns "/run/netns/moat-$S-client" --id "id-$S-client"
check "client's new veth runs moat's programs both ways" filters_on "$(veth_of client)"

echo "== errors, as CNI error objects"
noprev=$(inhost env CNI_COMMAND=ADD CNI_CONTAINERID=x1 CNI_NETNS=/run/netns/moat-$S-web CNI_IFNAME=eth0 \
  CNI_PATH="$BIN" "$BIN/moat-cni" <<<'{"cniVersion":"1.0.0","name":"n1","type":"moat-cni"}')
check "ADD without prevResult: code 7, says to chain after bridge" \
  bash -c 'grep -q "\"code\":7," <<<"$1" && grep -q "chained after" <<<"$1"' - "$noprev"
unk=$(inhost env CNI_COMMAND=ADD CNI_CONTAINERID=x1 CNI_NETNS=/run/netns/moat-$S-web CNI_IFNAME=eth0 \
  "$BIN/moat-cni" <<<'{"cniVersion":"1.0.0","name":"n1","type":"moat-cni","iccc":false}')
check "an unknown key: code 2 naming it" bash -c 'grep -q "\"code\":2," <<<"$1" && grep -q iccc <<<"$1"' - "$unk"
old=$(inhost env CNI_COMMAND=ADD CNI_CONTAINERID=x1 CNI_NETNS=/run/netns/moat-$S-web CNI_IFNAME=eth0 \
  "$BIN/moat-cni" <<<'{"cniVersion":"0.3.1","name":"n1","type":"moat-cni"}')
check "cniVersion 0.3.1: code 1" has_code 1 "$old"
echo 'kind: NetworkPolicy' >"$TMP/policies/zz-broken.yaml"
before=$(inhost "$MOAT" status --instance "$INST" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))')
add late n1
out=$(cat "$TMP/add-late.json")
check "a policy file that does not parse: the ADD fails with code 100 naming the file" \
  bash -c 'grep -q "\"code\": *100" <<<"$1" && grep -q zz-broken <<<"$1"' - "$out"
after=$(inhost "$MOAT" status --instance "$INST" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["endpoints"]))')
check "the failed ADD changed nothing ($before endpoints before and after)" test "$before" = "$after"
rm -f "$TMP/policies/zz-broken.yaml"
passes "the policy still holds after the failed ADD: client -> web" "moat-$S-client" "$WEB" 80 web
dropped "... and other -> web is still dropped" "moat-$S-other" "$WEB" 80 web

echo "== DEL, GC, STATUS"
check "DEL other" del other n1
check "DEL other again (nothing left to delete)" del other n1
check "DEL web2 with a stale prevResult (another container's)" del web2 n1 --prev-from "$TMP/add-client.json"
check "moat status no longer lists web2" not_in_status web2
del viaargs n1
check "DEL late (its ADD failed) without prevResult" del late n1 --no-prev
check "moat status no longer lists other" not_in_status other
add ghost n1 || bad "ADD ghost"
ip netns del "moat-$S-ghost"  # its veth goes with it; no DEL ever comes
check "a container gone without DEL (its veth with it) does not block the next ADD" add after n1
check "... and is forgotten" not_in_status ghost
del after n1
check "STATUS (1.1.0): moat can serve ADD" cni status --conflist "$TMP/n1-11.conflist" --only moat-cni
add g1 n1 && add g2 n1 || bad "ADD g1, g2"
check "GC (1.1.0) keeping web, client, g1 on n1" cni gc --conflist "$TMP/n1-11.conflist" --only moat-cni \
  --valid "id-$S-web/eth0" --valid "id-$S-client/eth0" --valid "id-$S-g1/eth0"
check "after GC: g2 is gone" not_in_status g2
check "... g1, web, client and far (another network) stay" in_status web client g1 far
del i1 n3; del i2 n3; del local n1
del open n1
del g1 n1; del g2 n1

echo "== 20 concurrent ADDs, then 20 concurrent DELs"
pids=()
for i in $(seq 20); do mkns "moat-$S-p$i"; done
for i in $(seq 20); do
  cni add --conflist "$TMP/n1.conflist" --netns "/run/netns/moat-$S-p$i" --id "id-$S-p$i" \
    --args "IgnoreUnknown=1;K8S_POD_NAME=p$i" >"$TMP/add-p$i.json" 2>"$TMP/add-p$i.err" &
  pids+=($!)
done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
check "all 20 ADDs succeeded" test "$fails" -eq 0
[ "$fails" -eq 0 ] || cat "$TMP"/add-p*.err | head -5
names=()
for i in $(seq 20); do names+=("p$i"); done
check "every one is in moat status (none lost to a concurrent update)" in_status "${names[@]}"
missing=0
for i in $(seq 20); do filters_on "$(veth_of "p$i")" || missing=$((missing + 1)); done
check "every one's veth runs moat's programs both ways ($missing without)" test "$missing" -eq 0
serve_in "moat-$S-p7" 80 p7 || bad "listener in p7"
passes "p3 -> p7:80 (no policy selects p7; icc on)" "moat-$S-p3" "$(ip_of_c p7)" 80 p7
pids=()
for i in $(seq 20); do del "p$i" n1 & pids+=($!); done
fails=0
for p in "${pids[@]}"; do wait "$p" || fails=$((fails + 1)); done
check "all 20 DELs succeeded" test "$fails" -eq 0
check "none of them is left in moat status" not_in_status "${names[@]}"

echo "== the last DEL removes the instance"
for c in web client; do del "$c" n1; done
check "instance still there while far is attached" test -e "/sys/fs/bpf/moat/$INST"
check "DEL far (the last)" del far n2
check "no pin, record or lock of the instance is left" bash -c \
  "[ ! -e /sys/fs/bpf/moat/$INST ] && [ ! -e /run/moat/$INST ] && [ ! -e /run/moat/$INST.lock ]"
left=0
for v in $(ip -n "$HOST" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
  [ -n "$(ip netns exec "$HOST" tc filter show dev "$v" ingress 2>/dev/null)" ] && left=$((left + 1))
done
check "no filter left on any veth of the host ($left)" test "$left" -eq 0
check "DEL far again, with the instance gone: still success" del far n2
finish
