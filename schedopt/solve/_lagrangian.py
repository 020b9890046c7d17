"""The exact solver in O(n log(1/eps)) for any T: a Lagrangian search on the number of steps.

docs/theory.md §4.4. With a multiplier lam >= 0 per step, the penalised problem

    P(lam) = min over schedules S of  KL(S) + lam * |S|

is a one-dimensional DP, F(b) = min_{a < b} F(a) + lam + (x_b - x_a) g_a - (H_b - H_a), whose
candidates are lines of slope g_a (non-increasing in a) queried at increasing x_b: a monotone
lower envelope (convex hull trick) solves it in O(m) on a grid of m + 1 points. The optimal KL
f(T) is convex in T for this Monge cost, so every T is reached by some lam, and for any lam

    f(T) >= P(lam) - lam * T                                   (weak duality)

is a lower bound: the certificate. `solve` walks the multiplier by chords of f (each chord's
slope is a candidate breakpoint) until two penalised optima p (k_p <= T steps) and q (k_q >= T)
lie on one supporting line, then splices them into a schedule with exactly T steps (Monge
exchange, docs/theory.md §4.4), whose KL meets the lower bound up to rounding.

`layered_frontier` is the plain O(T m) convex-hull-trick DP over layers: f(t) for every t <= K;
`layered_path` the same DP for one small T with its schedule.
The loops are compiled with numba (the CPU path; see docs/benchmarks.md for the measurement).
"""

from __future__ import annotations

import numba
import numpy as np

# Chords tried before the search falls back to halving the multiplier interval.
_MAX_CHORDS = 200


def _compiled(function=None, **options):
    """`numba.njit(**options)` with its on-disk cache where numba can write one (beside this
    file or in the user's cache folder), and without it elsewhere: numba refuses `cache=True`
    at import when no cache folder is writable (a read-only install under a read-only home).
    Use as `@_compiled` or `@_compiled(inline="always")`."""
    if function is None:
        return lambda f: _compiled(f, **options)
    try:
        return numba.njit(cache=True, **options)(function)
    except RuntimeError:  # "cannot cache function ...: no locator available"
        return numba.njit(**options)(function)


@_compiled
def _better(c1, s1, c2, s2, c3, s3):
    """True when line 2 is nowhere strictly below lines 1 and 3 (s1 > s2 > s3)."""
    return (c3 - c1) * (s1 - s2) <= (c2 - c1) * (s1 - s3)


@_compiled
def penalised(x, h, g, lam):
    """The penalised optimum on a grid: (P(lam), steps, parent int64[m + 1]).

    Args:
        x: float64[m + 1] grid positions, 0 first, n last, strictly increasing.
        h: float64[m + 1] H at each position.
        g: float64[m] g at each position (non-increasing).
        lam: the multiplier (nats per step).

    parent[j] is the previous cut of the best path to point j; follow it from m to 0.
    """
    m = x.shape[0] - 1
    value = np.empty(m + 1)
    count = np.zeros(m + 1, np.int64)
    parent = np.zeros(m + 1, np.int64)
    hull = np.empty(m, np.int64)
    inter = np.empty(m)
    value[0] = 0.0
    size = 0
    ptr = 0
    for j in range(1, m + 1):
        i = j - 1
        c = value[i] + lam + h[i] - x[i] * g[i]
        s = g[i]
        add = True
        if size > 0 and g[hull[size - 1]] == s:
            if inter[size - 1] <= c:
                add = False
            else:
                size -= 1
        if add:
            while size >= 2 and _better(inter[size - 2], g[hull[size - 2]],
                                        inter[size - 1], g[hull[size - 1]], c, s):
                size -= 1
            hull[size] = i
            inter[size] = c
            size += 1
            if ptr >= size:
                ptr = size - 1
        q = x[j]
        while (ptr + 1 < size
               and inter[ptr + 1] + g[hull[ptr + 1]] * q <= inter[ptr] + g[hull[ptr]] * q):
            ptr += 1
        a = hull[ptr]
        value[j] = inter[ptr] + g[a] * q - h[j]
        parent[j] = a
        count[j] = count[a] + 1
    return value[m], count[m], parent


