#!/usr/bin/env bash
# The benchmark suite's quick mode, so that it cannot rot: every contender
# set up, checked and measured once at tiny sizes, results written in all
# three forms, nothing left behind. The figures themselves are not judged
# (benchmarks are not tests); that each contender enforced what it claims
# is (bench.py exits 1 otherwise).
source "$(dirname "$0")/lib.sh"
BUILD=$(cd "$(dirname "$MOAT")/.." && pwd)
OUT=$TMP/results
labs_before=$(ls /run/moat/labs 2>/dev/null | sort)

python3 "$REPO/bench/bench.py" --moat "$MOAT" --kernel-bench "$BUILD/bench/moat_kernel_bench" \
  --mode quick --out "$OUT" >"$TMP/bench.out" 2>"$TMP/bench.err"
rc=$?
check "bench.py --mode quick exits 0 (every enforcement check ok)" [ $rc -eq 0 ]
[ $rc -eq 0 ] || tail -20 "$TMP/bench.err" | sed 's/^/    /'
BASE=$(tail -1 "$TMP/bench.out")
check "it names its results: $BASE" [ -n "$BASE" ] && [ -f "$BASE.json" ]
check "the Markdown table is written" grep -q '^## In the lab' "$BASE.md"
check "the chart is a PNG" bash -c '[ "$(head -c 4 "$1" | tail -c 3)" = PNG ]' _ "$BASE.png"

results_hold() {
  python3 - "$BASE.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
who = ["baseline", "iptables", "nftables", "moat"]
problems = []
for w in who:
    cs = r["checks"].get(w + "/10")
    if not cs or not all(c["ok"] for c in cs):
        problems.append(f"checks of {w}: {cs}")
for scn, by_rules in r["lab"].items():
    for rules, by_who in by_rules.items():
        for w in who:
            s = by_who.get(w)
            if not s or not s["median"] > 0:
                problems.append(f"{scn}/{rules}/{w}: {s}")
            elif s["ratio_to_baseline"] is None:
                problems.append(f"{scn}/{rules}/{w}: no ratio")
if len(r["lab"]) != 8:
    problems.append(f"lab scenarios: {sorted(r['lab'])}")
for n, by_who in r["control_plane"].items():
    for w in who[1:]:
        if not by_who.get(w, {}).get("apply_s", {}).get("median", 0) > 0:
            problems.append(f"control plane {n} {w}")
if not all(m["maps_bytes"] > 0 and m["programs_bytes"] > 0 for m in r["memory"].values()):
    problems.append(f"memory: {r['memory']}")
if not r["bpf_stats"]:
    problems.append("no per-program run time")
cases = r.get("per_packet", {}).get("cases", [])
if not cases or not all(c["ns"]["median"] > 0 for c in cases):
    problems.append(f"per-packet cases: {cases[:2]}")
# Every ratio ranked: an interval (two rounds) and a verdict, to the
# baseline and moat against each other contender; CPU cost beside each
# throughput and request rate; every moat path against the floor.
for part in ("lab", "cpu_cost"):
    for scn, by_rules in r.get(part, {}).items():
        for rules, by_who in by_rules.items():
            for w in who[1:]:
                c = by_who.get(w, {}).get("vs_baseline")
                if not c or not c.get("ci") or not c.get("verdict"):
                    problems.append(f"{part} {scn}/{rules}/{w}: no interval to the baseline: {c}")
            vs = by_who.get("moat", {}).get("moat_vs", {})
            if sorted(vs) != ["iptables", "nftables"] or not all(v.get("ci") for v in vs.values()):
                problems.append(f"{part} {scn}/{rules}: moat against the others: {vs}")
if len(r.get("cpu_cost", {})) != 4:
    problems.append(f"cpu cost scenarios: {sorted(r.get('cpu_cost', {}))}")
floors = [c for c in cases if c["scenario"] == "floor"]
# The test run alone ("empty") and the parse-only floors have no ratio; the lookup
# floors, like moat's cases, have one to the IPv4 floor.
plain = [c for c in floors if c["path"] in ("empty", "ipv4", "ipv6")]
if sorted(c["path"] for c in floors) != ["empty", "ipv4", "ipv4_ct", "ipv4_endpoint_ct", "ipv6"]:
    problems.append(f"floor cases: {sorted(c['path'] for c in floors)}")
if not all(c.get("to_floor", {}).get("estimate") for c in cases if c not in plain):
    problems.append("per-packet cases without their ratio to the floor")
if not r.get("memory_endpoints") or not all(m["maps_bytes"] > 0 for m in r["memory_endpoints"].values()):
    problems.append(f"memory by endpoints: {r.get('memory_endpoints')}")
if problems: print("\n".join(problems))
sys.exit(1 if problems else 0)
PY
}
check "the results hold every contender, scenario, size and figure" results_hold
labs_after=$(ls /run/moat/labs 2>/dev/null | sort)
check "no lab left behind" [ "$labs_before" = "$labs_after" ]
if [ -z "$labs_before" ] && [ -z "$(ls /run/netns 2>/dev/null | grep '^moat-')" ]; then
  check "no empty state directory left behind" [ ! -e /run/moat/labs ]
fi
LABNAME=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["lab_name"])' "$BASE.json")
check "no namespace of lab $LABNAME left behind" bash -c '! ip netns list | grep -q "moat-$1-"' _ "$LABNAME"
finish
