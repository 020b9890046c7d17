"""The objective: the exact expected KL of a schedule, and its relaxation to real cuts.

docs/theory.md §3 (Chen, Cong and Li, COLT 2026, Thm 4): for a schedule s_1..s_T with
N_k = s_1 + ... + s_k,

    E KL = sum_k sum_{j = N_{k-1}}^{N_k - 1} (g_{N_{k-1}} - g_j),

the error of the left-endpoint step approximation of the conditional entropy curve g.
`_summed_terms` is the one place the sum is written; `kl_of_tokens` (JAX: batched, traceable)
and `evaluate_kl` (one schedule on the host, in numpy) find each position's block for it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.checks import check_tokens_per_step
from .._internal.precision import float64
from ..curve import EntropyProfile

# Differences of g below FLAT_ULPS float64 ulps of max |H| are rounding, not information:
# H built by summing a constant g has differences that wobble in the last bits.
FLAT_ULPS = 16


def flat_tolerance(entropy: Any) -> Any:
    """The size (nats) below which two values of g = diff(H) count as equal.

    Args:
        entropy: float[..., n + 1] H (numpy or jax).

    Returns:
        float[...]: FLAT_ULPS machine epsilons of the largest |H| (of the array's dtype).
    """
    xp = jnp if isinstance(entropy, jax.Array) else np
    eps = xp.finfo(entropy.dtype).eps
    return FLAT_ULPS * eps * xp.max(xp.abs(entropy), axis=-1)


@jax.jit
def kl_of_tokens(entropy: jnp.ndarray, tokens_per_step: jnp.ndarray) -> jnp.ndarray:
    """The expected KL (nats) of schedules, batched; the JAX kernel for the fixed-count KL.

    Args:
        entropy: float[..., n + 1] H.
        tokens_per_step: int[..., T] tokens per step, >= 0 (zero-size steps are allowed,
            so that budgets can be padded), summing to n. Leading dimensions broadcast.

    Returns:
        float[...] expected KL. Each term g_{N_{k-1}} - g_j is taken as 0 when it is within
        rounding of 0 (`flat_tolerance`), so the KL is never negative on a valid profile and
        exactly 0 on a constant curve. No validation (use `expected_kl` for that).
    """
    return jnp.vectorize(_kl_one, signature="(m),(t)->()")(entropy, tokens_per_step)


def _kl_one(entropy: jnp.ndarray, tokens_per_step: jnp.ndarray) -> jnp.ndarray:
    g = jnp.diff(entropy)
    ends = jnp.cumsum(tokens_per_step)
    starts = ends - tokens_per_step
    j = jnp.arange(g.shape[0], dtype=ends.dtype)
    # Position j belongs to the block whose end is the first end > j; empty blocks are skipped.
    block = jnp.clip(jnp.searchsorted(ends, j, side="right"), 0, ends.shape[0] - 1)
    return _summed_terms(entropy, g, g[starts[block]])


def _summed_terms(entropy: Any, g: Any, left: Any) -> Any:
    """sum_j (left_j - g_j), each term within rounding of 0 taken as 0 (numpy or jax).

    left_j is g at the first position of the block that holds j: the one formula of the KL.
    """
    xp = np if isinstance(g, np.ndarray) else jnp
    terms = left - g
    return xp.sum(xp.where(xp.abs(terms) <= flat_tolerance(entropy), 0.0, terms))


def block_cost(start, entropy_start, slope_start, end, entropy_end):
    """C(a, b) = (b - a) g_a - (H_b - H_a): the KL of unmasking positions a..b-1 in one step
    (nats; the DP's form, docs/theory.md §4). Arguments broadcast; positions may be floats."""
    return (end - start) * slope_start - (entropy_end - entropy_start)


def expected_kl(profile: EntropyProfile, tokens_per_step: Any) -> np.ndarray:
    """Exact expected KL (nats) between the data and a T-step sampler's law.

    Args:
        profile: the data's entropy profile (n tokens).
        tokens_per_step: int[..., T], tokens unmasked at each step, each >= 1, summing to n.
            Leading dimensions are a batch of schedules with the same T.

    Returns:
        float64[...] expected KL in nats (a numpy value). Sums non-negative terms, so it is
        accurate to ~1e-12 relative for any n; never negative, and exactly 0 on a constant
        curve. Under a JAX trace the schedule is not validated and the result is traced.

    References:
        S. Chen, K. Cong, J. Li, "Optimal Inference Schedules for Masked Diffusion Models",
        COLT 2026, Theorem 4.
    """
    if isinstance(tokens_per_step, jax.core.Tracer):
        return kl_of_tokens(jnp.asarray(profile.entropy), tokens_per_step)
    tokens = check_tokens_per_step(tokens_per_step, profile.n)
    return evaluate_kl(profile.entropy, tokens)


def evaluate_kl(entropy: Any, tokens_per_step: Any) -> np.ndarray:
    """`kl_of_tokens` on host arrays, in float64, without validation.

    Args:
        entropy: float[..., n + 1] H.
        tokens_per_step: int[..., T] (zero-size steps allowed, e.g. to pad schedules of
            different lengths into one array); leading dimensions broadcast.

    Returns:
        float64[...] expected KL (nats), a numpy array.
    """
    entropy = np.asarray(entropy, np.float64)
    tokens = np.asarray(tokens_per_step, np.int64)
    if entropy.ndim == tokens.ndim == 1:
        # One schedule (every certified result): numpy is 3 to 7 times faster than the
        # jitted kernel on CPU at n = 131072 (scripts/bench_exact.py --kl).
        g = np.diff(entropy)
        starts = np.cumsum(tokens) - tokens
        return np.asarray(_summed_terms(entropy, g, g[np.repeat(starts, tokens)]))
    return _evaluate_batch(entropy, tokens)


@float64
def _evaluate_batch(entropy: np.ndarray, tokens_per_step: np.ndarray) -> np.ndarray:
    return np.asarray(kl_of_tokens(entropy, tokens_per_step))


def relaxed_kl(profile: EntropyProfile, cuts: Any) -> jnp.ndarray:
    """The expected KL as a differentiable function of real cumulative cuts.

    With c_0 = 0 < c_1 < ... < c_{T-1} < c_T = n and g extended piecewise-linearly between
    integers, the objective is sum_k (c_k - c_{k-1}) g(c_{k-1}) - H_n. It equals
    `expected_kl` when every cut is an integer. Runs in the precision of `cuts` (float32
    unless the caller enabled float64): it is the optimizer's objective, not a report.

    Args:
        profile: the entropy profile.
        cuts: float[..., T - 1] interior cuts (revealed counts after steps 1..T-1).

    Returns:
        float[...] relaxed expected KL in nats.
    """
    cuts = jnp.asarray(cuts)
    entropy = jnp.asarray(profile.entropy, dtype=cuts.dtype)
    return jnp.vectorize(relaxed_kl_of_cuts, signature="(m),(c)->()")(entropy, cuts)


def relaxed_kl_of_cuts(entropy: jnp.ndarray, cuts: jnp.ndarray) -> jnp.ndarray:
    """`relaxed_kl` on arrays: H float[n + 1] and ordered real cuts float[T - 1] (pure)."""
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    bounds = jnp.concatenate([jnp.zeros(1, cuts.dtype), cuts, jnp.full(1, n, cuts.dtype)])
    starts, lengths = bounds[:-1], jnp.diff(bounds)
    return jnp.sum(lengths * interpolate(g, starts)) - entropy[-1]


def interpolate(values: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """Piecewise-linear interpolation of values[0..m-1] on the integer grid, clamped at both
    ends (what jnp.interp does, without a search: the grid is the integers)."""
    last = values.shape[0] - 1
    x = jnp.clip(x, 0, last)
    left = jnp.clip(jnp.floor(x).astype(jnp.int32), 0, max(last - 1, 0))
    right = jnp.minimum(left + 1, last)
    return values[left] + (x - left.astype(x.dtype)) * (values[right] - values[left])
