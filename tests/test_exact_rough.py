"""Exact on the curves users have: regularised estimates, step functions, plateaus, flat curves.

Every solver (the DP, `optimize`, `optimize_batch` with each solver) is compared with the plain
quadratic DP of the test helpers, which knows nothing of grids or the Monge property, and the
quadratic DP with enumeration.
"""

import itertools

import numpy as np
import pytest
from helpers import brute_force_optimum, kl_from_curve, quadratic_dp_optimum, rough_curve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedopt
from schedopt import EntropyProfile, frontier, optimal_schedule, optimize, optimize_batch

KINDS = ("noisy", "steps", "plateau", "constant")


def _entropy(g):
    return np.concatenate([[0.0], np.cumsum(g)])


def _optimal(kl, optimum):
    return kl <= optimum + 1e-9 * max(1.0, abs(optimum))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(KINDS), st.integers(2, 10))
def test_quadratic_dp_equals_enumeration(seed, kind, n):
    entropy = _entropy(rough_curve(np.random.default_rng(seed), n, kind))
    for steps in range(1, n + 1):
        assert quadratic_dp_optimum(entropy, steps) == pytest.approx(
            brute_force_optimum(entropy, steps), abs=1e-12
        )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, 2**32 - 1), st.sampled_from(KINDS), st.integers(2, 10))
def test_dp_and_frontier_equal_enumeration(seed, kind, n):
    entropy = _entropy(rough_curve(np.random.default_rng(seed), n, kind))
    profile = EntropyProfile.from_entropy(entropy, check=False)
    optimum = frontier(profile, n)
    for steps in range(1, n + 1):
        best = brute_force_optimum(entropy, steps)
        schedule = optimal_schedule(profile, steps)
        assert schedule.steps == steps and schedule.certified
        assert kl_from_curve(entropy, schedule.tokens_per_step) == pytest.approx(best, abs=1e-12)
        assert optimum[steps - 1] == pytest.approx(best, abs=1e-12)


# One n per size keeps the compiled programs few; 3 x 4 kinds x 200 curves = 2400 curves
# per solver, each at a random budget.
@pytest.mark.parametrize("certify", [True, False])
@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1))
def test_optimize_batch_is_exact_on_thousands_of_rough_curves(certify, seed):
    rng = np.random.default_rng(seed)
    n = 96
    curves = [_entropy(rough_curve(rng, n, kind)) for kind in KINDS for _ in range(200)]
    budgets = rng.integers(2, 40, len(curves))
    profiles = [EntropyProfile.from_entropy(e, check=False) for e in curves]
    schedules = optimize_batch(profiles, budgets, certify=certify)
    for entropy, t, schedule in zip(curves, budgets, schedules, strict=True):
        optimum = quadratic_dp_optimum(entropy, t)
        kl = float(schedule.expected_kl)
        assert schedule.steps == t and int(np.sum(schedule.tokens_per_step)) == n
        assert kl >= 0.0
        assert kl == pytest.approx(kl_from_curve(entropy, schedule.tokens_per_step), abs=1e-9)
        assert _optimal(kl, optimum), (t, kl, optimum, schedule.method)
        if schedule.certified:
            assert schedule.lower_bound == pytest.approx(optimum, abs=1e-9)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [128, 1024])
def test_optimize_is_exact_and_certified_on_rough_curves(kind, n):
    rng = np.random.default_rng(n + len(kind))
    entropy = _entropy(rough_curve(rng, n, kind))
    profile = EntropyProfile.from_entropy(entropy, check=False)
    for steps in (2, 8, 34, 55):
        schedule = optimize(profile, steps)
        optimum = quadratic_dp_optimum(entropy, steps)
        assert schedule.certified and schedule.steps == steps
        assert _optimal(float(schedule.expected_kl), optimum), (steps, schedule.expected_kl)


def test_constant_curve_gives_exactly_zero_for_every_schedule():
    profile = EntropyProfile.from_conditional_entropy(np.full(100, 0.1))
    rng = np.random.default_rng(0)
    for _ in range(20):
        steps = int(rng.integers(1, 100))
        cuts = np.sort(rng.choice(np.arange(1, 100), steps - 1, replace=False))
        tokens = np.diff(np.concatenate([[0], cuts, [100]]))
        assert float(schedopt.expected_kl(profile, tokens)) == 0.0
    for steps in (1, 7, 100):
        assert float(optimize(profile, steps).expected_kl) == 0.0
        assert float(schedopt.uniform(profile, steps).expected_kl) == 0.0


def test_step_function_at_n_32768():
    # Four levels: the optimum with T >= 4 steps is 0 (a cut at each level change); with
    # T = 2 or 3 it is the best choice of level changes, found here by enumeration.
    n = 32768
    starts = [0, 1000, 9000, 20000]
    levels = [2.0, 1.2, 0.5, 0.1]
    g = np.repeat(levels, np.diff(starts + [n]))
    entropy = _entropy(g)
    profile = EntropyProfile.from_entropy(entropy)
    for steps in (2, 3):
        best = min(
            kl_from_curve(entropy, np.diff([0, *cuts, n]))
            for cuts in itertools.combinations(starts[1:], steps - 1)
        )
        schedule = optimize(profile, steps)
        assert schedule.certified and _optimal(float(schedule.expected_kl), best)
    for steps in (4, 17, 512):
        schedule = optimize(profile, steps)
        assert float(schedule.expected_kl) == 0.0 and schedule.steps == steps
