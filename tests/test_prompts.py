"""Prompts that stay visible (theory §12): curves, NLL, blocks and sampling given a prompt.

Independent route: joint tables over prompt + answer positions, where the prompt-conditioned
curve H_j = E_{|S| = j, S in answer} [H(X_prompt, X_S) - H(X_prompt)] and the block curves
are computed here by marginalising the table, and the sampler's law by enumeration.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gamma_table, subset_entropy

import schedopt
from schedopt.distributions import Table
from schedopt.estimate import estimate_curves
from schedopt.sources import block_orders, check_prompts, prompt_groups


def prompted_curve(table: np.ndarray, prompt_length: int) -> np.ndarray:
    """H_j given the prompt, averaged over prompts, by enumeration of answer subsets."""
    prompt = tuple(range(prompt_length))
    answer = range(prompt_length, table.ndim)
    base = subset_entropy(table, prompt)
    return np.asarray([0.0] + [
        np.mean([subset_entropy(table, prompt + s) - base
                 for s in itertools.combinations(answer, j)])
        for j in range(1, len(answer) + 1)
    ])


def draw(table: np.ndarray, num: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = table.ravel()
    return np.stack(np.unravel_index(rng.choice(flat.size, num, p=flat), table.shape), 1)


def by_length(*tables: np.ndarray):
    """A logits_fn for rows of several lengths: each length is one table's conditionals."""
    laws = {t.ndim: Table(t) for t in tables}
    return lambda tokens, revealed: laws[tokens.shape[-1]].log_conditionals(tokens, revealed)


# --------------------------------------------------------------------------- curves
@pytest.mark.parametrize("kind", ["data", "model"])
def test_prompted_curve_matches_the_exact_conditional_curve(kind):
    table = gamma_table(3, 5, 3)  # 2 prompt tokens, 3 answer tokens
    x = draw(table, 4000, 0)
    est = estimate_curves(Table(table).log_conditionals, x[:, 2:], prompts=x[:, :2],
                          key=jax.random.key(1), batch_size=4000)
    mean, se = est.curve(kind)
    exact_g = np.diff(prompted_curve(table, 2))
    assert np.all(np.abs(mean - exact_g) < 4.5 * se), (mean, exact_g, se)
    # Without the prompt the answers follow their marginal law, a different curve.
    unprompted_g = np.diff(prompted_curve(table.sum(axis=(0, 1)), 0))
    assert np.max(np.abs(mean - unprompted_g)) > 10 * se.max()


def test_prompt_changes_the_curve_and_the_profile_reports_the_answer_entropy():
    table = gamma_table(8, 4, 3)  # 1 prompt token, 3 answer tokens
    x = draw(table, 3000, 2)
    with_prompt = schedopt.estimate_profile(Table(table).log_conditionals, x[:, 1:],
                                            prompts=x[:, :1], key=jax.random.key(0),
                                            kind="model", batch_size=3000)
    exact = prompted_curve(table, 1)  # H(answer | prompt) at j = n
    se = with_prompt.meta["joint_entropy_stderr"]
    assert abs(with_prompt.joint_entropy - exact[-1]) < 4.5 * se
    # The same answers without their prompts have the larger marginal entropy.
    marginal = subset_entropy(table, (1, 2, 3))
    assert marginal - exact[-1] > 20 * se


def test_prompts_of_different_lengths_average_their_curves():
    long_table = gamma_table(4, 5, 2)  # prompt of 2, answer of 3
    short_table = gamma_table(5, 4, 2)  # prompt of 1, answer of 3
    a, b = draw(long_table, 3000, 1), draw(short_table, 1000, 2)
    answers = np.concatenate([a[:, 2:], b[:, 1:]])
    prompts = [list(r) for r in a[:, :2]] + [list(r) for r in b[:, :1]]
    perm = np.random.default_rng(0).permutation(4000)  # interleave the two lengths
    est = estimate_curves(by_length(long_table, short_table), answers[perm],
                          prompts=[prompts[i] for i in perm], key=jax.random.key(3),
                          batch_size=4000)
    mean, se = est.curve("model")
    exact = 0.75 * np.diff(prompted_curve(long_table, 2)) + 0.25 * np.diff(
        prompted_curve(short_table, 1))
    assert np.all(np.abs(mean - exact) < 4.5 * se), (mean, exact, se)


