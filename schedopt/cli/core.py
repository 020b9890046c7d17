"""`schedopt optimize`, `evaluate` and `compare`: the core engine on the command line."""

from __future__ import annotations

import argparse
import math

import numpy as np

from .._internal import io as _io
from . import add_profile_argument, format_table, load_profile
from .export import add_optimize_arguments, evaluate_file, optimize_variant, random_count_rows

BITS_PER_NAT = 1 / math.log(2)


def register(sub) -> None:
    p = sub.add_parser(
        "optimize",
        help="find the best T-step schedule for a profile",
        description="Find the T-step schedule with the least expected KL and write it as JSON.",
    )
    add_profile_argument(p)
    p.add_argument("--steps", required=True, type=whole_number_arg, metavar="T", help="step budget")
    p.add_argument(
        "--method",
        choices=("optax", "exact"),
        default=None,
        help="optax: relaxed Optax descent, rounding and exact local repair (default); "
        "exact: the dynamic program (the certificate). Plain fixed-count profiles only",
    )
    p.add_argument("--out", required=True, metavar="S.json", help="schedule file to write")
    add_optimize_arguments(p)  # --sampler, --block-length, --equal-split
    p.set_defaults(func=run_optimize)

    p = sub.add_parser(
        "evaluate",
        help="expected KL of a schedule file under a profile",
        description="Print the exact expected KL of a schedule under a profile.",
    )
    add_profile_argument(p)
    p.add_argument("--schedule", required=True, metavar="S.json", help="schedule file")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_evaluate)

    p = sub.add_parser(
        "compare",
        help="optimized, exact and baseline schedules side by side",
        description="Compare the optimized and exact schedules with uniform, cosine (MaskGIT), "
        "TC and DTC (Chen-Cong-Li) at one step budget; with --target-kl, also the fewest "
        "steps each method needs to reach that KL.",
    )
    add_profile_argument(p)
    p.add_argument("--steps", required=True, type=whole_number_arg, metavar="T", help="step budget")
    p.add_argument(
        "--target-kl", type=float, metavar="EPS", help="also find the fewest steps to reach EPS"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_compare)


def whole_number_arg(text: str) -> int:
    """A flag's whole number: "16", or "16.0" / "1e3" when exact (never truncated)."""
    from .._internal.checks import is_whole

    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if not is_whole(value):
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}")
    return int(value)


def _describe(schedule) -> str:
    kl = float(schedule.expected_kl)
    return (
        f"{schedule.steps} steps, expected KL {kl:.6g} nats ({kl * BITS_PER_NAT:.6g} bits), "
        f"largest step {int(np.max(np.asarray(schedule.tokens_per_step)))} tokens"
    )


def certificate(schedule) -> str:
    """What is proven about a schedule's optimality, in a few words."""
    if schedule.certified:
        return "certified optimal (exact DP)"
    if schedule.lower_bound is not None:
        return f"not certified: at most {schedule.gap:.3g} nats above the optimum"
    return "not certified (the exact DP was not run)"


def _refuse_method(args: argparse.Namespace, rule_costs: bool) -> None:
    """--method picks the solver of a plain fixed-count schedule; elsewhere it would be ignored."""
    if args.method is None:
        return
    if rule_costs:
        why = "a rule's step costs (the surrogate DP, rescored exactly)"
    elif getattr(args, "block_length", None) is not None:
        why = "--block-length (the split over blocks is always the exact DP)"
    elif getattr(args, "sampler", "fixed") != "fixed":
        why = "--sampler binomial (random counts are always found by the Optax relaxation)"
    else:
        return
    raise ValueError(f"--method does not apply to {why}; drop --method")


def run_optimize(args: argparse.Namespace) -> int:
    from .._internal.io import check_output_path
    from ..solve import optimal_schedule, optimize

    check_output_path(args.out)
    from . import rules

    rule_costs = rules.is_rule_costs(args.profile)
    _refuse_method(args, rule_costs)
    if rule_costs:  # a ranking rule's step costs (theory §13)
        from .learned import load_model_and_data

        return rules.run_optimize(args, load_model_and_data)
    if optimize_variant(args):  # random-count grid or semi-autoregressive blocks
        return 0
    profile = load_profile(args.profile, args.regularize)
    args.method = args.method or "optax"
    if args.method == "exact":
        schedule = optimal_schedule(profile, args.steps)
    else:
        schedule = optimize(profile, args.steps)
    schedule = schedule.replace(meta={**schedule.meta, "profile": str(args.profile)})
    schedule.save(args.out)
    print(f"{args.method}: {_describe(schedule)}; {certificate(schedule)} -> {args.out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from ..schedule import Schedule
    from . import blockfiles

    if blockfiles.is_block_profiles(args.profile):
        return blockfiles.evaluate(args)
    profile = load_profile(args.profile, args.regularize)
    if evaluate_file(args, profile):  # counts / maskgit / alpha / timesteps, grids, blocks
        return 0
    schedule = Schedule.load(args.schedule, profile=profile)
    kl = float(schedule.expected_kl)
    if args.json:
        print(_io.dumps(_row(schedule)))
    else:
        print(f"{args.schedule}: {_describe(schedule)}")
    return 0 if math.isfinite(kl) else 1


def _row(schedule, name: str | None = None) -> dict:
    kl = float(schedule.expected_kl)
    return {
        "method": name or schedule.method,
        "steps": schedule.steps,
        "expected_kl": kl,
        "expected_kl_bits": kl * BITS_PER_NAT,
        "largest_step": int(np.max(np.asarray(schedule.tokens_per_step))),
    }


def run_compare(args: argparse.Namespace) -> int:
    from .. import solve
    from . import blockfiles

    if blockfiles.is_block_profiles(args.profile):
        return blockfiles.compare(args)
    profile = load_profile(args.profile, args.regularize)
    rows = [_row(s, name) for name, s in solve.schedules_at_budget(profile, args.steps).items()]
    exact = next(r["expected_kl"] for r in rows if r["method"] == "optimal")
    for r in rows:
        r["ratio_to_exact"] = r["expected_kl"] / exact if exact > 0 else _ratio_at_zero(r)
    rows += random_count_rows(profile, args.steps, exact)  # what random counts cost
    out = {"n": profile.n, "budget": args.steps, "schedules": rows}
    if args.target_kl is not None:
        out["target_kl"] = args.target_kl
        out["fewest_steps"] = solve.fewest_steps(profile, args.target_kl)
    if args.json:
        print(_io.dumps(out))
        return 0
    print(f"n = {profile.n} tokens, budget T = {args.steps} steps")
    shown = [{**r, "method": solve.LABELS.get(r["method"], r["method"])} for r in rows]
    print(format_table(shown, ("method", "steps", "expected_kl", "expected_kl_bits", "largest_step",
                        "ratio_to_exact"),
                 ("method", "steps", "KL (nats)", "KL (bits)", "largest step", "/ exact")))
    if args.target_kl is not None:
        print(f"\nfewest steps to reach expected KL <= {args.target_kl:g} nats")
        fewest = [{"method": solve.LABELS[m], "steps": s} for m, s in out["fewest_steps"].items()]
        print(format_table(fewest, ("method", "steps"), ("method", "steps")))
    return 0


def _ratio_at_zero(row: dict) -> float:
    return 1.0 if row["expected_kl"] == 0 else math.inf
