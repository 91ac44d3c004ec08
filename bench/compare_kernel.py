#!/usr/bin/env python3
"""compare_kernel.py - two moat_kernel_bench binaries, old against new.

A benchmark, not a test: it reports per-packet kernel cost (BPF_PROG_TEST_RUN,
ns per packet) of the same cases in two builds of moat and how they compare;
it never fails on the numbers (exit status 1 only when a run failed or
nothing could be compared).

Typical use (root: moat_kernel_bench makes its own network namespace):

  bench/compare_kernel.py --old /work/build-old/bench/moat_kernel_bench \\
      --new /work/build-bench-new/bench/moat_kernel_bench \\
      --rules 10,1000,10000 --ports 1,100

Method:
  - The two binaries run alternately in ABBA order, pairs (old, new),
    (new, old), (old, new), ... --alternations runs each, so a slow drift
    of the machine's speed hits both alike. Every run does its own setup
    (netns, devices, policies), with moat_kernel_bench's own method inside a
    run (one sample per case per round, cases interleaved).
  - Cases are matched between the binaries by (scenario, hook, path, runs,
    rules, ports): the key moat_kernel_bench's JSON gives every case. A case
    only one binary has is listed, not compared. Setup figures that differ
    between old and new for a matched case (rule entries, ipcache, ...) are
    reported: a different setup may mean a different path.
  - Per case and binary, the samples of all its runs are pooled; the
    estimate is median(new) / median(old).
  - 95% confidence interval: a two-level (cluster) bootstrap, because the
    samples of one run are not independent (they share its setup: map
    layouts, hash placement, memory). Each bootstrap replicate draws, for
    each binary separately, as many runs as it has with replacement, then
    within each drawn run as many of its samples as it has with
    replacement, pools them and takes the ratio of the two medians. The
    2.5th and 97.5th percentiles of --bootstrap replicates are the interval.
    With few runs (the default 6 a side) the interval is on the narrow side
    of honest; more alternations make it better.
  - Verdict, with T = --threshold (5%):
      "faster by X%"      the whole interval is below 1;
      "within T%"         the interval's upper end is at most 1 + T;
      "slower by X%"      the whole interval is above 1 + T;
      "unclear: +X%"      the interval straddles 1 + T (more alternations).
  - "pass" marks the cases whose packet passes (TC_ACT_OK); new_denied and
    new_denied_v6 are the only drop paths moat_kernel_bench has.

Output: a table on stdout, progress on stderr, and a JSON file (--out;
default bench/results/compare-<UTC time>.json) with the parameters, both
binaries (path, sha256), the run order, every run's full JSON and the
comparison.
"""
import argparse
import datetime
import hashlib
import json
import os
import random
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DROP_PATHS = {"new_denied", "new_denied_v6"}
KEY_FIELDS = ("scenario", "hook", "path", "runs", "rules", "ports")
# Setup figures worth comparing between the binaries for one case.
SETUP_FIELDS = ("containers", "rules_per_container", "entries", "ipcache", "rules_requested")


def parse_args():
    ap = argparse.ArgumentParser(
        description="Run two moat_kernel_bench binaries alternately (ABBA) and compare "
        "their per-packet cost case by case. A benchmark, not a test.")
    ap.add_argument("--old", required=True, help="the old moat_kernel_bench")
    ap.add_argument("--new", required=True, help="the new moat_kernel_bench")
    ap.add_argument("--alternations", type=int, default=6,
                    help="runs of each binary (default 6), in ABBA order")
    ap.add_argument("--out", help="JSON output (default bench/results/compare-<UTC time>.json)")
    ap.add_argument("--threshold", type=float, default=5.0,
                    help="percent slower still counted as within (default 5)")
    ap.add_argument("--bootstrap", type=int, default=10000,
                    help="bootstrap replicates (default 10000)")
    ap.add_argument("--seed", type=int, default=1, help="bootstrap seed (default 1)")
    # Passed to both binaries as given.
    ap.add_argument("--rules", help="passed through: policy sizes, e.g. 10,1000,10000")
    ap.add_argument("--ports", help="passed through: published-port counts, e.g. 1,100")
    ap.add_argument("--rounds", help="passed through: samples per case per run")
    ap.add_argument("--repeat", help="passed through: repetitions per BPF_PROG_TEST_RUN")
    ap.add_argument("--singles", help="passed through: one-packet runs per new_admitted sample")
    ap.add_argument("--containers", help="passed through: most containers per policy")
    ap.add_argument("--quick", action="store_true", help="passed through: --quick")
    a = ap.parse_args()
    if a.alternations < 1:
        ap.error("--alternations must be at least 1")
    return a


