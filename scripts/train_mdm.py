"""Train a small masked diffusion transformer on digits, text or HMM samples.

    python scripts/train_mdm.py --data digits --out schedopt/data/digits_mdm.json

reproduces the checkpoint shipped with the package (same seed, same settings, same weights up
to floating-point differences between machines). Each dataset trains on a 2-core CPU in
minutes, with a progress bar; training stops early when the validation masked cross-entropy
stops improving, and the script reports the held-out (test split) masked CE in nats/token.

It also logs the training loss by mask ratio (`mask_ratio,cross_entropy,stderr`, from the
training batches of the evaluation interval that produced the kept weights) to
`--loss-curve` (default: beside the checkpoint, MODEL.loss.csv), for

    schedopt profile --from-loss-curve MODEL.loss.csv --length N --out P.json
"""

from __future__ import annotations

import argparse
import json
import sys

# Per dataset: the model shape and training settings the shipped/benchmarked models use.
PRESETS = {
    "digits": dict(width=64, depth=2, heads=4, dropout=0.1, batch_size=64, learning_rate=1e-3,
                   weight_decay=0.05, max_steps=4000, eval_every=200, patience=5),
    "text": dict(width=64, depth=2, heads=4, dropout=0.0, batch_size=64, learning_rate=1e-3,
                 weight_decay=0.01, max_steps=3000, eval_every=250, patience=4),
    "hmm": dict(width=64, depth=2, heads=4, dropout=0.0, batch_size=64, learning_rate=1e-3,
                weight_decay=0.01, max_steps=3000, eval_every=250, patience=4),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=sorted(PRESETS), required=True)
    parser.add_argument("--out", required=True, metavar="MODEL.json",
                        help="checkpoint to write (the .safetensors goes beside it)")
    parser.add_argument("--loss-curve", default=None, metavar="LOSS.csv",
                        help="training loss by mask ratio (default: MODEL.loss.csv)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    for name, value in PRESETS["digits"].items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=None,
                            help=f"override the dataset preset (digits: {value})")
    args = parser.parse_args(argv)

    import schedopt  # noqa: F401  (float64 on, as everywhere in schedopt)
    from schedopt._internal.io import check_output_path
    from schedopt.curve import write_binned_loss_curve
    from schedopt.models import MDMConfig, heldout_masked_ce, save_checkpoint, train
    from schedopt.sources import load_dataset

    check_output_path(args.out)
    loss_path = args.loss_curve or str(args.out).removesuffix(".json") + ".loss.csv"
    check_output_path(loss_path)
    settings = {k: (v if getattr(args, k) is None else getattr(args, k))
                for k, v in PRESETS[args.data].items()}
    shape = {k: settings.pop(k) for k in ("width", "depth", "heads", "dropout")}
    data = load_dataset(args.data)
    config = MDMConfig(vocab_size=data.vocab_size, length=data.length, **shape)
    result = train(config, data.train, data.valid, seed=args.seed, quiet=args.quiet,
                   **settings)
    test_ce = heldout_masked_ce(result.model, data.test, seed=args.seed + 1)
    record = {
        "data": data.name,
        "data_meta": data.meta,
        "test_ce": test_ce,
        "valid_ce": result.valid_ce,
        "best_step": result.best_step,
        "steps": result.steps,
        "seconds": round(result.seconds, 1),
        "settings": result.settings,
        "history": result.history,
    }
    save_checkpoint(args.out, result.model, record)
    # per revealed count j: rows, mean CE, stderr
    write_binned_loss_curve(loss_path, result.loss_curve)
    summary = {k: record[k] for k in ("data", "test_ce", "valid_ce", "best_step", "steps",
                                      "seconds")}
    print(json.dumps({"out": args.out, "loss_curve": loss_path, **summary}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
