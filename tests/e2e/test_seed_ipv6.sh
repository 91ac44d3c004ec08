#!/usr/bin/env bash
# The three seed scenarios in a dual-stack lab (issue 16): each seed of
# policies/ with "ipv6": true on every network (tests/e2e/seeds-ipv6/), and
# `moat lab probe` run over both families. Every IPv6 probe must observe what
# moat expects: each pair over ICMPv6, TCP and UDP to the containers' IPv6
# addresses, and the published ports over IPv6 from the outside (the
# uplink's IPv6 address), from the host ([::1] and that address) and from
# the containers (their network's IPv6 gateway). Then seed 000's
# segmentation policies on the invoice app, over IPv6. So that no check
# passes vacuously, each seed must yield IPv6 probes that pass and IPv6
# probes that are dropped, and a few cells are pinned by hand, not only by
# moat's own model.
source "$(dirname "$0")/lib.sh"
SEEDS6=$E2E_DIR/seeds-ipv6
UP6=2001:db8:ff::1  # the lab uplink's IPv6 address (outside: ::2)

# The dual-stack copy is the seed itself plus "ipv6": true, so the two cannot drift.
same_as_seed() {  # same_as_seed NAME
  python3 - "$REPO/policies/$1.json" "$SEEDS6/$1.json" <<'PY'
import json, sys
seed, copy = (json.load(open(f)) for f in sys.argv[1:3])
for n in seed["networks"]:
    n["ipv6"] = True
if seed != copy:
    sys.exit(f"    {sys.argv[2]} is not {sys.argv[1]} with \"ipv6\": true on every network")
PY
}

# probe_json LAB: `moat lab probe --json` into $TMP/probe-LAB.json (exit 1
# only reports a mismatch, which the checks below name).
probe_json() {
  local rc
  "$MOAT" lab probe --lab "$1" --json >"$TMP/probe-$1.json" 2>"$TMP/probe-$1.err"
  rc=$?
  if [ "$rc" -gt 1 ] || [ ! -s "$TMP/probe-$1.json" ]; then
    echo "    moat lab probe --json failed (exit $rc)"
    sed 's/^/    /' "$TMP/probe-$1.err"
    return 1
  fi
}

# rows LAB FAMILY CHECK: a Python CHECK over the probe rows of FAMILY
# (`rows`, each a dict as printed, plus `ok` = observed == expected);
# printing names what failed, exit status decides.
rows() {
  python3 - "$TMP/probe-$1.json" "$2" "$3" <<'PY'
import json, sys
path, family, check = sys.argv[1:4]
rows = []
for line in open(path):
    if line.strip():
        r = json.loads(line)
        r["ok"] = r["expected"] == r["observed"]
        rows.append(r)
rows = [r for r in rows if r.get("family", "ipv4") == family]
def show(rs, limit=40):
    for r in rs[:limit]:
        print(f"    {r['from']} -> {r['to']} [{r['ip']}] {r['proto']}/{r['port']}: "
              f"expected {r['expected']}, observed {r['observed']} ({r['detail']})")
    if len(rs) > limit:
        print(f"    ... and {len(rs) - limit} more")
def cell(src, to_prefix, proto, port):
    hit = [r for r in rows if r["from"] == src and r["to"].startswith(to_prefix)
           and r["proto"] == proto and r["port"] == port]
    if not hit:
        print(f"    no {family} probe {src} -> {to_prefix}* {proto}/{port}")
    return hit
sys.exit(0 if eval("(" + check + "\n)") else 1)
PY
}

# All IPv6 probes as expected, with both outcomes among them; the IPv4 ones too.
probe_families() {  # probe_families DESC LAB
  local desc=$1 lab=$2 udp=${3:-}
  check "$desc: IPv6 probes exist (every pair, published ports)" rows "$lab" ipv6 \
    'len(rows) > 0 or print("    no IPv6 probe rows: moat lab probe probed IPv4 only")'
  check "$desc: every IPv6 probe observed as expected" rows "$lab" ipv6 \
    'all(r["ok"] for r in rows) or show([r for r in rows if not r["ok"]]) or False'
  check "$desc: IPv6 probes that pass and IPv6 probes that are dropped, each as expected" \
    rows "$lab" ipv6 '
(lambda p, d: (print(f"    {p} passing, {d} dropped as expected") or True) if p and d
 else print(f"    only {p} passing and {d} dropped as expected") or False)(
    sum(r["ok"] and r["expected"] == "pass" for r in rows),
    sum(r["ok"] and r["expected"] == "drop" for r in rows))'
  check "$desc: IPv6 probes cover icmp, tcp${udp:+, udp}" rows "$lab" ipv6 "
{r['proto'] for r in rows} >= {'icmp', 'tcp'${udp:+, 'udp'}} or
print('    protocols probed:', sorted({r['proto'] for r in rows})) or False"
  check "$desc: every IPv4 probe observed as expected" rows "$lab" ipv4 \
    '(len(rows) > 0 and all(r["ok"] for r in rows)) or show([r for r in rows if not r["ok"]]) or False'
}

