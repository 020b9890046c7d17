"""`schedopt nll --unmask-order ... | --threshold TAU | --entropy-bound GAMMA` (theory §13).

    schedopt nll --model digits --schedule S.json --unmask-order confidence
    schedopt nll --model digits --threshold 0.9 --per-sequence seq.csv

Scores the sampler that ranks positions by a state-dependent rule, exactly, by teacher forcing
(`schedopt.rules.rule_nll`): the NLL with its interval, the excess over one token per step under
the same ranking, the forward passes per sequence, and the paired difference against LLaDA's
stock counts under the same ranking.
"""

from __future__ import annotations

import argparse
import io
import json
import sys

from .._internal import io as _io


def add_rule_arguments(parser: argparse.ArgumentParser, *, per_sequence: bool = True) -> None:
    """--unmask-order, --threshold, --entropy-bound, and (for nll) --per-sequence."""
    g = parser.add_argument_group("state-dependent unmasking (theory §13)")
    g.add_argument("--unmask-order", metavar="RULE", default=None,
                   help="rank positions by confidence|margin|entropy|left-to-right|random and "
                   "score exactly by teacher forcing (with --schedule)")
    g.add_argument("--threshold", type=float, default=None, metavar="TAU",
                   help="Fast-dLLM: reveal every position with confidence > TAU (0 < TAU <= 1); "
                   "takes no --schedule")
    g.add_argument("--entropy-bound", type=float, default=None, metavar="GAMMA",
                   help="EB-sampler: reveal while sum - max entropy <= GAMMA nats (GAMMA >= 0); "
                   "takes no --schedule")
    if per_sequence:
        g.add_argument("--per-sequence", default=None, metavar="OUT.csv",
                       help="write one row per data line (nll, forward_passes), in data order")


def wants_rule(args: argparse.Namespace) -> bool:
    """Whether `nll` was asked for a state-dependent rule."""
    return any(getattr(args, k, None) is not None
               for k in ("unmask_order", "threshold", "entropy_bound"))


def rule_of(args: argparse.Namespace):
    """The rule the --unmask-order / --threshold / --entropy-bound options name."""
    from ..rules import EntropyBoundRule, OrderRule, ThresholdRule

    given = [k for k in ("unmask_order", "threshold", "entropy_bound")
             if getattr(args, k) is not None]
    if len(given) > 1:
        raise ValueError("give one of --unmask-order, --threshold, --entropy-bound, not several")
    block = args.block_length
    if args.threshold is not None or args.entropy_bound is not None:
        if args.schedule:
            raise ValueError("--threshold and --entropy-bound choose their own counts; drop "
                             "--schedule")
        if args.threshold is not None:
            return ThresholdRule(args.threshold, block)
        return EntropyBoundRule(args.entropy_bound, block)
    if not args.schedule:
        raise ValueError("--unmask-order needs a count schedule; pass --schedule S.json")
    return OrderRule(args.unmask_order, block)


def _load(args: argparse.Namespace, load_jax):
    """(model or scorer, answers int[M, n], prompts or None, info dict).

    `load_jax` is `cli.learned.load_model_and_data`, passed in by the caller (no import cycle).
    """
    if args.hf_model is not None:
        from . import hf

        scorer, pairs, info = hf.load(args)
        return scorer, pairs.answers, pairs.prompts, info
    if args.model is None:
        raise ValueError("say which model to score with: --model digits|PATH or --hf-model DIR")
    from ..models import logits_fn

    model, data, info = load_jax(args)
    return logits_fn(model), data, None, info


