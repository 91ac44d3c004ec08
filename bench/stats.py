"""stats.py - the bench's ratios, their confidence intervals and verdicts.

Shared by bench.py and any other contender's driver (import it from the
bench directory): a figure is ranked only when its interval says so.

Method (one place, so every table says the same thing):
  - A ratio is the median of A's samples over the median of B's (ratio of
    medians: a round the shared VM spent under someone else's load moves a
    mean, not a median).
  - Its 95% confidence interval is a percentile bootstrap over rounds:
    10,000 resamples with a fixed seed, each drawing as many rounds as were
    run, with replacement. When A and B were measured in the same rounds
    (paired, the bench's case: contenders interleave within each round) a
    drawn round brings both its samples, so a slow round slows both sides
    of the ratio as it did in the run; otherwise each side is drawn on its
    own.
  - Verdict: "indistinguishable" when the interval contains 1.0; otherwise
    A is "ahead" or "behind" of B (by which way is better for the figure).
    Two contenders are compared through the interval of their own ratio,
    never by whether their separate intervals to a baseline overlap.
  - Fewer than MIN_ROUNDS (5) rounds a side: the interval is computed and
    stored, but the verdict is "too few rounds". Over n rounds a bootstrap
    has few distinct resamples, and from 3 rounds down more than 2.5% of
    them are one round drawn n times: the "interval" is then the spread of
    single rounds, not a confidence interval. One round: no interval.
"""
import random
import statistics

RESAMPLES = 10000
SEED = 17
LEVEL = 0.95
MIN_ROUNDS = 5
METHOD = ("ratio of medians; 95% percentile bootstrap over rounds (10,000 resamples, "
          "seed 17, rounds drawn with replacement, paired when both sides share rounds); "
          "verdict: indistinguishable when the interval contains 1, else ahead/behind; "
          f"no verdict under {MIN_ROUNDS} rounds")


def _percentile(sorted_values, q):
    """q in [0, 1], linear interpolation between closest ranks."""
    if not sorted_values:
        return None
    pos = q * (len(sorted_values) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


_draws = {}


def _rounds_drawn(n, resamples, seed):
    """The resamples' round indices: the same draws for every ratio over n
    rounds, so that all of a run's intervals come from one set of draws
    (and are computed once)."""
    key = (n, resamples, seed)
    if key not in _draws:
        rng = random.Random(seed * 1000003 + n)
        _draws[key] = [rng.choices(range(n), k=n) for _ in range(resamples)]
    return _draws[key]


def bootstrap_ci(a, b, paired=True, resamples=RESAMPLES, seed=SEED, level=LEVEL):
    """median(a) / median(b) and its bootstrap interval over rounds.

    a, b: one sample per round. paired: a[i] and b[i] come from round i
    (they must then be as many). Returns a dict: estimate, ci (low, high;
    None with fewer than 2 rounds a side), n_a, n_b, paired, resamples,
    seed, level. estimate is None (and "note" says why) unless every
    sample is positive."""
    a, b = list(a), list(b)
    if paired and len(a) != len(b):
        raise ValueError(f"paired samples of different counts: {len(a)} and {len(b)}")
    out = {"estimate": None, "ci": None, "n_a": len(a), "n_b": len(b), "paired": paired,
           "resamples": resamples, "seed": seed, "level": level}
    if not a or not b:
        return out
    if min(a + b) <= 0:
        # A ratio of medians only compares positive quantities: with a
        # sample at or below zero a resample's ratio can flip sign.
        out["note"] = "a sample is not positive: no ratio"
        return out
    mb = statistics.median(b)
    out["estimate"] = statistics.median(a) / mb
    if min(len(a), len(b)) < 2:
        return out
    ratios = []
    na, nb = len(a), len(b)
    med = statistics.median
    if paired:
        draws = zip(_rounds_drawn(na, resamples, seed), _rounds_drawn(na, resamples, seed))
    else:
        draws = zip(_rounds_drawn(na, resamples, seed), _rounds_drawn(nb, resamples, seed + 1))
    for ia, ib in draws:
        ratios.append(med([a[i] for i in ia]) / med([b[i] for i in ib]))
    ratios.sort()
    tail = (1 - level) / 2
    if ratios:
        out["ci"] = [_percentile(ratios, tail), _percentile(ratios, 1 - tail)]
    return out


def verdict(ci, higher_is_better=True):
    """A's standing against B from bootstrap_ci()'s result: 'indistinguishable',
    'ahead', 'behind', or 'too few rounds'."""
    if ci.get("estimate") is None:
        return "no figure"
    if not ci.get("ci") or min(ci["n_a"], ci["n_b"]) < MIN_ROUNDS:
        return "too few rounds"
    lo, hi = ci["ci"]
    if lo <= 1.0 <= hi:
        return "indistinguishable"
    above = lo > 1.0
    return "ahead" if above == higher_is_better else "behind"


def describe(ci, higher_is_better=True):
    """'ahead x1.23 [1.10-1.35]', for a table cell."""
    v = verdict(ci, higher_is_better)
    if ci.get("estimate") is None:
        return v
    s = f"x{ci['estimate']:.3g}"
    if ci.get("ci"):
        s += f" [{ci['ci'][0]:.3g}-{ci['ci'][1]:.3g}]"
    return f"{v} {s}"


def compare(a, b, higher_is_better=True, paired=True):
    """bootstrap_ci() with its verdict, as stored in the results."""
    r = bootstrap_ci(a, b, paired=paired)
    r["verdict"] = verdict(r, higher_is_better)
    r["higher_is_better"] = higher_is_better
    return r
