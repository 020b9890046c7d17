"""Profiles from a training log of the masked cross-entropy by mask ratio (theory §11)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import kl_from_curve, markov_entropy_curve

from schedopt.cli import main
from schedopt.curve import (
    EntropyProfile,
    convex_nonincreasing,
    loss_by_revealed_count,
    profile_from_loss_curve,
    read_loss_curve,
    write_binned_loss_curve,
    write_loss_curve,
)
from schedopt.models import MDMConfig, train
from schedopt.solve import optimal_schedule

# theory §10: the sticky 4-state chain, n = 128, whose optimal schedules are known.
CHAIN = 0.8 * np.eye(4) + 0.05
N = 128


def chain_rows(n: int = N):
    """Loss rows at every mask ratio (n - j)/n carrying the chain's exact g_j."""
    g = np.diff(markov_entropy_curve(CHAIN, n))
    j = np.arange(n)
    return (n - j) / n, g, np.full(n, 1e-4)


def test_exact_curve_gives_the_known_optimal_schedules():
    ratio, ce, se = chain_rows()
    rng = np.random.default_rng(0)
    perm = rng.permutation(N)  # rows in any order
    profile = profile_from_loss_curve(ratio[perm], ce[perm], se[perm], length=N)
    h = np.asarray(profile.entropy)
    assert h[1] == pytest.approx(1.386294, abs=1e-6)
    assert h[2] == pytest.approx(2.738023, abs=1e-6)
    assert h[-1] == pytest.approx(75.998913, abs=1e-5)
    s4 = optimal_schedule(profile, 4)
    assert list(np.asarray(s4.tokens_per_step)) == [17, 24, 35, 52]
    assert float(s4.expected_kl) == pytest.approx(15.937679, abs=1e-5)
    assert profile.meta["nonmonotone"] == [] and profile.meta["extrapolated_revealed"] == []
    # 95% interval of H_n from independent rows: sqrt(n) * se * 1.96 around H_n.
    lo, hi = profile.meta["joint_entropy_interval"]
    assert (hi - lo) / 2 == pytest.approx(1.959964 * 1e-4 * math.sqrt(N), rel=1e-6)


def test_rows_at_real_ratios_interpolate_linearly_in_revealed_count():
    # c_j = 3 - 0.01 j, measured at 40 real revealed counts spread over [0, 60]; n = 64:
    # inside the data the interpolant of a line is the line; beyond j = 60 it is flat.
    n = 64
    j = np.sort(np.random.default_rng(1).uniform(0, 60, 40))
    j[0], j[-1] = 0.0, 60.0
    profile = profile_from_loss_curve(1 - j / n, 3 - 0.01 * j, length=n)
    g = np.asarray(profile.conditional_entropy)
    np.testing.assert_allclose(g[:61], 3 - 0.01 * np.arange(61), atol=1e-9)
    np.testing.assert_allclose(g[61:], 3 - 0.01 * 60, atol=1e-9)
    assert profile.meta["extrapolated_revealed"] == [61, 62, 63]
    assert profile.stderr is None and profile.meta["joint_entropy_interval"] is None


def test_repeated_rows_are_pooled_by_inverse_variance():
    # Two points (n = 2): ratio 1 (j = 0) twice, ratio 1/2 (j = 1) once.
    profile = profile_from_loss_curve([1.0, 1.0, 0.5], [2.0, 1.0, 0.5], [0.1, 0.2, 0.05],
                                      length=2)
    w = np.array([1 / 0.01, 1 / 0.04])
    pooled = (2.0 * w[0] + 1.0 * w[1]) / w.sum()
    np.testing.assert_allclose(np.asarray(profile.conditional_entropy), [pooled, 0.5])
    np.testing.assert_allclose(np.asarray(profile.stderr), [w.sum() ** -0.5, 0.05])


def test_repeats_without_stderr_give_errors_from_their_spread():
    ratio = np.repeat([1.0, 0.5], 3)
    ce = np.array([2.0, 2.2, 2.4, 1.0, 1.1, 1.2])
    profile = profile_from_loss_curve(ratio, ce, length=2)
    np.testing.assert_allclose(np.asarray(profile.conditional_entropy), [2.2, 1.1])
    np.testing.assert_allclose(np.asarray(profile.stderr),
                               [np.std([2.0, 2.2, 2.4], ddof=1) / math.sqrt(3),
                                np.std([1.0, 1.1, 1.2], ddof=1) / math.sqrt(3)])


