"""The shipped stdlib model end to end: predicted vs measured held-out excess NLL.

Curves are estimated on the "tune" pairs (schedules are chosen there), and every schedule is
scored on the disjoint "test" pairs by its T-step NLL (the same random orders for all
schedules, so differences are paired). Rows: optimized on the raw held-out cross-entropy
curve (exact DP over all blocks, theory §11), optimized on the regularised curve (blocks only:
what the issue saw go wrong), uniform, cosine and LLaDA's stock schedule, at T in {8, 16, 32,
64}, without blocks and with blocks of 32.

    python scripts/stdlib_example_table.py --json /tmp/stdlib_table.json

Prints a markdown table: predicted excess (tune curve, +- 1.96 se where available), measured
excess on test pairs with its 95% interval, and the paired difference against LLaDA stock.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "schedopt" / "data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(DATA / "stdlib_mlm"))
    parser.add_argument("--tune", default=str(DATA / "stdlib_tune.jsonl"))
    parser.add_argument("--test", default=str(DATA / "stdlib_test.jsonl"))
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--block-length", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    import jax
    import torch

    from schedopt.check import llada_stock, paired_difference, predicted_excess, schedules_nll
    from schedopt.curve import BlockProfiles
    from schedopt.estimate import estimate_block_profiles, estimate_curves
    from schedopt.objective import block_expected_kl
    from schedopt.schedule import cosine_tokens, uniform_tokens
    from schedopt.solve import (
        optimal_schedule_unregularized,
        optimize_blocks,
        optimize_blocks_unregularized,
    )
    from schedopt.sources import hf_scorer, read_pairs

    torch.set_num_threads(2)
    record = json.loads((Path(args.model) / "training.json").read_text())
    scorer, _ = hf_scorer(args.model, mask_id=record["mask_id"], batch_size=args.batch_size,
                          trust_remote_code=True)  # the model ships its own modeling file
    tune = read_pairs(args.tune, vocab_size=scorer.vocab_size)
    test = read_pairs(args.test, vocab_size=scorer.vocab_size)
    n = tune.answers.shape[1]
    k_curve, k_blocks, k_nll = jax.random.split(jax.random.key(args.seed), 3)
    started = time.monotonic()

    est = estimate_curves(scorer, tune.answers, prompts=tune.prompts, key=k_curve, grid=n,
                          batch_size=args.batch_size)
    raw_c = est.curve("data")[0]
    blocks = estimate_block_profiles(scorer, tune.answers, args.block_length,
                                     prompts=tune.prompts, key=k_blocks, regularize=False,
                                     batch_size=args.batch_size)
    regular = BlockProfiles.from_profiles([p.regularize() for p in blocks.profiles])
    g = np.diff(np.asarray(blocks.entropy), axis=1)
    rising = int(np.sum(np.any(np.diff(g, axis=1) > 0, axis=1)))

    rows, one_by_one = [], {}
    for blocked in (False, True):
        candidates: dict[str, np.ndarray] = {}
        for t in args.steps:
            if blocked:
                candidates[f"optimized (raw)|{t}"] = np.asarray(
                    optimize_blocks_unregularized(blocks, t).tokens_per_step)
                candidates[f"optimized (regularised)|{t}"] = np.asarray(
                    optimize_blocks(regular, t).tokens_per_step)
                per = t // blocks.num_blocks
                candidates[f"uniform|{t}"] = np.tile(uniform_tokens(args.block_length, per),
                                                     blocks.num_blocks)
                candidates[f"cosine|{t}"] = np.tile(cosine_tokens(args.block_length, per),
                                                    blocks.num_blocks)
            else:
                candidates[f"optimized (raw)|{t}"] = np.asarray(
                    optimal_schedule_unregularized(raw_c, t).tokens_per_step)
                candidates[f"uniform|{t}"] = uniform_tokens(n, t)
                candidates[f"cosine|{t}"] = cosine_tokens(n, t)
            candidates[f"LLaDA stock|{t}"] = np.asarray(
                llada_stock(n, t, args.block_length if blocked else None).tokens_per_step)
        # Score each distinct schedule once; identical schedules share their result.
        distinct: dict[tuple, int] = {}
        for s in candidates.values():
            distinct.setdefault(tuple(s.tolist()), len(distinct))
        results = schedules_nll(scorer, test.answers, [np.asarray(k) for k in distinct],
                                key=k_nll, prompts=test.prompts,
                                block_length=args.block_length if blocked else None,
                                batch_size=args.batch_size)
        one_by_one["blocks" if blocked else "any order"] = [results[0].one_by_one,
                                                            results[0].one_by_one_stderr]
        for label, s in candidates.items():
            name, t = label.split("|")
            r = results[distinct[tuple(s.tolist())]]
            stock = results[distinct[tuple(candidates[f'LLaDA stock|{t}'].tolist())]]
            if blocked:
                predicted, predicted_se = block_expected_kl(blocks, s), None
            else:
                predicted, predicted_se = predicted_excess(est, s)
            diff = paired_difference(r.per_sequence, stock.per_sequence)
            rows.append({
                "blocks": args.block_length if blocked else None, "schedule": name,
                "steps": int(t), "tokens_per_step": s.tolist(),
                "predicted_excess": predicted, "predicted_excess_stderr": predicted_se,
                "measured_excess": r.excess, "measured_interval": list(r.excess_interval),
                "vs_stock": diff[0], "vs_stock_interval": [diff[1], diff[2]],
            })
    summary = {
        "model": args.model, "tune_pairs": len(tune), "test_pairs": len(test), "n": n,
        "prompt_tokens": tune.summary()["prompt_tokens_max"],
        "one_by_one_nll_test": one_by_one,
        "raw_curve_rises": bool(np.any(np.diff(raw_c) > 0)),
        "block_curves_not_monotone": rising, "seconds": time.monotonic() - started,
        "rows": rows,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1) + "\n")
    print(f"{summary['test_pairs']} test pairs, answers of {n} tokens after a "
          f"{summary['prompt_tokens']}-token prompt; one-by-one test NLL "
          f"{one_by_one['any order'][0]:.1f} nats (any order), {one_by_one['blocks'][0]:.1f} "
          f"(blocks left to right); {rising} of {blocks.num_blocks} raw "
          f"block curves not monotone; {summary['seconds']:.0f} s")
    print("| blocks | schedule | T | predicted excess | measured excess [95% CI] | "
          "vs LLaDA stock [95% CI] |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        pse = r["predicted_excess_stderr"]
        pred = f"{r['predicted_excess']:.2f}" + (f" +- {1.96 * pse:.2f}" if pse else "")
        lo, hi = r["measured_interval"]
        dlo, dhi = r["vs_stock_interval"]
        print(f"| {r['blocks'] or '-'} | {r['schedule']} | {r['steps']} | {pred} | "
              f"{r['measured_excess']:.2f} [{lo:.2f}, {hi:.2f}] | "
              f"{r['vs_stock']:+.2f} [{dlo:+.2f}, {dhi:+.2f}] |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
