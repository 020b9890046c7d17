"""CLI for trained models: `profile --model` and `nll`.

    schedopt profile --model digits --data digits --out digits.json
    schedopt nll --model digits --schedule opt8.json --schedule uniform8.json
"""

from __future__ import annotations

import argparse

from .._internal import io as _io
from .distributed import add_distributed_arguments

DATASETS = ("digits", "text", "hmm")


def add_model_arguments(parser: argparse.ArgumentParser, *, required: bool = False,
                        kind: bool = True, source=None) -> None:
    """--model, --data, --kind (when `kind`), --sequences, --split, --batch-size, and the
    Hugging Face options; --model and --hf-model go into `source` (an exclusive group of
    curve sources) when given."""
    group = parser.add_argument_group("trained model (--model)")
    (source or group).add_argument(
        "--model", metavar="digits|PATH", **({} if source else {"required": required}),
        help="a trained masked diffusion model: 'digits' (shipped) or a checkpoint .json",
    )
    group.add_argument(
        "--data", default=None, metavar="digits|text|hmm|PAIRS.jsonl",
        help="held-out data to measure on: with --model a shipped data set (default: the one "
        "it was trained on); with --hf-model a JSONL file of prompt/answer pairs",
    )
    if kind:
        group.add_argument(
            "--kind", choices=("data", "model"), default="data",
            help="'data': held-out cross-entropy curve (default; optimize schedules on it); "
            "'model': the model's predictive-entropy curve",
        )
    group.add_argument(
        "--sequences", type=int, default=None, metavar="M",
        help="use the first M held-out sequences (default: the whole held-out split)",
    )
    group.add_argument(
        "--split", choices=("test", "valid", "train"), default="test",
        help="which split to measure on (default: test, the held-out split)",
    )
    from . import hf

    group.add_argument("--batch-size", type=int, default=hf.DEFAULT_BATCH, metavar="B",
                       help="rows per forward pass (default 256; with --hf-model: as many as "
                       "fit in half the free memory, at most 256)")
    hf.add_hf_arguments(parser, source=source)


def load_model_and_data(args: argparse.Namespace):
    """(model, data int32[M, n], description dict) from --model, --data, --split, --sequences."""
    from ..models import load_checkpoint
    from ..sources import check_sequences, load_dataset

    if args.data is not None and args.data not in DATASETS:
        raise ValueError(f"--data with --model must be one of {', '.join(DATASETS)}, got "
                         f"{args.data!r}; JSONL pairs need --hf-model")
    model, record = load_checkpoint(args.model)
    name = args.data or record.get("data")
    if name is None:
        raise ValueError(
            f"checkpoint {args.model!r} does not say what it was trained on; pass --data"
        )
    kwargs = {} if name == "digits" else {"length": model.config.length}
    if name == "hmm":
        kwargs["train"] = 1  # only held-out sequences are needed here
    dataset = load_dataset(name, **kwargs)
    data = dataset.split(args.split)
    if args.sequences is not None:
        if args.sequences < 2:
            raise ValueError(
                f"--sequences must be at least 2 (for an interval), got {args.sequences}"
            )
        data = data[: args.sequences]
    data = check_sequences(data, length=model.config.length,
                           vocab_size=model.config.vocab_size, what=f"--data {name}")
    info = {"model": str(args.model), "data": name, "split": args.split,
            "sequences": int(data.shape[0]), "heldout_masked_ce": record.get("test_ce")}
    return model, data, info


def load_model_and_data_everywhere(args: argparse.Namespace):
    """`load_model_and_data`, checked to give the same model, data and options in every
    process of a multi-process run (one process is an ordinary load)."""
    from ..distributed import same_everywhere

    return same_everywhere(lambda: load_model_and_data(args),
                           lambda loaded: _fingerprint(args, *loaded),
                           "the model, its data and the options")


def _fingerprint(args: argparse.Namespace, model, data, info) -> bytes:
    import json

    import jax
    import numpy as np
    from flax import nnx

    local = {"process_id", "coordinator", "num_processes", "distributed", "init_timeout",
             "func", "quiet"}
    options = {k: v for k, v in sorted(vars(args).items()) if k not in local}
    weights = b"".join(np.asarray(leaf).tobytes()
                       for leaf in jax.tree_util.tree_leaves(nnx.state(model)))
    return json.dumps(options, default=str).encode() + np.asarray(data).tobytes() + weights


def profile_from_model(args: argparse.Namespace):
    """The --kind curve of --model on held-out --data, regularised, with stderr (profile cmd)."""
    import jax

    from ..estimate import estimate_profile
    from ..models import logits_fn

    model, data, info = load_model_and_data_everywhere(args)
    profile = estimate_profile(
        logits_fn(model), data, key=jax.random.key(args.seed), kind=args.kind,
        batch_size=args.batch_size, quiet=args.quiet,
    )
    return profile.replace(meta={**profile.meta, **info})


