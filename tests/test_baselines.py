"""EDS and LLaDA issue 93's pyramid (theory §5): their rules written out, and their rows in
`compare` scored by the curve formula of the test helpers."""

import math

import numpy as np
import pytest
from helpers import kl_from_curve, markov_entropy_curve
from hypothesis import given, settings
from hypothesis import strategies as st

import schedopt
from schedopt import EntropyProfile
from schedopt.check import llada_stock
from schedopt.schedule import eds_tokens, pyramid_tokens, uniform_tokens
from schedopt.solve import METHODS, budget_table, fewest_steps, schedules_at_budget

CHAIN = markov_entropy_curve(0.8 * np.eye(4) + 0.05, 128)
MARKOV = EntropyProfile.from_entropy(CHAIN)


# --------------------------------------------------------------------------- EDS
@pytest.mark.parametrize(("n", "steps"), [(128, 8), (12, 3), (12, 12), (7, 1), (60, 5)])
def test_eds_on_a_linear_curve_is_uniform(n, steps):
    # H_j = c j: equal information is equal tokens (T divides n here).
    assert eds_tokens(0.7 * np.arange(n + 1), steps).tolist() == [n // steps] * steps


@pytest.mark.parametrize(("n", "steps"), [(10, 4), (128, 7), (13, 5)])
def test_eds_on_a_linear_curve_cuts_at_ceil_kn_over_t(n, steps):
    # The first j with j >= k n / T is ceil(k n / T).
    cuts = [math.ceil(k * n / steps) for k in range(steps + 1)]
    assert eds_tokens(np.arange(n + 1) * 1.0, steps).tolist() == np.diff(cuts).tolist()


def test_eds_of_a_flat_curve_is_uniform():
    assert eds_tokens(np.zeros(11), 3).tolist() == uniform_tokens(10, 3).tolist()


def _first_reach(h, level):
    return next(j for j, v in enumerate(h) if v >= level)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 60), st.data())
def test_eds_cuts_are_the_first_counts_reaching_k_over_t(n, data):
    # A random concave H (g positive and non-increasing), against a plain search.
    g = np.sort(np.asarray(data.draw(st.lists(st.floats(1e-3, 5.0), min_size=n, max_size=n))))
    h = np.concatenate([[0.0], np.cumsum(g[::-1])])
    steps = data.draw(st.integers(1, n))
    tokens = eds_tokens(h, steps)
    assert tokens.size == steps and tokens.sum() == n and tokens.min() >= 1
    cuts = np.cumsum(tokens)[:-1].tolist()
    raw = [_first_reach(h, k / steps * h[-1]) for k in range(1, steps)]
    levels_clear = all(abs(v - k / steps * h[-1]) > 1e-9 * h[-1]
                       for k in range(1, steps) for v in h)
    fits = all(k <= c <= n - (steps - k) for k, c in enumerate(raw, start=1))
    if levels_clear and fits and all(a < b for a, b in zip(raw, raw[1:], strict=False)):
        assert cuts == raw
    else:  # forced apart or into range: still strictly increasing, each in [k, n - (T - k)]
        assert all(a < b for a, b in zip([0, *cuts], [*cuts, n], strict=True))
        assert all(k <= c <= n - (steps - k) for k, c in enumerate(cuts, start=1))


# --------------------------------------------------------------------------- pyramid
def _issue_93(n, factor):
    """LLaDA issue 93's rule as written: k = i // factor + 1 tokens at step i, until n."""
    out, left, i = [], n, 0
    while left > 0:
        k = min(i // factor + 1, left)
        out.append(k)
        left -= k
        i += 1
    return out


@pytest.mark.parametrize("n", [1, 2, 5, 10, 37, 64, 128])
def test_pyramid_is_issue_93_with_the_largest_factor_that_fits(n):
    pyramids = {f: _issue_93(n, f) for f in range(1, n + 1)}
    for steps in range(1, n + 1):
        fitting = [f for f, p in pyramids.items() if len(p) <= steps]
        tokens, factor = pyramid_tokens(n, steps)
        if fitting:
            assert factor == max(fitting)
            assert tokens.tolist() == pyramids[factor]
        else:
            assert factor is None and len(pyramids[1]) > steps


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.data())
def test_the_ramp_below_the_smallest_pyramid(n, data):
    shortest = len(_issue_93(n, 1))
    if shortest == 1:
        return
    steps = data.draw(st.integers(1, shortest - 1))
    tokens, factor = pyramid_tokens(n, steps)
    assert factor is None
    assert tokens.size == steps and tokens.sum() == n and tokens.min() >= 1
    assert np.all(np.diff(tokens) >= 0)
    quota = np.arange(1, steps + 1) * n / (steps * (steps + 1) / 2)
    assert np.all(np.abs(tokens - quota) < 1)


