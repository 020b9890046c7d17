"""The exact DP against enumeration, and the Optax optimizer against the exact DP."""

import numpy as np
import optax
import pytest
from helpers import (
    brute_force_optimum,
    clustered_curve,
    code_curve,
    kl_from_curve,
    markov_entropy_curve,
    parity_curve,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import schedopt
from schedopt import EntropyProfile, frontier, optimal_schedule, optimize

# One n for every family keeps the number of compiled programs small.
N = 24
FAMILIES = {
    "markov": markov_entropy_curve(
        np.asarray([[0.9, 0.1, 0.0], [0.05, 0.9, 0.05], [0.1, 0.0, 0.9]]), N
    ),
    "parity": parity_curve(N),
    "code": code_curve(N, 7, 5),
    "clustered": clustered_curve(N),
}


@pytest.mark.parametrize("seed", range(4))
def test_frontier_equals_enumeration(seed):
    n = 11
    rng = np.random.default_rng(seed)
    g = np.sort(rng.exponential(size=n) * (rng.random(n) < 0.7))[::-1]
    entropy = np.concatenate([[0], np.cumsum(g)])
    profile = EntropyProfile.from_entropy(entropy)
    optimum = frontier(profile, n)
    for steps in range(1, n + 1):
        want = brute_force_optimum(entropy, steps)
        assert optimum[steps - 1] == pytest.approx(want, rel=1e-9, abs=1e-12)
        schedule = optimal_schedule(profile, steps)
        assert schedule.steps == steps
        assert kl_from_curve(entropy, np.asarray(schedule.tokens_per_step)) == pytest.approx(
            want, rel=1e-9, abs=1e-12
        )


@pytest.mark.parametrize("family", FAMILIES)
def test_optimize_reaches_the_exact_optimum_for_every_budget(family):
    profile = EntropyProfile.from_entropy(FAMILIES[family])
    optimum = frontier(profile, N)
    for steps in range(1, N + 1):
        schedule = optimize(profile, steps)
        assert schedule.steps == steps and schedule.n == N
        kl = float(schedule.expected_kl)
        assert kl <= optimum[steps - 1] * (1 + 1e-9) + 1e-12, (steps, kl, optimum[steps - 1])


def test_optimize_on_the_worked_example_matches_theory():
    transition = 0.8 * np.eye(4) + 0.05
    profile = EntropyProfile.from_entropy(markov_entropy_curve(transition, 128))
    assert optimize(profile, 4).tokens_per_step.tolist() == [17, 24, 35, 52]
    assert float(optimize(profile, 8).expected_kl) == pytest.approx(7.176410, abs=1e-6)
    assert float(optimize(profile, 16).expected_kl) == pytest.approx(3.199746, abs=1e-6)


def test_optimize_accepts_any_optax_transformation():
    profile = EntropyProfile.from_entropy(FAMILIES["markov"])
    schedule = optimize(profile, 5, optimizer=optax.sgd(1e-2), num_iterations=50)
    assert float(schedule.expected_kl) <= frontier(profile, 5)[-1] * (1 + 1e-9)
    assert schedule.method == "optax" and schedule.relaxed_kl is not None


@pytest.mark.parametrize("steps", [0, N + 1, 2.5, True])
def test_bad_budgets_are_refused(steps):
    profile = EntropyProfile.from_entropy(FAMILIES["parity"])
    for solve in (optimize, optimal_schedule, frontier):
        with pytest.raises(ValueError, match="steps must be"):
            solve(profile, steps)


# Non-increasing, non-negative g on a fixed n: random correlated laws' curves.
curves = st.lists(
    st.floats(0.0, 3.0, allow_nan=False, allow_subnormal=False), min_size=N, max_size=N
).map(lambda g: np.concatenate([[0.0], np.cumsum(sorted(g, reverse=True))]))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(curves, st.integers(1, N))
def test_properties_of_the_optimum(entropy, steps):
    profile = EntropyProfile.from_entropy(entropy)
    optimum = frontier(profile, N)
    assert np.all(optimum >= -1e-12)
    assert np.all(np.diff(optimum) <= 1e-12)  # more steps never hurt
    assert optimum[-1] == pytest.approx(0.0, abs=1e-12)  # one token per step is exact
    baselines = [schedopt.uniform(profile, steps), schedopt.cosine(profile, steps)]
    kl = float(optimize(profile, steps).expected_kl)
    assert kl >= -1e-12
    for baseline in baselines:
        assert kl <= float(baseline.expected_kl) * (1 + 1e-9) + 1e-12