@pytest.mark.parametrize("shape", ["convex", "monotone"])
@pytest.mark.parametrize("se, flagged", [(1e-3, True), (0.5, False)])
def test_a_rise_is_flattened_and_flagged_only_when_the_errors_reject_monotonicity(
        se, flagged, shape):
    # c falls by 0.02 nats per revealed token but jumps up by 0.3 at j = 25: against tiny
    # errors the rise is real (chi-square p ~ 0), against errors of 0.5 it is noise.
    n = 64
    j = np.arange(n)
    c = 2.0 - 0.02 * j + 0.3 * (j >= 25)
    profile = profile_from_loss_curve((n - j) / n, c, np.full(n, se), length=n, shape=shape)
    g = np.asarray(profile.conditional_entropy)
    assert np.all(np.diff(g) <= 1e-12)  # the written curve is monotone (a normal profile)
    if shape == "monotone":  # PAV by hand: the fit is flat exactly where it pools
        pooled = g[np.abs(g - c) > 1e-9]
        assert pooled.size and np.ptp(pooled) < 0.3
    assert bool(profile.meta["nonmonotone"]) == flagged
    if flagged:
        lo, hi = profile.meta["nonmonotone"][0]["mask_ratio"]
        assert lo <= (n - 25) / n and hi >= (n - 24) / n  # the stretch covers the rise


def test_stderr_of_the_joint_entropy_matches_monte_carlo():
    # Independent Gaussian noise on a steep curve (PAV never pools): the spread of H_n over
    # 400 noisy logs must match the propagated standard error (chi-square 99.9% band).
    n, se = 32, 0.01
    j = np.arange(n)
    truth = 3.0 - 0.08 * j
    rng = np.random.default_rng(2)
    joint = []
    for _ in range(400):
        p = profile_from_loss_curve((n - j) / n, truth + se * rng.standard_normal(n),
                                    np.full(n, se), length=n)
        joint.append(p.joint_entropy)
    predicted = p.meta["joint_entropy_stderr"]
    assert predicted == pytest.approx(se * math.sqrt(n), rel=1e-9)
    ratio = np.var(joint, ddof=1) / predicted**2  # ~ chi2(399) / 399
    assert 0.77 < ratio < 1.26
    assert abs(np.mean(joint) - truth.sum()) < 4 * predicted / math.sqrt(400)


