#!/usr/bin/env bash
# Layer-2 ways around isolation (issue 13, items 3 and 4), each tried from a
# container with raw frames and counted with a packet socket in the victim,
# which sees what reaches its interface before its own kernel filters:
#   - ND and MLD with 1,000 bytes of payload from q1 to q2 (icc off);
#   - ARP requests with a 1,000-byte trailer (and plain ones) from q1 to q2;
#   - o1 sending from o2's MAC (with its own IP): the bridge would learn
#     o2's MAC on o1's port and hand o1 the traffic for o2;
#   - o1 sending to a MAC nobody has: the bridge floods it to o2.
# Each has a baseline that shows the counting works (the same kind of frame
# between containers that may talk, or before the attack).
source "$(dirname "$0")/lib.sh"
F=$E2E_DIR/icc-internal.json
L=$(unique_lab l2w)
lab_up "$L" "$F"
ex() { "$MOAT" lab exec --lab "$L" "$@"; }
mac_of() { ex "$1" -- ip -o link show eth0 | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p'; }
Q1=10.77.0.2 Q2=10.77.0.3 O1=10.79.0.2 O2=10.79.0.3 GW_O=10.79.0.1

# frames.py count SECONDS READY MARK: frames carrying MARK that arrive on
# eth0 here (not the ones sent from here) within SECONDS (with $STOP: until
# that file exists, SECONDS at most); count-dst
# SECONDS READY MAC: frames addressed to MAC.
# frames.py send KIND ARGS...: five frames of KIND out of eth0, each with
# the mark "moat-l2-<KIND>" in it.
cat >"$TMP/frames.py" <<'PY'
import os, socket, struct, sys, time
def mac(m): return bytes(int(x, 16) for x in m.split(":"))
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
if sys.argv[1] in ("count", "count-dst"):
    secs, ready = float(sys.argv[2]), sys.argv[3]
    if sys.argv[1] == "count":
        match = lambda d, m=sys.argv[4].encode(): m in d
    else:
        match = lambda d, m=mac(sys.argv[4]): d[:6] == m
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((os.environ.get("IFACE", "eth0"), 0))
    s.settimeout(0.1)
    open(ready, "w").close()
    # With STOP set, SECONDS is only a cap: counting ends 0.5 s after the
    # sender has finished (STOP exists), however slowly it started.
    stop = os.environ.get("STOP")
    end, n = time.time() + secs, 0
    while time.time() < end:
        if stop and os.path.exists(stop):
            end, stop = min(end, time.time() + 0.5), None
        try:
            data, addr = s.recvfrom(65535)
        except socket.timeout:
            continue
        if addr[2] != socket.PACKET_OUTGOING and match(data):
            n += 1
    print(n)
    sys.exit()
kind, args = sys.argv[2], sys.argv[3:]
mark = b"moat-l2-" + kind.encode()
s0 = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s0.bind(("eth0", 0))
src_mac = s0.getsockname()[4]
def ipv4_udp(src, dst):
    udp = struct.pack("!HHHH", 40000, 9, 8 + len(mark), 0) + mark
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    return ip[:10] + struct.pack("!H", csum(ip)) + ip[12:] + udp
if kind in ("arp-trailer", "arp"):
    spa, tpa = args
    arp = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, 1, src_mac, socket.inet_aton(spa),
                      b"\0" * 6, socket.inet_aton(tpa))
    # A plain request carries the mark where a real one carries nothing:
    # in the padding up to 60 bytes.
    tail = mark + b"x" * (1000 if kind == "arp-trailer" else 0)
    frame = b"\xff" * 6 + src_mac + b"\x08\x06" + arp + tail
