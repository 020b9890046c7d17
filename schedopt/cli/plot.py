"""`schedopt plot`: the curve, the frontier and the tokens per step of schedules, as a PNG.

    schedopt plot --profile P.json --schedule opt8.json --schedule uniform8.json --out F.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._internal import io as _io
from . import add_profile_argument, load_profile


def register(sub) -> None:
    p = sub.add_parser(
        "plot",
        help="draw a profile and schedules (curve, KL frontier, tokens per step) as a PNG",
        description="Draw one PNG with three panels: the conditional entropy curve g with "
        "each schedule's left-endpoint steps (the shaded area is its expected KL), the least "
        "expected KL at every step budget beside uniform, cosine, TC and DTC (log scale), and "
        "the tokens each schedule unmasks per step.",
    )
    add_profile_argument(p)
    p.add_argument("--schedule", action="append", required=True, metavar="S.json",
                   help="a schedule file (repeat for several)")
    p.add_argument("--out", required=True, metavar="F.png", help="picture to write")
    p.add_argument("--max-steps", type=int, default=None, metavar="K",
                   help="largest budget in the frontier panel (default: twice the longest "
                   "schedule, at least 32, at most n)")
    p.add_argument("--xscale", choices=("auto", "linear", "symlog"), default="auto",
                   help="x axis of the curve panel (default auto: symlog when g falls early)")
    p.add_argument("--title", default=None, help="a line above the panels")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..check import check_png_path, plot_report
    from ..schedule import Schedule

    check_png_path(args.out)  # before any work: a bad name fails fast
    from . import blockfiles

    if blockfiles.is_block_profiles(args.profile):
        return blockfiles.plot(args)
    profile = load_profile(args.profile, args.regularize)
    if profile.n < 2:
        raise ValueError(f"{args.profile!r} has n = {profile.n}; plot needs n >= 2 tokens")
    schedules = [Schedule.load(path, profile=profile) for path in args.schedule]
    labels = [Path(path).stem for path in args.schedule]  # e.g. "opt8": what the user named it
    if args.max_steps is not None and not 1 <= args.max_steps <= profile.n:
        raise ValueError(f"--max-steps must be between 1 and n = {profile.n}, "
                         f"got {args.max_steps}")
    areas = plot_report(profile, schedules, args.out, labels=labels, max_steps=args.max_steps,
                        xscale=args.xscale, title=args.title, quiet=args.quiet)
    rows = [{"schedule": path, "steps": s.steps, "expected_kl": float(s.expected_kl),
             "shaded_area": float(area)}
            for path, s, area in zip(args.schedule, schedules, areas, strict=True)]
    print(_io.dumps({"out": args.out, "schedules": rows}))
    return 0

