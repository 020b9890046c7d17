"""Schedules from a budget of B forward passes against the converged optimum.

    python scripts/bench_budget.py --replicates 8 --json budget.json

For each budget B and target T: the relative KL excess KL(schedule_B) / KL(optimum) - 1, both
KLs measured on a converged reference curve, median and 90th percentile over replicates
(different keys: different sequences and orders). Estimators at the same B (`ESTIMATORS`):

- `estimate_within_budget` (half the passes on a coarse curve, the rest at the coarse
  schedules' cuts) with its default smooth fit, on the model curve (predictive entropy), on
  the data curve (held-out cross-entropy), and on the data curve as the model curve plus a
  linear fit of the calibration gap (`gap_degree=1`);
- the same with the previous default (convex fit, bagged), on the data curve;
- plain: the coarse design with the whole budget (about sqrt(B) grid points from
  `revealed_grid`, B / points sequences, `schedopt.estimate.estimate_curves`), PAV.

Laws: `hmm`, the sticky HMM of `schedopt.sources` (n = 64, exact conditionals, so the model and
data curves agree; reference: the model curve of 262,144 other samples at every revealed
count, 16.8M passes), `digits`, the shipped model on its test split (reference: the full
held-out data curve with 8 orders per sequence, 297 x 8 x 64 passes), and `stdlib`, the
shipped text model (`schedopt/data/stdlib_mlm`, Hugging Face format, through `HFScorer`) on
its 96 tune pairs (16-token prompts, always visible; 64-token answers): the estimators draw
from those pairs, and the reference is their data curve at every revealed count with
`--reference-orders` orders per pair (96 x K x 64 passes), so it converges to the curve of
the population the estimators sample. "reference noise" is the excess of one half of the
reference's optimum judged on the other half (for stdlib: halves by order, every pair in
each).

    python scripts/bench_budget.py --laws stdlib --budgets 64 128 256 512 1024 2048 \
        --replicates 8 --reference-orders 128 --reference-cache ref.npz --json stdlib.json
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import jax
import numpy as np

import schedopt
from schedopt.estimate import estimate_curves, estimate_within_budget, revealed_grid
from schedopt.solve import optimal_schedule
from schedopt.sources import default_hmm, load_dataset

STDLIB = Path(schedopt.__file__).parent / "data"
ORDER_CHUNK = 64  # stdlib reference orders per key

REFERENCE_CHUNKS = 16  # x 16384 sequences for the HMM reference
CHUNK = 16384


def setups(which: list[str], reference_orders: int = 32, cache: str | None = None) -> dict:
    """{law: (row evaluator, data, extra keyword arguments, reference, its two halves)}."""
    out = {}
    if "hmm" in which:
        law = default_hmm(64)
        data = np.asarray(law.sample(4096, key=jax.random.key(123)))
        # The reference: the model curve (predictive entropy: the same expectation as the
        # data curve for exact conditionals, with far less noise), in chunks of fresh samples.
        chunks = []
        for c in range(REFERENCE_CHUNKS):
            pool = law.sample(CHUNK, key=jax.random.key(5000 + c))
            est = estimate_curves(law.log_conditionals, pool, key=jax.random.key(6000 + c),
                                  grid=64, batch_size=2048)
            chunks.append(np.asarray(est.predictive_entropy).mean(axis=0))
        half = REFERENCE_CHUNKS // 2
        curves = [np.mean(chunks, axis=0), np.mean(chunks[:half], axis=0),
                  np.mean(chunks[half:], axis=0)]
        ref, *halves = (schedopt.EntropyProfile.from_conditional_entropy(c) for c in curves)
        out["hmm"] = (law.log_conditionals, data, {}, ref, halves)
    if "digits" in which:
        from schedopt.models import load_checkpoint, logits_fn

        model, _ = load_checkpoint("digits")
        fn = logits_fn(model)
        test = load_dataset("digits").test
        est = estimate_curves(fn, np.tile(test, (8, 1)), key=jax.random.key(7), grid=64,
                              batch_size=512)
        out["digits"] = (fn, test, {}, *reference(est, "data"))
    if "stdlib" in which:
        out["stdlib"] = stdlib_setup(reference_orders, cache)
    return out


def stdlib_setup(orders: int, cache: str | None):
    """The shipped text model on its tune pairs; reference: every count, `orders` orders."""
    from schedopt.estimate import CurveEstimate
    from schedopt.sources import hf_scorer, read_pairs

    scorer, _ = hf_scorer(str(STDLIB / "stdlib_mlm"), mask_id=2, trust_remote_code=True,
                          batch_size=256)
    pairs = read_pairs(STDLIB / "stdlib_tune.jsonl", vocab_size=scorer.vocab_size)
    answers, prompts = pairs.answers, list(pairs.prompts)
    m, n = answers.shape
    # Chunks of ORDER_CHUNK orders, chunk c with key 7 + c: a cache of fewer orders is
    # extended to the same reference as a fresh run. Row k * m + i is pair i with its k-th
    # order, so each half of the rows holds every pair with half of the orders.
    parts = {"cross_entropy": np.zeros((0, n)), "predictive_entropy": np.zeros((0, n))}
    if cache and Path(cache).exists():
        with np.load(cache) as f:
            parts = {k: f[k] for k in parts}
    start = time.perf_counter()
    while parts["cross_entropy"].shape[0] < orders * m:
        done = parts["cross_entropy"].shape[0] // m
        chunk = min(ORDER_CHUNK - done % ORDER_CHUNK, orders - done)
        est = estimate_curves(scorer, np.tile(answers, (chunk, 1)), prompts=prompts * chunk,
                              key=jax.random.key(7 + done // ORDER_CHUNK), grid=n,
                              batch_size=1024)
        parts = {k: np.concatenate([v, getattr(est, k)]) for k, v in parts.items()}
        seconds = time.perf_counter() - start
        print(f"[stdlib] reference: {parts['cross_entropy'].shape[0] * n} passes, "
              f"{seconds:.0f} s so far in this run", file=sys.stderr)
        if cache:
            np.savez(cache, **parts)
    parts = {k: v[: orders * m] for k, v in parts.items()}
    est = CurveEstimate(revealed=np.arange(n), n=n, forward_passes=orders * m * n, **parts)
    return (scorer, answers, {"prompts": prompts, "jit": False}, *reference(est, "data"))


def reference(est, kind: str):
    """The reference profile, and its two halves (to measure the reference's own noise)."""
    m = est.sequences
    halves = [est.replace(cross_entropy=est.cross_entropy[part],
                          predictive_entropy=est.predictive_entropy[part])
              for part in (slice(0, m // 2), slice(m // 2, m))]
    return est.profile(kind), [h.profile(kind) for h in halves]


# name: keyword arguments of estimate_within_budget (None: the plain design).
ESTIMATORS = {
    "smooth, model curve": dict(kind="model"),
    "smooth, data curve": dict(kind="data"),
    "smooth, data = model + linear gap": dict(kind="data", gap_degree=1),
    "convex bagged, data curve": dict(kind="data", shape="convex"),
    "plain, data curve": None,
}
METHODS = tuple(ESTIMATORS)


def plain(fn, data, budget: int, key, prompts=None, jit=True) -> schedopt.EntropyProfile:
    n = data.shape[1]
    grid = revealed_grid(n, int(np.clip(round(np.sqrt(budget)), 4, 33)))
    m = max(2, budget // grid.size)
    # More sequences than there are (stdlib: 96 pairs) repeat them, each with its own order.
    rows = np.resize(np.asarray(jax.random.permutation(key, data.shape[0])), m)
    est = estimate_curves(fn, data[rows], key=jax.random.fold_in(key, 1), grid=grid,
                          prompts=None if prompts is None else [prompts[i] for i in rows],
                          jit=jit)
    return est.profile("data")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--laws", nargs="+", default=["hmm", "digits"])
    parser.add_argument("--budgets", type=int, nargs="+",
                        default=[64, 128, 256, 512, 1024, 2048])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--replicates", type=int, default=8)
    parser.add_argument("--json", default=None)
    parser.add_argument("--reference-orders", type=int, default=32,
                        help="stdlib: orders per tune pair in the reference (default 32)")
    parser.add_argument("--reference-cache", default=None, metavar="REF.npz",
                        help="stdlib: load the reference rows from this file, or save them there")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    results = {}
    floors = {}
    laws = setups(args.laws, args.reference_orders, args.reference_cache)
    for name, (fn, data, extra, ref, halves) in laws.items():
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
                chosen = {}
                for m, kwargs in ESTIMATORS.items():
                    if kwargs is None:
                        p = plain(fn, data, budget, jax.random.fold_in(key, 2), **extra)
                        chosen[m] = {t: optimal_schedule(p, t).tokens_per_step
                                     for t in args.steps}
                        continue
                    est = estimate_within_budget(
                        fn, data, key=key, max_forward_passes=budget, steps=args.steps,
                        bootstrap=50 if m == METHODS[0] else 0, **kwargs, **extra)
                    chosen[m] = est.schedules
                    if m == METHODS[0]:
                        for t in args.steps:
                            stable[t].append(est.stability[t]["relative_p90"])
                for t in args.steps:
                    for m in METHODS:
                        kl = float(schedopt.expected_kl(ref, chosen[m][t]))
                        excess[m][t].append(kl / best[t] - 1)
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
        from schedopt._internal.io import write_json

        write_json(args.json, results)
    return 0


def table(results: dict, args) -> str:
    """One markdown table per law: a row per (B, estimator), a column per T."""
    lines = []
    for name, res in results.items():
        rows = res["rows"]
        lines.append(f"\n**{name}**: relative KL excess over the converged optimum, median "
                     f"[90th percentile] of {args.replicates} replicates\n")
        lines.append("| B | estimator | " + " | ".join(f"T = {t}" for t in args.steps) + " |")
        lines.append("|---|---|" + "---|" * len(args.steps))
        for budget in args.budgets:
            for m in METHODS:
                cells = []
                for t in args.steps:
                    r = next(x for x in rows if x["budget"] == budget and x["steps"] == t)
                    cells.append(f"{100 * r[m]['median']:.2f}% [{100 * r[m]['p90']:.1f}]")
                lines.append(f"| {budget} | {m} | " + " | ".join(cells) + " |")
        lines.append("| reference noise | | " + " | ".join(
            f"{100 * res['reference_noise'][t]:.2f}%" for t in args.steps) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
