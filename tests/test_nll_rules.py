"""`schedopt nll` for state-dependent rules (theory §13): exact per-sequence scores and bad input.

The per-sequence CSV is compared with a plain per-sequence loop written here: it runs the model
on one sequence at a time, ranks the masked positions with Python's sorted (ties to the lowest
position) and adds the cross-entropies of the revealed tokens.
"""

import csv
import json
import math

import jax
import numpy as np
import pytest

from schedopt.cli import main
from schedopt.models import MDMConfig, init_model, logits_fn, save_checkpoint
from schedopt.sources import load_dataset


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    """A tiny untrained model of digits' shape, recorded as trained on digits."""
    config = MDMConfig(vocab_size=17, length=64, width=16, depth=1, heads=2, dropout=0.0)
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    save_checkpoint(path, init_model(config, 0), {"data": "digits", "test_ce": 2.8})
    return path


def _schedule(path, steps):
    path.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": sum(steps),
                                "tokens_per_step": steps}))
    return str(path)


def _naive(fn, x, *, counts=None, tau=None):
    """(NLL, steps) of one sequence under confidence ranking (counts) or a threshold (tau)."""
    n = x.size
    revealed = np.zeros(n, bool)
    nll, steps = 0.0, 0
    while not revealed.all():
        logits = np.asarray(fn(x[None].astype(np.int32), revealed[None]), np.float64)[0]
        logp = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1,
                                                                               keepdims=True)) \
            - logits.max(-1, keepdims=True)
        masked = [i for i in range(n) if not revealed[i]]
        ranked = sorted(masked, key=lambda i: (-logp[i].max(), i))
        if tau is None:
            k = counts[steps]
        else:
            k = max(1, sum(math.exp(logp[i].max()) > tau for i in masked))
        for i in ranked[:k]:
            nll -= logp[i, x[i]]
            revealed[i] = True
        steps += 1
    return nll, steps


def _read(path):
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("args", [["--unmask-order", "confidence"], ["--threshold", "0.2"]])
def test_per_sequence_csv_matches_a_plain_loop(tmp_path, checkpoint, capsys, args):
    from schedopt.models import load_checkpoint

    counts = [16, 16, 16, 8, 8]
    extra = ["--schedule", _schedule(tmp_path / "s.json", counts)] if "--unmask-order" in args \
        else []
    out = tmp_path / "seq.csv"
    code = main(["nll", "--model", str(checkpoint), "--sequences", "4", *args, *extra,
                 "--per-sequence", str(out), "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)["results"][0]
    rows = _read(out)
    assert len(rows) == 4
    data = load_dataset("digits").split("test")[:4]
    fn = logits_fn(load_checkpoint(checkpoint)[0])
    for row, x in zip(rows, data, strict=True):
        nll, steps = _naive(fn, np.asarray(x), counts=counts,
                            tau=0.2 if "--threshold" in args else None)
        assert float(row["nll"]) == pytest.approx(nll, rel=1e-4)
        assert int(row["forward_passes"]) == steps
    assert result["nll"] == pytest.approx(np.mean([float(r["nll"]) for r in rows]), rel=1e-6)


@pytest.mark.parametrize("args, match", [
    (["--unmask-order", "lowest", "--schedule", "S"], "unknown unmasking order"),
    (["--threshold", "0"], "(0, 1]"),
    (["--threshold", "1.2"], "(0, 1]"),
    (["--entropy-bound", "-0.5"], ">= 0"),
    (["--threshold", "0.9", "--schedule", "S"], "drop --schedule"),
    (["--unmask-order", "confidence", "--schedule", "BAD_N"], "n = 64"),
    (["--unmask-order", "confidence"], "--schedule"),
])
def test_bad_rule_input_is_one_line_and_writes_nothing(tmp_path, checkpoint, capsys, args,
                                                       match):
    good = _schedule(tmp_path / "s.json", [32, 32])
    bad_n = _schedule(tmp_path / "b.json", [32, 16])
    args = [{"S": good, "BAD_N": bad_n}.get(a, a) for a in args]
    out = tmp_path / "seq.csv"
    assert main(["nll", "--model", str(checkpoint), "--sequences", "4", *args,
                 "--per-sequence", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err
    assert not out.exists()


def test_rule_nll_from_python_with_blocks():
    """Blocks: a left-to-right rule inside blocks equals left to right without blocks."""
    from schedopt.rules import OrderRule, rule_nll

    config = MDMConfig(vocab_size=5, length=8, width=16, depth=1, heads=2, dropout=0.0)
    fn = logits_fn(init_model(config, 1))
    x = np.asarray(jax.random.randint(jax.random.key(0), (6, 8), 0, 5))
    a = rule_nll(fn, x, OrderRule("left-to-right", block_length=4), [2, 2, 3, 1])
    b = rule_nll(fn, x, OrderRule("left-to-right"), [2, 2, 3, 1])
    np.testing.assert_allclose(a.per_sequence, b.per_sequence, rtol=1e-6)
