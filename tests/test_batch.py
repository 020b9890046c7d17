"""optimize_batch against brute force and the DP, its sharding, and the envelope frontier."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from helpers import brute_force_optimum, kl_from_curve, markov_entropy_curve

from schedopt import EntropyProfile, frontier, optimize_batch
from schedopt.solve import fast_frontier


def _random_entropy(rng, n, kind):
    """Decreasing g: smooth-ish, with flat runs (as after regularisation), or with zeros."""
    if kind == "smooth":
        g = np.sort(rng.exponential(size=n))[::-1]
    elif kind == "flat":
        g = np.sort(rng.integers(0, 4, size=n))[::-1] * 0.5
    else:
        g = np.sort(rng.exponential(size=n) * (rng.random(n) < 0.6))[::-1]
    return np.concatenate([[0.0], np.cumsum(g)])


# Two sequence lengths in one call (grouped by n); few compiled shapes: (n, bucket) in
# (12, 8) and (16, 8), and T = n needs no optimizer.
CURVES = [_random_entropy(np.random.default_rng(s), 12, k)
          for s, k in enumerate(["smooth", "flat", "zeros"] * 3)]
CURVES += [markov_entropy_curve(np.asarray([[0.9, 0.1], [0.2, 0.8]]), 16)] * 2
BUDGETS = [5, 6, 7, 8, 5, 6, 7, 8, 5, 6, 16]


def test_batch_matches_brute_force_for_mixed_lengths_and_budgets():
    profiles = [EntropyProfile.from_entropy(h) for h in CURVES]
    schedules = optimize_batch(profiles, BUDGETS)
    for entropy, steps, schedule in zip(CURVES, BUDGETS, schedules, strict=True):
        tokens = np.asarray(schedule.tokens_per_step)
        assert tokens.size == steps and tokens.sum() == len(entropy) - 1 and tokens.min() >= 1
        want = brute_force_optimum(entropy, steps)
        # The reported KL is the schedule's own (plain-loop route), and it is the optimum.
        assert float(schedule.expected_kl) == pytest.approx(kl_from_curve(entropy, tokens),
                                                            rel=1e-9, abs=1e-12)
        assert float(schedule.expected_kl) <= want * (1 + 1e-9) + 1e-12


def test_one_budget_for_all_and_the_dp_on_a_longer_chain():
    entropy = markov_entropy_curve(0.8 * np.eye(4) + 0.05, 128)  # theory §10
    profile = EntropyProfile.from_entropy(entropy)
    schedules = optimize_batch([profile] * 3, 8)
    assert [s.tokens_per_step.tolist() for s in schedules] == [[8, 9, 11, 13, 16, 19, 23, 29]] * 3
    assert float(schedules[0].expected_kl) == pytest.approx(7.176410, abs=1e-6)
    assert float(schedules[0].expected_kl) == pytest.approx(frontier(profile, 8)[-1], rel=1e-12)


_SHARDED = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    import schedopt
    sys.path.insert(0, {tests!r})
    from test_batch import BUDGETS, CURVES
    profiles = [schedopt.EntropyProfile.from_entropy(h) for h in CURVES]
    schedules = schedopt.optimize_batch(profiles, BUDGETS)
    print(json.dumps({{"devices": jax.device_count(),
                      "tokens": [s.tokens_per_step.tolist() for s in schedules],
                      "kl": [float(s.expected_kl) for s in schedules]}}))
    """
)


def test_eight_simulated_devices_give_the_same_schedules():
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
           "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", _SHARDED.format(tests=tests)], env=env,
                         capture_output=True, text=True, timeout=300, check=True)
    sharded = json.loads(run.stdout.strip().splitlines()[-1])
    assert sharded["devices"] == 8
    schedules = optimize_batch([EntropyProfile.from_entropy(h) for h in CURVES], BUDGETS)
    assert sharded["tokens"] == [s.tokens_per_step.tolist() for s in schedules]
    assert sharded["kl"] == [float(s.expected_kl) for s in schedules]


def test_trivial_budgets_need_no_optimizer():
    entropy = CURVES[0]
    profile = EntropyProfile.from_entropy(entropy)
    one, every = optimize_batch([profile, profile], [1, 12])
    assert one.tokens_per_step.tolist() == [12] and every.tokens_per_step.tolist() == [1] * 12
    assert float(one.expected_kl) == pytest.approx(kl_from_curve(entropy, [12]), rel=1e-12)
    assert float(every.expected_kl) == 0.0


@pytest.mark.parametrize(
    "steps, message",
    [([2, 3], "got 2 budgets for 3 profiles"), (0, "problem 0: steps must be between 1 and n"),
     ([2, 13, 2], "problem 1: steps must be between 1 and n = 12"),
     ([2, 2.5, 2], "problem 1: steps must be a whole number")],
)
def test_bad_budgets_name_the_problem(steps, message):
    profiles = [EntropyProfile.from_entropy(CURVES[0])] * 3
    with pytest.raises(ValueError, match=message):
        optimize_batch(profiles, steps)


def test_non_profiles_are_refused():
    with pytest.raises(ValueError, match=r"profiles\[1\] is a ndarray"):
        optimize_batch([EntropyProfile.from_entropy(CURVES[0]), CURVES[1]], 2)


# --------------------------------------------------------------------------- fast_frontier
@pytest.mark.parametrize("seed", range(3))
def test_fast_frontier_equals_enumeration(seed):
    rng = np.random.default_rng(seed)
    for kind in ("smooth", "flat", "zeros"):
        entropy = _random_entropy(rng, 12, kind)
        optimum = fast_frontier(EntropyProfile.from_entropy(entropy), 12)
        for steps in range(1, 13):
            want = brute_force_optimum(entropy, steps)
            assert optimum[steps - 1] == pytest.approx(want, rel=1e-9, abs=1e-12), (kind, steps)


@pytest.mark.parametrize("kind", ["smooth", "flat", "noisy"])
def test_fast_frontier_equals_the_divide_and_conquer_dp(kind):
    # Rough, flat and regularised-noisy curves exercise the general certificate and the
    # fallback to the DP, not only the fast path.
    rng = np.random.default_rng(7)
    n = 200
    if kind == "noisy":
        g = 1.0 / (1.0 + np.arange(n) / 10.0) + rng.normal(size=n) * 0.02
        profile = EntropyProfile.from_conditional_entropy(g, check=False).regularize()
    else:
        profile = EntropyProfile.from_entropy(_random_entropy(rng, n, kind))
    want = frontier(profile, 64)
    got = fast_frontier(profile, 64)
    assert np.allclose(got, want, rtol=1e-10, atol=1e-9 * want[0])