# Published ports over IPv6 from every kind of source.
published_sources() {  # published_sources DESC LAB
  check "$1: IPv6 published ports probed from outside, host@::1, host@$UP6 and containers@gateway6" \
    rows "$2" ipv6 "
(lambda srcs: {'outside', 'host@::1', 'host@$UP6'} <= srcs and
              any(s.endswith('@gateway6') for s in srcs) or print('    sources:', sorted(srcs)) or False)(
    {r['from'] for r in rows if ' -p ' in r['to']})"
}

# A cell pinned by hand: every probe of it expected and observed WANT.
pinned() {  # pinned DESC LAB SRC TO_PREFIX PROTO PORT WANT
  check "$1: $3 -> $4 $5/$6 over IPv6: $7" rows "$2" ipv6 "
(lambda hit: bool(hit) and all(r['expected'] == r['observed'] == '$7' for r in hit)
             or show(hit) or False)(cell('$3', '$4', '$5', $6))"
}

echo "seed 000 (segmentation) dual-stack"
check "seeds-ipv6/segmentation.json is the seed with ipv6" same_as_seed segmentation
L=$(unique_lab s6seg)
lab_up "$L" "$SEEDS6/segmentation.json"
check "probe runs" probe_json "$L"
probe_families "segmentation" "$L" udp
pinned "segmentation" "$L" container-a container-b@ tcp 80 pass
pinned "segmentation" "$L" container-a container-b@ udp 80 pass
pinned "segmentation" "$L" container-d container-c@ icmp 0 pass
pinned "segmentation" "$L" container-a container-c@ tcp 80 drop
pinned "segmentation" "$L" container-c container-b@ icmp 0 drop
pinned "segmentation" "$L" host container-d@ tcp 80 pass
pinned "segmentation" "$L" outside "container-a 80/tcp (not published)" tcp 80 drop
lab_down "$L"

echo "multi-network dual-stack"
check "seeds-ipv6/multi-network.json is the seed with ipv6" same_as_seed multi-network
L=$(unique_lab s6multi)
lab_up "$L" "$SEEDS6/multi-network.json"
check "probe runs" probe_json "$L"
probe_families "multi-network" "$L"
published_sources "multi-network" "$L"
pinned "multi-network" "$L" container-b container-a@network-b icmp 0 pass
pinned "multi-network" "$L" container-c container-a@network-a icmp 0 pass
pinned "multi-network" "$L" container-b container-c@ tcp 80 drop
pinned "multi-network" "$L" container-c container-b@ tcp 80 drop
pinned "multi-network" "$L" container-b container-a@network-a icmp 0 drop
pinned "multi-network" "$L" outside "container-a -p 8080:80" tcp 8080 pass
pinned "multi-network" "$L" host@::1 "container-a -p 8080:80" tcp 8080 pass
pinned "multi-network" "$L" "host@$UP6" "container-a -p 8080:80" tcp 8080 pass
pinned "multi-network" "$L" container-b@gateway6 "container-a -p 8080:80" tcp 8080 pass
pinned "multi-network" "$L" container-c@gateway6 "container-a -p 8080:80" tcp 8080 pass
pinned "multi-network" "$L" outside "container-b 80/tcp (not published)" tcp 80 drop
lab_down "$L"

echo "invoice app dual-stack"
check "seeds-ipv6/invoice-app.json is the seed with ipv6" same_as_seed invoice-app
L=$(unique_lab s6inv)
lab_up "$L" "$SEEDS6/invoice-app.json"
check "probe runs" probe_json "$L"
probe_families "invoice app" "$L"
published_sources "invoice app" "$L"
pinned "invoice app" "$L" sicherheit datenbank@ tcp 7000 pass
pinned "invoice app" "$L" outside "rechnung -p 5000:5000" tcp 5000 pass
pinned "invoice app" "$L" datenbank@gateway6 "rechnung -p 5000:5000" tcp 5000 pass
pinned "invoice app" "$L" outside "datenbank 7000/tcp (not published)" tcp 7000 drop
pinned "invoice app" "$L" host@::1 "sicherheit 6000/tcp (not published)" tcp 6000 drop

echo "invoice app with seed 000's segmentation policies, over IPv6"
policy_apply "$L" "$REPO/policies/segmentation-policies.json"
check "probe runs" probe_json "$L"
probe_families "invoice app + policies" "$L"
published_sources "invoice app + policies" "$L"
pinned "policies" "$L" rechnung datenbank@ tcp 7000 pass
pinned "policies" "$L" rechnung sicherheit@ tcp 6000 pass
pinned "policies" "$L" sicherheit datenbank@ tcp 7000 drop
pinned "policies" "$L" datenbank sicherheit@ tcp 6000 drop
pinned "policies" "$L" host datenbank@ tcp 7000 drop
pinned "policies" "$L" host rechnung@ tcp 5000 pass
pinned "policies" "$L" host@::1 "rechnung -p 5000:5000" tcp 5000 pass
pinned "policies" "$L" "host@$UP6" "rechnung -p 5000:5000" tcp 5000 pass
# rechnung-nur-5000 admits the host and 0.0.0.0/0, which holds IPv4
# addresses only: an ipBlock matches the packet's own address (identities
# are per family), so over IPv6 neither a container nor the IPv6 world is
# admitted by it; only ::/0 would admit them.
pinned "policies" "$L" sicherheit@gateway6 "rechnung -p 5000:5000" tcp 5000 drop
pinned "policies" "$L" outside "rechnung -p 5000:5000" tcp 5000 drop
down_and_finish "$L"
