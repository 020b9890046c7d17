"""Schedules from a budget of B forward passes against the converged optimum.

    python scripts/bench_budget.py --replicates 8 --json budget.json

For each budget B and target T: the relative KL excess KL(schedule_B) / KL(optimum) - 1, both
KLs measured on a converged reference curve, median and 90th percentile over replicates
(different keys: different sequences and orders). Two estimators at the same B:

- adaptive: `schedopt.adaptive_estimate.estimate_within_budget` (half the passes on a coarse
  curve, the rest at the coarse schedules' cuts), with its defaults (convex fit, bagged)
  with `gap_degree=2` (model curve plus a quadratic fit of the calibration gap), and, as an
  ablation, with one monotone fit (no bagging);
- plain: the same coarse design with the whole budget (about sqrt(B) grid points from
  `revealed_grid`, B / points sequences, `schedopt.estimate.estimate_curves`).

Laws: `hmm`, the sticky HMM of `schedopt.data` (n = 64, exact conditionals; the estimators use
the data curve of samples; reference: the model curve of 16384 other samples at every revealed
count), and
`digits`, the shipped model on its test split (reference: the full held-out data curve with
8 orders per sequence, 297 x 8 x 64 passes).
"""

from __future__ import annotations

import argparse
import sys
import time

import jax
import numpy as np

import schedopt
from schedopt.adaptive_estimate import estimate_within_budget
from schedopt.data import default_hmm, load_dataset
from schedopt.estimate import estimate_curves, revealed_grid
from schedopt.exact import optimal_schedule

REFERENCE = 16384


def setups(which: list[str]) -> dict:
    out = {}
    if "hmm" in which:
        law = default_hmm(64)
        pool = np.asarray(law.sample(4096 + REFERENCE, key=jax.random.key(123)))
        # The reference: the model curve (predictive entropy: the same expectation as the
        # data curve for exact conditionals, with far less noise) of REFERENCE sequences.
        est = estimate_curves(law.log_conditionals, pool[4096:], key=jax.random.key(7),
                              grid=64, batch_size=1024)
        out["hmm"] = (law.log_conditionals, pool[:4096], *reference(est, "model"))
    if "digits" in which:
        from schedopt.models import load_checkpoint, logits_fn

        model, _ = load_checkpoint("digits")
        fn = logits_fn(model)
        test = load_dataset("digits").test
        est = estimate_curves(fn, np.tile(test, (8, 1)), key=jax.random.key(7), grid=64,
                              batch_size=512)
        out["digits"] = (fn, test, *reference(est, "data"))
    return out


def reference(est, kind: str):
    """The reference profile, and its two halves (to measure the reference's own noise)."""
    m = est.sequences
    halves = [est.replace(cross_entropy=est.cross_entropy[part],
                          predictive_entropy=est.predictive_entropy[part])
              for part in (slice(0, m // 2), slice(m // 2, m))]
    return est.profile(kind), [h.profile(kind) for h in halves]


METHODS = ("adaptive", "gap", "monotone", "plain")


def plain(fn, data, budget: int, key) -> schedopt.EntropyProfile:
    n = data.shape[1]
    grid = revealed_grid(n, int(np.clip(round(np.sqrt(budget)), 4, 33)))
    m = max(2, budget // grid.size)
    rows = np.asarray(jax.random.permutation(key, data.shape[0]))[:m]
    est = estimate_curves(fn, data[rows], key=jax.random.fold_in(key, 1), grid=grid)
    return est.profile("data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--laws", nargs="+", default=["hmm", "digits"])
    parser.add_argument("--budgets", type=int, nargs="+",
                        default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = {}
    floors = {}
    for name, (fn, data, ref, halves) in setups(args.laws).items():
        best = {t: float(optimal_schedule(ref, t).expected_kl) for t in args.steps}
        # The reference's own noise: each half's optimum judged on the other half.
        floors[name] = {}
        for t in args.steps:
            a, b = (optimal_schedule(h, t) for h in halves)
            cross = [float(schedopt.expected_kl(halves[1], a.tokens_per_step)) / float(
                b.expected_kl) - 1, float(schedopt.expected_kl(halves[0], b.tokens_per_step))
                / float(a.expected_kl) - 1]
            floors[name][t] = float(np.mean(cross))
        print(f"[{name}] reference ready at {time.perf_counter() - start:.0f} s; optimal KL "
              + ", ".join(f"T={t}: {v:.3f}" for t, v in best.items()), file=sys.stderr)
        rows = []
        for budget in args.budgets:
            excess = {m: {t: [] for t in args.steps} for m in METHODS}
            stable = {t: [] for t in args.steps}
            for r in range(args.replicates):
                key = jax.random.key(1000 * budget + r)
                a = estimate_within_budget(fn, data, key=key, max_forward_passes=budget,
                                           steps=args.steps, bootstrap=50)
                mono = estimate_within_budget(fn, data, key=key, max_forward_passes=budget,
                                              steps=args.steps, bootstrap=0, shape="monotone",
                                              bagging=0)
                gap = estimate_within_budget(fn, data, key=key, max_forward_passes=budget,
                                             steps=args.steps, bootstrap=0, gap_degree=2)
                p = plain(fn, data, budget, jax.random.fold_in(key, 2))
                chosen = {"adaptive": a.schedules, "gap": gap.schedules,
                          "monotone": mono.schedules,
                          "plain": {t: optimal_schedule(p, t).tokens_per_step
                                    for t in args.steps}}
                for t in args.steps:
                    for m in METHODS:
                        kl = float(schedopt.expected_kl(ref, chosen[m][t]))
                        excess[m][t].append(kl / best[t] - 1)
                    stable[t].append(a.stability[t]["relative_p90"])
            for t in args.steps:
                row = {"budget": budget, "steps": t, "optimal_kl": best[t]}
                for m in METHODS:
                    e = np.asarray(excess[m][t])
                    row[m] = {"median": float(np.median(e)), "p90": float(np.quantile(e, 0.9)),
                              "all": e.tolist()}
                row["reported_relative_p90_median"] = float(np.median(stable[t]))
                rows.append(row)
            print(f"[{name}] B={budget} done at {time.perf_counter() - start:.0f} s",
                  file=sys.stderr)
        results[name] = {"rows": rows, "reference_noise": floors[name]}
    print(table(results, args))
    if args.json:
        from schedopt._io import write_json

        write_json(args.json, results)
    return 0


def table(results: dict, args) -> str:
    lines = []
    for name, res in results.items():
        rows = res["rows"]
        lines.append(f"\n**{name}**: relative KL excess over the converged optimum, median "
                     f"[90th percentile] of {args.replicates} replicates: adaptive / adaptive with "
                     "gap_degree=2 / adaptive (monotone, no bagging) / plain\n")
        lines.append("| B | " + " | ".join(f"T = {t}" for t in args.steps) + " |")
        lines.append("|---|" + "---|" * len(args.steps))
        for budget in args.budgets:
            cells = []
            for t in args.steps:
                r = next(x for x in rows if x["budget"] == budget and x["steps"] == t)
                cells.append(" / ".join(f"{100 * r[m]['median']:.1f}% [{100 * r[m]['p90']:.0f}]"
                                        for m in METHODS))
            lines.append(f"| {budget} | " + " | ".join(cells) + " |")
        lines.append("| reference noise | " + " | ".join(
            f"{100 * res['reference_noise'][t]:.1f}%" for t in args.steps) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
