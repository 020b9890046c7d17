"""Speed of exact rule scoring: forward passes per second against a bare loop of the model.

Scoring a count rule (`schedopt.rules.rule_nll`, confidence with LLaDA's stock counts) makes
T batched model calls per batch of sequences, and the ordered-rule profile
(`schedopt.rules.rule_step_costs`) n calls. Each is timed against a bare loop that
makes the same number of model calls on inputs of the same shape and nothing else (for the
Hugging Face model: its forward under inference_mode; for the JAX model: its jitted logits
function), on the shipped text model (PyTorch, through `HFScorer`), a randomly initialised BERT
of a realistic shape (6 layers of width 512, a 32768-token vocabulary) and the digits model (JAX).

    python scripts/bench_rules.py            # medians of 5 repeats
    python scripts/bench_rules.py --models text,bert   # the torch rows only
    python scripts/bench_rules.py --reduction   # position_statistics by the statistics asked for
    python scripts/bench_rules.py --faults      # minor page faults per call, text model

Prints a markdown table: calls, seconds (median), calls per second, and the ratio of schedopt's
rate to the bare loop's (the target is at least 0.9): the median over repeats of the ratio
within a repeat, the two run back to back so that both see the same load.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parent.parent / "schedopt" / "data"


def _seconds(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def _paired(ours, bare, repeats: int) -> tuple[float, float, float]:
    """Median seconds of `ours` and `bare`, run alternately so that both see the same load on
    a shared machine, and the median of the per-pair ratios bare / ours."""
    ours(), bare()  # warm up (compilation, allocator)
    pairs = [(_seconds(ours), _seconds(bare)) for _ in range(repeats)]
    return (statistics.median(a for a, _ in pairs), statistics.median(b for _, b in pairs),
            statistics.median(b / a for a, b in pairs))


def _text_jobs(steps: int):
    """On the shipped text model: (rule_nll with stock counts, rule_step_costs, bare(calls)
    -> a loop of that many bare forward passes), and the batch size and answer length."""
    import torch

    from schedopt.check import llada_stock
    from schedopt.rules import OrderRule, rule_nll, rule_step_costs
    from schedopt.sources import hf_scorer, read_pairs

    torch.set_num_threads(2)
    record = json.loads((DATA / "stdlib_mlm" / "training.json").read_text())
    scorer, _ = hf_scorer(str(DATA / "stdlib_mlm"), mask_id=record["mask_id"], batch_size=96,
                          trust_remote_code=True)
    pairs = read_pairs(DATA / "stdlib_test.jsonl", vocab_size=scorer.vocab_size)
    m, n = pairs.answers.shape
    counts = llada_stock(n, steps).tokens_per_step
    rule = OrderRule("confidence")
    length = n + max(p.size for p in pairs.prompts)
    ids = torch.randint(0, scorer.vocab_size, (m, length))
    mask = torch.ones(m, length, dtype=torch.long)

    def bare(calls):
        def run():
            with torch.inference_mode():
                for _ in range(calls):
                    scorer.model(input_ids=ids, attention_mask=mask)
        return run

    score = lambda: rule_nll(scorer, pairs.answers, rule, counts,  # noqa: E731
                             prompts=pairs.prompts, batch_size=m, reference=False)
    costs = lambda: rule_step_costs(scorer, pairs.answers, rule,  # noqa: E731
                                    prompts=pairs.prompts, batch_size=m)
    return score, costs, bare, m, n


def _text(steps: int, repeats: int) -> list[tuple]:
    score, costs, bare, m, n = _text_jobs(steps)
    return [("text model (torch)", f"rule_nll, T = {steps}", m, steps,
             *_paired(score, bare(steps), repeats)),
            ("text model (torch)", "rule_step_costs", m, n,
             *_paired(costs, bare(n), repeats))]


def _minor_faults(fn) -> int:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    fn()
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before


def _faults(steps: int, repeats: int) -> None:
    """Minor page faults per model call of `rule_nll` and of the bare loop (text model): the
    allocator's share of the gap (docs/benchmarks.md, "Scoring decoding rules")."""
    score, _, bare, _, _ = _text_jobs(steps)
    bare = bare(steps)
    score(), bare()  # warm up
    pairs_of = [(_minor_faults(score), _minor_faults(bare)) for _ in range(repeats)]
    print(f"| text model, T = {steps} | minor page faults per call (median of {repeats}) |")
    print("|---|---|")
    print(f"| rule_nll | {statistics.median(a for a, _ in pairs_of) / steps:.0f} |")
    print(f"| bare loop | {statistics.median(b for _, b in pairs_of) / steps:.0f} |")