# --------------------------------------------------------------------------- NLL and sampler
def test_prompted_nll_excess_is_the_prompted_expected_kl():
    table = gamma_table(6, 5, 3)
    x = draw(table, 3000, 4)
    r = schedopt.schedule_nll(Table(table).log_conditionals, x[:, 2:], [2, 1],
                              key=jax.random.key(5), prompts=x[:, :2], batch_size=3000)
    exact = prompted_curve(table, 2)
    g = np.diff(exact)
    predicted = 2 * g[0] - (exact[2] - exact[0])  # theory §3 for steps [2, 1]
    assert abs(r.excess - predicted) < 4.5 * r.excess_stderr
    assert abs(r.one_by_one - exact[-1]) < 4.5 * r.one_by_one_stderr


def test_semi_autoregressive_nll_excess_is_the_block_kl():
    table = gamma_table(14, 5, 2)  # 1 prompt token, 4 answer tokens in blocks of 2
    x = draw(table, 4000, 6)
    r = schedopt.schedule_nll(Table(table).log_conditionals, x[:, 1:], [2, 1, 1],
                              key=jax.random.key(7), prompts=x[:, :1], block_length=2,
                              batch_size=4000)
    # Block 0 in one step (given the prompt), block 1 one token per step: KL is block 0's.
    kl = (subset_entropy(table, (0, 1)) + subset_entropy(table, (0, 2))
          - subset_entropy(table, (0, 1, 2)) - subset_entropy(table, (0,)))
    assert abs(r.excess - kl) < 4.5 * r.excess_stderr
    assert r.excess > 6 * r.excess_stderr  # the block KL is visible
    exact_answer = subset_entropy(table, range(5)) - subset_entropy(table, (0,))
    assert abs(r.one_by_one - exact_answer) < 4.5 * r.one_by_one_stderr
    with pytest.raises(ValueError, match="block boundary"):
        schedopt.schedule_nll(Table(table).log_conditionals, x[:8, 1:], [3, 1],
                              key=jax.random.key(7), prompts=x[:8, :1], block_length=2)


@pytest.mark.parametrize("steps", [[2], [1, 1]])
def test_sampling_given_a_prompt_has_the_sampler_law(steps):
    table = gamma_table(2, 3, 2)  # 1 prompt token, 2 answer tokens
    law = Table(table)
    num = 6000
    prompts = draw(table, num, 8)[:, :1]
    answers = np.asarray(schedopt.sample(law.conditionals, steps, num, prompts=prompts,
                                         key=jax.random.key(9)))
    assert answers.shape == (num, 2)
    p_prompt = table.sum(axis=(1, 2))
    for z, a, b in itertools.product(range(2), repeat=3):
        if len(steps) == 2:  # one token per step: the exact joint
            expected = table[z, a, b]
        else:  # one step: the product of the two conditionals given the prompt
            expected = table[z, a].sum() * table[z, :, b].sum() / p_prompt[z]
        observed = np.mean((prompts[:, 0] == z) & (answers[:, 0] == a) & (answers[:, 1] == b))
        assert abs(observed - expected) < 4.5 * np.sqrt(expected * (1 - expected) / num) + 1e-3