def passthrough(a):
    args = []
    for name in ("rules", "ports", "rounds", "repeat", "singles", "containers"):
        v = getattr(a, name)
        if v is not None:
            args += ["--" + name, str(v)]
    if a.quick:
        args.append("--quick")
    return args


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def abba(n):
    """old,new,new,old,old,new,... : n runs of each."""
    order = []
    for i in range(n):
        order += ["old", "new"] if i % 2 == 0 else ["new", "old"]
    return order


def case_key(c):
    return tuple(c.get(f) for f in KEY_FIELDS)


def key_name(k):
    d = dict(zip(KEY_FIELDS, k))
    s = d["scenario"]
    if d["rules"] is not None:
        s += " %s rules" % d["rules"]
    if d["ports"] is not None:
        s += " %s ports" % d["ports"]
    return "%s %s" % (s, d["path"])


def median(xs):
    return statistics.median(xs)


def percentile(sorted_xs, q):
    """Linear interpolation between closest ranks, q in [0, 1]."""
    pos = q * (len(sorted_xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_xs) - 1)
    return sorted_xs[lo] + (sorted_xs[hi] - sorted_xs[lo]) * (pos - lo)


def cluster_draw(rng, runs):
    """Runs drawn with replacement, then samples within each drawn run."""
    pooled = []
    for _ in range(len(runs)):
        run = runs[rng.randrange(len(runs))]
        pooled += [run[rng.randrange(len(run))] for _ in range(len(run))]
    return pooled


def compare(old_runs, new_runs, n_boot, rng, threshold):
    """old_runs/new_runs: one list of samples per run of that binary."""
    m_old = median([x for r in old_runs for x in r])
    m_new = median([x for r in new_runs for x in r])
    ratio = m_new / m_old
    reps = sorted(median(cluster_draw(rng, new_runs)) / median(cluster_draw(rng, old_runs))
                  for _ in range(n_boot))
    lo, hi = percentile(reps, 0.025), percentile(reps, 0.975)
    limit = 1 + threshold / 100
    pct = (ratio - 1) * 100
    if hi < 1:
        verdict = "faster by %.1f%%" % -pct
    elif hi <= limit:
        verdict = "within %g%%" % threshold
    elif lo > limit:
        verdict = "slower by %.1f%%" % pct
    else:
        verdict = "unclear: %+.1f%%" % pct
    return {
        "median_old": m_old, "median_new": m_new, "ratio": ratio,
        "ci95": [lo, hi], "verdict": verdict,
        "run_medians_old": [median(r) for r in old_runs],
        "run_medians_new": [median(r) for r in new_runs],
    }


