"""Side-by-side comparisons: every method at one budget, and the fewest steps to a target KL."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .divergence import evaluate_kl
from .exact import frontier, optimal_schedule
from .optimize import bucket, optimize
from .profile import EntropyProfile
from .schedules import (
    Schedule,
    check_steps,
    correlation_schedule_within,
    cosine,
    cosine_tokens,
    dtc_schedule,
    tc_schedule,
    uniform,
    uniform_tokens,
)

_ROWS_PER_BATCH = 256
# Reaching the target allows for float64 rounding in the KL sums.
_SLACK = 1e-12


def schedules_at_budget(profile: EntropyProfile, steps: int) -> dict[str, Schedule]:
    """The optimized, exact, uniform, cosine, TC and DTC schedules for a T-step budget.

    TC and DTC are indexed by a target eps rather than T: the most accurate one that fits in
    T steps is used (it may use fewer steps).
    """
    steps = check_steps(steps, profile.n)
    return {
        "optimized (optax)": optimize(profile, steps),
        "exact (DP)": optimal_schedule(profile, steps),
        "uniform": uniform(profile, steps),
        "cosine": cosine(profile, steps),
        "TC": correlation_schedule_within(profile, steps, "tc"),
        "DTC": correlation_schedule_within(profile, steps, "dtc"),
    }


def fewest_steps(profile: EntropyProfile, target_kl: float) -> dict[str, int]:
    """The fewest steps each method needs for an expected KL <= target_kl (nats).

    Exact for the optimum (one frontier pass), the optimizer, uniform and cosine (every T is
    scored until one reaches the target); TC and DTC report the steps of the schedule that
    guarantees target_kl.
    """
    if not (target_kl > 0 and np.isfinite(target_kl)):
        raise ValueError(f"target KL must be a positive number of nats, got {target_kl}")
    optimum = fewest_steps_optimal(profile, target_kl)
    return {
        "optimized (optax)": _fewest_optimized(profile, target_kl, optimum),
        "exact (DP)": optimum,
        "uniform": fewest_steps_scanning(profile, target_kl, uniform_tokens),
        "cosine": fewest_steps_scanning(profile, target_kl, cosine_tokens),
        "TC": tc_schedule(profile, target_kl).steps,
        "DTC": dtc_schedule(profile, target_kl).steps,
    }


def _reaches(kl, target_kl: float):
    return kl <= target_kl * (1 + _SLACK) + _SLACK


def fewest_steps_optimal(profile: EntropyProfile, target_kl: float) -> int:
    """The fewest steps any schedule needs for KL <= target_kl (growing frontier passes)."""
    budget = min(64, profile.n)
    while True:
        hits = np.nonzero(_reaches(frontier(profile, budget), target_kl))[0]
        if hits.size:
            return int(hits[0]) + 1
        budget = min(4 * budget, profile.n)  # T = n always reaches KL 0


def _fewest_optimized(profile: EntropyProfile, target_kl: float, optimum: int) -> int:
    # The optimizer can do no better than the optimum, so start the search there.
    for steps in range(optimum, profile.n + 1):
        if _reaches(float(optimize(profile, steps).expected_kl), target_kl):
            return steps
    return profile.n


def fewest_steps_scanning(
    profile: EntropyProfile, target_kl: float, tokens: Callable[[int, int], np.ndarray]
) -> int:
    """Score T = 1, 2, ... in vmapped batches (zero-padded schedules) until one reaches it."""
    n = profile.n
    lo = 1
    while lo <= n:
        hi = min(n + 1, lo + _ROWS_PER_BATCH, 2 * lo)
        width = bucket(hi - 1)
        batch = np.zeros((hi - lo, width), dtype=np.int64)
        for row, steps in enumerate(range(lo, hi)):
            batch[row, :steps] = tokens(n, steps)
        hits = np.nonzero(_reaches(np.asarray(evaluate_kl(profile.entropy, batch)), target_kl))[0]
        if hits.size:
            return lo + int(hits[0])
        lo = hi
    return n