def register(sub) -> None:
    p = sub.add_parser(
        "nll",
        help="held-out T-step NLL of schedules under a trained model",
        description="Score schedules on held-out data with a trained model's own conditionals: "
        "the T-step NLL with a 95% interval, its excess over one token per step (the "
        "schedule's KL for this model and data) and, beside it, the excess the data curve "
        "predicts (theory §9 and 11). The two should agree within their intervals.",
    )
    add_model_arguments(p, required=False, kind=False)
    p.add_argument("--schedule", action="append", default=None, metavar="S.json",
                   help="a schedule file (repeat for several)")
    p.add_argument("--seed", type=int, default=0, help="random seed for the orders (default 0)")
    p.add_argument("--orders", type=int, default=1, metavar="R",
                   help="random orders per sequence for the NLLs (default 1; more = tighter)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    from . import rules

    rules.add_rule_arguments(p)
    add_distributed_arguments(p)
    p.set_defaults(func=run_nll)


def run_nll(args: argparse.Namespace) -> int:
    from .. import distributed
    from .distributed import start

    start(args)  # first: the multi-process runtime must come before any JAX computation
    with distributed.exit_on_error("schedopt nll"):
        return _run_nll(args)


def _run_nll(args: argparse.Namespace) -> int:
    import jax

    from . import rules

    if rules.wants_rule(args):  # state-dependent unmasking: exact by teacher forcing (§13)
        return rules.run(args, load_model_and_data)
    if getattr(args, "per_sequence", None) is not None:
        raise ValueError("--per-sequence is written for --unmask-order, --threshold or "
                         "--entropy-bound; add one of them")
    if not args.schedule:
        raise ValueError("nll needs --schedule S.json (or --threshold / --entropy-bound)")

    if args.hf_model is not None:
        if args.model is not None:
            raise ValueError("give either --model or --hf-model, not both")
        from . import hf

        return hf.run_nll(args)
    if args.model is None:
        raise ValueError("say which model to score with: --model digits|PATH or --hf-model DIR")

    from ..check import predicted_excess, schedules_nll
    from ..distributed import is_writer
    from ..estimate import estimate_curves, schedule_grid
    from ..models import logits_fn
    from ..schedule import Schedule

    schedules = [Schedule.load(path) for path in args.schedule]
    model, data, info = load_model_and_data_everywhere(args)
    n = data.shape[1]
    for path, s in zip(args.schedule, schedules, strict=True):
        if s.n != n:
            raise ValueError(
                f"schedule {path!r} is for n = {s.n} tokens but the data has n = {n}; "
                "use schedules made for this model's sequence length"
            )
    fn = logits_fn(model)
    k_nll, k_curve = jax.random.split(jax.random.key(args.seed))
    results = schedules_nll(fn, data, schedules, key=k_nll, orders=args.orders, quiet=args.quiet)
    # The curve at every count (n <= FULL_GRID_MAX) or at least at each schedule's cuts.
    grid = schedule_grid(n, *(s.tokens_per_step for s in schedules))
    estimate = estimate_curves(fn, data, key=k_curve, grid=grid,
                               batch_size=args.batch_size, quiet=args.quiet)
    rows = []
    for path, s, r in zip(args.schedule, schedules, results, strict=True):
        predicted, predicted_se = predicted_excess(estimate, s)
        rows.append({"schedule": path, **r.to_json(), "predicted_excess": predicted,
                     "predicted_excess_stderr": predicted_se})
    if not is_writer():  # every process holds the same results; one prints them
        return 0
    if args.json:
        print(_io.dumps({**info, "results": rows}, indent=1))
        return 0
    print(_table(info, rows, n))
    return 0


def _table(info: dict, rows: list[dict], n: int) -> str:
    ce = info.get("heldout_masked_ce")
    head = (f"model {info['model']}"
            + (f" (held-out masked CE {ce:.3f} nats/token)" if ce is not None else "")
            + f"; data {info['data']} {info['split']} split, {info['sequences']} sequences")
    first = rows[0]
    lines = [
        head,
        f"one token per step (T = {n}): NLL {first['one_by_one']:.2f} "
        f"+- {1.96 * first['one_by_one_stderr']:.2f} nats",
        f"{'schedule':<28} {'T':>4}  {'NLL [95% CI]':<24} {'excess [95% CI]':<24} "
        "predicted excess (data curve) +- 95%",
    ]
    for r in rows:
        lo, hi = r["interval"]
        elo, ehi = r["excess_interval"]
        lines.append(
            f"{r['schedule'][-28:]:<28} {r['steps']:>4}  "
            f"{r['nll']:8.2f} [{lo:.2f}, {hi:.2f}]".ljust(59)
            + f" {r['excess']:7.3f} [{elo:.3f}, {ehi:.3f}]".ljust(25)
            + f" {r['predicted_excess']:7.3f} +- {1.96 * r['predicted_excess_stderr']:.3f}"
        )
    lines.append("nats per sequence; excess = NLL - one-token-per-step NLL (same orders); "
                 "the prediction is expected_kl of the held-out cross-entropy curve")
    return "\n".join(lines)
