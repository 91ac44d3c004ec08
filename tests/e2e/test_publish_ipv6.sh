#!/usr/bin/env bash
# Published ports over IPv6 from the host itself (issue 16): the cgroup
# socket hooks send a host process's connect()/sendto() to [::1]:PORT, [::]
# or a host IPv6 address (a gateway) straight to the container's IPv6
# address, show the application the address it asked for (getpeername,
# recvfrom) and keep host processes off the published IPv6 ports (bind
# fails with EPERM). A port published on an IPv4 address only, or by a
# container without IPv6, is not reachable over IPv6. The hooks act in the
# lab host's namespace only. The test's own servers listen on IPv6 only
# (ipv6only=1) and log every peer, so a reply proves the IPv6 path.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/publish-ipv6.json
L=$(unique_lab pub6)
W6=fd6d:6f61:85::2 GW6=fd6d:6f61:85::1  # the lab's IPAM: gateway ::1, web ::2
lab_up "$L" "$F" --no-listeners
SEEN_TCP=$TMP/seen-tcp SEEN_UDP=$TMP/seen-udp
: >"$SEEN_TCP"
: >"$SEEN_UDP"
serve "$L" web tcp 80 TCP6-LISTEN:80,ipv6only=1,reuseaddr,fork \
  "SYSTEM:read -r _; echo \"\$SOCAT_PEERADDR\" >>$SEEN_TCP; echo web"
serve "$L" web udp 53 UDP6-RECVFROM:53,ipv6only=1,fork \
  "SYSTEM:read -r _; echo \"\$SOCAT_PEERADDR\" >>$SEEN_UDP; echo web"
serve "$L" web tcp 80 TCP4-LISTEN:80,reuseaddr,fork 'SYSTEM:read -r _; echo web4'
serve "$L" legacy tcp 80 TCP4-LISTEN:80,reuseaddr,fork 'SYSTEM:read -r _; echo legacy'
py() { "$MOAT" lab exec --lab "$L" "$1" -- timeout 5 python3 -c "$2"; }

# A reply from web, and web's server saw one more connection from the
# network's gateway (the host's address on the bridge), over IPv6. socat
# writes the peer in full: [fd6d:6f61:0085:0000:...].
GW6_PEER="[$(python3 -c 'import ipaddress, sys; print(ipaddress.ip_address(sys.argv[1]).exploded)' $GW6)]"
from_gateway() { grep -cxF "$GW6_PEER" "$1"; }
seen_from_gateway() {  # seen_from_gateway FILE COUNT_BEFORE
  local n
  n=$(from_gateway "$1")
  [ "$n" -gt "$2" ] || { echo "    $1: $n connections from $GW6, had $2"; sed 's/^/      /' "$1"; return 1; }
}
reached_over_v6() {  # reached_over_v6 DESC PROTO IP PORT
  local desc=$1 proto=$2 ip=$3 port=$4 log=$SEEN_TCP before
  [ "$proto" = udp ] && log=$SEEN_UDP
  before=$(from_gateway "$log")
  must_pass "$desc" "$L" host "$proto" "$ip" "$port" web &&
    check "$desc: web's IPv6-only server saw it from $GW6" seen_from_gateway "$log" "$before"
}

echo "the host reaches published ports over IPv6"
reached_over_v6 "host -> [::1]:8080 reaches web" tcp ::1 8080
reached_over_v6 "host -> [$GW6]:8080 (the gateway) reaches web" tcp $GW6 8080
reached_over_v6 "host -> [::1]:5353/udp reaches web" udp ::1 5353
reached_over_v6 "host -> [$GW6]:5353/udp reaches web" udp $GW6 5353
reached_over_v6 "host -> [::1]:8081 ([::1]-only publish) reaches web" tcp ::1 8081
reached_over_v6 "host -> [$GW6]:8083 ($GW6-only publish) reaches web" tcp $GW6 8083
# web's IPv4 server answers "web4": IPv4 still goes to the IPv4 address.
must_pass "host -> 127.0.0.1:8080 still reaches web over IPv4" "$L" host tcp 127.0.0.1 8080 web4
must_pass "host -> 127.0.0.1:8082 reaches web (IPv4-only publish)" "$L" host tcp 127.0.0.1 8082 web4
check "host -> [::]:8080 reaches web (:: is the host itself)" py host "
import socket
s = socket.create_connection(('::', 8080), timeout=2)
s.sendall(b'x\n')
assert s.recv(64) == b'web\n'
assert s.getpeername()[:2] == ('::1', 8080), s.getpeername()"

