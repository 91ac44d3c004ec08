#!/usr/bin/env bash
# Observation (issue 5): what the kernel counts and reports, checked against
# traffic the test makes itself in a lab of seed 000 (rechnung, sicherheit,
# datenbank on one network; `lab up --no-listeners`, the test's own socats).
#   1. 10 MiB over TCP rechnung -> datenbank shows in `moat stats --json`:
#      the sender's from_container and the receiver's to_container bytes.
#   2. `moat flows --json`: a default-deny drop names the containers and the
#      policy that isolates datenbank, an explicit deny drop names its rule,
#      an admitted connection is a flow_new event with names and its rule.
#   3. `moat serve` /metrics is strict Prometheus text (own parser) and holds
#      exactly the numbers of `moat stats --json`.
#   4. A flood of denied UDP datagrams: every one counted as a drop, events
#      bounded by the per-CPU rate limit, the rest counted as lost, and
#      events + lost = drops.
#   5. `moat top --once` shows the containers' rates, `moat stats` names
#      drop reasons.
# Everything runs in the lab's namespaces: the exporter in the lab host.
source "$(dirname "$0")/lib.sh"
P=$E2E_DIR/policy
F=$REPO/policies/invoice-app.json
L=$(unique_lab obs)
NET=rechnungswesen
R=$(ip_of "$F" rechnung $NET)
S=$(ip_of "$F" sicherheit $NET)
D=$(ip_of "$F" datenbank $NET)
HOSTNS=/run/netns/moat-$L-host
EV_DROP_RATE=$(awk '$2 == "MOAT_EV_DROP_RATE" { print $3 }' "$REPO/bpf/abi.h")
NCPU=$(nproc)
is() { (( $1 )); }  # is "ARITHMETIC": for check, over the script's variables

# stats FILE: `moat stats --json` of the lab into FILE.
stats() {
  "$MOAT" stats --lab "$L" --json >"$1" 2>"$TMP/stats.err" || {
    echo "    moat stats --json failed:"; sed 's/^/      /' "$TMP/stats.err"; return 1; }
}

# sj FILE EXPR: a Python expression over the stats JSON, with
#   c(NAME)      the container's attachment,  d(NAME, DIR) its direction's counters
#   drops_all()  every drop of every attachment and uplink, both directions
sj() {
  python3 - "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
def c(name):
    return [a for a in s["attachments"] if a["container"] == name][0]
def d(name, direction):
    return c(name)["directions"][direction]
def drops_all():
    return sum(v["drops_total"] for a in s["attachments"] + s["uplinks"] for v in a["directions"].values())
print(eval(sys.argv[2]))
PY
}

# drain FILE: every queued flow/drop event (`moat flows --json`, no --follow).
drain() {
  "$MOAT" flows --lab "$L" --json >"$1" 2>"$TMP/flows.err" || {
    echo "    moat flows --json failed:"; sed 's/^/      /' "$TMP/flows.err"; return 1; }
}

# events FILE EXPR: how many events (JSON lines) satisfy the Python
# expression over `e`; `g(e, "a.b")` reads a nested key or None.
events() {
  python3 - "$1" "$2" <<'PY'
import json, sys
def g(e, path):
    for k in path.split("."):
        if not isinstance(e, dict) or k not in e:
            return None
        e = e[k]
    return e
code = compile("(" + sys.argv[2] + ")", "expr", "eval")
n = 0
for line in open(sys.argv[1]):
    if line.strip():
        e = json.loads(line)
        if eval(code, {"g": g}, {"e": e}):
            n += 1
print(n)
PY
}

show_event() {  # show_event FILE EXPR: the first matching event, for the log
  python3 - "$1" "$2" <<'PY'
import json, sys
def g(e, path):
    for k in path.split("."):
        if not isinstance(e, dict) or k not in e:
            return None
        e = e[k]
    return e
for line in open(sys.argv[1]):
    if line.strip():
        e = json.loads(line)
        if eval("(" + sys.argv[2] + ")", {"g": g}, {"e": e}):
            print("    | " + json.dumps(e)[:600]); break
PY
}

lab_up "$L" "$F" --no-listeners
check "datenbank answers on 7000/tcp" \
  serve "$L" datenbank tcp 7000 TCP-LISTEN:7000,reuseaddr,fork 'SYSTEM:read -r _; echo datenbank'
check "sicherheit answers on 6000/tcp" \
  serve "$L" sicherheit tcp 6000 TCP-LISTEN:6000,reuseaddr,fork 'SYSTEM:read -r _; echo sicherheit'
