"""Count schedules for ranking rules (theory §13): DP vs exhaustive search, exact end points."""

import itertools

import numpy as np
import pytest

from schedopt.distributions import Table
from schedopt.rules import OrderRule, best_counts, optimize_rule_counts, rule_nll, rule_step_costs


def _compositions(n, t):
    for cuts in itertools.combinations(range(1, n), t - 1):
        yield np.diff((0, *cuts, n))


def _cost(costs, counts):
    ends = np.cumsum(counts)
    return sum(costs[a, b] for a, b in zip(ends - counts, ends, strict=True))


def _setup(seed=0, v=3, n=5):
    joint = np.random.default_rng(seed).dirichlet(np.full(v ** n, 0.3)).reshape((v,) * n)
    table = Table(joint)
    data = np.asarray(table.sample(40, key=__import__("jax").random.key(seed)))
    return table.log_conditionals, data


@pytest.mark.parametrize("name,block", [("confidence", None), ("entropy", None),
                                        ("margin", None), ("confidence", 2)])
def test_dp_equals_exhaustive_search_and_end_points_are_exact(name, block):
    fn, data = _setup(n=6 if block else 5)
    n = data.shape[1]
    rule = OrderRule(name, block)
    costs = rule_step_costs(fn, data, rule, batch_size=16)
    # end points: one token per step and (without blocks) one step are exact
    exact_one = rule_nll(fn, data, rule, np.ones(n, np.int64)).nll
    assert sum(costs[a, a + 1] for a in range(n)) == pytest.approx(exact_one, rel=1e-9)
    if block is None:
        assert costs[0, n] == pytest.approx(rule_nll(fn, data, rule, [n]).nll, rel=1e-9)
    for t in range(1, n + 1):
        brute = min((_cost(costs, c), tuple(c)) for c in _compositions(n, t))
        if not np.isfinite(brute[0]):
            with pytest.raises(ValueError, match="fits the blocks"):
                best_counts(costs, t)
            continue
        counts, value = best_counts(costs, t)
        assert value == pytest.approx(brute[0], rel=1e-12)


def test_rescoring_reports_the_measured_number():
    fn, data = _setup(seed=3)
    rule = OrderRule("confidence")
    r = optimize_rule_counts(fn, data, rule, 2, batch_size=64)
    assert r.nll == pytest.approx(rule_nll(fn, data, rule, r.tokens_per_step).nll, rel=1e-12)
    assert r.nll == min(r.rescored.values())
    exhaustive = min(rule_nll(fn, data, rule, c).nll for c in _compositions(5, 2))
    assert r.nll >= exhaustive - 1e-12  # never better than the exact optimum