@_compiled
def _path(parent):
    """int64[k + 1] grid indices of the cuts, 0 first and m last."""
    m = parent.shape[0] - 1
    k = 0
    j = m
    while j > 0:
        j = parent[j]
        k += 1
    out = np.empty(k + 1, np.int64)
    j = m
    for t in range(k, -1, -1):
        out[t] = j
        j = parent[j]
    return out


@_compiled
def path_cost(x, h, g, path):
    """The KL of the blocks between consecutive grid indices of `path` (first form, §3)."""
    total = 0.0
    for t in range(path.shape[0] - 1):
        a = path[t]
        b = path[t + 1]
        total += (x[b] - x[a]) * g[a] - (h[b] - h[a])
    return total


@_compiled
def splice(p, q, steps):
    """A path with exactly `steps` blocks from paths p (k_p <= T) and q (k_q >= T blocks).

    Finds i with p_i <= q_j < q_{j+1} <= p_{i+1}, j = i + k_q - T (one always exists), and
    returns p_0..p_i followed by q_{j+1}..q_{k_q}. Block [q_j, q_{j+1}) nests in [p_i, p_{i+1}),
    so by the Monge inequality the spliced pair costs no more than (p, q); when both are
    optimal for one multiplier, so are the splices.
    """
    kp = p.shape[0] - 1
    kq = q.shape[0] - 1
    e = kq - steps
    for i in range(kp):
        j = i + e
        if p[i] <= q[j] and q[j + 1] <= p[i + 1]:
            out = np.empty(steps + 1, np.int64)
            out[: i + 1] = p[: i + 1]
            out[i + 1:] = q[j + 1:]
            return out
    return p  # unreachable for valid inputs (see docs/theory.md §4.4)


def solve(x, h, g, steps: int, tol: float):
    """The exact `steps`-block optimum on a grid with more than `steps` intervals.

    Args:
        x, h, g: the grid (see `penalised`), float64.
        steps: T, 1 <= T < m.
        tol: the rounding tolerance on a KL (nats) used to recognise a supporting line.

    Returns:
        (KL of the returned path, the dual lower bound P(lam) - lam T, lam, path int64[T + 1]).
    """
    m = x.shape[0] - 1
    # lam above f(1) makes one block optimal; lam = 0 gives a path with KL 0 (at least T
    # blocks, since T < m and a zero-KL path needs a cut at every run start).
    one = np.array([0, m], np.int64)
    kl_one = float(path_cost(x, h, g, one))
    lo_lam, hi_lam = 0.0, kl_one + 1.0
    p, kl_p = one, kl_one
    _, _, parent = penalised(x, h, g, 0.0)
    q = _path(parent)
    kl_q = float(path_cost(x, h, g, q))
    best_lb, best_lam = -np.inf, 0.0
    for it in range(_MAX_CHORDS + 64):
        kp, kq = p.shape[0] - 1, q.shape[0] - 1
        if kp == steps or kq == steps:
            path = p if kp == steps else q
            kl = kl_p if kp == steps else kl_q
            return kl, max(best_lb, kl - tol), best_lam, path
        if it < _MAX_CHORDS:
            lam = (kl_p - kl_q) / (kq - kp)
        else:  # safeguard: bisect the multiplier
            lam = 0.5 * (lo_lam + hi_lam)
        value, count, parent = penalised(x, h, g, lam)
        if value - lam * steps > best_lb:
            best_lb, best_lam = value - lam * steps, lam
        on_line = value >= kl_p + lam * kp - tol and value >= kl_q + lam * kq - tol
        if on_line and it < _MAX_CHORDS:
            path = splice(p, q, steps)
            kl = float(path_cost(x, h, g, path))
            return kl, best_lb, best_lam, path
        r = _path(parent)
        kl_r = float(path_cost(x, h, g, r))
        kr = r.shape[0] - 1
        if kr <= steps:
            p, kl_p, hi_lam = r, kl_r, lam
        else:
            q, kl_q, lo_lam = r, kl_r, lam
        if kr > steps and kr >= kq or kr < steps and kr <= kp:
            # no progress from rounding: the chord is a supporting line up to rounding
            path = splice(p, q, steps)
            return float(path_cost(x, h, g, path)), best_lb, best_lam, path
    path = splice(p, q, steps)
    return float(path_cost(x, h, g, path)), best_lb, best_lam, path