elif kind in ("ns", "mld"):
    src6 = socket.inet_pton(socket.AF_INET6, args[0])
    body = mark + b"y" * (1000 - len(mark))
    if kind == "ns":
        # A well-formed NS: the target, then one option (of a type nobody
        # knows) over the rest; moat drops options that run past the end.
        body = mark.ljust(16, b"y") + bytes([0x79, 123]) + b"y" * 982
        dst6, dmac, nxt, hop = socket.inet_pton(socket.AF_INET6, "ff02::1"), "33:33:00:00:00:01", 58, 255
        l4 = struct.pack("!BBHI", 135, 0, 0, 0) + body
        ext = b""
    else:
        dst6, dmac, nxt, hop = socket.inet_pton(socket.AF_INET6, "ff02::16"), "33:33:00:00:00:16", 0, 1
        l4 = struct.pack("!BBHHH", 143, 0, 0, 0, 0) + body
        ext = struct.pack("!BB", 58, 0) + b"\x05\x02\x00\x00\x01\x00"  # router alert, PadN
    pseudo = src6 + dst6 + struct.pack("!I3xB", len(l4), 58)
    l4 = l4[:2] + struct.pack("!H", csum(pseudo + l4)) + l4[4:]
    payload = ext + l4
    ip6 = struct.pack("!IHBB", 6 << 28, len(payload), nxt, hop) + src6 + dst6
    frame = mac(dmac) + src_mac + b"\x86\xdd" + ip6 + payload
elif kind == "from-mac":  # SRC_MAC DST_MAC SRC DST
    frame = mac(args[1]) + mac(args[0]) + b"\x08\x00" + ipv4_udp(args[2], args[3])
