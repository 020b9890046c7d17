"""Profiles within a budget of forward passes, judged on a law with an exact profile."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from helpers import kl_from_curve, markov_entropy_curve

from schedopt.distributions import MarkovChain
from schedopt.estimate import DECAY_RATES, estimate_within_budget, smooth_decreasing_fit

CHAIN = 0.8 * np.eye(4) + 0.05  # theory §10's sticky chain
N = 24


@pytest.fixture(scope="module")
def result():
    law = MarkovChain(CHAIN, n=N)
    data = law.sample(2000, key=jax.random.key(0))
    return estimate_within_budget(law.log_conditionals, data, key=jax.random.key(1),
                                  max_forward_passes=512, steps=(3, 6), kind="model",
                                  bootstrap=20)


def dp_optimum(entropy: np.ndarray, steps: int) -> float:
    """The least KL over T-step schedules by a plain O(T n^2) dynamic program (theory §4)."""
    n = entropy.size - 1
    g = np.diff(entropy)
    cost = np.full((n + 1, n + 1), np.inf)
    for a in range(n):
        for b in range(a + 1, n + 1):
            cost[a, b] = (b - a) * g[a] - (entropy[b] - entropy[a])
    best = np.full(n + 1, np.inf)
    best[0] = 0.0
    for _ in range(steps):
        best = np.min(best[:, None] + cost, axis=0)
    return float(best[n])


def test_spends_the_budget(result):
    assert 0.9 * 512 <= result.forward_passes <= 512
    meta = result.profile.meta
    assert meta["forward_passes"] == result.forward_passes
    assert meta["sequences"] * len(meta["grid"]) <= result.forward_passes


def test_schedules_are_near_the_true_optimum(result):
    # Truth: the closed-form curve (theory §8) and a plain DP over all schedules. 512 passes
    # leave some noise: within 10% here (the benchmark in scripts/bench_budget.py measures
    # the spread over replicates).
    truth = markov_entropy_curve(CHAIN, N)
    for t in (3, 6):
        best = dp_optimum(truth, t)
        chosen = kl_from_curve(truth, result.schedules[t])
        assert chosen <= best * 1.10, (t, chosen, best)


def test_refinement_adds_points_at_and_beside_the_left_endpoints(result):
    meta = result.profile.meta
    candidates = set()
    for s in result.coarse_schedules.values():
        starts = np.concatenate([[0], np.cumsum(s)[:-1]])
        for k, a in enumerate(starts):
            delta = max(1, round(0.25 * min(s[k - 1] if k else s[k], s[k])))
            candidates |= {int(a), int(a) - delta, int(a) + delta}
    added = set(meta["refined_points"])
    assert added and added <= candidates
    assert added <= set(meta["grid"]) and not added & set(meta["coarse_grid"])


def test_gap_fit_is_the_model_curve_plus_a_small_constant_for_exact_conditionals():
    # Exact conditionals: the calibration gap (cross-entropy minus entropy) has mean 0 at
    # every j. With degree 0 the estimate is the model curve (same passes: same key) plus
    # the pooled mean gap, a constant that must be near 0 (512 rows of per-token noise
    # about 1 nat over ~12 masked tokens: standard error ~0.015).
    law = MarkovChain(CHAIN, n=N)
    data = law.sample(2000, key=jax.random.key(2))
    common = dict(key=jax.random.key(3), max_forward_passes=512, steps=(6,), bootstrap=0,
                  bagging=0)
    gap = estimate_within_budget(law.log_conditionals, data, gap_degree=0, **common)
    model = estimate_within_budget(law.log_conditionals, data, kind="model", **common)
    diff = np.asarray(gap.profile.conditional_entropy) - np.asarray(
        model.profile.conditional_entropy)
    assert np.ptp(diff) < 1e-9 and abs(diff[0]) < 0.06
    truth = markov_entropy_curve(CHAIN, N)
    assert kl_from_curve(truth, gap.schedules[6]) <= 1.10 * dp_optimum(truth, 6)


def test_stability_report(result):
    for t in (3, 6):
        report = result.stability[t]
        assert 0 <= report["agreement"] <= 1
        assert report["excess_median"] >= -1e-9 and report["excess_p90"] >= report[
            "excess_median"] - 1e-12


@pytest.mark.parametrize(
    "kwargs, message",
    [(dict(max_forward_passes=8), "max_forward_passes must be"),
     (dict(max_forward_passes=64, steps=(100,)), "steps must hold"),
     (dict(max_forward_passes=64, coarse_fraction=1.0), "coarse_fraction"),
     (dict(max_forward_passes=64, shape="wiggly"), "shape must be"),
     (dict(max_forward_passes=64, kind="model", gap_degree=1), "gap_degree applies")],
)
def test_bad_arguments(kwargs, message):
    law = MarkovChain(CHAIN, n=8)
    with pytest.raises(ValueError, match=message):
        estimate_within_budget(law.log_conditionals, law.sample(4, key=jax.random.key(0)),
                               key=jax.random.key(0), **kwargs)


def test_cli_budget_on_the_shipped_model(tmp_path, capsys):
    import json

    from schedopt.cli import main
    from schedopt.curve import EntropyProfile

    out = tmp_path / "p.json"
    assert main(["profile", "--model", "digits", "--max-forward-passes", "64",
                 "--target-steps", "4", "--sequences", "40", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["forward_passes"] <= 64 and "4" in printed["stability"]
    profile = EntropyProfile.load(out)
    assert profile.meta["max_forward_passes"] == 64 and profile.meta["model"] == "digits"


def test_cli_budget_needs_a_model(tmp_path, capsys):
    from schedopt.cli import main

    code = main(["profile", "--distribution", "markov", "--length", "8",
                 "--max-forward-passes", "64", "--out", str(tmp_path / "p.json")])
    err = capsys.readouterr().err
    assert code == 2 and "--max-forward-passes" in err and not (tmp_path / "p.json").exists()


def test_smooth_fit_recovers_a_curve_of_its_class_from_offset_sequences():
    # A curve in the fit's class (exponentials and a line with non-negative weights, plus a
    # level), seen through sequences that each add their own offset and each cover a
    # different random subset of counts: the fit must return the curve exactly.
    n = 40
    x = np.arange(n) / n
    curve = 1.5 + 0.4 * np.exp(-DECAY_RATES[18] * x) + 0.3 * np.exp(-DECAY_RATES[4] * x) + (
        0.2 * (1 - x))
    rng = np.random.default_rng(0)
    sequences, counts, values = [], [], []
    for s in range(30):
        js = rng.choice(n, size=5, replace=False)
        sequences += [s] * 5
        counts += js.tolist()
        values += (curve[js] + rng.normal(0, 1.0)).tolist()  # one offset per sequence
    fitted = smooth_decreasing_fit(np.asarray(sequences), np.asarray(counts),
                                   np.asarray(values), n)
    # The level carries a weighted mean of the offsets; the shape is exact.
    shift = fitted - curve
    assert np.ptp(shift) < 1e-6 and abs(shift[0]) < 1.0


def test_smooth_default_is_within_two_percent_on_the_chain():
    # The closed-form curve (theory §8) judges the default (smooth) estimate from 512 passes
    # of the model curve: the mean excess over 8 keys is within 2% of the optimum (about 1%
    # measured; single keys reach 3.6% at T = 6, where n = 24 makes the excess coarse).
    law = MarkovChain(CHAIN, n=N)
    data = law.sample(2000, key=jax.random.key(4))
    truth = markov_entropy_curve(CHAIN, N)
    excess = {3: [], 6: []}
    for seed in range(8):
        est = estimate_within_budget(law.log_conditionals, data, key=jax.random.key(10 + seed),
                                     max_forward_passes=512, steps=(3, 6), kind="model",
                                     bootstrap=0)
        for t in excess:
            excess[t].append(kl_from_curve(truth, est.schedules[t]) / dp_optimum(truth, t) - 1)
    for t, e in excess.items():
        assert np.mean(e) <= 0.02, (t, e)
