"""The exact solver: a dynamic program over integer schedules, and the KL-vs-steps frontier.

`optimal_schedule`, `optimal_tokens`, `frontier` and `fewest_optimal_steps` run the compiled
host solvers of `schedopt.solve` on the grid of run starts (docs/theory.md §4.4); the JAX
DP below (`grid_layer`, `solve_on_grid`) serves vmapped batches on an accelerator
(`schedopt.solve`) and the envelope frontier's fallback.

docs/theory.md §4. With F_t(b) the least KL of unmasking the first b positions in t steps,

    F_t(b) = min_{a < b} F_{t-1}(a) + C(a, b),   C(a, b) = (b - a) g_a - (H_b - H_a).

C satisfies the Monge (quadrangle) inequality because g is non-increasing, so the leftmost
argmin of each row is non-decreasing in b. Each layer is solved by divide and conquer over the
rows: a row's candidates lie between its already-solved neighbours' argmins, and all rows of one
recursion level are solved together as one flat, segmented minimum (O(m) work per level,
O(m log m) per layer, no Python loop at run time). Layers run under `lax.scan`.

The DP runs on a grid of candidate cut positions x_0 = 0 < x_1 < ... < x_m = n (`CutGrid`).
Where g is constant over a run, a cut inside the run can move to the run's start without
raising the KL (docs/theory.md §4), so the grid of run starts (`run_grid`) gives the exact
optimum: on a regularised estimate with r runs the DP costs O(T r log r) instead of
O(T n log n). Grids are padded to a power of two with copies of the point n (zero-width blocks
of cost 0), so one compiled program serves every profile of a size class and the DP vmaps
over a batch of profiles (`solve_on_grid`).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from .._internal.checks import check_steps
from .._internal.precision import float64
from ..curve import EntropyProfile
from ..objective import flat_tolerance
from ..schedule import Schedule
from . import _lagrangian as lagrangian
from ._envelope import envelope_frontier

# Shallow recursion levels (those with at most 1/_SHALLOW_FRACTION of the deepest level's rows)
# share one compiled loop body, padded to a common width; deeper levels get a body each. This
# keeps compile time low (about five bodies for any m) at a few percent of extra work.
_SHALLOW_FRACTION = 8
# Grids are padded to a power of two of at least this many points.
_MIN_GRID = 16
# Up to this many steps `optimal_tokens` runs the layered DP (T - 2 hull sweeps), above it the
# Lagrangian search (about 7 penalised sweeps of about two layers each); docs/benchmarks.md.
LAYERED_MAX_STEPS = 8


@struct.dataclass
class CutGrid:
    """Candidate cut positions with the curve at each, padded to a fixed size.

    Attributes:
        position: float64[..., m + 1] x_0 = 0 < ... < x_last = n, then copies of n.
        entropy: float64[..., m + 1] H at each position.
        slope: float64[..., m] g at each position (the padding repeats the last real slope,
            so the slopes stay non-increasing and the Monge property holds on the padding).
        last: int[...] index of the point n (m when there is no padding).
    """

    position: np.ndarray
    entropy: np.ndarray
    slope: np.ndarray
    last: np.ndarray


def run_starts(entropy: np.ndarray) -> np.ndarray:
    """int64[r + 1]: the first position of each run of equal g (0 first), then n.

    Two neighbouring values of g are equal when they differ by no more than rounding
    (`schedopt.objective.flat_tolerance`). r = n on a strictly decreasing curve.
    """
    entropy = np.asarray(entropy, np.float64)
    n = entropy.shape[-1] - 1
    g = np.diff(entropy)
    change = np.abs(np.diff(g)) > flat_tolerance(entropy)
    return np.concatenate([[0], 1 + np.nonzero(change)[0], [n]]).astype(np.int64)


def grid_size(points: int) -> int:
    """The padded number of grid intervals m for a grid of `points` intervals."""
    return max(_MIN_GRID, 1 << (int(points) - 1).bit_length())


def make_grid(entropy: np.ndarray, positions: np.ndarray, size: int | None = None) -> CutGrid:
    """The grid on `positions` (int[k + 1], 0 first, n last), padded to `size` intervals."""
    entropy = np.asarray(entropy, np.float64)
    g = np.diff(entropy)
    k = positions.shape[0] - 1
    m = grid_size(k) if size is None else size
    x = np.full(m + 1, positions[-1], np.int64)
    x[: k + 1] = positions
    slope = np.full(m, g[positions[k - 1]])
    slope[:k] = g[positions[:k]]
    return CutGrid(position=x.astype(np.float64), entropy=entropy[x], slope=slope,
                   last=np.int32(k))


@functools.lru_cache(maxsize=32)
def _levels(m: int) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], ...]:
    """The divide-and-conquer recursion over rows 1..m, as groups of levels.

    Returns a tuple of groups; each group is int32[levels, width] arrays (rows, left, right):
    the rows solved at each level and, for each, the rows whose argmins bound its candidates
    (0 and m + 1 are sentinels). Levels are padded to their group's width with row m + 1.
    """
    levels = []
    intervals = [(1, m)]
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
    return tuple(_stack(group, m) for group in groups)


def _stack(group: list, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = max(len(level) for level in group)
    table = np.empty((3, len(group), width), dtype=np.int32)
    table[0], table[1], table[2] = m + 1, 0, m + 1
    for i, level in enumerate(group):
        table[:, i, : len(level)] = np.asarray(level, dtype=np.int32).T
    return table[0], table[1], table[2]


def grid_layer(grid: CutGrid, prev: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """One DP layer on a grid: F_t at every grid point from F_{t-1}.

    Args:
        grid: one (unbatched) `CutGrid` with m + 1 points.
        prev: float[m + 1] F_{t-1} (inf where infeasible).

    Returns:
        (F_t float[m + 1], argmin int32[m + 2]); argmin[0] = 0 and argmin[m + 1] = m - 1 are
        the sentinels that bound the first and last rows.
    """
    x, h, slope = grid.position, grid.entropy, grid.slope
    m = h.shape[0] - 1
    intercept = prev[:-1] + h[:-1] - x[:-1] * slope  # F_{t-1}(a) + H_a - x_a g_a
    # Slot m + 1 of value and m + 2 of argmin are scratch space for padding rows.
    value = jnp.full(m + 2, jnp.inf, dtype=h.dtype)
    argmin = jnp.zeros(m + 3, dtype=jnp.int32).at[m + 1].set(m - 1)
    for rows, left, right in _levels(m):
        solve = functools.partial(_level, x, h, slope, intercept)
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
    return value[: m + 1], argmin[: m + 2]


def _level(x, h, slope, intercept, rows, left, right, carry):
    """Solve the rows of one recursion level given their neighbours' argmins.

    Each row's candidates lie between its neighbours' argmins; the ranges of one level overlap
    only at their ends, so they fit in one flat array of m + width entries, minimised per row
    with a segmented minimum.
    """
    value, argmin = carry
    m = h.shape[0] - 1
    width = rows.shape[0]
    size = m + width
    padding = rows > m
    lo = argmin[left]
    hi = jnp.where(padding, lo, jnp.minimum(argmin[right], rows - 1))
    lengths = hi - lo + 1
    offsets = jnp.cumsum(lengths) - lengths
    flat = jnp.arange(size, dtype=lo.dtype)
    segment = jnp.cumsum(jnp.zeros(size, jnp.int32).at[offsets[1:]].add(1))
    a = lo[segment] + flat - offsets[segment]
    valid = (flat < offsets[-1] + lengths[-1]) & ~padding[segment]
    a = jnp.where(valid, a, 0)
    row_x = x[jnp.minimum(rows, m)]
    # F_{t-1}(a) + C(a, b) = intercept[a] + x_b g_a - H_b; H_b is subtracted per row below.
    cost = jnp.where(valid, intercept[a] + row_x[segment] * slope[a], jnp.inf)
    best = jax.ops.segment_min(cost, segment, width, indices_are_sorted=True)
    # Leftmost argmin; a row with no finite candidate keeps its lower bound.
    first = jnp.where(valid & (cost <= best[segment]), a, m + 1)
    arg = jnp.minimum(jax.ops.segment_min(first, segment, width, indices_are_sorted=True), hi)
    value = value.at[rows].set(best - h[jnp.minimum(rows, m)])
    argmin = argmin.at[jnp.where(padding, m + 2, rows)].set(jnp.maximum(arg, lo).astype(jnp.int32))
    return value, argmin


def _initial(m: int, dtype) -> jnp.ndarray:
    """F_0: zero for the empty prefix, infeasible otherwise."""
    return jnp.full(m + 1, jnp.inf, dtype).at[0].set(0.0)


@functools.partial(jax.jit, static_argnames="max_steps")
def grid_frontier(grid: CutGrid, max_steps: int) -> jnp.ndarray:
    """float[max_steps]: the least DP cost of reaching the point n in t = 1..max_steps blocks.

    t above the number of real grid intervals is infeasible (inf); callers handle it.
    """
    m = grid.entropy.shape[0] - 1

    def step(prev, _):
        value, _ = grid_layer(grid, prev)
        return value, value[grid.last]

    _, optimal = jax.lax.scan(step, _initial(m, grid.entropy.dtype), None, length=max_steps)
    return optimal


def solve_on_grid(grid: CutGrid, steps, padded_steps: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """The optimal `steps`-block schedule on one grid (pure; vmap it over a batch).

    Args:
        grid: one `CutGrid`; steps must not exceed its number of real intervals.
        steps: the budget T (may be traced), 1 <= T <= padded_steps.
        padded_steps: P, the number of DP layers run (static).

    Returns:
        (the least DP cost, float; cut positions int32[P - 1]: the first T - 1 are the
        schedule's interior cuts, the rest are n).
    """
    m = grid.entropy.shape[0] - 1

    def step(prev, _):
        value, argmin = grid_layer(grid, prev)
        return value, (value[grid.last], argmin)

    _, (values, argmins) = jax.lax.scan(
        step, _initial(m, grid.entropy.dtype), None, length=padded_steps
    )

    def back(index, t):
        # Layer t holds F_{t+1}; its argmin at the end of block t + 1 is the end of block t.
        index = jnp.where(t < steps, argmins[t, index], index)
        return index, index

    _, ends = jax.lax.scan(back, grid.last, jnp.arange(padded_steps), reverse=True)
    cuts = grid.position[ends[1:]].astype(jnp.int32)
    return values[steps - 1], cuts


@functools.partial(jax.jit, static_argnames="padded_steps")
def _solve_on_grid(grid: CutGrid, steps, padded_steps: int):
    return solve_on_grid(grid, steps, padded_steps)


def spread_cuts(cuts: np.ndarray, n: int, steps: int) -> np.ndarray:
    """int64[T]: tokens per step after adding cuts to `cuts` (sorted interior cuts) until
    there are T steps.

    Splitting a block never raises the KL (g is non-increasing), so a schedule that is optimal
    with fewer steps stays optimal; the new cuts are spread evenly over the free positions.
    """
    cuts = np.unique(np.asarray(cuts, np.int64))
    cuts = cuts[(cuts > 0) & (cuts < n)]
    missing = steps - 1 - cuts.size
    if missing > 0:
        free = np.setdiff1d(np.arange(1, n), cuts)
        extra = free[np.linspace(0, free.size - 1, missing).round().astype(np.int64)]
        cuts = np.sort(np.concatenate([cuts, extra]))
    return np.diff(np.concatenate([[0], cuts, [n]]))


def frontier(profile: EntropyProfile, max_steps: int) -> np.ndarray:
    """The optimal expected KL for every step budget T = 1..max_steps, in one DP pass.

    Args:
        profile: the entropy profile (n tokens).
        max_steps: the largest budget, 1 <= max_steps <= n.

    Returns:
        float64[max_steps]: entry T - 1 is the least expected KL (nats) of any T-step schedule.
        Non-increasing in T; zero from the number of runs of g on (T = n at the latest).
        Computed by the layered hull DP of `schedopt.solve` on the grid of run starts
        (O(max_steps r), r the number of runs of g).
    """
    max_steps = check_steps(max_steps, profile.n, name="max_steps")
    entropy = np.asarray(profile.entropy, np.float64)
    starts = run_starts(entropy)
    runs = starts.size - 1
    out = np.zeros(max_steps)
    depth = min(max_steps, runs)
    if depth:
        out[:depth] = lagrangian.layered_frontier(*_grid_arrays(entropy, starts), depth)
    # Differences of H can leave -1e-15 where the optimum is 0; the KL is never negative.
    return np.maximum(out, 0.0)


def optimal_schedule(profile: EntropyProfile, steps: int) -> Schedule:
    """The exact optimal T-step schedule (the certificate for `optimize`).

    Runs on the grid of run starts of g; memory is O(T r) for the argmin table, r the number
    of runs (r = n on a strictly decreasing curve).

    Args:
        profile: the entropy profile (n tokens).
        steps: the budget T, 1 <= T <= n.

    Returns:
        A `Schedule` with method "exact", certified, its expected_kl re-evaluated by
        `expected_kl` and lower_bound the DP's optimum.
    """
    steps = check_steps(steps, profile.n)
    value, tokens = optimal_tokens(profile.entropy, steps)
    return Schedule.from_tokens(
        profile, tokens, "exact", certified=True, lower_bound=max(float(value), 0.0)
    )


@float64
def optimal_tokens(entropy: np.ndarray, steps: int) -> tuple[float, np.ndarray]:
    """(the dual lower bound on the least KL, int64[T] tokens per step of the exact optimum).

    For H float[n + 1]. On the grid of run starts (r the number of runs of g): for T at most
    `LAYERED_MAX_STEPS` the layered DP of `_lagrangian.layered_path`, O(T r), whose
    optimum is the bound; above it the Lagrangian search, O(r log(1/eps)) for any T, whose
    bound is P(lam) - lam T for the final multiplier (docs/theory.md §4.4). The schedule's KL
    meets the bound up to rounding.
    """
    entropy = np.asarray(entropy, np.float64)
    n = entropy.shape[0] - 1
    starts = run_starts(entropy)
    runs = starts.size - 1
    if steps >= runs:  # a cut at every run start: every block is flat, KL 0
        return 0.0, spread_cuts(starts[1:-1], n, steps)
    x, h, g = _grid_arrays(entropy, starts)
    if steps <= LAYERED_MAX_STEPS:
        bound, path = lagrangian.layered_path(x, h, g, steps)
    else:
        _, bound, _, path = lagrangian.solve(x, h, g, steps, float(flat_tolerance(entropy)))
    return float(bound), spread_cuts(starts[path[1:-1]], n, steps)


def fewest_optimal_steps(entropy: np.ndarray, threshold: float) -> int:
    """The least T whose optimal KL is at most `threshold` (nats, >= 0), for H float[n + 1].

    The multiplier search of `_lagrangian.fewest_steps` on the grid of run starts:
    O(r) per multiplier (r the number of runs of g), however large T is.
    """
    entropy = np.asarray(entropy, np.float64)
    starts = run_starts(entropy)
    if starts.size - 1 <= 1:  # one run: every schedule has KL 0
        return 1
    x, h, g = _grid_arrays(entropy, starts)
    return lagrangian.fewest_steps(x, h, g, float(threshold), float(flat_tolerance(entropy)))


def _grid_arrays(entropy: np.ndarray, starts: np.ndarray):
    """(x, H, g) float64 on the unpadded grid of `starts` (the numba solvers' input)."""
    g = np.diff(entropy)
    if starts.size == entropy.size:  # every position starts a run: no gathers to make
        return starts.astype(np.float64), entropy, g
    return starts.astype(np.float64), entropy[starts], g[starts[:-1]]


def full_grid(entropy: jnp.ndarray) -> CutGrid:
    """The grid of every integer position 0..n, without compression (traceable)."""
    n = entropy.shape[-1] - 1
    return CutGrid(
        position=jnp.arange(n + 1, dtype=entropy.dtype), entropy=entropy,
        slope=jnp.diff(entropy), last=jnp.int32(n),
    )


def full_grid_layer(entropy: jnp.ndarray, prev: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """`grid_layer` on every integer position 0..n (traceable): the envelope's fallback."""
    return grid_layer(full_grid(entropy), prev)


@float64
def fast_frontier(profile: EntropyProfile, max_steps: int) -> np.ndarray:
    """The same values as `frontier`, by certified lower envelopes (about O(n) per budget).

    Each DP layer is a lower envelope of lines with sorted slopes; a guess from the previous
    layer is improved by local moves and certified in O(n), and a layer that cannot be
    certified is solved by the divide-and-conquer DP instead, so the result is always exact.
    See `schedopt.solve`. On a sticky Markov chain with n = 131072 and every T <= 4096 it
    took 12 s where the full-grid DP needs about 130 s (scripts/bench_batch.py).

    Args:
        profile: the entropy profile (n tokens).
        max_steps: the largest budget, 1 <= max_steps <= n.

    Returns:
        float64[max_steps]: entry T - 1 is the least expected KL (nats) of any T-step schedule.
    """
    max_steps = check_steps(max_steps, profile.n, name="max_steps")
    entropy = jnp.asarray(profile.entropy, jnp.float64)
    values = envelope_frontier(entropy, max_steps, full_grid_layer)
    return np.maximum(np.asarray(values), 0.0)