must_pass "rechnung -> datenbank:7000 (no policy yet)" "$L" rechnung tcp "$D" 7000 datenbank

echo "1. a known transfer shows in moat stats --json"
N=$((10 * 1024 * 1024))
BIG=$TMP/big
head -c $N /dev/urandom >"$BIG"
WANT=$(sha256sum <"$BIG" | cut -d' ' -f1)
check "datenbank receives one upload on 9100" \
  serve "$L" datenbank tcp 9100 -u TCP-LISTEN:9100,reuseaddr "CREATE:$TMP/recv"
receiver=$SERVED
stats "$TMP/s1a.json"
check "rechnung sends 10 MiB to datenbank:9100" \
  timeout 60 "$MOAT" lab exec --lab "$L" rechnung -- \
    socat -u "OPEN:$BIG" "TCP:$D:9100,connect-timeout=2"
check "the receiver has written it all and exited" wait_exit "$receiver" 20
check "received intact ($(stat -c %s "$TMP/recv" 2>/dev/null) bytes, sha256)" \
  [ "$(sha256sum <"$TMP/recv" 2>/dev/null | cut -d' ' -f1)" = "$WANT" ]
stats "$TMP/s1b.json"
tx=$(( $(sj "$TMP/s1b.json" 'd("rechnung","from_container")["bytes"]') -
       $(sj "$TMP/s1a.json" 'd("rechnung","from_container")["bytes"]') ))
rx=$(( $(sj "$TMP/s1b.json" 'd("datenbank","to_container")["bytes"]') -
       $(sj "$TMP/s1a.json" 'd("datenbank","to_container")["bytes"]') ))
acks=$(( $(sj "$TMP/s1b.json" 'd("rechnung","to_container")["bytes"]') -
         $(sj "$TMP/s1a.json" 'd("rechnung","to_container")["bytes"]') ))
# Bytes count IP length plus the Ethernet header of every packet that passed.
# Lower bound N: every payload byte crossed once, with headers on top (TCP
# does not retransmit on a veth it has to itself). Upper bound N + 6%: the
# worst case is no segmentation offload at all, 1448 payload bytes in a
# 1514-byte frame (4.6%), plus handshake, FIN and the odd ARP/ND packet;
# with GSO (the veth default) 64 KB super-packets make it ~0.1%.
in_bounds() { [ "$1" -ge "$N" ] && [ "$1" -le $(( N + N * 6 / 100 )) ]; }
pct() { awk -v a="$1" -v n="$N" 'BEGIN { printf "%+.2f%%", (a - n) * 100 / n }'; }
check "rechnung from_container bytes grew by $tx ($(pct "$tx") over $N; want +0..+6%)" in_bounds "$tx"
check "datenbank to_container bytes grew by $rx ($(pct "$rx") over $N; want +0..+6%)" in_bounds "$rx"
# The same packets pass both interfaces (one bridge, no translation): only
# broadcasts of others (ARP, ND) may make the receiver's count differ.
check "sender and receiver count the same packets (|$tx - $rx| <= 4096)" \
  [ $(( tx > rx ? tx - rx : rx - tx )) -le 4096 ]
check "the ACK direction is small: rechnung to_container grew by $acks (< 5% of $N)" \
  is "acks > 0 && acks < N / 20"

echo "5a. moat top --once: rates per container while rechnung streams to datenbank"
check "datenbank sinks a stream on 9101" \
  serve "$L" datenbank tcp 9101 -u TCP-LISTEN:9101,reuseaddr,fork OPEN:/dev/null
# ~100 kB/s for 4 s: 2000 bytes every 20 ms.
timeout 20 "$MOAT" lab exec --lab "$L" rechnung -- python3 -c '
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9101), timeout=2)
print("streaming", flush=True)
end = time.monotonic() + 4
while time.monotonic() < end:
    s.sendall(b"x" * 2000); time.sleep(0.02)
s.close()' "$D" >"$TMP/stream.log" 2>&1 &
stream=$!
SERVERS+=("$stream")
# Measure only once the stream runs: python starts slowly on a busy machine.
for _ in $(seq 100); do grep -q streaming "$TMP/stream.log" 2>/dev/null && break; sleep 0.1; done
sleep 0.3
"$MOAT" top --lab "$L" --once --interval-ms 1500 >"$TMP/top.txt" 2>"$TMP/top.err"
rc=$?
check "moat top --once exits 0" [ "$rc" -eq 0 ]
sed 's/^/    | /' "$TMP/top.txt"
check "the stream ran" wait_exit "$stream" 10
check "top: a table of the three containers on $NET, datenbank receiving, rechnung sending" \
  python3 - "$TMP/top.txt" "$NET" <<'PY'
