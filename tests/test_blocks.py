"""Semi-autoregressive blocks (theory §7): curves, the block KL, the optimal split of steps.

Independent routes: the KL of every block-respecting partition computed from the joint
table's subset entropies (chain rule written out here), brute force over step splits and over
all block schedules, and Monte Carlo block curves from exact table conditionals.
"""

from __future__ import annotations

import itertools
import json
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import gamma_table, subset_entropy

import schedopt
from schedopt.cli import main
from schedopt.curve import (
    BlockProfiles,
    block_profiles_from_table,
    load_block_profiles,
    steps_per_block,
)
from schedopt.estimate import estimate_block_profiles
from schedopt.objective import block_expected_kl
from schedopt.solve import allocate_steps, block_frontiers, optimize_blocks


# --------------------------------------------------------------------------- helpers
def partitions(positions, sizes):
    """Every ordered partition of `positions` into consecutive groups of the given sizes."""
    if not sizes:
        yield ()
        return
    for first in itertools.combinations(positions, sizes[0]):
        rest = [p for p in positions if p not in first]
        for tail in partitions(rest, sizes[1:]):
            yield (first, *tail)


def brute_force_block_kl(table: np.ndarray, length: int, block_counts) -> float:
    """E over uniform partitions of sum_i H(X_i | X_revealed before i's step) - H(X)."""
    n = table.ndim
    total = 0.0
    revealed: tuple[int, ...] = ()
    for b, sizes in enumerate(block_counts):
        block = list(range(b * length, (b + 1) * length))
        kls = []
        for parts in partitions(block, list(sizes)):
            seen, cost = revealed, 0.0
            for part in parts:
                base = subset_entropy(table, seen)
                cost += sum(subset_entropy(table, seen + (i,)) - base for i in part)
                seen = seen + part
            kls.append(cost)
        total += float(np.mean(kls))
        revealed = revealed + tuple(block)
    return total - subset_entropy(table, tuple(range(n)))


def compositions(total: int, parts: int):
    for cuts in itertools.combinations(range(1, total), parts - 1):
        yield np.diff((0, *cuts, total)).tolist()


def table_logits_fn(table: np.ndarray):
    """Exact conditionals of every position given the revealed ones, as JAX log-probs."""
    v = table.shape[0]
    # numpy constants: they take the precision of the trace (float64 inside schedopt).
    states = np.stack(np.unravel_index(np.arange(table.size), table.shape), 1)
    prob = table.ravel()
    onehot = np.eye(v)[states]  # [S, n, V]

    def logits_fn(tokens, revealed):
        agree = (states[None].astype(tokens.dtype) == tokens[:, None]) | ~revealed[:, None]
        w = jnp.where(jnp.all(agree, axis=-1), prob[None], 0.0)  # [B, S]
        p = jnp.einsum("bs,snv->bnv", w, onehot) / jnp.sum(w, axis=1)[:, None, None]
        return jnp.log(p)

    return logits_fn


# --------------------------------------------------------------------------- the block KL
@pytest.mark.parametrize(
    "n, v, length, block_counts",
    [
        (4, 3, 2, [[1, 1], [2]]),
        (4, 3, 2, [[2], [1, 1]]),
        (4, 3, 2, [[2], [2]]),
        (4, 3, 4, [[1, 3]]),
        (6, 2, 3, [[1, 2], [2, 1]]),
        (6, 2, 2, [[2], [1, 1], [2]]),
    ],
)
def test_block_kl_matches_brute_force_over_partitions(n, v, length, block_counts):
    table = gamma_table(10 * n + length, n, v)
    blocks = block_profiles_from_table(table, length)
    tokens = [s for sizes in block_counts for s in sizes]
    expected = brute_force_block_kl(table, length, block_counts)
    assert block_expected_kl(blocks, tokens) == pytest.approx(expected, abs=1e-11)
    assert expected > 1e-3  # the tables are correlated, so the check has power


def test_sequence_slice_is_exact_for_exchangeable_laws():
    """A mixture of i.i.d. products: every curve depends on counts only."""
    n = 6
    table = np.zeros((2,) * n)
    for x in itertools.product(range(2), repeat=n):
        k = sum(x)
        table[x] = 0.3 * 0.9**k * 0.1 ** (n - k) + 0.7 * 0.2**k * 0.8 ** (n - k)
    h = [
        np.mean([subset_entropy(table, s) for s in itertools.combinations(range(n), j)])
        for j in range(n + 1)
    ]
    sliced = BlockProfiles.from_sequence_profile(schedopt.EntropyProfile.from_entropy(h), 2)
    exact = block_profiles_from_table(table, 2)
    np.testing.assert_allclose(np.asarray(sliced.entropy), np.asarray(exact.entropy), atol=1e-12)


