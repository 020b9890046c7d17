"""Schedules from the training log (no forward pass) against the held-out estimate.

    python scripts/bench_losscurve.py --orders 4 --json losscurve.json

On the shipped digits model: profile A comes from the training loss by mask ratio logged by
scripts/train_mdm.py (schedopt/data/digits_mdm.loss.csv, training batches with dropout on);
profile A' is the same log with the convex fit (`--shape convex`);
profile B is the full held-out estimate `schedopt profile --model digits` makes (the data curve
at every revealed count on the test split, 297 x 64 forward passes). For each T the exact
optimal schedule of each profile (and uniform, cosine) is scored by its held-out T-step NLL
on the test split, all schedules with the same random orders (a different key from B's
estimate), so differences are paired. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jax
import numpy as np

import schedopt
from schedopt.data import load_dataset
from schedopt.estimate import estimate_profile
from schedopt.exact import optimal_schedule
from schedopt.losscurve import profile_from_loss_curve_file
from schedopt.models import load_checkpoint, logits_fn
from schedopt.nll import schedules_nll
from schedopt.schedules import cosine_tokens, uniform_tokens

LOG = Path(schedopt.__file__).parent / "data" / "digits_mdm.loss.csv"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--orders", type=int, default=4, help="random orders per sequence")
    parser.add_argument("--loss-curve", default=str(LOG))
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    model, _ = load_checkpoint("digits")
    test = load_dataset("digits").test
    n = test.shape[1]
    fn = logits_fn(model)
    from_log = profile_from_loss_curve_file(args.loss_curve, length=n, shape="monotone")
    convex = profile_from_loss_curve_file(args.loss_curve, length=n, shape="convex")
    heldout = estimate_profile(fn, test, key=jax.random.key(0), grid=n)
    out = {"heldout_forward_passes": heldout.meta["forward_passes"],
           "joint_entropy": {"log": from_log.joint_entropy,
                             "log_interval": from_log.meta["joint_entropy_interval"],
                             "heldout": heldout.joint_entropy,
                             "heldout_stderr": heldout.meta["joint_entropy_stderr"]},
           "nonmonotone": from_log.meta["nonmonotone"], "rows": []}
    print(f"H_n: training log {from_log.joint_entropy:.2f} nats "
          f"(95% {from_log.meta['joint_entropy_interval'][0]:.2f}.."
          f"{from_log.meta['joint_entropy_interval'][1]:.2f}), held-out "
          f"{heldout.joint_entropy:.2f} +- {1.96 * heldout.meta['joint_entropy_stderr']:.2f}")
    print()
    print("| T | schedule | tokens per step | held-out NLL [95%] | minus held-out-estimate "
          "schedule [95%, paired] |")
    print("|---|---|---|---|---|")
    names = ("training log, monotone fit", "training log, convex fit", "held-out estimate",
             "uniform", "cosine")
    for t in args.steps:
        schedules = [np.asarray(optimal_schedule(p, t).tokens_per_step)
                     for p in (from_log, convex, heldout)]
        schedules += [uniform_tokens(n, t), cosine_tokens(n, t)]
        res = schedules_nll(fn, test, schedules, jax.random.key(100 + t), orders=args.orders)
        row = {"steps": t, "one_by_one": res[0].one_by_one, "schedules": []}
        for name, s, r in zip(names, schedules, res, strict=True):
            diff = r.per_sequence - res[2].per_sequence
            d, dse = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))
            row["schedules"].append({"name": name, "tokens_per_step": s.tolist(),
                                     "nll": r.nll, "stderr": r.stderr, "excess": r.excess,
                                     "minus_heldout": d, "minus_heldout_stderr": dse})
            vs = "-" if name == names[2] else (
                f"{d:+.3f} [{d - 1.96 * dse:+.3f}, {d + 1.96 * dse:+.3f}]")
            print(f"| {t} | {name} | {s.tolist()} | {r.nll:.2f} [{r.interval[0]:.2f}, "
                  f"{r.interval[1]:.2f}] | {vs} |")
        out["rows"].append(row)
    print(f"\none token per step: {out['rows'][0]['one_by_one']:.2f} nats; NLLs in nats per "
          f"64-token image, test split (297 images) x {args.orders} orders")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
