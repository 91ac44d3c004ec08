#!/usr/bin/env bash
# The private-dockerd harness (docker_lib.sh) and what Docker 20.10 does with
# iptables:false / userland-proxy:false, before `moat docker` exists: embedded
# DNS works, a published port is NOT reachable from outside (nothing DNATs;
# dockerd only holds the port with a listening socket that never answers),
# the inspect fields the agent needs are there, the host-side veth is found
# from the container's eth0 iflink, the event order, and docker_down leaves
# nothing behind. $1 (moat) is unused. See DOCKER_FACTS.md.
source "$(dirname "$0")/lib.sh"
source "$E2E_DIR/docker_lib.sh"
N=$(echo "dkh$$" | cut -c1-12)

# What the machine looked like before: none of it may change.
machine_state() {
  ls -A /etc/docker 2>/dev/null | sed 's/^/etc-docker /'
  for p in /run/containerd /run/docker /var/run/docker.sock /var/lib/docker; do
    [ -e "$p" ] && echo "exists $p"
  done
  ip -o link show | awk -F': ' '{print "rootlink " $2}' | grep -v '@' | grep -E 'veth|br-|docker|uplink' || true
  return 0
}
MACHINE_BEFORE=$(machine_state)
ROOT_FWD=$(cat /proc/sys/net/ipv4/ip_forward)

t0=$(dk_now)
if docker_up "$N"; then
  ok "docker_up: dockerd $(dk version -f '{{.Server.Version}}') API $(dk version -f '{{.Server.APIVersion}}') answers at $DK_SOCK, moatbox imported (${DK_UP_SECONDS}s)"
else
  bad "docker_up $N"
  finish
fi
D=$DK_DIR
check "dockerd (pid $DK_PID) runs in $DK_HOST_NS and in a private mount namespace" \
  test "$(readlink /proc/$DK_PID/ns/net)" = "net:[$(stat -L -c %i "$DK_NETNS")]" -a \
       "$(readlink /proc/$DK_PID/ns/mnt)" != "$(readlink /proc/self/ns/mnt)"
check "containerd (pid $DK_CTD_PID) is our own, dockerd uses it" \
  dk_poll 5 grep -q "$D/ctd/containerd.sock" "/proc/$DK_CTD_PID/cmdline" "$D/daemon.json"
check "the machine's mount table shows nothing of the run" test -z "$(findmnt -rn -o TARGET | grep -F "$D")"
check "curl --unix-socket $DK_SOCK GET /version: ApiVersion 1.41" \
  bash -c "curl -s --unix-socket '$DK_SOCK' http://d/version | grep -q '\"ApiVersion\":\"1.41\"'"

T0=$(dk_now)
dk network create mnet >/dev/null
dk network create --internal -o com.docker.network.bridge.enable_icc=false inet >/dev/null
nets_exist() { [ "$(dk network inspect mnet inet -f '{{.Name}}' | wc -l)" = 2 ]; }
check "dk network create mnet, inet (internal, icc off)" nets_exist
tr0=$(dk_now)
dk run -d --name ca --network mnet "$DK_IMAGE" sleep 1000 >/dev/null
tr1=$(dk_now)
dk run -d --name cb --network mnet "$DK_IMAGE" sleep 1000 >/dev/null
dk run -d --name web --network mnet -p 8080:80 "$DK_IMAGE" httpd -f -p 80 -h /var/www >/dev/null
dk run -d --name cdef "$DK_IMAGE" sleep 1000 >/dev/null   # default bridge
check "4 containers run (docker run ca: $(dk_secs "$tr0" "$tr1")s)" \
  test "$(dk ps -q | wc -l)" -eq 4

