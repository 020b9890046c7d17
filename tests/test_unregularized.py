"""Raw (non-monotone) curves: the exact DP over all blocks, block files on the command line,
LLaDA's stock schedule and paired differences.

Independent routes: brute force over every composition of n (and every block schedule),
theory §11's excess written out termwise here, LLaDA's get_num_transfer_tokens re-written here.
"""

from __future__ import annotations

import itertools
import json

import jax.numpy as jnp
import numpy as np
import pytest

from schedopt.check import llada_stock, paired_difference
from schedopt.cli import main
from schedopt.curve import BlockProfiles, EntropyProfile
from schedopt.solve import (
    optimal_schedule_unregularized,
    optimize_blocks_unregularized,
    unregularized_frontier,
)


def excess(c, steps) -> float:
    total, start = 0.0, 0
    for s in steps:
        total += sum(c[start] - c[j] for j in range(start, start + s))
        start += s
    return total


def compositions(n: int, t: int):
    for cuts in itertools.combinations(range(1, n), t - 1):
        yield np.diff([0, *cuts, n])


def raw_blocks(seed: int, num_blocks: int, length: int) -> BlockProfiles:
    """Block curves with a g that rises somewhere (as estimated curves do at block ends)."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(num_blocks):
        g = np.sort(rng.uniform(0.1, 2.0, length))[::-1].copy()
        g[-1] = g[0] + 0.5  # the last token of the block is the hardest: not monotone
        rows.append(EntropyProfile.from_conditional_entropy(g, n=length, check=False))
    return BlockProfiles.from_profiles(rows, meta={"regularized": False})


@pytest.mark.parametrize("seed", range(6))
def test_dp_is_the_brute_force_optimum_of_any_curve(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 9))
    c = rng.normal(1.0, 1.0, n)  # not monotone
    front = unregularized_frontier(c, n)
    for t in range(1, n + 1):
        best = min(excess(c, s) for s in compositions(n, t))
        s = optimal_schedule_unregularized(c, t)
        # expected_kl is a JAX scalar (float32 when x64 is off); the schedule itself is exact.
        assert float(s.expected_kl) == pytest.approx(best, rel=1e-6, abs=1e-6)
        assert excess(c, np.asarray(s.tokens_per_step)) == pytest.approx(best, abs=1e-12)
        assert front[t - 1] == pytest.approx(best, abs=1e-12)


@pytest.mark.parametrize("steps", [2, 3, 5])
def test_block_dp_is_the_best_block_schedule(steps):
    blocks = raw_blocks(1, 2, 4)
    g = np.diff(np.asarray(blocks.entropy), axis=1)
    best = np.inf
    for t0 in range(1, steps):
        if t0 > 4 or steps - t0 > 4:
            continue
        for a in compositions(4, t0):
            for b in compositions(4, steps - t0):
                best = min(best, excess(g[0], a) + excess(g[1], b))
    s = optimize_blocks_unregularized(blocks, steps)
    assert float(s.expected_kl) == pytest.approx(best, rel=1e-6, abs=1e-6)
    tokens = np.asarray(s.tokens_per_step)
    split = s.meta["steps_per_block"]
    assert excess(g[0], tokens[: split[0]]) + excess(g[1], tokens[split[0]:]) == pytest.approx(
        best, abs=1e-12)


def get_num_transfer_tokens(mask_num: int, steps: int) -> list[int]:
    base, remainder = divmod(mask_num, steps)
    return [base + 1 if i < remainder else base for i in range(steps)]


@pytest.mark.parametrize("n, steps, length", [(8, 4, 4), (14, 4, 7), (12, 6, 6), (10, 3, None)])
def test_llada_stock_is_llada_sampler(n, steps, length):
    blocks = 1 if length is None else n // length
    expected = get_num_transfer_tokens(length or n, steps // blocks) * blocks
    assert np.asarray(llada_stock(n, steps, length).tokens_per_step).tolist() == expected
    with pytest.raises(ValueError, match="multiple of the"):
        llada_stock(12, 5, 6)


def test_paired_difference_interval():
    rng = np.random.default_rng(0)
    a = rng.normal(size=400)
    b = a + 0.1 + 0.01 * rng.normal(size=400)
    mean, lo, hi = paired_difference(b, a)
    d = b - a
    assert mean == pytest.approx(d.mean())
    assert hi - lo == pytest.approx(2 * 1.959963984540054 * d.std(ddof=1) / 20)
    assert lo > 0  # correlated pairs: a clear difference


def test_cli_block_file_optimize_compare_evaluate_frontier_plot(tmp_path, capsys):
    blocks = raw_blocks(3, 2, 4)
    g = np.diff(np.asarray(blocks.entropy), axis=1)
    path = tmp_path / "blocks.json"
    blocks.save(path)
    out = tmp_path / "opt.json"
    assert main(["optimize", "--profile", str(path), "--block-length", "4", "--steps", "4",
                 "--out", str(out)]) == 0
    assert "not monotone" in capsys.readouterr().out
    schedule = json.loads(out.read_text())
    tokens = schedule["tokens_per_step"]
    split = schedule["meta"]["steps_per_block"]
    best = min(excess(g[0], a) + excess(g[1], b) for t0 in (1, 2, 3)
               for a in compositions(4, t0) for b in compositions(4, 4 - t0))
    got = excess(g[0], tokens[: split[0]]) + excess(g[1], tokens[split[0]:])
    assert got == pytest.approx(best, abs=1e-9)

    assert main(["compare", "--profile", str(path), "--steps", "4", "--json"]) == 0
    rows = {r["method"]: r for r in json.loads(capsys.readouterr().out)["schedules"]}
    stock = excess(g[0], [2, 2]) + excess(g[1], [2, 2])
    assert rows["LLaDA stock"]["expected_kl"] == pytest.approx(stock, abs=1e-9)
    # EDS, 2 steps per block of 4: cut at the first j with H_j >= H_4 / 2, kept in 1..3.
    h = np.asarray(blocks.entropy)
    cuts = [min(max(next(j for j in range(5) if h[b, j] >= h[b, 4] / 2), 1), 3) for b in (0, 1)]
    eds = excess(g[0], [cuts[0], 4 - cuts[0]]) + excess(g[1], [cuts[1], 4 - cuts[1]])
    assert rows["equal split, EDS counts"]["expected_kl"] == pytest.approx(eds, abs=1e-9)
    # Pyramid: no factor fits 4 tokens in 2 steps (f = 1 is 1, 2, 1), so the ramp (i + 1) 4 / 3
    # = 1.33, 2.67 rounded by largest remainders: [1, 3] in each block.
    pyramid = excess(g[0], [1, 3]) + excess(g[1], [1, 3])
    assert rows["equal split, pyramid counts"]["expected_kl"] == pytest.approx(pyramid, abs=1e-9)
    assert rows["optimized (raw curves)"]["expected_kl"] == pytest.approx(best, abs=1e-9)
    assert rows["optimized (raw curves)"]["expected_kl"] <= rows[
        "optimized (regularised curves)"]["expected_kl"] + 1e-12

    assert main(["evaluate", "--profile", str(path), "--schedule", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["expected_kl"] == pytest.approx(best, abs=1e-9)
    assert main(["frontier", "--profile", str(path), "--max-steps", "8", "--json"]) == 0
    front = json.loads(capsys.readouterr().out)
    assert front["optimal_kl"][front["steps"].index(4)] == pytest.approx(best, abs=1e-9)
    assert front["optimal_kl"][-1] == pytest.approx(0.0, abs=1e-12)
    png = tmp_path / "b.png"
    assert main(["plot", "--profile", str(path), "--schedule", str(out), "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    capsys.readouterr()


def test_regularising_a_raw_curve_can_pick_a_worse_schedule():
    """The point of optimizing the raw curve: its prediction is what held-out NLL measures."""
    c = np.array([2.0, 1.0, 1.0, 1.0, 0.2, 3.0])  # the last token is hard
    regular = EntropyProfile.from_conditional_entropy(c, n=6, check=False).regularize()
    from schedopt.solve import optimal_schedule

    on_regular = np.asarray(optimal_schedule(regular, 3).tokens_per_step)
    on_raw = np.asarray(optimal_schedule_unregularized(c, 3).tokens_per_step)
    assert excess(c, on_raw) < excess(c, on_regular) - 0.1
    assert jnp.asarray(on_raw).sum() == 6


def test_profile_block_length_needs_an_hf_model(tmp_path, capsys):
    assert main(["profile", "--model", "digits", "--block-length", "4", "--out",
                 str(tmp_path / "p.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "--block-length in profile needs --hf-model" in err and len(err.splitlines()) == 1
