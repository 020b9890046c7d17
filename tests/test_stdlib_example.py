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
    from schedopt.pairs import read_pairs

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
