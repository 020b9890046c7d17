"""Peak host memory of scoring a decoding rule on CPU, against a bare forward pass.

A tiny BERT with a LLaDA-sized vocabulary (V = 128000, hidden size 16) and a batch of B rows
(prompt 16 + answer n tokens). Each measurement runs in a fresh process and reports the peak
resident memory (ru_maxrss) after the model and inputs are built and after the work:

- "bare": one `model(input_ids=...)` forward pass under `torch.no_grad()` (the logits
  [B, L, V] are the only vocabulary-sized buffer);
- "rule_statistics": `HFScorer.rule_statistics` on the same rows (forward pass plus the
  reduction of the logits to [B, n] numbers, in chunks of `CHUNK_ELEMENTS`);
- "sampled_statistics": one decoding step of `schedopt.generate` at temperature 1 (a token
  drawn at every masked position, and its statistics).

The extra peak of the scorer over the bare pass is printed in MiB and in [B, n, V] float32
buffers (the issue's bound: at most one).

    python scripts/bench_scorer_memory.py
"""

import argparse
import json
import resource
import subprocess
import sys

V, PROMPT = 128_000, 16
TASKS = ("bare", "rule_statistics", "sampled_statistics")


def _measure(task: str, batch: int, n: int) -> float:
    """Peak RSS increase (MiB) of `task` over the process after set-up."""
    import numpy as np
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(0)
    model = BertForMaskedLM(BertConfig(vocab_size=V, hidden_size=16, num_hidden_layers=1,
                                       num_attention_heads=1, intermediate_size=32,
                                       max_position_embeddings=PROMPT + n)).eval()
    rng = np.random.default_rng(0)
    prompts = [rng.integers(5, V, size=PROMPT) for _ in range(batch)]
    answers = rng.integers(5, V, size=(batch, n))
    revealed = rng.random((batch, n)) < 0.5
    ids = torch.from_numpy(np.concatenate([np.stack(prompts), np.where(revealed, answers, 4)], 1))
    if task != "bare":
        from schedopt.sources import HFScorer

        scorer = HFScorer(model, mask_id=4, batch_size=batch)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    with torch.no_grad():
        if task == "bare":
            model(input_ids=ids)
        elif task == "rule_statistics":
            scorer.rule_statistics(prompts, answers, revealed)
        else:
            scorer.sampled_statistics(prompts, answers, revealed, temperature=1.0,
                                      generator=torch.Generator().manual_seed(0))
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - before


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--answer-length", type=int, default=64)
    parser.add_argument("--task", choices=TASKS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.task:  # the child process
        print(json.dumps(_measure(args.task, args.batch, args.answer_length)))
        return
    peak = {}
    for task in TASKS:
        out = subprocess.run([sys.executable, __file__, "--task", task, "--batch",
                              str(args.batch), "--answer-length", str(args.answer_length)],
                             capture_output=True, text=True, check=True).stdout
        peak[task] = float(out.strip().splitlines()[-1])
    buffer = args.batch * args.answer_length * V * 4 / 2**20
    print(f"B = {args.batch}, n = {args.answer_length}, V = {V}: one [B, n, V] float32 buffer "
          f"is {buffer:.0f} MiB\n")
    print("| task | peak RSS increase (MiB) |\n|---|---|")
    for task, value in peak.items():
        print(f"| {task} | {value:.0f} |")
    for task in TASKS[1:]:
        extra = peak[task] - peak["bare"]
        print(f"| {task} extra over bare | {extra:.0f} ({extra / buffer:.2f} buffers) |")


if __name__ == "__main__":
    main()
