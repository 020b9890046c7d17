"""The Lagrangian exact solver and the layered hull frontier against enumeration.

Independent routes: `brute_force_optimum` (every composition of n into T parts) and
`quadratic_dp_optimum` (the O(T n^2) DP over all blocks, no Monge shortcut, no grid).
"""

import subprocess
import sys

import numpy as np
import pytest
from helpers import brute_force_optimum, kl_from_curve, quadratic_dp_optimum, rough_curve

from schedopt import EntropyProfile, frontier, optimal_schedule


def _entropy(g):
    return np.concatenate([[0.0], np.cumsum(g)])


def _check(entropy, steps, optimum):
    profile = EntropyProfile(entropy=entropy)
    schedule = optimal_schedule(profile, steps)
    tokens = np.asarray(schedule.tokens_per_step)
    assert tokens.size == steps and tokens.min() >= 1 and tokens.sum() == profile.n
    assert bool(schedule.certified)
    tol = 1e-9 * max(1.0, abs(optimum))
    assert kl_from_curve(entropy, tokens) <= optimum + tol
    # The lower bound is a proof: it never exceeds the true optimum.
    assert float(schedule.lower_bound) <= optimum + tol
    assert float(schedule.lower_bound) >= optimum - 1e-7 * max(1.0, abs(optimum))


def _adversarial(rng, n, kind):
    if kind == "random":
        return np.sort(rng.uniform(0, 3, n))[::-1]
    if kind == "ties":  # few distinct levels: long flat runs, many equal slopes
        return np.sort(rng.integers(0, 3, n).astype(float))[::-1]
    if kind == "linear":  # g in arithmetic progression: many exactly tied schedules
        return np.arange(n, 0, -1, dtype=float)
    if kind == "one_drop":
        return np.where(np.arange(n) < rng.integers(1, n + 1), 1.0, 0.0)
    return rough_curve(rng, n, kind)


KINDS = ["random", "ties", "linear", "one_drop", "noisy", "steps", "plateau", "constant"]


@pytest.fixture(params=["layered", "lagrangian"])
def route(request, monkeypatch):
    """Run `optimal_schedule` through one solver for every T: the layered DP or the search."""
    import schedopt.solve._exact as exact

    monkeypatch.setattr(exact, "LAYERED_MAX_STEPS",
                        10**9 if request.param == "layered" else 0)
    return request.param


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_every_budget_equals_enumeration(kind, seed, route):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 11))
    entropy = _entropy(_adversarial(rng, n, kind))
    values = frontier(EntropyProfile(entropy=entropy), n)
    for steps in range(1, n + 1):
        optimum = brute_force_optimum(entropy, steps)
        _check(entropy, steps, optimum)
        assert abs(values[steps - 1] - optimum) <= 1e-9 * max(1.0, optimum)


@pytest.mark.parametrize("kind", KINDS)
def test_larger_curves_equal_the_quadratic_dp(kind, route):
    rng = np.random.default_rng(7)
    n = 97
    entropy = _entropy(_adversarial(rng, n, kind))
    budgets = [1, 2, 3, 7, 16, 40, 96, 97]
    values = frontier(EntropyProfile(entropy=entropy), n)
    for steps in budgets:
        optimum = quadratic_dp_optimum(entropy, steps)
        _check(entropy, steps, optimum)
        assert abs(values[steps - 1] - optimum) <= 1e-9 * max(1.0, optimum)


def test_large_budget_is_certified_at_n_131072():
    j = np.arange(131072)
    entropy = _entropy(1.0 / (1.0 + j / 64.0))
    schedule = optimal_schedule(EntropyProfile(entropy=entropy), 4096)
    assert bool(schedule.certified) and len(schedule.tokens_per_step) == 4096
    gap = float(schedule.expected_kl) - float(schedule.lower_bound)
    assert abs(gap) <= 1e-9 * float(schedule.expected_kl) + 1e-9  # rounding only


def test_solver_loads_where_numba_cannot_write_a_cache(spawn):
    """A read-only install under a read-only home: numba has no cache folder, so `cache=True`
    would refuse at import; the solver compiles without a cache and still finds the optimum."""
    rng = np.random.default_rng(3)
    entropy = _entropy(np.sort(rng.uniform(0, 2, 8))[::-1])
    optimum = brute_force_optimum(entropy, 3)
    code = (
        "import numpy as np, numba.core.caching as c\n"
        "def read_only(self):\n"
        "    raise PermissionError('read-only file system')\n"
        "c._CacheLocator.ensure_cache_path = read_only  # every cache folder is read-only\n"
        "from schedopt.solve import optimal_tokens\n"
        f"entropy = np.array({entropy.tolist()!r})\n"
        "bound, tokens = optimal_tokens(entropy, 3)\n"
        "print(*tokens.tolist())\n"
    )
    proc = spawn([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 text=True)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    tokens = [int(t) for t in out.split()]
    assert len(tokens) == 3 and sum(tokens) == 8
    assert abs(kl_from_curve(entropy, tokens) - optimum) <= 1e-9 * max(1.0, optimum)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("seed", range(3))
def test_fewest_steps_equals_enumeration(kind, seed):
    """The least T reaching a target, against the brute-force optimum of every T; targets on
    the frontier's values themselves (ties), between them, and below every positive one."""
    from schedopt.solve import fewest_steps_optimal

    rng = np.random.default_rng(10 + seed)
    n = int(rng.integers(1, 11))
    entropy = _entropy(_adversarial(rng, n, kind))
    optima = [brute_force_optimum(entropy, t) for t in range(1, n + 1)]
    positive = [v for v in optima if v > 1e-9]
    targets = positive + [0.5 * v for v in positive] + [1e-6, optima[0] * 2 + 1.0]
    for target in targets:
        slack = 1e-12 * (1 + target)
        expected = 1 + next(t for t, v in enumerate(optima) if v <= target + slack)
        assert fewest_steps_optimal(EntropyProfile(entropy=entropy), target) == expected


def test_fewest_steps_on_a_long_curve_equals_the_quadratic_dp():
    rng = np.random.default_rng(5)
    entropy = _entropy(rough_curve(rng, 97, "noisy"))
    from schedopt.solve import fewest_steps_optimal

    optima = [quadratic_dp_optimum(entropy, t) for t in range(1, 98)]
    for target in (optima[0] * 0.9, optima[5], optima[20] * 1.01, optima[40] * 0.99, 1e-9):
        expected = 1 + next(t for t, v in enumerate(optima) if v <= target * (1 + 1e-12) + 1e-12)
        assert fewest_steps_optimal(EntropyProfile(entropy=entropy), target) == expected


@pytest.mark.parametrize("bad", [0, 11, 2.5])
def test_a_bad_frontier_budget_names_max_steps(bad):
    profile = EntropyProfile(entropy=_entropy(np.linspace(1.0, 0.1, 10)))
    with pytest.raises(ValueError, match="^max_steps must be"):
        frontier(profile, bad)
