"""How far `verify` and a Monte Carlo prediction can be trusted: coverage, pairing, tails, grids.

Coverage tests split one large draw into many independent checks (`verification_samples`
gives the per-sequence values `verify` summarises), so hundreds of seeds cost one compiled
run. The references are independent: exact profiles by enumeration (`Table`), Monte Carlo
means with confidence intervals, and scipy's kurtosis.
"""

import math

import jax
import numpy as np
import pytest
from scipy import stats

import schedopt
from schedopt.check import HEAVY_TAIL_KURTOSIS, Verification, verification_samples
from schedopt.check import _verify as verify_module
from schedopt.cli.known import clustered_sequences
from schedopt.distributions import HiddenMarkov, MarkovChain, MixtureOfProducts, Table
from schedopt.estimate import (
    CurveEstimate,
    estimate_curves,
    interpolation_matrix,
    revealed_grid,
    schedule_grid,
)
from schedopt.estimate import _monte_carlo as estimate

CHAIN = MarkovChain(0.85 * np.eye(3) + 0.05, 6)
HMM = HiddenMarkov(0.9 * np.eye(2) + 0.05, [[0.8, 0.15, 0.05], [0.05, 0.15, 0.8]], 6)
MIXTURE = MixtureOfProducts(
    [0.5, 0.3, 0.2],
    np.stack(
        [np.tile(row, (6, 1)) for row in ([0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8])]
    ),
)
SCHEDULES = ([1, 5], [3, 3], [6])
CHECKS, PER_CHECK = 400, 200  # 400 seeds of 200 sequences per schedule


def _coverage(law, profile, key):
    """Fraction of CHECKS x len(SCHEDULES) checks that agree, and their largest kurtosis."""
    results = []
    for steps in SCHEDULES:
        kl, predicted, se = verification_samples(
            law, steps, key=key, samples=CHECKS * PER_CHECK, profile=profile
        )
        kl = kl.reshape(CHECKS, PER_CHECK)
        paired = np.ndim(predicted) == 1
        if paired:
            predicted = np.reshape(predicted, (CHECKS, PER_CHECK))
        for i in range(CHECKS):
            results.append(
                Verification.from_samples(
                    kl[i], predicted[i] if paired else predicted, predicted_stderr=se,
                    steps=len(steps),
                )
            )
    return np.mean([r.agrees for r in results]), results


@pytest.mark.parametrize(
    "law,profile",
    [
        (CHAIN, None),  # the chain's closed-form profile
        (HMM, Table(HMM.table()).profile()),  # enumerated: an independent exact curve
    ],
    ids=["markov", "hmm"],
)
def test_interval_covers_the_exact_kl_at_95_percent(law, profile):
    covered, results = _coverage(law, profile, jax.random.key(1))
    # 1200 intervals: a 95% interval covers 93.7-96.3% of them with probability 0.95.
    assert 0.93 <= covered <= 0.97, covered
    assert not any(r.paired for r in results)
    # Light tails on these laws: the heavy-tail verdict never replaces a disagreement.
    assert max(r.excess_kurtosis for r in results) < HEAVY_TAIL_KURTOSIS


def test_paired_interval_covers_zero_at_95_percent():
    """A Monte Carlo law: the curve from the same sequences at every count is unbiased."""
    assert not MIXTURE.exact_profile
    covered, results = _coverage(MIXTURE, None, jax.random.key(2))
    assert 0.93 <= covered <= 0.97, covered
    assert all(r.paired for r in results)
    # Independent route: the paired predictions pooled against the enumerated exact KL.
    exact = Table(MIXTURE.table()).profile()
    kl, predicted, _ = verification_samples(
        MIXTURE, [1, 5], key=jax.random.key(3), samples=20000
    )
    truth = float(schedopt.expected_kl(exact, [1, 5]))
    assert abs(np.mean(predicted) - truth) <= 4 * np.std(predicted) / math.sqrt(20000)
    assert abs(np.mean(kl) - truth) <= 4 * np.std(kl) / math.sqrt(20000)


def test_verify_is_one_of_these_checks():
    """verify = verification_samples + from_samples, with the same draws."""
    kl, predicted, _ = verification_samples(HMM, [2, 4], key=jax.random.key(4), samples=500)
    result = schedopt.verify(HMM, [2, 4], key=jax.random.key(4), samples=500)
    assert result.paired and result.samples == 500
    assert result.mean == pytest.approx(kl.mean(), rel=1e-12)
    assert result.predicted == pytest.approx(np.mean(predicted), rel=1e-12)
    d = np.asarray(predicted) - kl
    assert result.difference_stderr == pytest.approx(d.std(ddof=1) / math.sqrt(500), rel=1e-9)


# --------------------------------------------------------------------------- tails
def test_kurtosis_and_largest_share_match_scipy():
    x = np.random.default_rng(0).standard_t(5, size=3000)
    r = Verification.from_samples(x, 0.0, steps=1)
    assert r.excess_kurtosis == pytest.approx(stats.kurtosis(x, bias=True), rel=1e-9)
    d = x - x.mean()
    assert r.largest_share == pytest.approx(np.max(d**2) / np.sum(d**2), rel=1e-12)
    assert r.stderr == pytest.approx(stats.sem(x), rel=1e-12)


