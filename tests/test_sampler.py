"""The T-step sampler and `verify` against the law and theory §3's exact formula."""

import itertools
import math

import jax
import numpy as np
import pytest
from scipy import stats

import schedopt
from schedopt.check import schedule_log_likelihood
from schedopt.distributions import HiddenMarkov, MarkovChain, MixtureOfProducts, Table

# A strongly correlated chain on 3 symbols, n = 6: every table is small enough to enumerate.
CHAIN = MarkovChain(0.85 * np.eye(3) + 0.05, 6)
HMM = HiddenMarkov(
    0.9 * np.eye(2) + 0.05, [[0.8, 0.15, 0.05], [0.05, 0.15, 0.8]], 6
)
MIXTURE = MixtureOfProducts(
    [0.5, 0.3, 0.2],
    np.stack(
        [np.tile(row, (6, 1)) for row in ([0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8])]
    ),
)


def _pair_counts(x, i, j, vocab):
    return np.bincount(x[:, i] * vocab + x[:, j], minlength=vocab * vocab)


def _chi_square_pvalues(x, law):
    """p-values of single-site and adjacent-pair frequencies against the law's table."""
    table = law.table()
    n, vocab = law.n, law.vocab_size
    pvalues = []
    for i in range(n):
        marginal = table.sum(axis=tuple(a for a in range(n) if a != i))
        observed = np.bincount(x[:, i], minlength=vocab)
        pvalues.append(stats.chisquare(observed, marginal * len(x)).pvalue)
    for i in range(n - 1):
        pair = table.sum(axis=tuple(a for a in range(n) if a not in (i, i + 1))).reshape(-1)
        pvalues.append(stats.chisquare(_pair_counts(x, i, i + 1, vocab), pair * len(x)).pvalue)
    return np.asarray(pvalues)


def test_one_token_per_step_samples_the_law():
    x = np.asarray(schedopt.sample(CHAIN.conditionals, [1] * 6, 20000, key=jax.random.key(0)))
    pvalues = _chi_square_pvalues(x, CHAIN)
    # 11 tests at a fixed seed; Bonferroni at 1%.
    assert pvalues.min() > 0.01 / pvalues.size


def test_one_step_loses_the_correlations():
    x = np.asarray(schedopt.sample(CHAIN.conditionals, [6], 20000, key=jax.random.key(0)))
    pvalues = _chi_square_pvalues(x, CHAIN)
    assert np.all(pvalues[:6] > 1e-4)  # single sites: still the right marginals
    assert np.all(pvalues[6:] < 1e-30)  # pairs: drawn independently, clearly wrong


def test_logits_and_probabilities_give_the_same_sampler():
    a = schedopt.sample(CHAIN.conditionals, [2, 4], 20000, key=jax.random.key(3))
    b = schedopt.sample(CHAIN.log_conditionals, [2, 4], 20000, logits=True, key=jax.random.key(3))
    assert np.mean(np.asarray(a) == np.asarray(b)) > 0.999


def test_one_by_one_likelihood_is_the_chain_rule():
    """With T = n the sampler's log-likelihood of any sequence is log mu(x), any order."""
    x = CHAIN.sample(4000, key=jax.random.key(4))
    loglik = schedule_log_likelihood(CHAIN.conditionals, x, [1] * 6, jax.random.key(5))
    np.testing.assert_allclose(loglik, CHAIN.log_prob(x), atol=1e-10)


def test_sampled_law_matches_the_block_product_formula():
    """T = 2 sampler frequencies equal the partition-averaged block-product law."""
    table = CHAIN.table()
    n, vocab = 6, 3
    nu = np.zeros_like(table)
    seqs = np.asarray(list(itertools.product(range(vocab), repeat=n)))
    subsets = list(itertools.combinations(range(n), 2))
    for first in subsets:  # reveal `first` in step 1, the rest in step 2
        rest = tuple(i for i in range(n) if i not in first)
        p_first = table.sum(axis=rest)
        marg = [table.sum(axis=tuple(a for a in range(n) if a != i)) for i in first]
        joint_given = table / np.expand_dims(p_first, rest)  # mu(x_rest | x_first)
        cond = [
            joint_given.sum(axis=tuple(a for a in rest if a != i)) for i in rest
        ]  # mu(x_i | x_first), each over axes first + (i,)
        for s in seqs:
            q = np.prod([marg[k][s[i]] for k, i in enumerate(first)])
            for k, i in enumerate(rest):
                idx = tuple(s[a] for a in sorted(first + (i,)))
                q *= cond[k][idx]
            nu[tuple(s)] += q / len(subsets)
    x = np.asarray(schedopt.sample(CHAIN.conditionals, [2, 4], 20000, key=jax.random.key(6)))
    counts = np.bincount(np.ravel_multi_index(x.T, table.shape), minlength=table.size)
    expected = nu.reshape(-1) * len(x)
    keep = expected >= 5
    observed = np.append(counts[keep], counts[~keep].sum())
    expected = np.append(expected[keep], expected[~keep].sum())
    assert stats.chisquare(observed, expected).pvalue > 1e-3
    # The exact KL(mu || nu) of the averaged law is below the partition average (theory §1).
    kl_mixture = float(np.sum(table * np.log(table / nu)))
    assert 0 < kl_mixture <= float(schedopt.expected_kl(CHAIN.profile(), [2, 4])) + 1e-12


