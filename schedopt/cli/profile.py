"""`schedopt profile`: write the entropy profile of a known distribution or a trained model."""

from __future__ import annotations

import argparse

from .. import _io
from . import known, learned
from .distributed import add_distributed_arguments


def register(sub) -> None:
    p = sub.add_parser(
        "profile",
        help="compute an entropy profile (known distribution or trained model)",
        description="Compute the entropy profile of a known distribution (--distribution) "
        "or of a trained masked diffusion model on data (--model), and write it as JSON.",
    )
    known.add_distribution_arguments(p)
    learned.add_model_arguments(p)
    p.add_argument("--out", required=True, metavar="P.json", help="profile file to write")
    p.add_argument("--seed", type=int, default=0, help="random seed for Monte Carlo (default 0)")
    add_distributed_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import distributed
    from .distributed import start

    start(args)  # first: the multi-process runtime must come before any JAX computation
    with distributed.exit_on_error("schedopt profile"):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from .._io import check_output_path
    from ..distributed import is_writer

    if is_writer():
        check_output_path(args.out)
    if getattr(args, "distribution", None) and getattr(args, "model", None):
        raise ValueError("give either --distribution or --model, not both")
    if getattr(args, "distribution", None):
        profile = known.profile_from_distribution(args)
    elif getattr(args, "model", None):
        profile = learned.profile_from_model(args)
    else:
        raise ValueError("say where the curve comes from: --distribution NAME or --model NAME")
    if is_writer():  # every process holds the whole profile; one writes it
        profile.save(args.out)
        print(_io.dumps({"out": args.out, **profile.summary()}))
    return 0
