"""Schedules from the training log (no forward pass) against the held-out estimate.

    python scripts/bench_losscurve.py --orders 4 --json losscurve.json
    python scripts/bench_losscurve.py --model stdlib --orders 8 --json losscurve_stdlib.json

`--model digits` (the default), the shipped digits model: profile A comes from the training
loss by mask ratio logged by scripts/train_mdm.py (schedopt/data/digits_mdm.loss.csv, training
batches with dropout on), fitted monotone and convex (`--shape`); profile B is the full
held-out estimate `schedopt profile --model digits` makes (the data curve at every revealed
count on the test split, 297 x 64 forward passes). For each T the exact optimal schedule of
each profile (and uniform, cosine) is scored by its held-out T-step NLL on the test split,
all schedules with the same random orders (a different key from B's estimate), so
differences are paired. Prints a Markdown table.

`--model stdlib`, the shipped text model (schedopt/data/stdlib_mlm, a Hugging Face masked LM
answering 64 tokens after a 16-token prompt): A is its training log
(schedopt/data/stdlib_mlm/loss.csv, `scripts/train_stdlib_mlm.py --loss-curve-only`: training
windows, masked as in training, no dropout in this model) read with `length` = the answer
length; B is the prompt-conditioned held-out estimate on the tune pairs that
`schedopt profile --hf-model` writes (`estimate_curves` at every revealed count, regularised
profile), plus its raw curve optimized by the exact DP that needs no monotonicity (what
`--block-length n` gives). The whole answer is one block (the log has one curve over the
answer; per-block curves would need per-block losses). Schedules are scored on the disjoint
test pairs, given their prompts, with the same random orders for all.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax
import numpy as np

import schedopt
from schedopt.check import schedules_nll
from schedopt.curve import profile_from_loss_curve_file, read_loss_curve
from schedopt.schedule import cosine_tokens, uniform_tokens
from schedopt.solve import optimal_schedule

DATA = Path(schedopt.__file__).parent / "data"
LOGS = {"digits": DATA / "digits_mdm.loss.csv", "stdlib": DATA / "stdlib_mlm" / "loss.csv"}
REFERENCE = "held-out estimate"


def digits_setup(args) -> dict:
    """The digits model, its test split, and profiles A (log) and B (held-out, test split)."""
    from schedopt.estimate import estimate_profile
    from schedopt.models import load_checkpoint, logits_fn
    from schedopt.sources import load_dataset

    model, _ = load_checkpoint("digits")
    test = load_dataset("digits").test
    n = test.shape[1]
    fn = logits_fn(model)
    heldout = estimate_profile(fn, test, key=jax.random.key(0), grid=n)
    return {"fn": fn, "data": test, "prompts": None, "n": n, "heldout": heldout, "raw": None,
            "batch_size": None, "unit": f"{n}-token image, test split ({len(test)} images)"}


def stdlib_setup(args) -> dict:
    """The text model, its test pairs, and profile B on the tune pairs (the HF path's)."""
    import torch

    from schedopt.estimate import estimate_curves
    from schedopt.sources import hf_scorer, read_pairs

    torch.set_num_threads(args.threads)
    folder = DATA / "stdlib_mlm"
    record = json.loads((folder / "training.json").read_text())
    scorer, _ = hf_scorer(str(folder), mask_id=record["mask_id"], batch_size=args.batch_size,
                          trust_remote_code=True)  # the model ships its own modeling file
    tune = read_pairs(DATA / "stdlib_tune.jsonl", vocab_size=scorer.vocab_size)
    test = read_pairs(DATA / "stdlib_test.jsonl", vocab_size=scorer.vocab_size)
    n = tune.answers.shape[1]
    est = estimate_curves(scorer, tune.answers, prompts=tune.prompts, key=jax.random.key(0),
                          grid=n, batch_size=args.batch_size, jit=False)
    return {"fn": scorer, "data": test.answers, "prompts": test.prompts, "n": n,
            "heldout": est.profile("data"), "raw": est.curve("data")[0],
            "batch_size": args.batch_size,
            "unit": f"{n}-token answer given its prompt, test pairs ({len(test)} pairs; "
                    f"curve B from the {len(tune)} tune pairs)"}


def score(setup: dict, per_t: dict[int, list], orders: int, *, joint: bool) -> dict[int, list]:
    """Held-out T-step NLL of every schedule, each distinct schedule scored once.

    All schedules of one T share their random orders (paired differences). With `joint`
    every T shares one call (key 100: one one-by-one pass instead of one per T, for a slow
    model); otherwise each T has its own call with key 100 + T (the digits table's keys).
    """
    groups = [list(per_t)] if joint else [[t] for t in per_t]
    out: dict[int, list] = {}
    for group in groups:
        distinct: dict[tuple, int] = {}
        for t in group:
            for s in per_t[t]:
                distinct.setdefault(tuple(s.tolist()), len(distinct))
        key = jax.random.key(100 if joint else 100 + group[0])
        results = schedules_nll(setup["fn"], setup["data"], [np.asarray(k) for k in distinct],
                                key=key, prompts=setup["prompts"], orders=orders,
                                batch_size=setup["batch_size"])
        for t in group:
            out[t] = [results[distinct[tuple(s.tolist())]] for s in per_t[t]]
    return out


def curve_gap(log: str, n: int, heldout) -> list[dict]:
    """Training log minus the held-out estimate's raw curve, averaged over bands of revealed
    counts (j = 0, then quarters of 1..n-1), with a 95% half-width from both standard errors;
    [] when the log's ratios are not whole counts of n or the estimate is not on every count."""
    ratio, ce, se = read_loss_curve(log)
    j = n * (1 - ratio)
    raw = np.asarray(heldout.meta.get("raw_conditional_entropy", []), np.float64)
    if (not np.allclose(j, np.round(j)) or raw.size != n or heldout.stderr is None
            or se is None):
        return []
    j = np.round(j).astype(int)
    raw_se = np.asarray(heldout.stderr, np.float64)
    edges = [0, 1] + [1 + (n - 1) * q // 4 for q in (1, 2, 3, 4)]
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        k = (j >= lo) & (j < hi)
        if not k.any():
            continue
        d = ce[k] - raw[j[k]]
        half = 1.96 * float(np.sqrt(np.sum(se[k] ** 2 + raw_se[j[k]] ** 2))) / k.sum()
        bands.append({"revealed": [lo, hi - 1], "log": float(ce[k].mean()),
                      "heldout": float(raw[j[k]].mean()), "minus": float(d.mean()),
                      "half_width_95": half})
    return bands


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", choices=sorted(LOGS), default="digits")
    parser.add_argument("--steps", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--orders", type=int, default=4, help="random orders per sequence")
    parser.add_argument("--loss-curve", default=None, help="default: the shipped model's log")
    parser.add_argument("--batch-size", type=int, default=256, help="stdlib: rows per pass")
    parser.add_argument("--threads", type=int, default=2, help="stdlib: torch CPU threads")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    from schedopt.solve import optimal_schedule_unregularized

    started = time.monotonic()
    setup = (stdlib_setup if args.model == "stdlib" else digits_setup)(args)
    n, heldout, raw = setup["n"], setup["heldout"], setup["raw"]
    log = args.loss_curve or str(LOGS[args.model])
    from_log = profile_from_loss_curve_file(log, length=n, shape="monotone")
    convex = profile_from_loss_curve_file(log, length=n, shape="convex")
    out = {"model": args.model, "loss_curve": log, "orders": args.orders,
           "heldout_forward_passes": heldout.meta["forward_passes"],
           "joint_entropy": {"log": from_log.joint_entropy,
                             "log_interval": from_log.meta["joint_entropy_interval"],
                             "log_convex": convex.joint_entropy,
                             "heldout": heldout.joint_entropy,
                             "heldout_stderr": heldout.meta["joint_entropy_stderr"]},
           "nonmonotone": from_log.meta["nonmonotone"], "rows": []}
    print(f"H_n: training log {from_log.joint_entropy:.2f} nats "
          f"(95% {from_log.meta['joint_entropy_interval'][0]:.2f}.."
          f"{from_log.meta['joint_entropy_interval'][1]:.2f}), held-out "
          f"{heldout.joint_entropy:.2f} +- {1.96 * heldout.meta['joint_entropy_stderr']:.2f}")
    out["log_minus_heldout"] = curve_gap(log, n, heldout)
    for b in out["log_minus_heldout"]:
        print(f"revealed {b['revealed'][0]}..{b['revealed'][1]}: training log "
              f"{b['log']:.3f}, held-out {b['heldout']:.3f} nats/token, log minus held-out "
              f"{b['minus']:+.3f} +- {b['half_width_95']:.3f}")
    print()
    print("| T | schedule | tokens per step | held-out NLL [95%] | minus held-out-estimate "
          "schedule [95%, paired] |")
    print("|---|---|---|---|---|")
    names = ["training log, monotone fit", "training log, convex fit", REFERENCE]
    if raw is not None:
        names.append("held-out estimate, raw curve")
    names += ["uniform", "cosine"]
    per_t = {}
    for t in args.steps:
        schedules = [np.asarray(optimal_schedule(p, t).tokens_per_step)
                     for p in (from_log, convex, heldout)]
        if raw is not None:
            schedules.append(np.asarray(optimal_schedule_unregularized(raw, t).tokens_per_step))
        per_t[t] = schedules + [uniform_tokens(n, t), cosine_tokens(n, t)]
    scored = score(setup, per_t, args.orders, joint=args.model == "stdlib")
    for t, schedules in per_t.items():
        res = scored[t]
        ref = res[names.index(REFERENCE)]
        row = {"steps": t, "one_by_one": res[0].one_by_one, "schedules": []}
        for name, s, r in zip(names, schedules, res, strict=True):
            diff = r.per_sequence - ref.per_sequence
            d, dse = float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(diff.size))
            row["schedules"].append({"name": name, "tokens_per_step": s.tolist(),
                                     "nll": r.nll, "stderr": r.stderr, "excess": r.excess,
                                     "minus_heldout": d, "minus_heldout_stderr": dse})
            vs = "-" if name == REFERENCE else (
                f"{d:+.3f} [{d - 1.96 * dse:+.3f}, {d + 1.96 * dse:+.3f}]")
            print(f"| {t} | {name} | {s.tolist()} | {r.nll:.2f} [{r.interval[0]:.2f}, "
                  f"{r.interval[1]:.2f}] | {vs} |", flush=True)
        out["rows"].append(row)
    out["seconds"] = time.monotonic() - started
    print(f"\none token per step: {out['rows'][0]['one_by_one']:.2f} nats; NLLs in nats per "
          f"{setup['unit']} x {args.orders} orders; {out['seconds']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
