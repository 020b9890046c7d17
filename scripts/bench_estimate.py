"""Learned curves, judged on held-out data: the learned-curve checks too slow for the tests.

    python scripts/bench_estimate.py                       # digits (shipped model) + cost
    python scripts/bench_estimate.py --hmm-model bench-out/hmm_mdm.json   # + the HMM check

1. Digits, shipped model: the held-out (test split) T-step NLL of schedules optimized on the
   validation split's data curve, uniform and cosine at T = 4, 8, 16; their excess over one
   token per step beside the excess predicted by the test split's data curve (theory §11: an
   identity) and by the model's own predictive-entropy curve (miscalibrated).
2. HMM: a model trained on samples of the known `default_hmm` (trained first, with the
   train_mdm.py preset, when --hmm-model does not exist). Its data curve against the law's
   curve in H_n, and the exact KL under the law of the schedule optimized on the model's curve
   against the law's optimum.
3. Cost: forward passes until the optimized schedule stops changing (digits, n = 64): for
   grids of G revealed counts and M sequences (G * M passes), the KL under the full-data
   curve of the schedule optimized on the small estimate, relative to the optimum.

Prints tables (nats); copy them into docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np

import schedopt
from schedopt.check import predicted_excess, schedules_nll
from schedopt.estimate import CurveEstimate, estimate_curves
from schedopt.models import heldout_masked_ce, load_checkpoint, logits_fn
from schedopt.schedule import cosine_tokens, uniform_tokens
from schedopt.solve import optimal_schedule
from schedopt.sources import default_hmm, digits

STEPS = (4, 8, 16)


def curves(fn, data: np.ndarray, key, orders: int, grid=None) -> CurveEstimate:
    """Both curves with `orders` random orders per sequence, averaged per sequence (so the
    standard errors stay across sequences)."""
    est = estimate_curves(fn, np.tile(data, (orders, 1)), key=key, grid=grid)
    m = len(data)

    def per_sequence(values):
        return values.reshape(orders, m, -1).mean(axis=0)

    return CurveEstimate(revealed=est.revealed, cross_entropy=per_sequence(est.cross_entropy),
                         predictive_entropy=per_sequence(est.predictive_entropy), n=est.n,
                         forward_passes=est.forward_passes)


def digits_table(model_path: str, seed: int, orders: int):
    model, record = load_checkpoint(model_path)
    fn = logits_fn(model)
    data = digits()
    keys = jax.random.split(jax.random.key(seed), 3)
    t0 = time.perf_counter()
    valid_est = curves(fn, data.valid, keys[0], orders, grid=64)
    valid_curve = valid_est.profile("data")
    test_est = curves(fn, data.test, keys[1], orders, grid=64)
    seconds = time.perf_counter() - t0
    ce = heldout_masked_ce(model, data.test)
    gap, gap_se = test_est.calibration_gap
    recorded = record.get("test_ce", float("nan"))
    print(f"## digits: model {model_path}, held-out masked CE {ce:.3f} nats/token "
          f"(recorded at training: {recorded:.3f})")
    print(f"curves: full grid, {orders} orders per sequence, valid {len(data.valid)} / test "
          f"{len(data.test)} sequences, {valid_est.forward_passes + test_est.forward_passes} "
          f"forward passes in {seconds:.0f} s; data curve c_0 = "
          f"{valid_curve.conditional_entropy[0]:.3f}, c_63 = "
          f"{valid_curve.conditional_entropy[-1]:.3f} nats; calibration gap (H_n of the data "
          f"minus the model curve) {gap:.2f} +- {1.96 * gap_se:.2f}")
    schedules, names = [], []
    for t in STEPS:
        for name, s in (("optimized", optimal_schedule(valid_curve, t).tokens_per_step),
                        ("cosine", cosine_tokens(64, t)), ("uniform", uniform_tokens(64, t))):
            schedules.append(np.asarray(s))
            names.append((t, name))
    t0 = time.perf_counter()
    results = schedules_nll(fn, data.test, schedules, key=keys[2], orders=orders)
    seconds = time.perf_counter() - t0
    r0 = results[0]
    print(f"one token per step: NLL {r0.one_by_one:.2f} +- {1.96 * r0.one_by_one_stderr:.2f} "
          f"nats/image; T-step NLLs of {len(schedules)} schedules, {orders} orders per "
          f"sequence, in {seconds:.0f} s")
    print("| T | schedule | held-out NLL | excess [95% CI] | minus uniform's [95% CI] "
          "| predicted (data curve) | predicted (model curve) | tokens per step |")
    print("|---|---|---|---|---|---|---|---|")
    uniform = {t: r for (t, name), r in zip(names, results, strict=True) if name == "uniform"}
    for (t, name), s, r in zip(names, schedules, results, strict=True):
        lo, hi = r.excess_interval
        diff = r.per_sequence - uniform[t].per_sequence
        half = 1.96 * diff.std(ddof=1) / np.sqrt(diff.size) if name != "uniform" else 0.0
        pred, pred_se = predicted_excess(test_est, s)
        model_pred, _ = predicted_excess(test_est, s, kind="model")
        print(f"| {t} | {name} | {r.nll:.2f} | {r.excess:.2f} [{lo:.2f}, {hi:.2f}] | "
              f"{diff.mean():+.2f} [{diff.mean() - half:+.2f}, {diff.mean() + half:+.2f}] | "
              f"{pred:.2f} +- {1.96 * pred_se:.2f} | {model_pred:.2f} | "
              f"{' '.join(map(str, s.tolist()))} |")
    print()
    # The reference for the cost table: both held-out splits, every order drawn above.
    pool = np.concatenate([data.valid, data.test])
    both = CurveEstimate(
        revealed=test_est.revealed,
        cross_entropy=np.concatenate([valid_est.cross_entropy, test_est.cross_entropy]),
        predictive_entropy=np.concatenate([valid_est.predictive_entropy,
                                           test_est.predictive_entropy]),
        n=test_est.n, forward_passes=0)
    return fn, pool, both.profile("data")


def hmm_table(model_path: str, seed: int, sequences: int):
    if not Path(model_path).exists():
        print(f"training the HMM model into {model_path} ...", file=sys.stderr)
        Path(model_path).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name("train_mdm.py")),
                        "--data", "hmm", "--out", model_path], check=True)
    model, record = load_checkpoint(model_path)
    fn = logits_fn(model)
    law = default_hmm(model.config.length)
    # Unlimited data: fresh held-out sequences from the law (not the training draws).
    heldout = np.asarray(law.sample(sequences, key=jax.random.key(10_000 + seed)))
    t0 = time.perf_counter()
    reference = schedopt.estimate_law(law, key=jax.random.key(seed), samples=4096, grid=law.n)
    reference = reference.profile("model")
    ref_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    est = estimate_curves(fn, heldout, key=jax.random.key(seed + 1), grid=law.n)
    est_seconds = time.perf_counter() - t0
    learned = est.profile("data")
    own = est.profile("model")
    h = reference.joint_entropy
    print(f"## HMM (4 sticky states, 8 symbols, n = {law.n}): model {model_path}, held-out "
          f"masked CE {heldout_masked_ce(model, heldout):.4f} nats/token "
          f"(law's own: {h / law.n:.4f}); model curves from {sequences} fresh sequences, "
          f"{est.forward_passes} forward passes in {est_seconds:.0f} s")
    print(f"law's curve from 4096 sequences with exact conditionals ({ref_seconds:.0f} s): "
          f"H_n = {h:.2f} +- {1.96 * reference.meta['joint_entropy_stderr']:.2f}")
    for name, p in (("data curve", learned), ("model curve", own)):
        print(f"model's {name}: H_n = {p.joint_entropy:.2f} "
              f"+- {1.96 * p.meta['joint_entropy_stderr']:.2f} "
              f"({100 * (p.joint_entropy / h - 1):+.1f}% vs the law)")
    print("| T | law's optimum KL | exact KL of schedule optimized on the model's data curve "
          "| ratio | uniform KL |")
    print("|---|---|---|---|---|")
    for t in STEPS:
        best = float(optimal_schedule(reference, t).expected_kl)
        mine = float(schedopt.expected_kl(reference, optimal_schedule(learned, t).tokens_per_step))
        unif = float(schedopt.expected_kl(reference, uniform_tokens(law.n, t)))
        print(f"| {t} | {best:.3f} | {mine:.3f} | {mine / best:.4f} | {unif:.3f} |")
    print()
    return fn, heldout, reference


def cost_table(label: str, fn, pool: np.ndarray, reference, seed: int, repeats: int) -> None:
    """KL under `reference` of schedules optimized on small estimates (G grid points x M
    sequences from `pool`), against the reference optimum; medians over `repeats` draws."""
    optimum = {t: float(optimal_schedule(reference, t).expected_kl) for t in STEPS}
    print(f"## cost ({label}, n = {reference.n}): optimum KL at T = 4, 8, 16: "
          + ", ".join(f"{optimum[t]:.3f}" for t in STEPS)
          + f"; median over {repeats} draws of M sequences and their orders")
    print("| grid G | sequences M | forward passes | KL / optimum at T = 4, 8, 16 "
          "| KL - optimum (nats) at T = 4, 8, 16 |")
    print("|---|---|---|---|---|")
    rng = np.random.default_rng(seed)
    for grid in (9, 17, 33, reference.n):
        for m in (8, 16, 32, 64, 128):
            if grid * m > 4096:
                continue
            excess = {t: [] for t in STEPS}
            for r in range(repeats):
                rows = rng.choice(len(pool), m, replace=False)
                est = estimate_curves(fn, pool[rows], key=jax.random.key(1000 * r + m),
                                      grid=grid)
                p = est.profile("data")
                for t in STEPS:
                    s = optimal_schedule(p, t).tokens_per_step
                    excess[t].append(float(schedopt.expected_kl(reference, s)) - optimum[t])
            med = {t: float(np.median(excess[t])) for t in STEPS}
            print(f"| {grid} | {m} | {grid * m} | "
                  + ", ".join(f"{1 + med[t] / optimum[t]:.3f}" for t in STEPS) + " | "
                  + ", ".join(f"{med[t]:.3f}" for t in STEPS) + " |")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--digits-model", default="digits", help="digits checkpoint")
    parser.add_argument("--hmm-model", default=None,
                        help="HMM checkpoint (trained there first if missing); default: skip")
    parser.add_argument("--hmm-sequences", type=int, default=4000,
                        help="fresh held-out HMM sequences for the model's curves")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="draws per cost cell")
    parser.add_argument("--orders", type=int, default=4,
                        help="random orders per digits sequence (curves and NLLs)")
    parser.add_argument("--skip", nargs="*", default=(), choices=("digits", "hmm", "cost"),
                        help="sections to leave out (cost needs digits or hmm)")
    args = parser.parse_args(argv)
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, "
          f"{len(jax.devices())} device(s)\n")
    cost = []
    if "digits" not in args.skip:
        cost.append(("digits, shipped model", *digits_table(args.digits_model, args.seed,
                                                             args.orders)))
    if args.hmm_model and "hmm" not in args.skip:
        cost.append(("HMM-trained model, exact law as reference",
                     *hmm_table(args.hmm_model, args.seed, args.hmm_sequences)))
    if "cost" not in args.skip:
        for label, fn, pool, reference in cost:
            cost_table(label, fn, pool, reference, args.seed, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
