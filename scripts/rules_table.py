"""Decoders at equal forward passes on the shipped models: the table in docs/models.md.

For each setting (the text model without blocks and with blocks of 32, and the digits model)
`schedopt.rules` scores, at T in {8, 16, 32}: random order with optimal counts; the
confidence, margin, entropy and left-to-right rules with LLaDA's stock counts and with counts
optimized for each rule on the tune data; and the threshold and entropy-bound rules swept to
T mean forward passes. Held-out NLLs are exact (theory §13), paired across rows.

    python scripts/rules_table.py --json /tmp/rules_table.json              # all settings
    python scripts/rules_table.py --settings text --orders confidence      # one, faster

Prints one markdown table per setting and a headline line per budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "schedopt" / "data"
ORDERS = ("confidence", "margin", "entropy", "left-to-right")
SETTINGS = ("text", "text-blocks", "digits")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--orders", default=",".join(ORDERS))
    parser.add_argument("--steps", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--digits-test", type=int, default=None, metavar="M",
                        help="first M digits test images (default all 297)")
    parser.add_argument("--digits-tune", type=int, default=128, metavar="M")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default=None)
    parser.add_argument("--plot", default=None, metavar="OUT.png",
                        help="draw the first setting's frontier (schedopt.check.plot_equal_passes)")
    parser.add_argument("--replot", default=None, metavar="TABLE.json",
                        help="only redraw --plot from a --json file this script wrote")
    args = parser.parse_args()
    if args.replot:
        setting = json.loads(Path(args.replot).read_text())[args.settings[0]]
        _plot(setting, args.plot)
        return 0
    orders = args.orders.split(",")
    results = {}
    for setting in args.settings:
        started = time.monotonic()
        result, label = _run(setting, orders, args)
        seconds = time.monotonic() - started
        results[setting] = {**result.to_json(), "seconds": seconds}
        print(f"\n### {label}: {result.sequences} held-out, {result.tune_sequences} tune "
              f"sequences, n = {result.n}; reference (confidence, one token per step) "
              f"{result.reference_nll:.2f} nats; {seconds:.0f} s\n")
        print(_markdown(result))
        for budget in args.steps:
            best = result.best(budget)
            vs = ("" if best.vs_stock is None else
                  f", vs confidence stock {best.vs_stock:+.2f} "
                  f"[{best.vs_stock_interval[0]:+.2f}, {best.vs_stock_interval[1]:+.2f}]")
            print(f"- T = {budget}: best {best.decoder} at {best.passes_mean:.2f} passes, "
                  f"excess {best.excess:.2f}{vs}")
        if args.plot and setting == args.settings[0]:
            _plot(results[setting], args.plot)
        if args.json:  # after each setting, so a long run keeps what it measured
            Path(args.json).write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


def _run(setting: str, orders: list[str], args):
    import jax
    import torch

    from schedopt.rules import equal_passes

    torch.set_num_threads(2)
    key = jax.random.key(args.seed)
    if setting == "digits":
        from schedopt.models import load_checkpoint, logits_fn
        from schedopt.sources import load_dataset

        model, _ = load_checkpoint("digits")
        digits = load_dataset("digits")
        test = digits.split("test")[: args.digits_test]
        tune = digits.split("valid")[: args.digits_tune]
        return equal_passes(logits_fn(model), test, tune, args.steps, key=key,
                            orders=orders, batch_size=128, quiet=False), "digits"
    from schedopt.sources import hf_scorer, read_pairs

    record = json.loads((DATA / "stdlib_mlm" / "training.json").read_text())
    scorer, _ = hf_scorer(str(DATA / "stdlib_mlm"), mask_id=record["mask_id"], batch_size=256,
                          trust_remote_code=True)  # the model ships its own modeling file
    test = read_pairs(DATA / "stdlib_test.jsonl", vocab_size=scorer.vocab_size)
    tune = read_pairs(DATA / "stdlib_tune.jsonl", vocab_size=scorer.vocab_size)
    block = 32 if setting == "text-blocks" else None
    result = equal_passes(scorer, test.answers, tune.answers, args.steps, key=key,
                          prompts=test.prompts, tune_prompts=tune.prompts, block_length=block,
                          orders=orders, batch_size=256, quiet=False)
    return result, "text model" + (", blocks of 32" if block else "")


def _plot(setting: dict, path: str) -> None:
    """Draw one setting's rows (as `EqualPasses.to_json` wrote them) with plot_equal_passes."""
    import types

    from schedopt.check import plot_equal_passes, save_png

    rows = [types.SimpleNamespace(**r) for r in setting["rows"]]
    result = types.SimpleNamespace(**{**setting, "rows": rows})
    save_png(plot_equal_passes(result).figure, path)


def _markdown(result) -> str:
    lines = ["| T | decoder | setting | passes (mean ± sd) | excess NLL [95% CI] | "
             "vs confidence stock, paired [95% CI] |", "|---|---|---|---|---|---|"]
    for r in result.rows:
        setting = "" if r.setting is None else f"{r.setting:.3g}"
        vs = ("reference" if r.decoder == "confidence, stock counts" else "-"
              if r.vs_stock is None else
              f"{r.vs_stock:+.2f} [{r.vs_stock_interval[0]:+.2f}, {r.vs_stock_interval[1]:+.2f}]")
        lines.append(f"| {r.budget} | {r.decoder} | {setting} | {r.passes_mean:.2f} ± "
                     f"{r.passes_std:.2f} | {r.excess:.2f} [{r.excess_interval[0]:.2f}, "
                     f"{r.excess_interval[1]:.2f}] | {vs} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
