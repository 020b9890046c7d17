"""`schedopt export`: write a schedule in the format another sampler reads (issue 5)."""

from __future__ import annotations

import argparse
import json


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
    p.add_argument("--format", required=True, choices=("counts", "maskgit", "alpha", "timesteps"))
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
        default=1e-4,
        help="timesteps only: the sampler's offset in (0, 0.5) (default 1e-4, MD4's)",
    )
    p.add_argument(
        "--convention",
        choices=("md4", "loglinear"),
        default="md4",
        help="timesteps only: md4 (alpha = (1-2eps) a(t) + eps) or loglinear (MDLM/SEDD)",
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
    print(json.dumps({"out": args.out, **summary}))
    return 0
