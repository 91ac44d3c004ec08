#!/usr/bin/env python3
"""Steady one-rule changes of moat builds, each after a pause, on bench.py's
lab: what a change costs when its process must take memory the machine has
not used for a while. On a VM whose balloon reports free memory back to the
host, memory freed and left alone for a second or two is faulted in by the
host again on its next use (README, stop 57); bench/one_rule.py's steps
come some 1.2 s apart (the time Python takes to write the next policy).

Per round and build: an empty apply, an apply from nothing and its first
change (not timed), then --changes changes timed, alternating between the
two policies, each after sleeping --pause seconds. Builds are interleaved,
the order rotated each round. Every change's wall time (from Python) and
`phases_ms` go into one JSON file.

  python3 bench/one_rule_pause.py --moat build/userspace/moat --moat /tmp/old/moat \\
      --pauses 0,2 --rounds 4 --out r.json

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


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moat", action="append", required=True, help="a build measured (repeat for more)")
    ap.add_argument("--pauses", default="0,2", help="seconds before each change, comma-separated")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--changes", type=int, default=8, help="timed changes per round, build and pause")
    ap.add_argument("--rules", type=int, default=100000)
    ap.add_argument("--out", required=True, help="the JSON file written")
    a = ap.parse_args()
    pauses = [float(x) for x in a.pauses.split(",") if x.strip()]
    tmp = tempfile.mkdtemp(prefix="moat-one-rule-pause.")
    res = {"moat": a.moat, "rules": a.rules, "pauses": pauses, "rounds": a.rounds, "samples": []}
    texts = [json.dumps(moat_policy(a.rules, change)) for change in (False, True)]
    policy = os.path.join(tmp, "moat-policy.json")  # one path: the one-rule change compares it with its record
    lab = Lab(a.moat[0], f"op{os.getpid()}"[:14], tmp, None)
    con = Contenders(lab, a.moat[0], tmp)

    def apply(moat, text=None, pause=0.0):
        if text is not None:
            with open(policy, "w") as f:
                f.write(text)
        time.sleep(pause)
        t = time.monotonic()
        r = subprocess.run([moat, "lab", "apply", "--lab", lab.name, "--json"] + ([policy] if text else []),
                           capture_output=True, text=True, check=False)
        wall = time.monotonic() - t
        if r.returncode != 0:
            raise RuntimeError(f"{moat} lab apply exited {r.returncode}: {r.stderr.strip()[-500:]}")
        phases = {p["phase"]: p["ms"] for p in json.loads(r.stdout).get("phases_ms", [])}
        return wall, phases

    try:
        for rnd in range(a.rounds):
            order = a.moat[rnd % len(a.moat):] + a.moat[:rnd % len(a.moat)]
            for pause in pauses:
                for moat in order:
                    con.brnf(False)
                    apply(moat)
                    apply(moat, texts[0])
                    apply(moat, texts[1])
                    for i in range(a.changes):
                        wall, phases = apply(moat, texts[i % 2], pause)
                        res["samples"].append({"round": rnd, "pause_s": pause, "moat": moat,
                                               "wall_s": wall, "phases_ms": phases})
                    subprocess.run([moat, "down", "--instance", f"lab-{lab.name}"], check=True, capture_output=True)
                    walls = [s["wall_s"] * 1e3 for s in res["samples"]
                             if s["round"] == rnd and s["pause_s"] == pause and s["moat"] == moat]
                    print(f"round {rnd} pause {pause:g} s {moat}: median {statistics.median(walls):.1f} ms", flush=True)
    finally:
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    for pause in pauses:
        for moat in a.moat:
            walls = [s["wall_s"] * 1e3 for s in res["samples"] if s["pause_s"] == pause and s["moat"] == moat]
            if walls:
                print(f"pause {pause:g} s {moat}: median {statistics.median(walls):.1f} ms over {len(walls)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
