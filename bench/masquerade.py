#!/usr/bin/env python3
"""A container's connections to the world through masquerade, against
Docker's own (iptables MASQUERADE) and against no translation at all, on
bench.py's lab: c1 (network front) -> the lab's outside (198.19.0.1), where
nginx and iperf3 serve.

Contenders, interleaved in every round (the order rotates):
  baseline   no filtering and no translation: the outside routes the
             containers' subnet back to the lab host (a plain router)
  iptables   Docker's rule: -t nat POSTROUTING -s <front> ! -o <bridge>
             -j MASQUERADE (netfilter's conntrack and NAT)
  moat-slow  moat with its routed fast path off (`moat fastpath --routed off`)
  moat       moat with it on (`--routed on`)

Scenarios (c1 -> outside, clients and servers pinned as bench.py pins them):
  throughput_world_gbps          iperf3, one TCP stream
  throughput_from_world_gbps     iperf3 -R: the outside sends, c1 receives
                                 (the replies' direction, lib/fast_reply.h)
  rr_new_connection_world_rps    wrk, a new connection per request (nginx
                                 closes each: its side holds TIME_WAIT)
  kernel CPU per new connection  system + irq + softirq time over the wrk
                                 run, less the idle rate measured before it
And per contender, what the client's own TCP counted per 1,000 connections
(nstat in c1): SYNs sent again (RSTs sent are in the JSON). A masquerade that gives a new
connection a tuple the server still holds in TIME_WAIT from another one
gets that connection's SYN answered by the old one's ACK: the client
resets and sends its SYN again.

Each figure: median over rounds, ratio of medians to the baseline with a
95% bootstrap interval over rounds (bench/stats.py) and a verdict. The
outside's echo server (lab.cpp, port 80) says which source address it saw:
the translating contenders must show the uplink's, the baseline c1's own.
Writes <out>/<date>-<host>-masquerade.{json,md}. A benchmark, not a test.
"""
import datetime
import json
import os
import re
import shutil
import signal
import socket
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True
import bench  # noqa: E402
import stats  # noqa: E402

CONTENDERS = ["baseline", "iptables", "moat-slow", "moat"]
SCENARIOS = [
    ("throughput_world_gbps", "TCP throughput c1 -> outside, Gbit/s", True),
    ("throughput_from_world_gbps", "TCP throughput outside -> c1 (c1 connects), Gbit/s", True),
    ("rr_new_connection_world_rps", "requests/s, a new connection per request, c1 -> outside", True),
    ("kernel_us_per_new_connection", "kernel CPU per new connection, us", False),
    ("syn_retransmits_per_1000", "client SYNs sent again per 1,000 connections", False),
]
OUTSIDE = "198.19.0.1"
COUNTERS = ("TcpExtTCPSynRetrans", "TcpOutRsts")


def nstat(lab):
    """The client's TCP counters (absolute, its namespace's own)."""
    out = lab.ns_run("c1", ["nstat", "-a", "-z", "-s"]).stdout
    got = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 2 and f[0] in COUNTERS:
            got[f[0]] = int(f[1])
    return got


def seen_source(lab):
    """The address the outside's echo server saw c1 come from."""
    code = ("import socket\n"
            "s=socket.create_connection(('%s',80),timeout=2)\n"
            "s.sendall(b'who\\n'); print(s.recv(128).decode().strip())\n" % OUTSIDE)
    for _ in range(3):
        r = lab.ns_run("c1", ["python3", "-c", code], check=False, timeout=30)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    return None


def start_outside_servers(lab):
    d = os.path.join(lab.tmp, "nginx-out")
    os.makedirs(d, exist_ok=True)
    open(os.path.join(d, "nginx.conf"), "w").write(
        "daemon off; worker_processes 1; pid %s/nginx.pid; error_log %s/error.log;\n"
        "events { worker_connections 4096; }\n"
        "http { access_log off; client_body_temp_path %s; proxy_temp_path %s;\n"
        "  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
        "  server { listen %s:8080 reuseport backlog=4096; location / { return 200 \"ok\\n\"; } } }\n"
        % ((d,) * 7 + (OUTSIDE,)))
    lab.spawn("out", ["taskset", "-c", bench.SERVER_CPU, "nginx", "-p", d, "-c",
                      os.path.join(d, "nginx.conf")])
    lab.spawn("out", ["taskset", "-c", bench.SERVER_CPU, "iperf3", "-s", "-B", OUTSIDE, "-p", "5201"])
    lab.wait_listen("out", 8080)
    lab.wait_listen("out", 5201)


