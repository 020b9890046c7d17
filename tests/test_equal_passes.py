"""Decoders at equal forward passes (schedopt.rules), checked on a table law by
enumerating each sampler's trajectories (tests/helpers.sampler_tree), independently of the
teacher forcing that schedopt scores with."""

from __future__ import annotations

import types

import jax
import numpy as np
import pytest
from helpers import sampler_tree

from schedopt.distributions import Table
from schedopt.rules import (
    ENTROPY_BOUND,
    PASSES_TOLERANCE,
    RANDOM_OPTIMAL,
    THRESHOLD,
    EntropyBoundRule,
    OrderRule,
    ThresholdRule,
    equal_passes,
    match_passes,
)

V, N = 2, 6


@pytest.fixture(scope="module")
def law():
    rng = np.random.default_rng(3)
    joint = rng.dirichlet(np.full(V ** N, 0.2)).reshape((V,) * N)
    flat = joint.reshape(-1)
    draw = lambda m: np.asarray(np.unravel_index(rng.choice(flat.size, m, p=flat),  # noqa: E731
                                                 joint.shape)).T.astype(np.int32)
    data, tune = draw(120), draw(120)
    result = equal_passes(Table(joint).log_conditionals, data, tune, [2, 3],
                          key=jax.random.key(0), batch_size=64)
    return joint, data, result


def _tree_nll(joint, data, rule, counts=None):
    """Per-sequence -log q(x) and steps under the sampler, by enumeration."""
    tree = sampler_tree(rule, joint, counts)
    q = np.asarray([tree[tuple(int(v) for v in x)][0] for x in data])
    steps = np.asarray([tree[tuple(int(v) for v in x)][1] for x in data])
    return -np.log(q), steps


def test_every_deterministic_row_is_the_enumerated_samplers_cross_entropy(law):
    joint, data, result = law
    ref, _ = _tree_nll(joint, data, OrderRule("confidence"), [1] * N)
    assert result.reference_nll == pytest.approx(ref.mean(), abs=1e-6)
    checked = 0
    for row in result.rows:
        if row.decoder == RANDOM_OPTIMAL:
            continue
        if row.decoder in (THRESHOLD, ENTROPY_BOUND):
            make = ThresholdRule if row.decoder == THRESHOLD else EntropyBoundRule
            nll, steps = _tree_nll(joint, data, make(row.setting))
            assert row.passes_mean == pytest.approx(steps.mean())  # passes = trajectory steps
        else:
            assert sum(row.counts) == N and len(row.counts) == row.budget
            nll, _ = _tree_nll(joint, data, OrderRule(row.decoder.split(",")[0]), row.counts)
            assert row.passes_mean == row.budget
        assert row.nll == pytest.approx(nll.mean(), abs=1e-6)
        d = nll - ref
        half = 1.959963984540054 * d.std(ddof=1) / np.sqrt(d.size)
        assert row.excess == pytest.approx(d.mean(), abs=1e-6)
        np.testing.assert_allclose(row.excess_interval, [d.mean() - half, d.mean() + half],
                                   atol=1e-6)
        checked += 1
    assert checked == 2 * 4  # two budgets: stock, optimized, threshold, entropy bound


def test_the_sweeps_match_the_budget_as_well_as_a_fine_grid_does(law):
    joint, data, result = law
    grids = {THRESHOLD: (ThresholdRule, np.linspace(0.01, 0.99, 40)),
             ENTROPY_BOUND: (EntropyBoundRule, np.geomspace(1e-3, 5.0, 40))}
    for row in result.rows:
        if row.decoder not in grids:
            continue
        make, settings = grids[row.decoder]
        passes = [_tree_nll(joint, data, make(s))[1].mean() for s in settings]
        grid_best = min(abs(p - row.budget) for p in passes)
        assert abs(row.passes_mean - row.budget) <= max(PASSES_TOLERANCE, grid_best) + 1e-9


def test_rows_pair_against_confidence_with_stock_counts(law):
    _, _, result = law
    for budget in (2, 3):
        rows = {r.decoder: r for r in result.rows if r.budget == budget}
        assert set(rows) == {RANDOM_OPTIMAL, "confidence, stock counts",
                             "confidence, optimized counts", THRESHOLD, ENTROPY_BOUND}
        stock = rows["confidence, stock counts"]
        assert stock.vs_stock is None and stock.counts == [N // budget] * budget
        for r in rows.values():
            if r is not stock:
                assert r.vs_stock == pytest.approx(r.nll - stock.nll, abs=1e-9)
                assert r.vs_stock_interval[0] <= r.vs_stock <= r.vs_stock_interval[1]
        assert result.best(budget).nll == min(r.nll for r in rows.values())


def test_match_passes_bisects_in_either_direction():
    # passes(v) = mean over 50 "sequences" of ceil(n v c_i): rising in v, whole per sequence.
    c = np.random.default_rng(0).uniform(0.2, 1.0, 50)
    rising = lambda v: types.SimpleNamespace(passes_mean=float(np.ceil(64 * v * c).mean()))  # noqa: E731
    falling = lambda v: rising(1.0 - v)  # noqa: E731
    grid = np.linspace(0.0, 1.0, 20001)
    for budget in (3.0, 8.0, 16.0, 30.0):
        best = min(abs(rising(v).passes_mean - budget) for v in grid)
        for score in (rising, falling):
            _, result = match_passes(score, budget, 0.0, 1.0)
            assert abs(result.passes_mean - budget) <= max(PASSES_TOLERANCE, best) + 1e-9


@pytest.mark.parametrize("kwargs,match", [
    ({"orders": ("margin",)}, "must start with 'confidence'"),
    ({"orders": ("confidence", "random")}, "random order has its own row"),
    ({"steps": [1], "block_length": 3}, "fewer than the 2 blocks"),
    ({"steps": []}, "at least one budget"),
    ({"tune": np.zeros((4, 5), np.int32)}, "one length"),
])
def test_bad_input_is_one_sentence(kwargs, match):
    joint = np.full((V,) * N, 1.0 / V ** N)
    args = {"data": np.zeros((4, N), np.int32), "tune": np.zeros((4, N), np.int32),
            "steps": [2], **kwargs}
    with pytest.raises(ValueError, match=match):
        equal_passes(Table(joint).log_conditionals, args.pop("data"), args.pop("tune"),
                     args.pop("steps"), key=jax.random.key(0), **args)