import re, sys
lines = open(sys.argv[1]).read().splitlines()
net = sys.argv[2]
hdr = [i for i, l in enumerate(lines) if l.startswith("CONTAINER")]
assert hdr, "no header line"
h = lines[hdr[0]]
for col in ("CONTAINER", "NETWORK", "IFACE", "RX pkt/s", "RX B/s", "TX pkt/s", "TX B/s", "DROP/s", "CONNS"):
    assert col in h, "no column " + col
assert lines[0].startswith("moat top - lab-"), "title: " + lines[0]
def num(t):
    m = re.fullmatch(r"([0-9.]+)([kMGT]?)", t)
    assert m, "not a rate: " + t
    return float(m.group(1)) * {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}[m.group(2)]
rows = {}
for l in lines[hdr[0] + 1:]:
    f = l.split()
    if len(f) == 9:
        rows[f[0]] = dict(net=f[1], iface=f[2], rx_pps=num(f[3]), rx_bps=num(f[4]),
                          tx_pps=num(f[5]), tx_bps=num(f[6]), drops=num(f[7]), conns=int(f[8]))
assert set(rows) == {"rechnung", "sicherheit", "datenbank"}, "rows: %s" % sorted(rows)
assert all(r["net"] == net for r in rows.values()), "networks"
db, re_, si = rows["datenbank"], rows["rechnung"], rows["sicherheit"]
# 100 kB/s payload; allow for scheduling on a busy VM, headers on top.
assert 20e3 <= db["rx_bps"] <= 1e6, "datenbank RX B/s %s" % db["rx_bps"]
assert 20e3 <= re_["tx_bps"] <= 1e6, "rechnung TX B/s %s" % re_["tx_bps"]
assert db["rx_pps"] >= 10 and re_["tx_pps"] >= 10, "packet rates"
assert si["rx_bps"] < db["rx_bps"] / 10 and si["tx_bps"] < re_["tx_bps"] / 10, "sicherheit idle"
first = [l.split()[0] for l in lines[hdr[0] + 1:] if l.split()][0]
assert first == "datenbank", "sorted by rx: first row " + first
PY

echo "2. policy verdicts in moat flows --json"
policy_apply "$L" "$P/invoice-policies.json" "$E2E_DIR/observe-deny-policy.json"
drain "$TMP/f2-before.json"  # whatever came before
stats "$TMP/s2a.json"
must_pass "rechnung -> datenbank:7000 (allowed by datenbank-from-rechnung)" "$L" rechnung tcp "$D" 7000 datenbank
must_drop "sicherheit -> datenbank:7000 (default deny)" "$L" sicherheit tcp "$D" 7000
must_drop "rechnung -> sicherheit:6000 (deny rule wins over the allow)" "$L" rechnung tcp "$S" 6000
drain "$TMP/f2.json"
stats "$TMP/s2b.json"
echo "    $(wc -l <"$TMP/f2.json") events drained"
DEFDENY='e["type"] == "drop" and e["verdict"] == "dropped" and e["reason"] == "policy-default-deny"
  and e["protocol"] == "tcp" and g(e, "src.container") == "sicherheit" and g(e, "src.ip") == "'$S'"
  and g(e, "dst.container") == "datenbank" and g(e, "dst.port") == 7000 and g(e, "dst.network") == "'$NET'"
  and e.get("container") in ("sicherheit", "datenbank") and e.get("network") == "'$NET'"
  and {"container": "datenbank", "direction": "ingress", "policies": ["default/datenbank-from-rechnung"]}
      in (e.get("isolated_by") or [])'
check "flows: sicherheit -> datenbank:7000 dropped, policy-default-deny, isolated by default/datenbank-from-rechnung" \
  [ "$(events "$TMP/f2.json" "$DEFDENY")" -ge 1 ]
show_event "$TMP/f2.json" "$DEFDENY"
check "flows: a default-deny drop names no rule (none decided)" \
  [ "$(events "$TMP/f2.json" "$DEFDENY and 'rule' in e")" -eq 0 ]
