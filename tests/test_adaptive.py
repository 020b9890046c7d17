"""The entropy-bounded adaptive sampler and exact sample quality on known laws."""

from __future__ import annotations

import itertools
import math

import jax
import numpy as np
import pytest
from helpers import random_table
from scipy import stats

from schedopt.check import sample_entropy_bounded, sample_quality
from schedopt.distributions import LinearCode, MarkovChain, MixtureOfProducts, Table


def table_conditional(joint: np.ndarray, x: dict[int, int], i: int) -> np.ndarray:
    """mu(X_i = . | X_S = x_S) by marginalising the table."""
    n = joint.ndim
    index = tuple(x.get(a, slice(None)) for a in range(n))
    sub = joint[index]  # axes: the unrevealed positions, in order
    free = [a for a in range(n) if a not in x]
    marg = sub.sum(axis=tuple(k for k, a in enumerate(free) if a != i))
    return marg / marg.sum()


def brute_force_eb_law(joint: np.ndarray, gamma: float) -> np.ndarray:
    """The law of the EB sampler's output, by following every branch of its steps."""
    n, vocab = joint.ndim, joint.shape[0]
    law = np.zeros(joint.shape)

    def walk(x: dict[int, int], prob: float) -> None:
        if len(x) == n:
            law[tuple(x[a] for a in range(n))] += prob
            return
        masked = [i for i in range(n) if i not in x]
        conds = {i: table_conditional(joint, x, i) for i in masked}
        ent = {i: -sum(p * math.log(p) for p in conds[i] if p > 0) for i in masked}
        ranked = sorted(masked, key=lambda i: (ent[i], i))
        chosen, total = [], 0.0
        for i in ranked:  # include i while the entropies before it sum to <= gamma
            if chosen and total > gamma:
                break
            chosen.append(i)
            total += ent[i]
        for values in itertools.product(range(vocab), repeat=len(chosen)):
            p = prob * math.prod(conds[i][v] for i, v in zip(chosen, values, strict=True))
            if p > 0:
                walk({**x, **dict(zip(chosen, values, strict=True))}, p)

    walk({}, 1.0)
    return law


def frequencies(tokens: np.ndarray, vocab: int) -> np.ndarray:
    n = tokens.shape[1]
    flat = np.ravel_multi_index(tokens.T, (vocab,) * n)
    return np.bincount(flat, minlength=vocab**n).reshape((vocab,) * n)


def chi_square_p(counts: np.ndarray, law: np.ndarray) -> float:
    expected = law.ravel() * counts.sum()
    keep = expected > 0
    assert counts.ravel()[~keep].sum() == 0  # nothing outside the support
    chi2 = float(np.sum((counts.ravel()[keep] - expected[keep]) ** 2 / expected[keep]))
    return float(stats.chi2.sf(chi2, keep.sum() - 1))


def test_gamma_zero_reveals_one_token_per_step_and_samples_exactly():
    joint = random_table(np.random.default_rng(0), 3, 3, concentration=1.0)
    law = Table(joint)
    out = sample_entropy_bounded(law.conditionals, 20000, length=3, gamma=0.0,
                                 key=jax.random.key(0))
    assert np.all(out.forward_passes == 3) and np.all(out.tokens_per_step == 1)
    assert chi_square_p(frequencies(out.tokens, 3), joint) > 1e-3


@pytest.mark.parametrize("gamma", [0.5, 1.2])
def test_positive_gamma_matches_the_brute_force_law(gamma):
    joint = random_table(np.random.default_rng(1), 3, 2, concentration=0.5)
    out = sample_entropy_bounded(Table(joint).conditionals, 20000, length=3, gamma=gamma,
                                 key=jax.random.key(1))
    eb = brute_force_eb_law(joint, gamma)
    assert np.abs(eb - joint).sum() > 0.02  # this gamma does change the law
    assert chi_square_p(frequencies(out.tokens, 2), eb) > 1e-3
    assert np.all(out.tokens_per_step.sum(axis=1) == 3)
    assert np.all(out.forward_passes == (out.tokens_per_step > 0).sum(axis=1))


def test_a_code_is_revealed_in_two_passes_when_gamma_allows_k_tokens():
    # Reed-Solomon [8, 3] over F_11: 3 tokens are independent and uniform (entropy log 11
    # each), then the rest is determined (entropy 0). With 2 log 11 <= gamma < 3 log 11 the
    # first step reveals exactly 3 tokens and the second the other 5: exact, in 2 passes.
    code = LinearCode.reed_solomon(8, 3, 11)
    out = sample_entropy_bounded(code.conditionals, 500, length=8, gamma=2.5 * math.log(11),
                                 key=jax.random.key(2))
    assert np.all(out.tokens_per_step[:, :2] == [3, 5]) and out.mean_forward_passes == 2
    assert sample_quality(code, out.tokens).in_support == 1.0


def test_bad_gamma():
    code = LinearCode.parity(4)
    with pytest.raises(ValueError, match="gamma must be"):
        sample_entropy_bounded(code.conditionals, 2, length=4, gamma=-1.0, key=jax.random.key(0))


# --------------------------------------------------------------------------- quality
def test_code_quality_counts_codewords_by_enumeration():
    q, generator = 3, np.array([[1, 0, 1, 2], [0, 1, 1, 1]])
    code = LinearCode(generator, q)
    words = {tuple(np.dot(u, generator) % q) for u in itertools.product(range(q), repeat=2)}
    rng = np.random.default_rng(3)
    x = rng.integers(0, q, (400, 4))
    x[:150] = np.array(sorted(words))[rng.integers(0, len(words), 150)]
    member = np.array([tuple(r) in words for r in x])
    result = sample_quality(code, x)
    assert result.in_support == pytest.approx(member.mean())
    assert result.log_likelihood == pytest.approx(-2 * math.log(3))  # uniform on 9 words


@pytest.mark.parametrize("law", ["markov", "mixture"])
def test_log_likelihood_matches_the_formula(law):
    rng = np.random.default_rng(4)
    if law == "markov":
        p = rng.dirichlet(np.ones(3), 3)
        dist = MarkovChain(p, n=4)
        # stationary pi: left eigenvector for eigenvalue 1
        w, v = np.linalg.eig(p.T)
        pi = np.real(v[:, np.argmin(np.abs(w - 1))])
        pi /= pi.sum()

        def logp(x):
            pairs = zip(x, x[1:], strict=False)
            return math.log(pi[x[0]]) + sum(math.log(p[a, b]) for a, b in pairs)
    else:
        weights = np.array([0.3, 0.7])
        marg = rng.dirichlet(np.ones(3), (2, 4))
        dist = MixtureOfProducts(weights, marg)

        def logp(x):
            return math.log(sum(weights[c] * math.prod(marg[c, i, x[i]] for i in range(4))
                                for c in range(2)))
    x = rng.integers(0, 3, (50, 4))
    want = np.array([logp(r) for r in x])
    result = sample_quality(dist, x)
    assert result.log_likelihood == pytest.approx(want.mean(), rel=1e-9)
    assert result.log_likelihood_stderr == pytest.approx(want.std(ddof=1) / math.sqrt(50))
    assert result.in_support == 1.0