# --------------------------------------------------------------------------- the split
@pytest.mark.parametrize("convex", [True, False])
@pytest.mark.parametrize("steps", [3, 4, 7, 11, 15])
def test_allocate_steps_matches_brute_force(convex, steps):
    rng = np.random.default_rng(steps + 100 * convex)
    if convex:
        frontiers = np.cumsum(-np.sort(rng.exponential(size=(3, 5)))[:, ::-1], axis=1) + 5
    else:
        frontiers = rng.uniform(0, 3, size=(3, 5))
    best = min(
        (sum(frontiers[b, s - 1] for b, s in enumerate(split)), split)
        for split in itertools.product(range(1, 6), repeat=3)
        if sum(split) == steps
    )
    split, total = allocate_steps(frontiers, steps)
    assert total == pytest.approx(best[0], abs=1e-12)
    assert sum(frontiers[b, s - 1] for b, s in enumerate(split)) == pytest.approx(total)
    assert split.sum() == steps and np.all(split >= 1)


@pytest.mark.parametrize("steps", [2, 3, 5, 8])
def test_optimize_blocks_is_the_best_block_schedule(steps):
    table = gamma_table(3, 8, 2)
    blocks = block_profiles_from_table(table, 4)
    best = min(
        block_expected_kl(blocks, first + second)
        for t in range(1, steps)
        if 1 <= steps - t <= 4 and t <= 4
        for first in compositions(4, t)
        for second in compositions(4, steps - t)
    )
    schedule = optimize_blocks(blocks, steps)
    assert float(schedule.expected_kl) == pytest.approx(best, abs=1e-12)
    assert block_expected_kl(blocks, schedule.tokens_per_step) == pytest.approx(best, abs=1e-12)
    assert sum(schedule.meta["steps_per_block"]) == steps
    assert sum(schedule.meta["block_kl"]) == pytest.approx(best, abs=1e-12)
    if steps % 2 == 0:
        equal = optimize_blocks(blocks, steps, equal_split=True)
        best_equal = min(
            block_expected_kl(blocks, first + second)
            for first in compositions(4, steps // 2)
            for second in compositions(4, steps // 2)
        )
        assert float(equal.expected_kl) == pytest.approx(best_equal, abs=1e-12)
        assert equal.meta["steps_per_block"] == [steps // 2] * 2


def test_block_frontiers_are_each_blocks_frontier():
    blocks = block_profiles_from_table(gamma_table(4, 6, 2), 3)
    f = block_frontiers(blocks)
    for b in range(2):
        for t in range(1, 4):
            best = min(block_expected_kl_single(blocks, b, c) for c in compositions(3, t))
            assert f[b, t - 1] == pytest.approx(best, abs=1e-12)


def block_expected_kl_single(blocks, b, counts):
    return float(schedopt.expected_kl(blocks.profile(b), counts))


# --------------------------------------------------------------------------- estimated curves
@pytest.mark.parametrize("kind", ["data", "model"])
def test_estimated_block_curves_agree_with_exact_ones(kind):
    table = gamma_table(11, 4, 3)
    exact = np.diff(np.asarray(block_profiles_from_table(table, 2).entropy), axis=1)
    rng = np.random.default_rng(0)
    flat = table.ravel()
    data = np.stack(np.unravel_index(rng.choice(flat.size, 3000, p=flat), table.shape), 1)
    blocks = estimate_block_profiles(
        table_logits_fn(table), data, 2, key=jax.random.key(1), kind=kind, batch_size=512
    )
    g = np.diff(np.asarray(blocks.entropy), axis=1)
    se = np.asarray(blocks.stderr)
    assert np.all(np.abs(g - exact) < 4 * se + 1e-12), (g, exact, se)
    assert np.all(se < 0.1 * exact)
    assert blocks.meta["forward_passes"] == 3000 * 4


def test_estimator_bad_input_is_one_clear_error():
    fn = table_logits_fn(gamma_table(1, 4, 2))
    with pytest.raises(ValueError, match="does not divide"):
        estimate_block_profiles(fn, np.zeros((4, 4), int), 3, key=jax.random.key(0))
    with pytest.raises(ValueError, match="kind must be"):
        estimate_block_profiles(fn, np.zeros((4, 4), int), 2, key=jax.random.key(0), kind="x")

    def wrong(tokens, revealed):
        return jnp.zeros(tokens.shape)

    with pytest.raises(ValueError, match="logits"):
        estimate_block_profiles(wrong, np.zeros((4, 4), int), 2, key=jax.random.key(0))


# --------------------------------------------------------------------------- files and errors
def test_block_profiles_file_round_trip(tmp_path):
    blocks = block_profiles_from_table(gamma_table(5, 4, 2), 2)
    blocks.save(tmp_path / "b.json")
    back = load_block_profiles(tmp_path / "b.json", 2)
    np.testing.assert_array_equal(np.asarray(back.entropy), np.asarray(blocks.entropy))
    with pytest.raises(ValueError, match="pass --block-length 2"):
        load_block_profiles(tmp_path / "b.json", 4)
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(8)))
    profile.save(tmp_path / "p.json")
    sliced = load_block_profiles(tmp_path / "p.json", 4)
    assert sliced.num_blocks == 2 and sliced.meta["source"] == "sequence-slice"


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda b: optimize_blocks(b, 1), "between the number of blocks"),
        (lambda b: optimize_blocks(b, 9), "between the number of blocks"),
        (lambda b: optimize_blocks(b, 3, equal_split=True), "multiple of the 2 blocks"),
        (lambda b: steps_per_block([3, 5], 4), "across the block boundary at 4"),
        (lambda b: steps_per_block([4, 4], 3), "does not divide"),
        (lambda b: block_profiles_from_table(np.full((2,) * 4, 1 / 16), 3), "does not divide"),
        (lambda b: BlockProfiles.from_sequence_profile(b.profile(0), 3), "does not divide"),
    ],
)
def test_bad_input_is_one_clear_error(call, message):
    blocks = block_profiles_from_table(gamma_table(6, 8, 2), 4)
    with pytest.raises(ValueError, match=message):
        call(blocks)


