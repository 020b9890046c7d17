"""The exact solver: a dynamic program over integer schedules, and the KL-vs-steps frontier.

THEORY section 4. With F_t(b) the least KL of unmasking the first b positions in t steps,

    F_t(b) = min_{a < b} F_{t-1}(a) + C(a, b),   C(a, b) = (b - a) g_a - (H_b - H_a).

C satisfies the Monge (quadrangle) inequality because g is non-increasing, so the leftmost
argmin of each row is non-decreasing in b. Each layer is solved by divide and conquer over the
rows: a row's candidates lie between its already-solved neighbours' argmins, and all rows of one
recursion level are solved together as one flat, segmented minimum (O(n) work per level,
O(n log n) per layer, no Python loop at run time). Layers run under `lax.scan`.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from .profile import EntropyProfile
from .schedules import Schedule, check_steps

# Shallow recursion levels (those with at most 1/_SHALLOW_FRACTION of the deepest level's rows)
# share one compiled loop body, padded to a common width; deeper levels get a body each. This
# keeps compile time low (about five bodies for any n) at a few percent of extra work.
_SHALLOW_FRACTION = 8


@functools.lru_cache(maxsize=32)
def _levels(n: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """The divide-and-conquer recursion over rows 1..n, as groups of levels.

    Returns a tuple of groups; each group is int32[levels, width] arrays (rows, left, right):
    the rows solved at each level and, for each, the rows whose argmins bound its candidates
    (0 and n + 1 are sentinels). Levels are padded to their group's width with row n + 1.
    """
    levels = []
    intervals = [(1, n)]
    while intervals:
        level, nxt = [], []
        for lo, hi in intervals:
            mid = (lo + hi) // 2
            level.append((mid, lo - 1, hi + 1))
            if lo <= mid - 1:
                nxt.append((lo, mid - 1))
            if mid + 1 <= hi:
                nxt.append((mid + 1, hi))
        levels.append(level)
        intervals = nxt
    limit = max(len(level) for level in levels) // _SHALLOW_FRACTION
    shallow = [level for level in levels if len(level) <= limit]
    groups = [shallow] if shallow else []
    groups += [[level] for level in levels if len(level) > limit]
    return tuple(_stack(group, n) for group in groups)


def _stack(group: list, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = max(len(level) for level in group)
    table = np.empty((3, len(group), width), dtype=np.int32)
    table[0], table[1], table[2] = n + 1, 0, n + 1
    for i, level in enumerate(group):
        table[:, i, : len(level)] = np.asarray(level, dtype=np.int32).T
    return table[0], table[1], table[2]


def _layer(entropy: jnp.ndarray, prev: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """One DP layer: F_t(b) and its leftmost argmin for b = 0..n from F_{t-1}.

    Args:
        entropy: float64[n + 1] H.
        prev: float64[n + 1] F_{t-1} (inf where infeasible).

    Returns:
        (F_t float64[n + 1], argmin int32[n + 2]); argmin[0] = 0 and argmin[n + 1] = n - 1 are
        the sentinels that bound the first and last rows.
    """
    n = entropy.shape[0] - 1
    slope = jnp.diff(entropy)  # g_a
    intercept = prev[:-1] + entropy[:-1] - jnp.arange(n) * slope  # F_{t-1}(a) + H_a - a g_a
    # Slot n + 1 of value and n + 2 of argmin are scratch space for padding rows.
    value = jnp.full(n + 2, jnp.inf, dtype=entropy.dtype)
    argmin = jnp.zeros(n + 3, dtype=jnp.int32).at[n + 1].set(n - 1)
    for rows, left, right in _levels(n):
        solve = functools.partial(_level, entropy, slope, intercept)
        rows, left, right = jnp.asarray(rows), jnp.asarray(left), jnp.asarray(right)
        if rows.shape[0] == 1:
            value, argmin = solve(rows[0], left[0], right[0], (value, argmin))
        else:
            value, argmin = jax.lax.fori_loop(
                0,
                rows.shape[0],
                lambda i, carry: solve(rows[i], left[i], right[i], carry),  # noqa: B023
                (value, argmin),
            )
    return value[: n + 1], argmin[: n + 2]


def _level(entropy, slope, intercept, rows, left, right, carry):
    """Solve the rows of one recursion level given their neighbours' argmins.

    Each row's candidates lie between its neighbours' argmins; the ranges of one level overlap
    only at their ends, so they fit in one flat array of n + width entries, minimised per row
    with a segmented minimum.
    """
    value, argmin = carry
    n = entropy.shape[0] - 1
    width = rows.shape[0]
    size = n + width
    padding = rows > n
    lo = argmin[left]
    hi = jnp.where(padding, lo, jnp.minimum(argmin[right], rows - 1))
    lengths = hi - lo + 1
    offsets = jnp.cumsum(lengths) - lengths
    flat = jnp.arange(size)
    segment = jnp.cumsum(jnp.zeros(size, jnp.int32).at[offsets[1:]].add(1))
    a = lo[segment] + flat - offsets[segment]
    valid = (flat < offsets[-1] + lengths[-1]) & ~padding[segment]
    a = jnp.where(valid, a, 0)
    # F_{t-1}(a) + C(a, b) = intercept[a] + b g_a - H_b; H_b is subtracted per row below.
    cost = jnp.where(valid, intercept[a] + rows[segment] * slope[a], jnp.inf)
    best = jax.ops.segment_min(cost, segment, width, indices_are_sorted=True)
    # Leftmost argmin; a row with no finite candidate keeps its lower bound.
    first = jnp.where(valid & (cost <= best[segment]), a, n + 1)
    arg = jnp.minimum(jax.ops.segment_min(first, segment, width, indices_are_sorted=True), hi)
    value = value.at[rows].set(best - entropy[jnp.minimum(rows, n)])
    argmin = argmin.at[jnp.where(padding, n + 2, rows)].set(jnp.maximum(arg, lo).astype(jnp.int32))
    return value, argmin


def _initial(entropy: jnp.ndarray) -> jnp.ndarray:
    """F_0: zero for the empty prefix, infeasible otherwise."""
    return jnp.full(entropy.shape[0], jnp.inf, entropy.dtype).at[0].set(0.0)


@functools.partial(jax.jit, static_argnames="max_steps")
def _frontier(entropy: jnp.ndarray, max_steps: int) -> jnp.ndarray:
    n = entropy.shape[0] - 1

    def step(prev, _):
        value, _ = _layer(entropy, prev)
        return value, value[n]

    _, optimal = jax.lax.scan(step, _initial(entropy), None, length=max_steps)
    return optimal


@functools.partial(jax.jit, static_argnames="steps")
def _argmins(entropy: jnp.ndarray, steps: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    n = entropy.shape[0] - 1

    def step(prev, _):
        value, argmin = _layer(entropy, prev)
        return value, argmin

    last, argmins = jax.lax.scan(step, _initial(entropy), None, length=steps)
    return last[n], argmins


def frontier(profile: EntropyProfile, max_steps: int) -> np.ndarray:
    """The optimal expected KL for every step budget T = 1..max_steps, in one DP pass.

    Args:
        profile: the entropy profile (n tokens).
        max_steps: the largest budget, 1 <= max_steps <= n.

    Returns:
        float64[max_steps]: entry T - 1 is the least expected KL (nats) of any T-step schedule.
        Non-increasing in T; zero at T = n.
    """
    max_steps = check_steps(max_steps, profile.n)
    # Differences of H can leave -1e-15 where the optimum is 0; the KL is never negative.
    return np.maximum(np.asarray(_frontier(profile.entropy, max_steps)), 0.0)


def optimal_schedule(profile: EntropyProfile, steps: int) -> Schedule:
    """The exact optimal T-step schedule (the certificate for `optimize`).

    Memory is O(T n) for the argmin table the schedule is read back from.

    Args:
        profile: the entropy profile (n tokens).
        steps: the budget T, 1 <= T <= n.

    Returns:
        A `Schedule` with method "exact"; its expected_kl is re-evaluated by `expected_kl`.
    """
    steps = check_steps(steps, profile.n)
    # Budgets share a compiled program per power of two; later layers are simply unused.
    padded = min(max(2, 1 << (steps - 1).bit_length()), profile.n)
    _, argmins = _argmins(profile.entropy, padded)
    argmins = np.asarray(argmins)
    cuts = [profile.n]
    for t in range(steps - 1, -1, -1):
        cuts.append(int(argmins[t, cuts[-1]]))
    tokens = np.diff(np.asarray(cuts[::-1]))
    return Schedule.from_tokens(profile, tokens, "exact")


def fast_frontier(profile: EntropyProfile, max_steps: int) -> np.ndarray:
    """The same values as `frontier`, by certified lower envelopes (about O(n) per budget).

    Each DP layer is a lower envelope of lines with sorted slopes; a guess from the previous
    layer is improved by local moves and certified in O(n), and a layer that cannot be
    certified is solved by the divide-and-conquer DP instead, so the result is always exact.
    See `schedopt._envelope`. On a sticky Markov chain with n = 131072 and every T <= 4096 it
    took 12 s where `frontier` needs about 130 s (scripts/bench_batch.py).

    Args:
        profile: the entropy profile (n tokens).
        max_steps: the largest budget, 1 <= max_steps <= n.

    Returns:
        float64[max_steps]: entry T - 1 is the least expected KL (nats) of any T-step schedule.
    """
    from ._envelope import envelope_frontier

    max_steps = check_steps(max_steps, profile.n)
    return np.asarray(envelope_frontier(profile.entropy, max_steps, _layer))
