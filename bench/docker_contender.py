#!/usr/bin/env python3
"""docker_contender.py - moat against the real Docker dataplane, on real dockerds.

Run by scripts/bench-docker-dataplane.sh, which starts the dockerds, the
containers and the moat agent and describes them in an env file; this
checks each contender's enforcement, measures, and writes the results. Not
a test.

Contenders, each a private dockerd (Debian's docker.io) of its own, in
namespaces of its own (tests/e2e/docker_lib.sh), with the same networks,
containers and published ports made by the docker CLI:
  docker-iptables  iptables: true, userland-proxy: true (Debian's default):
                   Docker's own chains (DNAT, isolation, FORWARD policy
                   DROP) and a docker-proxy process per published port for
                   the host's own connections to 127.0.0.1.
  moat-docker      iptables: false, userland-proxy: false (as the e2e
                   tests), enforced by `moat docker`.
  docker-none      iptables: false, userland-proxy: false, no moat: no
                   isolation and no published path at all (dockerd's
                   placeholder socket answers nothing), so its figures go
                   straight to the container's address over the routed
                   bridge: the floor.
Docker-style chains written by hand (and nftables) stay in bench.py's lab as
the second reference.

In each instance: networks bn1 and bn2; srv on bn1 (-p 8080:80
-p 5201:5201, cpuset CPU 1) running nginx on 80 and 81 and iperf3 -s on
5201; cli on bn1 (cpuset CPU 0), the container-to-container client; oth on
bn2, the isolation probe. busybox has neither nginx, iperf3 nor wrk: the
machine's binaries run inside the containers through their own loader from
a read-only bind mount of /usr (/host/usr), so the servers are real
container processes (cgroup, namespaces, cpuset) and nothing is faked. The
outside and host clients run in those namespaces pinned to CPU 0.

Scenarios (wrk -t1 -c16; keep-alive and a new connection per request;
iperf3 for throughput):
  outside   outside namespace -> uplink address 198.18.0.1:8080 / :5201
  host      dockerd's namespace -> 127.0.0.1:8080 / :5201 (under Docker: the
            userland proxy; under moat: the socket hooks)
  hostaddr  dockerd's namespace -> 198.18.0.1:8080 / :5201, its own uplink
            address (under Docker: iptables' OUTPUT DNAT, not the proxy)
  c2c       cli -> srv's address :80 / :5201 on the same network
docker-none's outside and host figures target srv's address directly.
Rounds are interleaved and the contender order rotates each round.
"""
import argparse
import datetime
import json
import os
import platform
import random
import re
import socket
import statistics
import subprocess
import sys
import time

CONTENDERS = ["docker-iptables", "moat-docker", "docker-none"]
REFERENCE = "docker-iptables"
UPLINK_IP = "198.18.0.1"  # docker_lib.sh's DK_UPLINK_HOST_IP
HTTP_PUB, HTTP_PORT, HTTP_CLOSED_PORT, IPERF_PORT = 8080, 80, 81, 5201
CLIENT_CPU = "0"
SOURCES = ["outside", "host", "hostaddr", "c2c"]

# (key, what, unit, higher is better)
SCENARIOS = []
for src, what in (("outside", "outside -> published port"),
                  ("host", "host -> 127.0.0.1:published port"),
                  ("hostaddr", f"host -> {UPLINK_IP}:published port"),
                  ("c2c", "container -> container, same network")):
    for mode, mwhat in (("keepalive", "keep-alive"), ("new_connection", "new connection each")):
        SCENARIOS += [(f"rr_{src}_{mode}_rps", f"HTTP req/s, {what}, {mwhat}", "requests/s", True),
                      (f"rr_{src}_{mode}_p50_ms", f"p50 latency, {what}, {mwhat}", "ms", False),
                      (f"rr_{src}_{mode}_p99_ms", f"p99 latency, {what}, {mwhat}", "ms", False)]
    SCENARIOS.append((f"throughput_{src}_gbps", f"TCP throughput, {what}", "Gbit/s", True))