def run(args: argparse.Namespace, load_jax) -> int:
    """The `nll` command for a state-dependent rule; prints a table or JSON."""
    import jax

    from ..check import llada_stock, paired_difference
    from ..rules import one_by_one_rule, rule_nll
    from ..schedule import Schedule

    rule = rule_of(args)
    if args.per_sequence is not None:
        _io.check_output_path(args.per_sequence)
    schedules = [Schedule.load(p) for p in (args.schedule or [])]
    model, answers, prompts, info = _load(args, load_jax)
    n = answers.shape[1]
    for path, s in zip(args.schedule or [], schedules, strict=True):
        if s.n != n:
            raise ValueError(f"schedule {path!r} is for n = {s.n} tokens but the answers have "
                             f"n = {n}; use a schedule for answers of length {n}")
    key = jax.random.key(args.seed)
    kwargs = {"key": key, "prompts": prompts, "batch_size": args.batch_size}
    runs = ([(p, rule, s.tokens_per_step) for p, s in zip(args.schedule, schedules, strict=True)]
            if schedules else [(rule.name, rule, None)])
    rows, first = [], None
    for name, r, counts in runs:
        result = rule_nll(model, answers, r, counts, **kwargs)
        first = first or result
        t = int(len(counts)) if counts is not None else max(1, round(result.passes_mean))
        row = {"schedule": name, **result.to_json()}
        stock = _stock(n, t, rule.block_length, llada_stock)
        same = (counts is not None and stock is not None
                and list(stock.tokens_per_step) == list(counts))
        if stock is not None and not same:  # (a schedule equal to stock has nothing to pair)
            ref = rule_nll(model, answers, one_by_one_rule(r) if counts is None else r,
                           stock.tokens_per_step, **kwargs)
            mean, lo, hi = paired_difference(result.per_sequence, ref.per_sequence)
            row["vs_stock"] = {"steps": t, "stock_nll": ref.nll, "difference": mean,
                               "interval": [lo, hi]}
        rows.append((row, result))
    info = {**info, "rule": rows[0][0]["rule"], "block_length": rule.block_length}
    if args.per_sequence is not None:
        _write_per_sequence(args.per_sequence, rows[0][1])
    if args.json:
        print(json.dumps({**info, "results": [r for r, _ in rows]}, indent=1, default=float))
    else:
        print(_table(info, [r for r, _ in rows], n))
    for row, _ in rows:
        d = row.get("vs_stock")
        if d is not None and d["interval"][0] <= 0 <= d["interval"][1]:
            print(f"schedopt nll: note: {row['schedule']} is not significantly different from "
                  f"LLaDA's stock counts at T = {d['steps']} under the same ranking "
                  f"(difference {d['difference']:+.3f} nats, 95% interval "
                  f"[{d['interval'][0]:.3f}, {d['interval'][1]:.3f}])", file=sys.stderr)
    return 0


def _stock(n: int, steps: int, block_length: int | None, llada_stock):
    """LLaDA's stock counts at T = steps (None when LLaDA cannot run that T)."""
    try:
        return llada_stock(n, steps, block_length)
    except ValueError:
        return None


def _write_per_sequence(path: str, result) -> None:
    buf = io.StringIO()
    buf.write("index,nll,forward_passes,one_by_one_nll\n")
    for i, (v, p, r) in enumerate(zip(result.per_sequence, result.per_sequence_passes,
                                      result.reference, strict=True)):
        buf.write(f"{i},{v:.9g},{int(p)},{r:.9g}\n")
    _io.atomic_write(path, buf.getvalue())


def _table(info: dict, rows: list[dict], n: int) -> str:
    rule = info["rule"]
    blocks = info.get("block_length")
    head = (f"model {info.get('model')}; rule {rule['name']}"
            + "".join(f" {k}={v}" for k, v in rule.items() if k not in ("name", "block_length"))
            + f"; {rows[0]['sequences']} held-out sequences of {n} tokens"
            + (f" in blocks of {blocks}" if blocks else ""))
    lines = [head,
             f"one token per step under the same ranking: NLL {rows[0]['one_by_one']:.2f} nats",
             f"{'schedule':<24} {'passes':>12}  {'NLL [95% CI]':<24} {'excess [95% CI]':<24} "
             "vs LLaDA stock counts [95% CI]"]
    for r in rows:
        lo, hi = r["interval"]
        elo, ehi = r["excess_interval"]
        d = r.get("vs_stock")
        vs = "-" if d is None else (f"T={d['steps']}: {d['difference']:+.3f} "
                                    f"[{d['interval'][0]:.3f}, {d['interval'][1]:.3f}]")
        passes = f"{r['passes_mean']:.2f}" + (f" sd {r['passes_std']:.2f}"
                                              if r["passes_std"] > 0 else "")
        lines.append(f"{r['schedule'][-24:]:<24} {passes:>12}  "
                     + f"{r['nll']:8.2f} [{lo:.2f}, {hi:.2f}]".ljust(25)
                     + f"{r['excess']:7.3f} [{elo:.3f}, {ehi:.3f}]".ljust(25) + vs)
    lines.append("nats per sequence (the answer given its prompt), exact by teacher forcing "
                 "(theory §13); passes = forward passes per sequence; vs stock: paired "
                 "difference against LLaDA's stock counts under the same ranking (negative: "
                 "better)")
    return "\n".join(lines)


