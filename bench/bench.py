#!/usr/bin/env python3
"""bench.py - moat against no filtering, Docker-style iptables and nftables.

Run by scripts/bench.sh (which installs and builds first); not a test.

One lab of namespaces (`moat lab up --no-enforce`): networks front (c1, c2)
and back (c3), the lab host, and `outside` behind the uplink. Each
contender enforces the same thing in the lab host:
  - isolation: front and back do not talk;
  - published ports: host 5201 -> c2:5201 (iperf3), host 8080 -> c2:80;
    c2's address is not reachable from outside except through them;
  - masquerade for both networks;
  - a policy on c2's ingress: TCP 80 and 5201 from anywhere, plus RULES-2
    filler rules (a /32 and a port each, never matching the benchmark's
    traffic), so 81 is denied.
Contenders:
  baseline  no filtering at all (br_netfilter off); the published path is
            routed straight to c2's address instead (its limit).
  iptables  Docker's chains (DOCKER-ISOLATION-STAGE-1/2, DOCKER, DNAT per
            port, MASQUERADE, the raw PREROUTING drop of Docker 28), the
            policy as a linear chain after the conntrack accept (as per-rule
            policy tools do), br_netfilter on.
  nftables  the strongest non-eBPF setup: verdict map for isolation, a DNAT
            map, the policy as one hash set of address . port, br_netfilter on.
  moat      `moat lab apply` with the same policy in moat's file format.
Every contender is checked before it is measured (what must be dropped is,
what must pass does); the checks are in the results.

Scenarios, repeated and interleaved (contender order rotates each round):
throughput (iperf3, c1 -> c2 and outside -> published port), request rate
and latency (wrk against nginx in c2, keep-alive and a new connection per
request), at each rule count, each with its CPU cost: system + irq +
softirq time of the whole machine (/proc/stat) over the run, less the
background rate measured right before it, per request or per GB moved.
Then control plane (apply N rules from nothing, i.e. from no rule with
moat's programs already loaded, and change one), memory
(bpftool: maps and programs of the instance, over rule counts and over
endpoint counts in a lab of many containers), per-program run time in the
lab (kernel.bpf_stats_enabled) and per-packet cost (moat_kernel_bench,
BPF_PROG_TEST_RUN), each path also as a multiple of a program that only
parses (bench/floor.bpf.c).

Every ratio (to the baseline, moat to each other contender, moat's paths
to the floor) has a 95% bootstrap interval over rounds and a verdict; the
method is stats.py's.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.dont_write_bytecode = True  # run as root from the source tree: leave no __pycache__ in it
import stats  # noqa: E402  (the bench's own module, next to this file)

CONTENDERS = ["baseline", "iptables", "nftables", "moat"]
HOST_UPLINK_IP = "198.18.0.1"  # the lab's uplink0 address (lab.cpp)
NETS = {"front": "172.31.1.0/24", "back": "172.31.2.0/24"}


# Servers on one CPU, clients on another: on a 2-CPU VM, whether the
# scheduler happened to put both ends on one CPU otherwise decides a figure
# more than any contender does (throughput moved 3x between repetitions).
SERVER_CPU, CLIENT_CPU = ("1", "0") if (os.cpu_count() or 1) >= 2 else ("0", "0")


def log(*a):
    print("bench:", time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=600, input=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, input=input)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


def summary(samples):
    s = sorted(samples)
    return {"median": statistics.median(s), "min": s[0], "max": s[-1], "n": len(s), "samples": samples}


def rank(by_who, higher_is_better):
    """Fills each contender's ratio to the baseline and moat's to every other
    contender, with their intervals and verdicts (stats.compare). by_who:
    contender -> summary(); samples of one contender are one per round, in
    round order, so contenders of one run are paired by round."""
    base = by_who.get("baseline")
    for who, s in by_who.items():
        if who == "baseline":
            s["ratio_to_baseline"] = 1.0
        elif base:
            c = stats.compare(s["samples"], base["samples"], higher_is_better,
                              paired=len(s["samples"]) == len(base["samples"]))
            s["ratio_to_baseline"], s["vs_baseline"] = c["estimate"], c
        else:
            s["ratio_to_baseline"] = None
    m = by_who.get("moat")
    if m:
        m["moat_vs"] = {who: stats.compare(m["samples"], s["samples"], higher_is_better,
                                           paired=len(m["samples"]) == len(s["samples"]))
                        for who, s in by_who.items() if who not in ("moat", "baseline")}


# ---- CPU cost -----------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")
# Long enough for some dozens of clock ticks on every CPU, short beside a run.
BACKGROUND_WINDOW_S = 0.5


def kernel_cpu_s():
    """System + irq + softirq time of all CPUs so far, seconds (/proc/stat)."""
    with open("/proc/stat") as f:
        f = f.readline().split()  # cpu user nice system idle iowait irq softirq steal ...
    return (int(f[3]) + int(f[6]) + int(f[7])) / CLK_TCK


def with_cpu(measure):
    """Runs measure() -> (value, units) and returns (value, cost): the kernel
    CPU time of the whole machine over the run, and the background rate of
    the same measured with the lab idle right before it (other sessions of
    a shared VM count in both: their load is subtracted only as far as it
    was steady)."""
    k0, t0 = kernel_cpu_s(), time.monotonic()
    time.sleep(BACKGROUND_WINDOW_S)
    k1, t1 = kernel_cpu_s(), time.monotonic()
    value, units = measure()
    k2, t2 = kernel_cpu_s(), time.monotonic()
    background = (k1 - k0) / (t1 - t0)
    net = (k2 - k1) - background * (t2 - t1)
    return value, {"kernel_cpu_s": k2 - k1, "wall_s": t2 - t1, "background_cpu_s_per_s": background,
                   "net_cpu_s": net, "units": units}


class Lab:
    """The lab and everything the bench starts in it; close() removes it all."""

    def __init__(self, moat, name, tmp, limits=None):
        self.moat, self.name, self.tmp = moat, name, tmp
        self.procs = []
        self.file = os.path.join(tmp, "bench-lab.json")
        doc = {
            "networks": [{"name": n, "subnet": s} for n, s in NETS.items()],
            "containers": [
                {"name": "c1", "networks": ["front"]},
                {"name": "c2", "networks": ["front"], "labels": {"app": "c2"},
                 "publish": ["5201:5201", "8080:80"], "expose": ["80/tcp", "81/tcp", "5201/tcp"]},
                {"name": "c3", "networks": ["back"], "expose": ["80/tcp"]},
            ],
        }
        if limits:
            doc["limits"] = limits
        json.dump(doc, open(self.file, "w"), indent=1)
        out = run([moat, "lab", "up", self.file, "--name", name, "--no-enforce", "--no-listeners", "--json"])
        self.up = json.loads(out.stdout)
        self.ip = {c["name"]: c["networks"][0]["ip"] for c in self.up["containers"]}
        self.ifname = {c["name"]: c["networks"][0]["interface"] for c in self.up["containers"]}
        gateways = {n["gateway"]: n["name"] for n in self.up["networks"]}
        self.bridge = {}
        for link in json.loads(self.host(["ip", "-j", "-4", "addr"]).stdout):
            for a in link.get("addr_info", []):
                if a.get("local") in gateways:
                    self.bridge[gateways[a["local"]]] = link["ifname"]
        if set(self.bridge) != set(NETS):
            raise RuntimeError(f"lab bridges not found: {self.bridge}")
        # The baseline's published path: routed straight to the containers.
        self.ns_run("out", ["ip", "route", "replace", "172.31.0.0/16", "via", HOST_UPLINK_IP])

    def ns(self, who):
        if who == "host":
            return f"/run/netns/moat-{self.name}-host"
        if who == "out":
            return f"/run/netns/moat-{self.name}-out"
        return f"/run/netns/moat-{self.name}-c-{who}"

    def ns_run(self, who, cmd, **kw):
        return run(["nsenter", f"--net={self.ns(who)}"] + cmd, **kw)

    def host(self, cmd, **kw):
        return self.ns_run("host", cmd, **kw)

    def spawn(self, who, cmd):
        p = subprocess.Popen(["nsenter", f"--net={self.ns(who)}"] + cmd,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(p)
        return p

    def wait_listen(self, who, port, timeout=10):
        end = time.time() + timeout
        while time.time() < end:
            out = self.ns_run(who, ["ss", "-H", "-l", "-n", "-t"], check=False).stdout
            if re.search(rf"[:.]{port}\s", out):
                return
            time.sleep(0.05)
        raise RuntimeError(f"nothing listens on {who}:{port}")

    def start_servers(self):
        conf = os.path.join(self.tmp, "nginx")
        os.makedirs(conf, exist_ok=True)
        for who, ports in (("c2", (80, 81)), ("c3", (80,))):
            d = os.path.join(conf, who)
            os.makedirs(d, exist_ok=True)
            listens = "".join(f"listen {p} reuseport backlog=4096; " for p in ports)
            open(os.path.join(d, "nginx.conf"), "w").write(
                "daemon off; worker_processes 1; pid %s/nginx.pid; error_log %s/error.log;\n"
                "events { worker_connections 4096; }\n"
                "http { access_log off; client_body_temp_path %s; proxy_temp_path %s;\n"
                "  fastcgi_temp_path %s; uwsgi_temp_path %s; scgi_temp_path %s;\n"
                "  keepalive_requests 1000000;\n"
                "  server { %s location / { return 200 \"ok\\n\"; } } }\n"
                % ((d,) * 7 + (listens,)))
            self.spawn(who, ["taskset", "-c", SERVER_CPU, "nginx", "-p", d, "-c", os.path.join(d, "nginx.conf")])
            for p in ports:
                self.wait_listen(who, p)
        self.spawn("c2", ["taskset", "-c", SERVER_CPU, "iperf3", "-s", "-p", "5201"])
        self.wait_listen("c2", 5201)

    def close(self):
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                p.kill()
        run([self.moat, "lab", "down", "--name", self.name], check=False)


# ---- contenders ---------------------------------------------------------------------

def filler(i):
    """Filler rule i: a /32 and a port that the benchmark's traffic never uses.
    1000 addresses x 100 ports: 100,000 distinct rules without exhausting
    moat's identity cache (65,536 CIDRs)."""
    j = i // 100
    return f"10.100.{j // 250}.{j % 250 + 1}", 10000 + i % 100