@_compiled(inline="always")
def _hull_layer(x, h, g, base, prev, cur, parent, lo, hi, line, slope, inter):
    """One layer of the layered hull DP: cur[j] = min_i prev[i] + cost(i, j) for lo <= j <= hi.

    Line i (slope g_i, intercept prev[i] + base[i]) is added in order of i, skipped where
    prev[i] is infinite, and queried at increasing x_j (a monotone lower envelope); parent[j]
    gets the argmin i unless parent is empty (`layered_frontier` keeps no schedule). line,
    slope, inter: scratch of m entries. Inlined, and with the argmin stores skipped when
    unused: otherwise `layered_frontier` measured 10 to 20% slower than its own loop.
    The envelope update repeats the one in `penalised` on purpose: both written through
    shared inlined helpers returning (size, pointer) measured 2.2 to 4.3 times slower
    (2026-12-08, n = 131072).
    """
    keep = parent.shape[0] > 0
    size = 0
    ptr = 0
    for j in range(lo, hi + 1):
        i = j - 1
        c = prev[i] + base[i]
        s = g[i]
        if size > 0 and slope[size - 1] == s:
            if inter[size - 1] > c:
                size -= 1
            else:
                c = np.inf
        if c < np.inf:
            while size >= 2 and _better(inter[size - 2], slope[size - 2],
                                        inter[size - 1], slope[size - 1], c, s):
                size -= 1
            if keep:
                line[size] = i
            slope[size] = s
            inter[size] = c
            size += 1
            if ptr >= size:
                ptr = size - 1
        q = x[j]
        best = inter[ptr] + slope[ptr] * q
        while ptr + 1 < size:
            nxt = inter[ptr + 1] + slope[ptr + 1] * q
            if nxt > best:
                break
            best = nxt
            ptr += 1
        cur[j] = best - h[j]
        if keep:
            parent[j] = line[ptr]


@_compiled
def layered_frontier(x, h, g, depth):
    """float64[depth]: f(t) for t = 1..depth by the layered O(depth m) hull DP on a grid.

    Layer t holds F_t(j), the least KL of the first x_j positions in t blocks (finite for
    j >= t). Each layer is one monotone hull pass (`_hull_layer`).
    """
    m = x.shape[0] - 1
    prev = np.full(m + 1, np.inf)
    prev[0] = 0.0
    cur = np.full(m + 1, np.inf)
    out = np.empty(depth)
    base = h[:-1] - x[:-1] * g  # H_i - x_i g_i, the layer-independent intercept part
    parent = np.empty(0, np.int32)  # none: the frontier keeps no schedule
    line = np.empty(m, np.int32)
    slope = np.empty(m)
    inter = np.empty(m)
    for t in range(1, depth + 1):
        cur[t - 1] = np.inf
        _hull_layer(x, h, g, base, prev, cur, parent, t, m, line, slope, inter)
        out[t - 1] = cur[m]
        prev, cur = cur, prev
    return out


