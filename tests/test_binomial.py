"""Random-count samplers (theory §6): the exact objective, its optimizer and TimeGrid files.

Independent routes: enumeration of every token-to-step assignment (multinomial counts) with
the fixed-count formula written out here, a Monte Carlo simulation of the random-count sampler
on an explicit joint table scored by theory §9's log-likelihood ratio, a 1-D grid search, and
theory §6's published numbers for a sticky Markov chain (curve by theory §8's closed form,
itself checked against enumeration).
"""

from __future__ import annotations

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import gammaln

import schedopt
from schedopt.cli import main
from schedopt.objective import expected_kl_binomial
from schedopt.schedule import TimeGrid
from schedopt.solve import optimize_binomial


# --------------------------------------------------------------------------- helpers
def random_table(rng: np.random.Generator, n: int, v: int) -> np.ndarray:
    """A random joint table with n axes of length v (a few strong correlations)."""
    p = rng.gamma(0.3, size=(v,) * n)
    return p / p.sum()


def subset_entropy(table: np.ndarray, subset: tuple[int, ...]) -> float:
    others = tuple(i for i in range(table.ndim) if i not in subset)
    m = table.sum(axis=others) if others else table
    m = m[m > 0]
    return float(-np.sum(m * np.log(m)))


def entropy_curve(table: np.ndarray) -> np.ndarray:
    """H_j = mean over j-subsets of H(X_S), by enumeration."""
    n = table.ndim
    return np.array(
        [0.0]
        + [
            np.mean([subset_entropy(table, s) for s in itertools.combinations(range(n), j)])
            for j in range(1, n + 1)
        ]
    )


def fixed_count_kl(h: np.ndarray, counts) -> float:
    """theory §3, first form, skipping empty steps: sum_k sum_{j in step k} (g_{N_{k-1}} - g_j)."""
    g = np.diff(h)
    total, start = 0.0, 0
    for s in counts:
        total += sum(g[start] - g[j] for j in range(start, start + s))
        start += s
    return total


def markov_entropy(transition: np.ndarray, n: int) -> np.ndarray:
    """theory §8's closed form for a stationary Markov chain (checked below by enumeration)."""
    p = np.asarray(transition, dtype=np.float64)
    w, v = np.linalg.eig(p.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi /= pi.sum()
    h_pi = -np.sum(pi * np.log(pi))
    h = np.zeros(n + 1)
    power = np.eye(p.shape[0])
    for d in range(1, n + 1):
        power = power @ p
        rows = -np.sum(np.where(power > 0, power * np.log(np.where(power > 0, power, 1)), 0), 1)
        h[d] = pi @ rows
    out = np.zeros(n + 1)
    out[1] = h_pi
    log_choose = lambda a, b: gammaln(a + 1) - gammaln(b + 1) - gammaln(a - b + 1)  # noqa: E731
    for j in range(2, n + 1):
        d = np.arange(1, n - j + 2)
        weight = np.exp(np.log(n - d) + log_choose(n - d - 1, j - 2) - log_choose(n, j))
        out[j] = h_pi + np.sum(weight * h[d])
    return out


def markov_table(transition: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(transition)
    w, v = np.linalg.eig(p.T)
    pi = np.real(v[:, np.argmin(np.abs(w - 1))])
    pi /= pi.sum()
    table = np.zeros((p.shape[0],) * n)
    for x in itertools.product(range(p.shape[0]), repeat=n):
        table[x] = pi[x[0]] * np.prod([p[a, b] for a, b in zip(x[:-1], x[1:], strict=True)])
    return table


def random_grid(rng: np.random.Generator, steps: int) -> np.ndarray:
    return np.concatenate([[0.0], np.cumsum(rng.dirichlet(np.ones(steps)))[:-1], [1.0]])


STICKY = 0.9 * np.eye(8) + 0.1 / 8  # theory §6's sticky 8-state chain


# --------------------------------------------------------------------------- the objective
def test_markov_closed_form_matches_enumeration():
    transition = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    table = markov_table(transition, 5)
    np.testing.assert_allclose(markov_entropy(transition, 5), entropy_curve(table), atol=1e-12)


@pytest.mark.parametrize("n, v", [(3, 3), (4, 2), (5, 2)])
@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_matches_enumeration_of_step_assignments(n, v, steps):
    """Each token picks its step independently with P(step k) = alpha_k - alpha_{k-1}."""
    rng = np.random.default_rng(100 * n + 10 * v + steps)
    h = entropy_curve(random_table(rng, n, v))
    profile = schedopt.EntropyProfile.from_entropy(h)
    alpha = random_grid(rng, steps)
    q = np.diff(alpha)
    exact = 0.0
    for assignment in itertools.product(range(steps), repeat=n):
        counts = np.bincount(assignment, minlength=steps)
        exact += np.prod(q[list(assignment)]) * fixed_count_kl(h, counts)
    assert float(expected_kl_binomial(profile, alpha)) == pytest.approx(exact, abs=1e-11)


def test_matches_random_count_sampler_by_monte_carlo():
    """Simulate the sampler on an explicit law; score each draw by theory §9's log-ratio."""
    rng = np.random.default_rng(7)
    n, v, num = 4, 3, 40_000
    table = random_table(rng, n, v)
    alpha = np.array([0.0, 0.3, 0.55, 1.0])
    flat = table.ravel()
    x = np.stack(np.unravel_index(rng.choice(flat.size, size=num, p=flat), table.shape), 1)
    step = rng.choice(alpha.size - 1, size=(num, n), p=np.diff(alpha))
    # marginal[mask][sample] = P(X_S = x_S) for every subset S (bit i set: position i in S).
    marginal = np.ones((2**n, num))
    for mask in range(1, 2**n):
        subset = [i for i in range(n) if mask >> i & 1]
        others = tuple(i for i in range(n) if not mask >> i & 1)
        m = table.sum(axis=others) if others else table
        marginal[mask] = m[tuple(x[:, subset].T)]
    log_ratio = np.log(marginal[2**n - 1])
    rows = np.arange(num)
    for i in range(n):
        before = (step < step[:, i : i + 1]).astype(np.int64) @ (1 << np.arange(n))
        log_ratio -= np.log(marginal[before | (1 << i), rows] / marginal[before, rows])
    mean, se = log_ratio.mean(), log_ratio.std(ddof=1) / math.sqrt(num)
    exact = float(
        expected_kl_binomial(schedopt.EntropyProfile.from_entropy(entropy_curve(table)), alpha)
    )
    assert abs(mean - exact) < 4 * se, (mean, se, exact)
    assert se < 0.1 * exact  # the test has power


def test_batched_grids_match_one_at_a_time():
    rng = np.random.default_rng(3)
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 32))
    grids = np.stack([random_grid(rng, 6) for _ in range(5)]).reshape(5, 1, 7)
    batched = np.asarray(expected_kl_binomial(profile, grids))
    single = [float(expected_kl_binomial(profile, g[0])) for g in grids]
    np.testing.assert_allclose(batched[:, 0], single, rtol=1e-13)