LAWS = {"markov": CHAIN, "hmm": HMM, "mixture": MIXTURE}


def test_verify_interval_covers_the_exact_formula():
    """Markov, HMM and mixture at four schedules each: 12 intervals at 95%.

    Each estimate must lie within 4 standard errors of theory §3's formula on the enumerated
    profile, and the 95% interval must cover it in at least 10 of the 12 cases (9 or fewer
    has probability 2% for honest intervals).
    """
    covered = []
    for name, law in sorted(LAWS.items()):
        exact = Table(law.table()).profile()  # independent of the law's own profile code
        for steps in ([6], [1, 5], [3, 3], [1, 1, 4]):
            result = schedopt.verify(law, steps, key=jax.random.key(7), samples=4000, profile=exact)
            predicted = float(schedopt.expected_kl(exact, steps))
            assert result.predicted == pytest.approx(predicted, abs=1e-12)
            assert abs(result.mean - predicted) <= 4 * result.stderr, (name, steps, result)
            covered.append(result.low <= predicted <= result.high)
            assert result.agrees == covered[-1]
    assert sum(covered) >= 10, covered


def test_verify_uses_the_monte_carlo_profile_with_its_error():
    result = schedopt.verify(HMM, [1, 5], key=jax.random.key(8), samples=4000)
    assert result.predicted_stderr > 0
    exact = float(schedopt.expected_kl(Table(HMM.table()).profile(), [1, 5]))
    assert abs(result.predicted - exact) <= 4 * result.predicted_stderr + 1e-3


def test_verify_flags_a_wrong_prediction():
    """One step: the per-sequence KL is log mu(x) - sum_i log mu(x_i), enumerable exactly."""
    table = CHAIN.table()
    marginals = [table.sum(axis=tuple(a for a in range(6) if a != i)) for i in range(6)]
    grid = np.indices(table.shape).reshape(6, -1).T
    log_marginals = sum(np.log(marginals[i][grid[:, i]]) for i in range(6))
    per_sequence = np.log(table.reshape(-1)) - log_marginals
    mean = float(table.reshape(-1) @ per_sequence)  # the total correlation
    sd = math.sqrt(float(table.reshape(-1) @ (per_sequence - mean) ** 2))
    wrong = MarkovChain(0.5 * np.eye(3) + 0.5 / 3, 6).profile()  # another chain's curve
    result = schedopt.verify(CHAIN, [6], key=jax.random.key(9), samples=4000, profile=wrong)
    exact_se = sd / math.sqrt(4000)
    assert abs(result.mean - mean) <= 4 * exact_se
    # The reported standard error estimates the exact one (its own relative error ~ 2%).
    assert result.stderr == pytest.approx(exact_se, rel=0.1)
    assert result.high - result.low == pytest.approx(2 * 1.96 * exact_se, rel=0.1)
    assert abs(result.predicted - mean) > 10 * exact_se  # the wrong curve is far off
    assert not result.agrees and result.verdict.startswith("DISAGREES")


@pytest.mark.parametrize("kind", ["data", "model"])
def test_optimized_schedules_never_predict_negative_kl_on_noisy_profiles(kind):
    chain = MarkovChain(0.9 * np.eye(4) + 0.025, 32)
    x = chain.sample(96, key=jax.random.key(0))
    # 12 sequences per curve: noisy enough that the raw estimate is not monotone.
    for seed in range(3):
        noisy = schedopt.estimate_profile(
            chain.log_conditionals, x[32 * seed : 32 * seed + 12], key=jax.random.key(seed),
            grid=32, kind=kind,
        )
        raw = np.asarray(noisy.meta["raw_conditional_entropy"])
        assert np.any(np.diff(raw) > 0)  # the precondition: a curve that needs regularising
        assert float(schedopt.optimize(noisy, 8).expected_kl) >= 0.0
        # The frontier (least KL for every T at once) sums differences of H, so allow rounding.
        assert np.all(schedopt.frontier(noisy, 32) >= -1e-12)


# --------------------------------------------------------------------------- bad input
def _sample(steps, num):
    return schedopt.sample(CHAIN.conditionals, steps, num, key=jax.random.key(0))


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: _sample([2, 0, 4], 3), "at least 1"),
        (lambda: _sample([[6]], 3), "1-D"),
        (lambda: _sample([5], 3), "n = 6"),
        (lambda: _sample([6], 0), "samples"),
        (lambda: schedopt.verify(CHAIN, [3, 2], key=jax.random.key(0)), "sums to 5"),
        (lambda: schedopt.verify(CHAIN, [6], key=jax.random.key(0), samples=1), "at least 2"),
        (
            lambda: schedule_log_likelihood(
                CHAIN.conditionals, np.zeros((2, 5)), [6], jax.random.key(0)
            ),
            r"\[M, 6\]",
        ),
    ],
)
def test_bad_input_one_clear_line(call, match):
    with pytest.raises(ValueError, match=match) as info:
        call()
    assert "\n" not in str(info.value)
