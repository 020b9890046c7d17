"""`schedopt export`: write a schedule in the format another sampler reads."""

from __future__ import annotations

import argparse

from .._internal import io as _io
from ..schedule import CONVENTIONS, MD4_EPS


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="write a schedule as counts, MaskGIT ratios, an alpha grid or timesteps",
        description="Write a schedule (or a random-count time grid) in the format another "
        "sampler reads: counts (LLaDA, Fast-dLLM, diffusers BlockRefinementScheduler), "
        "maskgit (MaskGIT, aMUSEd), alpha (MD4, Dream, dllm) or timesteps (MD4, MDLM, SEDD). "
        "The container follows the output's extension: .json, .csv or .npz.",
    )
    p.add_argument("--schedule", required=True, metavar="S.json", help="schedule or time grid")
    p.add_argument(
        "--format", required=True, choices=("counts", "maskgit", "alpha", "timesteps"),
        help="counts: tokens per step (LLaDA, Fast-dLLM, diffusers, dllm); maskgit: mask "
        "ratios (MaskGIT, aMUSEd); alpha: the alpha grid (Dream, dllm, MDLM); timesteps: "
        "times for an alpha schedule (MD4, MDLM, SEDD); docs/export.md",
    )
    p.add_argument(
        "--block-length",
        type=int,
        metavar="L",
        help="counts only: a [num_blocks, steps] matrix for blocks of L tokens",
    )
    p.add_argument(
        "--alpha-schedule",
        default="linear",
        metavar="linear|cosine|polyK",
        help="timesteps only: the sampler's masking family a(t) (default linear)",
    )
    p.add_argument(
        "--eps",
        type=float,
        default=MD4_EPS,
        help=f"timesteps only: MD4's offset in (0, 0.5) (default {MD4_EPS:g}); log-linear "
        "(MDLM/SEDD) times do not depend on it",
    )
    p.add_argument(
        "--convention",
        choices=CONVENTIONS,
        default="md4",
        help="timesteps only: md4 (alpha = (1-2eps) a(t) + eps) or loglinear (MDLM/SEDD) "
        "(default md4)",
    )
    p.add_argument("--out", required=True, metavar="FILE", help=".json, .csv or .npz to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import export

    export.check_output_path_extension(args.out)
    schedule = export.load_schedule(args.schedule)
    data = export.export_schedule(
        schedule,
        args.format,
        block_length=args.block_length,
        alpha_schedule=args.alpha_schedule,
        eps=args.eps,
        convention=args.convention,
    )
    export.write_export(args.out, data)
    summary = {k: data[k] for k in ("kind", "n", "steps", "sampler") if k in data}
    print(_io.dumps({"out": args.out, **summary}))
    return 0


# --------------------------------------------------------------------------- hooks for core
def add_optimize_arguments(parser: argparse.ArgumentParser) -> None:
    """`schedopt optimize` options for random-count grids and semi-autoregressive blocks."""
    parser.add_argument(
        "--sampler",
        choices=("fixed", "binomial"),
        default="fixed",
        help="fixed: integer tokens per step (default); binomial: the best alpha grid for "
        "random-count samplers (MD4, MDLM, SEDD, Dream origin), written as a time grid",
    )
    parser.add_argument(
        "--block-length",
        type=int,
        metavar="L",
        help="semi-autoregressive blocks of L tokens (LLaDA block_length): the optimal split "
        "of the steps across blocks; --profile may be a schedopt.block_profiles file",
    )
    parser.add_argument(
        "--equal-split",
        action="store_true",
        help="with --block-length: T / num_blocks steps in every block, as LLaDA samples",
    )


def optimize_variant(args: argparse.Namespace) -> bool:
    """Run `schedopt optimize --sampler binomial` or `--block-length L`; False otherwise."""
    from .._internal import io as _io
    from ..curve import load_block_profiles
    from ..solve import optimize_binomial, optimize_blocks
    from . import load_profile

    block_length = getattr(args, "block_length", None)
    if getattr(args, "equal_split", False) and block_length is None:
        raise ValueError("--equal-split needs --block-length L")
    if getattr(args, "sampler", "fixed") == "fixed" and block_length is None:
        return False
    if block_length is not None and args.sampler == "binomial":
        raise ValueError("--block-length works with fixed counts; drop --sampler binomial")
    _io.check_output_path(args.out)
    if block_length is not None:
        from . import blockfiles

        if blockfiles.is_block_profiles(args.profile):  # raw curves: exact DP over all blocks
            blockfiles.optimize(args, args.profile)
            return True
        blocks = load_block_profiles(args.profile, block_length, args.regularize)
        result = optimize_blocks(blocks, args.steps, equal_split=args.equal_split)
        split = result.meta["steps_per_block"]
        what = f"{len(split)} blocks of {block_length} tokens, steps per block {split}"
    else:
        result = optimize_binomial(load_profile(args.profile, args.regularize), args.steps)
        what = f"random counts, alpha {[round(float(a), 4) for a in result.alpha]}"
    result = result.replace(meta={**result.meta, "profile": str(args.profile)})
    result.save(args.out)
    kl = float(result.expected_kl)
    print(f"{result.method}: {result.steps} steps, expected KL {kl:.6g} nats, {what} -> {args.out}")
    return True


def evaluate_file(args: argparse.Namespace, profile) -> bool:
    """`schedopt evaluate` for counts / maskgit / alpha / timesteps files, time grids and block
    schedules; False for a plain schedopt.schedule file (core scores it)."""
    from .. import export
    from .._internal import io as _io

    obj = _io.read_json(args.schedule, "schedule") if args.schedule.endswith(".json") else {}
    plain = isinstance(obj, dict) and obj.get("format") == "schedopt.schedule"
    meta = obj.get("meta") if plain else None
    if plain and not (isinstance(meta, dict) and "block_length" in meta):
        # Schedule.load reads it (and refuses a meta that is not an object).
        return False
    scores = export.score_imported(profile, export.read_schedule_file(args.schedule, profile.n))
    if args.json:
        print(_io.dumps(scores))
        return True
    how = {"fixed": "fixed counts", "binomial": "random counts"}[scores["sampler"]]
    line = f"{args.schedule}: {scores['kind']}, {scores['steps']} steps, expected KL "
    line += f"{scores['expected_kl']:.6g} nats with {how}"
    if "block_length" in scores:
        line += f" in blocks of {scores['block_length']} (per-block curves sliced from the profile)"
    if len(scores.get("expected_tokens_per_step", [])) > scores["steps"]:
        line += " (MD4's final decode counted as one more step)"
    if "expected_kl_fixed" in scores:
        line += f"; {scores['expected_kl_fixed']:.6g} with fixed counts round(n alpha)"
    if "expected_kl_random" in scores:
        line += f"; {scores['expected_kl_random']:.6g} if run with random counts (MD4-style)"
    print(line)
    return True


def random_count_rows(profile, steps: int, exact_kl: float) -> list[dict]:
    """`schedopt compare` rows: the best random-count grid, Jump Your Steps' search (when T is
    a power of two) and MD4's cosine grid."""
    import math

    import numpy as np

    from ..objective import expected_kl_binomial
    from ..schedule import timesteps_to_alpha
    from ..solve import jys_grid, optimize_binomial

    # MD4's cosine schedule at uniform times: the revealed fractions it realises.
    cosine = timesteps_to_alpha(np.linspace(1.0, 0.0, steps + 1), "cosine", MD4_EPS, "md4")
    grids = [("random counts, optimized grid", optimize_binomial(profile, steps).expected_kl)]
    if steps & (steps - 1) == 0:
        grids.append(("random counts, JYS search", jys_grid(profile, steps).expected_kl))
    grids.append(("random counts, MD4 cosine grid", expected_kl_binomial(profile, cosine)))
    rows = []
    for name, kl in grids:
        kl = float(kl)
        ratio = kl / exact_kl if exact_kl > 0 else (1.0 if kl == 0 else math.inf)
        rows.append(
            {
                "method": name,
                "steps": steps,
                "expected_kl": kl,
                "expected_kl_bits": kl / math.log(2),
                "largest_step": None,
                "ratio_to_exact": ratio,
            }
        )
    return rows