elif kind == "to-mac":  # DST_MAC SRC DST
    frame = mac(args[0]) + src_mac + b"\x08\x00" + ipv4_udp(args[1], args[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
for _ in range(int(os.environ.get("REPEAT", "5"))):
    s.send(frame)
    time.sleep(0.02)
PY

# arrived VICTIM KIND SENDER ARGS...: how many of SENDER's frames of KIND
# reached VICTIM (a packet socket there counts until the sender is done,
# 15 s at most: a fixed window lost a slow-starting sender on a busy VM).
arrived() {
  local victim=$1 kind=$2 sender=$3 ready="$TMP/ready.$RANDOM" pid iface=eth0
  shift 3
  [ "$victim" = host ] && iface=$BR_O
  ex "$victim" -- env IFACE="$iface" STOP="$ready.stop" python3 "$TMP/frames.py" count 15 "$ready" "moat-l2-$kind" >"$TMP/count" &
  pid=$!
  SERVERS+=("$pid")
  for _ in $(seq 50); do [ -e "$ready" ] && break; sleep 0.1; done
  ex "$sender" -- python3 "$TMP/frames.py" send "$kind" "$@"
  touch "$ready.stop"
  wait "$pid"
  cat "$TMP/count"
}


echo "ND and MLD across icc: false (item 3)"
LLQ1=$(link_local "$L" q1) LLO1=$(link_local "$L" o1)
check "q1 and o1 have link-local addresses" [ -n "$LLQ1" ] && [ -n "$LLO1" ]
for kind in ns mld; do
  n=$(arrived o2 "$kind" o1 "$LLO1")
  check "baseline, icc on: o1's $kind with 1000 bytes reaches o2 (arrived: $n)" [ "${n:-0}" -ge 1 ]
  before=$(drops "$L" icc-disabled)
  n=$(arrived q2 "$kind" q1 "$LLQ1")
  check "q1's $kind with 1000 bytes does not reach q2 (arrived: ${n:-?})" [ "${n:-x}" = 0 ]
  n=$(drops "$L" icc-disabled)
  check "... dropped as icc-disabled ($before -> $n)" [ "$n" -ge $((before + 5)) ]
done

echo "ARP trailers and ARP across icc: false (item 4)"
n=$(arrived o2 arp o1 "$O1" "$O2")
check "baseline, icc on: o1's plain ARP request reaches o2 (arrived: $n)" [ "${n:-0}" -ge 1 ]
before=$(drops "$L" invalid-packet)
n=$(arrived o2 arp-trailer o1 "$O1" "$O2")
check "o1's ARP with a 1000-byte trailer does not reach o2 (arrived: ${n:-?})" [ "${n:-x}" = 0 ]
n=$(drops "$L" invalid-packet)
check "... dropped as invalid-packet ($before -> $n)" [ "$n" -ge $((before + 5)) ]
n=$(arrived q2 arp q1 "$Q1" "$Q2")
check "q1's ARP request does not reach q2 (icc off; arrived: ${n:-?})" [ "${n:-x}" = 0 ]
n=$(arrived q2 arp-trailer q1 "$Q1" "$Q2")
check "q1's ARP with a trailer does not reach q2 (arrived: ${n:-?})" [ "${n:-x}" = 0 ]
must_pass "q1 still reaches its gateway (ARP with the host works)" "$L" q1 icmp 10.77.0.1
must_pass "q2 still reaches its gateway" "$L" q2 icmp 10.77.0.1

echo "MAC ownership (item 4)"
MO1=$(mac_of o1) MO2=$(mac_of o2)
BR_O=$(ex host -- ip -o -4 addr show | grep -F " $GW_O/" | awk '{print $2}')
GWMAC=$(ex host -- ip -o link show dev "$BR_O" | sed -n 's/.*link\/ether \([0-9a-f:]*\).*/\1/p')
check "o1, o2 and their gateway have MACs ($MO1 $MO2 $GWMAC)" [ -n "$MO1" ] && [ -n "$MO2" ] && [ -n "$GWMAC" ]
n=$(arrived host from-mac o1 "$MO1" "$GWMAC" "$O1" "$GW_O")
check "baseline: o1's frames from its own MAC reach the host (arrived: $n)" [ "${n:-0}" -ge 1 ]
# o1 listens for frames addressed to o2's MAC while it sends from o2's MAC
# and the host pings o2: had the bridge learnt o2's MAC on o1's port, the
# host's echo requests for o2 would reach o1 instead.
before=$(drops "$L" spoofed-mac)
ex o1 -- python3 "$TMP/frames.py" count-dst 3.5 "$TMP/steal.ready" "$MO2" >"$TMP/steal.count" &
pid=$!
SERVERS+=("$pid")
for _ in $(seq 50); do [ -e "$TMP/steal.ready" ] && break; sleep 0.1; done
ex host -- ping -n -c1 -W1 "$O2" >/dev/null 2>&1  # the host knows o2's MAC
# For 2 s, o1 sends from o2's MAC every 20 ms, so that o2's own frames
# cannot win its MAC back, while the host pings o2.
ex o1 -- env REPEAT=100 python3 "$TMP/frames.py" send from-mac "$MO2" "$GWMAC" "$O1" "$GW_O" &
spid=$!
SERVERS+=("$spid")
sleep 0.3
ex host -- ping -n -c5 -i0.2 -W1 "$O2" >"$TMP/ping.log" 2>&1
wait "$spid" "$pid"
n=$(drops "$L" spoofed-mac)
check "o1's frames from o2's MAC are dropped as spoofed-mac ($before -> $n)" [ "$n" -ge $((before + 100)) ]
n=$(cat "$TMP/steal.count")
check "o1 receives none of the frames for o2's MAC (arrived: ${n:-?})" [ "${n:-x}" = 0 ]
check "the host still reaches o2 after o1's attempt" grep -q " 0% packet loss" "$TMP/ping.log"
before=$(drops "$L" foreign-mac)
n=$(arrived o2 to-mac o1 02:00:5e:00:99:99 "$O1" "$O2")
check "o1's frames for a MAC nobody has, flooded by the bridge, do not reach o2 (arrived: ${n:-?})" [ "${n:-x}" = 0 ]
n=$(drops "$L" foreign-mac)
check "... dropped as foreign-mac ($before -> $n)" [ "$n" -ge $((before + 5)) ]
must_pass "o1 still reaches o2 (TCP)" "$L" o1 tcp "$O2" 80 o2
must_pass "o2 still reaches o1 (TCP)" "$L" o2 tcp "$O1" 80 o1

down_and_finish "$L"