def moat_policy(rules, change=False):
    ingress = [{"ports": [{"protocol": "TCP", "port": 80}, {"protocol": "TCP", "port": 5201}]}]
    for i in range(max(0, rules - 2)):
        ip, port = filler(i)
        if change and i == 0:
            port = 9999
        ingress.append({"from": [{"ipBlock": {"cidr": ip + "/32"}}],
                        "ports": [{"protocol": "TCP", "port": port}]})
    return {"policies": [{"name": "c2-ingress", "podSelector": {"matchLabels": {"app": "c2"}},
                          "policyTypes": ["Ingress"], "ingress": ingress}]}


def iptables_rules(lab, rules, change=False):
    fb, bb = lab.bridge["front"], lab.bridge["back"]
    c2 = lab.ip["c2"]
    f = ["*raw", ":PREROUTING ACCEPT [0:0]",
         # Docker 28: a container's address is not routable from elsewhere.
         f"-A PREROUTING -d {c2}/32 ! -i {fb} -j DROP", "COMMIT",
         "*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]",
         ":DOCKER - [0:0]",
         "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
         "-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER"]
    for net, br in lab.bridge.items():
        f.append(f"-A POSTROUTING -s {NETS[net]} ! -o {br} -j MASQUERADE")
    for br in lab.bridge.values():
        f.append(f"-A DOCKER -i {br} -j RETURN")
    f += [f"-A DOCKER -p tcp -m tcp --dport 5201 -j DNAT --to-destination {c2}:5201",
          f"-A DOCKER -p tcp -m tcp --dport 8080 -j DNAT --to-destination {c2}:80", "COMMIT",
          "*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]",
          ":DOCKER - [0:0]", ":DOCKER-ISOLATION-STAGE-1 - [0:0]", ":DOCKER-ISOLATION-STAGE-2 - [0:0]",
          ":DOCKER-USER - [0:0]", ":POLICY-C2 - [0:0]",
          "-A FORWARD -j DOCKER-USER", "-A FORWARD -j DOCKER-ISOLATION-STAGE-1",
          "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          f"-A FORWARD -d {c2}/32 -j POLICY-C2"]
    for br in lab.bridge.values():
        f += [f"-A FORWARD -o {br} -j DOCKER", f"-A FORWARD -i {br} ! -o {br} -j ACCEPT",
              f"-A FORWARD -i {br} -o {br} -j ACCEPT"]
    for port in (5201, 80):
        f.append(f"-A DOCKER -d {c2}/32 ! -i {fb} -o {fb} -p tcp -m tcp --dport {port} -j ACCEPT")
    for br in lab.bridge.values():
        f.append(f"-A DOCKER ! -i {br} -o {br} -j DROP")
    for br in lab.bridge.values():
        f.append(f"-A DOCKER-ISOLATION-STAGE-1 -i {br} ! -o {br} -j DOCKER-ISOLATION-STAGE-2")
        f.append(f"-A DOCKER-ISOLATION-STAGE-2 -o {br} -j DROP")
    f += ["-A DOCKER-ISOLATION-STAGE-1 -j RETURN", "-A DOCKER-ISOLATION-STAGE-2 -j RETURN",
          "-A DOCKER-USER -j RETURN"]
    # Per-rule policy tools: one rule per allowed peer and port, in order.
    for i in range(max(0, rules - 2)):
        ip, port = filler(i)
        if change and i == 0:
            port = 9999
        f.append(f"-A POLICY-C2 -s {ip}/32 -p tcp -m tcp --dport {port} -j ACCEPT")
    f += ["-A POLICY-C2 -p tcp -m tcp --dport 80 -j ACCEPT",
          "-A POLICY-C2 -p tcp -m tcp --dport 5201 -j ACCEPT",
          "-A POLICY-C2 -j DROP", "COMMIT", ""]
    return "\n".join(f)


def nft_rules(lab, rules):
    fb, bb = lab.bridge["front"], lab.bridge["back"]
    c2 = lab.ip["c2"]
    elems = []
    for i in range(max(0, rules - 2)):
        ip, port = filler(i)
        elems.append(f"{ip} . {port}")
    pol = ("    elements = { " + ", ".join(elems) + " }\n") if elems else ""
    return f"""table ip moatbench {{
  set pol_c2 {{
    type ipv4_addr . inet_service
{pol}  }}
  map published {{
    type inet_service : ipv4_addr . inet_service
    elements = {{ 5201 : {c2} . 5201, 8080 : {c2} . 80 }}
  }}
  chain raw {{
    type filter hook prerouting priority raw; policy accept;
    ip daddr {c2} iifname != "{fb}" drop
  }}
  chain pre {{
    type nat hook prerouting priority dstnat; policy accept;
    iifname {{ "{fb}", "{bb}" }} return
    fib daddr type local dnat ip to tcp dport map @published
  }}
  chain out {{
    type nat hook output priority -100; policy accept;
    ip daddr != 127.0.0.0/8 fib daddr type local dnat ip to tcp dport map @published
  }}
  chain post {{
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr {NETS['front']} oifname != "{fb}" masquerade
    ip saddr {NETS['back']} oifname != "{bb}" masquerade
  }}
  chain forward {{
    type filter hook forward priority filter; policy accept;
    iifname . oifname vmap {{ "{fb}" . "{bb}" : drop, "{bb}" . "{fb}" : drop }}
    ct state established,related accept
    ip daddr {c2} jump policy_c2
    oifname {{ "{fb}", "{bb}" }} iifname != {{ "{fb}", "{bb}" }} ct status dnat accept
    oifname {{ "{fb}", "{bb}" }} iifname != {{ "{fb}", "{bb}" }} drop
  }}
  chain policy_c2 {{
    ip saddr . tcp dport @pol_c2 accept
    tcp dport {{ 80, 5201 }} accept
    drop
  }}
}}
"""


def nft_change(lab, rules):
    ip, port = filler(0)
    return (f"delete element ip moatbench pol_c2 {{ {ip} . {port} }}\n"
            f"add element ip moatbench pol_c2 {{ {ip} . 9999 }}\n")


class Contenders:
    def __init__(self, lab, moat, tmp):
        self.lab, self.moat, self.tmp = lab, moat, tmp

    def brnf(self, on):
        for k in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables", "bridge-nf-call-arptables"):
            self.lab.host(["sysctl", "-qw", f"net.bridge.{k}={1 if on else 0}"])

    def write(self, name, text):
        p = os.path.join(self.tmp, name)
        open(p, "w").write(text)
        return p

    def setup(self, who, rules, change=False):
        """Enforce; returns seconds the contender's own tool took."""
        lab = self.lab
        if who == "baseline":
            self.brnf(False)
            return 0.0
        if who == "iptables":
            self.brnf(True)
            p = self.write("iptables.rules", iptables_rules(lab, rules, change))
            t = time.monotonic()
            lab.host(["iptables-restore", p])
            return time.monotonic() - t
        if who == "nftables":
            self.brnf(True)
            p = self.write("nft.rules", nft_rules(lab, rules))
            t = time.monotonic()
            lab.host(["nft", "-f", p])
            return time.monotonic() - t
        if who == "moat":
            self.brnf(False)
            p = self.write("moat-policy.json", json.dumps(moat_policy(rules, change)))
            t = time.monotonic()
            run([self.moat, "lab", "apply", "--lab", lab.name, p])
            return time.monotonic() - t
        raise ValueError(who)

    def prepare(self, who):
        """Before a control-plane round: moat's instance up with no rule (its
        programs loaded and verified, as nft's and iptables' kernel modules
        are loaded before their first rule); seconds it took, None for the
        others."""
        if who != "moat":
            return None
        self.brnf(False)
        t = time.monotonic()
        run([self.moat, "lab", "apply", "--lab", self.lab.name])
        return time.monotonic() - t

    def change_one(self, who, rules):
        """Change one rule of an enforced contender; seconds its tool took."""
        if who == "iptables":
            return self.setup(who, rules, change=True)  # iptables-restore: whole tables
        if who == "nftables":
            p = self.write("nft.change", nft_change(self.lab, rules))
            t = time.monotonic()
            self.lab.host(["nft", "-f", p])  # one element out, one in: nft's strength
            return time.monotonic() - t
        if who == "moat":
            return self.setup(who, rules, change=True)  # moat diffs and writes one entry
        raise ValueError(who)

    def teardown(self, who):
        if who in ("iptables", "nftables"):
            # iptables here is iptables-nft: both live in nf_tables; nothing stays.
            self.lab.host(["nft", "flush", "ruleset"])
        elif who == "moat":
            run([self.moat, "down", "--instance", f"lab-{self.lab.name}"])
        self.brnf(False)


# ---- probes and measurements ------------------------------------------------------------

def probe(lab, src, dst_ip, port, timeout=1.0):
    """A TCP connection from `src` and one HTTP answer: True when answered."""
    code = ("import socket,sys\n"
            "s=socket.create_connection((sys.argv[1],int(sys.argv[2])),timeout=float(sys.argv[3]))\n"
            "s.sendall(b'GET / HTTP/1.0\\r\\n\\r\\n'); sys.exit(0 if s.recv(64) else 1)\n")
    r = lab.ns_run(src, ["python3", "-c", code, dst_ip, str(port), str(timeout)], check=False, timeout=30)
    return r.returncode == 0


def enforcement_checks(lab, who):
    """What must pass and what must be dropped, for every contender but the
    baseline (which must let everything through except what needs DNAT)."""
    c2 = lab.ip["c2"]
    enforce = who != "baseline"
    cases = [
        ("c1 -> c2:80 (same network, allowed by policy)", "c1", c2, 80, True),
        ("c1 -> c2:81 (same network, not allowed by policy)", "c1", c2, 81, not enforce),
        ("c1 -> c3:80 (other network: isolation)", "c1", lab.ip["c3"], 80, not enforce),
        ("outside -> host:8080 (published -> c2:80)", "out", HOST_UPLINK_IP, 8080, enforce),
        ("outside -> c2:80 (container address, not published)", "out", c2, 80, not enforce),
    ]
    out = []
    for what, src, ip, port, want in cases:
        # Must-pass: bounded retries; must-drop: one short attempt.
        got = any(probe(lab, src, ip, port, 2.0) for _ in range(3)) if want else probe(lab, src, ip, port, 0.7)
        out.append({"check": what, "expected": "answered" if want else "not answered",
                    "observed": "answered" if got else "not answered", "ok": got == want})
    return out


def iperf(lab, src, dst, seconds, reverse=False):
    """One TCP stream from src to dst (reverse: from dst's server to src)."""
    # The server takes one test at a time and may still be closing the last
    # one ("the server is busy"): a few bounded retries, then the error.
    cmd = ["taskset", "-c", CLIENT_CPU, "iperf3", "-c", dst, "-p", "5201", "-t", str(seconds), "-J"]
    if reverse:
        cmd.append("-R")
    for attempt in range(5):
        r = lab.ns_run(src, cmd, check=False, timeout=seconds + 60)
        try:
            d = json.loads(r.stdout)
        except json.JSONDecodeError:
            d = {"error": r.stderr.strip() or r.stdout.strip()}
        if "error" not in d:
            got = d["end"]["sum_received"]
            return got["bits_per_second"] / 1e9, got["bytes"]
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"iperf3 {src} -> {dst}: {d['error']}")


