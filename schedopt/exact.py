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


@functools.lru_cache(maxsize=32)
def _levels(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The divide-and-conquer recursion over rows 1..n, level by level.

    Returns int32[levels, width] arrays (rows, left, right): the rows solved at each level
    and, for each, the rows whose argmins bound its candidates (0 and n + 1 are sentinels for
    the ends). Levels are padded to a common width with the scratch row n + 1.
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
    width = max(len(level) for level in levels)
    table = np.empty((3, len(levels), width), dtype=np.int32)
    table[0], table[1], table[2] = n + 1, 0, n + 1
    for i, level in enumerate(levels):
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
    g = jnp.diff(entropy)
    all_rows, all_left, all_right = (jnp.asarray(x) for x in _levels(n))
    width = all_rows.shape[1]
    size = n + width  # the candidate ranges of one level overlap only at their ends
    flat = jnp.arange(size)

    def level(i, carry):
        value, argmin = carry
        rows, left, right = all_rows[i], all_left[i], all_right[i]
        padding = rows > n
        lo = argmin[left]
        hi = jnp.where(padding, lo, jnp.minimum(argmin[right], rows - 1))
        lengths = hi - lo + 1
        offsets = jnp.cumsum(lengths) - lengths
        segment = jnp.cumsum(jnp.zeros(size, jnp.int32).at[offsets[1:]].add(1))
        a = lo[segment] + flat - offsets[segment]
        b = rows[segment]
        valid = (flat < offsets[-1] + lengths[-1]) & (a < b) & (b <= n)
        a, b = jnp.where(valid, a, 0), jnp.where(valid, b, 0)
        cost = prev[a] + (b - a) * g[a] - (entropy[b] - entropy[a])
        cost = jnp.where(valid, cost, jnp.inf)
        best = jax.ops.segment_min(cost, segment, width, indices_are_sorted=True)
        # Leftmost argmin; a row with no finite candidate keeps its lower bound.
        first = jnp.where(valid & (cost <= best[segment]), a, n + 1)
        arg = jnp.minimum(jax.ops.segment_min(first, segment, width, indices_are_sorted=True), hi)
        arg = jnp.maximum(arg, lo).astype(jnp.int32)
        # Padding rows write to scratch slots (value[n + 1], argmin[n + 2]), dropped below.
        value = value.at[rows].set(best)
        argmin = argmin.at[jnp.where(padding, n + 2, rows)].set(arg)
        return value, argmin

    value = jnp.full(n + 2, jnp.inf, dtype=entropy.dtype)
    argmin = jnp.zeros(n + 3, dtype=jnp.int32).at[n + 1].set(n - 1)
    value, argmin = jax.lax.fori_loop(0, all_rows.shape[0], level, (value, argmin))
    return value[: n + 1], argmin[: n + 2]


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
    return np.asarray(_frontier(profile.entropy, max_steps))


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
    _, argmins = _argmins(profile.entropy, steps)
    argmins = np.asarray(argmins)
    cuts = [profile.n]
    for t in range(steps - 1, -1, -1):
        cuts.append(int(argmins[t, cuts[-1]]))
    tokens = np.diff(np.asarray(cuts[::-1]))
    return Schedule.from_tokens(profile, tokens, "exact")
