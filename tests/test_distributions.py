"""Known distributions against independent routes: enumeration, closed forms, counting."""

import math
from fractions import Fraction

import jax
import numpy as np
import pytest
from scipy import stats

import schedopt
from schedopt.distributions import (
    HiddenMarkov,
    LinearCode,
    MarkovChain,
    MixtureOfProducts,
    Product,
    Table,
)


def _random_stochastic(rng, rows, cols, concentration=1.0):
    return rng.dirichlet(np.full(cols, concentration), size=rows)


def _small_laws():
    """One small instance of every distribution (V^n <= 729), each with real correlations.

    Reed-Solomon codes share LinearCode's conditionals; their closed-form profile is checked
    by `test_reed_solomon_profile_equals_enumeration`.
    """
    rng = np.random.default_rng(0)
    sticky = 0.7 * np.eye(3) + 0.3 * _random_stochastic(rng, 3, 3)
    return {
        "markov": MarkovChain(_random_stochastic(rng, 3, 3, 0.5), 6),
        "hmm": HiddenMarkov(sticky, _random_stochastic(rng, 3, 3, 0.5), 6),
        "mixture": MixtureOfProducts(
            [0.5, 0.3, 0.2], _random_stochastic(rng, 18, 3, 0.3).reshape(3, 6, 3)
        ),
        "product": Product(_random_stochastic(rng, 6, 3)),
        "parity": LinearCode.parity(6, q=3),
        "code": LinearCode(rng.integers(0, 3, size=(3, 6)), q=3),
    }


LAWS = _small_laws()


# --------------------------------------------------------------------------- exact profiles
@pytest.mark.parametrize("vocab,n,seed", [(2, 9, 0), (3, 7, 1), (2, 1, 4)])
def test_markov_closed_form_equals_enumeration(vocab, n, seed):
    rng = np.random.default_rng(seed)
    chain = MarkovChain(_random_stochastic(rng, vocab, vocab, 0.7), n)
    exact = Table(chain.table()).profile()
    np.testing.assert_allclose(chain.profile().entropy, exact.entropy, rtol=0, atol=1e-10)


def test_markov_worked_example_theory_10():
    profile = MarkovChain(0.8 * np.eye(4) + 0.05, 128).profile()
    h = np.asarray(profile.entropy)
    assert h[1] == pytest.approx(1.386294, abs=1e-6)
    assert h[2] == pytest.approx(2.738023, abs=1e-6)
    assert h[-1] == pytest.approx(75.998913, abs=1e-6)
    assert profile.total_correlation == pytest.approx(101.446766, abs=1e-6)
    assert profile.dual_total_correlation == pytest.approx(37.639080, abs=1e-6)


def _theory_8_direct(chain, n):
    """theory §8 term by term, with exact rational binomial weights (slow, independent)."""
    p, pi = chain.transition, chain.stationary
    h_pi = -np.sum(pi * np.log(pi))
    power = np.eye(p.shape[0])
    h = []
    for _ in range(1, n):
        power = power @ p
        h.append(float(np.sum(pi * -np.sum(np.where(power > 0, power * np.log(power), 0), 1))))
    out = [0.0, h_pi]
    for j in range(2, n + 1):
        total = Fraction(0)
        for d in range(1, n - j + 2):
            w = Fraction((n - d) * math.comb(n - d - 1, j - 2), math.comb(n, j))
            total += w * Fraction(h[d - 1])
        out.append(h_pi + float(total))
    return np.asarray(out)


@pytest.mark.parametrize(
    "transition",
    [
        0.98 * np.eye(3) + 0.02 / 3,  # slowly mixing: no lag is negligible
        np.roll(np.eye(3), 1, axis=1) * 0.97 + 0.01,  # nearly periodic
        np.full((2, 2), 0.5),  # independent tokens
    ],
)
def test_markov_closed_form_equals_direct_sum(transition):
    n = 120
    chain = MarkovChain(transition, n)
    np.testing.assert_allclose(chain.profile().entropy, _theory_8_direct(chain, n), atol=1e-9)


@pytest.mark.parametrize("name", ["code", "markov", "parity", "product"])
def test_exact_profiles_equal_enumeration(name):
    """Laws that claim an exact profile; hmm and mixture are Monte Carlo (tested below)."""
    law = LAWS[name]
    assert law.exact_profile
    exact = Table(law.table()).profile()
    np.testing.assert_allclose(law.profile().entropy, exact.entropy, atol=1e-10)