echo "what is not published over IPv6 stays closed"
must_drop "host -> [::1]:8082 (published on 127.0.0.1 only)" "$L" host tcp ::1 8082
must_drop "host -> [$GW6]:8081 (published on [::1] only)" "$L" host tcp $GW6 8081
must_drop "host -> [::1]:8083 (published on $GW6 only)" "$L" host tcp ::1 8083
must_pass "host -> 127.0.0.1:7070 reaches legacy (IPv4-only container)" "$L" host tcp 127.0.0.1 7070 legacy
must_drop "host -> [::1]:7070 (legacy has no IPv6 address)" "$L" host tcp ::1 7070
must_drop "host -> [::1]:80 (a container port, not published)" "$L" host tcp ::1 80
must_drop "host -> [::ffff:127.0.0.1]:8081 (an IPv6-only publish over IPv4)" "$L" host tcp ::ffff:127.0.0.1 8081

echo "the application sees the address it asked for"
check "getpeername shows [::1]:8080, not web's address" py host "
import socket
s = socket.create_connection(('::1', 8080), timeout=2)
assert s.getpeername()[:2] == ('::1', 8080), s.getpeername()
s.sendall(b'x\n')
assert s.recv(64) == b'web\n'"
check "getpeername shows [$GW6]:8083" py host "
import socket
s = socket.create_connection(('$GW6', 8083), timeout=2)
assert s.getpeername()[:2] == ('$GW6', 8083), s.getpeername()"
check "recvfrom shows [::1]:5353 as the UDP sender, not web's address" py host "
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2)
for _ in range(3):
    s.sendto(b'x\n', ('::1', 5353))
    try:
        data, peer = s.recvfrom(64)
        break
    except socket.timeout:
        pass
assert data == b'web\n' and peer[:2] == ('::1', 5353), (data, peer)"
check "a connected UDP socket: getpeername [::1]:5353, recv gets web" py host "
import socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
s.settimeout(2)
s.connect(('::1', 5353))
assert s.getpeername()[:2] == ('::1', 5353), s.getpeername()
s.send(b'x\n')
assert s.recv(64) == b'web\n'"

echo "host processes cannot bind a published IPv6 port"
# bind_result TARGET PROTO ADDR PORT: "bound", "EPERM" or the error's name
# (an IPv6-only socket: whether [::] also takes the IPv4 port is bind4's).
bind_result() {
  py "$1" "
import errno, socket
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM if '$2' == 'udp' else socket.SOCK_STREAM)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
try:
    s.bind(('$3', $4))
    print('bound')
except OSError as e:
    print(errno.errorcode.get(e.errno, e.errno))"
}
bind_is() {  # bind_is WANT TARGET PROTO ADDR PORT
  local got
  got=$(bind_result "$2" "$3" "$4" "$5")
  [ "$got" = "$1" ] || { echo "    bind [$4]:$5/$3 in $2: $got, wanted $1"; return 1; }
}
check "bind [::1]:8081/tcp fails with EPERM" bind_is EPERM host tcp ::1 8081
check "bind [::1]:8080/tcp fails with EPERM (published on every address)" bind_is EPERM host tcp ::1 8080
check "bind [$GW6]:8083/tcp fails with EPERM" bind_is EPERM host tcp $GW6 8083
check "bind [::]:8081/tcp fails with EPERM" bind_is EPERM host tcp :: 8081
check "bind [::1]:5353/udp fails with EPERM" bind_is EPERM host udp ::1 5353
check "bind [::1]:8090/tcp (not published) works" bind_is bound host tcp ::1 8090
check "bind [$GW6]:8081/tcp (published on [::1] only) works" bind_is bound host tcp $GW6 8081
check "bind [::1]:8082/tcp (published on 127.0.0.1 only) works" bind_is bound host tcp ::1 8082

echo "the hooks act in the lab host's namespace only"
check "outside: [::1]:8080 is not redirected (refused)" py outside "
import socket
try:
    socket.create_connection(('::1', 8080), timeout=2)
except ConnectionRefusedError:
    raise SystemExit(0)
raise SystemExit(1)"
check "outside: bind [::1]:8081 works" bind_is bound outside tcp ::1 8081

echo "status names where each publish went"
"$MOAT" lab status --lab "$L" --json >"$TMP/status.json"
check "status: 8080:80 in ipv4 and ipv6, [::1]:8081:80 in ipv6, 127.0.0.1:8082:80 in ipv4, legacy's in ipv4" python3 -c '
import json, sys
got = {(p["container"], p["publish"]): p.get("families") for p in json.load(open(sys.argv[1]))["published"]}
want = {("web", "8080:80"): ["ipv4", "ipv6"], ("web", "[::1]:8081:80"): ["ipv6"],
        ("web", "127.0.0.1:8082:80"): ["ipv4"], ("web", "5353:53/udp"): ["ipv4", "ipv6"],
        ("web", "[fd6d:6f61:85::1]:8083:80"): ["ipv6"], ("legacy", "7070:80"): ["ipv4"]}
assert got == want, got' "$TMP/status.json"
check "no socket listens in the lab host (no proxy)" host_listens_nothing "$L"
check "no iptables/nftables rule in the lab host" no_firewall_rules "$L"

