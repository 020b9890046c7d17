"""CLI for Hugging Face models on prompt/answer pairs: `profile --hf-model` and `nll --hf-model`.

    schedopt profile --hf-model DIR --mask-id 126336 --data pairs.jsonl --answer-length 256 \\
        --block-length 32 --device cuda --dtype bfloat16 --out blocks.json
    schedopt optimize --profile blocks.json --block-length 32 --steps 64 --out opt.json
    schedopt nll --hf-model DIR --mask-id 126336 --data heldout.jsonl --answer-length 256 \\
        --schedule opt.json
    schedopt profile --hf-model DIR --mask-id 126336 --data pairs.jsonl --answer-length 256 \\
        --max-forward-passes 512 --target-steps 16 32 --out p.json

`nll` scores every schedule together with LLaDA's stock schedule at the same number of steps
(same orders), prints the paired difference with its 95% interval, and warns on stderr when a
schedule is not better than stock.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_FULL_GRID = 256  # up to this n the curve is estimated at every revealed count


class _DefaultBatch(int):
    """256, the --batch-size default, told apart from a 256 given on the command line (with
    --hf-model the default means: fit the rows per pass to the free memory)."""


DEFAULT_BATCH = _DefaultBatch(256)


def batch_size_given(args: argparse.Namespace) -> bool:
    """Whether --batch-size was given rather than left at its default."""
    return not isinstance(args.batch_size, _DefaultBatch)


def add_hf_arguments(parser: argparse.ArgumentParser, *, block_length: bool = True,
                     pairs: bool = True, source=None) -> None:
    """Options for a Hugging Face model on a JSONL file of prompt/answer pairs (without
    `pairs`: on prompts alone, so no answer field, padding or resume); --hf-model goes into
    `source` (an exclusive group of curve sources) when given."""
    g = parser.add_argument_group("Hugging Face model (--hf-model) on prompt/answer pairs")
    (source or g).add_argument("--hf-model", metavar="NAME_OR_DIR",
                   help="a masked LM in a local directory or the local HF cache (never downloaded)")
    g.add_argument("--trust-remote-code", action="store_true",
                   help="run the modeling code shipped with the model (LLaDA, Dream)")
    g.add_argument("--mask-id", type=int, metavar="ID", help="the model's mask token id")
    g.add_argument("--force-mask-id", action="store_true",
                   help="use --mask-id although the model's config names another mask token")
    g.add_argument("--shifted-logits", action=argparse.BooleanOptionalAction, default=None,
                   help="output i predicts position i + 1, as in Dream and other models adapted "
                   "from autoregressive ones (default: from the config's model_type)")
    g.add_argument("--attention-mask", choices=("auto", "2d", "4d", "none"), default="auto",
                   help="the mask the model's forward takes: 2d int [B, L], 4d bool "
                   "[B, 1, L, L], or none (rows grouped by prompt length, never padded); "
                   "default auto: 4d for Dream, else 2d when its forward takes attention_mask")
    if pairs:
        g.add_argument("--pad-id", type=int, metavar="ID",
                       help="token that pads short answers to --answer-length (default: the "
                       "tokenizer's EOS, as LLaDA pads)")
    g.add_argument("--answer-length", type=int, metavar="N",
                   help="generation length n" + (": answers are padded or cut to n tokens"
                                                 if pairs else " (default: the schedule's n)"))
    g.add_argument("--prompt-field", default="prompt", metavar="NAME",
                   help="JSONL text field holding the prompt (default 'prompt')")
    if pairs:
        g.add_argument("--answer-field", default="answer", metavar="NAME",
                       help="JSONL text field holding the answer (default 'answer')")
    g.add_argument("--chat-template", action="store_true",
                   help="tokenise each prompt through the tokenizer's chat template")
    if block_length:
        g.add_argument("--block-length", type=int, metavar="L",
                       help="semi-autoregressive blocks of L answer tokens (LLaDA block_length)")
    g.add_argument("--device", default="cpu", help="torch device (default cpu; e.g. cuda)")
    g.add_argument("--dtype", choices=("float32", "float16", "bfloat16"), default=None,
                   help="model weights' dtype (default: as saved)")
    if pairs:
        g.add_argument("--resume", action="store_true",
                       help="continue an interrupted estimate from OUT.partial.npz")


def load(args: argparse.Namespace):
    """(scorer, pairs, info) from the --hf-model options and --data, --sequences."""
    if not args.data:
        raise ValueError("--hf-model needs --data pairs.jsonl (prompt_ids/answer_ids or text)")
    if args.sequences is not None and args.sequences < 2:
        raise ValueError(f"--sequences must be at least 2 (for an interval), got {args.sequences}")
    scorer, tokenizer = load_scorer(args)
    pairs, pad_id = read_data(args, scorer, tokenizer, args.data, args.sequences)
    info = {"model": str(args.hf_model), "data": str(args.data), "mask_id": args.mask_id,
            "pad_id": pad_id, "shifted_logits": scorer.shifted,
            "attention_mask": scorer.attention, **pairs.summary()}
    return scorer, pairs, info


def read_data(args: argparse.Namespace, scorer, tokenizer, path: str,
              sequences: int | None = None):
    """(Pairs, pad id) of the JSONL file `path`, read as the --hf-model options say; the
    first `sequences` pairs when given (at least 2 are needed)."""
    from ..sources import read_pairs

    pad_id = args.pad_id
    if pad_id is None and tokenizer is not None:
        pad_id = tokenizer.eos_token_id
    pairs = read_pairs(path, answer_length=args.answer_length, pad_id=pad_id,
                       vocab_size=scorer.vocab_size, tokenizer=tokenizer,
                       prompt_field=args.prompt_field, answer_field=args.answer_field,
                       chat_template=args.chat_template)
    if sequences is not None:
        pairs = pairs.head(sequences)
    if len(pairs) < 2:
        raise ValueError(f"{path!r} holds {len(pairs)} pair; give at least 2 for intervals")
    return pairs, pad_id


def load_scorer(args: argparse.Namespace):
    """(HFScorer, tokenizer or None) from the --hf-model options."""
    from ..sources import hf_scorer

    if args.mask_id is None:
        raise ValueError("--hf-model needs --mask-id ID, the model's mask token id "
                         "(126336 for LLaDA)")
    try:
        import transformers

        transformers.utils.logging.disable_progress_bar()
        scorer, tokenizer = hf_scorer(args.hf_model, mask_id=args.mask_id,
                                      trust_remote_code=args.trust_remote_code,
                                      device=args.device, dtype=args.dtype,
                                      batch_size=args.batch_size if batch_size_given(args)
                                      else None, shifted=args.shifted_logits,
                                      attention=args.attention_mask,
                                      force_mask_id=args.force_mask_id)
    except ImportError as e:
        raise ValueError(str(e)) from None
    return scorer, tokenizer


def checkpoint_path(args: argparse.Namespace, out: str) -> Path:
    """OUT.partial.npz; removed first unless --resume, so a fresh run starts afresh.

    The saved batches are fingerprinted by data, orders, grid and batch size; the model and
    the curve options are recorded beside them (OUT.partial.json), so resuming with another
    model is refused too.
    """
    from .._internal import io as _io

    path, about = Path(f"{out}.partial.npz"), Path(f"{out}.partial.json")
    # The mask id changes every score but not the data's fingerprint: it is recorded here.
    run = {"hf_model": str(args.hf_model), "kind": args.kind, "dtype": args.dtype,
           "block_length": args.block_length, "trust_remote_code": args.trust_remote_code,
           "mask_id": args.mask_id}
    if not args.resume:
        path.unlink(missing_ok=True)
    elif path.exists() and about.exists():
        saved = _io.read_json(about, "checkpoint options")
        if saved != run:
            changed = sorted(k for k in run if not isinstance(saved, dict)
                             or saved.get(k) != run[k])
            raise ValueError(f"{str(path)!r} was written for other options (changed: "
                             f"{', '.join(changed)}); drop --resume to start afresh")
    _io.write_json(about, run)
    return path


def run_profile(args: argparse.Namespace) -> int:
    """`schedopt profile --hf-model`: the prompt-conditioned curve, or raw per-block curves."""
    import jax
    import numpy as np

    from .._internal.io import check_output_path
    from ..estimate import estimate_block_profiles, estimate_curves

    check_output_path(args.out)
    if getattr(args, "max_forward_passes", None) is not None:
        return _profile_within_budget(args)
    scorer, pairs, info = load(args)
    n = pairs.answers.shape[1]
    key = jax.random.key(args.seed)
    partial = checkpoint_path(args, args.out)
    if args.block_length is not None:
        blocks = estimate_block_profiles(
            scorer, pairs.answers, args.block_length, prompts=pairs.prompts, key=key,
            kind=args.kind, regularize=False, batch_size=args.batch_size, jit=False,
            quiet=args.quiet, checkpoint=partial,
        )
        blocks = blocks.replace(meta={**blocks.meta, **info})
        blocks.save(args.out)
        Path(f"{args.out}.partial.json").unlink(missing_ok=True)
        print(json.dumps({"out": args.out, "block_length": blocks.block_length,
                          "num_blocks": blocks.num_blocks, "curves": "raw (not regularised)",
                          "answer_entropy": float(blocks.entropy[:, -1].sum()), **info}))
        return 0
    estimate = estimate_curves(
        scorer, pairs.answers, prompts=pairs.prompts, key=key,
        grid=None if n > DEFAULT_FULL_GRID else n, batch_size=args.batch_size, jit=False,
        quiet=args.quiet, checkpoint=partial,
    )
    profile = estimate.profile(args.kind)
    profile = profile.replace(meta={**profile.meta, **info})
    profile.save(args.out)
    Path(f"{args.out}.partial.json").unlink(missing_ok=True)
    print(json.dumps({"out": args.out, **profile.summary()}))
    raw = np.asarray(profile.meta["raw_conditional_entropy"])
    if np.any(np.diff(raw) > 0):
        print(f"schedopt profile: note: the raw curve rises somewhere; {args.out} holds it "
              f"regularised (raw values in meta). For the curve that predicts held-out NLL "
              f"exactly, pass --block-length {n} (one block, kept raw) and optimize that file",
              file=sys.stderr)
    return 0


def budget_conflict(args: argparse.Namespace) -> str | None:
    """Why --max-forward-passes cannot run with these --hf-model options (None: it can)."""
    if args.block_length is not None:
        return ("--max-forward-passes does not combine with --block-length: the budget "
                "estimate is of one curve over the whole answer; drop one of them")
    if args.resume:
        return ("--max-forward-passes does not combine with --resume: a budget estimate is "
                "not checkpointed (it is short by design); drop --resume")
    if args.distributed or any(getattr(args, name, None) is not None
                               for name in ("coordinator", "num_processes", "process_id")):
        return ("--max-forward-passes with --hf-model runs in one process; drop --distributed "
                "and its options")
    return None


def _profile_within_budget(args: argparse.Namespace) -> int:
    """`profile --hf-model --max-forward-passes B`: the adaptive two-phase estimate on pairs."""
    import jax

    from .._internal import io as _io
    from ..estimate import estimate_within_budget
    from .budget import budget_summary, report_stability

    # `profile.run` has refused the options that do not combine (budget_conflict), before
    # a distributed start.
    scorer, pairs, info = load(args)
    result = estimate_within_budget(
        scorer, pairs.answers, prompts=pairs.prompts, key=jax.random.key(args.seed),
        max_forward_passes=args.max_forward_passes, steps=args.target_steps, kind=args.kind,
        gap_degree=args.gap_degree, shape=args.shape or "smooth", batch_size=args.batch_size,
        jit=False)
    report_stability(result)
    profile = result.profile.replace(meta={**result.profile.meta, **info})
    profile.save(args.out)
    print(_io.dumps({"out": args.out, **profile.summary(), **budget_summary(profile)}))
    return 0


def run_nll(args: argparse.Namespace) -> int:
    """`schedopt nll --hf-model`: held-out T-step NLL, prediction and paired difference vs stock."""
    import jax

    from ..check import llada_stock, paired_difference, predicted_excess, schedules_nll
    from ..curve import BlockProfiles
    from ..estimate import estimate_block_profiles, estimate_curves
    from ..objective import block_expected_kl
    from ..schedule import Schedule

    schedules = [Schedule.load(path) for path in args.schedule]
    scorer, pairs, info = load(args)
    n = pairs.answers.shape[1]
    lengths = {int(s.meta["block_length"]) for s in schedules if "block_length" in s.meta}
    block_length = args.block_length if args.block_length is not None else (
        lengths.pop() if len(lengths) == 1 else None)
    for path, s in zip(args.schedule, schedules, strict=True):
        if s.n != n:
            raise ValueError(f"schedule {path!r} is for n = {s.n} tokens but the answers have "
                             f"n = {n}; pass --answer-length {s.n} or use schedules for n = {n}")
    names = list(args.schedule)
    stock_of = {}
    for s in schedules:
        t = int(s.tokens_per_step.shape[0])
        if t in stock_of:
            continue
        try:
            stock_of[t] = len(schedules)
            schedules.append(llada_stock(n, t, block_length))
            names.append(f"LLaDA stock T={t}")
        except ValueError:
            del stock_of[t]  # T not a multiple of the block count: LLaDA cannot run it
    k_nll, k_curve = jax.random.split(jax.random.key(args.seed))
    results = schedules_nll(scorer, pairs.answers, schedules, key=k_nll, prompts=pairs.prompts,
                            block_length=block_length, orders=args.orders,
                            batch_size=args.batch_size, quiet=args.quiet)
    if block_length is None:
        estimate = estimate_curves(scorer, pairs.answers, prompts=pairs.prompts, key=k_curve,
                                   grid=None if n > DEFAULT_FULL_GRID else n,
                                   batch_size=args.batch_size, jit=False, quiet=args.quiet)

        def predict(s):
            return predicted_excess(estimate, s)
    else:
        blocks: BlockProfiles = estimate_block_profiles(
            scorer, pairs.answers, block_length, prompts=pairs.prompts, key=k_curve,
            regularize=False, batch_size=args.batch_size, jit=False, quiet=args.quiet)

        def predict(s):
            return block_expected_kl(blocks, s.tokens_per_step), None
    rows = []
    for name, s, r in zip(names, schedules, results, strict=True):
        predicted, predicted_se = predict(s)
        row = {"schedule": name, **r.to_json(), "predicted_excess": predicted,
               "predicted_excess_stderr": predicted_se}
        t = int(s.tokens_per_step.shape[0])
        stock = stock_of.get(t)
        if stock is not None and results[stock] is not r:
            mean, lo, hi = paired_difference(r.per_sequence, results[stock].per_sequence)
            row["vs_stock"] = {"difference": mean, "interval": [lo, hi]}
        rows.append(row)
    info["block_length"] = block_length
    if args.json:
        print(json.dumps({**info, "results": rows}, indent=1))
    else:
        print(_table(info, rows, n))
    for row in rows:
        d = row.get("vs_stock")
        if d is not None and d["difference"] >= 0:
            print(f"schedopt nll: warning: {row['schedule']} is not better than LLaDA's stock "
                  f"schedule on these held-out pairs (difference {d['difference']:+.3f} nats, "
                  f"95% interval [{d['interval'][0]:.3f}, {d['interval'][1]:.3f}]); "
                  "use the stock schedule or re-optimize on the raw curve", file=sys.stderr)
    return 0


def _table(info: dict, rows: list[dict], n: int) -> str:
    blocks = info.get("block_length")
    head = (f"model {info['model']}; {info['pairs']} held-out pairs from {info['data']}, "
            f"answers of {n} tokens" + (f" in blocks of {blocks}" if blocks else ""))
    first = rows[0]
    lines = [
        head,
        f"one token per step: NLL {first['one_by_one']:.2f} "
        f"+- {1.96 * first['one_by_one_stderr']:.2f} nats",
        f"{'schedule':<28} {'T':>4}  {'NLL':>8}  {'excess [95% CI]':<24} {'predicted':>9}  "
        "vs stock [95% CI]",
    ]
    for r in rows:
        elo, ehi = r["excess_interval"]
        d = r.get("vs_stock")
        vs = "-" if d is None else (f"{d['difference']:+.3f} [{d['interval'][0]:.3f}, "
                                    f"{d['interval'][1]:.3f}]")
        lines.append(
            f"{r['schedule'][-28:]:<28} {r['steps']:>4}  {r['nll']:8.2f}  "
            + f"{r['excess']:7.3f} [{elo:.3f}, {ehi:.3f}]".ljust(24)
            + f" {r['predicted_excess']:9.3f}  {vs}"
        )
    lines.append("nats per answer given its prompt; excess = NLL - one-token-per-step NLL (same "
                 "orders); predicted = the raw held-out curve's formula; vs stock = paired "
                 "difference against LLaDA's stock schedule with the same T (negative: better)")
    return "\n".join(lines)
