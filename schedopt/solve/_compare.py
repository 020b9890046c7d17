"""Methods against budget: every method at one budget, at every budget up to K, and the fewest
steps each needs to reach a target KL."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .._internal.checks import check_steps
from ..curve import EntropyProfile
from ..objective import evaluate_kl
from ..schedule import (
    Schedule,
    correlation_schedule_within,
    correlation_tokens_within,
    cosine,
    cosine_tokens,
    dtc_schedule,
    eds,
    eds_tokens,
    pyramid,
    pyramid_tokens,
    tc_schedule,
    uniform,
    uniform_tokens,
)
from ._exact import fewest_optimal_steps, frontier, optimal_schedule
from ._relaxed import bucket, optimize

_ROWS_PER_BATCH = 256
# Reaching the target allows for float64 rounding in the KL sums.
_SLACK = 1e-12

# The methods every comparison reports, under these names (compare, frontier, plot, the batch
# CLI and the demo): the optimizer, the exact optimum, and the baselines of docs/theory.md §5.
# "uniform" is also LLaDA's stock schedule without blocks (`heldout.llada_stock` builds it from
# `uniform_tokens`), so it has no row of its own.
METHODS = ("optimized", "optimal", "uniform", "cosine", "eds", "pyramid", "tc", "dtc")
LABELS = {
    "optimized": "optimized (optax)",
    "optimal": "exact optimum (DP)",
    "uniform": "uniform (LLaDA stock)",
    "cosine": "cosine (MaskGIT)",
    "eds": "EDS",
    "pyramid": "pyramid",
    "tc": "TC",
    "dtc": "DTC",
}
BASELINES = ("uniform", "cosine", "eds", "pyramid", "tc", "dtc")
# Baselines that may use fewer steps than the budget (their steps are reported).
WITHIN_BUDGET = ("pyramid", "tc", "dtc")


def schedules_at_budget(profile: EntropyProfile, steps: int) -> dict[str, Schedule]:
    """Every method's schedule for a T-step budget, keyed by `METHODS`.

    TC and DTC are indexed by a target eps rather than T, the pyramid by an integer factor:
    the most accurate TC/DTC schedule and the pyramid of the largest factor that fit in T steps
    are used (they may use fewer steps).
    """
    steps = check_steps(steps, profile.n)
    return {
        "optimized": optimize(profile, steps),
        "optimal": optimal_schedule(profile, steps),
        "uniform": uniform(profile, steps),
        "cosine": cosine(profile, steps),
        "eds": eds(profile, steps),
        "pyramid": pyramid(profile, steps),
        "tc": correlation_schedule_within(profile, steps, "tc"),
        "dtc": correlation_schedule_within(profile, steps, "dtc"),
    }


def budget_table(profile: EntropyProfile, max_steps: int) -> dict[str, tuple]:
    """The KL of the optimum and of each baseline at every budget T = 1..K.

    Returns:
        every name of `METHODS` but "optimized" -> (int64[K] steps used, float64[K] KL in
        nats); entry T - 1 is the method's schedule for budget T (`WITHIN_BUDGET`'s: the one
        of `schedules_at_budget`, which may use fewer steps).
    """
    max_steps = check_steps(max_steps, profile.n, name="max_steps")
    n, budgets = profile.n, range(1, max_steps + 1)
    families = {
        "uniform": [uniform_tokens(n, t) for t in budgets],
        "cosine": [cosine_tokens(n, t) for t in budgets],
        "eds": [eds_tokens(profile.entropy, t) for t in budgets],
        "pyramid": [pyramid_tokens(n, t)[0] for t in budgets],
    }
    for kind in ("tc", "dtc"):
        zeta, family = 1, []
        for t in budgets:
            tokens, zeta = correlation_tokens_within(n, t, kind, smallest_zeta=zeta)
            family.append(tokens)
        families[kind] = family
    # One batched evaluation: schedules zero-padded to a power-of-two width (compiles once per
    # bucket of budgets).
    rows = [s for family in families.values() for s in family]
    padded = np.zeros((len(rows), bucket(max_steps)), np.int64)
    for row, s in enumerate(rows):
        padded[row, : s.size] = s
    scores = evaluate_kl(profile.entropy, padded)
    table = {"optimal": (np.arange(1, max_steps + 1), frontier(profile, max_steps))}
    for i, (name, family) in enumerate(families.items()):
        steps = np.asarray([s.size for s in family], np.int64)
        table[name] = (steps, np.maximum(scores[i * max_steps : (i + 1) * max_steps], 0.0))
    return table


def fewest_steps(
    profile: EntropyProfile, target_kl: float, *, methods: tuple[str, ...] = METHODS
) -> dict[str, int]:
    """The fewest steps each method needs for an expected KL <= target_kl (nats).

    Exact for the optimum (one frontier pass), the optimizer, uniform, cosine, EDS and the
    pyramid (every budget T is scored until one reaches the target; a pyramid that reaches it
    uses exactly T steps, since a smaller budget would give the same one); TC and DTC report
    the steps of the schedule that guarantees target_kl.

    Args:
        profile: the entropy profile.
        target_kl: the KL to reach (nats), > 0.
        methods: which of `METHODS` to report (the optimizer is the slowest to scan).
    """
    if not (target_kl > 0 and np.isfinite(target_kl)):
        raise ValueError(f"target KL must be a positive number of nats, got {target_kl}")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ValueError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    optimum = fewest_steps_optimal(profile, target_kl)
    scans = {
        "optimized": lambda: _fewest_optimized(profile, target_kl, optimum),
        "optimal": lambda: optimum,
        "uniform": lambda: fewest_steps_scanning(profile, target_kl, uniform_tokens),
        "cosine": lambda: fewest_steps_scanning(profile, target_kl, cosine_tokens),
        "eds": lambda: fewest_steps_scanning(
            profile, target_kl, lambda n, t: eds_tokens(profile.entropy, t)),
        "pyramid": lambda: fewest_steps_scanning(
            profile, target_kl, lambda n, t: pyramid_tokens(n, t)[0]),
        "tc": lambda: tc_schedule(profile, target_kl).steps,
        "dtc": lambda: dtc_schedule(profile, target_kl).steps,
    }
    return {name: scans[name]() for name in METHODS if name in methods}


def _reaches(kl, target_kl: float):
    return kl <= target_kl * (1 + _SLACK) + _SLACK


def fewest_steps_optimal(profile: EntropyProfile, target_kl: float) -> int:
    """The fewest steps any schedule needs for KL <= target_kl (nats): a search on the
    multiplier of the step count (`schedopt.solve.fewest_optimal_steps`), O(n) per multiplier
    for any answer."""
    return fewest_optimal_steps(profile.entropy, target_kl * (1 + _SLACK) + _SLACK)


def _fewest_optimized(profile: EntropyProfile, target_kl: float, optimum: int) -> int:
    # The optimizer can do no better than the optimum, so start the search there.
    for steps in range(optimum, profile.n + 1):
        if _reaches(float(optimize(profile, steps).expected_kl), target_kl):
            return steps
    return profile.n


def fewest_steps_scanning(
    profile: EntropyProfile, target_kl: float, tokens: Callable[[int, int], np.ndarray]
) -> int:
    """Score budgets T = 1, 2, ... in vmapped batches (zero-padded schedules, which may use
    fewer than T steps) until one reaches it."""
    n = profile.n
    lo = 1
    while lo <= n:
        hi = min(n + 1, lo + _ROWS_PER_BATCH, 2 * lo)
        width = bucket(hi - 1)
        batch = np.zeros((hi - lo, width), dtype=np.int64)
        for row, steps in enumerate(range(lo, hi)):
            s = tokens(n, steps)
            batch[row, : s.size] = s
        hits = np.nonzero(_reaches(np.asarray(evaluate_kl(profile.entropy, batch)), target_kl))[0]
        if hits.size:
            return lo + int(hits[0])
        lo = hi
    return n