def test_heavy_tails_give_inconclusive_not_disagrees():
    rng = np.random.default_rng(1)
    # Mostly small values and one rare huge one: the sampled mean misses the prediction.
    heavy = np.concatenate([rng.exponential(0.01, 4095), [40.0]])
    r = Verification.from_samples(heavy, 0.05, steps=8)
    assert r.excess_kurtosis > HEAVY_TAIL_KURTOSIS and not r.agrees
    assert r.status == "inconclusive"
    assert r.verdict.startswith("inconclusive: heavy tails")
    assert "more likely above" in r.verdict  # the one-sided risk
    light = rng.normal(1.0, 0.1, 4096)
    r = Verification.from_samples(light, 1.1, steps=8)
    assert r.status == "disagrees" and r.verdict.startswith("DISAGREES")


def test_paired_check_flags_a_wrong_law():
    """Sampling one chain and scoring the prediction from another's curve disagrees."""
    wrong = MarkovChain(0.5 * np.eye(3) + 0.5 / 3, 6).profile()
    r = schedopt.verify(CHAIN, [6], key=jax.random.key(9), samples=4000, profile=wrong)
    assert r.status == "disagrees"


# --------------------------------------------------------------------------- grids
def test_prediction_needs_the_curve_at_the_cuts():
    x = CHAIN.sample(8, key=jax.random.key(0))
    curves = estimate_curves(CHAIN.log_conditionals, x, key=jax.random.key(1), grid=[0, 2, 5])
    with pytest.raises(ValueError, match=r"revealed counts \[3\]"):
        curves.expected_kl([3, 3])
    assert np.isfinite(curves.expected_kl([2, 4])[0])


@pytest.mark.parametrize("steps", [[1, 2, 1, 1], [1, 2, 260, 37], [1, 2, 960, 37]])
def test_schedule_grid_holds_every_cut_and_its_neighbours(steps):
    n = sum(steps)
    grid = schedule_grid(n, steps, [n // 2, n - n // 2])  # two schedules, any T
    cuts = np.cumsum([0, *steps[:-1], 0, n // 2])
    for c in cuts:
        assert set(range(max(c - 1, 0), min(c + 2, n))) <= set(grid.tolist())
    assert grid[0] == 0 and grid[-1] == n - 1 and np.all(np.diff(grid) > 0)
    assert set(estimate.default_grid(n).tolist()) <= set(grid.tolist())


@pytest.mark.parametrize("seed", range(5))
def test_sum_weights_are_the_interpolation_column_sums(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 60))
    inner = rng.choice(np.arange(1, max(n - 1, 1)), size=min(5, max(n - 2, 0)), replace=False)
    grid = np.unique(np.concatenate([[0, n - 1], inner]))
    assert np.allclose(estimate.sum_weights(grid, n), interpolation_matrix(grid, n).sum(axis=0))


def test_default_grid_is_every_count_up_to_the_limit():
    n = estimate.FULL_GRID_MAX
    assert np.array_equal(estimate.default_grid(n), np.arange(n))
    assert estimate.default_grid(n + 1).size == estimate.SPARSE_GRID_SIZE


def test_default_prediction_matches_a_full_grid_reference_across_seeds(monkeypatch):
    """A clustered law where n exceeds the full-grid limit: predictions at the cuts.

    The reference is the per-sequence curve at every count on the same sequences. Over 16
    seeds the default (33 points + cuts and neighbours) stays within 3% of it (measured
    -0.5%), while
    interpolating the 33-point grid at the cuts (the old default) is biased upwards (+4%).
    """
    n, seeds, per_seed = 96, 16, 256
    monkeypatch.setattr(estimate, "FULL_GRID_MAX", 64)
    monkeypatch.setattr(verify_module, "FULL_GRID_MAX", 64)
    law = clustered_sequences(prototypes=8, fidelities=(0.85,), n=n, vocab=4)
    steps = [1, 1, 2, 3, 5, 84]  # cuts 0, 1, 2, 4, 7, 12: several off the 33-point grid
    assert not set(np.cumsum(steps)[:-1].tolist()) <= set(revealed_grid(n).tolist())
    key = jax.random.key(5)
    kl, default, _ = verification_samples(law, steps, key=key, samples=seeds * per_seed)
    k_data, k_part = jax.random.split(key)
    x = law.sample(seeds * per_seed, key=k_data)
    full = estimate_curves(law.log_conditionals, x, key=k_part, grid=np.arange(n))
    reference = full.kl_per_sequence(steps, "model")
    # The old route: linear interpolation of the 33-point curve, cuts included.
    grid = revealed_grid(n)
    weights = -np.ones(n)
    np.add.at(weights, np.cumsum([0, *steps[:-1]]), steps)
    old = full.predictive_entropy[:, grid] @ (interpolation_matrix(grid, n).T @ weights)
    by_seed = [v.reshape(seeds, per_seed).mean(axis=1) for v in (default, reference, old)]
    default_bias = float(np.mean(by_seed[0] - by_seed[1]))
    old_bias = float(np.mean(by_seed[2] - by_seed[1]))
    kl_mean = float(np.mean(reference))
    assert abs(default_bias) < 0.03 * kl_mean
    assert old_bias > 5 * abs(default_bias) and old_bias > 0.03 * kl_mean
    # Independent route: the sampled KL of the same sequences, pooled, paired with the
    # reference (a 4-sigma band).
    d = reference - kl
    assert abs(d.mean()) <= 4 * d.std(ddof=1) / math.sqrt(d.size)
    # And the estimate built on the default grid is what verify would use: cuts on the grid.
    sparse = CurveEstimate(
        revealed=schedule_grid(n, steps),
        cross_entropy=full.cross_entropy[:, schedule_grid(n, steps)],
        predictive_entropy=full.predictive_entropy[:, schedule_grid(n, steps)],
        n=n,
        forward_passes=0,
    )
    assert np.allclose(sparse.kl_per_sequence(steps, "model"), default)
