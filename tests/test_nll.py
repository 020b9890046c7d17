"""Held-out T-step NLL (theory §9 and 11) and the `nll` / `profile --model` commands."""

from __future__ import annotations

import functools
import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schedopt
from schedopt.check import predicted_excess, schedule_nll, schedules_nll
from schedopt.cli import learned, main
from schedopt.estimate import estimate_curves
from schedopt.models import MDMConfig, init_model, logits_fn, save_checkpoint

CONFIG = MDMConfig(vocab_size=3, length=6, width=16, depth=1, heads=2, dropout=0.0)


@functools.cache
def model_fn(seed: int):
    """One logits_fn object per seed: jitted code keyed on the function compiles once."""
    return logits_fn(init_model(CONFIG, seed))


def correlated_data(num: int, seed: int) -> np.ndarray:
    """Pairs of equal neighbours with some noise: a law with real dependence."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 3, (num, 6))
    x[:, 1::2] = np.where(rng.random((num, 3)) < 0.8, x[:, ::2], x[:, 1::2])
    return x.astype(np.int32)


# --------------------------------------------------------------------------- exact routes
def test_exact_model_excess_is_the_expected_kl():
    # With the law's own conditionals, the one-by-one NLL of x is -log mu(x) (chain rule) and
    # the excess is the KL, whose exact value is theory §3 on the closed-form profile.
    # (Schedules of one length T share one compiled sampler.)
    chain = schedopt.distributions.MarkovChain(0.7 * np.eye(3) + 0.1, n=8)
    x = np.asarray(chain.sample(4000, key=jax.random.key(0)))
    schedules = [[2, 3, 3], [1, 1, 6], [5, 2, 1]]
    results = schedules_nll(chain.log_conditionals, x, schedules, key=jax.random.key(1))
    for steps, r in zip(schedules, results, strict=True):
        assert r.one_by_one == pytest.approx(-float(np.mean(chain.log_prob(x))), rel=1e-9)
        exact = float(schedopt.expected_kl(chain.profile(), steps))
        lo, hi = r.excess_interval
        assert lo <= exact <= hi
        assert r.sequences == 4000 and r.steps == 3


def brute_force_nll(fn, x: np.ndarray, steps: list[int]) -> float:
    """E over all orders of -sum_k sum_{i in block k} log p(x_i | first N_{k-1}), averaged
    over the rows of x, by enumerating every permutation of the n positions."""
    n = x.shape[1]
    bounds = np.concatenate([[0], np.cumsum(steps)])
    total = 0.0
    perms = list(itertools.permutations(range(n)))
    for row in x:
        for perm in perms:
            for k in range(len(steps)):
                revealed = np.zeros(n, bool)
                revealed[list(perm[: bounds[k]])] = True
                logp = jax.nn.log_softmax(fn(jnp.asarray(row[None]), jnp.asarray(revealed[None])))
                block = perm[bounds[k] : bounds[k + 1]]
                total -= float(sum(logp[0, i, row[i]] for i in block))
    return total / (len(x) * len(perms))


def test_nll_matches_enumeration_over_orders():
    config = MDMConfig(vocab_size=3, length=4, width=16, depth=1, heads=2, dropout=0.0)
    fn = logits_fn(init_model(config, 3))
    rows = np.array([[0, 1, 2, 2], [1, 1, 0, 2]], np.int32)
    exact = brute_force_nll(fn, rows, [1, 3])
    r = schedule_nll(fn, np.tile(rows, (1000, 1)), [1, 3], key=jax.random.key(0))
    lo, hi = r.interval
    assert lo <= exact <= hi


# --------------------------------------------------------------------------- theory §11
@pytest.mark.parametrize("seed", [0, 1])
def test_excess_agrees_with_the_data_curve_for_any_model(seed):
    # An untrained model is as good a test as any: the identity holds for every model.
    fn = model_fn(seed)
    x = correlated_data(1500, seed)
    schedules = [[3, 3], [1, 5], [4, 2]]  # one T: one compiled sampler (and T = 6)
    results = schedules_nll(fn, x, schedules, key=jax.random.key(seed))
    est = estimate_curves(fn, x, key=jax.random.key(100 + seed), grid=6)  # every count
    for steps, r in zip(schedules, results, strict=True):
        predicted, predicted_se = predicted_excess(est, steps)
        spread = math.hypot(r.excess_stderr, predicted_se)
        assert abs(r.excess - predicted) <= 1.96 * spread
        # ... and the prediction is theory §3's formula on the raw curve
        raw = schedopt.EntropyProfile.from_conditional_entropy(
            est.cross_entropy.mean(0), est.revealed, n=6, check=False)
        assert float(schedopt.expected_kl(raw, steps)) == pytest.approx(predicted)


def test_one_by_one_is_shared_and_has_zero_excess():
    # Same function, shapes and T as the identity test above: nothing new to compile.
    fn = model_fn(0)
    x = correlated_data(1500, 0)
    a, b = schedules_nll(fn, x, [[2, 4], [1] * 6], key=jax.random.key(0))
    assert a.one_by_one == b.one_by_one == b.nll
    assert b.excess == 0.0 and b.excess_stderr == 0.0
    assert a.forward_passes == 1500 * (2 + 6) and b.forward_passes == 1500 * 6
    c = schedule_nll(fn, x[:750], [2, 4], key=jax.random.key(0), orders=2)
    assert c.orders == 2 and c.forward_passes == a.forward_passes
    assert c.per_sequence.shape == (750,) and c.sequences == 750
    # the same key gives the same orders, so the result is reproducible
    assert schedule_nll(fn, x, [2, 4], key=jax.random.key(0)) == a


# --------------------------------------------------------------------------- bad input
def nan_logits(tokens, revealed):
    return jnp.full((*tokens.shape, 3), jnp.nan, jnp.float32)


def flat_logits(tokens, revealed):
    return jnp.zeros(tokens.shape, jnp.float32)


@pytest.mark.parametrize(
    "fn, data, steps, match",
    [
        ("model", np.zeros((4, 5), np.int32), [5], "length 5"),
        ("model", np.full((4, 6), 3, np.int32), [6], "token id 3"),
        ("model", np.zeros((0, 6), np.int32), [6], "at least 2"),
        ("model", np.zeros((1, 6), np.int32), [6], "at least 2"),
        ("model", np.zeros((4, 6), np.int32), [2, 2], "unmasks 4 tokens"),
        (nan_logits, np.zeros((4, 6), np.int32), [3, 3], "NaN"),
        (flat_logits, np.zeros((4, 6), np.int32), [3, 3], "shape"),
    ],
)
def test_bad_input_is_one_value_error(fn, data, steps, match):
    fn = model_fn(0) if fn == "model" else fn
    with pytest.raises(ValueError, match=match) as info:
        schedule_nll(fn, data, steps, key=jax.random.key(0))
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def digits_sized_checkpoint(tmp_path_factory):
    """A tiny untrained model of digits' shape, recorded as trained on digits."""
    config = MDMConfig(vocab_size=17, length=64, width=16, depth=1, heads=2, dropout=0.0)
    path = tmp_path_factory.mktemp("model") / "tiny.json"
    return save_checkpoint(path, init_model(config, 0), {"data": "digits", "test_ce": 2.8})


