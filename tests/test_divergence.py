"""expected_kl and relaxed_kl against brute force, closed forms and finite differences."""

import jax
import numpy as np
import pytest
from helpers import (
    brute_force_expected_kl,
    compositions,
    entropy_curve_from_table,
    kl_from_curve,
    markov_entropy_curve,
    random_table,
)

import schedopt
from schedopt import EntropyProfile, expected_kl, relaxed_kl


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("n, vocab", [(3, 3), (4, 2), (5, 2)])
def test_expected_kl_equals_enumeration_over_partitions(seed, n, vocab):
    joint = random_table(np.random.default_rng(seed), n, vocab)
    profile = EntropyProfile.from_entropy(entropy_curve_from_table(joint))
    for sizes in compositions(n):
        want = brute_force_expected_kl(joint, sizes)
        assert float(expected_kl(profile, sizes)) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_worked_example_of_theory_section_10():
    transition = 0.8 * np.eye(4) + 0.05
    profile = EntropyProfile.from_entropy(markov_entropy_curve(transition, 128))
    assert profile.entropy[1] == pytest.approx(1.386294, abs=1e-6)
    assert profile.entropy[2] == pytest.approx(2.738023, abs=1e-6)
    assert profile.joint_entropy == pytest.approx(75.998913, abs=1e-6)
    assert profile.total_correlation == pytest.approx(101.446766, abs=1e-6)
    assert profile.dual_total_correlation == pytest.approx(37.639080, abs=1e-6)
    for sizes, want in [
        ([42, 86], 37.246122),
        ([17, 24, 35, 52], 15.937679),
        ([8, 9, 11, 13, 16, 19, 23, 29], 7.176410),
        ([3, 7, 12, 16, 19, 23, 24, 24], 7.857830),
    ]:
        assert float(expected_kl(profile, sizes)) == pytest.approx(want, abs=1e-6)
    assert float(schedopt.uniform(profile, 8).expected_kl) == pytest.approx(8.867725, abs=1e-6)


def test_expected_kl_is_accurate_for_long_sequences():
    # A curve whose KL has a closed form: g_j = 1/(j+1), one step of n tokens:
    # KL = n g_0 - H_n = n - sum_{j<n} 1/(j+1), summed exactly with math.fsum.
    n = 8192
    g = 1.0 / (1.0 + np.arange(n))
    profile = EntropyProfile.from_conditional_entropy(g)
    import math

    want = math.fsum([1.0 - x for x in g.tolist()])
    assert float(expected_kl(profile, [n])) == pytest.approx(want, rel=1e-9)
    sizes = [n // 4] * 4
    want = math.fsum(
        g[k * (n // 4)] - g[j] for k in range(4) for j in range(k * (n // 4), (k + 1) * (n // 4))
    )
    assert float(expected_kl(profile, sizes)) == pytest.approx(want, rel=1e-9)


def test_expected_kl_batches_and_jits():
    rng = np.random.default_rng(0)
    entropy = np.concatenate([[0], np.cumsum(np.sort(rng.exponential(size=12))[::-1])])
    profile = EntropyProfile.from_entropy(entropy)
    batch = np.asarray([[1, 2, 9], [4, 4, 4], [10, 1, 1]])
    want = [kl_from_curve(entropy, s) for s in batch]
    np.testing.assert_allclose(np.asarray(expected_kl(profile, batch)), want, rtol=1e-12)
    jitted = jax.jit(lambda p, s: expected_kl(p, s))
    # Under the caller's jit the KL follows the caller's precision: float32 by default,
    # float64 when the caller enables it.
    np.testing.assert_allclose(float(jitted(profile, batch[1])), want[1], rtol=1e-6)
    with jax.enable_x64(True):
        got = float(jax.jit(lambda p, s: expected_kl(p, s))(profile, batch[1]))
    np.testing.assert_allclose(got, want[1], rtol=1e-12)


def test_one_schedule_and_a_batch_take_their_own_routes_to_the_same_kl():
    # evaluate_kl computes one schedule in numpy and a batch through the JAX kernel; both
    # equal the plain loop, with zero-size (padding) steps anywhere, and 0 on a flat curve.
    from schedopt.objective import evaluate_kl

    rng = np.random.default_rng(5)
    entropy = np.concatenate([[0], np.cumsum(np.sort(rng.exponential(size=40))[::-1])])
    batch = np.asarray([[0, 7, 0, 30, 3], [10, 10, 10, 10, 0], [40, 0, 0, 0, 0]])
    want = [kl_from_curve(entropy, s) for s in batch]
    np.testing.assert_allclose(evaluate_kl(entropy, batch), want, rtol=1e-12)
    for s, w in zip(batch, want, strict=True):
        assert float(evaluate_kl(entropy, s)) == pytest.approx(w, rel=1e-12)
    assert float(evaluate_kl(np.arange(41.0) * 0.3, batch[0])) == 0.0


def test_relaxed_equals_exact_at_integer_cuts():
    rng = np.random.default_rng(3)
    entropy = np.concatenate([[0], np.cumsum(np.sort(rng.exponential(size=40))[::-1])])
    profile = EntropyProfile.from_entropy(entropy)
    for _ in range(20):
        cuts = np.sort(rng.choice(np.arange(1, 40), size=rng.integers(1, 10), replace=False))
        sizes = np.diff(np.concatenate([[0], cuts, [40]]))
        want = kl_from_curve(entropy, sizes)
        with jax.enable_x64(True):  # relaxed_kl runs in the caller's precision
            got = float(relaxed_kl(profile, cuts.astype(float)))
        assert got == pytest.approx(want, rel=1e-9)


@jax.enable_x64(True)  # relaxed_kl runs in the caller's precision
def test_relaxed_gradient_matches_finite_differences():
    rng = np.random.default_rng(4)
    entropy = np.concatenate([[0], np.cumsum(np.sort(rng.exponential(size=50))[::-1])])
    profile = EntropyProfile.from_entropy(entropy)
    cuts = np.asarray([3.3, 10.6, 21.2, 37.7])  # away from the integer kinks
    grad = np.asarray(jax.grad(lambda c: relaxed_kl(profile, c))(cuts))
    h = 1e-6
    for i in range(cuts.size):
        e = np.zeros_like(cuts)
        e[i] = h
        fd = (float(relaxed_kl(profile, cuts + e)) - float(relaxed_kl(profile, cuts - e))) / 2 / h
        assert grad[i] == pytest.approx(fd, rel=1e-6, abs=1e-8)


@pytest.mark.parametrize(
    "sizes, message",
    [
        ([3, 3], "sums to 6"),
        ([5, 0, 3], "at least 1"),
        ([2.5, 5.5], "whole numbers"),
        ([], "empty"),
    ],
)
def test_bad_schedules_get_one_clear_sentence(sizes, message):
    profile = EntropyProfile.from_entropy(np.log(2) * np.arange(9))
    with pytest.raises(ValueError, match=message):
        expected_kl(profile, sizes)