def test_prompted_block_curves_match_the_exact_ones():
    table = gamma_table(12, 5, 2)  # 1 prompt token, blocks of 2
    x = draw(table, 3000, 10)
    blocks = schedopt.estimate_block_profiles(Table(table).log_conditionals, x[:, 1:], 2,
                                              prompts=x[:, :1], key=jax.random.key(11),
                                              kind="model", regularize=False, batch_size=3000)
    g = np.diff(np.asarray(blocks.entropy), axis=1)
    se = np.asarray(blocks.stderr)
    for b, revealed in enumerate([(0,), (0, 1, 2)]):
        block = (1 + 2 * b, 2 + 2 * b)
        base = subset_entropy(table, revealed)
        h1 = np.mean([subset_entropy(table, revealed + (i,)) - base for i in block])
        h2 = subset_entropy(table, revealed + block) - base
        exact = np.asarray([h1, h2 - h1])
        assert np.all(np.abs(g[b] - exact) < 4.5 * se[b]), (b, g[b], exact, se[b])


# --------------------------------------------------------------------------- helpers, errors
def test_block_orders_keep_blocks_in_order_and_uniform_within():
    orders = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, 6))(
        jax.random.split(jax.random.key(0), 3000)))
    ranks = block_orders(np.argsort(orders, axis=1), 3)
    assert np.all(np.sort(ranks[:, :3], axis=1) == [0, 1, 2])
    assert np.all(np.sort(ranks[:, 3:], axis=1) == [3, 4, 5])
    first = np.bincount(ranks[:, 0], minlength=3) / 3000  # each rank equally likely
    assert np.all(np.abs(first - 1 / 3) < 0.04)


def test_prompt_groups_split_by_length():
    groups = prompt_groups(check_prompts([[1, 2], [3], [4, 5], []], 4), 4)
    assert [g[0].tolist() for g in groups] == [[0, 2], [1], [3]]
    assert groups[0][1].tolist() == [[1, 2], [4, 5]]
    assert groups[2][1].shape == (1, 0)


@pytest.mark.parametrize("prompts, match", [
    ([[1], [2]], "has 2 entries but data has 3"),
    ([[1], [[2]], [3]], "prompt 1 has shape"),
    ([[1], [-2], [3]], "prompt 1 holds token -2"),
    ([[1], [0.5], [3]], "whole-number"),
])
def test_bad_prompts_are_one_clear_error(prompts, match):
    fn = Table(gamma_table(0, 3, 2)).log_conditionals
    with pytest.raises(ValueError, match=match):
        estimate_curves(fn, np.zeros((3, 2), int), prompts=prompts, key=jax.random.key(0))


def test_a_scorer_gives_the_logits_path_result():
    """A TokenScorer (statistics reduced by the model) and a logits_fn agree on one key."""
    table = gamma_table(7, 4, 3)
    law = Table(table)

    class Scorer:
        vocab_size = 3

        def token_statistics(self, prompts, answers, revealed):
            full = np.concatenate([np.stack(prompts), answers], axis=1)
            shown = np.concatenate([np.ones((len(prompts), 1), bool), revealed], axis=1)
            logp = np.asarray(law.log_conditionals(jnp.asarray(full), jnp.asarray(shown)))[:, 1:]
            ce = -np.take_along_axis(logp, answers[..., None], axis=-1)[..., 0]
            p = np.exp(logp)
            ent = -np.sum(p * np.where(p > 0, logp, 0.0), axis=-1)
            return ce, ent

    x = draw(table, 50, 1)
    a = estimate_curves(Scorer(), x[:, 1:], prompts=x[:, :1], key=jax.random.key(2),
                        batch_size=16)
    b = estimate_curves(law.log_conditionals, x[:, 1:], prompts=x[:, :1], key=jax.random.key(2))
    np.testing.assert_allclose(a.cross_entropy, b.cross_entropy, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(a.predictive_entropy, b.predictive_entropy, rtol=1e-6, atol=1e-9)
    r1 = schedopt.schedule_nll(Scorer(), x[:, 1:], [2, 1], key=jax.random.key(3), prompts=x[:, :1])
    r2 = schedopt.schedule_nll(law.log_conditionals, x[:, 1:], [2, 1], key=jax.random.key(3),
                               prompts=x[:, :1])
    np.testing.assert_allclose(r1.per_sequence, r2.per_sequence, rtol=1e-6)
