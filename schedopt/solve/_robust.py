"""Schedules robust to a noisy profile: optimize the mean KL over perturbed, regularised curves.

An estimated profile carries a standard error per point of g (`EntropyProfile.stderr`).
`optimize_robust` draws R curves g + stderr * z (z standard normal, independent per point,
a parametric bootstrap), projects each onto non-increasing curves (the weighted PAV of
`EntropyProfile.regularize`), and finds the schedule with the least mean expected KL over the
draws. The expected KL is linear in the curve (theory §3), so that mean is exactly the KL under
the mean of the regularised draws: the optimizer runs once, on that mean curve; the draws are
evaluated together in one batched call.

The KL the estimate predicts is optimistic: the schedule is fitted to the estimate's noise, and
regularisation flattens the curve. The reported interval therefore comes from a parametric
bootstrap of the whole procedure: with the mean curve as a stand-in for the truth, simulated
estimates (mean curve + stderr * z) are regularised and optimized (one `optimize_batch` call),
and the spread of (KL under the stand-in - KL the simulated estimate predicted) is added to the
prediction. That simulation draws the errors of g independently per point, as the standard
errors alone describe them. A Monte Carlo estimate (`schedopt.estimate`) uses one random order
per sequence for every point, so its errors are strongly correlated along the curve and the
differences g_{N_{k-1}} - g_j that make up the KL are far more precise than independent errors
would say: there the simulated optimism is far larger than the real one and the profile-only
interval sits too high (it held the chosen schedule's exact KL in 67 of 200 seeds on a sticky
chain, scripts/measure_robust.py).

For such an estimate pass `holdout=`, a `CurveEstimate` on sequences independent of the
profile's: the interval is then the mean of the held-out per-sequence KLs of the chosen schedule
plus or minus z standard errors. The schedule depends on the profile only, so on independent
sequences its KL has no selection bias, and the interval covers at its nominal level up to the
normal approximation (docs/batch.md has the measured coverage).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import jax
import numpy as np
import optax

from .._internal.checks import check_steps, whole_number
from .._internal.keys import host_rng, key_bits
from ..curve import EntropyProfile
from ..objective import evaluate_kl
from ..schedule import Schedule
from ._batch import optimize_batch
from ._relaxed import NUM_ITERATIONS, WINDOW, optimize

CONFIDENCE = 0.95
# Simulated estimates in the bootstrap of the procedure (one batched optimizer call).
CALIBRATION_DRAWS = 32


def optimize_robust(
    profile: EntropyProfile,
    steps: int,
    draws: int,
    *,
    key: jax.Array,
    confidence: float = CONFIDENCE,
    optimizer: optax.GradientTransformation | None = None,
    num_iterations: int = NUM_ITERATIONS,
    window: int = WINDOW,
    holdout: Any = None,
) -> Schedule:
    """The T-step schedule with the least mean expected KL over `draws` perturbed curves.

    Args:
        profile: an estimated profile with `stderr` (nats, per point of g).
        steps: the budget T.
        draws: R, the number of perturbed curves (at least 2).
        key: a JAX PRNG key for the perturbations (the same key, the same result).
        confidence: coverage of the reported interval.
        optimizer, num_iterations, window: passed to `optimize`.
        holdout: a `schedopt.estimate.CurveEstimate` on sequences independent of those the
            profile was estimated from (for instance a second `estimate` call with another
            key), measured at the chosen schedule's cuts (every count for n <= 256). Its curve
            of the profile's kind (`profile.meta["kind"]`, "data" if absent) gives the interval.

    Returns:
        A `Schedule` (method "optax-robust") whose expected_kl is the mean KL over the draws
        (the objective). meta holds "kl_interval" [low, high] (the bootstrap interval for the
        true KL of this schedule, see the module docstring; "kl_interval_method" says which:
        "holdout" or "bootstrap"), "kl_bias" (the mean optimism it corrects for),
        "kl_draws_interval" and "kl_stderr" (central interval and standard deviation of the
        draws' KLs), "kl_point" (the KL under the regularised estimate), "robust_draws",
        "confidence" and "key" (the key's bits).
    """
    steps = check_steps(steps, profile.n)
    if profile.stderr is None:
        raise ValueError(
            "robust optimization needs a profile with standard errors (stderr), got one "
            "without; estimate the profile with stderr or drop robust"
        )
    draws = whole_number(draws, "draws", minimum=2)
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be between 0 and 1, got {confidence!r}")
    bits = key_bits(key)
    draw_key, calibration_key = jax.random.split(key)
    curves = perturbed_curves(profile, int(draws), host_rng(draw_key))
    mean = EntropyProfile(entropy=curves.mean(axis=0), meta=dict(profile.meta))
    best = optimize(mean, steps, optimizer=optimizer, num_iterations=num_iterations, window=window)
    tokens = np.asarray(best.tokens_per_step)
    kls = evaluate_kl(curves, tokens)
    tail = (1 - confidence) / 2
    predicted = float(kls.mean())
    optimism = _optimism(mean.entropy, profile.stderr, steps, host_rng(calibration_key))
    low, high = predicted + np.quantile(optimism, [tail, 1 - tail])
    if holdout is not None:
        low, high = _holdout_interval(holdout, tokens, profile, confidence)
    point = evaluate_kl(profile.regularize().entropy, tokens)
    return best.replace(
        expected_kl=np.float64(predicted), certified=False, lower_bound=None,
        method="optax-robust",
        meta={
            **best.meta,
            "kl_interval": [float(low), float(high)],
            "kl_bias": float(-optimism.mean()),
            "kl_draws_interval": [float(q) for q in np.quantile(kls, [tail, 1 - tail])],
            "kl_stderr": float(kls.std(ddof=1)),
            "kl_point": float(point),
            "kl_interval_method": "bootstrap" if holdout is None else "holdout",
            "robust_draws": int(draws),
            "confidence": float(confidence),
            "key": [int(b) for b in bits.ravel()],
        },
    )


def _holdout_interval(holdout, tokens, profile: EntropyProfile, confidence: float):
    """(low, high) nats: mean +- z stderr of the held-out per-sequence KLs of `tokens`."""
    if holdout.n != profile.n:
        raise ValueError(
            f"holdout must be an estimate of the profile's length n = {profile.n}, got "
            f"n = {holdout.n}; estimate the held-out curve on sequences of the same length"
        )
    if holdout.sequences < 2:
        raise ValueError(
            f"holdout needs at least 2 sequences for a standard error, got "
            f"{holdout.sequences}; estimate it on more sequences"
        )
    mean, se = holdout.expected_kl(tokens, profile.meta.get("kind", "data"))
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    return mean - z * se, mean + z * se


def perturbed_curves(profile: EntropyProfile, draws: int, rng: np.random.Generator) -> np.ndarray:
    """float64[draws, n + 1]: H of each regularised draw g + stderr * z (z ~ N(0, 1) per point).

    The draws share the profile's standard errors as PAV weights (1 / stderr^2).
    """
    g = np.asarray(profile.conditional_entropy, dtype=np.float64)
    se = np.asarray(profile.stderr, dtype=np.float64)
    noise = rng.standard_normal((draws, g.size)) * se
    curves = np.empty((draws, g.size + 1))
    for r in range(draws):  # PAV is sequential; R is small
        draw = EntropyProfile(entropy=np.concatenate([[0.0], np.cumsum(g + noise[r])]),
                              stderr=profile.stderr)
        curves[r] = np.asarray(draw.regularize().entropy)
    return curves


def _optimism(truth: np.ndarray, stderr, steps: int, rng: np.random.Generator) -> np.ndarray:
    """float[CALIBRATION_DRAWS]: KL under `truth` minus the KL predicted from a simulated,
    regularised estimate, for the schedule optimized on that estimate."""
    stand_in = EntropyProfile(entropy=truth, stderr=stderr)
    curves = perturbed_curves(stand_in, CALIBRATION_DRAWS, rng)
    estimates = [EntropyProfile(entropy=c) for c in curves]
    schedules = optimize_batch(estimates, steps)
    width = max(s.steps for s in schedules)
    tokens = np.zeros((len(schedules), width), np.int64)
    for row, s in enumerate(schedules):
        tokens[row, : s.steps] = np.asarray(s.tokens_per_step)
    true_kl = evaluate_kl(truth, tokens)
    return true_kl - np.asarray([float(s.expected_kl) for s in schedules])
