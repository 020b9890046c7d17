"""Unmasking rules that depend on the state (theory §13), checked by brute force on table laws.

The reference enumerates the sampler's tree of trajectories with its own plain-Python rule
(conditionals marginalised from the joint table, positions ranked with Python's sorted, ties to
the lowest position) and sums the probability of each output; teacher forcing must give the same
log-probability for every sequence, the same number of steps, and cross-entropy to 1e-6.
"""

import itertools
import math

import jax
import numpy as np
import pytest
from helpers import sampler_tree, state_conditional

from schedopt.distributions import Table
from schedopt.rules import (
    EntropyBoundRule,
    OrderRule,
    PositionStats,
    ThresholdRule,
    choose,
    rule_nll,
)


def _joint(v, n, seed):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(v ** n, 0.3), size=1)[0].reshape((v,) * n)


CASES = [
    (OrderRule("confidence"), [2, 2]),
    (OrderRule("margin"), [1, 3]),
    (OrderRule("entropy"), [3, 1]),
    (OrderRule("left-to-right"), [2, 1, 1]),
    (OrderRule("confidence", block_length=2), [1, 1, 2]),
    (ThresholdRule(0.6), None),
    (ThresholdRule(0.5, block_length=2), None),
    (EntropyBoundRule(0.4), None),
]


@pytest.mark.parametrize("rule,counts", CASES)
def test_teacher_forcing_is_the_sampler_law(rule, counts):
    v, n = 3, 4
    joint = _joint(v, n, seed=len(str(rule)))
    table = Table(joint)
    seqs = np.asarray(list(itertools.product(range(v), repeat=n)), np.int32)
    tree = sampler_tree(rule, joint, counts)
    assert sum(p for p, _ in tree.values()) == pytest.approx(1.0, abs=1e-9)
    r = rule_nll(table.log_conditionals, seqs, rule, counts, batch_size=27)
    q = np.asarray([tree[tuple(s)][0] for s in seqs])
    np.testing.assert_allclose(np.exp(-r.per_sequence), q, rtol=1e-6, atol=1e-12)
    steps = np.asarray([tree[tuple(s)][1] for s in seqs])
    np.testing.assert_array_equal(r.per_sequence_passes, steps)
    mu = joint.reshape(-1)
    cross_entropy = -(mu * np.log(q)).sum()
    assert float((mu * r.per_sequence).sum()) == pytest.approx(cross_entropy, abs=1e-6)


def test_random_rule_matches_schedule_nll_mean():
    """The random order: the mean over many orders tends to the exact random-order NLL."""
    v, n = 3, 3
    joint = _joint(v, n, seed=7)
    table = Table(joint)
    seqs = np.asarray(list(itertools.product(range(v), repeat=n)), np.int32)
    # random order == average over all n! orders of the left-to-right rule on permuted data
    perms = list(itertools.permutations(range(n)))
    exact = np.zeros(len(seqs))
    for perm in perms:
        # the law q of a fixed order perm with counts [2, 1] on every sequence
        out = {}
        for s in seqs:
            st, lp = {}, 0.0
            for group in ([perm[0], perm[1]], [perm[2]]):
                for i in group:
                    lp += math.log(state_conditional(joint, st, i)[s[i]])
                for i in group:
                    st[i] = int(s[i])
            out[tuple(s)] = lp
        exact += np.asarray([-out[tuple(s)] for s in seqs]) / len(perms)
    rows = np.tile(seqs, (200, 1))
    r = rule_nll(table.log_conditionals, rows, OrderRule("random"), [2, 1],
                 key=jax.random.key(0), batch_size=1024)
    mc = r.per_sequence.reshape(200, -1)
    mean, se = mc.mean(0), mc.std(0, ddof=1) / math.sqrt(200)
    assert np.all(np.abs(mean - exact) < 5 * se + 1e-9)


def test_ties_go_to_the_lowest_position():
    stats = PositionStats(*(np.zeros((1, 4)) for _ in range(4)))
    pick = choose(OrderRule("confidence"), stats, np.array([[False, True, True, True]]), 2)
    np.testing.assert_array_equal(pick, [[False, True, True, False]])


@pytest.mark.parametrize("bad,match", [
    (lambda: OrderRule("lowest"), "unknown unmasking order"),
    (lambda: ThresholdRule(0.0), "tau must lie in"),
    (lambda: ThresholdRule(1.5), "tau must lie in"),
    (lambda: EntropyBoundRule(-0.1), "gamma must be"),
])
def test_bad_rules(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


def test_bad_schedule_length():
    table = Table(_joint(2, 3, 0))
    seqs = np.zeros((4, 3), np.int32)
    with pytest.raises(ValueError, match="n = 3"):
        rule_nll(table.log_conditionals, seqs, OrderRule("confidence"), [2, 2])
    with pytest.raises(ValueError, match="give no schedule"):
        rule_nll(table.log_conditionals, seqs, ThresholdRule(0.9), [2, 1])


def test_a_model_function_is_compiled_once_across_calls():
    """Scoring the same JAX model again reuses its compiled statistics (no retrace), and an
    unhashable callable still works (compiled per call)."""
    table = Table(_joint(3, 3, 1))
    traces = []

    def fn(tokens, revealed):
        traces.append(tokens.shape)  # runs only while JAX traces
        return table.log_conditionals(tokens, revealed)

    seqs = np.asarray(list(itertools.product(range(3), repeat=3)), np.int32)
    first = rule_nll(fn, seqs, OrderRule("confidence"), [2, 1], batch_size=27)
    again = rule_nll(fn, seqs, OrderRule("confidence"), [2, 1], batch_size=27)
    assert len(traces) == 1
    np.testing.assert_array_equal(first.per_sequence, again.per_sequence)

    class Unhashable:
        __hash__ = None

        def __call__(self, tokens, revealed):
            return table.log_conditionals(tokens, revealed)

    other = rule_nll(Unhashable(), seqs, OrderRule("confidence"), [2, 1], batch_size=27)
    np.testing.assert_allclose(other.per_sequence, first.per_sequence, rtol=1e-12)
