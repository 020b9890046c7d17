"""The exact frontier by certified lower envelopes: about O(n) work per step budget.

docs/theory.md §4's DP, F_t(b) = min_{a < b} F_{t-1}(a) + C(a, b), written with
C(a, b) = (b - a) g_a - (H_b - H_a) becomes

    F_t(b) + H_b = min_a L_a(b),   L_a(x) = c_a + x g_a,   c_a = F_{t-1}(a) + H_a - a g_a,

a lower envelope of lines whose slopes g_a are sorted. Two facts make one layer cheap:

1. The constraint a < b can be dropped for every feasible row b >= t: a line a >= b gives
   L_a(b) >= F_{t-1}(a) + H_b (H is concave) >= F_t(b) + H_b (cutting a (t-1)-step schedule of
   the first a tokens down to b tokens and splitting one block never increases the KL). So a
   layer is the envelope of all n lines, evaluated at the integers.
2. A guessed argmin m(b) for every row can be certified in O(n): if m is non-decreasing, each
   row's line is at least as good there as its neighbours' lines, and every line a is no better
   than the envelope at the two rows between which m passes a, then the guessed values are the
   envelope. (Write E(b) = L_{m(b)}(b); L_a(b) - E(b) is then convex in b on the integers with
   its minimum at those two rows.)

Each layer starts from a guess extrapolated from the previous layer's argmins (and, for the
first layers, from the continuum rule that cuts are equally spaced in the integral of
sqrt(-g')), improves it by local moves, and certifies it; a layer whose guess cannot be
certified falls back to the divide-and-conquer layer of `schedopt.solve`, so the result is
always exact (up to float64 rounding of the same intercept form the DP uses).

Lines with equal slopes (flat stretches of g, as regularised estimates have) are merged first:
within a run of equal g only the first feasible line can be lowest, since F_{t-1} is
non-decreasing and H_a - a g is constant along the run.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Local moves per layer before a guess is given up (the fast path, then the general repair).
_FAST_ROUNDS = 16
_REPAIR_ROUNDS = 24
# The fast path moves each row's line by up to _JUMP lines and certifies only envelopes whose
# argmin advances by at most _JUMP lines per row; others take the general certificate.
_JUMP = 2
# Layers below this use the continuum rule as a second guess (early layers move a lot).
_CONTINUUM_LAYERS = 128
# Relative slack for float64 rounding in the comparisons (ties between lines).
_RTOL = 1e-13


def _runs(g: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """Runs of equal slope. Returns (run int32[n]: a -> its run u, start int32[n]: u -> its first
    a (n - 1 past the last run), count: the number of runs)."""
    n = g.shape[0]
    new = jnp.concatenate([jnp.ones(1, bool), g[1:] != g[:-1]])
    run = jnp.cumsum(new.astype(jnp.int32)) - 1
    start = jnp.full(n, n - 1, jnp.int32).at[jnp.where(new, run, n)].set(
        jnp.arange(n, dtype=jnp.int32), mode="drop"
    )
    return run, start, run[-1] + 1


def _continuum_inverse(g: jnp.ndarray, size: int) -> tuple[jnp.ndarray, jnp.ndarray]:
    """rho(x) = the integral of sqrt(-g') (floored), and its inverse tabulated on `size` + 1
    equal steps of rho: optimal cuts are about equally spaced in rho."""
    n = g.shape[0]
    drop = jnp.sqrt(jnp.maximum(g[:-1] - g[1:], 0.0))
    density = jnp.concatenate([drop, drop[-1:]]) if n > 1 else jnp.ones(1, g.dtype)
    density = density + 1e-3 * jnp.mean(density) + 1e-300
    rho = jnp.concatenate([jnp.zeros(1, g.dtype), jnp.cumsum(density)])
    grid = jnp.linspace(0.0, rho[-1], size + 1)
    return rho, jnp.interp(grid, rho, jnp.arange(n + 1, dtype=rho.dtype))


def _layer_envelope(entropy, prev, guess, t, runs, fallback):
    """One layer by a certified envelope. Returns (F_t float[n + 1], argmin runs int32[n + 1]).

    Args:
        entropy: float64[n + 1] H.
        prev: float64[n + 1] F_{t-1} (inf where infeasible).
        guess: int32[n + 1] guessed argmin run of each row.
        t: the layer (steps), traced.
        runs: `_runs(g)`.
        fallback: the exact divide-and-conquer layer, (entropy, prev) -> (F_t, argmin[n + 2]).
    """
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    run, start, count = runs
    b = jnp.arange(n + 1, dtype=jnp.int32)
    rows = b >= t  # feasible rows
    u_lo, u_hi = run[t - 1], count - 1  # runs whose lines can be finite
    slope = g[start]
    intercept = jnp.where(
        jnp.arange(n, dtype=jnp.int32) < count,
        prev[start] + entropy[start] - start.astype(slope.dtype) * slope,
        jnp.inf,
    )
    # The run holding t - 1 starts with infeasible lines; its first feasible line is t - 1.
    last = (t - 1).astype(slope.dtype)
    intercept = intercept.at[u_lo].set(prev[t - 1] + entropy[t - 1] - last * slope[u_lo])

    def line(u, x):
        return intercept[u] + jnp.asarray(x, slope.dtype) * slope[u]

    def clip(u):
        return jnp.clip(u, u_lo, u_hi).astype(jnp.int32)

    def improve(m, candidates):
        """Each row takes the best of its line and `candidates(m)` (strictly better only)."""
        value = line(m, b)
        slack = _RTOL * jnp.abs(value)
        best, best_value = m, value
        for cand in candidates(m):
            v = line(cand, b)
            better = v < best_value - slack
            best, best_value = jnp.where(better, cand, best), jnp.where(better, v, best_value)
        return best, best_value, slack

    def local(m):
        return [clip(m + d) for j in range(1, _JUMP + 1) for d in (-j, j)]

    def search(m, step, rounds):
        def body(carry):
            m, _, r = carry
            new = step(m)
            return new, jnp.any((new != m) & rows), r + 1

        m, moving, _ = jax.lax.while_loop(
            lambda c: c[1] & (c[2] < rounds), body, (m, jnp.asarray(True), 0)
        )
        return m, ~moving

    # Fast path: moves of up to _JUMP lines. At its fixed point the candidates include every
    # neighbour's line and every skipped line when rows advance by <= _JUMP lines, so only the
    # first and last rows need checking against all lines.
    m, settled = search(clip(guess), lambda m: improve(m, local)[0], _FAST_ROUNDS)
    value = line(m, b)
    advance = m[1:] - m[:-1]
    small_steps = jnp.all(jnp.where(rows[:-1], (advance >= 0) & (advance <= _JUMP), True))
    finite = jnp.all(jnp.where(rows, jnp.isfinite(value), True))
    fast_ok = settled & small_steps & finite & _below_all(line, value, t, n)

    def tangent_rows(m):
        """For each line, the rows b - 1, b where m first reaches it (clipped to the rows)."""
        counts = jnp.zeros(n + 1, jnp.int32).at[jnp.where(rows, m, n)].add(1)
        below = jnp.concatenate([jnp.zeros(1, jnp.int32), _cumsum(counts)[: n - 1]])
        return jnp.clip(t + below - 1, t, n), jnp.clip(t + below, t, n)

    def certified(m):
        value = line(m, b)
        slack = _RTOL * jnp.abs(value)
        pair = rows[:-1]
        neighbours = (line(m[1:], b[:-1]) >= value[:-1] - slack[:-1]) & (
            line(m[:-1], b[1:]) >= value[1:] - slack[1:]
        )
        lines = jnp.arange(n)
        b1, b2 = tangent_rows(m)
        tangents = (line(lines, b1) >= value[b1] - slack[b1]) & (
            line(lines, b2) >= value[b2] - slack[b2]
        )
        return (
            jnp.all(jnp.where(pair, (m[1:] >= m[:-1]) & neighbours, True))
            & jnp.all(tangents)
            & jnp.all(jnp.where(rows, jnp.isfinite(value), True))
        )

    def general(m):
        """Moves to neighbours' lines, +-1, and each line to its tangent rows, then certify."""
        lines = jnp.arange(n, dtype=jnp.int32)

        def step(m):
            shift = [jnp.concatenate([m[:1], m[:-1]]), jnp.concatenate([m[1:], m[-1:]])]
            best, best_value, slack = improve(m, lambda m: shift + [clip(m - 1), clip(m + 1)])
            b1, b2 = tangent_rows(best)
            at, by = jnp.concatenate([b1, b2]), jnp.concatenate([lines, lines])
            v = line(by, at)
            v = jnp.where(v < best_value[at] - slack[at], v, jnp.inf)
            low = jnp.full(n + 1, jnp.inf, v.dtype).at[at].min(v)
            winner = jnp.full(n + 1, n, jnp.int32).at[at].min(jnp.where(v <= low[at], by, n))
            return jnp.where(low < best_value, winner, best).astype(jnp.int32)

        m, settled = search(m, step, _REPAIR_ROUNDS)
        return m, settled & certified(m)

    m, ok = jax.lax.cond(fast_ok, lambda m: (m, jnp.asarray(True)), general, m)

    def accept(_):
        return jnp.where(rows, line(m, b) - entropy, jnp.inf), m

    def divide_and_conquer(_):
        value, argmin = fallback(entropy, prev)
        return value, run[jnp.clip(argmin[: n + 1], 0, n - 1)]

    return jax.lax.cond(ok, accept, divide_and_conquer, None)


def _below_all(line, value, t, n) -> jnp.ndarray:
    """Every line lies on or above the envelope at the first and the last row."""
    lines = jnp.arange(n)

    def at(x):
        return jnp.all(line(lines, x) >= value[x] - _RTOL * jnp.abs(value[x]))

    return at(t) & at(n)


def _cumsum(x: jnp.ndarray) -> jnp.ndarray:
    # XLA's CPU cumsum (a reduce-window) is several times slower than an associative scan.
    return jax.lax.associative_scan(jnp.add, x)


@functools.partial(jax.jit, static_argnames=("max_steps", "fallback"))
def envelope_frontier(entropy: jnp.ndarray, max_steps: int, fallback) -> jnp.ndarray:
    """float64[max_steps] optimal expected KL for T = 1..max_steps (see the module docstring).

    Args:
        entropy: float64[n + 1] H.
        max_steps: the largest budget (static).
        fallback: the exact layer used when a guess cannot be certified (static; a function
            (entropy, prev) -> (F_t float[n + 1], argmin int[n + 2])).
    """
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    runs = _runs(g)
    run, start, _ = runs
    b = jnp.arange(n + 1, dtype=jnp.int32)
    rho, inverse = _continuum_inverse(g, 4 * n)
    to_table = 4 * n / rho[-1]

    def first_feasible(a, t):
        return jnp.maximum(start[run[jnp.clip(a, 0, n - 1)]], t - 1)

    def guess_from(prev, m_prev, t):
        # The last block of a t-step schedule is about (t - 1) / t of the (t - 1)-step one's.
        a_prev = jnp.maximum(start[m_prev], t - 2)
        x, x_prev, steps = (v.astype(entropy.dtype) for v in (b, a_prev, t))  # exact: < 2^53
        guess = jnp.where(t == 1, 0, jnp.round(x - (x - x_prev) * (steps - 1) / steps))
        guess = guess.astype(jnp.int32)

        def continuum(guess):
            y = rho * ((steps - 1) / steps) * to_table
            i = jnp.clip(jnp.floor(y).astype(jnp.int32), 0, 4 * n - 1)
            other = jnp.round(inverse[i] + (y - i.astype(y.dtype)) * (inverse[i + 1] - inverse[i]))
            other = other.astype(jnp.int32)

            def cost(a):  # F_{t-1}(a) + C(a, b) + H_b
                a = first_feasible(a, t)
                return prev[a] + entropy[a] + (b - a).astype(g.dtype) * g[a]

            return jnp.where(cost(other) < cost(guess), other, guess)

        guess = jax.lax.cond(t < _CONTINUUM_LAYERS, continuum, lambda x: x, guess)
        return run[jnp.clip(guess, 0, n - 1)]

    def step(carry, t):
        prev, m_prev = carry
        value, m = _layer_envelope(entropy, prev, guess_from(prev, m_prev, t), t, runs, fallback)
        return (value, m), value[n]

    prev = jnp.full(n + 1, jnp.inf, entropy.dtype).at[0].set(0.0)
    init = (prev, jnp.zeros(n + 1, jnp.int32))
    _, optimal = jax.lax.scan(step, init, jnp.arange(1, max_steps + 1, dtype=jnp.int32))
    return optimal
