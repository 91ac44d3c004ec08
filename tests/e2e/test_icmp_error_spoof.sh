#!/usr/bin/env bash
# An ICMP error is related to a flow only on its way back to the quoted
# packet's source. A container opens a flow of its own (one masqueraded UDP
# packet to the world), then sends destination-unreachable and
# time-exceeded errors quoting that flow, with 300 bytes of payload, to a
# container on another network (an icc=false one) and to one on an internal
# network: none may arrive (issue 13, item 1: they did). The same error
# sent to the flow's real peer still leaves.
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/icc-internal.json
L=$(unique_lab icmp)
lab_up "$L" "$F"
ex() { "$MOAT" lab exec --lab "$L" "$@"; }
WORLD=198.19.0.1
O1=10.79.0.2 Q1=10.77.0.2 V1=10.78.0.2

# count_errors.py SECONDS READY: ICMP errors (type 3 or 11) from o1 (or from
# the uplink address, o1 masqueraded) seen by a raw socket here within SECONDS.
cat >"$TMP/count_errors.py" <<'PY'
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(0.2)
open(sys.argv[2], "w").close()
end, n = time.time() + float(sys.argv[1]), 0
while time.time() < end:
    try:
        pkt = s.recv(65535)
    except socket.timeout:
        continue
    if pkt[20] in (3, 11) and socket.inet_ntoa(pkt[12:16]) in ("10.79.0.2", "198.18.0.1"):
        n += 1
print(n)
PY
# send_error.py DST TYPE: from o1, an ICMP error to DST quoting the reply of
# o1's UDP flow 10.79.0.2:40404 -> 198.19.0.1:80, plus 300 bytes of data.
cat >"$TMP/send_error.py" <<'PY'
import socket, struct, sys
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
dst, typ = sys.argv[1], int(sys.argv[2])
udp = struct.pack("!HHHH", 80, 40404, 8 + 300, 0) + b"s" * 300
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton("198.19.0.1"), socket.inet_aton("10.79.0.2"))
ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
body = struct.pack("!BBHI", typ, 3 if typ == 3 else 0, 0, 0) + ip + udp
body = body[:2] + struct.pack("!H", csum(body)) + body[4:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
for _ in range(5):
    s.sendto(body, (dst, 0))
PY
# The flow: one masqueraded datagram from a fixed port.
ex o1 -- python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("0.0.0.0", 40404)); s.sendto(b"x", ("198.19.0.1", 80))'
flows_out() { "$MOAT" ct list --lab "$L" --json 2>/dev/null | grep -q '40404'; }
check "o1's UDP flow to the world is tracked" flows_out

arrived() {  # arrived WHERE DST TYPE: errors o1 sent to DST that reach WHERE
  local ready="$TMP/ready.$1.$3" out="$TMP/count.$1.$3" pid
  ex "$1" -- python3 "$TMP/count_errors.py" 3 "$ready" >"$out" &
  pid=$!
  for _ in $(seq 50); do [ -e "$ready" ] && break; sleep 0.1; done
  ex o1 -- python3 "$TMP/send_error.py" "$2" "$3"
  wait "$pid"
  cat "$out"
}
for t in 3 11; do
  n=$(arrived q1 $Q1 $t)
  check "type $t from o1 to q1 (another network, icc off) quoting o1's flow does not arrive (arrived: ${n:-?})" \
    [ "${n:-x}" = 0 ]
  n=$(arrived v1 $V1 $t)
  check "type $t from o1 to v1 (internal network) quoting o1's flow does not arrive (arrived: ${n:-?})" \
    [ "${n:-x}" = 0 ]
done
n=$(arrived outside $WORLD 3)
check "the same error to the flow's peer $WORLD leaves (arrived: ${n:-?})" [ "${n:-0}" -gt 0 ]
n=$(drops "$L" network-isolation); check "network-isolation drops counted ($n)" [ "$n" -gt 0 ]
down_and_finish "$L"