# NAT66 fixes checksums with bpf_l4_csum_replace(BPF_F_IPV6), which kernels
# before 6.16 reject when the program runs (not when it loads): moat probes
# for it and refuses an apply that needs IPv6 NAT there, rather than drop
# every rewritten packet as nat-rewrite-failed. MOAT_KERNEL_LACKS=nat66 makes
# the probe answer "no" on this kernel.
echo "a kernel without IPv6 NAT refuses the apply, and changes nothing"
HOSTNS=/run/netns/moat-$L-host
I=nat66$$
ON_EXIT+=("$MOAT down --instance $I")  # only if an apply was not refused
kernel_field() {  # kernel_field STATUS_JSON KEY
  python3 -c 'import json, sys; print(json.dumps(json.load(open(sys.argv[1])).get("kernel", {}).get(sys.argv[2])))' "$1" "$2"
}
check "status: this kernel ($(uname -r)) does IPv6 NAT (the real probe)" \
  test "$(kernel_field "$TMP/status.json" nat66)" = true
MOAT_KERNEL_LACKS=nat66 "$MOAT" lab status --lab "$L" --json >"$TMP/status-lacks.json"
check "status: with MOAT_KERNEL_LACKS=nat66 it says not" \
  test "$(kernel_field "$TMP/status-lacks.json" nat66)" = false
# attached STATUS_JSON: what the kernel holds for the lab, as status reads it.
attached() {
  python3 -c 'import json, sys
d = json.load(open(sys.argv[1]))
print(d["policy"]["revision"], d["endpoint_entries"], sorted(p["id"] for p in d["programs"]),
      [(e["name"], e.get("attached")) for e in d["endpoints"] + d["uplinks"]], d["published"])' "$1"
}
refused() {  # refused LOG RC: exit 1 and the message naming the kernel and the way out
  [ "$2" -eq 1 ] && grep -q "needs IPv6 NAT, which this kernel (Linux $(uname -r)) cannot do" "$1" &&
    grep -q "Linux 6.16 or later" "$1" &&
    grep -q 'network "dual" masquerades IPv6 behind the uplinks: "masquerade": false' "$1" &&
    grep -q 'container "web" publishes "8080:80" over IPv6' "$1" &&
    ! grep -q 'container "legacy"' "$1" ||
    { echo "    exit $2"; sed 's/^/    /' "$1"; return 1; }
}
MOAT_KERNEL_LACKS=nat66 "$MOAT" lab apply --lab "$L" >"$TMP/lacks-lab.log" 2>&1
check "moat lab apply: refused, exit 1, naming the kernel requirement and the fix" \
  refused "$TMP/lacks-lab.log" $?
"$MOAT" lab status --lab "$L" --json >"$TMP/status-after.json"
check "the lab's dataplane is as it was (revision, entries, programs, filters, publishes)" \
  test "$(attached "$TMP/status.json")" = "$(attached "$TMP/status-after.json")"
check "no intent left behind" test ! -e "/run/moat/lab-$L/intent.json"
reached_over_v6 "host -> [::1]:8080 still reaches web" tcp ::1 8080
# The lab's file with the lab's interfaces (mve<container>n<attachment>, uplink0).
python3 - "$F" "$TMP/bound.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
for i, c in enumerate(d["containers"]):
    c["networks"] = [{"network": n, "interface": f"mve{i}n{j}"} for j, n in enumerate(c["networks"])]
d["host"] = {"uplinks": ["uplink0"]}
json.dump(d, open(sys.argv[2], "w"))
PY
nsenter --net="$HOSTNS" env MOAT_KERNEL_LACKS=nat66 "$MOAT" apply \
  "$TMP/bound.json" --instance "$I" >"$TMP/lacks-new.log" 2>&1
check "moat apply of a new instance: refused, exit 1" refused "$TMP/lacks-new.log" $?
nsenter --net="$HOSTNS" env MOAT_KERNEL_LACKS=nat66 "$MOAT" apply --dry-run \
  "$TMP/bound.json" --instance "$I" >"$TMP/lacks-dry.log" 2>&1
check "moat apply --dry-run: refused the same way" refused "$TMP/lacks-dry.log" $?
check "the refused instance left no pin, state or lock" \
  test -z "$(ls -d /sys/fs/bpf/moat/"$I" /run/moat/"$I" /run/moat/"$I".lock 2>/dev/null)"
# IPv4 only, the same kernel answer: nothing needs NAT66, the apply goes ahead.
python3 - "$TMP/bound.json" "$TMP/v4only.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d["networks"] = [n for n in d["networks"] if n["name"] == "old"]
d["containers"] = [c for c in d["containers"] if c["name"] == "legacy"]
json.dump(d, open(sys.argv[2], "w"))
PY
v4only_applies() {
  nsenter --net="$HOSTNS" env MOAT_KERNEL_LACKS=nat66 "$MOAT" apply --dry-run \
    "$TMP/v4only.json" --instance "$I" >/dev/null
}
check "an IPv4-only file applies with MOAT_KERNEL_LACKS=nat66 (dry run)" v4only_applies
"$MOAT" down --instance "$I" >/dev/null 2>&1
down_and_finish "$L"
