#!/usr/bin/env python3
"""The control plane alone, on bench.py's lab and with its contenders:
`nft -f` against two moat builds (this one and a baseline), interleaved with
the order rotated each round. Per round and rule count, each contender
applies from nothing (moat after an empty apply, as bench.py does), then
changes one rule (moat: the first change after the apply from nothing,
whose idle generation still holds the empty one); moat then changes it back
and again (the steady state, each generation one change from the other).
Seconds per step, every sample, in one JSON file.

  python3 bench/one_rule.py --moat build/userspace/moat \\
      --baseline /tmp/old/userspace/moat --reps 7 --sizes 10000,100000 --out r.json

A benchmark, not a test: it needs root, nft and a quiet machine."""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import Contenders, Lab  # noqa: E402


def version(moat):
    r = subprocess.run([moat, "--version"], capture_output=True, text=True, check=False)
    return r.stdout.strip()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--moat", required=True, help="the build measured")
    ap.add_argument("--baseline", required=True, help="the build it is compared with")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--sizes", default="10000,100000", help="rule counts, comma-separated")
    ap.add_argument("--out", required=True, help="the JSON file written")
    a = ap.parse_args()
    sizes = [int(x) for x in a.sizes.split(",") if x.strip()]
    tmp = tempfile.mkdtemp(prefix="moat-one-rule.")
    res = {"moat": a.moat, "moat_version": version(a.moat), "baseline": a.baseline,
           "baseline_version": version(a.baseline), "reps": a.reps, "samples": []}
    lab = Lab(a.moat, f"or{os.getpid()}"[:14], tmp, None)
    try:
        cons = {"moat": Contenders(lab, a.moat, tmp), "moat-baseline": Contenders(lab, a.baseline, tmp),
                "nftables": Contenders(lab, a.moat, tmp)}
        whos = list(cons)
        for rnd in range(a.reps):
            for n in sizes:
                for who in whos[rnd % 3:] + whos[:rnd % 3]:
                    con, kind = cons[who], "nftables" if who == "nftables" else "moat"
                    s = {"round": rnd, "rules": n, "who": who}
                    try:
                        con.prepare(kind)
                        s["apply_s"] = con.setup(kind, n)
                        s["change_one_s"] = con.change_one(kind, n)
                        if kind == "moat":
                            s["change_back_s"] = con.setup(kind, n)
                            s["change_again_s"] = con.change_one(kind, n)
                    finally:
                        con.teardown(kind)
                    print(json.dumps(s), flush=True)
                    res["samples"].append(s)
    finally:
        lab.close()
        shutil.rmtree(tmp, ignore_errors=True)
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