def wrk(lab, url, seconds, close):
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", url]
    if close:
        cmd[4:4] = ["-H", "Connection: close"]
    out = lab.ns_run("c1", cmd, timeout=seconds + 60).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    requests = int(re.search(r"^\s*(\d+) requests in ", out, re.M).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    return {"rps": rps, "requests": requests, "p50_ms": pct(50), "p99_ms": pct(99),
            "errors": errors.group(0) if errors else ""}


def prog_stats(moat, lab):
    """run_cnt and run_time_ns of moat's TC programs in the lab's instance."""
    st = json.loads(run([moat, "lab", "status", "--lab", lab.name, "--json"]).stdout)
    return {p["name"]: (p["run_count"], p["run_time_ns"]) for p in st["programs"]}


def moat_memory(moat, lab_name):
    st = json.loads(run([moat, "lab", "status", "--lab", lab_name, "--json"]).stdout)
    maps = progs = 0
    by_name = {}
    ids = [m["id"] for m in st["maps"]]
    seen = set()
    while ids:
        mid = ids.pop()
        if mid in seen:
            continue
        seen.add(mid)
        info = json.loads(run(["bpftool", "map", "show", "id", str(mid), "--json"]).stdout)
        maps += info.get("bytes_memlock", 0)
        name = info.get("name", str(mid))
        by_name[name] = by_name.get(name, 0) + info.get("bytes_memlock", 0)
        if info.get("type") in ("array_of_maps", "hash_of_maps"):
            # bpftool prints an inner map's id as the value's bytes (little endian).
            for e in json.loads(run(["bpftool", "map", "dump", "id", str(mid), "--json"]).stdout):
                v = e.get("value")
                inner = int.from_bytes(bytes(int(x, 16) for x in v), "little") if isinstance(v, list) else v
                if inner:
                    ids.append(inner)
    for p in st["programs"]:
        info = json.loads(run(["bpftool", "prog", "show", "id", str(p["id"]), "--json"]).stdout)
        progs += info.get("bytes_memlock", 0) or info.get("bytes_jited", 0)
    return {"maps_bytes": maps, "programs_bytes": progs, "maps": len(seen), "by_map": by_name}


ENDPOINTS_PER_NET = 250  # a /24 each; a bridge takes at most 1,024 ports


def endpoint_memory(moat, n, tmp):
    """moat's kernel memory with n containers attached: a lab of its own,
    enforced by moat from the start, every container in a namespace of the
    lab's, on networks of ENDPOINTS_PER_NET containers each."""
    name = f"ep{os.getpid()}"[:14]
    nets = (n + ENDPOINTS_PER_NET - 1) // ENDPOINTS_PER_NET
    if nets > 250:
        raise ValueError(f"{n} endpoints: more than 250 networks")
    doc = {"networks": [{"name": f"n{k}", "subnet": f"172.30.{k}.0/24"} for k in range(nets)],
           "containers": [{"name": f"e{i}", "networks": [f"n{i // ENDPOINTS_PER_NET}"]}
                          for i in range(n)]}
    # The default limit (1,024 attachments, one slot nobody owns) sizes the
    # maps for a bridge's worth; more containers need a limit that says so,
    # as a user's file would (README, "limits").
    if n + 1 > 1024:
        doc["limits"] = {"endpoints": 1 << n.bit_length()}
    path = os.path.join(tmp, f"endpoints-{n}.json")
    json.dump(doc, open(path, "w"))
    t0 = time.monotonic()
    try:
        run([moat, "lab", "up", path, "--name", name, "--no-listeners", "--json"], timeout=7200)
        up_s = time.monotonic() - t0
        m = moat_memory(moat, name)
        st = json.loads(run([moat, "lab", "status", "--lab", name, "--json"]).stdout)
    finally:
        t1 = time.monotonic()
        run([moat, "lab", "down", "--name", name], check=False, timeout=7200)
        down_s = time.monotonic() - t1
    m.update({"endpoints": n, "networks": nets, "lab_up_s": up_s, "lab_down_s": down_s,
              "endpoint_entries": st.get("endpoint_entries")})
    return m


# ---- the run ----------------------------------------------------------------------------

def tool_version(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    return (r.stdout + r.stderr).strip().splitlines()[0] if (r.stdout + r.stderr).strip() else ""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moat")
    ap.add_argument("--kernel-bench")
    ap.add_argument("--mode", choices=["quick", "full"], default="full")
    ap.add_argument("--out", help="directory for <date>-<host>.{json,md,png}")
    ap.add_argument("--reps", type=int)
    ap.add_argument("--endpoints", help="endpoint counts for memory, comma-separated "
                    "(default: quick 10, full 100,4000; empty: none)")
    ap.add_argument("--conntrack", type=int,
                    help="moat's limits.conntrack in the lab (default: the kernel's "
                         "nf_conntrack_max, the table iptables and nftables get; 0: moat's "
                         "own default, sized for a small host)")
    ap.add_argument("--render", metavar="RESULTS_JSON",
                    help="only rank an existing results file again (its ratios and intervals, "
                         "from its samples) and write its .md and .png again")
    a = ap.parse_args()
    if a.render:
        base = a.render[:-len(".json")] if a.render.endswith(".json") else a.render
        res = json.load(open(base + ".json"))
        rank_all(res)
        json.dump(res, open(base + ".json", "w"), indent=1)
        open(base + ".md", "w").write(markdown(res, os.path.basename(base)))
        chart(res, base + ".png", tempfile.mkdtemp(prefix="moat-bench."))
        print(base)
        return 0
    if not a.moat or not a.kernel_bench or not a.out:
        ap.error("--moat, --kernel-bench and --out are required (except with --render)")
    quick = a.mode == "quick"
    # The same connection-tracking capacity for every contender: moat's
    # default table is sized for a small host (16,384 flows, some 3,000
    # closes a second before a container meets its quota), netfilter's is
    # nf_conntrack_max. With moat's default, a client opening a connection
    # per request is held to that rate (conntrack-quota drops, 1 s SYN
    # retransmits), which measures the limit, not the data path.
    conntrack = a.conntrack
    if conntrack is None:
        try:
            conntrack = int(open("/proc/sys/net/netfilter/nf_conntrack_max").read())
        except (OSError, ValueError):
            conntrack = 262144
    # Full: 9 rounds fit about 45 minutes on the 2-CPU VM (a round at two
    # rule counts took about 3.2 minutes, the rest about 16: control plane,
    # memory with a lab of 4,000 containers, 13 of them to build and
    # remove, the kernel bench); quick: 2 rounds, to exercise the
    # intervals (too few to rank by).
    reps = a.reps or (2 if quick else 9)
    sizes = [10] if quick else [10, 10000]
    secs = 1 if quick else 5
    cp_sizes = [100, 1000] if quick else [1000, 10000, 100000]
    # Applying 100,000 rules from nothing takes its time in each contender:
    # the control plane's figures vary far less than the data path's.
    cp_reps = min(reps, 5)
    mem_sizes = [10, 1000] if quick else [10, 1000, 10000, 100000]
    ep_sizes = [10] if quick else [100, 4000]
    if a.endpoints is not None:
        ep_sizes = [int(x) for x in a.endpoints.split(",") if x.strip()]
    # The kernel's figures are steady: more rounds cost seconds, and quick
    # gets as many as a verdict needs.
    kb_rounds = ["--rounds", str(stats.MIN_ROUNDS if quick else 21)]

    os.makedirs(a.out, exist_ok=True)
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    host = socket.gethostname()
    base = os.path.join(a.out, f"{stamp}-{host}")
    tmp = tempfile.mkdtemp(prefix="moat-bench.")
    name = f"bench{os.getpid()}"[:14]
    res = {
        "mode": a.mode, "started": stamp, "host": host, "kernel": platform.release(),
        "cpus": os.cpu_count(), "reps": reps, "control_plane_reps": cp_reps,
        "seconds_per_measurement": secs, "ratio_method": stats.METHOD,
        "cpu_cost_method": "system + irq + softirq time of all CPUs (/proc/stat, "
                           f"{CLK_TCK} ticks/s) over each measured run, less the same machine's "
                           f"rate over {BACKGROUND_WINDOW_S} s with the lab idle right before it; "
                           "machine-wide: clients, servers and other load count",
        "moat_commit": run(["git", "-C", os.path.dirname(os.path.abspath(__file__)), "rev-parse", "--short", "HEAD"],
                           check=False).stdout.strip(),
        "tools": {t: tool_version(c) for t, c in {
            "iptables": ["iptables", "-V"], "nft": ["nft", "-v"], "iperf3": ["iperf3", "-v"],
            "wrk": ["wrk", "-v"], "nginx": ["nginx", "-v"]}.items()},
        "lab_name": name, "cpu_pinning": {"servers": SERVER_CPU, "clients": CLIENT_CPU},
        "moat_limits": {"conntrack": conntrack} if conntrack else "moat's defaults",
        "rules": sizes, "checks": {}, "lab": {}, "cpu_cost": {}, "control_plane": {}, "memory": {},
        "memory_endpoints": {}, "bpf_stats": {},
    }
    stats_old = open("/proc/sys/kernel/bpf_stats_enabled").read().strip()
    lab = None
    try:
        open("/proc/sys/kernel/bpf_stats_enabled", "w").write("1")
        log(f"lab {name} ({a.mode}: rules {sizes}, {reps} rounds, {secs} s each)")
        lab = Lab(a.moat, name, tmp, {"conntrack": conntrack} if conntrack else None)
        lab.start_servers()
        con = Contenders(lab, a.moat, tmp)
        con.brnf(False)
        c2 = lab.ip["c2"]
        samples = {}  # (scenario, contender, rules) -> [values]
        costs = {}  # (cost scenario, contender, rules) -> [cost details]

        def add(scn, who, rules, v):
            samples.setdefault((scn, who, rules), []).append(v)

        def add_cost(scn, who, rules, cost, per):
            """cost: with_cpu()'s; figures are CPU seconds per `per` units
            (1e9 bytes: s/GB; 1e6 requests: s per million, i.e. us/request)."""
            cost["per_units"] = per
            costs.setdefault((scn, who, rules), []).append(cost)

        for rnd in range(reps):
            for rules in sizes:
                order = CONTENDERS[rnd % 4:] + CONTENDERS[:rnd % 4]
                for who in order:
                    log(f"round {rnd + 1}/{reps}, {rules} rules: {who}")
                    con.setup(who, rules)
                    try:
                        key = f"{who}/{rules}"
                        if key not in res["checks"]:
                            res["checks"][key] = enforcement_checks(lab, who)
                        def timed(progs, measure):
                            """measure(), and for moat the run time its programs took per packet."""
                            before = prog_stats(a.moat, lab) if who == "moat" else None
                            v = measure()
                            if before is not None:
                                after = prog_stats(a.moat, lab)
                                for prog in progs:
                                    n = after[prog][0] - before[prog][0]
                                    t = after[prog][1] - before[prog][1]
                                    if n:
                                        res["bpf_stats"].setdefault(f"{prog}/{rules}", []).append(
                                            {"packets": n, "ns_per_packet": t / n})
                            return v

                        gbps, cost = timed(("from_container", "to_container"),
                                           lambda: with_cpu(lambda: iperf(lab, "c1", c2, secs)))
                        add("throughput_same_network_gbps", who, rules, gbps)
                        add_cost("cpu_s_per_gb_same_network", who, rules, cost, 1e9)
                        pub = c2 if who == "baseline" else HOST_UPLINK_IP
                        gbps, cost = timed(("from_world", "to_world"),
                                           lambda: with_cpu(lambda: iperf(lab, "out", pub, secs)))
                        add("throughput_published_gbps", who, rules, gbps)
                        add_cost("cpu_s_per_gb_published", who, rules, cost, 1e9)
                        for close in (False, True):
                            def requests():
                                w = wrk(lab, f"http://{c2}/", secs, close)
                                return w, w["requests"]
                            w, cost = with_cpu(requests)
                            mode = "new_connection" if close else "keepalive"
                            add_cost(f"cpu_us_per_request_{mode}", who, rules, cost, 1e6)
                            add(f"rr_{mode}_rps", who, rules, w["rps"])
                            add(f"rr_{mode}_p50_ms", who, rules, w["p50_ms"])
                            add(f"rr_{mode}_p99_ms", who, rules, w["p99_ms"])
                            if w["errors"]:
                                res.setdefault("wrk_errors", []).append(f"{who}/{rules}/{mode}: {w['errors']}")
                    finally:
                        con.teardown(who)

        for (scn, who, rules), v in samples.items():
            res["lab"].setdefault(scn, {}).setdefault(str(rules), {})[who] = summary(v)
        for (scn, who, rules), cs in costs.items():
            res["cpu_cost"].setdefault(scn, {}).setdefault(str(rules), {})[who] = {"runs": cs}

        # Control plane: from nothing, then one rule changed.
        for rnd in range(cp_reps):
            for n in cp_sizes:
                order = ["iptables", "nftables", "moat"]
                order = order[rnd % 3:] + order[:rnd % 3]
                for who in order:
                    log(f"control plane, round {rnd + 1}/{cp_reps}: {who}, {n} rules")
                    try:
                        tp = con.prepare(who)
                        t0 = con.setup(who, n)
                        t1 = con.change_one(who, n)
                    finally:
                        con.teardown(who)
                    d = res["control_plane"].setdefault(str(n), {}).setdefault(who, {"apply_s": [], "change_one_s": []})
                    d["apply_s"].append(t0)
                    d["change_one_s"].append(t1)
                    if tp is not None:
                        res.setdefault("control_plane_instance_up_s", []).append(tp)
        for n, by_who in res["control_plane"].items():
            for who, d in by_who.items():
                by_who[who] = {k: summary(v) for k, v in d.items()}

        # Memory at moat's own default limits, what a user gets: a lab of
        # its own when the measuring lab's conntrack table was raised.
        mem_lab = lab
        if conntrack:
            mem_tmp = os.path.join(tmp, "memory")
            os.makedirs(mem_tmp)
            mem_lab = Lab(a.moat, f"{name[:12]}mm", mem_tmp)
        try:
            mem_con = Contenders(mem_lab, a.moat, mem_lab.tmp)
            for n in mem_sizes:
                log(f"memory: moat with {n} rules (moat's default limits)")
                mem_con.setup("moat", n)
                try:
                    res["memory"][str(n)] = moat_memory(a.moat, mem_lab.name)
                finally:
                    mem_con.teardown("moat")
        finally:
            if mem_lab is not lab:
                mem_lab.close()
        for n in ep_sizes:
            log(f"memory: moat with {n} endpoints (a lab of {n} containers)")
            # A figure that fails is reported, not the run lost with it.
            try:
                res["memory_endpoints"][str(n)] = endpoint_memory(a.moat, n, tmp)
            except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
                log(f"memory with {n} endpoints failed: {e}")
                res.setdefault("failures", []).append(f"memory with {n} endpoints: {e}")

        # Run-time statistics cost every program run two clock reads (tens
        # of ns): off again, as the machine had it, before timing paths.
        open("/proc/sys/kernel/bpf_stats_enabled", "w").write(stats_old)
        log("per-packet cost: moat_kernel_bench")
        try:
            kb = run([a.kernel_bench] + (["--quick"] if quick else []) + kb_rounds, timeout=3600)
            res["per_packet"] = json.loads(kb.stdout)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired) as e:
            log(f"per-packet cost failed: {e}")
            res.setdefault("failures", []).append(f"per-packet cost: {e}")
    finally:
        open("/proc/sys/kernel/bpf_stats_enabled", "w").write(stats_old)
        if lab:
            lab.close()
        shutil.rmtree(tmp, ignore_errors=True)

    res["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    log("ratios and their intervals")
    rank_all(res)
    res["all_checks_ok"] = all(c["ok"] for cs in res["checks"].values() for c in cs)
    for f in res.get("failures", []):
        log(f"FAILED: {f}")
    json.dump(res, open(base + ".json", "w"), indent=1)
    open(base + ".md", "w").write(markdown(res, os.path.basename(base)))
    chart(res, base + ".png", tmp)
    log(f"wrote {base}.json, .md, .png")
    print(base)
    return 0 if res["all_checks_ok"] and not res.get("failures") else 1


# ---- reports ----------------------------------------------------------------------------

SCENARIOS = [
    ("throughput_same_network_gbps", "TCP throughput c1 -> c2, Gbit/s", True),
    ("throughput_published_gbps", "TCP throughput outside -> published port, Gbit/s", True),
    ("rr_keepalive_rps", "HTTP requests/s, keep-alive", True),
    ("rr_keepalive_p50_ms", "p50 latency, keep-alive, ms", False),
    ("rr_keepalive_p99_ms", "p99 latency, keep-alive, ms", False),
    ("rr_new_connection_rps", "HTTP requests/s, new connection each", True),
    ("rr_new_connection_p50_ms", "p50 latency, new connection each, ms", False),
    ("rr_new_connection_p99_ms", "p99 latency, new connection each, ms", False),
]
HIGHER_IS_BETTER = {scn: hb for scn, _, hb in SCENARIOS}
CPU_SCENARIOS = [
    ("cpu_s_per_gb_same_network", "kernel CPU per GB, c1 -> c2, CPU-seconds"),
    ("cpu_s_per_gb_published", "kernel CPU per GB, outside -> published port, CPU-seconds"),
    ("cpu_us_per_request_keepalive", "kernel CPU per request, keep-alive, CPU-microseconds"),
    ("cpu_us_per_request_new_connection",
     "kernel CPU per request, new connection each, CPU-microseconds"),
]


def rank_all(res):
    """Every ratio of a results document with its interval and verdict, from
    the samples it holds (so an older results file can be ranked again)."""
    res["ratio_method"] = stats.METHOD
    for scn, by_rules in res["lab"].items():
        for by_who in by_rules.values():
            rank(by_who, HIGHER_IS_BETTER.get(scn, True))
    for scn, by_rules in res.get("cpu_cost", {}).items():
        for by_who in by_rules.values():
            cpu_figures(by_who, 1e9 if "_per_gb_" in scn else 1e6)
            rank(by_who, higher_is_better=False)
    for by_who in res["control_plane"].values():
        m = by_who.get("moat")
        for who, d in by_who.items():
            for k in ("apply_s", "change_one_s"):
                # Seconds: lower is better; the verdict is the contender's
                # standing against moat.
                c = stats.compare(d[k]["samples"], m[k]["samples"], higher_is_better=False,
                                  paired=len(d[k]["samples"]) == len(m[k]["samples"]))
                d[k]["ratio_to_moat"], d[k]["vs_moat"] = c["estimate"], c
    if res.get("per_packet"):
        to_floor(res["per_packet"])


def cpu_figures(by_who, per_units):
    """A CPU-cost entry's figures from its runs (with_cpu()'s records).
    Ranked: the gross figure, all kernel CPU of the machine over the run per
    unit. Beside it, net of the background rate measured before the run:
    on a shared VM that rate swings within seconds, so the net figure can
    even come out negative and is no ground for a ratio."""
    for who, s in list(by_who.items()):
        runs = [r for r in s["runs"] if r["units"]]  # nothing served: no figure
        if not runs:
            del by_who[who]
            continue
        per = lambda r: r["units"] / r.get("per_units", per_units)  # noqa: E731
        gross = [r["kernel_cpu_s"] / per(r) for r in runs]
        net = [r["net_cpu_s"] / per(r) for r in runs]
        s.update(summary(gross))
        s["net_of_background"] = {"median": statistics.median(net), "min": min(net), "max": max(net),
                                  "samples": net}


def to_floor(kb):
    """Each moat case of moat_kernel_bench's results as a multiple of the
    floor of its family (floor.bpf.c, timed in the same rounds: paired)."""
    floors = {c["path"]: c for c in kb.get("cases", []) if c["scenario"] == "floor"}
    for c in kb.get("cases", []):
        f = floors.get(c.get("floor_path"))
        if not f:
            continue
        r = stats.compare(c["ns"]["samples"], f["ns"]["samples"], higher_is_better=False,
                          paired=len(c["ns"]["samples"]) == len(f["ns"]["samples"]))
        # The target for the established-flow path: at most twice the floor.
        if r["verdict"] in ("too few rounds", "no figure"):
            r["within_2x_floor"] = r["verdict"]
        else:
            lo, hi = r["ci"]
            r["within_2x_floor"] = "yes" if hi <= 2 else "no" if lo > 2 else "unclear"
        c["to_floor"] = r


def side_args(doc):
    """The options every side benchmark (fastpath.py, masquerade.py) takes."""
    ap = argparse.ArgumentParser(description=doc,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moat", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--reps", type=int, default=stats.MIN_ROUNDS)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--conntrack", type=int, default=1048576,
                    help="the lab's limits.conntrack (0: moat's default)")
    return ap


def write_results(base, res, markdown):
    """What a side benchmark (fastpath.py, masquerade.py) ends with: the end
    stamped, BASE.json and BASE.md (markdown(res)) written, BASE printed;
    exit status 0 when every check passed (res["all_checks_ok"])."""
    res["finished"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%M%SZ")
    json.dump(res, open(base + ".json", "w"), indent=1)
    open(base + ".md", "w").write(markdown(res))
    log(f"wrote {base}.json, .md")
    print(base)
    return 0 if res["all_checks_ok"] else 1


def fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def cell(s, others=()):
    """A contender's figure: median [min-max], ratio to the baseline with
    its interval and verdict, then each (key, name) of `others` it holds
    (a comparison with another contender) likewise."""
    if not s:
        return "-"
    out = f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]"
    for key, name in (("vs_baseline", ""),) + tuple(others):
        if key in s:
            c = s[key]
            out += f"<br>{'vs ' + name + ': ' if name else ''}{stats.describe(c, c['higher_is_better'])}"
    return out


def rank_table(o, what, rules, by_who):
    o.append(f"**{what}, {rules} policy rules**  ")
    o.append("| " + " | ".join(CONTENDERS) + " |")
    o.append("|---" * len(CONTENDERS) + "|")
    o.append("| " + " | ".join(cell(by_who.get(w)) for w in CONTENDERS) + " |")
    vs = by_who.get("moat", {}).get("moat_vs", {})
    if vs:
        o.append("")
        o.append("moat " + "; ".join(
            f"vs {w}: {stats.describe(c, c['higher_is_better'])}" for w, c in vs.items()))
    o.append("")


def markdown(res, title):
    o = [f"# moat benchmark {title}", "",
         f"{res['mode']} run, moat {res['moat_commit']}, kernel {res['kernel']}, {res['cpus']} CPUs, "
         f"{res['reps']} rounds of {res['seconds_per_measurement']} s per figure, contenders "
         "interleaved (their order rotates each round). Medians, with [min-max]. "
         f"moat's limits in the lab: {res.get('moat_limits', 'not recorded')}.", "",
         "**How figures are ranked.** Every ratio is a ratio of medians with a 95% confidence "
         "interval by bootstrap over rounds (10,000 resamples, fixed seed; the two sides of a "
         "ratio are paired by round, as they were measured). The verdict reads the interval: "
         "**indistinguishable** when it contains 1.0, otherwise **ahead** or **behind** by the "
         "figure (for seconds, latency and CPU cost, lower is ahead). Two contenders are ranked "
         "by the interval of their own ratio (\"moat vs X\" lines), not by comparing their "
         f"intervals to the baseline. Under {stats.MIN_ROUNDS} rounds intervals are stored "
         "but too coarse to rank by (\"too few rounds\").", "",
         "## Enforcement checked before measuring", ""]
    o.append("| contender/rules | " + " | ".join(c["check"] for c in next(iter(res["checks"].values()))) + " |")
    o.append("|---" * (1 + len(next(iter(res["checks"].values())))) + "|")
    for k, cs in res["checks"].items():
        o.append(f"| {k} | " + " | ".join(("ok " if c["ok"] else "WRONG ") + c["observed"] for c in cs) + " |")
    if res.get("failures"):
        o += ["", "**Figures that failed** (the run went on without them):", ""]
        o += [f"- {f}" for f in res["failures"]]
    o += ["", "## In the lab", "",
          "Each cell: median [min-max], then the ratio to the baseline (no filtering) with its "
          "interval and verdict.", ""]
    for scn, what, _ in SCENARIOS:
        for rules, by_who in res["lab"].get(scn, {}).items():
            rank_table(o, what, rules, by_who)
    if res.get("cpu_cost"):
        o += ["## CPU cost", "",
              "Kernel CPU time (system + irq + softirq, /proc/stat) of the **whole machine** "
              "over each run, per GB moved or per request served: clients, servers, the "
              "filtering and any other load of the machine (other sessions on a shared VM) "
              "count alike. Ranked: this gross figure. Under each table, the medians net of "
              f"the background rate measured over {BACKGROUND_WINDOW_S} s with the lab idle right "
              "before each run: where load changed within seconds they can be far off, even "
              "negative, so they are shown, not ranked. Lower is better.", ""]
        for scn, what in CPU_SCENARIOS:
            for rules, by_who in res["cpu_cost"].get(scn, {}).items():
                rank_table(o, what, rules, by_who)
                net = [f"{w} {fmt(by_who[w]['net_of_background']['median'])}" for w in CONTENDERS
                       if by_who.get(w, {}).get("net_of_background")]
                if net:
                    o[-1:] = ["Net of background (medians): " + ", ".join(net), ""]
    if res["bpf_stats"]:
        o += ["## moat programs in the lab (kernel.bpf_stats_enabled)", "",
              "| program/rules | ns per packet (median) | packets per run |", "|---|---|---|"]
        for k, v in res["bpf_stats"].items():
            o.append(f"| {k} | {fmt(statistics.median(x['ns_per_packet'] for x in v))} | "
                     f"{int(statistics.median(x['packets'] for x in v))} |")
        o.append("")
    o += [f"## Control plane (seconds; {res.get('control_plane_reps', res['reps'])} rounds; "
          "ratio to moat)", "",
          "| rules | contender | apply from nothing | change one rule |", "|---|---|---|---|"]
    for n, by_who in res["control_plane"].items():
        for who, d in by_who.items():
            row = []
            for k in ("apply_s", "change_one_s"):
                c = d[k].get("vs_moat")
                row.append(f"{fmt(d[k]['median'])} " + (stats.describe(c, False) if c and who != "moat"
                                                         else f"x{fmt(d[k]['ratio_to_moat'])}"))
            o.append(f"| {n} | {who} | {row[0]} | {row[1]} |")
    o += ["", "iptables-restore replaces whole tables (how Docker and kube-proxy write them); "
          "nftables changes one set element; moat reads and compiles the whole policy file "
          "again and writes only the difference into the idle generation. \"From nothing\" "
          "is from no rule: moat's instance is up with its programs loaded first (as the "
          "other two have their kernel modules), which took "
          f"{fmt(statistics.median(res['control_plane_instance_up_s'])) if res.get('control_plane_instance_up_s') else '?'} s "
          "(median, the BPF verifier's share). A verdict is the contender's standing against moat.", "",
          "## moat kernel memory (bpftool: bytes_memlock of maps and programs)", "",
          "What is pinned for the instance, whatever the map sizes of the build are.", "",
          "| rules | maps | programs |", "|---|---|---|"]
    for n, m in res["memory"].items():
        o.append(f"| {n} | {m['maps_bytes'] / 2**20:.1f} MiB ({m['maps']} maps) | "
                 f"{m['programs_bytes'] / 2**10:.0f} KiB |")
    if res.get("memory_endpoints"):
        o += ["", "By endpoints: a lab of its own with that many containers (each in its own "
              f"namespace, {ENDPOINTS_PER_NET} to a network), enforced by moat, no policy.", "",
              "| endpoints | endpoints map entries | maps | programs | lab up, s |",
              "|---|---|---|---|---|"]
        for n, m in res["memory_endpoints"].items():
            o.append(f"| {n} | {m.get('endpoint_entries')} | {m['maps_bytes'] / 2**20:.1f} MiB "
                     f"({m['maps']} maps) | {m['programs_bytes'] / 2**10:.0f} KiB | "
                     f"{m['lab_up_s']:.0f} |")
    k = res.get("per_packet", {})
    if k:
        o += ["", "## moat per packet in the kernel (BPF_PROG_TEST_RUN, ns/packet)", "",
              f"{k.get('rounds')} rounds, all cases interleaved in each. \"to floor\": the case "
              "as a multiple of bench/floor.bpf.c on its family's packet (a program that only "
              "parses Ethernet, IP and L4 with bpf/lib/parse.h and passes), with its interval; "
              "the floor's ipv4_ct and ipv4_endpoint_ct are not moat: the IPv4 floor with one "
              "hash lookup (the flow in a table like moat's ct, its entry refreshed) and with two "
              "(the interface's entry first, as from_container's), the least moat's design adds "
              "(no \"<=2x\" for them: the target is moat's); "
              "\"<=2x\": whether the whole interval is at most 2 (the target for the "
              "established-flow paths). runs=single cases are the minimum of one-packet runs, "
              "whose time includes the kernel's clock reads (tens of ns), against a floor "
              "averaged over repetitions: their ratio is pessimistic.", "",
              "\"to smallest\": the median as a ratio to the smallest size of the same path.", "",
              "| scenario | path | runs | rules / ports | entries | median | min | max | "
              "to smallest | to floor | <=2x |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
        first = {}
        for c in k.get("cases", []):
            size = c.get("rules", c.get("ports", ""))
            f = c.get("to_floor")
            med = float(c["ns"]["median"])
            ref = first.setdefault((c["scenario"], c["path"]), med)
            o.append(f"| {c['scenario']} | {c['path']} | {c.get('runs', '')} | {size} | "
                     f"{c.get('entries', '')} | {fmt(med)} | "
                     f"{fmt(float(c['ns']['min']))} | {fmt(float(c['ns']['max']))} | "
                     f"x{fmt(med / ref) if ref else '-'} | "
                     + (f"x{f['estimate']:.3g}" + (f" [{f['ci'][0]:.3g}-{f['ci'][1]:.3g}]"
                                                   if f.get("ci") else "") if f else "") + " | "
                     + (f["within_2x_floor"] if f and c["scenario"] != "floor" else "")
                     + " |")
    return "\n".join(o) + "\n"


def chart(res, png, tmp):
    """Ratios to the baseline, one cluster per scenario and rule count."""
    rows = []
    for scn, what, _ in SCENARIOS:
        if not scn.endswith("_rps") and not scn.endswith("_gbps"):
            continue
        for rules, by_who in res["lab"].get(scn, {}).items():
            label = what.split(",")[0].replace("TCP throughput ", "").replace("HTTP requests/s", "req/s")
            label = f"{label} {scn.split('_')[1] if scn.startswith('rr') else ''} {rules}r".replace("  ", " ")
            rows.append([label] + [by_who.get(w, {}).get("ratio_to_baseline") or 0 for w in CONTENDERS])
    if not rows or not shutil.which("gnuplot"):
        return
    os.makedirs(tmp, exist_ok=True)
    dat = os.path.join(tmp, "chart.dat")
    with open(dat, "w") as f:
        for r in rows:
            f.write('"%s" %s\n' % (r[0], " ".join(f"{v:.4f}" for v in r[1:])))
    script = f"""set terminal png size 1200,600 noenhanced
set output '{png}'
set title 'moat benchmark {res["started"]} ({res["mode"]}): median as a ratio to no filtering (higher is better)'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set yrange [0:*]
set ylabel 'ratio to baseline'
set xtics rotate by -25 scale 0
set key top right
set grid ytics
plot '{dat}' using 2:xtic(1) title 'baseline', '' using 3 title 'iptables', '' using 4 title 'nftables', '' using 5 title 'moat'
"""
    run(["gnuplot"], input=script)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
