"""Optimal schedules for a curve that need not be monotone (theory §11).

The held-out T-step NLL of a trained model exceeds its one-by-one NLL by exactly
sum_k sum_{j in block k} (c_{N_{k-1}} - c_j) for the held-out cross-entropy curve c, whether
or not c is non-increasing. An estimated c is often not monotone (at block ends, for
instance); projecting it onto non-increasing curves changes the prediction, and a schedule
optimal for the projected curve can lose on held-out data. This module optimizes the raw curve
itself: a dynamic program over all blocks [a, b) with cost

    C(a, b) = (b - a) c_a - sum_{j=a}^{b-1} c_j,

which is exact for any c. Without monotonicity the argmin need not be monotone, so it looks at
every (a, b): O(T n^2) time, O(T n) memory for the argmins (n up to a few thousand).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._internal.checks import check_steps, check_tokens_per_step
from ..curve import BlockProfiles, EntropyProfile
from ..schedule import RAW_CURVE, Schedule
from ._blocks import solve_blocks


def check_curve(curve: EntropyProfile | Any) -> np.ndarray:
    """float64[n] the conditional curve c_0..c_{n-1} (g of a profile, or the values given)."""
    if isinstance(curve, EntropyProfile):
        return np.diff(np.asarray(curve.entropy, np.float64))
    c = np.asarray(curve, np.float64)
    if c.ndim != 1 or c.size == 0 or not np.all(np.isfinite(c)):
        raise ValueError(
            f"curve must be a non-empty 1-D list of finite per-token values c_0..c_(n-1), "
            f"got shape {c.shape}"
        )
    return c


def _cost_matrix(c: np.ndarray) -> np.ndarray:
    """float64[n + 1, n + 1] C(a, b) for a < b (+inf elsewhere), summed termwise (no
    cancellation between large prefix sums)."""
    n = c.size
    prefix = np.concatenate([[0.0], np.cumsum(c)])
    a = np.arange(n + 1)[:, None]
    b = np.arange(n + 1)[None, :]
    ca = np.concatenate([c, [0.0]])[:, None]
    cost = (b - a) * ca - (prefix[None, :] - prefix[:, None])
    return np.where(b > a, cost, np.inf)


def _dp(c: np.ndarray, max_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(best[t, b] for t = 0..max_steps, argmin a[t, b]) over schedules of b tokens in t steps."""
    n = c.size
    cost = _cost_matrix(c)
    best = np.full((max_steps + 1, n + 1), np.inf)
    best[0, 0] = 0.0
    arg = np.zeros((max_steps + 1, n + 1), np.int64)
    for t in range(1, max_steps + 1):
        total = best[t - 1][:, None] + cost
        arg[t] = np.argmin(total, axis=0)
        best[t] = total[arg[t], np.arange(n + 1)]
    return best, arg


def unregularized_frontier(curve: EntropyProfile | Any, max_steps: int) -> np.ndarray:
    """float64[max_steps]: the optimal excess with 1..max_steps steps, for any curve (nats)."""
    c = check_curve(curve)
    max_steps = check_steps(max_steps, c.size, name="max_steps")
    best, _ = _dp(c, max_steps)
    return best[1:, c.size]


def optimal_schedule_unregularized(curve: EntropyProfile | Any, steps: int) -> Schedule:
    """The exact optimal T-step schedule for a curve that need not be monotone.

    Args:
        curve: the raw held-out cross-entropy curve c_0..c_{n-1} (float[n], nats per token,
            e.g. `CurveEstimate.curve("data")[0]` on every revealed count), or a profile
            (its g, without projection).
        steps: T, 1 <= T <= n.

    Returns:
        A `Schedule` (method "exact-unregularized") whose expected_kl is the predicted excess
        NLL sum_k sum_{j in block k} (c_{N_{k-1}} - c_j), the minimum over all T-step
        schedules. It can be negative when c rises somewhere (a model worse with more context).

    Example:
        >>> import numpy as np
        >>> s = optimal_schedule_unregularized(np.array([2.0, 1.0, 1.5, 0.2]), 2)
        >>> s.tokens_per_step.tolist()
        [1, 3]
    """
    c = check_curve(curve)
    steps = check_steps(steps, c.size)
    best, arg = _dp(c, steps)
    cuts = [c.size]
    for t in range(steps, 0, -1):
        cuts.append(int(arg[t, cuts[-1]]))
    tokens = np.diff(np.asarray(cuts[::-1]))
    return Schedule(
        tokens_per_step=np.asarray(tokens, np.int64),
        expected_kl=np.float64(best[steps, c.size]),
        method="exact-unregularized",
        meta={"curve": RAW_CURVE},
    )


def excess(curve: EntropyProfile | Any, tokens_per_step: Any) -> float:
    """theory §11's excess sum_k sum_{j in block k} (c_{N_{k-1}} - c_j) of a schedule (nats)."""
    c = check_curve(curve)
    s = check_tokens_per_step(tokens_per_step, c.size)
    starts = np.concatenate([[0], np.cumsum(s)[:-1]])
    return float(sum(np.sum(c[a] - c[a:a + k]) for a, k in zip(starts, s, strict=True)))


def optimize_blocks_unregularized(blocks: BlockProfiles, steps: int, *,
                                  equal_split: bool = False) -> Schedule:
    """The exact optimal block schedule for raw (not regularised) per-block curves.

    Like `schedopt.solve.optimize_blocks`, but each block's frontier and schedule come from
    the DP over all blocks, so no block curve needs to be monotone.

    Args:
        blocks: per-block curves, typically `estimate_block_profiles(..., regularize=False)`.
        steps: total T (B <= T <= n; a multiple of B with equal_split).
        equal_split: T / B steps in every block (LLaDA's sampler).

    Returns:
        A `Schedule` (method "exact-blocks-unregularized") with meta "block_length",
        "steps_per_block", "block_kl" and "equal_split"; expected_kl is the predicted excess.
    """
    return solve_blocks(
        blocks, steps, equal_split=equal_split, method="exact-blocks-unregularized",
        frontier_fn=unregularized_frontier, schedule_fn=optimal_schedule_unregularized,
    )