@jax.enable_x64(True)  # gradients through the caller's trace use the caller's precision
def test_gradient_matches_finite_differences():
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 64))
    alpha = random_grid(np.random.default_rng(5), 6)

    def f(inner):
        return expected_kl_binomial(profile, jnp.concatenate([jnp.zeros(1), inner, jnp.ones(1)]))

    inner = jnp.asarray(alpha[1:-1])
    grad = np.asarray(jax.grad(f)(inner))
    h = 1e-6
    for k in range(inner.size):
        e = np.zeros(inner.size)
        e[k] = h
        fd = (float(f(inner + e)) - float(f(inner - e))) / (2 * h)
        assert grad[k] == pytest.approx(fd, rel=1e-6, abs=1e-8)
    assert np.all(np.isfinite(grad))


def test_one_token_and_one_step_edge_cases():
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 16))
    # One step reveals everything at once: KL = total correlation.
    assert float(expected_kl_binomial(profile, [0.0, 1.0])) == pytest.approx(
        profile.total_correlation, abs=1e-12
    )
    single = schedopt.EntropyProfile.from_entropy([0.0, 1.3])
    assert float(expected_kl_binomial(single, [0.0, 0.4, 1.0])) == pytest.approx(0.0, abs=1e-15)


# --------------------------------------------------------------------------- the optimizer
def test_theory6_numbers_for_the_sticky_markov_chain():
    """theory §6: fixed counts ~9.1, best random-count grid ~10.1, MD4's cosine grid ~11.4."""
    n, steps = 256, 16
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, n))
    fixed = float(schedopt.optimal_schedule(profile, steps).expected_kl)
    grid = optimize_binomial(profile, steps)
    # MD4's cosine schedule at uniform times t_k = 1 - k / T: alpha = (1 - 2 eps) a + eps, of
    # which the sampler, started at alpha(1) = eps, has revealed (alpha - eps) / (1 - eps).
    eps, k = 1e-4, np.arange(steps + 1)
    alpha = (1 - 2 * eps) * (1 - np.cos(np.pi / 2 * k / steps)) + eps
    md4_cosine = (alpha - eps) / (1 - eps)
    md4_cosine[-1] = 1.0  # MD4's final decode reveals what t = 0 leaves
    assert fixed == pytest.approx(9.1, abs=0.05)
    assert float(grid.expected_kl) == pytest.approx(10.1, abs=0.05)
    assert float(expected_kl_binomial(profile, md4_cosine)) == pytest.approx(11.4, abs=0.05)
    # Every realisation has at most T non-empty steps, so random counts never beat the optimum.
    assert fixed <= float(grid.expected_kl)
    assert grid.method == "binomial-optax" and grid.steps == steps