DENY='e["type"] == "drop" and e["reason"] == "policy-deny"
  and g(e, "src.container") == "rechnung" and g(e, "dst.container") == "sicherheit" and g(e, "dst.port") == 6000
  and g(e, "rule.policy") == "sicherheit-not-from-rechnung" and g(e, "rule.namespace") == "default"
  and g(e, "rule.action") == "deny" and g(e, "rule.direction") == "ingress" and bool(g(e, "rule.text"))'
check "flows: rechnung -> sicherheit:6000 dropped, policy-deny, rule of default/sicherheit-not-from-rechnung" \
  [ "$(events "$TMP/f2.json" "$DENY")" -ge 1 ]
show_event "$TMP/f2.json" "$DENY"
NEW='e["type"] == "flow_new" and e["verdict"] == "allowed" and e["protocol"] == "tcp"
  and g(e, "src.container") == "rechnung" and g(e, "dst.container") == "datenbank" and g(e, "dst.port") == 7000
  and e.get("kind") == "tracked" and e.get("container") in ("rechnung", "datenbank")
  and g(e, "rule.policy") == "datenbank-from-rechnung" and g(e, "rule.action") == "allow"'
check "flows: rechnung -> datenbank:7000 flow_new, tracked, allowed by datenbank-from-rechnung" \
  [ "$(events "$TMP/f2.json" "$NEW")" -ge 1 ]
show_event "$TMP/f2.json" "$NEW"
check "flows: no allowed event for a dropped pair" \
  [ "$(events "$TMP/f2.json" 'e["verdict"] == "allowed" and (g(e, "src.container"), g(e, "dst.container")) in (("sicherheit", "datenbank"), ("rechnung", "sicherheit"))')" -eq 0 ]
hits() {  # hits FILE POLICY ACTION: that policy's rule hits
  sj "$1" 'sum(r["hits"] for r in s["policy_rules"] if r["policy"] == "'"$2"'" and r["action"] == "'"$3"'")'
}
h_allow=$(hits "$TMP/s2b.json" datenbank-from-rechnung allow)
h_deny=$(hits "$TMP/s2b.json" sicherheit-not-from-rechnung deny)
check "stats: the rules that decided count hits (allow datenbank-from-rechnung $h_allow, deny sicherheit-not-from-rechnung $h_deny)" \
  is "h_allow >= 1 && h_deny >= 1"
check "stats: the drops counted by reason as well" \
  [ "$(sj "$TMP/s2b.json" 'd("datenbank","to_container")["drops"]["policy-default-deny"] + d("sicherheit","from_container")["drops"]["policy-default-deny"]')" -gt \
    "$(sj "$TMP/s2a.json" 'd("datenbank","to_container")["drops"]["policy-default-deny"] + d("sicherheit","from_container")["drops"]["policy-default-deny"]')" ]

echo "4. an event flood stays bounded and reports what it lost"
FLOOD=40000
stats "$TMP/s4z.json"
drain "$TMP/f4-before.json"
stats "$TMP/s4a.json"
softnet() {  # packets the kernel dropped from full per-CPU backlogs, all CPUs
  local s=0 a b rest
  while read -r a b rest; do s=$((s + 0x$b)); done </proc/net/softnet_stat
  echo $s
}
sn0=$(softnet)
t0=$(date +%s.%N)
# One datagram first and a pause: the neighbour entry is resolved, so no
# datagram waits in (or overflows) the ARP queue; then the burst.
"$MOAT" lab exec --lab "$L" sicherheit -- timeout 60 python3 -c '
import socket, sys, time
n, a = int(sys.argv[2]), (sys.argv[1], 7001)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sent = 0
def send():
    global sent
    try:
        s.sendto(b"flood-flood-flood-flood-flood-32", a); sent += 1
    except OSError:
        pass
send(); time.sleep(0.3)
for _ in range(n - 1):
    send()
print(sent)' "$D" $FLOOD >"$TMP/flood.out" 2>"$TMP/flood.err"
t1=$(date +%s.%N)
sn1=$(softnet)
sent=$(tail -1 "$TMP/flood.out")
secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
check "sicherheit sent $sent of $FLOOD datagrams to datenbank:7001/udp in $secs s" [ "${sent:-0}" -ge $((FLOOD * 99 / 100)) ]
sleep 0.3
stats "$TMP/s4b.json"
drain "$TMP/f4.json"
stats "$TMP/s4c.json"
delta() { echo $(( $(sj "$TMP/s4b.json" "$1") - $(sj "$TMP/s4a.json" "$1") )); }
counted=$(delta 'd("datenbank","to_container")["drops"]["policy-default-deny"] + d("sicherheit","from_container")["drops"]["policy-default-deny"]')
backlog=$((sn1 - sn0))
# Every datagram that reached moat's program is counted; the only way around
# it is the kernel's own per-CPU backlog drop (softnet_stat), shown if any.
check "drop counters count every datagram: $counted policy-default-deny drops for $sent sent (kernel backlog drops: $backlog)" \
  is "counted <= sent && counted >= sent - backlog"
