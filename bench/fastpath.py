#!/usr/bin/env python3
"""The fast path between containers of one network (bpf/lib/redirect.h)
against the plain path and against no filtering, on bench.py's lab: c1 ->
c2 on network front, c2 under bench.py's policy (its ingress admits TCP 80
and 5201 from anywhere, plus RULES-2 filler rules), so c1's connections are
tracked and their packets may take the fast path.

Contenders, interleaved in every round (the order rotates):
  baseline   no filtering (br_netfilter off), the plain bridge
  moat-slow  moat with `moat fastpath off`: every packet through the bridge
             and c2's to_container
  moat       moat with the fast path on (its default)

Scenarios (c1 -> c2, clients and servers pinned as bench.py pins them):
  throughput_same_network_gbps   iperf3, one TCP stream
  rr_new_connection_rps          wrk, a new connection per request (nginx)
  rr_keepalive_rps               wrk, 16 keep-alive connections

The lab's conntrack limit is raised (--conntrack): at the default limits a
container holds at most 1,024 tracked flows (the table's sixteenth) and a
closed TCP flow stays 10 s, so a new connection per request is capped by
the quota (SYNs dropped as conntrack-quota, retried after 1 s) near 250/s,
whichever path the packets take.

Each figure: median over rounds, ratio of medians to the baseline with a
95% bootstrap interval over rounds (bench/stats.py) and a verdict; the
fast path's counter per round shows it carried the traffic. Writes
<out>/<date>-<host>-fastpath.{json,md}. A benchmark, not a test.
"""
import datetime
import json
import os
import shutil
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import bench  # noqa: E402
import stats  # noqa: E402

CONTENDERS = ["baseline", "moat-slow", "moat"]
SCENARIOS = [
    ("throughput_same_network_gbps", "TCP throughput c1 -> c2, Gbit/s"),
    ("rr_new_connection_rps", "requests/s, a new connection per request, c1 -> c2:80"),
    ("rr_keepalive_rps", "requests/s, keep-alive, c1 -> c2:80"),
]


def fast(moat, lab, state=None):
    cmd = [moat, "fastpath"] + ([state] if state else []) + ["--lab", lab.name, "--json"]
    return json.loads(bench.run(cmd).stdout)


def rank(by_who):
    base = by_who["baseline"]
    for who, s in by_who.items():
        if who == "baseline":
            s["ratio_to_baseline"] = 1.0
            continue
        c = stats.compare(s["samples"], base["samples"], True,
                          paired=len(s["samples"]) == len(base["samples"]))
        s["ratio_to_baseline"], s["vs_baseline"] = c["estimate"], c
    on, off = by_who.get("moat"), by_who.get("moat-slow")
    if on and off:
        c = stats.compare(on["samples"], off["samples"], True,
                          paired=len(on["samples"]) == len(off["samples"]))
        on["vs_moat_slow"] = c


def markdown(res):
    o = [f"# moat fast path, {res['started']} on {res['host']} ({res['kernel']}, {res['cpus']} CPUs)",
         "",
         f"{res['reps']} interleaved rounds of {res['seconds']} s per figure, {res['rules']} policy "
         f"rules, limits.conntrack {res['conntrack'] or 'default'}; {stats.METHOD}.", "",
         "| scenario | " + " | ".join(CONTENDERS) + " |",
         "|---|" + "---|" * len(CONTENDERS)]
    for scn, what in SCENARIOS:
        cells = [bench.cell(res["lab"][scn][who], [("vs_moat_slow", "moat-slow")]) for who in CONTENDERS]
        o.append(f"| {what} | " + " | ".join(cells) + " |")
    o += ["", "Fast path counter per round (packets it carried during moat's measurements): "
          + ", ".join(str(n) for n in res["fast_packets_per_round"]),
          "", "Enforcement checks: " + ("all ok" if res["all_checks_ok"] else "FAILED")]
    return "\n".join(o) + "\n"


def main():
    ap = bench.side_args(__doc__)
    ap.add_argument("--rules", type=int, default=10)
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    host = socket.gethostname()
    base = os.path.join(a.out, f"{stamp}-{host}-fastpath")
    tmp = tempfile.mkdtemp(prefix="moat-bench-fast.")
    name = f"fp{os.getpid()}"[:14]
    res = {"started": stamp, "host": host, "kernel": os.uname().release, "cpus": os.cpu_count(),
           "reps": a.reps, "seconds": a.seconds, "rules": a.rules, "conntrack": a.conntrack,
           "ratio_method": stats.METHOD,
           "lab_name": name, "checks": {}, "lab": {}, "fast_packets_per_round": []}
    samples = {}
    lab = None
    try:
        bench.log(f"lab {name}: {a.reps} rounds, {a.seconds} s each, {a.rules} rules")
        lab = bench.Lab(a.moat, name, tmp,
                        {"conntrack": a.conntrack} if a.conntrack else None)
        lab.start_servers()
        con = bench.Contenders(lab, a.moat, tmp)
        con.brnf(False)
        c2 = lab.ip["c2"]
        for rnd in range(a.reps):
            order = CONTENDERS[rnd % 3:] + CONTENDERS[:rnd % 3]
            for who in order:
                bench.log(f"round {rnd + 1}/{a.reps}: {who}")
                con.setup("baseline" if who == "baseline" else "moat", a.rules)
                try:
                    if who != "baseline":
                        want = "on" if who == "moat" else "off"
                        st = fast(a.moat, lab, want)
                        if st["peer"] != (who == "moat"):
                            raise RuntimeError(f"moat fastpath {want} did not take: {st}")
                    if who not in res["checks"]:
                        res["checks"][who] = bench.enforcement_checks(
                            lab, "baseline" if who == "baseline" else "moat")
                    before = fast(a.moat, lab)["peer_packets"] if who != "baseline" else 0
                    gbps, _ = bench.iperf(lab, "c1", c2, a.seconds)
                    samples.setdefault(("throughput_same_network_gbps", who), []).append(gbps)
                    for close in (True, False):
                        w = bench.wrk(lab, f"http://{c2}/", a.seconds, close)
                        scn = "rr_new_connection_rps" if close else "rr_keepalive_rps"
                        samples.setdefault((scn, who), []).append(w["rps"])
                        if w["errors"]:
                            res.setdefault("wrk_errors", []).append(f"{who}/{scn}: {w['errors']}")
                    if who != "baseline":
                        n = fast(a.moat, lab)["peer_packets"] - before
                        if who == "moat":
                            res["fast_packets_per_round"].append(n)
                        elif n:
                            raise RuntimeError(f"the fast path carried {n} packets while off")
                finally:
                    con.teardown("baseline" if who == "baseline" else "moat")
        for (scn, who), v in samples.items():
            res["lab"].setdefault(scn, {})[who] = bench.summary(v)
        for scn in res["lab"]:
            rank(res["lab"][scn])
    finally:
        if lab:
            lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
    res["all_checks_ok"] = all(c["ok"] for cs in res["checks"].values() for c in cs)
    return bench.write_results(base, res, markdown)


if __name__ == "__main__":
    sys.exit(main())
