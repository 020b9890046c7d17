"""`evaluate`, `compare`, `frontier`, `plot` and `optimize` on a block-profiles file.

A `schedopt.block_profiles` file holds one curve per semi-autoregressive block (theory §7),
each conditioned on the prompt and the earlier blocks. `profile --hf-model --block-length`
writes them raw (not regularised): the raw curve is the one whose KL formula predicts the
held-out T-step NLL exactly (theory §11), so these commands score and optimize the raw curves
with the exact DP over all blocks (`schedopt.solve`), which needs no monotonicity, and
say how many block curves are not monotone. `--regularize` projects each block first.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

from . import format_table
from .outputs import FRONTIER_FORMAT


def is_block_profiles(path: str) -> bool:
    """Whether `path` is a `schedopt.block_profiles` file (False for anything unreadable)."""
    from .._internal import io as _io
    from ..curve import BLOCK_PROFILES_FORMAT

    try:
        obj = _io.read_json(path, "profile")
    except ValueError:
        return False
    return isinstance(obj, dict) and obj.get("format") == BLOCK_PROFILES_FORMAT


def load(path: str, regularize: bool):
    """(blocks, raw): the curves, and whether they are raw (optimized without projection)."""
    from ..curve import BlockProfiles

    blocks = BlockProfiles.load(path, check=False)
    if regularize:
        regular = [p.regularize() for p in blocks.profiles]
        return BlockProfiles.from_profiles(regular, meta=blocks.meta), False
    return blocks, True


def non_monotone_blocks(blocks) -> int:
    """How many block curves have a g that rises somewhere (beyond float noise)."""
    g = np.diff(np.asarray(blocks.entropy, np.float64), axis=1)
    return int(np.sum(np.any(np.diff(g, axis=1) > 1e-12, axis=1)))


def _note(blocks, raw: bool) -> str:
    bad = non_monotone_blocks(blocks)
    if not raw:
        return "regularised block curves (--regularize)"
    if bad:
        return (f"raw block curves: {bad} of {blocks.num_blocks} are not monotone, so the exact "
                "DP over all blocks (no monotonicity needed) optimizes them as they are")
    return "raw block curves (all monotone)"


def optimize(args: argparse.Namespace, blocks_path: str) -> int:
    """`schedopt optimize --block-length L` on a block-profiles file."""
    from ..solve import optimize_blocks, optimize_blocks_unregularized

    blocks, raw = load(blocks_path, args.regularize)
    if blocks.block_length != args.block_length:
        raise ValueError(f"{blocks_path!r} holds blocks of {blocks.block_length} tokens but "
                         f"--block-length is {args.block_length}; pass --block-length "
                         f"{blocks.block_length}")
    # A monotone curve has the same optimum either way; keep the classic solver's method name.
    solve = optimize_blocks_unregularized if raw and non_monotone_blocks(blocks) else (
        optimize_blocks)
    result = solve(blocks, args.steps, equal_split=args.equal_split)
    result = result.replace(meta={**result.meta, "profile": str(blocks_path)})
    result.save(args.out)
    split = result.meta["steps_per_block"]
    print(f"{result.method}: {result.steps} steps, predicted excess {float(result.expected_kl):.6g}"
          f" nats, {len(split)} blocks of {blocks.block_length} tokens, steps per block {split} "
          f"-> {args.out}")
    print(f"note: {_note(blocks, raw)}; check it on held-out pairs with `schedopt nll`")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    """`schedopt evaluate` of a block schedule under block curves."""
    from ..objective import block_expected_kl
    from ..schedule import Schedule

    blocks, raw = load(args.profile, args.regularize)
    schedule = Schedule.load(args.schedule)
    if schedule.n != blocks.n:
        raise ValueError(f"schedule {args.schedule!r} is for n = {schedule.n} tokens but the "
                         f"block curves cover n = {blocks.n}")
    kl = block_expected_kl(blocks, schedule.tokens_per_step)
    row = {"schedule": args.schedule, "steps": schedule.steps, "expected_kl": kl,
           "block_length": blocks.block_length, "curves": "raw" if raw else "regularised"}
    if args.json:
        print(json.dumps(row))
    else:
        print(f"{args.schedule}: {schedule.steps} steps in blocks of {blocks.block_length}, "
              f"expected KL {kl:.6g} nats on the {row['curves']} block curves")
    return 0 if math.isfinite(kl) else 1


def schedules_at_budget(blocks, steps: int, raw: bool) -> dict:
    """Block schedules at T steps: optimized (raw and regularised curves), equal splits with
    optimal, cosine, EDS and pyramid counts (EDS on each block's own curve; the pyramid of the
    largest factor that fits each block's steps), and LLaDA's stock schedule (equal split,
    uniform)."""
    from ..check import llada_stock
    from ..curve import BlockProfiles
    from ..schedule import cosine_tokens, eds_tokens, pyramid_tokens
    from ..solve import optimize_blocks, optimize_blocks_unregularized

    regular = BlockProfiles.from_profiles([p.regularize() for p in blocks.profiles])
    out = {}
    if raw:
        out["optimized (raw curves)"] = optimize_blocks_unregularized(blocks, steps).tokens_per_step
    out["optimized (regularised curves)"] = optimize_blocks(regular, steps).tokens_per_step
    b, length = blocks.num_blocks, blocks.block_length
    if steps % b == 0:
        per = steps // b
        solve = optimize_blocks_unregularized if raw else optimize_blocks
        out["equal split, optimized counts"] = solve(blocks if raw else regular, steps,
                                                     equal_split=True).tokens_per_step
        out["equal split, cosine counts"] = np.tile(cosine_tokens(length, per), b)
        out["equal split, EDS counts"] = np.concatenate(
            [eds_tokens(h, per) for h in np.asarray(blocks.entropy, np.float64)])
        out["equal split, pyramid counts"] = np.tile(pyramid_tokens(length, per)[0], b)
        out["LLaDA stock"] = llada_stock(blocks.n, steps, length).tokens_per_step
    return {k: np.asarray(v) for k, v in out.items()}


def compare(args: argparse.Namespace) -> int:
    """`schedopt compare` on block curves, with the LLaDA stock row."""
    from ..objective import block_expected_kl

    blocks, raw = load(args.profile, args.regularize)
    if not blocks.num_blocks <= args.steps <= blocks.n:
        raise ValueError(f"--steps must be between the {blocks.num_blocks} blocks and n = "
                         f"{blocks.n}, got {args.steps}")
    rows = []
    for name, tokens in schedules_at_budget(blocks, args.steps, raw).items():
        rows.append({"method": name, "steps": int(tokens.size),
                     "expected_kl": block_expected_kl(blocks, tokens),
                     "largest_step": int(tokens.max())})
    stock = next((r["expected_kl"] for r in rows if r["method"] == "LLaDA stock"), None)
    for r in rows:
        r["vs_stock"] = None if stock is None else r["expected_kl"] - stock
    out = {"n": blocks.n, "block_length": blocks.block_length, "budget": args.steps,
           "curves": "raw" if raw else "regularised", "schedules": rows}
    if args.json:
        print(json.dumps(out))
        return 0
    print(f"n = {blocks.n} tokens in {blocks.num_blocks} blocks of {blocks.block_length}, "
          f"budget T = {args.steps}; {_note(blocks, raw)}")
    print(format_table(rows, ("method", "steps", "expected_kl", "largest_step", "vs_stock"),
                       ("method", "steps", "predicted KL (nats)", "largest step",
                        "- LLaDA stock")))
    if stock is None:
        print(f"(no LLaDA stock row: T = {args.steps} is not a multiple of the "
              f"{blocks.num_blocks} blocks)")
    print("predicted from the curves; measure on held-out pairs with `schedopt nll`")
    return 0


def frontier(args: argparse.Namespace) -> int:
    """`schedopt frontier` on block curves: the optimal block KL for every T."""
    from .._internal import io as _io
    from ..solve import allocate_steps, unregularized_frontier

    blocks, raw = load(args.profile, args.regularize)
    b = blocks.num_blocks
    top = blocks.n if args.max_steps is None else int(args.max_steps)
    if not b <= top <= blocks.n:
        raise ValueError(f"--max-steps must be between the {b} blocks and n = {blocks.n}, "
                         f"got {top}")
    fronts = np.stack([unregularized_frontier(p, blocks.block_length) for p in blocks.profiles])
    kl = [allocate_steps(fronts, t)[1] for t in range(b, top + 1)]
    result = {**_io.header(FRONTIER_FORMAT, 1), "n": blocks.n,
              "block_length": blocks.block_length, "max_steps": top, "unit": "nats",
              "curves": "raw" if raw else "regularised",
              "steps": list(range(b, top + 1)), "optimal_kl": kl}
    if args.out is not None:
        if Path(args.out).suffix.lower() != ".json":
            raise ValueError(f"block frontiers are written as JSON; name --out {args.out!r} .json")
        _io.write_json(args.out, result)
    if args.json:
        print(json.dumps(result))
        return 0
    rows = [{"steps": t, "optimal": k} for t, k in zip(result["steps"], kl, strict=True)
            if t & (t - 1) == 0 or t in (b, top)]
    print(f"n = {blocks.n} tokens in {b} blocks of {blocks.block_length}; {_note(blocks, raw)}")
    print(format_table(rows, ("steps", "optimal"), ("T", "optimal block KL (nats)")))
    return 0


def plot(args: argparse.Namespace) -> int:
    """`schedopt plot` on block curves: each block's g with each schedule's left-endpoint steps."""
    from ..check import new_figure, save_png
    from ..curve import steps_per_block
    from ..objective import block_expected_kl
    from ..schedule import Schedule

    blocks, raw = load(args.profile, args.regularize)
    schedules = [Schedule.load(path) for path in args.schedule]
    figure = new_figure((10, 4))
    ax = figure.add_subplot(1, 1, 1)
    g = np.diff(np.asarray(blocks.entropy, np.float64), axis=1)
    x = np.arange(blocks.n)
    ax.plot(x, g.ravel(), color="black", lw=1, label="block curves g (nats/token)")
    rows = []
    for path, s in zip(args.schedule, schedules, strict=True):
        tokens = np.asarray(s.tokens_per_step)
        steps_per_block(tokens, blocks.block_length)
        starts = np.concatenate([[0], np.cumsum(tokens)[:-1]])
        level = np.repeat(g.ravel()[starts], tokens)
        ax.step(x, level, where="post", lw=1, label=Path(path).stem)
        rows.append({"schedule": path, "steps": s.steps,
                     "expected_kl": block_expected_kl(blocks, tokens)})
    for edge in range(0, blocks.n + 1, blocks.block_length):
        ax.axvline(edge - 0.5, color="0.85", lw=0.5)
    ax.set_xlabel("answer position (revealed count within each block)")
    ax.set_ylabel("nats per token")
    ax.legend(fontsize=8)
    if args.title:
        ax.set_title(args.title)
    save_png(figure, args.out)
    print(json.dumps({"out": args.out, "curves": "raw" if raw else "regularised",
                      "schedules": rows}))
    return 0