def log(*a):
    print("docker-contender:", *a, file=sys.stderr, flush=True)


def run(cmd, check=True, timeout=300, env=None):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if check and r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-2000:]}")
    return r


class Instance:
    """One private dockerd with its containers, as the shell script left it."""

    def __init__(self, d):
        self.__dict__.update(d)
        self.env = dict(os.environ, DOCKER_CONFIG=os.path.join(self.dir, "cli"))
        self.ip = {c: self.inspect(c, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")
                   for c in ("srv", "cli", "oth")}

    def docker(self, args, **kw):
        return run([self.cli, "-H", f"unix://{self.sock}"] + args, env=self.env, **kw)

    def inspect(self, c, fmt):
        return self.docker(["inspect", "-f", fmt, c]).stdout.strip()

    def command(self, where, argv):
        """argv (a machine binary and its arguments) run at `where`: the
        outside or host namespace (pinned to the client CPU), or inside a
        container with the machine's loader (the container's cpuset)."""
        if where in ("outside", "host", "hostaddr"):
            ns = self.out_netns if where == "outside" else self.host_netns
            return ["nsenter", f"--net={ns}", "taskset", "-c", CLIENT_CPU] + argv
        binary = argv[0] if argv[0].startswith("/") else run(["sh", "-c", f"command -v {argv[0]}"]).stdout.strip()
        return ([self.cli, "-H", f"unix://{self.sock}", "exec", where, "sh", "/conf/run.sh",
                 "/host" + os.path.realpath(binary)] + argv[1:])

    def target(self, src, port_kind):
        """Where `src` sends its requests: the published port, except for
        docker-none (no published path) and container-to-container."""
        srv = self.ip["srv"]
        port = HTTP_PORT if port_kind == "http" else IPERF_PORT
        if src == "c2c" or self.contender == "docker-none":
            return srv, port
        pub = HTTP_PUB if port_kind == "http" else IPERF_PORT
        return ("127.0.0.1" if src == "host" else UPLINK_IP), pub


# ---- enforcement checks ---------------------------------------------------------------

def answered(inst, where, ip, port, timeout):
    """One HTTP GET; True when nginx's "ok" came back."""
    cmd = inst.command(where, ["curl", "-s", "-m", str(timeout), f"http://{ip}:{port}/"])
    r = run(cmd, check=False, timeout=timeout + 30, env=inst.env)
    return r.stdout.strip() == "ok"


def checks(inst):
    c = inst.contender
    srv = inst.ip["srv"]
    enforced = c != "docker-none"
    cases = [
        (f"outside -> {UPLINK_IP}:{HTTP_PUB} (published -> srv:80)", "outside", UPLINK_IP, HTTP_PUB, enforced),
        (f"host -> 127.0.0.1:{HTTP_PUB} (published, the host's own connection)", "host", "127.0.0.1",
         HTTP_PUB, enforced),
        (f"host -> {UPLINK_IP}:{HTTP_PUB} (published, the host's own address)", "host", UPLINK_IP, HTTP_PUB,
         enforced),
        ("cli -> srv:80 (same network)", "cli", srv, HTTP_PORT, True),
        ("oth -> srv:80 (other network: isolation)", "oth", srv, HTTP_PORT, not enforced),
        ("outside -> srv:81 (container address, port not published)", "outside", srv, HTTP_CLOSED_PORT,
         not enforced),
        # Recorded, not judged: Docker before 28 accepts a published port's
        # container port at the container's address from a neighbour that
        # routes to it; what each contender does is the finding.
        ("outside -> srv:80 (container address, its port is published as 8080)", "outside", srv, HTTP_PORT, None),
    ]
    out = []
    for what, src, ip, port, want in cases:
        if want:
            got = any(answered(inst, src, ip, port, 2) for _ in range(3))
        else:
            got = answered(inst, src, ip, port, 2)
        out.append({"check": what, "expected": None if want is None else ("answered" if want else "not answered"),
                    "observed": "answered" if got else "not answered", "ok": None if want is None else got == want})
    return out


def evidence(inst):
    """What dataplane each instance really has: listeners, rule counts."""
    ss = run(["nsenter", f"--net={inst.host_netns}", "ss", "-Hltnp"], check=False).stdout
    nft = run(["nsenter", f"--net={inst.host_netns}", "nft", "list", "ruleset"], check=False).stdout
    fwd = run(["nsenter", f"--net={inst.host_netns}", "iptables", "-S", "FORWARD"], check=False).stdout
    procs = sorted({m for m in re.findall(r'users:\(\("([^"]+)"', ss)})
    sysctl = {}
    for k in ("net.bridge.bridge-nf-call-iptables", "net.ipv4.ip_forward"):
        r = run(["nsenter", f"--net={inst.host_netns}", "sysctl", "-n", k], check=False)
        sysctl[k] = r.stdout.strip() or None
    return {"listeners": [" ".join(l.split()[3:4] + re.findall(r'\(\("([^"]+)"', l)) for l in ss.splitlines()],
            "listening_processes": procs,
            "nft_ruleset_lines": len(nft.splitlines()), "sysctl": sysctl,
            "iptables_forward": fwd.splitlines()}


# ---- measurements -----------------------------------------------------------------------

def wrk(inst, src, seconds, close):
    ip, port = inst.target(src, "http")
    argv = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency"]
    if close:
        argv += ["-H", "Connection: close"]
    argv.append(f"http://{ip}:{port}/")
    out = run(inst.command("cli" if src == "c2c" else src, argv), timeout=seconds + 60, env=inst.env).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    errors = re.findall(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", out)

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        v = float(m.group(1))
        return v / 1000 if m.group(2) == "us" else v * 1000 if m.group(2) == "s" else v

    return {"rps": rps, "p50_ms": pct(50), "p99_ms": pct(99), "errors": "; ".join(errors)}


def iperf(inst, src, seconds):
    ip, port = inst.target(src, "iperf")
    argv = ["iperf3", "-c", ip, "-p", str(port), "-t", str(seconds), "-J"]
    d = {"error": "not run"}
    # One test at a time on the server, which may still be closing the last.
    for attempt in range(5):
        r = run(inst.command("cli" if src == "c2c" else src, argv), check=False, timeout=seconds + 60,
                env=inst.env)
        try:
            d = json.loads(r.stdout)
        except json.JSONDecodeError:
            d = {"error": (r.stderr.strip() or r.stdout.strip())[-500:]}
        if "error" not in d:
            return d["end"]["sum_received"]["bits_per_second"] / 1e9
        time.sleep(0.5 * (attempt + 1))
    raise RuntimeError(f"iperf3 {inst.contender} {src} -> {ip}:{port}: {d['error']}")


# ---- statistics ---------------------------------------------------------------------------

def ratio_ci(xs, ref, n=10000, seed=1):
    """Percentile bootstrap (fixed seed) of median(xs) / median(ref), each
    resampled on its own: a 95% interval."""
    rnd = random.Random(seed)
    v = []
    for _ in range(n):
        a = statistics.median(rnd.choices(xs, k=len(xs)))
        b = statistics.median(rnd.choices(ref, k=len(ref)))
        if b:
            v.append(a / b)
    if not v:
        return None
    v.sort()
    return [v[int(0.025 * len(v))], v[int(0.975 * len(v)) - 1]]


def summarise(scenarios):
    for key, what, unit, higher in SCENARIOS:
        by = scenarios.get(key)
        if not by:
            continue
        ref = by.get(REFERENCE, {}).get("samples")
        for who, s in by.items():
            xs = s["samples"]
            s["median"] = statistics.median(xs)
            s["min"], s["max"] = min(xs), max(xs)
            if ref and statistics.median(ref):
                s["ratio_to_" + REFERENCE] = s["median"] / statistics.median(ref)
                if who != REFERENCE and min(len(xs), len(ref)) < 3:
                    s["verdict"] = "no interval: fewer than 3 rounds"
                elif who != REFERENCE:
                    ci = ratio_ci(xs, ref)
                    s["ratio_ci95"] = ci
                    if ci is None or ci[0] <= 1.0 <= ci[1]:
                        s["verdict"] = "indistinguishable"
                    else:
                        s["verdict"] = "better" if (ci[0] > 1.0) == higher else "worse"


# ---- the run --------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", required=True, help="instances, written by scripts/bench-docker-dataplane.sh")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--mode", default="full")
    ap.add_argument("--out", required=True, help="directory for <date>-<host>-docker-dataplane.{json,md}")
    a = ap.parse_args()
    env = json.load(open(a.env))
    insts = {d["contender"]: Instance(d) for d in env["instances"]}
    order0 = [c for c in CONTENDERS if c in insts]
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H%MZ")
    res = {
        "benchmark": "docker dataplane: moat docker against Docker's own iptables + userland proxy",
        "mode": a.mode, "started": stamp, "host": socket.gethostname(), "kernel": platform.release(),
        "cpus": os.cpu_count(), "rounds": a.rounds, "seconds_per_measurement": a.seconds,
        "reference": REFERENCE, "contenders": order0,
        "moat_commit": env.get("moat_commit"), "moat_tree_dirty": env.get("moat_tree_dirty"),
        "docker": env.get("docker"), "client_cpu": CLIENT_CPU, "server_cpu": env.get("server_cpu"),
        "wrk": "-t1 -c16 --latency; new-connection mode adds 'Connection: close'",
        "instances": {c: {"ip": i.ip, "daemon": i.daemon} for c, i in insts.items()},
        "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
        "checks": {}, "evidence": {}, "errors": [], "scenarios": {},
    }
    for c, inst in insts.items():
        log(f"checking {c}")
        res["checks"][c] = checks(inst)
        res["evidence"][c] = evidence(inst)
        for ch in res["checks"][c]:
            log(f"  {'ok   ' if ch['ok'] else 'info ' if ch['ok'] is None else 'WRONG'} {ch['check']}: "
                f"{ch['observed']}")

    def add(key, who, v, unit):
        res["scenarios"].setdefault(key, {}).setdefault(who, {"samples": [], "unit": unit})["samples"].append(v)

    t0 = time.monotonic()
    for rnd in range(a.rounds):
        k = rnd % len(order0)
        for who in order0[k:] + order0[:k]:
            inst = insts[who]
            log(f"round {rnd + 1}/{a.rounds}: {who}")
            for src in SOURCES:
                for close in (False, True):
                    mode = "new_connection" if close else "keepalive"
                    w = wrk(inst, src, a.seconds, close)
                    add(f"rr_{src}_{mode}_rps", who, w["rps"], "requests/s")
                    add(f"rr_{src}_{mode}_p50_ms", who, w["p50_ms"], "ms")
                    add(f"rr_{src}_{mode}_p99_ms", who, w["p99_ms"], "ms")
                    if w["errors"]:
                        res["errors"].append(f"round {rnd + 1} {who} {src} {mode}: {w['errors']}")
                add(f"throughput_{src}_gbps", who, iperf(inst, src, a.seconds), "Gbit/s")
    res["measure_wall_s"] = round(time.monotonic() - t0, 1)
    summarise(res["scenarios"])
    res["loadavg_at_end"] = open("/proc/loadavg").read().split()[:3]
    res["all_checks_ok"] = all(ch["ok"] is not False for cs in res["checks"].values() for ch in cs)

    os.makedirs(a.out, exist_ok=True)
    base = os.path.join(a.out, f"{stamp}-{socket.gethostname()}-docker-dataplane")
    json.dump(res, open(base + ".json", "w"), indent=1)
    open(base + ".md", "w").write(markdown(res, os.path.basename(base)))
    log(f"wrote {base}.json and .md")
    print(base)
    return 0 if res["all_checks_ok"] else 1


def fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def markdown(res, title):
    cs = res["contenders"]
    o = [f"# Docker dataplane benchmark {title}", "",
         f"{res['mode']} run, moat {res['moat_commit']}, docker {res.get('docker')}, kernel {res['kernel']}, "
         f"{res['cpus']} CPUs, {res['rounds']} rounds of {res['seconds_per_measurement']} s per figure, "
         "contenders interleaved (order rotated each round).", "",
         f"Reference: **{REFERENCE}** (dockerd with iptables and its userland proxy). moat-docker: the same "
         "dockerd with iptables off, enforced by `moat docker`. docker-none: iptables off, no moat, no "
         "isolation and no published path, its figures straight to the container's address (the floor).",
         "",
         "## Enforcement checked before measuring", "",
         "| check | " + " | ".join(cs) + " |", "|---" * (1 + len(cs)) + "|"]
    for i, ch in enumerate(res["checks"][cs[0]]):
        cells = []
        for c in cs:
            x = res["checks"][c][i]
            tag = "ok" if x["ok"] else "(recorded)" if x["ok"] is None else "WRONG"
            cells.append(f"{tag} {x['observed']}")
        o.append(f"| {ch['check']} | " + " | ".join(cells) + " |")
    o += ["", "## Results", "",
          "Median [min-max] over the rounds, then the ratio of medians to the reference with the 95% "
          "percentile-bootstrap interval of that ratio (10000 resamples, seed 1; medians of each side "
          "resampled on their own) and a verdict: \"indistinguishable\" when the interval holds 1.0. "
          "With few rounds the interval is coarse: it is what the samples allow, not a precise bound."]
    for title, pick in (("Rates (higher is better)", lambda k: k.endswith(("_rps", "_gbps"))),
                        ("Latencies from wrk (lower is better)", lambda k: k.endswith("_ms"))):
        o += ["", f"### {title}", "", "| scenario | unit | " + " | ".join(cs) + " |",
              "|---|---" + "|---" * len(cs) + "|"]
        for key, what, unit, higher in SCENARIOS:
            by = res["scenarios"].get(key)
            if not by or not pick(key):
                continue
            cells = []
            for c in cs:
                s = by.get(c)
                if not s:
                    cells.append("-")
                    continue
                cell = f"{fmt(s['median'])} [{fmt(s['min'])}-{fmt(s['max'])}]"
                r = s.get("ratio_to_" + REFERENCE)
                if r is not None and c != REFERENCE:
                    ci = s.get("ratio_ci95")
                    cell += f" x{r:.2f}"
                    if ci:
                        cell += f" [{ci[0]:.2f}-{ci[1]:.2f}] {s['verdict']}"
                    else:
                        cell += f" ({s.get('verdict', '')})"
                cells.append(cell)
            o.append(f"| {what} | {unit} | " + " | ".join(cells) + " |")
    if res["errors"]:
        o += ["", "## wrk errors", ""] + [f"- {e}" for e in res["errors"]]
    o += ["", "## What each dockerd's namespace held", ""]
    for c in cs:
        e = res["evidence"][c]
        o.append(f"- **{c}**: listening processes {', '.join(e['listening_processes']) or 'none'}; "
                 f"nft ruleset {e['nft_ruleset_lines']} lines; "
                 f"{', '.join(f'{k}={v}' for k, v in e.get('sysctl', {}).items())}; FORWARD: "
                 f"{'; '.join(e['iptables_forward'][:3]) or '-'}")
    return "\n".join(o) + "\n"


if __name__ == "__main__":
    sys.exit(main())