def write_schedule(path, steps):
    path.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": sum(steps),
                                "tokens_per_step": steps}))
    return str(path)


def test_cli_nll_prints_excess_and_prediction(tmp_path, digits_sized_checkpoint, capsys):
    a = write_schedule(tmp_path / "a.json", [32, 32])
    b = write_schedule(tmp_path / "b.json", [16, 48])  # same T: one compiled sampler
    code = main(["nll", "--model", str(digits_sized_checkpoint), "--sequences", "40",
                 "--schedule", a, "--schedule", b, "--json"])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["data"] == "digits" and out["sequences"] == 40
    for row in out["results"]:
        spread = math.hypot(row["excess_stderr"], row["predicted_excess_stderr"])
        assert abs(row["excess"] - row["predicted_excess"]) <= 1.96 * spread
    table = learned._table(out, out["results"], 64)
    assert "predicted excess" in table and "a.json" in table and "b.json" in table


def test_cli_profile_from_model(tmp_path, digits_sized_checkpoint, capsys):
    out = tmp_path / "p.json"
    code = main(["profile", "--model", str(digits_sized_checkpoint), "--sequences", "16",
                 "--out", str(out)])
    assert code == 0
    profile = schedopt.EntropyProfile.load(out)
    assert profile.n == 64
    assert profile.meta["kind"] == "data" and profile.meta["sequences"] == 16
    assert profile.meta["forward_passes"] == 16 * 64


@pytest.mark.parametrize(
    "args, match",
    [
        (["--model", "MISSING.json"], "does not exist"),
        (["--data", "text"], "token id"),
        (["--sequences", "1"], "at least 2"),
    ],
)
def test_cli_bad_model_input_is_one_line(tmp_path, digits_sized_checkpoint, capsys, args,
                                         match):
    s = write_schedule(tmp_path / "s.json", [64])
    base = {"--model": str(digits_sized_checkpoint)}
    argv = ["nll", *sum(([k, v] for k, v in base.items() if k not in args), []), *args,
            "--schedule", s]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and "\n" not in err
    out = tmp_path / "p.json"
    argv = ["profile", *argv[1:-2], "--out", str(out)]
    assert main(argv) == 2
    assert not out.exists()