ev=$(events "$TMP/f4.json" 'e["type"] == "drop" and e["reason"] == "policy-default-deny" and g(e, "dst.port") == 7001')
ev_all=$(events "$TMP/f4.json" 'e["type"] == "drop"')
lost_rate=$(delta 's["events_lost"]["rate_limited"]')
lost_full=$(delta 's["events_lost"]["buffer_full"]')
drops_all=$(delta 'drops_all()')
# The token bucket: MOAT_EV_DROP_RATE per CPU, refilled to that many at most
# once a second. A window of T seconds sees what was left of the last refill
# before it plus at most ceil(T) refills: <= RATE * (ceil(T) + 1) per CPU.
ceil=$(awk -v s="$secs" 'BEGIN { c = int(s); if (c < s) c++; print c }')
bound=$(( EV_DROP_RATE * NCPU * (ceil + 1) ))
check "flows returned $ev drop events for the flood: at most $EV_DROP_RATE/s per CPU ($bound for $secs s on $NCPU CPUs), far fewer than $counted" \
  is "ev <= bound && ev < counted"
# At the start of the burst a CPU holds its last refill minus the few drops
# of the second before: nearly a full bucket is reported.
check "flows returned at least $((EV_DROP_RATE * 9 / 10)) of them (one bucket)" [ "$ev" -ge $((EV_DROP_RATE * 9 / 10)) ]
check "stats: events lost to the rate limit grew by $lost_rate (> 0), buffer full by $lost_full" \
  [ "$lost_rate" -gt 0 ]
# Every drop goes through one exit (bpf/lib/verdict.h) that either queues an
# event or counts it lost: exact, over all attachments, if nothing dropped
# between the first drain and the first stats read, or between the second
# stats read and the last drain (both windows measured by a read on the
# other side: $early and $late, normally 0; their events may come on top).
late=$(( $(sj "$TMP/s4c.json" 'drops_all()') - $(sj "$TMP/s4b.json" 'drops_all()') ))
early=$(( $(sj "$TMP/s4a.json" 'drops_all()') - $(sj "$TMP/s4z.json" 'drops_all()') ))
check "events + lost = drops: $ev_all drop events + $lost_rate rate-limited + $lost_full buffer-full = $((ev_all + lost_rate + lost_full)) vs $drops_all drops (+$early/+$late around the drains)" \
  is "ev_all + lost_rate + lost_full >= drops_all && ev_all + lost_rate + lost_full <= drops_all + early + late"
drain "$TMP/f4-after.json"
check "nothing else queued after the drain: $(wc -l <"$TMP/f4-after.json") events" [ "$(wc -l <"$TMP/f4-after.json")" -le "$late" ]

echo "3. moat serve: /metrics is Prometheus text with the numbers of moat stats"
PORT=19464
timeout 300 nsenter --net="$HOSTNS" "$MOAT" serve --lab "$L" --metrics-addr 127.0.0.1:$PORT \
  >"$TMP/serve-metrics.log" 2>&1 &