# ---- embedded DNS with iptables:false ----------------------------------------
uses_dns() { dk exec "$1" cat /etc/resolv.conf | grep -q '^nameserver 127.0.0.11$'; }
check "ca's resolv.conf points at the embedded DNS 127.0.0.11" uses_dns ca
pings() { local i; for i in 1 2 3; do dk exec "$1" ping -c1 -W2 "$2" >/dev/null 2>&1 && return 0; done; return 1; }
check "ca pings cb by name" pings ca cb
check "cb pings ca by name" pings cb ca
# The embedded DNS is dockerd's listener on 127.0.0.11:<random> inside the
# container's netns plus iptables NAT rules there, iptables:false or not.
dns_nat_in_container() { dk_cexec "$1" iptables-save -t nat | grep -q -- '-A DOCKER_OUTPUT -d 127.0.0.11/32 -p udp'; }
check "iptables:false still puts DNS NAT rules (DOCKER_OUTPUT) in ca's own netns" dns_nat_in_container ca
IP_CB=$(dk inspect -f '{{.NetworkSettings.Networks.mnet.IPAddress}}' cb)
resolves() { dk exec "$1" nslookup "$2" 127.0.0.11 | grep -q "^Address: $3\$"; }
check "nslookup cb 127.0.0.11 in ca answers $IP_CB" resolves ca cb "$IP_CB"

# ---- published port without moat -------------------------------------------------
IP_WEB=$(dk inspect -f '{{.NetworkSettings.Networks.mnet.IPAddress}}' web)
http_get() {  # http_get CONTAINER|host|out IP PORT -> the body's first line "moatbox" or nothing
  local req='GET / HTTP/1.0\r\n\r\n'
  case $1 in
    host) dk_host curl -s -m 3 "http://$2:$3/" ;;
    out) dk_out curl -s -m 3 "http://$2:$3/" ;;
    *) dk exec "$1" sh -c "printf '$req' | nc -w 2 $2 $3" | tail -1 ;;
  esac
}
serves() { local i; for i in 1 2 3; do [ "$(http_get "$@")" = moatbox ] && return 0; done; return 1; }
check "ca -> web:80 (by name) answers" serves ca web 80
check "ca -> $IP_WEB:80 answers" serves ca "$IP_WEB" 80
check "the host (dockerd's netns) reaches web at $IP_WEB:80 over the bridge" serves host "$IP_WEB" 80
LISTEN=$(dk_host ss -Hltnp "sport = :8080")
held_by_dockerd() { grep -q ' 0.0.0.0:8080 ' <<<"$LISTEN" && grep -q "\"dockerd\",pid=$DK_PID," <<<"$LISTEN"; }
check "-p 8080:80, userland-proxy:false: dockerd itself (pid $DK_PID) listens on 0.0.0.0:8080 [$(echo $LISTEN)]" \
  held_by_dockerd
no_proxy() {
  local p
  for p in $(dk_pids_of "net:[$(stat -L -c %i "$DK_NETNS")]" "" "no-cgroup"); do
    [ "$(cat /proc/$p/comm 2>/dev/null)" = docker-proxy ] && return 1
  done
  return 0
}
check "no docker-proxy process" no_proxy
check "no iptables/nftables rule in dockerd's netns" \
  test "$( (dk_host iptables-save 2>/dev/null; dk_host nft list ruleset 2>/dev/null) | grep -cE '^-A|chain')" -eq 0