@pytest.mark.parametrize("n,q", [(5, 2), (4, 3), (2, 7)])
def test_parity_profile_theory_8(n, q):
    h = np.asarray(LinearCode.parity(n, q).profile().entropy)
    expected = np.minimum(np.arange(n + 1), n - 1) * math.log(q)
    np.testing.assert_allclose(h, expected, atol=1e-12)


def test_reed_solomon_profile_equals_enumeration():
    code = LinearCode.reed_solomon(5, 2, q=5)
    exact = Table(code.table()).profile()
    np.testing.assert_allclose(code.profile().entropy, exact.entropy, atol=1e-12)


def test_reed_solomon_large_is_a_step():
    code = LinearCode.reed_solomon(97, 10, q=97)
    z = np.asarray(code.profile().information_curve)
    np.testing.assert_allclose(z, np.where(np.arange(1, 98) > 10, math.log(97), 0.0), atol=1e-12)


# --------------------------------------------------------------------------- the law itself
_SAMPLES = {}


def _samples(name):
    """4000 draws per law, shared by the tests (each distinct shape costs a compilation)."""
    if name not in _SAMPLES:
        _SAMPLES[name] = np.asarray(LAWS[name].sample(4000, key=jax.random.key(6)))
    return _SAMPLES[name]


@pytest.mark.parametrize("name", sorted(LAWS))
def test_table_is_a_distribution(name):
    assert LAWS[name].table().sum() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", sorted(LAWS))
def test_conditionals_equal_enumeration(name):
    """Conditionals equal sums of the enumerated joint, and ignore unrevealed values."""
    law = LAWS[name]
    rng = np.random.default_rng(1)
    x = _samples(name)[:32]
    revealed = rng.random(x.shape) < 0.5
    scrambled = np.where(revealed, x, rng.integers(0, law.vocab_size, x.shape))
    both = law.conditionals(np.concatenate([x, scrambled]), np.concatenate([revealed] * 2))
    expected = Table(law.table()).conditionals(x, revealed)
    np.testing.assert_allclose(both[:32], expected, atol=1e-12)
    np.testing.assert_array_equal(both[:32], both[32:])


@pytest.mark.parametrize("name", ["markov", "hmm", "mixture", "code"])
def test_samples_follow_the_law(name):
    """Chi-square goodness of fit of whole sequences against the enumerated table."""
    law = LAWS[name]
    p = law.table().reshape(-1)
    x = _samples(name)
    index = np.ravel_multi_index(x.T, (law.vocab_size,) * law.n)
    counts = np.bincount(index, minlength=p.size)
    assert np.all(counts[p == 0] == 0)
    expected = p * x.shape[0]
    keep = expected >= 5  # pool rare cells so the chi-square approximation holds
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    if expected[-1] == 0:
        observed, expected = observed[:-1], expected[:-1]
    assert stats.chisquare(observed, expected).pvalue > 1e-3


def test_markov_long_chain():
    # Correctness at large n is the n = 120 direct-sum test; here shapes and monotonicity.
    profile = MarkovChain(0.999 * np.eye(8) + 0.001 / 8, 32768).profile()
    g = np.asarray(profile.conditional_entropy)
    assert profile.n == 32768 and np.all(np.diff(g) <= 1e-12) and g[-1] > 0


def test_hidden_markov_states_match_tokens():
    hmm = LAWS["hmm"]
    tokens, hidden = hmm.sample_hidden(4000, key=jax.random.key(6))
    np.testing.assert_array_equal(tokens, _samples("hmm"))
    assert hidden.shape == (4000, 6) and int(hidden.max()) < 3


# --------------------------------------------------------------------------- Monte Carlo profiles
@pytest.mark.parametrize("name", ["hmm", "mixture", "parity"])
def test_monte_carlo_profiles_agree(name):
    """Every Monte Carlo profile is within 4 standard errors of the exact one."""
    law = LAWS[name]
    exact = np.asarray(Table(law.table()).profile().conditional_entropy)
    if law.exact_profile:  # exercise the estimator on laws with an exact profile too
        estimate = schedopt.estimate_profile(
            law.log_conditionals, _samples(name), key=jax.random.key(7), kind="model"
        )
    else:  # the distribution's own default profile
        _samples(name)  # compiles sample() for this shape once
        estimate = schedopt.estimate_law(law, key=jax.random.key(7), samples=4000).profile("model")
        assert estimate.meta["source"] == "monte carlo"
    grid = np.asarray(estimate.meta["grid"])
    raw = np.asarray(estimate.meta["raw_conditional_entropy"])
    se = np.asarray(estimate.stderr)[grid]
    assert np.all(np.abs(raw - exact[grid]) <= 4 * se + 1e-9)
    h_se = estimate.meta["joint_entropy_stderr"]
    assert abs(raw.sum() - exact.sum()) <= 4 * h_se + 1e-9  # every count is on the grid