exporter=$!
SERVERS+=("$exporter")
check "moat serve listens on 127.0.0.1:$PORT in the lab host" wait_listening "$L" host tcp $PORT
scrape() {  # scrape N: /metrics into $TMP/mN.txt, headers into $TMP/mN.hdr
  nsenter --net="$HOSTNS" curl -sS --max-time 5 -D "$TMP/m$1.hdr" -o "$TMP/m$1.txt" \
    "http://127.0.0.1:$PORT/metrics"
}
PROM_PARSE=$(cat <<'PY'
import json, math, re, sys
# Prometheus text exposition format 0.0.4, strictly.
NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r"[a-zA-Z_][a-zA-Z0-9_]*"
FLOAT = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[+-]?Inf|NaN"
text = open(sys.argv[1], encoding="utf-8").read()
errors = []
if not text.endswith("\n"):
    errors.append("does not end with a newline")
types, helps, samples, seen_series, order = {}, {}, {}, set(), []
def parse_labels(s, ln):
    labels, i = {}, 0
    while i < len(s):
        m = re.match(r"(%s)=\"" % LABEL, s[i:])
        if not m:
            raise ValueError("line %d: bad label at %r" % (ln, s[i:i + 30]))
        name, i, val = m.group(1), i + m.end(), ""
        while True:
            if i >= len(s):
                raise ValueError("line %d: unterminated label value" % ln)
            ch = s[i]
            if ch == "\\":
                nx = s[i + 1:i + 2]
                if nx not in ("\\", '"', "n"):
                    raise ValueError("line %d: bad escape \\%s" % (ln, nx))
                val += {"\\": "\\", '"': '"', "n": "\n"}[nx]; i += 2
            elif ch == '"':
                i += 1; break
            elif ch == "\n":
                raise ValueError("line %d: newline in label value" % ln)
            else:
                val += ch; i += 1
        if name in labels:
            raise ValueError("line %d: label %s twice" % (ln, name))
        if name.startswith("__"):
            raise ValueError("line %d: reserved label name %s" % (ln, name))
        labels[name] = val
        if i < len(s):
            if s[i] != ",":
                raise ValueError("line %d: expected , between labels" % ln)
            i += 1
    return labels
for ln, line in enumerate(text.split("\n")[:-1], 1):
    try:
        if line.startswith("#"):
            m = re.fullmatch(r"# (HELP|TYPE) (%s) (.*)" % NAME, line)
            if not m:
                if re.match(r"#\s*(HELP|TYPE)\b", line):
                    raise ValueError("line %d: malformed %r" % (ln, line))
                continue  # a plain comment
            kind, fam, rest = m.groups()
            if kind == "TYPE":
                if rest not in ("counter", "gauge", "histogram", "summary", "untyped"):
                    raise ValueError("line %d: unknown type %r" % (ln, rest))
                if fam in types:
                    raise ValueError("line %d: second TYPE for %s" % (ln, fam))
                if fam in samples:
                    raise ValueError("line %d: TYPE for %s after its samples" % (ln, fam))
                types[fam] = rest
            else:
                if fam in helps:
                    raise ValueError("line %d: second HELP for %s" % (ln, fam))
                if re.search(r"\\[^\\n]", rest) or rest.endswith("\\") and not rest.endswith("\\\\"):
                    raise ValueError("line %d: bad escape in HELP" % ln)
                helps[fam] = rest
            continue
        if not line.strip():
            raise ValueError("line %d: empty line" % ln)
        m = re.fullmatch(r"(%s)(?:\{(.*)\})? (%s)(?: (-?[0-9]+))?" % (NAME, FLOAT), line)
        if not m:
            raise ValueError("line %d: not a sample: %r" % (ln, line))
        name, lab, val, _ = m.groups()
        labels = parse_labels(lab or "", ln)
        fam = name
        if fam not in types:
            raise ValueError("line %d: sample of %s without a TYPE line before it" % (ln, name))
        if order and order[-1] != fam and fam in samples:
            raise ValueError("line %d: samples of %s are not contiguous" % (ln, fam))
        if not order or order[-1] != fam:
            order.append(fam)
        key = (name, tuple(sorted(labels.items())))
        if key in seen_series:
            raise ValueError("line %d: series %s%s twice" % (ln, name, labels))
        seen_series.add(key)
        v = float(val)
        if types[fam] == "counter" and (math.isnan(v) or v < 0):
            raise ValueError("line %d: counter %s is %s" % (ln, name, val))
        samples.setdefault(fam, []).append({"labels": labels, "value": v})
    except ValueError as e:
        errors.append(str(e))
for fam in types:
    if fam not in helps:
        errors.append("%s has no HELP" % fam)
    if types[fam] == "counter" and not fam.endswith("_total"):
        errors.append("counter %s does not end in _total" % fam)
if errors:
    print("\n".join(errors[:20]), file=sys.stderr)
    sys.exit(1)
json.dump({"types": types, "samples": samples}, open(sys.argv[2], "w"))
PY
)
# compare METRICS_JSON STATS_JSON: every number of one is in the other, equal.
PROM_COMPARE=$(cat <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))["samples"]
s = json.load(open(sys.argv[2]))
want = {}  # (family, frozenset(labels)) -> value, from moat stats --json
FIELDS = {"moat_packets_total": "packets", "moat_bytes_total": "bytes",
          "moat_new_connections_total": "new_connections", "moat_dropped_bytes_total": "drop_bytes"}
def put(fam, labels, v):
    want[(fam, frozenset(labels.items()))] = v