def main():
    a = parse_args()
    bins = {"old": os.path.abspath(a.old), "new": os.path.abspath(a.new)}
    for side, path in bins.items():
        if not os.access(path, os.X_OK):
            sys.exit("compare_kernel.py: --%s %s: not an executable" % (side, path))
    extra = passthrough(a)
    started = datetime.datetime.now(datetime.timezone.utc)
    out = a.out or os.path.join(HERE, "results",
                                "compare-%s.json" % started.strftime("%Y-%m-%dT%H%MZ"))

    order = abba(a.alternations)
    runs = {"old": [], "new": []}  # each: {"index", "seconds", "doc"}
    failures = []
    t0 = time.monotonic()
    for i, side in enumerate(order):
        cmd = [bins[side]] + extra
        print("run %d/%d: %s ..." % (i + 1, len(order), side), end="", file=sys.stderr, flush=True)
        t = time.monotonic()
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        dt = time.monotonic() - t
        if p.returncode != 0:
            tail = p.stderr.strip().splitlines()[-3:]
            print(" FAILED (exit %d) after %.1f s: %s" % (p.returncode, dt, " | ".join(tail)),
                  file=sys.stderr)
            failures.append({"index": i, "side": side, "exit": p.returncode,
                             "stderr_tail": tail})
            continue
        try:
            doc = json.loads(p.stdout)
        except ValueError as e:
            print(" FAILED: output is not JSON (%s)" % e, file=sys.stderr)
            failures.append({"index": i, "side": side, "error": "not JSON: %s" % e})
            continue
        runs[side].append({"index": i, "seconds": round(dt, 1), "doc": doc})
        print(" %.1f s (total %.0f s)" % (dt, time.monotonic() - t0), file=sys.stderr)

    # Samples per case key, per binary, per run; setup figures per binary.
    samples = {"old": {}, "new": {}}
    meta = {"old": {}, "new": {}}
    for side in ("old", "new"):
        for r in runs[side]:
            for c in r["doc"]["cases"]:
                k = case_key(c)
                samples[side].setdefault(k, []).append(c["ns"]["samples"])
                meta[side].setdefault(k, []).append({f: c.get(f) for f in SETUP_FIELDS})

    rng = random.Random(a.seed)
    keys = list(samples["old"]) + [k for k in samples["new"] if k not in samples["old"]]
    results = []
    for k in keys:
        d = dict(zip(KEY_FIELDS, k))
        row = {"case": key_name(k), "key": d,
               "pass": None if d["path"] is None else d["path"] not in DROP_PATHS}
        in_old, in_new = k in samples["old"], k in samples["new"]
        if not (in_old and in_new):
            row["only_in"] = "old" if in_old else "new"
            results.append(row)
            continue
        notes = []
        for side in ("old", "new"):
            if any(m != meta[side][k][0] for m in meta[side][k]):
                notes.append("%s: setup differs between its runs" % side)
        mo, mn = meta["old"][k][0], meta["new"][k][0]
        diff = {f: [mo[f], mn[f]] for f in SETUP_FIELDS if mo[f] != mn[f]}
        if diff:
            notes.append("setup differs old/new: " +
                         ", ".join("%s %s -> %s" % (f, v[0], v[1]) for f, v in diff.items()))
        row.update(compare(samples["old"][k], samples["new"][k], a.bootstrap, rng, a.threshold))
        row["runs_old"], row["runs_new"] = len(samples["old"][k]), len(samples["new"][k])
        if notes:
            row["notes"] = notes
        results.append(row)

    # The table.
    print("moat_kernel_bench old vs new: ns per packet, median over %d+%d runs; "
          "ratio new/old, 95%% CI by cluster bootstrap" % (len(runs["old"]), len(runs["new"])))
    print("old: %s\nnew: %s\nargs: %s" % (bins["old"], bins["new"], " ".join(extra) or "(none)"))
    w = max([len(r["case"]) for r in results] + [4])
    print("%-*s %4s %8s %8s %6s %15s  %s" % (w, "case", "pass", "old ns", "new ns", "ratio",
                                            "95% CI", "verdict"))
    for r in results:
        passes = "?" if r["pass"] is None else "yes" if r["pass"] else "no"
        if "only_in" in r:
            print("%-*s %4s %s" % (w, r["case"], passes, "only in " + r["only_in"] + ", not compared"))
            continue
        print("%-*s %4s %8.1f %8.1f %6.3f %15s  %s" % (
            w, r["case"], passes, r["median_old"], r["median_new"], r["ratio"],
            "[%.3f, %.3f]" % tuple(r["ci95"]), r["verdict"]))
        for n in r.get("notes", []):
            print("%-*s   note: %s" % (w, "", n))
    for f in failures:
        print("FAILED run %d (%s): %s" % (f["index"] + 1, f["side"],
                                          f.get("error") or " | ".join(f["stderr_tail"])))

    doc = {
        "tool": "compare_kernel.py",
        "started": started.isoformat(timespec="seconds"),
        "duration_s": round(time.monotonic() - t0, 1),
        "binaries": {s: {"path": p, "sha256": sha256(p)} for s, p in bins.items()},
        "args": extra, "alternations": a.alternations, "order": order,
        "threshold_pct": a.threshold, "bootstrap": a.bootstrap, "seed": a.seed,
        "method": "per case: ratio of medians of the pooled samples, new/old; 95% CI from a "
                  "two-level bootstrap (runs with replacement, then samples within each run)",
        "comparison": results, "failures": failures,
        "runs": {s: runs[s] for s in ("old", "new")},
    }
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out + ".tmp", "w") as f:
        json.dump(doc, f, indent=1, default=list)
        f.write("\n")
    os.replace(out + ".tmp", out)
    print("JSON: %s" % out)
    compared = [r for r in results if "ratio" in r]
    return 1 if failures or not compared else 0


if __name__ == "__main__":
    sys.exit(main())
