"""Train the shipped example model: a small masked diffusion LM on Python's standard library.

The text ships with Python: the top-level modules of the standard library (`*.py`), split by
file into train (80%), validation (10%, for early stopping) and held-out (10%) files, so no
held-out file is ever seen in training. A byte-level BPE tokenizer (512 ids) is trained on the
train files. The model is a small dilated-convolution masked LM (4 residual layers, width 96,
receptive field 61 tokens, about 0.2 M parameters), saved in Hugging Face format with its own
modeling file, as LLaDA and Dream ship theirs: load it with trust_remote_code. (A 2-layer BERT
of similar size stayed at the unigram loss, 5.22 nats/token, after 13 minutes of training
here; convolutions learn local context within a few hundred steps.) It is trained as LLaDA
is: a prompt of P tokens always visible, the answer of n tokens masked at a ratio
t ~ U(0, 1) per sequence, cross entropy on the masked answer tokens; the checkpoint with the
best validation loss is kept.

The held-out files give two disjoint sets of prompt/answer pairs (JSONL, token ids): "tune"
pairs to estimate curves and choose schedules on, and "test" pairs to measure held-out NLL.

    python scripts/train_stdlib_mlm.py --minutes 5 --out schedopt/data/stdlib_mlm

Training also logs the training loss by mask ratio to OUT/loss.csv (`--loss-curve`; header
`mask_ratio,cross_entropy,stderr`, for `schedopt profile --from-loss-curve`): the per-row
masked CE of the training batches of the validation interval that produced the kept weights,
binned by the answer's revealed count (`schedopt.curve.loss_by_revealed_count`).

    python scripts/train_stdlib_mlm.py --loss-curve-only --out schedopt/data/stdlib_mlm

writes the same file without training: the checkpoint in OUT measured on training windows,
masked as in training, `--loss-batches` batches of `--batch` (default 200 x 32: as many rows
as one validation interval of training). The model has no dropout, so train and eval mode
give the same loss; the model is put in train mode anyway, as training measured it. This is
how the shipped schedopt/data/stdlib_mlm/loss.csv was made (retraining would change the
shipped model).

Runs on CPU in minutes (2 threads by default). The model depends on the Python version whose
standard library it reads and on torch's CPU kernels; the shipped copy records both.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import platform
import sys
import sysconfig
import time
import zlib
from pathlib import Path

import numpy as np

PROMPT, ANSWER = 16, 64
SPECIAL = ["[PAD]", "[UNK]", "[MASK]", "[EOS]"]


def split_files() -> dict[str, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in root.glob("*.py") if p.stat().st_size > 2000)
    out: dict[str, list[Path]] = {"train": [], "valid": [], "heldout": []}
    for p in files:
        bucket = zlib.crc32(p.name.encode()) % 10
        out["heldout" if bucket == 0 else "valid" if bucket == 1 else "train"].append(p)
    return out


def train_tokenizer(files: list[Path], vocab: int):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=SPECIAL,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train([str(p) for p in files], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   mask_token="[MASK]", eos_token="[EOS]")


def encode(tokenizer, files: list[Path]) -> list[np.ndarray]:
    return [np.asarray(tokenizer(p.read_text(encoding="utf-8", errors="replace"),
                                 add_special_tokens=False)["input_ids"], np.int64)
            for p in files]


def windows(streams: list[np.ndarray], length: int, stride: int) -> np.ndarray:
    out = [s[i:i + length] for s in streams for i in range(0, len(s) - length + 1, stride)]
    return np.stack(out)


# The model's code is the shipped modeling file itself (loaded with trust_remote_code), copied
# next to every checkpoint this script writes.
MODELING = (Path(__file__).resolve().parent.parent / "schedopt" / "data" / "stdlib_mlm"
            / "modeling_stdlib_conv.py").read_text()


def model_module(out: Path):
    """Write the modeling file into the model folder and import it from there."""
    import importlib.util

    out.mkdir(parents=True, exist_ok=True)
    path = out / "modeling_stdlib_conv.py"
    path.write_text(MODELING)
    spec = importlib.util.spec_from_file_location("modeling_stdlib_conv", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def masked_batch(x, rng, mask_id):
    """LLaDA-style: the prompt visible, each answer token masked with probability t ~ U(0,1)."""
    b = x.shape[0]
    t = rng.uniform(0.02, 1.0, size=(b, 1))
    masked = np.zeros(x.shape, bool)
    masked[:, PROMPT:] = rng.random((b, ANSWER)) < t
    return np.where(masked, mask_id, x), masked


def masked_loss(model, x, ids, masked, rows=False):
    """Mean CE over the batch's masked tokens; with rows=True also, per row, its revealed
    answer count and mean masked CE (rows with nothing masked left out), for the loss log."""
    import torch

    logits = model(input_ids=torch.from_numpy(ids)).logits
    ce = torch.nn.functional.cross_entropy(logits.transpose(1, 2), torch.from_numpy(x),
                                           reduction="none")
    m = torch.from_numpy(masked)
    loss = (ce * m).sum() / m.sum().clamp(min=1)
    if not rows:
        return loss
    k = masked.sum(axis=1)
    row = ((ce * m).sum(dim=1) / m.sum(dim=1).clamp(min=1)).detach().numpy()
    return loss, ANSWER - k[k > 0], row[k > 0]


def sample_batches(train, rng, mask_id, batches: int | None, batch: int):
    """Training batches (x, masked ids, mask) as training draws them: `batches` of them, or
    without end for None."""
    for _ in itertools.count() if batches is None else range(batches):
        x = train[rng.integers(0, len(train), batch)]
        yield (x, *masked_batch(x, rng, mask_id))


def load_model(folder: Path):
    """The checkpoint and tokenizer in `folder`, with the modeling file shipped beside them."""
    import importlib.util

    from transformers import PreTrainedTokenizerFast

    spec = importlib.util.spec_from_file_location("modeling_stdlib_conv",
                                                  folder / "modeling_stdlib_conv.py")
    code = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(code)
    return (code.StdlibConvForMaskedLM.from_pretrained(folder),
            PreTrainedTokenizerFast.from_pretrained(folder))


def loss_curve_only(args) -> int:
    """Measure a trained checkpoint's masked CE by revealed count on training windows."""
    import torch

    from schedopt.curve import loss_by_revealed_count, write_binned_loss_curve

    started = time.monotonic()
    out = Path(args.out)
    model, tokenizer = load_model(out)
    files = split_files()
    train = windows(encode(tokenizer, files["train"][: args.train_files]), PROMPT + ANSWER, 64)
    rng = np.random.default_rng(args.seed)
    model.train()  # as training measured it (no dropout here: the same as eval mode)
    counts, ces = [], []
    with torch.no_grad():
        for x, ids, masked in sample_batches(train, rng, tokenizer.mask_token_id,
                                             args.loss_batches, args.batch):
            _, k, row = masked_loss(model, x, ids, masked, rows=True)
            counts.append(k)
            ces.append(row)
    binned = loss_by_revealed_count(np.concatenate(counts), np.concatenate(ces), ANSWER)
    path = write_binned_loss_curve(args.loss_curve or out / "loss.csv", binned)
    print(json.dumps({"loss_curve": str(path), "rows": int(binned[:, 0].sum()),
                      "train_windows": len(train), "batches": args.loss_batches,
                      "batch": args.batch, "seed": args.seed,
                      "mean_ce": float(np.concatenate(ces).mean()),
                      "seconds": round(time.monotonic() - started, 1)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="schedopt/data/stdlib_mlm")
    parser.add_argument("--loss-curve", default=None, metavar="LOSS.csv",
                        help="training loss by mask ratio (default: OUT/loss.csv)")
    parser.add_argument("--loss-curve-only", action="store_true",
                        help="do not train: measure the checkpoint in OUT on training windows "
                             "and write --loss-curve")
    parser.add_argument("--loss-batches", type=int, default=200,
                        help="with --loss-curve-only: batches of --batch training windows")
    parser.add_argument("--train-files", type=int, default=None,
                        help="with --loss-curve-only: windows from the first K train files "
                             "only (a quick check; default all)")
    parser.add_argument("--minutes", type=float, default=5.0, help="training time budget")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=512)
    parser.add_argument("--width", type=int, default=96)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--pairs", type=int, default=96, help="tune and test pairs (each)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    if args.loss_curve_only:
        return loss_curve_only(args)
    from schedopt.curve import loss_by_revealed_count, write_binned_loss_curve

    rng = np.random.default_rng(args.seed)
    files = split_files()
    tokenizer = train_tokenizer(files["train"], args.vocab)
    mask_id = tokenizer.mask_token_id
    length = PROMPT + ANSWER
    train = windows(encode(tokenizer, files["train"]), length, 64)
    valid = windows(encode(tokenizer, files["valid"]), length, length)
    valid = valid[rng.permutation(len(valid))[:256]]
    held = encode(tokenizer, files["heldout"])
    print(f"{len(files['train'])} train files ({len(train)} windows), {len(files['valid'])} "
          f"validation, {len(files['heldout'])} held-out; vocabulary {len(tokenizer)}",
          flush=True)

    out = Path(args.out)
    code = model_module(out)
    config = code.StdlibConvConfig(vocab_size=len(tokenizer), width=args.width,
                                   pad_token_id=tokenizer.pad_token_id)
    config.auto_map = {"AutoConfig": "modeling_stdlib_conv.StdlibConvConfig",
                       "AutoModelForMaskedLM": "modeling_stdlib_conv.StdlibConvForMaskedLM"}
    config.architectures = ["StdlibConvForMaskedLM"]
    model = code.StdlibConvForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.01)
    valid_rng = np.random.default_rng(12345)  # the same validation masks every time
    valid_batches = [masked_batch(valid[i:i + 64], valid_rng, mask_id) + (valid[i:i + 64],)
                     for i in range(0, len(valid), 64)]

    def validation_loss() -> float:
        model.eval()
        with torch.no_grad():
            losses = [float(masked_loss(model, x, ids, m)) for ids, m, x in valid_batches]
        model.train()
        return float(np.mean(losses))

    budget = args.minutes * 60
    start, step, best, best_state = time.monotonic(), 0, math.inf, None
    history = []
    interval: tuple[list, list] = ([], [])  # revealed counts and row CEs since the last check
    best_curve = None
    draw = sample_batches(train, rng, mask_id, None, args.batch)
    while time.monotonic() - start < budget:
        frac = (time.monotonic() - start) / budget
        for group in optimizer.param_groups:  # warm-up, then cosine decay over the budget
            group["lr"] = args.lr * min(1.0, step / 30) * 0.5 * (1 + math.cos(math.pi * frac))
        x, ids, masked = next(draw)
        loss, k, row = masked_loss(model, x, ids, masked, rows=True)
        interval[0].append(k)
        interval[1].append(row)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        if step % 200 == 0:
            v = validation_loss()
            history.append({"step": step, "train": float(loss.detach()), "valid": v})
            print(f"step {step}: train {float(loss.detach()):.3f}, validation {v:.3f} nats/token "
                  f"({time.monotonic() - start:.0f} s)", flush=True)
            if v < best:
                best = v
                best_state = {k: t.detach().clone() for k, t in model.state_dict().items()}
                best_curve = loss_by_revealed_count(np.concatenate(interval[0]),
                                                    np.concatenate(interval[1]), ANSWER)
            interval = ([], [])
    if best_state is not None:
        model.load_state_dict(best_state)

    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    pairs = windows(held, length, length)
    pairs = pairs[rng.permutation(len(pairs))]
    need = 2 * args.pairs
    if len(pairs) < need:
        raise SystemExit(f"only {len(pairs)} held-out windows; lower --pairs")
    for name, rows in (("tune", pairs[: args.pairs]), ("test", pairs[args.pairs: need])):
        lines = [json.dumps({"prompt_ids": r[:PROMPT].tolist(), "answer_ids": r[PROMPT:].tolist()})
                 for r in rows]
        (out.parent / f"stdlib_{name}.jsonl").write_text("\n".join(lines) + "\n")
    record = {
        "python": platform.python_version(), "torch": torch.__version__,
        "files": {k: [p.name for p in v] for k, v in files.items()},
        "prompt_length": PROMPT, "answer_length": ANSWER, "mask_id": mask_id,
        "eos_id": tokenizer.eos_token_id, "steps": step, "minutes": args.minutes,
        "threads": args.threads, "best_validation_ce": best, "history": history,
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "command": " ".join(sys.argv),
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    if best_curve is not None:
        write_binned_loss_curve(args.loss_curve or out / "loss.csv", best_curve)
    print(f"best validation masked CE {best:.3f} nats/token after {step} steps -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
