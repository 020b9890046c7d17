"""The shipped example: a masked LM trained on the standard library, in Hugging Face format.

Checks that it loads offline, that its shipped pairs come from files it never trained on, that
it learned something (held-out NLL well below the uniform log V), and that the whole loop
(block curves -> schedule -> held-out NLL -> export) runs from the command line.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")

import schedopt  # noqa: E402
from schedopt.cli import main  # noqa: E402

DATA = Path(schedopt.__file__).parent / "data"
MODEL = DATA / "stdlib_mlm"


def test_shipped_pairs_are_held_out_and_well_formed():
    record = json.loads((MODEL / "training.json").read_text())
    assert not set(record["files"]["heldout"]) & set(record["files"]["train"])
    assert not set(record["files"]["heldout"]) & set(record["files"]["valid"])
    from schedopt.sources import read_pairs

    tune, test = (read_pairs(DATA / f"stdlib_{s}.jsonl", vocab_size=512) for s in ("tune", "test"))
    assert tune.answers.shape[1] == test.answers.shape[1] == record["answer_length"]
    def pairs(p):
        return {(tuple(a), tuple(b)) for a, b in zip(p.prompts, p.answers.tolist(), strict=True)}

    assert not pairs(tune) & pairs(test)  # disjoint
    size = sum(f.stat().st_size for f in MODEL.iterdir())
    assert size < 8e6  # a few MB


def test_the_whole_loop_on_the_command_line(tmp_path, capsys):
    record = json.loads((MODEL / "training.json").read_text())
    mask = str(record["mask_id"])
    common = ["--hf-model", str(MODEL), "--trust-remote-code", "--mask-id", mask,
              "--sequences", "6"]
    blocks = tmp_path / "blocks.json"
    assert main(["--quiet", "profile", *common, "--data", str(DATA / "stdlib_tune.jsonl"),
                 "--block-length", "32", "--out", str(blocks)]) == 0
    capsys.readouterr()
    opt = tmp_path / "opt.json"
    assert main(["optimize", "--profile", str(blocks), "--block-length", "32", "--steps", "8",
                 "--out", str(opt)]) == 0
    capsys.readouterr()
    assert main(["--quiet", "nll", *common, "--data", str(DATA / "stdlib_test.jsonl"),
                 "--schedule", str(opt), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["block_length"] == 32
    per_token = result["results"][0]["one_by_one"] / record["answer_length"]
    assert per_token < math.log(512) - 1.0  # it learned: far below the uniform code length
    counts = tmp_path / "counts.json"
    assert main(["export", "--schedule", str(opt), "--format", "counts", "--block-length", "32",
                 "--out", str(counts)]) == 0
    capsys.readouterr()
    exported = json.loads(counts.read_text())
    matrix = np.asarray(exported["counts"])
    assert matrix.shape[0] == 2 and np.all(matrix.sum(axis=1) == 32)  # each block fully unmasked


def _script():
    """scripts/train_stdlib_mlm.py as a module (scripts are not a package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / "train_stdlib_mlm.py"
    spec = importlib.util.spec_from_file_location("train_stdlib_mlm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loss_curve_only_matches_a_direct_computation(tmp_path):
    # A tiny untrained model of the shipped architecture with the shipped tokenizer; the
    # post-hoc mode measures it on 4 batches of 16 windows from 4 train files. Recompute the
    # same rows by another route (log-softmax gathered per masked token, binned by a dict).
    import shutil
    from collections import defaultdict

    import torch

    from schedopt.curve import profile_from_loss_curve_file, read_loss_curve

    script = _script()
    code = script.model_module(tmp_path)
    torch.manual_seed(0)
    config = code.StdlibConvConfig(vocab_size=512, width=8, dilations=(1, 2), pad_token_id=0)
    code.StdlibConvForMaskedLM(config).save_pretrained(tmp_path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(MODEL / name, tmp_path / name)
    threads = str(torch.get_num_threads())
    assert script.main(["--loss-curve-only", "--out", str(tmp_path), "--loss-batches", "4",
                        "--batch", "16", "--seed", "3", "--threads", threads,
                        "--train-files", "4"]) == 0
    ratio, ce, se = read_loss_curve(tmp_path / "loss.csv")

    model, tokenizer = script.load_model(tmp_path)
    train = script.windows(script.encode(tokenizer, script.split_files()["train"][:4]),
                           script.PROMPT + script.ANSWER, 64)
    rows = defaultdict(list)
    batches = script.sample_batches(train, np.random.default_rng(3), tokenizer.mask_token_id,
                                    4, 16)
    with torch.no_grad():
        for x, ids, masked in batches:
            assert not masked[:, : script.PROMPT].any()  # the prompt is always visible
            logp = torch.log_softmax(model(input_ids=torch.from_numpy(ids)).logits.double(),
                                     dim=-1).numpy()
            for b in range(x.shape[0]):
                pos = np.nonzero(masked[b])[0]
                if pos.size:
                    rows[script.ANSWER - pos.size].append(-logp[b, pos, x[b, pos]].mean())
    expected = {(script.ANSWER - j) / script.ANSWER: v for j, v in rows.items() if len(v) >= 2}
    assert sorted(ratio.tolist()) == pytest.approx(sorted(expected))
    for r, c, s in zip(ratio, ce, se, strict=True):
        v = np.asarray(expected[min(expected, key=lambda k: abs(k - r))])
        assert c == pytest.approx(v.mean(), rel=1e-5)
        assert s == pytest.approx(v.std(ddof=1) / math.sqrt(v.size), rel=1e-3, abs=1e-6)
    profile = profile_from_loss_curve_file(tmp_path / "loss.csv", length=script.ANSWER)
    assert profile.n == script.ANSWER


def test_shipped_training_log_reads_as_a_profile():
    from schedopt.curve import profile_from_loss_curve_file, read_loss_curve

    record = json.loads((MODEL / "training.json").read_text())
    n = record["answer_length"]
    ratio, ce, se = read_loss_curve(MODEL / "loss.csv")
    assert se is not None and np.allclose(ratio * n, np.round(ratio * n))  # whole counts
    profile = profile_from_loss_curve_file(MODEL / "loss.csv", length=n)
    assert profile.n == n and profile.meta["source"] == "loss curve"
    # Training loss of a model that learned: below the uniform code length at every ratio.
    assert np.all(ce < math.log(512))