RULE_COSTS = "schedopt.rule_costs"
_SOURCE = ("model", "data", "split", "sequences", "batch_size", "hf_model", "mask_id",
           "trust_remote_code", "answer_length", "pad_id", "prompt_field", "answer_field",
           "chat_template", "device", "dtype", "block_length")


def run_profile(args: argparse.Namespace, load_jax) -> int:
    """`profile --unmask-order RULE`: surrogate step costs along the one-by-one trajectory."""
    import numpy as np

    from ..rules import OrderRule, rule_step_costs

    rule = OrderRule(args.unmask_order, getattr(args, "block_length", None))
    model, answers, prompts, info = _load(args, load_jax)
    costs = rule_step_costs(model, answers, rule, prompts=prompts, batch_size=args.batch_size)
    m, n = answers.shape
    record = {**_io.header(RULE_COSTS, 1), "n": n, "rule": rule.name,
              "block_length": rule.block_length, "sequences": m, "forward_passes": m * n,
              "costs": np.where(np.isfinite(costs), costs, -1.0).tolist(),
              "source": {k: getattr(args, k, None) for k in _SOURCE}, "info": info}
    _io.atomic_write(args.out, json.dumps(record, default=str))
    print(_io.dumps({"out": args.out, "rule": rule.name, "n": n, "sequences": m,
                     "forward_passes": m * n}))
    return 0


def is_rule_costs(path: str) -> bool:
    """Whether a --profile file holds rule step costs (not an entropy profile)."""
    try:
        with open(path) as f:
            head = f.read(200)
    except OSError:
        return False
    return f'"format": "{RULE_COSTS}"' in head


def run_optimize(args: argparse.Namespace, load_jax) -> int:
    """`optimize --profile RULE_COSTS.json --steps T`: surrogate DP, then exact rescoring."""
    import numpy as np

    from ..rules import OrderRule, optimize_rule_counts
    from ..schedule import Schedule

    record = _io.read_json(args.profile, "rule costs file")
    costs = np.asarray(record["costs"], np.float64)
    costs[costs < 0] = np.inf
    rule = OrderRule(record["rule"], record.get("block_length"))
    source = argparse.Namespace(**record["source"])
    model, answers, prompts, _ = _load(source, load_jax)
    r = optimize_rule_counts(model, answers, rule, args.steps, costs=costs, prompts=prompts,
                             batch_size=source.batch_size or 64)
    meta = {"rule": rule.name, "block_length": rule.block_length, "profile": str(args.profile),
            "measured_nll": r.nll, "surrogate": r.surrogate,
            "surrogate_choice": r.surrogate_choice.tolist(),
            "rescored": {",".join(map(str, k)): v for k, v in r.rescored.items()}}
    if rule.block_length is not None:
        meta["block_length"] = rule.block_length
    schedule = Schedule(r.tokens_per_step, np.float64(np.nan), method=f"rule-{rule.name}",
                        meta=meta)
    schedule.save(args.out)
    print(f"{rule.name} counts {r.tokens_per_step.tolist()}: measured NLL {r.nll:.3f} nats "
          f"on the profile's {answers.shape[0]} sequences (best of {len(r.rescored)} rescored "
          f"exactly; surrogate DP chose {r.surrogate_choice.tolist()}) -> {args.out}")
    return 0