class Setup:
    def __init__(self, lab, moat, tmp):
        self.lab, self.moat = lab, moat
        self.con = bench.Contenders(lab, moat, tmp)
        front = bench.NETS["front"]
        self.masq = ["-s", front, "!", "-o", lab.bridge["front"], "-j", "MASQUERADE"]

    def up(self, who):
        lab = self.lab
        if who == "iptables":
            self.con.brnf(False)
            lab.host(["iptables", "-t", "nat", "-A", "POSTROUTING"] + self.masq)
        elif who in ("moat", "moat-slow"):
            self.con.setup("moat", 2)  # bench.py's policy: nothing of it on this path
            want = "on" if who == "moat" else "off"
            st = json.loads(bench.run([self.moat, "fastpath", "--lab", lab.name, "--routed", want,
                                       "--json"]).stdout)
            if st["routed"] != (who == "moat"):
                raise RuntimeError(f"moat fastpath --routed {want} did not take: {st}")
        else:
            self.con.setup("baseline", 2)

    def down(self, who):
        if who == "iptables":
            # No table left behind: an empty nat table keeps conntrack's hooks
            # on for the contenders after it (bench.py's teardown does the same).
            self.lab.host(["nft", "flush", "ruleset"])
        elif who in ("moat", "moat-slow"):
            self.con.teardown("moat")
        else:
            self.con.teardown("baseline")


def routed_packets(moat, lab):
    """What the routed fast path carried so far: (to the uplinks, back to containers)."""
    st = json.loads(bench.run([moat, "fastpath", "--lab", lab.name, "--json"]).stdout)
    return st["routed_packets"], st["routed_in_packets"]


def rank(by_who, higher_is_better):
    base = by_who["baseline"]
    for who, s in by_who.items():
        if who == "baseline":
            continue
        c = stats.compare(s["samples"], base["samples"], higher_is_better,
                          paired=len(s["samples"]) == len(base["samples"]))
        s["ratio_to_baseline"], s["vs_baseline"] = c["estimate"], c
    for who in ("moat", "moat-slow"):
        c = stats.compare(by_who[who]["samples"], by_who["iptables"]["samples"], higher_is_better,
                          paired=True)
        by_who[who]["vs_iptables"] = c


def markdown(res):
    o = [f"# moat masquerade, {res['started']} on {res['host']} ({res['kernel']}, {res['cpus']} CPUs)",
         "", f"{res['reps']} interleaved rounds of {res['seconds']} s per figure; "
         f"limits.conntrack {res['conntrack'] or 'default'}; {stats.METHOD}.", "",
         "| scenario | " + " | ".join(CONTENDERS) + " |", "|---|" + "---|" * len(CONTENDERS)]
    for scn, what, _ in SCENARIOS:
        cells = [bench.cell(res["lab"][scn][who], [("vs_iptables", "iptables")]) for who in CONTENDERS]
        o.append(f"| {what} | " + " | ".join(cells) + " |")
    o += ["", "Source address the outside saw: "
          + ", ".join(f"{w} {res['seen_source'].get(w)}" for w in CONTENDERS),
          "", "Routed fast path packets per round (moat), out / back in: "
          + ", ".join(f"{o} / {i}" for o, i in zip(res["routed_packets_per_round"],
                                                    res["routed_in_packets_per_round"])),
          "", "moat's drops during its runs: " + json.dumps(res["moat_drops"]),
          "", "Checks: " + ("all ok" if res["all_checks_ok"] else "FAILED")]
    return "\n".join(o) + "\n"


def drops(moat, lab):
    st = json.loads(bench.run([moat, "lab", "status", "--lab", lab.name, "--json"]).stdout)
    out = {}
    for up in st.get("uplinks", []):
        for d, c in up.get("counters", {}).items():
            for reason, n in c.get("drops", {}).items():
                out[reason] = out.get(reason, 0) + n
    return out