def _reduction() -> None:
    """`position_statistics` on one chunk by the statistics asked for (medians of 30)."""
    import torch

    from schedopt.sources import STATISTICS, position_statistics

    torch.set_num_threads(2)
    asked = {"all four statistics": STATISTICS,
             "cross-entropy and log top-1": ("cross_entropy", "log_top1"),
             "cross-entropy and entropy": ("cross_entropy", "entropy")}
    print("| positions x V | " + " | ".join(f"{k} (ms)" for k in asked) + " |")
    print("|---|" + "---|" * len(asked))
    for k, v in ((3072, 512), (64, 131072)):
        logits = torch.randn(k, v)
        targets = torch.randint(0, v, (k,))
        work = (torch.empty(k, v), torch.empty(k, v))
        cells = []
        for names in asked.values():
            def run(names=names, logits=logits, targets=targets, work=work):
                position_statistics(logits, targets, names, work=work)
            run()
            cells.append(f"{statistics.median(_seconds(run) for _ in range(30)) * 1e3:.2f}")
        print(f"| {k} x {v} | " + " | ".join(cells) + " |")


def _bert(steps: int, repeats: int, m: int) -> list[tuple]:
    """A randomly initialised BERT masked LM of a realistic shape (timing only)."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from schedopt.check import llada_stock
    from schedopt.rules import OrderRule, rule_nll
    from schedopt.sources import HFScorer

    torch.set_num_threads(2)
    torch.manual_seed(0)
    v, n, p = 32768, 64, 16
    model = BertForMaskedLM(BertConfig(vocab_size=v, hidden_size=512, num_hidden_layers=6,
                                       num_attention_heads=8, intermediate_size=2048)).eval()
    scorer = HFScorer(model, mask_id=v - 1, batch_size=m)
    rng = np.random.default_rng(0)
    answers = rng.integers(0, v - 1, size=(m, n))
    prompts = list(rng.integers(0, v - 1, size=(m, p)))
    counts = llada_stock(n, steps).tokens_per_step
    ids = torch.from_numpy(rng.integers(0, v, size=(m, p + n)))
    mask = torch.ones(m, p + n, dtype=torch.long)

    def bare():
        with torch.inference_mode():
            for _ in range(steps):
                model(input_ids=ids, attention_mask=mask)

    score = lambda: rule_nll(scorer, answers, OrderRule("confidence"), counts,  # noqa: E731
                             prompts=prompts, batch_size=m, reference=False)
    return [(f"BERT 6 x 512, V = {v} (torch)", f"rule_nll, T = {steps}", m, steps,
             *_paired(score, bare, repeats))]


def _digits(steps: int, repeats: int, m: int) -> list[tuple]:
    import jax
    import jax.numpy as jnp

    from schedopt.check import llada_stock
    from schedopt.models import load_checkpoint, logits_fn
    from schedopt.rules import OrderRule, rule_nll, rule_step_costs
    from schedopt.sources import load_dataset

    model, _ = load_checkpoint("digits")
    fn = logits_fn(model)
    data = load_dataset("digits").split("test")[:m]
    n = data.shape[1]
    counts = llada_stock(n, steps).tokens_per_step
    rule = OrderRule("confidence")
    jitted = jax.jit(fn)
    tokens = jnp.asarray(data, jnp.int32)
    revealed = jnp.asarray(np.random.default_rng(0).random(data.shape) < 0.5)

    def bare(calls):
        def run():
            for _ in range(calls):
                out = jitted(tokens, revealed)
            out.block_until_ready()
        return run

    score = lambda: rule_nll(fn, data, rule, counts, batch_size=m,  # noqa: E731
                             reference=False)
    costs = lambda: rule_step_costs(fn, data, rule, batch_size=m)  # noqa: E731
    return [("digits (JAX)", f"rule_nll, T = {steps}", m, steps,
             *_paired(score, bare(steps), repeats)),
            ("digits (JAX)", "rule_step_costs", m, n,
             *_paired(costs, bare(n), repeats))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--digits-batch", type=int, default=128)
    parser.add_argument("--bert-batch", type=int, default=16)
    parser.add_argument("--models", default="text,bert,digits",
                        help="comma-separated subset of text, bert, digits")
    parser.add_argument("--reduction", action="store_true",
                        help="only: position_statistics by the statistics asked for")
    parser.add_argument("--faults", action="store_true",
                        help="only: minor page faults per call on the text model")
    args = parser.parse_args()
    if args.reduction:
        _reduction()
        return 0
    if args.faults:
        _faults(args.steps, args.repeats)
        return 0
    benches = {"text": lambda: _text(args.steps, args.repeats),
               "bert": lambda: _bert(args.steps, args.repeats, args.bert_batch),
               "digits": lambda: _digits(args.steps, args.repeats, args.digits_batch)}
    names = args.models.split(",")
    unknown = sorted(set(names) - set(benches))
    if unknown:
        parser.error(f"unknown --models {', '.join(unknown)}; choose from text, bert, digits")
    rows = [row for name in names for row in benches[name]()]
    print("| model | what | batch | calls | schedopt (s) | bare loop (s) | schedopt calls/s | "
          "bare calls/s | ratio |")
    print("|---|---|---|---|---|---|---|---|---|")
    for model, what, batch, calls, ours, bare, ratio in rows:
        print(f"| {model} | {what} | {batch} | {calls} | {ours:.3f} | {bare:.3f} | "
              f"{calls / ours:.1f} | {calls / bare:.1f} | {ratio:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
