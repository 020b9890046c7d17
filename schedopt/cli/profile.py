"""`schedopt profile`: write the entropy profile of a known distribution or a trained model."""

from __future__ import annotations

import argparse
import json
import sys

from . import known, learned


def register(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="compute an entropy profile (known distribution or trained model)",
        description="Compute the entropy profile of a known distribution (--distribution) "
        "or of a trained masked diffusion model on data (--model), or from a training log of "
        "the masked cross-entropy by mask ratio (--from-loss-curve, no forward pass), and "
        "write it as JSON.",
    )
    known.add_distribution_arguments(p)
    learned.add_model_arguments(p)
    group = p.add_argument_group("training log (--from-loss-curve)")
    group.add_argument(
        "--from-loss-curve", metavar="LOSS.csv", default=None,
        help="CSV with header mask_ratio,cross_entropy[,stderr] (mean CE per masked token, "
        "nats); needs --length N. Mask ratio r is revealed count n (1 - r)",
    )
    p.add_argument("--out", required=True, metavar="P.json", help="profile file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed for Monte Carlo (default 0)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .._io import check_output_path

    check_output_path(args.out)
    sources = [f"--{name.replace('_', '-')}" for name in
               ("distribution", "model", "from_loss_curve") if getattr(args, name, None)]
    if len(sources) > 1:
        raise ValueError(f"give one source of the curve, not {' and '.join(sources)}")
    if getattr(args, "from_loss_curve", None):
        from ..losscurve import profile_from_loss_curve_file

        if args.length is None:
            raise ValueError("--from-loss-curve needs --length N, the sequence length to "
                             "schedule for")
        profile = profile_from_loss_curve_file(args.from_loss_curve, length=args.length)
        for stretch in profile.meta["nonmonotone"]:
            lo, hi = stretch["mask_ratio"]
            print(f"schedopt profile: warning: the loss rises with revealed tokens between mask "
                  f"ratios {lo:.3g} and {hi:.3g} (p = {stretch['p_value']:.2g}); the profile "
                  "is flattened there", file=sys.stderr)
    elif getattr(args, "distribution", None):
        profile = known.profile_from_distribution(args)
    elif getattr(args, "model", None):
        profile = learned.profile_from_model(args)
    else:
        raise ValueError("say where the curve comes from: --distribution NAME, --model NAME or "
                         "--from-loss-curve FILE.csv")
    profile.save(args.out)
    print(json.dumps({"out": args.out, **profile.summary()}))
    return 0
