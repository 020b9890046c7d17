"""The Monte Carlo profile estimator against closed forms, and on 8 simulated devices."""

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schedopt
from schedopt.distributions import MarkovChain, Product
from schedopt.estimate import estimate_curves, revealed_grid

CHAIN = MarkovChain(0.8 * np.eye(4) + 0.05, 24)
DATA = np.asarray(CHAIN.sample(512, key=jax.random.key(0)))


@pytest.mark.parametrize("kind", ["data", "model"])
def test_both_curves_estimate_the_exact_markov_curve(kind):
    exact = np.asarray(CHAIN.profile().conditional_entropy)
    estimate = estimate_curves(CHAIN.log_conditionals, DATA, key=jax.random.key(1))
    mean, se = estimate.curve(kind)
    grid = estimate.revealed
    assert np.all(np.abs(mean - exact[grid]) <= 4 * se + 1e-9)
    gap, gap_se = estimate.calibration_gap  # the law's own conditionals are calibrated
    assert abs(gap) <= 4 * gap_se


def test_miscalibrated_model_against_closed_form():
    """A product 'model' q scored on data from a product law p: both curves are constant.

    Data curve c_j = mean_i sum_v p_iv (-log q_iv); model curve = mean_i H(q_i), for every j.
    """
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5), size=12)
    q = rng.dirichlet(np.ones(5) * 0.3, size=12)  # sharper than p: overconfident
    data = np.asarray(Product(p).sample(jax.random.key(2), 3000))

    def logits_fn(tokens, revealed):
        return jnp.broadcast_to(jnp.log(q), (*tokens.shape, 5))

    cross = np.mean(np.sum(p * -np.log(q), axis=1))
    model = np.mean(np.sum(q * -np.log(q), axis=1))
    estimate = estimate_curves(logits_fn, data, key=jax.random.key(4), grid=6)
    for kind, exact in (("data", cross), ("model", model)):
        mean, se = estimate.curve(kind)
        assert np.all(np.abs(mean - exact) <= 4 * se + 1e-9), kind
    gap, gap_se = estimate.calibration_gap
    assert abs(gap - 12 * (cross - model)) <= 4 * gap_se
    assert gap > 0  # overconfident: held-out cross-entropy exceeds predicted entropy


def test_profile_result_carries_diagnostics():
    profile = schedopt.estimate_profile(
        CHAIN.log_conditionals, DATA[:64], key=jax.random.key(5), grid=[0, 5, 23]
    )
    meta = profile.meta
    assert meta["grid"] == [0, 5, 23] and meta["forward_passes"] == 64 * 3
    assert meta["kind"] == "data" and meta["sequences"] == 64
    g = np.asarray(profile.conditional_entropy)
    assert np.all(np.diff(g) <= 1e-12) and np.all(g >= 0)  # regularised
    assert profile.stderr is not None and profile.stderr.shape == (24,)


def test_bootstrap_stderr_is_close_to_the_analytic_one():
    estimate = estimate_curves(CHAIN.log_conditionals, DATA, key=jax.random.key(1))
    _, analytic = estimate.curve("data")
    _, boot = estimate.curve("data", bootstrap=400, seed=0)
    np.testing.assert_allclose(boot[1:], analytic[1:], rtol=0.2)


@pytest.mark.parametrize("n,size", [(1, 33), (10, 33), (1000, 33), (1000, 5)])
def test_revealed_grid_is_denser_at_both_ends(n, size):
    grid = revealed_grid(n, size)
    assert grid[0] == 0 and grid[-1] == n - 1 and np.all(np.diff(grid) > 0)
    if size < n:
        gaps = np.diff(grid)
        assert gaps[0] < gaps[gaps.size // 2] and gaps[-1] < gaps[gaps.size // 2]


_SHARDED_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax, numpy as np
    import schedopt
    from schedopt.distributions import MarkovChain
    from schedopt.estimate import estimate_curves
    chain = MarkovChain(0.8 * np.eye(4) + 0.05, 24)
    data = np.asarray(chain.sample(512, key=jax.random.key(0)))[:37]
    e = estimate_curves(chain.log_conditionals, data, key=jax.random.key(9))
    json.dump({"devices": jax.device_count(), "ce": e.cross_entropy.tolist(),
               "ent": e.predictive_entropy.tolist()}, sys.stdout)
    """
)


def test_eight_devices_give_the_one_device_result():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", _SHARDED_SCRIPT], env=env, capture_output=True, text=True,
        check=True, timeout=120,
    )
    sharded = json.loads(out.stdout)
    assert sharded["devices"] == 8
    # 37 sequences x 24 grid points: the last batch is padded; 128 rows split 8 ways.
    single = estimate_curves(CHAIN.log_conditionals, DATA[:37], key=jax.random.key(9))
    np.testing.assert_allclose(sharded["ce"], single.cross_entropy, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(sharded["ent"], single.predictive_entropy, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- bad input
def _constant_logits(vocab, shape_fn=lambda t: (*t.shape, 4)):
    def fn(tokens, revealed):
        return jnp.zeros(shape_fn(tokens))

    return fn


@pytest.mark.parametrize(
    "fn,data,match",
    [
        (_constant_logits(4), np.zeros((0, 5), int), "empty"),
        (_constant_logits(4), np.zeros(5, int), "2-D"),
        (_constant_logits(4), np.full((2, 5), 4), "token 4 .* V = 4"),
        (_constant_logits(4), np.full((2, 5), -1), "token -1"),
        (_constant_logits(4, lambda t: t.shape), np.zeros((2, 5), int), "must return logits"),
        (lambda t, r: jnp.full((*t.shape, 4), jnp.nan), np.zeros((2, 5), int), "NaN"),
        (CHAIN.log_conditionals, np.zeros((2, 5), int), "n = 24"),
    ],
)
def test_bad_input_one_clear_line(fn, data, match):
    with pytest.raises(ValueError, match=match) as info:
        schedopt.estimate_profile(fn, data, key=jax.random.key(0))
    assert "\n" not in str(info.value)


def test_bad_kind_and_grid():
    with pytest.raises(ValueError, match="kind must be"):
        schedopt.estimate_profile(CHAIN.log_conditionals, DATA, key=jax.random.key(0), kind="x")
    with pytest.raises(ValueError, match="between 0 and n - 1 = 23"):
        estimate_curves(CHAIN.log_conditionals, DATA, key=jax.random.key(0), grid=[0, 30])