def test_pyramid_schedule_reports_its_factor():
    s = schedopt.pyramid(MARKOV, 16)
    assert s.meta["factor"] == 1 and np.asarray(s.tokens_per_step).tolist() == _issue_93(128, 1)
    assert schedopt.pyramid(MARKOV, 8).meta["factor"] is None


# --------------------------------------------------------------------------- compare
def test_llada_stock_without_blocks_is_the_uniform_row():
    # Why compare has no separate "LLaDA stock" row.
    for n, steps in ((128, 8), (10, 4), (7, 7)):
        stock = np.asarray(llada_stock(n, steps).tokens_per_step)
        assert stock.tolist() == [n // steps + (k < n % steps) for k in range(steps)]


def test_compare_has_the_new_rows_scored_by_the_curve():
    at = schedules_at_budget(MARKOV, 8)
    assert tuple(at) == METHODS
    for name in ("eds", "pyramid"):
        s = at[name]
        assert float(s.expected_kl) == pytest.approx(
            kl_from_curve(CHAIN, np.asarray(s.tokens_per_step)), rel=1e-10)
        assert float(s.expected_kl) >= float(at["optimal"].expected_kl) - 1e-9


def test_budget_table_rows_match_the_rules():
    table = budget_table(MARKOV, 24)
    assert set(table) == set(METHODS) - {"optimized"}
    for t in range(1, 25):
        eds = eds_tokens(CHAIN, t)
        pyr = _issue_93(128, max([f for f in range(1, 129) if len(_issue_93(128, f)) <= t],
                                 default=0)) if t >= len(_issue_93(128, 1)) else None
        assert table["eds"][0][t - 1] == t
        assert table["eds"][1][t - 1] == pytest.approx(kl_from_curve(CHAIN, eds), rel=1e-10)
        if pyr is not None:
            assert table["pyramid"][0][t - 1] == len(pyr)
            assert table["pyramid"][1][t - 1] == pytest.approx(kl_from_curve(CHAIN, pyr),
                                                               rel=1e-10)


def test_fewest_steps_of_the_new_rows_by_a_plain_loop():
    fewest = fewest_steps(MARKOV, 5.0, methods=("eds", "pyramid"))
    want = next(t for t in range(1, 129) if kl_from_curve(CHAIN, eds_tokens(CHAIN, t)) <= 5)
    assert fewest["eds"] == want
    want = next(t for t in range(1, 129)
                if kl_from_curve(CHAIN, pyramid_tokens(128, t)[0]) <= 5)
    assert fewest["pyramid"] == want


# --------------------------------------------------------------------------- KLUB
def _path_kl_frozen_within_steps(joint, alpha):
    """KL between the path laws of the exact reverse masked process and the one whose
    conditionals are frozen at each step's start (the quantity Jump Your Steps bound with
    Girsanov's theorem as KLUB), by enumeration: every sequence x, every step assignment of the
    tokens (token in step k with probability alpha_k - alpha_{k-1}, independently) and every
    order of reveals (uniform: within a step, reveal times are i.i.d.). Reveal times and
    orders have the same law under both processes, so the log-ratio is the values' alone."""
    import itertools

    n, vocab, steps = joint.ndim, joint.shape[0], len(alpha) - 1
    cache = {}

    def cond(x, i, known):
        key = (i, known, tuple(x[j] for j in known), x[i])
        if key not in cache:
            axes = tuple(j for j in range(n) if j != i and j not in known)
            m = joint.sum(axis=axes) if axes else joint
            keep = sorted((*known, i))  # remaining axes in index order
            index = tuple(x[j] for j in keep)
            row = tuple(x[j] if j != i else slice(None) for j in keep)
            cache[key] = m[index] / m[row].sum()
        return cache[key]

    total = 0.0
    orders = list(itertools.permutations(range(n)))
    for x in itertools.product(range(vocab), repeat=n):
        px = joint[x]
        if px == 0:
            continue
        for step in itertools.product(range(1, steps + 1), repeat=n):
            pa = np.prod([alpha[k] - alpha[k - 1] for k in step])
            if pa == 0:
                continue
            ratio = 0.0
            for order in orders:
                for pos, i in enumerate(order):
                    before = tuple(sorted(j for j in range(n) if step[j] < step[i]
                                          or (step[j] == step[i] and order.index(j) < pos)))
                    start = tuple(sorted(j for j in range(n) if step[j] < step[i]))
                    ratio += math.log(cond(x, i, before) / cond(x, i, start))
            total += px * pa * ratio / len(orders)
    return total


@pytest.mark.parametrize("alpha", [[0.0, 0.4, 1.0], [0.0, 0.25, 0.6, 1.0]])
def test_klub_with_exact_conditionals_is_the_random_count_kl(alpha):
    from helpers import entropy_curve_from_table, random_table

    joint = random_table(np.random.default_rng(7), 4, 2)
    profile = EntropyProfile.from_entropy(entropy_curve_from_table(joint))
    want = _path_kl_frozen_within_steps(joint, alpha)
    assert float(schedopt.expected_kl_binomial(profile, np.asarray(alpha))) == pytest.approx(
        want, rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- JYS's search
def test_mean_conditional_entropy_is_a_binomial_average():
    from schedopt.objective import mean_conditional_entropy

    g, n = np.diff(CHAIN), 128
    for a in (0.0, 0.3, 0.77, 1.0):
        want = sum(math.comb(n - 1, t) * a**t * (1 - a) ** (n - 1 - t) * g[t] for t in range(n))
        assert float(mean_conditional_entropy(MARKOV, a)) == pytest.approx(want, rel=1e-10)


def _scan_best(alpha, k):
    """Brute force: the KL-least point strictly inside (alpha[k], alpha[k+1]), others fixed."""
    cs = np.linspace(alpha[k], alpha[k + 1], 4001)[1:-1]
    grids = np.stack([np.insert(alpha, k + 1, c) for c in cs])
    kl = np.asarray(schedopt.expected_kl_binomial(MARKOV, grids))
    return float(kl.min())


def test_jys_splits_each_interval_at_its_best_point():
    from schedopt.solve import jys_grid

    two = np.asarray(jys_grid(MARKOV, 2).alpha)
    four = jys_grid(MARKOV, 4)
    alpha4 = np.asarray(four.alpha)
    np.testing.assert_allclose(alpha4[[0, 2, 4]], two, atol=1e-12)  # coarse points are kept
    kl2 = float(schedopt.expected_kl_binomial(MARKOV, two))
    assert kl2 <= _scan_best(np.array([0.0, 1.0]), 0) + 1e-9
    # Each new point, with the other new point removed, beats every point of a dense scan.
    for k, at in ((1, 1), (3, 2)):  # its index in alpha4, and once the other is removed
        without = np.delete(alpha4, 4 - k)
        kl = float(schedopt.expected_kl_binomial(MARKOV, without))
        assert kl <= _scan_best(np.delete(without, at), at - 1) + 1e-9
    best = float(schedopt.optimize_binomial(MARKOV, 4).expected_kl)
    assert float(four.expected_kl) >= best - 1e-9


@pytest.mark.parametrize("steps", [0, 3, 6, 2.5, True])
def test_jys_needs_a_power_of_two(steps):
    from schedopt.solve import jys_grid

    with pytest.raises(ValueError, match="power of two"):
        jys_grid(MARKOV, steps)
