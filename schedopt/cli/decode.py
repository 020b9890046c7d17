"""`schedopt generate`: answers decoded with a schedule and a rule (`schedopt.generate`).

    schedopt generate --hf-model DIR --mask-id ID --data prompts.jsonl --schedule S.json \\
        --unmask-order confidence --out answers.jsonl
    schedopt generate --model digits --samples 8 --threshold 0.9 --out samples.jsonl

Writes one JSON object per answer: the prompt's file line (with --hf-model), prompt_ids,
answer_ids, the answer's text (when the model has a tokenizer), log_prob (the sampler's exact
log-probability of the answer given its prompt, nats) and forward_passes.
"""

from __future__ import annotations

import argparse
import json


def register(sub) -> None:
    p = sub.add_parser(
        "generate",
        help="decode answers with a schedule and an unmasking rule",
        description="Decode one answer per prompt (--hf-model) or unconditional samples "
        "(--model) with a schedule's counts and an unmasking rule (LLaDA low_confidence = "
        "--unmask-order confidence; Fast-dLLM = --threshold; EB-sampler = --entropy-bound). "
        "Each answer's log-probability under that sampler is exact (theory §13).",
    )
    g = p.add_argument_group("model")
    g.add_argument("--model", metavar="digits|PATH",
                   help="a trained JAX model: 'digits' (shipped) or a checkpoint .json")
    g.add_argument("--samples", type=int, default=16, metavar="M",
                   help="with --model: how many sequences to draw (default 16)")
    g.add_argument("--data", metavar="PROMPTS.jsonl",
                   help="with --hf-model: one prompt per line, as prompt_ids or a text field")
    g.add_argument("--batch-size", type=int, default=16, metavar="B",
                   help="answers decoded together (default 16)")
    from . import hf, rules

    hf.add_hf_arguments(p, pairs=False)
    p.add_argument("--schedule", metavar="S.json",
                   help="tokens per step (with --unmask-order); a block schedule sets "
                   "--block-length")
    rules.add_rule_arguments(p, per_sequence=False)
    p.add_argument("--temperature", type=float, default=0.0, metavar="TEMP",
                   help="draw from softmax(logits / TEMP); 0 (default) is greedy, as LLaDA")
    p.add_argument("--seed", type=int, default=0,
                   help="random seed (temperature > 0, --unmask-order random; default 0)")
    p.add_argument("--out", required=True, metavar="ANSWERS.jsonl", help="where to write")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import jax
    import numpy as np

    from .._internal import io as _io
    from ..decode import generate
    from ..schedule import Schedule
    from . import rules

    _io.check_output_path(args.out)
    schedule = Schedule.load(args.schedule) if args.schedule else None
    if schedule is not None:
        args.block_length = _block_length(args.block_length, schedule)
    if not rules.wants_rule(args):
        raise ValueError("say how to unmask: --unmask-order RULE with --schedule S.json, or "
                         "--threshold TAU, or --entropy-bound GAMMA")
    rule = rules.rule_of(args)
    model, prompts, lines, tokenizer, info = _load(args)
    length = args.answer_length if args.answer_length is not None else (
        schedule.n if schedule is not None else info.pop("length", None))
    if length is None:
        raise ValueError(f"the {rule.name} rule needs the answer length; pass --answer-length N")
    out = generate(model, prompts, rule,
                   None if schedule is None else schedule.tokens_per_step, length=length,
                   temperature=args.temperature, key=jax.random.key(args.seed),
                   batch_size=args.batch_size)
    records = []
    for i, prompt in enumerate(prompts):
        record = {"prompt_ids": np.asarray(prompt).tolist(),
                  "answer_ids": out.tokens[i].tolist(),
                  "log_prob": float(out.log_prob[i]),
                  "forward_passes": int(out.passes[i])}
        if lines is not None:
            record = {"line": int(lines[i]), **record}
        if tokenizer is not None:
            record["text"] = tokenizer.decode(out.tokens[i].tolist())
        records.append(json.dumps(record))
    _io.atomic_write(args.out, "\n".join(records) + "\n")
    print(_io.dumps({**info, "out": args.out, "rule": rule.name, "answers": len(records),
                     "answer_length": int(length),
                     "forward_passes_mean": float(out.passes.mean()),
                     "mean_log_prob": float(out.log_prob.mean()),
                     "tokens_per_second": round(out.tokens_per_second, 1)}))
    return 0


def _block_length(given: int | None, schedule) -> int | None:
    """--block-length, or the block schedule's own; the two must agree."""
    own = schedule.meta.get("block_length")
    if given is not None and own is not None and given != own:
        raise ValueError(f"the schedule is for blocks of {own} tokens but --block-length is "
                         f"{given}; drop --block-length or pass {own}")
    return given if given is not None else own


def _load(args: argparse.Namespace):
    """(model, prompts, file lines or None, tokenizer or None, info) from the options."""
    if (args.hf_model is None) == (args.model is None):
        raise ValueError("say which model decodes: --model digits|PATH or --hf-model DIR "
                         "(one of them)")
    if args.hf_model is not None:
        from ..sources import read_prompts
        from . import hf

        if not args.data:
            raise ValueError("--hf-model needs --data prompts.jsonl (one prompt per line)")
        scorer, tokenizer = hf.load_scorer(args)
        prompts, lines = read_prompts(args.data, vocab_size=scorer.vocab_size,
                                      tokenizer=tokenizer, prompt_field=args.prompt_field,
                                      chat_template=args.chat_template)
        return scorer, prompts, lines, tokenizer, {"model": str(args.hf_model),
                                                   "data": str(args.data)}
    if args.data is not None:
        raise ValueError("--data is the prompts file of --hf-model; --model draws "
                         "unconditional samples (--samples M)")
    from .._internal.checks import whole_number
    from ..models import load_checkpoint, logits_fn

    m = whole_number(args.samples, "--samples", minimum=1)
    model, _ = load_checkpoint(args.model)
    return logits_fn(model), [[]] * m, None, None, {"model": str(args.model),
                                                    "length": model.config.length}