# Nothing DNATs: outside -> 198.18.0.1:8080 lands on dockerd's socket, which
# accepts (the kernel completes the handshake) and never answers.
out=$(http_get out "$DK_UPLINK_HOST_IP" 8080)
check "outside -> $DK_UPLINK_HOST_IP:8080 gets no answer without moat (got \"$out\")" test -z "$out"
connects=$(dk_out python3 -c '
import socket
s = socket.create_connection(("'"$DK_UPLINK_HOST_IP"'", 8080), timeout=3)
s.settimeout(2); s.sendall(b"GET / HTTP/1.0\r\n\r\n")
try: print("answered" if s.recv(100) else "closed")
except socket.timeout: print("connected, silent")' 2>&1 | tail -1)
check "  ... the TCP connection is accepted and stays silent (observed: $connects)" test "$connects" = "connected, silent"
out=$(http_get host 127.0.0.1 8080)
check "host -> 127.0.0.1:8080 gets no answer either (got \"$out\")" test -z "$out"
check "dockerd turned ip_forward on in its netns only (root: $ROOT_FWD)" \
  test "$(dk_host cat /proc/sys/net/ipv4/ip_forward)" = 1 -a "$(cat /proc/sys/net/ipv4/ip_forward)" = "$ROOT_FWD"
dk_out ip route add 172.16.0.0/12 via "$DK_UPLINK_HOST_IP"
check "with a route, outside reaches web's own address $IP_WEB:80 directly (no isolation without moat)" \
  serves out "$IP_WEB" 80
dk_out ip route del 172.16.0.0/12 via "$DK_UPLINK_HOST_IP"

# ---- inspect fields the agent needs ------------------------------------------------
NET_ID=$(dk network inspect -f '{{.Id}}' mnet)
check "network mnet: 64-hex Id, Driver bridge, Internal false, Options empty (defaults implied)" \
  test "${#NET_ID}" = 64 -a "$(dk network inspect -f '{{.Driver}} {{.Internal}} {{json .Options}}' mnet)" = "bridge false {}"
check "network inet: Internal true, Options enable_icc \"false\"" \
  test "$(dk network inspect -f '{{.Internal}} {{index .Options "com.docker.network.bridge.enable_icc"}}' inet)" = "true false"
# With iptables:false dockerd forces ip-masq off: the default bridge says
# enable_ip_masquerade "false" although daemon.json does not set ip-masq.
check "network bridge: Options name docker0, enable_icc true, enable_ip_masquerade false (iptables:false)" \
  test "$(dk network inspect -f '{{index .Options "com.docker.network.bridge.name"}} {{index .Options "com.docker.network.bridge.enable_icc"}} {{index .Options "com.docker.network.bridge.enable_ip_masquerade"}}' bridge)" = "docker0 true false"
f='{{with index .NetworkSettings.Networks "mnet"}}{{.NetworkID}} {{.EndpointID}} {{.IPAddress}} {{.MacAddress}}{{end}}'
read -r C_NET C_EP C_IP C_MAC <<<"$(dk inspect -f "$f" ca)"
check "ca on mnet: NetworkID = mnet's Id, EndpointID 64 hex, IPAddress $C_IP, MacAddress $C_MAC" \
  test "$C_NET" = "$NET_ID" -a "${#C_EP}" = 64 -a -n "$C_IP" -a -n "$C_MAC"
PID_CA=$(dk_pid ca)
KEY=$(dk inspect -f '{{.NetworkSettings.SandboxKey}}' ca)
check "SandboxKey $KEY lies under exec-root" test "${KEY#"$D"/exec/netns/}" != "$KEY"
check "SandboxKey is ca's netns (nsfs, same inode as /proc/State.Pid/ns/net) in dockerd's mount ns" \
  test "$(dk_ns stat -f -c %T "$KEY") $(dk_ns stat -L -c %i "$KEY")" = "nsfs $(stat -L -c %i "/proc/$PID_CA/ns/net")"
check "  ... and a plain empty file from the machine's mount namespace" test "$(stat -f -c %T "$KEY")" != nsfs
eth_is() {  # eth_is CONTAINER MAC IP
  dk_cexec "$1" ip -j link show eth0 | grep -q "\"address\":\"$2\"" &&
  dk_cexec "$1" ip -4 -o addr show eth0 | grep -q " $3/"
}
check "eth0 in ca's netns has MAC $C_MAC and address $C_IP" eth_is ca "$C_MAC" "$C_IP"

# ---- the host-side veth ------------------------------------------------------------
BR=$(dk_bridge_of mnet)
check "mnet's bridge is br-<first 12 hex of its Id> ($BR) in dockerd's netns" \
  test "$BR" = "br-${NET_ID:0:12}" -a -n "$(dk_host ip -br link show "$BR" 2>/dev/null)"
for c in ca cb web; do
  V=$(dk_host_veth $c)
  master=$(dk_host ip -j -d link show "$V" 2>/dev/null | python3 -c '
import json,sys; l=json.load(sys.stdin)[0]; print(l.get("master"), l["linkinfo"]["info_kind"])' 2>/dev/null)
  check "$c: eth0 link_index -> host veth $V, a veth enslaved to $BR" test "$master" = "$BR veth"
done
V=$(dk_host_veth cdef)
check "cdef (default network): host veth $V enslaved to docker0" \
  test "$(dk_host ip -j link show "$V" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0].get("master"))')" = docker0

# ---- events ---------------------------------------------------------------------------
dk run -d --name ev --network mnet "$DK_IMAGE" sleep 1000 >/dev/null
dk network connect inet ev
dk network disconnect inet ev
dk stop -t 1 ev >/dev/null
dk rm ev >/dev/null
dk network rm inet >/dev/null
T1=$(dk_now)
dk events --since "$T0" --until "$T1" --format '{{json .}}' >"$TMP/events.json"
EV=$(python3 - "$TMP/events.json" <<'PY'
import json, sys
ids = {}
out = []
for l in open(sys.argv[1]):
    e = json.loads(l)
    a = e["Actor"]["Attributes"]
    if e["Type"] == "container":
        if a.get("name") != "ev" or e["Action"].startswith("exec_"): continue
        out.append("container:" + e["Action"] + (":" + a["signal"] if "signal" in a else ""))
    elif e["Type"] == "network":
        if e["Action"] in ("connect", "disconnect") and a.get("container", "")[:1] and \
           not any(o.startswith("container:") for o in out):
            continue  # before ev exists: the other containers' connects
        if e["Action"] in ("create", "destroy") and a.get("name") != "inet": continue
        out.append("network:" + e["Action"] + ":" + a.get("name", ""))
print(" ".join(out))
PY
)
echo "    events of container ev: $EV"
WANT="network:create:inet container:create network:connect:mnet container:start network:connect:inet network:disconnect:inet network:disconnect:inet container:kill:15 container:kill:9 container:die network:disconnect:mnet container:stop container:destroy network:destroy:inet"
check "event order: create, network connect, start ... kill, die, network disconnect, stop, destroy" test "$EV" = "$WANT"
[ "$EV" = "$WANT" ] || echo "    wanted:                 $WANT"
check "network events carry the container id and the network name" \
  python3 -c '
import json,sys
ev=[json.loads(l) for l in open(sys.argv[1])]
c=[e for e in ev if e["Type"]=="network" and e["Action"]=="connect"]
assert c and all(len(e["Actor"]["ID"])==64 and len(e["Actor"]["Attributes"]["container"])==64
                 and e["Actor"]["Attributes"]["type"]=="bridge" and e["Actor"]["Attributes"]["name"] for e in c)' "$TMP/events.json"

# ---- down: no residue ---------------------------------------------------------------
t1=$(dk_now)
docker_down "$N"
echo "    docker_down took $(dk_secs "$t1" "$(dk_now)")s, the whole run $(dk_secs "$t0" "$(dk_now)")s"
RES=$(dk_residue "$N" "$D")
check "docker_down: no namespace, mount, cgroup, process or directory left${RES:+ [$RES]}" test -z "$RES"
check "docker_down: no process of dockerd's netns or mount ns left" \
  test -z "$(pgrep -a -f "$D" ; ps -o pid= -p "$DK_PID" "$DK_CTD_PID" 2>/dev/null)"
check "the machine's /etc/docker, /run/docker*, /run/containerd, /var/lib/docker and root links are as before" \
  test "$(machine_state)" = "$MACHINE_BEFORE"
check "nothing of the run under /sys/fs/bpf" test -z "$(find /sys/fs/bpf -name "*$N*" 2>/dev/null)"
finish