@_compiled
def layered_path(x, h, g, steps):
    """(the least KL with exactly `steps` blocks, its path int64[steps + 1]) on a grid.

    The layered hull DP of `layered_frontier` with its argmin table, O(steps m) time and
    memory: for small T it beats `solve`, whose penalised sweeps are one serial chain (each
    point's line needs the previous point's value) and measure about two layers each.
    Layer 1 is closed-form and layer T one query at x_m, so only T - 2 hull sweeps run, and
    layer t covers only the points that leave room for the T - t blocks after it.
    """
    m = x.shape[0] - 1
    if steps == 1:
        return x[m] * g[0] - (h[m] - h[0]), np.array([0, m], np.int64)
    base = h[:-1] - x[:-1] * g  # H_i - x_i g_i: the intercept of line i without F
    prev = np.empty(m + 1)
    for j in range(1, m + 1):  # F_1(j) = x_j g_0 - (H_j - H_0)
        prev[j] = x[j] * g[0] - (h[j] - h[0])
    cur = np.empty(m + 1)
    parent = np.empty((steps, m + 1), np.int32)  # int32: half the stores of the largest table
    line = np.empty(m, np.int32)
    slope = np.empty(m)
    inter = np.empty(m)
    for t in range(2, steps):
        _hull_layer(x, h, g, base, prev, cur, parent[t], t, m - (steps - t), line, slope,
                    inter)
        prev, cur = cur, prev
    best = np.inf
    last = steps - 1
    for i in range(steps - 1, m):  # layer T: the one query at x_m
        value = prev[i] + base[i] + g[i] * x[m] - h[m]
        if value < best:
            best = value
            last = i
    path = np.empty(steps + 1, np.int64)
    path[0] = 0
    path[steps] = m
    path[steps - 1] = last
    for t in range(steps - 1, 1, -1):
        path[t - 1] = parent[t, path[t]]
    return best, path


def fewest_steps(x, h, g, threshold: float, tol: float) -> int:
    """The least number of blocks T whose optimum on the grid is at most `threshold` (nats).

    The optimum f(T) is convex and non-increasing in T (docs/theory.md §4.4), so the search
    walks the multiplier by chords as `solve` does, keeping a hull vertex p above the
    threshold and one q at or below it. When no penalised optimum lies below the chord, f is
    linear from k_p to k_q and the answer is read off the line, then confirmed by `solve` at
    that T and the one before (rounding can move a threshold that sits on the line by one).

    Args:
        x, h, g: the grid (see `penalised`), float64, m intervals.
        threshold: the KL to reach, >= 0 (f(m) = 0 on the grid of run starts).
        tol: the rounding tolerance on a KL (nats), as for `solve`.
    """
    m = x.shape[0] - 1
    p = np.array([0, m], np.int64)
    kl_p = float(path_cost(x, h, g, p))
    if kl_p <= threshold:
        return 1
    _, _, parent = penalised(x, h, g, 0.0)
    q = _path(parent)
    kl_q = float(path_cost(x, h, g, q))
    for _ in range(_MAX_CHORDS):
        kp, kq = p.shape[0] - 1, q.shape[0] - 1
        if kq - kp <= 1:
            return kq
        lam = (kl_p - kl_q) / (kq - kp)
        value, _, parent = penalised(x, h, g, lam)
        r = _path(parent)
        kr = r.shape[0] - 1
        if value >= kl_p + lam * kp - tol or kr <= kp or kr >= kq:
            break  # f is linear on [k_p, k_q]
        kl_r = float(path_cost(x, h, g, r))
        if kl_r <= threshold:
            q, kl_q = r, kl_r
        else:
            p, kl_p = r, kl_r
    kp, kq = p.shape[0] - 1, q.shape[0] - 1
    lam = (kl_p - kl_q) / (kq - kp)
    steps = min(max(kp + int(np.ceil((kl_p - threshold) / lam)), kp + 1), kq)
    while steps < kq and solve(x, h, g, steps, tol)[0] > threshold:
        steps += 1
    while steps - 1 > kp and solve(x, h, g, steps - 1, tol)[0] <= threshold:
        steps -= 1
    return steps
