"""`schedopt equal-passes` on the shipped digits model: the command gives the library's rows,
draws its picture, and refuses bad input in one line with exit code 2 and no file."""

from __future__ import annotations

import json

import jax
import pytest

from schedopt.cli import main
from schedopt.models import load_checkpoint, logits_fn
from schedopt.rules import equal_passes
from schedopt.sources import load_dataset

BASE = ["equal-passes", "--model", "digits", "--sequences", "4", "--tune-sequences", "4",
        "--steps", "8", "--batch-size", "8"]


def test_the_command_gives_the_librarys_rows_and_a_picture(tmp_path, capsys):
    png = tmp_path / "passes.png"
    assert main([*BASE, "--json", "--plot", str(png), "--seed", "3"]) == 0
    out = json.loads(capsys.readouterr().out)
    model, _ = load_checkpoint("digits")
    digits = load_dataset("digits")
    direct = equal_passes(logits_fn(model), digits.split("test")[:4], digits.split("valid")[:4],
                          [8], key=jax.random.key(3), batch_size=8)
    assert out["tune"] == "valid" and out["sequences"] == 4
    assert [r["decoder"] for r in out["rows"]] == [r.decoder for r in direct.rows]
    for got, want in zip(out["rows"], direct.rows, strict=True):
        assert got["nll"] == pytest.approx(want.nll, rel=1e-9)
        assert got["passes_mean"] == pytest.approx(want.passes_mean)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("extra,match", [
    (["--tune", "test"], "--tune test is the split scored"),
    (["--tune", "bogus"], "is a split"),
    (["--orders", "margin"], "must start with 'confidence'"),
    (["--orders", "confidence,bogus"], "unknown unmasking order 'bogus'"),
    (["--steps", "0"], "--steps must be between 1 and n = 64"),
    (["--tune-sequences", "1"], "--tune-sequences must be at least 2"),
    (["--block-length", "5"], "does not divide"),
])
def test_bad_input_is_one_line_exit_2_and_no_picture(extra, match, tmp_path, capsys):
    png = tmp_path / "p.png"
    assert main([*BASE, *extra, "--plot", str(png)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and match in err[0], err
    assert not png.exists()


def test_a_picture_that_is_not_png_is_refused_before_any_work(tmp_path, capsys):
    assert main([*BASE, "--plot", str(tmp_path / "p.txt")]) == 2
    assert "must be a .png file" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_hf_model_needs_tune_pairs(capsys):
    assert main(["equal-passes", "--hf-model", "x", "--mask-id", "2", "--data", "t.jsonl"]) == 2
    assert "--hf-model needs --tune" in capsys.readouterr().err
