"""The MDM, its training, checkpoints and the no-download datasets."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import schedopt  # noqa: F401  (float64 on)
from schedopt.models import (
    MDMConfig,
    heldout_masked_ce,
    init_model,
    load_checkpoint,
    logits_fn,
    masked_cross_entropy,
    random_revealed,
    save_checkpoint,
    train,
)
from schedopt.sources import _data as datasets

TINY = MDMConfig(vocab_size=4, length=8, width=16, depth=1, heads=2, dropout=0.0)


def constant_sequences(num: int, seed: int) -> np.ndarray:
    """Sequences whose 8 tokens all equal one uniform symbol of 4: c_0 = log 4, c_j = 0 after."""
    symbol = np.random.default_rng(seed).integers(0, 4, num)
    return np.repeat(symbol[:, None], 8, axis=1).astype(np.int32)


def params(model) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model))]


# --------------------------------------------------------------------------- model
def test_logits_ignore_tokens_at_masked_positions():
    fn = logits_fn(init_model(TINY, 0))
    rng = np.random.default_rng(0)
    a = rng.integers(0, 4, (5, 8))
    b = np.where(rng.random((5, 8)) < 0.5, a, rng.integers(0, 4, (5, 8)))
    revealed = a == b
    revealed[:, 0] = False
    out = fn(jnp.asarray(a), jnp.asarray(revealed))
    assert out.shape == (5, 8, 4) and out.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out), np.asarray(fn(jnp.asarray(b), revealed)))
    # ... and equal the model's logits on the input with mask ids written in
    masked = jnp.asarray(np.where(revealed, a, TINY.mask_id))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(fn(masked, np.ones_like(revealed))))


def test_masked_cross_entropy_matches_a_direct_sum():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(3, 6, 5)).astype(np.float32)
    tokens = rng.integers(0, 5, (3, 6))
    revealed = rng.random((3, 6)) < 0.4
    revealed[0] = False
    expected = []
    for b in range(3):
        terms = [np.log(np.exp(logits[b, i]).sum()) - logits[b, i, tokens[b, i]]
                 for i in range(6) if not revealed[b, i]]
        expected.append(np.mean(terms))
    got = masked_cross_entropy(jnp.asarray(logits), jnp.asarray(tokens), jnp.asarray(revealed))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)


def test_random_revealed_counts_and_uniform_positions():
    counts = jnp.asarray(np.arange(4000) % 8)
    revealed = np.asarray(random_revealed(4000, 8, counts, key=jax.random.key(0)))
    np.testing.assert_array_equal(revealed.sum(axis=1), np.asarray(counts))
    # Each position is revealed with probability E[j]/n = 3.5/8; 4 binomial sd around it.
    freq = revealed.mean(axis=0)
    assert np.all(np.abs(freq - 3.5 / 8) < 4 * math.sqrt(0.25 / 4000))


def test_uniform_logits_give_log_v_heldout_ce():
    model = init_model(TINY, 0)
    model.head.kernel[...] = jnp.zeros_like(model.head.kernel[...])
    model.head.bias[...] = jnp.zeros_like(model.head.bias[...])
    assert heldout_masked_ce(model, constant_sequences(64, 0)) == pytest.approx(math.log(4))


@pytest.mark.parametrize(
    "kwargs", [dict(width=10, heads=3), dict(depth=0), dict(dropout=1.0), dict(length=True)]
)
def test_bad_config_is_one_value_error(kwargs):
    with pytest.raises(ValueError, match="MDMConfig"):
        MDMConfig(**{**dict(vocab_size=4, length=8, width=16, heads=2), **kwargs})


# --------------------------------------------------------------------------- training
# One set of training settings for every test here, so the training program compiles once.
RUN = dict(max_steps=300, eval_every=50, batch_size=16, learning_rate=1e-2, weight_decay=0.0,
           warmup_steps=20, quiet=True)


@pytest.fixture(scope="module")
def trained():
    return train(TINY, constant_sequences(512, 0), constant_sequences(64, 1), seed=0, **RUN)


def test_training_is_deterministic_given_the_seed(trained):
    again = train(TINY, constant_sequences(512, 0), constant_sequences(64, 1), seed=0, **RUN)
    other = train(TINY, constant_sequences(512, 0), constant_sequences(64, 1), seed=1, **RUN)
    for u, v in zip(params(trained.model), params(again.model), strict=True):
        np.testing.assert_array_equal(u, v)
    assert trained.history == again.history
    assert any(not np.array_equal(u, v)
               for u, v in zip(params(trained.model), params(other.model), strict=True))


def test_training_learns_a_known_law(trained):
    # The law's own masked CE, (1/n) sum_j c_j = log(4) / 8 (only j = 0 is uncertain), is
    # the optimum; a model that ignores the context scores log 4.
    ce = heldout_masked_ce(trained.model, constant_sequences(64, 2))
    assert ce < math.log(4) / 8 + 0.1


def test_early_stopping_keeps_the_best_validation_weights():
    # Noise: 8 training sequences of uniform tokens (tiled to the usual shape, so the
    # compiled training program is reused); memorising them hurts held-out CE.
    noise = np.random.default_rng(0).integers(0, 4, (72, 8))
    result = train(TINY, np.tile(noise[:8], (64, 1)), noise[8:], seed=0, patience=1, **RUN)
    assert result.steps < RUN["max_steps"]  # stopped early
    assert result.best_step < result.steps
    valid = [h["valid_ce"] for h in result.history]
    assert result.valid_ce == min(valid)
    assert valid[-1] > result.valid_ce
    # the returned weights are the best ones, not the last
    assert heldout_masked_ce(result.model, noise[8:], seed=0) == pytest.approx(result.valid_ce)


# --------------------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip(tmp_path):
    model = init_model(TINY, 7)
    path = save_checkpoint(tmp_path / "m.json", model, {"data": "toy", "test_ce": 1.5})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]
    loaded, record = load_checkpoint(path)
    assert record == {"data": "toy", "test_ce": 1.5}
    assert loaded.config == TINY
    for u, v in zip(params(loaded), params(model), strict=True):
        np.testing.assert_array_equal(u, v)


def _damage(tmp_path, how: str):
    model = init_model(TINY, 0)
    path = save_checkpoint(tmp_path / "m.json", model)
    weights = tmp_path / "m.safetensors"
    obj = json.loads(path.read_text())
    if how == "garbage weights":
        weights.write_bytes(b"\x00not a safetensors file")
    elif how == "missing weights":
        weights.unlink()
    elif how == "wrong format":
        obj["format"] = "something.else"
    elif how == "config mismatch":
        obj["config"]["width"] = 32
    elif how == "bad config":
        obj["config"]["depth"] = -1
    elif how == "not json":
        path.write_text("{")
        return path
    path.write_text(json.dumps(obj))
    return path


@pytest.mark.parametrize(
    "how", ["garbage weights", "missing weights", "wrong format", "config mismatch",
            "bad config", "not json"]
)
def test_unreadable_checkpoint_is_one_value_error(tmp_path, how):
    path = _damage(tmp_path, how)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ValueError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_checkpoint_path_must_be_json(tmp_path):
    with pytest.raises(ValueError, match=r"\.json"):
        save_checkpoint(tmp_path / "m.bin", init_model(TINY, 0))
    assert list(tmp_path.iterdir()) == []


def test_shipped_digits_model_beats_independent_pixels():
    model, record = load_checkpoint("digits")
    digits = datasets.digits()
    assert model.config.length == 64 and model.config.vocab_size == 17
    assert record["data"] == "digits"
    # Independent route: the best context-free model, per-pixel frequencies from train
    # (add-one smoothing), scored on the held-out split.
    counts = np.stack([np.bincount(col, minlength=17) for col in digits.train.T]) + 1.0
    logp = np.log(counts / counts.sum(axis=1, keepdims=True))
    independent = -np.mean(logp[np.arange(64), digits.test])
    ce = heldout_masked_ce(model, digits.test, repeats=1, seed=1)
    assert ce < independent - 0.3
    assert abs(ce - record["test_ce"]) < 0.05  # the record describes these weights


# --------------------------------------------------------------------------- data
def test_digits_split_is_fixed_and_disjoint():
    from sklearn.datasets import load_digits

    d = datasets.digits()
    assert (d.train.shape, d.valid.shape, d.test.shape) == ((1300, 64), (200, 64), (297, 64))
    assert d.vocab_size == 17 and d.train.dtype == np.int32
    everything = np.concatenate([d.train, d.valid, d.test])
    original = load_digits().data.astype(np.int32)
    # A permutation of the 1797 images: same multiset of rows.
    assert sorted(map(bytes, everything)) == sorted(map(bytes, original))
    np.testing.assert_array_equal(datasets.digits().test, d.test)


def test_text_round_trip_and_vocabulary():
    source = "def f(x):\n\treturn x + 1  # caf\u00e9\n"
    ids = datasets.encode_text(source)
    assert ids.min() >= 0 and ids.max() < 96
    assert datasets.decode_text(ids) == source.replace("\t", "    ").replace("\u00e9", "?")
    t = datasets.text(length=32)
    assert t.vocab_size == 96 and t.length == 32
    assert min(len(t.train), len(t.valid), len(t.test)) > 100
    assert "def " in datasets.decode_text(t.test[:50])


def test_hmm_samples_follow_the_hmm():
    d = datasets.hmm(length=16, train=2000, valid=10, test=10, seed=0)
    assert d.train.shape == (2000, 16) and d.vocab_size == 8
    law = datasets.default_hmm(16)
    # Single-token frequencies against the stationary emission law, 4 sd.
    marginal = law.stationary @ law.emission
    freq = np.bincount(d.train.ravel(), minlength=8) / d.train.size
    # Tokens within a sequence are correlated; 2000 sequences give sd below sqrt(p / 2000).
    assert np.all(np.abs(freq - marginal) < 4 * np.sqrt(marginal / 2000))


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((0, 8), int), "non-empty"),
        (np.zeros((3, 7), int), "length 7"),
        (np.full((3, 8), 4), "token id 4"),
        (np.full((3, 8), -1), "token id -1"),
        (np.full((3, 8), 0.5), "integer"),
    ],
)
def test_bad_sequences_are_one_value_error(bad, match):
    with pytest.raises(ValueError, match=match):
        datasets.check_sequences(bad, length=8, vocab_size=4)
    with pytest.raises(ValueError, match=match):
        train(TINY, bad, constant_sequences(4, 0), **RUN)


def test_unknown_dataset():
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.load_dataset("imagenet")