def main():
    a = bench.side_args(__doc__).parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the lab's cleanup still runs
    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    host = socket.gethostname()
    base = os.path.join(a.out, f"{stamp}-{host}-masquerade")
    tmp = tempfile.mkdtemp(prefix="moat-bench-masq.")
    name = f"mq{os.getpid()}"[:14]
    res = {"started": stamp, "host": host, "kernel": os.uname().release, "cpus": os.cpu_count(),
           "reps": a.reps, "seconds": a.seconds, "conntrack": a.conntrack,
           "ratio_method": stats.METHOD, "lab_name": name, "seen_source": {}, "lab": {},
           "routed_packets_per_round": [], "routed_in_packets_per_round": [], "moat_drops": {},
           "checks": []}
    samples = {}
    lab = None
    try:
        bench.log(f"lab {name}: {a.reps} rounds, {a.seconds} s each")
        lab = bench.Lab(a.moat, name, tmp, {"conntrack": a.conntrack} if a.conntrack else None)
        start_outside_servers(lab)
        setup = Setup(lab, a.moat, tmp)
        url = f"http://{OUTSIDE}:8080/"
        for rnd in range(a.reps):
            k = rnd % len(CONTENDERS)
            for who in CONTENDERS[k:] + CONTENDERS[:k]:
                bench.log(f"round {rnd + 1}/{a.reps}: {who}")
                try:
                    setup.up(who)
                    if who not in res["seen_source"]:
                        seen = seen_source(lab)
                        want = lab.ip["c1"] if who == "baseline" else bench.HOST_UPLINK_IP
                        res["seen_source"][who] = seen
                        res["checks"].append({"check": f"{who}: the outside sees c1 as {want}",
                                              "observed": seen, "ok": seen == want})
                    moat = who in ("moat", "moat-slow")
                    before = routed_packets(a.moat, lab) if moat else (0, 0)
                    d0 = drops(a.moat, lab) if moat else {}
                    gbps, _ = bench.iperf(lab, "c1", OUTSIDE, a.seconds)
                    samples.setdefault(("throughput_world_gbps", who), []).append(gbps)
                    gbps, _ = bench.iperf(lab, "c1", OUTSIDE, a.seconds, reverse=True)
                    samples.setdefault(("throughput_from_world_gbps", who), []).append(gbps)
                    n0 = nstat(lab)
                    w, cost = bench.with_cpu(lambda: (lambda r: (r, r["requests"]))(
                        bench.wrk(lab, url, a.seconds, True)))
                    n1 = nstat(lab)
                    samples.setdefault(("rr_new_connection_world_rps", who), []).append(w["rps"])
                    samples.setdefault(("kernel_us_per_new_connection", who), []).append(
                        cost["net_cpu_s"] * 1e6 / max(1, w["requests"]))
                    samples.setdefault(("syn_retransmits_per_1000", who), []).append(
                        1000 * (n1.get("TcpExtTCPSynRetrans", 0) - n0.get("TcpExtTCPSynRetrans", 0))
                        / max(1, w["requests"]))
                    res.setdefault("client_rsts_per_1000", {}).setdefault(who, []).append(
                        1000 * (n1.get("TcpOutRsts", 0) - n0.get("TcpOutRsts", 0))
                        / max(1, w["requests"]))
                    if w["errors"]:
                        res.setdefault("wrk_errors", []).append(f"{who}: {w['errors']}")
                    if moat:
                        after = routed_packets(a.moat, lab)
                        n, n_in = after[0] - before[0], after[1] - before[1]
                        if who == "moat":
                            res["routed_packets_per_round"].append(n)
                            res["routed_in_packets_per_round"].append(n_in)
                        elif n or n_in:
                            raise RuntimeError(f"the routed fast path carried {n} + {n_in} packets while off")
                        for reason, v in drops(a.moat, lab).items():
                            if v - d0.get(reason, 0):
                                key = f"{who}/{reason}"
                                res["moat_drops"][key] = res["moat_drops"].get(key, 0) + v - d0.get(reason, 0)
                finally:
                    setup.down(who)
        for (scn, who), v in samples.items():
            res["lab"].setdefault(scn, {})[who] = bench.summary(v)
        for scn, _, hib in SCENARIOS:
            rank(res["lab"][scn], hib)
    finally:
        if lab:
            lab.close()
        else:  # Lab() failed after `lab up`: nothing of it stays
            bench.run([a.moat, "lab", "down", "--name", name], check=False)
        shutil.rmtree(tmp, ignore_errors=True)
    res["all_checks_ok"] = bool(res["checks"]) and all(c["ok"] for c in res["checks"])
    return bench.write_results(base, res, markdown)


if __name__ == "__main__":
    sys.exit(main())