def test_entropies_are_in_nats():
    blocks = block_profiles_from_table(np.full((2,) * 4, 1 / 16), 2)
    np.testing.assert_allclose(np.asarray(blocks.entropy)[:, -1], 2 * math.log(2))


# --------------------------------------------------------------------------- command line
def test_cli_optimize_with_blocks(tmp_path, capsys):
    table = gamma_table(3, 8, 2)
    block_profiles_from_table(table, 4).save(tmp_path / "B.json")
    out = tmp_path / "S.json"
    argv = ["optimize", "--profile", str(tmp_path / "B.json"), "--steps", "5"]
    assert main([*argv, "--block-length", "4", "--out", str(out)]) == 0
    schedule = schedopt.Schedule.load(out)
    best = min(
        block_expected_kl(block_profiles_from_table(table, 4), first + second)
        for t in range(1, 5)
        for first in compositions(4, t)
        if 1 <= 5 - t <= 4
        for second in compositions(4, 5 - t)
    )
    assert float(schedule.expected_kl) == pytest.approx(best, abs=1e-12)
    assert "steps per block" in capsys.readouterr().out
    assert main([*argv, "--block-length", "4", "--equal-split", "--out", str(out)]) == 2
    assert "multiple of the 2 blocks" in capsys.readouterr().err
    # A plain profile is sliced into blocks; the block schedule exports as a counts matrix.
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(16)))
    profile.save(tmp_path / "P.json")
    argv = ["optimize", "--profile", str(tmp_path / "P.json"), "--steps", "4"]
    assert main([*argv, "--block-length", "8", "--equal-split", "--out", str(out)]) == 0
    assert schedopt.Schedule.load(out).meta["steps_per_block"] == [2, 2]
    counts = tmp_path / "c.json"
    assert (
        main(
            [
                "export",
                "--schedule",
                str(out),
                "--format",
                "counts",
                "--block-length",
                "8",
                "--out",
                str(counts),
            ]
        )
        == 0
    )
    matrix = json.loads(counts.read_text())["counts"]
    assert len(matrix) == 2 and all(sum(row) == 8 for row in matrix)
    capsys.readouterr()
    assert (
        main(
            ["evaluate", "--profile", str(tmp_path / "P.json"), "--schedule", str(counts), "--json"]
        )
        == 0
    )
    scores = json.loads(capsys.readouterr().out)
    assert scores["block_length"] == 8
    assert scores["expected_kl"] == pytest.approx(float(schedopt.Schedule.load(out).expected_kl))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--block-length", "5"], "does not divide"),
        (["--equal-split"], "--equal-split needs --block-length"),
        (["--block-length", "4", "--sampler", "binomial"], "works with fixed counts"),
    ],
)
def test_cli_block_bad_input_is_one_line(tmp_path, capsys, extra, message):
    schedopt.EntropyProfile.from_conditional_entropy(np.linspace(1, 0.5, 8)).save(
        tmp_path / "P.json"
    )
    out = tmp_path / "S.json"
    argv = ["optimize", "--profile", str(tmp_path / "P.json"), "--steps", "4", *extra]
    assert main([*argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()