@pytest.mark.parametrize("name", ["hmm", "mixture"])
def test_a_monte_carlo_profile_needs_a_key(name):
    """A law without an exact curve says where its estimate is; no estimate assumes a seed."""
    law = LAWS[name]
    assert not law.exact_profile
    with pytest.raises(ValueError, match=r"estimate_law\(law, key=jax.random.key\(seed\)\)"):
        law.profile()
    with pytest.raises(TypeError, match="key"):
        schedopt.estimate_law(law, samples=16)
    with pytest.raises(TypeError, match=r"pass key=jax.random.key\(0\)"):
        schedopt.estimate_law(law, key=None, samples=16)

# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: MarkovChain([[0.5, 0.6], [0.5, 0.5]], 4), r"transition\[0\] sums to 1.1"),
        (lambda: MarkovChain([[1.2, -0.2], [0.5, 0.5]], 4), r"negative"),
        (lambda: MarkovChain([[0.5, 0.5]], 4), r"square"),
        (lambda: MarkovChain(np.eye(2), 4), r"stationary distribution"),
        (lambda: MarkovChain(np.full((2, 2), 0.5), 0), r"n must be .* >= 1"),
        (lambda: MarkovChain([[np.nan, 1.0], [0.5, 0.5]], 3), r"finite"),
        (lambda: HiddenMarkov(np.full((2, 2), 0.5), np.full((3, 2), 0.5), 4), r"emission has 3"),
        (lambda: MixtureOfProducts([0.5, 0.5], np.full((3, 4, 2), 0.5)), r"weights has 2"),
        (lambda: Product(np.full((4,), 0.25)), r"2-D"),
        (lambda: Table(np.full((2,) * 17, 2.0**-17)), r"65536.*estimate_profile"),
        (lambda: Table(np.full((2, 3), 1 / 6)), r"equal length"),
        (lambda: LinearCode(np.eye(2), 4), r"prime.*try 5"),
        (lambda: LinearCode([[0, 5]], 3), r"0\.\.2"),
        (lambda: LinearCode.reed_solomon(8, 2, 7), r"at most q = 7"),
    ],
)
def test_bad_input_one_clear_line(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_conditionals_shape_errors():
    law = LAWS["markov"]
    with pytest.raises(ValueError, match="n = 6"):
        law.conditionals(np.zeros((2, 5), int), np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="one flag per token"):
        law.conditionals(np.zeros((2, 6), int), np.zeros((2, 5), bool))
    with pytest.raises(ValueError, match="token 3 but the vocabulary is 0..2"):
        law.conditionals(np.full((2, 6), 3), np.zeros((2, 6), bool))


def test_table_refuses_large_enumeration_from_structured_laws():
    with pytest.raises(ValueError, match="MarkovChain"):
        MarkovChain(np.full((4, 4), 0.25), 9).table()


@pytest.mark.parametrize("name", sorted(LAWS))
def test_a_law_traced_in_float32_after_an_estimate_in_float64(name):
    # The laws run in float64 inside schedopt's estimators and in the caller's precision
    # inside the caller's jit. JAX caches the conversion of a numpy parameter per object, so
    # after an estimate the law must still trace cleanly (and agree) in float32.
    from schedopt.estimate import estimate_curves

    law = LAWS[name]
    x = _samples(name)[:8]
    estimate_curves(law.log_conditionals, x, key=jax.random.key(0), grid=law.n)
    revealed = np.random.default_rng(2).random(x.shape) < 0.5
    traced = jax.jit(law.log_conditionals)(x, revealed)  # the caller's float32 trace
    assert traced.dtype == np.float32
    np.testing.assert_allclose(np.exp(traced), np.exp(law.log_conditionals(x, revealed)),
                               atol=1e-5)