for a in s["attachments"] + s["uplinks"]:
    base = {"interface": a["interface"]}
    if "container" in a:
        base.update(container=a["container"], network=a["network"])
        if a.get("namespace"):
            base["namespace"] = a["namespace"]
        put("moat_active_connections", base, a["active_connections"])
    for dname, c in a["directions"].items():
        lab = dict(base, direction=dname)
        for fam, key in FIELDS.items():
            put(fam, lab, c[key])
        for reason, n in c["drops"].items():
            put("moat_drops_total", dict(lab, reason=reason), n)
for r in s["policy_rules"]:
    put("moat_policy_hits_total", {"policy": r["policy"], "namespace": r["namespace"],
        "direction": r["direction"], "action": r["action"], "rule": r["text"],
        "rule_id": str(r["rule_id"])}, r["hits"])
for cause, n in s["events_lost"].items():
    put("moat_flow_events_lost_total", {"cause": cause}, n)
put("moat_info", {"moat_instance": s["instance"], "policy_revision": str(s["policy_revision"])}, 1)
got = {}
for fam, ss in m.items():
    for x in ss:
        got[(fam, frozenset(x["labels"].items()))] = x["value"]
bad = []
for k, v in want.items():
    if k not in got:
        bad.append("missing in /metrics: %s%s = %s" % (k[0], dict(k[1]), v))
    elif got[k] != v:
        bad.append("differs: %s%s: /metrics %s, stats %s" % (k[0], dict(k[1]), got[k], v))
for k in got:
    if k not in want:
        bad.append("only in /metrics: %s%s" % (k[0], dict(k[1])))
for b in bad[:15]:
    print("    " + b)
print("    %d series compared, %d differences" % (len(want), len(bad)))
sys.exit(1 if bad else 0)
PY
)
# Two scrapes with the same numbers around one `moat stats --json`: nothing
# counted in between, so all three must agree exactly (bounded retries).
consistent() {
  local i
  for i in 1 2 3 4 5; do
    scrape 1 && stats "$TMP/s3.json" && scrape 2 || return 1
    python3 -c "$PROM_PARSE" "$TMP/m1.txt" "$TMP/m1.json" 2>"$TMP/m1.err" || return 0
    python3 -c "$PROM_PARSE" "$TMP/m2.txt" "$TMP/m2.json" 2>/dev/null || return 0
    cmp -s "$TMP/m1.json" "$TMP/m2.json" && return 0
    sleep 1
  done
  echo "    the counters kept changing between scrapes"
  return 1
}
check "scrape /metrics twice with moat stats --json between, same numbers" consistent
check "Content-Type is text/plain; version=0.0.4" \
  grep -qi '^content-type: text/plain; version=0.0.4' "$TMP/m1.hdr"
if python3 -c "$PROM_PARSE" "$TMP/m1.txt" "$TMP/m1.json" 2>"$TMP/m1.err"; then
  ok "/metrics parses as strict Prometheus text ($(grep -vc '^#' "$TMP/m1.txt") samples, $(grep -c '^# TYPE' "$TMP/m1.txt") families)"
else
  bad "/metrics parses as strict Prometheus text"
  sed 's/^/    /' "$TMP/m1.err"
fi
check "/metrics holds exactly the numbers of moat stats --json" \
  python3 -c "$PROM_COMPARE" "$TMP/m1.json" "$TMP/s3.json"
check "/metrics: moat_flow_events_lost_total{cause=\"rate_limited\"} > 0 after the flood" \
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["samples"]; sys.exit(0 if [x for x in m["moat_flow_events_lost_total"] if x["labels"]=={"cause":"rate_limited"} and x["value"]>0] else 1)' "$TMP/m1.json"
check "/metrics: sicherheit's policy-default-deny drops on from_container >= $FLOOD" \
  python3 -c 'import json,sys; m=json.load(open(sys.argv[1]))["samples"]; sys.exit(0 if [x for x in m["moat_drops_total"] if x["labels"].get("container")=="sicherheit" and x["labels"]["direction"]=="from_container" and x["labels"]["reason"]=="policy-default-deny" and x["value"]>=int(sys.argv[2])] else 1)' "$TMP/m1.json" $FLOOD
stop_server "$exporter"
check "moat serve stops on SIGTERM and frees its port" \
  bash -c '! ss -N "moat-$1-host" -H -l -n -t "sport = :$2" | grep -q .' _ "$L" $PORT

