#!/usr/bin/env python3
"""Steady one-rule changes of moat builds, each after a pause, on bench.py's
lab: what a change costs when its process must take memory the machine has
not used for a while. On a VM whose balloon reports free memory back to the
host (Linux's free page reporting: free blocks left alone for 2 s), memory
freed and then reported is faulted in by the host again on its next use
(README, stop 57). bench/one_rule.py's steps come some 1.2 s apart: the
time Python takes to write the next policy of 100,000 rules.

Per round, pause and build: an empty apply, an apply from nothing and its
first change (not timed), then --changes changes timed, alternating between
two policies, each after sleeping the pause; then `moat down`. Builds and
pauses are interleaved, their orders rotated each round. Every timed
change's wall time (from Python) and `phases_ms` go into one JSON file,
with each pause's per-round medians compared to the first build's
(bench/stats.py: ratio of medians, 95% bootstrap interval over rounds).

  python3 bench/one_rule_pause.py --moat build/userspace/moat --moat /tmp/old/moat \\
      --pauses 0,1.2,2 --rounds 6 --out r.json

A benchmark, not a test: it needs root and a quiet machine."""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Contenders, Lab, moat_policy  # noqa: E402
from stats import compare  # noqa: E402


def rotated(items, k):
    k %= len(items)
    return items[k:] + items[:k]


def summary(res):
    """Per pause: each build's median of per-round medians, and its ratio to
    the first build's with an interval."""
    out = []
    for pause in res["pauses"]:
        def per_round(build):
            walls = {}
            for s in res["samples"]:
                if s["pause_s"] == pause and s["build"] == build:
                    walls.setdefault(s["round"], []).append(s["wall_s"])
            return [statistics.median(walls[r]) for r in sorted(walls)]
        first = per_round(0)
        for b, moat in enumerate(res["moat"]):
            mine = per_round(b)
            if not mine:
                continue
            row = {"pause_s": pause, "build": b, "moat": moat, "median_s": statistics.median(mine)}
            if b > 0 and len(mine) == len(first):
                row["to_first_build"] = compare(mine, first, higher_is_better=False)
            out.append(row)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moat", action="append", required=True, help="a build measured (repeat for more)")
    ap.add_argument("--pauses", default="0,1.2,2", help="seconds before each change, comma-separated")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--changes", type=int, default=8, help="timed changes per round, pause and build")
    ap.add_argument("--rules", type=int, default=100000)
    ap.add_argument("--out", required=True, help="the JSON file written")
    a = ap.parse_args()
    pauses = [float(x) for x in a.pauses.split(",") if x.strip()]
    if a.changes < 1 or a.rounds < 1 or not pauses:
        ap.error("--changes and --rounds must be 1 or more, and --pauses name one at least")
    tmp = tempfile.mkdtemp(prefix="moat-one-rule-pause.")
    res = {"moat": a.moat, "rules": a.rules, "pauses": pauses, "rounds": a.rounds,
           "changes": a.changes, "samples": []}
    texts = [json.dumps(moat_policy(a.rules, change)) for change in (False, True)]
    policy = os.path.join(tmp, "moat-policy.json")  # one path: the change is compared with its record
    lab = None

    def apply(moat, text=None, pause=0.0):
        if text is not None:
            with open(policy, "w") as f:
                f.write(text)
        time.sleep(pause)
        t = time.monotonic()
        r = subprocess.run([moat, "lab", "apply", "--lab", lab.name, "--json"]
                           + ([policy] if text is not None else []),
                           capture_output=True, text=True, check=False)
        wall = time.monotonic() - t
        if r.returncode != 0:
            raise RuntimeError(f"{moat} lab apply exited {r.returncode}: {r.stderr.strip()[-500:]}")
        return wall, [(p["phase"], p["ms"]) for p in json.loads(r.stdout).get("phases_ms", [])]

    try:
        lab = Lab(a.moat[0], f"op{os.getpid()}"[:14], tmp, None)
        con = Contenders(lab, a.moat[0], tmp)
        for rnd in range(a.rounds):
            for pause in rotated(pauses, rnd):
                for b in rotated(list(range(len(a.moat))), rnd):
                    moat = a.moat[b]
                    con.brnf(False)
                    apply(moat)
                    apply(moat, texts[0])
                    apply(moat, texts[1])
                    walls = []
                    for i in range(a.changes):
                        wall, phases = apply(moat, texts[i % 2], pause)
                        walls.append(wall)
                        res["samples"].append({"round": rnd, "pause_s": pause, "build": b, "moat": moat,
                                               "wall_s": wall, "phases_ms": phases})
                    subprocess.run([moat, "down", "--instance", f"lab-{lab.name}"], check=True,
                                   capture_output=True)
                    print(f"round {rnd} pause {pause:g} s build {b}: median {statistics.median(walls) * 1e3:.1f} ms",
                          flush=True)
    finally:
        res["summary"] = summary(res)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
        if lab is not None:
            lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
    for row in res["summary"]:
        c = row.get("to_first_build")
        vs = f"  x{c['estimate']:.2f} {c['ci']} {c['verdict']} against build 0" if c and c.get("estimate") else ""
        print(f"pause {row['pause_s']:g} s build {row['build']}: {row['median_s'] * 1e3:.1f} ms{vs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
