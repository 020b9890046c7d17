"""A profile within a budget of forward passes: a coarse curve first, then the schedule's cuts.

theory §3 and 11. The expected KL of a schedule is sum_k s_k c_{N_{k-1}} - sum_j c_j, and the
second sum is the same for every schedule: which schedule is best depends on the curve only
through its values at the steps' left endpoints N_{k-1} (weighted by the step size s_k) and
on how fast it falls there. So after a coarse pass over the whole curve has located the
optimal schedules, the remaining passes go where they decide something:

1. Coarse: a share of the budget (`coarse_fraction`) on about sqrt(B/2) revealed counts from
   `schedopt.estimate.revealed_grid` (denser at both ends), each held-out sequence evaluated
   at every count with one random order (common random numbers: differences of the curve,
   which decide the schedule, are far more precise than its values).
2. Optimize: the coarse profile's exact optimal schedule for each target budget T in `steps`.
3. Refine: the left endpoints N_{k-1} of those schedules (N_0 = 0 is the steep start) and a
   point on either side (the local slope decides whether a cut moves) join the grid, the
   heaviest first (step size s_k times the curve's spread there); the coarse sequences are
   evaluated at them and the rest of the budget goes to fresh sequences on the whole grid.
4. Fit: by default a smooth curve, a non-negative mixture of decaying exponentials fitted
   to the differences within each sequence (`smooth_decreasing_fit`, theory §8: a KL does
   not depend on the curve's level, and one sequence's rows share their level). A piecewise
   fit (`shape="convex"` or `"monotone"`) is averaged over bootstrap refits (bagging): one
   such fit has flat stretches where the optimizer places long steps it wrongly predicts
   to be free.
5. Report stability: sequences are resampled; for every T the chosen schedule is compared
   with each replicate's optimum: how often they agree, and the excess KL the replicates
   assign to the chosen one.

Every forward pass is one (sequence, revealed count) row, as in `schedopt.estimate` (the same
kernel, `curve_rows`, for a JAX logits function or a `TokenScorer`, with optional always-visible
prompts): the mean cross-entropy (kind "data") or predictive entropy (kind "model") over the
masked positions of one held-out sequence with a uniformly random revealed set. Both come from
the same pass, which `gap_degree` uses: the data curve as the low-noise model curve plus a
fitted calibration gap.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from .._internal.keys import host_rng
from .._internal.precision import float64
from ..curve import EntropyProfile, isotonic_nonincreasing
from ..objective import expected_kl
from ..solve import optimal_schedule
from ..sources import TokenScorer, check_prompts
from ._monte_carlo import LogitsFn, check_data, check_kind, curve_rows, random_orders, revealed_grid

DEFAULT_STEPS = (4, 8, 16, 32)
# The refinement gives each of its points at least this many sequences.
MIN_SEQUENCES = 4
SHAPES = ("smooth", "convex", "monotone")


@dataclasses.dataclass(frozen=True)
class BudgetEstimate:
    """A profile estimated within a budget of forward passes, and how stable its schedules are.

    Attributes:
        profile: the regularised profile from every pass (stderr per revealed count; meta
            holds the budget, the phases and the stability report).
        schedules: {T: int64[T]} the exact optimal schedule of `profile` for each target T.
        coarse_schedules: {T: int64[T]} the schedules the coarse phase chose.
        stability: {T: dict} per target T: `agreement` (fraction of bootstrap replicates
            whose optimum is the chosen schedule), `excess_median` and `excess_p90` (nats: the
            replicates' expected KL of the chosen schedule minus their own optimum), and
            `relative_p90` (excess_p90 over the median optimum).
        forward_passes: passes spent (at most the budget).
    """

    profile: EntropyProfile
    schedules: dict[int, np.ndarray]
    coarse_schedules: dict[int, np.ndarray]
    stability: dict[int, dict[str, float]]
    forward_passes: int


@float64
def estimate_within_budget(
    logits_fn: LogitsFn | TokenScorer,
    data: Any,
    *,
    key: jax.Array,
    max_forward_passes: int,
    prompts: Any = None,
    steps: Sequence[int] = DEFAULT_STEPS,
    kind: str = "data",
    coarse_fraction: float = 0.5,
    shape: str = "smooth",
    bagging: int | None = None,
    gap_degree: int | None = None,
    bootstrap: int = 200,
    batch_size: int = 128,
    jit: bool = True,
) -> BudgetEstimate:
    """Estimate a profile with at most `max_forward_passes` model calls, aimed at `steps`.

    Args:
        logits_fn: (tokens int32[B, n], revealed bool[B, n]) -> logits float[B, n, V], or a
            `schedopt.sources.TokenScorer` (e.g. `schedopt.sources.HFScorer`), as in
            `schedopt.estimate.estimate_curves` (the rows go through the same kernel,
            `curve_rows`). The same key draws the same sequences and orders for both.
        data: int[M, n] held-out sequences (or samples of a known law); with prompts, the
            answers.
        key: JAX PRNG key (orders, sequence choice, bootstrap).
        max_forward_passes: the budget B; at least 2 rows per coarse grid point are needed,
            so B >= 16.
        prompts: None, or one always-visible prompt per sequence (int[M, P] or M token-id
            lists of any lengths; see `estimate_curves`): never masked or scored, the curve is
            over the n answer positions, averaged over prompts (theory §12).
        steps: the budgets T the schedule is wanted for (those above n are dropped).
        kind: "data" (held-out cross-entropy curve) or "model" (predictive entropy).
        coarse_fraction: share of B spent on the coarse curve, in (0, 1).
        shape: "smooth" (default: a mixture of decaying exponentials fitted to the
            differences within each sequence, `smooth_decreasing_fit`; non-increasing,
            convex and smooth, the right prior for Markov-like and text data), "convex"
            (non-increasing and convex, one free slope per grid interval,
            `convex_decreasing_fit`) or "monotone" (non-increasing only,
            `EntropyProfile.regularize`; for curves with steps, such as codes).
        bagging: the final curve is the mean of this many bootstrap refits (0: one fit;
            None: 64 for "convex" and "monotone", 0 for "smooth", which has no flat
            stretches to smooth). A piecewise fit has flat stretches (and a flat tail) where
            the optimizer places long steps it predicts to be free; bagging smooths them.
        gap_degree: None (the data curve as measured) or a polynomial degree: the data curve
            is then estimated as the model curve (predictive entropy, far less noisy: no
            sampled token) plus a polynomial fit in j of the calibration gap (cross-entropy
            minus entropy, pooled over every row). Exact when the gap is such a polynomial
            (0 for exact conditionals); biased where it is not.
        bootstrap: replicates for the stability report (0 skips it; the gap fit is held
            fixed in the replicates).
        batch_size: rows per forward pass call.
        jit: compile logits_fn with the statistics.

    Returns:
        A `BudgetEstimate`.
    """
    check_kind(kind)
    tokens = check_data(data)
    m, n = tokens.shape
    budget = int(max_forward_passes)
    if isinstance(max_forward_passes, bool) or budget != max_forward_passes or budget < 16:
        raise ValueError(
            f"max_forward_passes must be a whole number >= 16, got {max_forward_passes!r}"
        )
    if shape not in SHAPES:
        raise ValueError(f"shape must be one of {', '.join(SHAPES)}, got {shape!r}")
    if not 0 < coarse_fraction < 1:
        raise ValueError(f"coarse_fraction must lie in (0, 1), got {coarse_fraction!r}")
    targets = sorted({int(t) for t in steps if 1 <= int(t) <= n})
    if not targets:
        raise ValueError(f"steps must hold at least one budget T between 1 and n = {n}")
    if bagging is None:
        bagging = 0 if shape == "smooth" else 64
    k_coarse, k_boot, k_bag = jax.random.split(key, 3)
    if gap_degree is not None and (kind != "data" or not 0 <= int(gap_degree) <= 4):
        raise ValueError(
            f"gap_degree applies to kind 'data' and must be 0..4, got {gap_degree!r}"
        )
    prompt_list = check_prompts(prompts, m)
    rows = _RowSampler(logits_fn, tokens, prompt_list, kind, batch_size, jit, k_coarse, shape,
                       gap_degree)

    # 1. Coarse curve: g1 points ~ sqrt(B1) (within [4, 33]) on B1 / g1 sequences, each
    #    sequence with one random order for all its points (common random numbers).
    coarse_budget = max(8, int(round(budget * coarse_fraction)))
    grid = revealed_grid(n, int(np.clip(round(np.sqrt(coarse_budget)), 4, 33)))
    first = max(2, coarse_budget // grid.size)
    rows.run(np.arange(first), grid)
    coarse = rows.profile(n)
    coarse_schedules = {t: np.asarray(optimal_schedule(coarse, t).tokens_per_step)
                        for t in targets}

    # 2. Refinement: add the left endpoints of the coarse schedules and a point on either
    #    side to the grid, on the coarse sequences and on fresh ones, so that every sequence
    #    has every point (common random numbers keep differences of the curve precise).
    #    Points are added by weight (s_k times the curve's spread), at most as many as the
    #    coarse grid has, while the budget leaves room for half as many fresh sequences as
    #    there are coarse ones (the spread between sequences dominates the error).
    weight = np.zeros(n)
    spread = rows.spread(n)
    for s in coarse_schedules.values():
        share = np.zeros(n)
        starts = np.concatenate([[0], np.cumsum(s)[:-1]])
        for k, (a, size_k) in enumerate(zip(starts, s, strict=True)):
            prev = s[k - 1] if k > 0 else size_k
            delta = max(1, int(round(0.25 * min(prev, size_k))))
            for j, w in ((a, 0.5), (a - delta, 0.25), (a + delta, 0.25)):
                if 0 <= j < n:
                    share[j] += w * size_k * spread[j]
        weight += share / share.sum()  # each target budget gets an equal part
    weight[grid] = 0.0
    ranked = [int(j) for j in np.argsort(-weight, kind="stable") if weight[j] > 0]
    added: list[int] = []
    for j in ranked:
        size = grid.size + len(added) + 1
        fresh = (budget - rows.passes - first * (len(added) + 1)) // size
        if fresh < max(MIN_SEQUENCES, first // 2) or len(added) >= grid.size:
            break
        added.append(j)
    extra = np.asarray(sorted(added), np.int64)
    if extra.size:
        rows.run(np.arange(first), extra)
    union = np.union1d(grid, extra)
    fresh = (budget - rows.passes) // union.size
    if fresh > 0:
        rows.run(np.arange(first, first + fresh), union)
    profile = rows.bagged_profile(n, bagging, k_bag) if bagging else rows.profile(n)
    schedules = {t: np.asarray(optimal_schedule(profile, t).tokens_per_step) for t in targets}
    stability = rows.stability(n, schedules, bootstrap, k_boot) if bootstrap else {}
    meta = {
        **profile.meta,
        "source": "monte carlo within a budget",
        "kind": kind,
        "max_forward_passes": budget,
        "shape": shape,
        "gap_degree": gap_degree,
        "forward_passes": rows.passes,
        "coarse_forward_passes": int(first * grid.size),
        "refined_points": [int(j) for j in extra],
        "coarse_grid": [int(j) for j in grid],
        "target_steps": targets,
        "schedules": {str(t): s.tolist() for t, s in schedules.items()},
        "coarse_schedules": {str(t): s.tolist() for t, s in coarse_schedules.items()},
        "stability": {str(t): v for t, v in stability.items()},
    }
    return BudgetEstimate(
        profile=profile.replace(meta=meta),
        schedules=schedules,
        coarse_schedules=coarse_schedules,
        stability=stability,
        forward_passes=rows.passes,
    )


# --------------------------------------------------------------------------- internals
def convex_decreasing_fit(grid: np.ndarray, table: np.ndarray) -> np.ndarray:
    """A non-increasing, convex curve through per-sequence values on a common grid.

    With common random numbers the differences between neighbouring grid points are far more
    precise than the values, so the slopes are fitted first: weighted isotonic regression
    makes them non-decreasing (convex) and <= 0 (non-increasing), each weighted by the inverse
    variance of its per-sequence difference; the level is then the weighted least-squares fit
    to the means.

    Args:
        grid: int[G] revealed counts, increasing.
        table: float[M, G] per-sequence curve values.

    Returns:
        float64[G] fitted curve values at the grid points.
    """
    m = table.shape[0]
    width = np.diff(grid).astype(np.float64)
    slopes = np.diff(table, axis=1) / width  # [M, G - 1]
    var = np.maximum(slopes.var(axis=0, ddof=1) / m, 1e-18)
    # isotonic_nonincreasing on the reversed slopes = non-decreasing slopes.
    fitted = isotonic_nonincreasing(slopes.mean(axis=0)[::-1], 1.0 / var[::-1])[::-1]
    fitted = np.minimum(fitted, 0.0)
    shape = np.concatenate([[0.0], np.cumsum(fitted * width)])
    mean = table.mean(axis=0)
    w = 1.0 / np.maximum(table.var(axis=0, ddof=1) / m, 1e-18)
    level = float(np.sum(w * (mean - shape)) / w.sum())
    return np.maximum(level + shape, 0.0)


# Decay rates of the smooth fit's exponentials, per unit of revealed fraction j / n: from
# nearly linear (0.25) to a drop over the first 1/256 of the sequence.
DECAY_RATES = np.geomspace(0.25, 256.0, 24)


def smooth_decreasing_fit(
    sequences: np.ndarray, counts: np.ndarray, values: np.ndarray, n: int
) -> np.ndarray:
    """A smooth non-increasing convex curve from per-sequence values at any revealed counts.

    The curve is a non-negative mixture of decaying exponentials exp(-r j / n) (rates
    `DECAY_RATES`) and the line 1 - j / n, plus a level: a completely monotone shape, which
    is non-increasing, convex and smooth, and can still fall steeply over the first tokens.
    Each sequence has its own level (a fixed effect: the rows of one sequence share its
    difficulty), so only differences within a sequence inform the shape, whichever counts
    each sequence was evaluated at; the weights are fitted by non-negative least squares.
    The common level is the mean residual. A schedule's KL does not depend on the level
    (theory §3: a constant added to g cancels), only on the shape.

    Compared with `convex_decreasing_fit` (one free slope per grid interval) this has far
    fewer effective parameters: on the HMM benchmark at B = 512 it cut the median excess KL
    at T = 32 from about 10% to about 1% (scripts/bench_budget.py).

    Args:
        sequences: int[R] which sequence each row comes from (any labels).
        counts: int[R] revealed count of each row, in [0, n).
        values: float[R] the curve's value on that row (nats per token).
        n: sequence length.

    Returns:
        float64[n] the fitted curve at every revealed count 0..n-1.
    """
    from scipy.optimize import nnls

    def basis(j):
        x = np.asarray(j, np.float64)[:, None] / n
        return np.concatenate([np.exp(-DECAY_RATES * x), 1.0 - x], axis=1)

    _, label = np.unique(sequences, return_inverse=True)
    # A row averages n - j masked positions, so its variance falls about as 1 / (n - j):
    # weighted least squares (rows near j = n - 1 would otherwise dominate).
    w = n - np.asarray(counts, np.float64)
    total = np.bincount(label, weights=w)

    def centred(a):  # minus the weighted mean of the row's sequence
        sums = np.zeros((total.size,) + a.shape[1:])
        np.add.at(sums, label, w.reshape((-1,) + (1,) * (a.ndim - 1)) * a)
        return a - (sums / total.reshape((-1,) + (1,) * (a.ndim - 1)))[label]

    x = basis(counts)
    root = np.sqrt(w)
    weights, _ = nnls(root[:, None] * centred(x),
                      root * centred(np.asarray(values, np.float64)))
    level = float(np.average(values - x @ weights, weights=w))
    return np.maximum(basis(np.arange(n)) @ weights + level, 0.0)



class _RowSampler:
    """Evaluates revealed counts on sequences, one fixed random order per sequence slot.

    Slot i is the i-th sequence of a random permutation of the data (cycling when more slots
    than sequences are asked for, with a fresh order each time round).
    """

    def __init__(self, logits_fn, tokens, prompts, kind, batch_size, jit, key, shape,
                 gap_degree):
        self.fn, self.tokens, self.prompts, self.kind, self.jit = (logits_fn, tokens, prompts,
                                                                   kind, jit)
        self.batch_size = batch_size
        self.key = key
        self.values: dict[int, dict[int, float]] = {}  # slot -> {count: value}
        self.passes = 0
        self._cycle = random_orders(1, tokens.shape[0], key=key)[0]
        self.shape = shape
        self.gap_degree = gap_degree
        self.gaps: list[tuple[np.ndarray, np.ndarray]] = []  # (counts, ce - ent) per run

    def _orders(self, slots: np.ndarray) -> np.ndarray:
        n = self.tokens.shape[1]
        return np.stack([random_orders(1, n, key=jax.random.fold_in(self.key, int(i) + 1))[0]
                         for i in slots])

    def run(self, slots: np.ndarray, grid: np.ndarray) -> None:
        """Evaluate every count of `grid` on every sequence slot of `slots`."""
        m = self.tokens.shape[0]
        seq = self._cycle[slots % m]
        prompts = None if self.prompts is None else [self.prompts[i] for i in seq]
        ce, ent = (v.reshape(slots.size, grid.size) for v in curve_rows(
            self.fn, self.tokens[seq], self._orders(slots), grid, prompts,
            batch_size=self.batch_size, jit=self.jit))
        total = slots.size * grid.size
        values = ent if self.kind == "model" or self.gap_degree is not None else ce
        if self.gap_degree is not None:
            self.gaps.append((np.tile(grid, slots.size), (ce - ent).ravel()))
        for r, slot in enumerate(slots.tolist()):
            self.values.setdefault(slot, {}).update(zip(grid.tolist(), values[r].tolist(),
                                                        strict=True))
        self.passes += total

    def table(self) -> tuple[np.ndarray, np.ndarray]:
        """(grid[G], values[M, G]) over the counts that every slot has."""
        common = set.intersection(*(set(v) for v in self.values.values()))
        grid = np.asarray(sorted(common))
        values = np.asarray([[v[j] for j in grid] for v in self.values.values()])
        return grid, values

    def gap(self, grid: np.ndarray) -> np.ndarray:
        """The fitted calibration gap (data minus model curve) at `grid`, or zeros."""
        if self.gap_degree is None:
            return np.zeros(grid.size)
        counts = np.concatenate([c for c, _ in self.gaps])
        gaps = np.concatenate([g for _, g in self.gaps])
        n = self.tokens.shape[1]  # rows weighted by their masked positions, as in the fit
        coef = np.polyfit(counts.astype(np.float64), gaps, self.gap_degree,
                          w=np.sqrt(n - counts.astype(np.float64)))
        return np.polyval(coef, grid.astype(np.float64))

    def profile(self, n: int, pick: np.ndarray | None = None) -> EntropyProfile:
        """The fitted profile from every slot, or from the slots `pick` (a bootstrap draw:
        indices into the slots, repeats allowed)."""
        slots = list(self.values)
        pick = np.arange(len(slots)) if pick is None else pick
        grid, table = self.table()
        table = table[pick] + self.gap(grid)[None, :]
        mean = table.mean(axis=0)
        se = np.maximum(table.std(axis=0, ddof=1) / np.sqrt(table.shape[0]), 1e-9)
        meta = {"grid": [int(j) for j in grid], "sequences": int(table.shape[0]),
                "raw_conditional_entropy": [float(v) for v in mean], "shape": self.shape}
        if self.shape == "smooth":
            rows = [(i, j, v) for i, p in enumerate(pick)
                    for j, v in self.values[slots[p]].items()]
            label, counts, values = (np.asarray(c) for c in zip(*rows, strict=True))
            fitted = smooth_decreasing_fit(label, counts, values + self.gap(counts), n)
            return EntropyProfile.from_conditional_entropy(
                fitted, n=n, stderr=np.interp(np.arange(n), grid, se), meta=meta, check=False)
        if self.shape == "convex":
            fitted = convex_decreasing_fit(grid, table)
            return EntropyProfile.from_conditional_entropy(
                fitted, grid, n=n, stderr=se, meta=meta, check=False)
        raw = EntropyProfile.from_conditional_entropy(
            mean, grid, n=n, stderr=se, check=False, meta=meta)
        return raw.regularize()

    def bagged_profile(self, n: int, replicates: int, key) -> EntropyProfile:
        """The mean of the fitted curves of bootstrap replicates (sequences resampled).

        A fitted curve has flat stretches where noise broke monotonicity, and an optimizer
        puts long, predicted-free steps there; the stretches fall in different places in
        each replicate, so their mean is smooth (bagging, as in `schedopt.solve`).
        """
        rng = host_rng(key)
        m = len(self.values)
        fits = [self.profile(n, rng.integers(0, m, m)) for _ in range(replicates)]
        base = self.profile(n)
        entropy = np.mean([np.asarray(p.entropy) for p in fits], axis=0)
        return base.replace(entropy=entropy, meta={**base.meta, "bagging": replicates})

    def spread(self, n: int) -> np.ndarray:
        """Per-sequence standard deviation of the curve at every count, interpolated."""
        grid, table = self.table()
        sd = np.interp(np.arange(n), grid, table.std(axis=0, ddof=1))
        return np.maximum(sd, 0.05 * max(float(sd.max()), 1e-12))

    def stability(self, n, schedules, replicates, key) -> dict[int, dict[str, float]]:
        """Bootstrap over sequences (each keeps its whole row: common random numbers)."""
        m = len(self.values)
        rng = host_rng(key)
        same = {t: 0 for t in schedules}
        excess = {t: [] for t in schedules}
        optimum = {t: [] for t in schedules}
        for _ in range(replicates):
            p = self.profile(n, rng.integers(0, m, m))
            for t, s in schedules.items():
                best = optimal_schedule(p, t)
                same[t] += bool(np.array_equal(np.asarray(best.tokens_per_step), s))
                excess[t].append(float(expected_kl(p, s)) - float(best.expected_kl))
                optimum[t].append(float(best.expected_kl))
        out = {}
        for t in schedules:
            e = np.asarray(excess[t])
            base = float(np.median(optimum[t]))
            out[t] = {"agreement": same[t] / replicates,
                      "excess_median": float(np.median(e)),
                      "excess_p90": float(np.quantile(e, 0.9)),
                      "relative_p90": float(np.quantile(e, 0.9) / base) if base > 0 else 0.0}
        return out