echo "5b. moat stats (text) names drop reasons"
"$MOAT" stats --lab "$L" >"$TMP/stats.txt" 2>&1
check "moat stats exits 0" [ $? -eq 0 ]
sed 's/^/    | /' "$TMP/stats.txt" | head -30
# reason_in_row CONTAINER DIRECTION REASON MIN: that row of the text table
# names REASON with a count >= MIN.
reason_in_row() {
  python3 - "$TMP/stats.txt" "$@" <<'PY'
import re, sys
text, who, direction, reason, least = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
cur = None
for line in open(text):
    f = line.split()
    if not f:
        continue
    if not line.startswith(" "):
        cur = f[0]
    if cur == who and direction in f:
        m = re.search(r"(?:^|, )%s (\d+)(?:,|$)" % re.escape(reason), line.split("  ")[-1].strip())
        print("    row: " + line.rstrip())
        sys.exit(0 if m and int(m.group(1)) >= least else 1)
sys.exit(1)
PY
}
check "stats: sicherheit's from_container row names policy-default-deny (>= $FLOOD)" \
  reason_in_row sicherheit from_container policy-default-deny $FLOOD
check "stats: rechnung's from_container row names policy-deny (>= 1)" \
  reason_in_row rechnung from_container policy-deny 1
check "stats: the header has a DROP REASONS column" grep -q 'DROPS .*DROP REASONS' "$TMP/stats.txt"
check "stats: rule hits name the policies; lost events reported" \
  bash -c 'grep -q "datenbank-from-rechnung\|sicherheit-not-from-rechnung" "$1" && grep -Eq "flow events lost: [0-9]+ .*[1-9][0-9]* \(drop events over the rate limit\)" "$1"' _ "$TMP/stats.txt"

# The sweep on a live lab (whether anything expired by now depends on the
# timing of the probes above). That an expired flow is ended with its event
# is BPF_PROG_TEST_RUN's to show (Obs.StoppedFlowsAreEndedByTheReaper).
gc=$("$MOAT" ct gc --lab "$L" --json)
check "ct gc loads the reaper and reports flows_ended, per family too ($gc)" \
  python3 -c 'import json,sys; d=json.loads(sys.argv[1]); f=d["by_family"]
assert d["flows_ended"] >= 0 and f["ipv4"] >= 0 and f["ipv6"] >= 0
assert d["flows_ended"] == f["ipv4"] + f["ipv6"]' "$gc"
# A flow that simply stops: one ping to the internet server (masqueraded,
# so tracked), then nothing. `moat flows --follow` sweeps it once its ICMP
# timeout has passed and shows its end, with the counts of both directions.
ICMP_TIMEOUT=$(awk '$2 == "MOAT_CT_TIMEOUT_ICMP" { print $3 }' "$REPO/bpf/abi.h")
"$MOAT" flows --lab "$L" --json >/dev/null 2>&1   # drain what is queued
timeout $((ICMP_TIMEOUT + 25)) "$MOAT" flows --lab "$L" --follow --json --container rechnung \
  >"$TMP/sweep.json" 2>"$TMP/sweep.err" &
SWEEP=$!
"$MOAT" lab exec --lab "$L" rechnung -- ping -c1 -W3 198.19.0.1 >/dev/null 2>&1
check "a ping from rechnung to the internet server is answered" [ $? -eq 0 ]
ended_icmp() {
  python3 - "$TMP/sweep.json" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    e = json.loads(line)
    if e.get("type") == "flow_end" and e.get("protocol") == "icmp" \
            and e.get("packets") == 1 and e.get("reply_packets") == 1:
        sys.exit(0)
sys.exit(1)
PY
}
for i in $(seq $(( (ICMP_TIMEOUT + 20) * 2 ))); do ended_icmp && break; sleep 0.5; done
check "flows --follow shows the stopped ping's end after its ${ICMP_TIMEOUT}s timeout, 1 packet each way" ended_icmp
[ -s "$TMP/sweep.err" ] && sed 's/^/    flows: /' "$TMP/sweep.err"
kill "$SWEEP" 2>/dev/null; wait "$SWEEP" 2>/dev/null

"$MOAT" ct gc --lab nosuchlab$$ >/dev/null 2>&1
check "ct gc of a missing lab fails and creates nothing" \
  [ $? -ne 0 ] && [ ! -e /sys/fs/bpf/moat/lab-nosuchlab$$ ]

for p in "${SERVERS[@]}"; do stop_server "$p"; done
SERVERS=()
down_and_finish "$L"
