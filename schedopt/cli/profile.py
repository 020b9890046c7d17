"""`schedopt profile`: write the entropy profile of a known distribution or a trained model."""

from __future__ import annotations

import argparse
import sys

from .._internal import io as _io
from . import budget, known, learned
from .distributed import add_distributed_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="compute an entropy profile (known distribution or trained model)",
        description="Compute the entropy profile of a known distribution (--distribution) "
        "or of a trained masked diffusion model on data (--model), or from a training log of "
        "the masked cross-entropy by mask ratio (--from-loss-curve, no forward pass), and "
        "write it as JSON.",
    )
    # The curve has one source: argparse refuses two in one line (exit 2).
    source = p.add_argument_group(
        "source of the curve (one of --distribution, --model, --hf-model, --from-loss-curve)"
    ).add_mutually_exclusive_group()
    known.add_distribution_arguments(p, source=source)
    learned.add_model_arguments(p, source=source)
    group = p.add_argument_group("training log (--from-loss-curve)")
    source.add_argument(
        "--from-loss-curve", metavar="LOSS.csv", default=None,
        help="CSV with header mask_ratio,cross_entropy[,stderr] (mean CE per masked token, "
        "nats); needs --length N. Mask ratio r is revealed count n (1 - r)",
    )
    group.add_argument(
        "--shape", choices=("smooth", "convex", "monotone"), default=None,
        help="the curve's fit. --from-loss-curve: 'convex' (non-increasing and convex, "
        "default: no flat stretches for the optimizer to exploit) or 'monotone' "
        "(non-increasing only; for step-shaped curves such as codes). --max-forward-passes: "
        "'smooth' (default: a mixture of decaying exponentials), 'convex' or 'monotone'",
    )
    group = p.add_argument_group("forward-pass budget (--model, --hf-model)")
    group.add_argument(
        "--max-forward-passes", type=int, default=None, metavar="B",
        help="estimate the --model or --hf-model curve with at most B forward passes (one "
        "per sequence and revealed count): half on a coarse "
        "curve, the rest around the cuts of its optimal schedules (for --target-steps); "
        "prints how stable those schedules are",
    )
    group.add_argument(
        "--gap-degree", type=int, default=None, metavar="D",
        help="with --max-forward-passes and --kind data: estimate the data curve as the model "
        "curve plus a degree-D polynomial fit of the calibration gap (less noise; exact for "
        "a polynomial gap)",
    )
    group.add_argument(
        "--target-steps", type=int, nargs="+", default=[4, 8, 16, 32], metavar="T",
        help="the step budgets the --max-forward-passes estimate aims at (default 4 8 16 32)",
    )
    p.add_argument("--unmask-order", default=None, metavar="RULE",
                   help="with --model or --hf-model: step costs for count schedules of a "
                   "ranking rule (confidence|margin|entropy|left-to-right; theory §13)")
    p.add_argument("--out", required=True, metavar="P.json", help="profile file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed for Monte Carlo (default 0)")
    add_distributed_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from .distributed import start

    if getattr(args, "hf_model", None) and args.max_forward_passes is not None:
        from .hf import budget_conflict

        problem = budget_conflict(args)  # before --distributed joins a run it cannot use
        if problem:
            raise ValueError(problem)
    start(args)  # first: the multi-process runtime must come before any JAX computation
    with distributed.exit_on_error("schedopt profile"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .._internal.io import check_output_path
    from ..distributed import is_writer

    if is_writer():
        check_output_path(args.out)
    if getattr(args, "unmask_order", None) is not None:  # a ranking rule's step costs (§13)
        from . import rules

        return rules.run_profile(args, learned.load_model_and_data)
    if getattr(args, "hf_model", None):
        from . import hf

        return hf.run_profile(args)
    if getattr(args, "block_length", None) is not None:
        raise ValueError("--block-length in profile needs --hf-model (per-block curves on "
                         "prompt/answer pairs)")
    if args.max_forward_passes is not None and not getattr(args, "model", None):
        raise ValueError("--max-forward-passes applies to --model and --hf-model; drop it or "
                         "give a model")
    if getattr(args, "from_loss_curve", None):
        from ..curve import profile_from_loss_curve_file

        if args.length is None:
            raise ValueError("--from-loss-curve needs --length N, the sequence length to "
                             "schedule for")
        if args.shape == "smooth":
            raise ValueError("--shape smooth applies to --max-forward-passes; the loss-curve "
                             "fit is --shape convex (default) or monotone")
        profile = profile_from_loss_curve_file(args.from_loss_curve, length=args.length,
                                               shape=args.shape or "convex")
        for stretch in profile.meta["nonmonotone"]:
            lo, hi = stretch["mask_ratio"]
            print(f"schedopt profile: warning: the loss rises with revealed tokens between mask "
                  f"ratios {lo:.3g} and {hi:.3g} (p = {stretch['p_value']:.2g}); the profile "
                  "is flattened there", file=sys.stderr)
    elif getattr(args, "distribution", None):
        profile = known.profile_from_distribution(args)
    elif getattr(args, "model", None) and args.max_forward_passes is not None:
        profile = _profile_within_budget(args)
    elif getattr(args, "model", None):
        profile = learned.profile_from_model(args)
    else:
        raise ValueError("say where the curve comes from: --distribution NAME, --model NAME or "
                         "--from-loss-curve FILE.csv")
    if not is_writer():  # every process holds the whole profile; one writes it
        return 0
    profile.save(args.out)
    print(_io.dumps({"out": args.out, **profile.summary(), **budget.budget_summary(profile)}))
    return 0


def _profile_within_budget(args: argparse.Namespace):
    """--model with --max-forward-passes: the adaptive two-phase estimate."""
    import jax

    from ..estimate import estimate_within_budget
    from ..models import logits_fn

    model, data, info = learned.load_model_and_data_everywhere(args)
    result = estimate_within_budget(
        logits_fn(model), data, key=jax.random.key(args.seed),
        max_forward_passes=args.max_forward_passes, steps=args.target_steps, kind=args.kind,
        gap_degree=args.gap_degree, shape=args.shape or "smooth", batch_size=args.batch_size)
    budget.report_stability(result)
    return result.profile.replace(meta={**result.profile.meta, **info})
