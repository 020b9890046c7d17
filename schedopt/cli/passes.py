"""`schedopt equal-passes`: decoders compared at equal forward passes (`schedopt.rules`).

    schedopt equal-passes --model digits --steps 8 16 32 --plot passes.png
    schedopt equal-passes --hf-model DIR --mask-id ID --data test.jsonl --tune tune.jsonl

Prints, for every budget T, the held-out NLL of random order with optimal counts, confidence
with LLaDA's stock and with optimized counts, and the threshold and entropy-bound rules swept
to T mean forward passes: each with its excess over confidence at one token per step and its
paired difference against confidence with stock counts, both with 95% intervals.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys

DEFAULT_STEPS = (8, 16, 32)


def register(sub) -> None:
    p = sub.add_parser(
        "equal-passes",
        help="decoders compared by exact held-out NLL at equal forward passes",
        description="Score random-order, confidence (stock and optimized counts), threshold "
        "and entropy-bound decoding on held-out data at the same mean number of forward "
        "passes per sequence (theory §13: each NLL is that sampler's exact cross-entropy). "
        "Counts are chosen on --tune data; the adaptive rules' settings are swept until their "
        "mean passes on the scored data match each budget.",
    )
    from .learned import add_model_arguments

    add_model_arguments(p, required=False, kind=False)
    p.add_argument("--tune", default=None, metavar="valid|PAIRS.jsonl",
                   help="data the counts are chosen on, disjoint from --data: with --model a "
                   "split (default valid), with --hf-model a JSONL file of pairs (required)")
    p.add_argument("--tune-sequences", type=int, default=None, metavar="M",
                   help="use the first M tune sequences (default: all)")
    p.add_argument("--steps", type=int, nargs="+", default=list(DEFAULT_STEPS), metavar="T",
                   help="budgets: mean forward passes per sequence (default 8 16 32)")
    p.add_argument("--orders", default="confidence", metavar="RULE[,RULE...]",
                   help="ranking rules given stock and optimized counts, confidence first "
                   "(default confidence; also margin, entropy, left-to-right)")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed for the random-order curve and orders (default 0)")
    p.add_argument("--plot", default=None, metavar="OUT.png",
                   help="also draw excess NLL against mean forward passes")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax

    from .._internal.checks import check_steps
    from ..rules import equal_passes

    if args.plot is not None:
        from ..check import check_png_path

        check_png_path(args.plot)
    orders = [o.strip() for o in args.orders.split(",") if o.strip()]
    if args.tune_sequences is not None and args.tune_sequences < 2:
        raise ValueError(f"--tune-sequences must be at least 2, got {args.tune_sequences}")
    model, data, tune, info = _load(args)
    for steps in args.steps:
        check_steps(steps, data["answers"].shape[1], name="--steps")
    result = equal_passes(model, data["answers"], tune["answers"], args.steps,
                          key=jax.random.key(args.seed), prompts=data["prompts"],
                          tune_prompts=tune["prompts"], block_length=args.block_length,
                          orders=orders, batch_size=args.batch_size,
                          quiet=args.quiet)
    if args.plot is not None:
        from ..check import plot_equal_passes, save_png

        save_png(plot_equal_passes(result).figure, args.plot)
    if args.json:
        print(json.dumps({**info, **result.to_json()}, indent=1, default=float))
    else:
        print(_table(info, result))
    for budget in sorted({r.budget for r in result.rows}):
        best = result.best(budget)
        if best.vs_stock is not None and best.vs_stock_interval[1] >= 0:
            print(f"schedopt equal-passes: note: at T = {budget} the best decoder, "
                  f"{best.decoder}, is not significantly better than confidence with LLaDA's "
                  f"stock counts (difference {best.vs_stock:+.3f} nats, 95% interval "
                  f"[{best.vs_stock_interval[0]:.3f}, {best.vs_stock_interval[1]:.3f}])",
                  file=sys.stderr)
    return 0


def _load(args: argparse.Namespace):
    """(model, data, tune, info); data and tune are {"answers": int[M, n], "prompts": ...}."""
    if args.hf_model is not None:
        from . import hf

        if args.tune is None:
            raise ValueError("--hf-model needs --tune tune.jsonl, pairs to choose the counts on "
                             "(disjoint from --data)")
        if not args.data:
            raise ValueError("--hf-model needs --data test.jsonl, the held-out pairs to score")
        scorer, tokenizer = hf.load_scorer(args)
        pairs, _ = hf.read_data(args, scorer, tokenizer, args.data, args.sequences)
        tune, _ = hf.read_data(args, scorer, tokenizer, args.tune, args.tune_sequences)
        info = {"model": str(args.hf_model), "data": str(args.data), "pairs": len(pairs),
                "tune": str(args.tune), "tune_pairs": len(tune)}
        return (scorer, {"answers": pairs.answers, "prompts": pairs.prompts},
                {"answers": tune.answers, "prompts": tune.prompts}, info)
    if args.model is None:
        raise ValueError("say which model to score with: --model digits|PATH or --hf-model DIR")
    from ..models import logits_fn
    from .learned import load_model_and_data

    tune_args = copy.copy(args)
    tune_args.split, tune_args.sequences = args.tune or "valid", args.tune_sequences
    if tune_args.split not in ("test", "valid", "train"):
        raise ValueError(f"--tune with --model is a split (test, valid, train), got "
                         f"{args.tune!r}")
    if tune_args.split == args.split:
        raise ValueError(f"--tune {tune_args.split} is the split scored (--split "
                         f"{args.split}); choose counts on another split")
    model, data, info = load_model_and_data(args)
    _, tune, _ = load_model_and_data(tune_args)
    info = {**info, "tune": tune_args.split, "tune_sequences": int(tune.shape[0])}
    return (logits_fn(model), {"answers": data, "prompts": None},
            {"answers": tune, "prompts": None}, info)


def _table(info: dict, result) -> str:
    blocks = "" if result.block_length is None else f", blocks of {result.block_length}"
    lines = [f"# {info['model']}: {result.sequences} held-out sequences of n = {result.n}"
             f"{blocks}; counts chosen on {result.tune_sequences} tune sequences",
             f"# reference: confidence, one token per step ({result.n} passes): "
             f"{result.reference_nll:.3f} nats per sequence",
             f"{'T':>3}  {'decoder':<30} {'setting':>9} {'passes':>13} {'NLL':>10} "
             f"{'excess [95% CI]':>24} {'vs stock [95% CI]':>26}"]
    for r in result.rows:
        setting = "-" if r.setting is None else f"{r.setting:.4g}"
        passes = f"{r.passes_mean:.2f}" + (f" ± {r.passes_std:.2f}" if r.passes_std else "")
        excess = f"{r.excess:.2f} [{r.excess_interval[0]:.2f}, {r.excess_interval[1]:.2f}]"
        vs = ("reference" if r.decoder == "confidence, stock counts" else "-"
              if r.vs_stock is None else
              f"{r.vs_stock:+.2f} [{r.vs_stock_interval[0]:+.2f}, "
              f"{r.vs_stock_interval[1]:+.2f}]")
        lines.append(f"{r.budget:>3}  {r.decoder:<30} {setting:>9} {passes:>13} "
                     f"{r.nll:>10.3f} {excess:>24} {vs:>26}")
    return "\n".join(lines)