def test_convex_fit_matches_a_general_constrained_solver():
    # Independent route: SLSQP with the constraints written out (slopes <= 0, second
    # differences >= 0 on an uneven grid).
    from scipy.optimize import minimize

    rng = np.random.default_rng(5)
    x = np.sort(rng.uniform(0, 30, 12))
    y = 2 * np.exp(-x / 10) + 0.2 * rng.standard_normal(12)
    w = rng.uniform(0.5, 2, 12)
    fitted, fit_map = convex_nonincreasing(x, y, w)
    slope = lambda f: np.diff(f) / np.diff(x)  # noqa: E731
    cons = [{"type": "ineq", "fun": lambda f: -slope(f)},
            {"type": "ineq", "fun": lambda f: np.diff(slope(f))}]
    ref = minimize(lambda f: np.sum(w * (f - y) ** 2), np.full(12, y.mean()),
                   constraints=cons, method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
    np.testing.assert_allclose(fitted, ref.x, atol=1e-5)
    np.testing.assert_allclose(fit_map @ y, fitted, atol=1e-9)
    # A curve that is already convex and decreasing is returned unchanged.
    exact, _ = convex_nonincreasing(x, 3 - np.sqrt(x + 1))
    np.testing.assert_allclose(exact, 3 - np.sqrt(x + 1), atol=1e-9)


def test_convex_shape_gives_a_convex_profile():
    ratio, ce, se = chain_rows()
    noisy = ce + 0.01 * np.random.default_rng(6).standard_normal(N)
    g = np.asarray(profile_from_loss_curve(ratio, noisy, se * 100, length=N,
                                           shape="convex").conditional_entropy)
    assert np.all(np.diff(g) <= 1e-12) and np.all(np.diff(g, 2) >= -1e-12)


def test_training_loss_binning_matches_a_loop():
    rng = np.random.default_rng(3)
    counts = rng.integers(0, 6, (50, 4))
    ce = rng.random((50, 4))
    out = loss_by_revealed_count(counts, ce, 7)
    for j in range(7):
        v = ce[counts == j]
        assert out[j, 0] == v.size
        if v.size:
            assert out[j, 1] == pytest.approx(v.mean())
        if v.size >= 2:
            assert out[j, 2] == pytest.approx(v.std(ddof=1) / math.sqrt(v.size))
    assert np.isnan(out[6, 1])  # no row had count 6


def test_binned_writer_on_a_hand_computed_case(tmp_path):
    # n = 4. Count 0: rows 1.0, 3.0 -> mean 2, sd sqrt(2), se 1. Count 2: rows 0.5, 0.5, 2.0
    # -> mean 1, sd sqrt(0.75), se 0.5. Count 1: one row (no stderr) and count 3: none, so
    # both are left out. Ratio of count j is (4 - j) / 4.
    counts = [0, 2, 1, 2, 0, 2]
    ce = [1.0, 0.5, 7.0, 0.5, 3.0, 2.0]
    binned = loss_by_revealed_count(counts, ce, 4)
    np.testing.assert_allclose(binned[:, 0], [2, 1, 3, 0])
    path = write_binned_loss_curve(tmp_path / "loss.csv", binned)
    assert path.read_text().splitlines()[0] == "mask_ratio,cross_entropy,stderr"
    ratio, mean, se = read_loss_curve(path)
    np.testing.assert_allclose(ratio, [1.0, 0.5])
    np.testing.assert_allclose(mean, [2.0, 1.0])
    np.testing.assert_allclose(se, [1.0, 0.5])
    with pytest.raises(ValueError, match="0..3"):
        loss_by_revealed_count([4], [1.0], 4)  # nothing masked: not a row of the curve


def test_training_logs_the_curve_of_a_known_law():
    # All 8 tokens equal one uniform symbol of 4: c_0 = log 4 and c_j = 0 for j >= 1.
    config = MDMConfig(vocab_size=4, length=8, width=16, depth=1, heads=2, dropout=0.0)
    rng = np.random.default_rng(0)
    seqs = np.repeat(rng.integers(0, 4, 576)[:, None], 8, axis=1).astype(np.int32)
    result = train(config, seqs[:512], seqs[512:], seed=0, max_steps=150, eval_every=50,
                   batch_size=16, learning_rate=1e-2, weight_decay=0.0, warmup_steps=20,
                   quiet=True)
    curve = result.loss_curve
    assert curve.shape == (8, 3) and curve[:, 0].sum() == 50 * 16
    assert abs(curve[0, 1] - math.log(4)) < 4 * curve[0, 2] + 0.05
    assert np.all(curve[1:, 1] < 0.1)


def test_cli_round_trip(tmp_path, capsys):
    ratio, ce, se = chain_rows()
    csv = tmp_path / "loss.csv"
    write_loss_curve(csv, ratio, ce, se)
    r2, c2, s2 = read_loss_curve(csv)
    np.testing.assert_array_equal(c2, ce)  # repr keeps every digit
    out = tmp_path / "p.json"
    assert main(["profile", "--from-loss-curve", str(csv), "--length", str(N),
                 "--out", str(out)]) == 0
    capsys.readouterr()
    profile = EntropyProfile.load(out)
    np.testing.assert_allclose(np.asarray(profile.entropy), markov_entropy_curve(CHAIN, N),
                               atol=1e-9)
    assert profile.meta["source"] == "loss curve" and len(profile.meta["sha256"]) == 64
    assert kl_from_curve(np.asarray(profile.entropy), [17, 24, 35, 52]) == pytest.approx(
        15.937679, abs=1e-5)


@pytest.mark.parametrize(
    "text, extra, message",
    [
        ("ratio,ce\n0.5,1\n", [], "the first row must be"),
        ("mask_ratio,cross_entropy\n1.5,1\n", [], "in (0, 1]"),
        ("mask_ratio,cross_entropy\n0.5,x\n", [], "not a number"),
        ("mask_ratio,cross_entropy,stderr\n0.5,1,-1\n", [], "finite and >= 0"),
        ("mask_ratio,cross_entropy\n", [], "no rows"),
        ("mask_ratio,cross_entropy\n0.5,1\n", ["--model", "digits"], "not allowed with"),
        ("mask_ratio,cross_entropy\n0.5,1\n", None, "needs --length"),
        ("mask_ratio,cross_entropy\n0.5,1\n", ["--shape", "smooth"], "applies to --max"),
    ],
)
def test_bad_input_is_one_line_and_no_file(tmp_path, capsys, text, extra, message):
    csv = tmp_path / "loss.csv"
    csv.write_text(text)
    out = tmp_path / "p.json"
    length = [] if extra is None else ["--length", "8"]
    try:
        code = main(["profile", "--from-loss-curve", str(csv), *length, *(extra or []),
                     "--out", str(out)])
    except SystemExit as usage:  # argparse refuses two sources of the curve itself
        code = usage.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