def test_two_step_optimum_matches_a_grid_search():
    """T = 2 has one free fraction: a dense scan is an independent optimum, for the default
    L-BFGS and for any Optax optimizer started anywhere."""
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 48))
    a = np.linspace(1e-4, 1 - 1e-4, 20_001)
    grids = np.stack([np.zeros_like(a), a, np.ones_like(a)], 1)
    values = np.asarray(expected_kl_binomial(profile, grids))
    best = optimize_binomial(profile, 2)
    assert float(best.expected_kl) <= values.min() + 1e-9
    assert float(best.alpha[1]) == pytest.approx(a[np.argmin(values)], abs=2e-4)
    adam = optimize_binomial(
        profile, 2, optimizer=optax.adam(0.05), num_iterations=400, init=[0.0, 0.9, 1.0]
    )
    assert float(adam.expected_kl) == pytest.approx(values.min(), rel=1e-6)


def test_more_steps_than_tokens_is_allowed():
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 4))
    grid = optimize_binomial(profile, 6, optimizer=optax.sgd(0.01), num_iterations=3)
    assert grid.steps == 6 and 0 <= float(grid.expected_kl) < profile.total_correlation


# --------------------------------------------------------------------------- files and bad input
def test_time_grid_file_round_trip(tmp_path):
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 32))
    grid = TimeGrid.from_alpha(profile, [0.0, 0.25, 0.6, 1.0], "custom")
    grid.save(tmp_path / "g.json")
    back = TimeGrid.load(tmp_path / "g.json", profile)
    np.testing.assert_array_equal(np.asarray(back.alpha), np.asarray(grid.alpha))
    assert float(back.expected_kl) == pytest.approx(float(grid.expected_kl), rel=1e-14)
    other = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 16))
    with pytest.raises(ValueError, match="n = 32 tokens but the profile has n = 16"):
        TimeGrid.load(tmp_path / "g.json", other)


@pytest.mark.parametrize(
    "alpha, message",
    [
        ([0.0, 0.5, 0.4, 1.0], r"strictly increasing, but alpha\[2\]"),
        ([0.0, 0.5, 0.5, 1.0], r"strictly increasing, but alpha\[2\]"),
        ([0.0, 1.2, 1.0], r"outside \[0, 1\]"),
        ([0.0, -0.1, 1.0], r"outside \[0, 1\]"),
        ([0.0, float("nan"), 1.0], r"outside \[0, 1\]"),
        ([0.1, 0.5, 1.0], "must start at 0"),
        ([0.0, 0.5, 0.9], "end at 1"),
        ([0.0], "at least 2 values"),
    ],
)
def test_bad_alpha_is_one_clear_error(alpha, message):
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 8))
    with pytest.raises(ValueError, match=message):
        expected_kl_binomial(profile, alpha)


@pytest.mark.parametrize("steps", [0, -1, 2.5, True])
def test_bad_steps_is_one_clear_error(steps):
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 8))
    with pytest.raises(ValueError, match="steps must be a whole number >= 1"):
        optimize_binomial(profile, steps)


# --------------------------------------------------------------------------- command line
def test_cli_optimize_binomial_and_compare(tmp_path, capsys):
    profile = schedopt.EntropyProfile.from_entropy(markov_entropy(STICKY, 48))
    profile.save(tmp_path / "P.json")
    out = tmp_path / "G.json"
    argv = ["optimize", "--profile", str(tmp_path / "P.json"), "--steps", "2"]
    assert main([*argv, "--sampler", "binomial", "--out", str(out)]) == 0
    grid = TimeGrid.load(out, profile)
    # The optimum of the grid search in test_two_step_optimum_matches_a_grid_search.
    a = np.linspace(1e-4, 1 - 1e-4, 20_001)
    values = np.asarray(
        expected_kl_binomial(profile, np.stack([np.zeros_like(a), a, np.ones_like(a)], 1))
    )
    assert float(grid.expected_kl) <= values.min() + 1e-9
    capsys.readouterr()
    assert main(["compare", "--profile", str(tmp_path / "P.json"), "--steps", "2", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)["schedules"]}
    best = rows["random counts, optimized grid"]["expected_kl"]
    assert values.min() - 1e-6 <= best <= values.min() + 1e-9  # the scan's resolution
    assert (
        rows["optimal"]["expected_kl"]
        <= best
        <= rows["random counts, MD4 cosine grid"]["expected_kl"]
    )
    # MD4's cosine grid at T = 2: by t = 1/2 it has revealed (1 - 2 eps)(1 - cos(pi/4)) / (1 - eps).
    eps = 1e-4
    half = (1 - 2 * eps) * (1 - math.cos(math.pi / 4)) / (1 - eps)
    assert rows["random counts, MD4 cosine grid"]["expected_kl"] == pytest.approx(
        float(expected_kl_binomial(profile, [0.0, half, 1.0])), rel=1e-12
    )
