"""The objective: the exact expected KL of a schedule, and its relaxation to real cuts.

THEORY section 3 (Chen, Cong and Li, COLT 2026, Thm 4): for a schedule s_1..s_T with
N_k = s_1 + ... + s_k,

    E KL = sum_k sum_{j = N_{k-1}}^{N_k - 1} (g_{N_{k-1}} - g_j),

the error of the left-endpoint step approximation of the conditional entropy curve g.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .profile import EntropyProfile


def check_tokens_per_step(tokens_per_step: Any, n: int, what: str = "tokens_per_step"):
    """Check a concrete schedule: positive whole numbers summing to n. Returns int64[..., T]."""
    s = np.asarray(tokens_per_step)
    if s.ndim < 1 or s.shape[-1] < 1:
        raise ValueError(f"{what} must be a non-empty list of token counts, got shape {s.shape}")
    if not np.issubdtype(s.dtype, np.integer):
        if not (np.all(np.isfinite(s)) and np.all(s == np.round(s))):
            raise ValueError(f"{what} must hold whole numbers of tokens, got {s.tolist()}")
        s = s.astype(np.int64)
    if np.any(s < 1):
        raise ValueError(
            f"{what} has a step with {int(s.min())} tokens; every step must unmask at least 1"
        )
    totals = s.sum(axis=-1)
    if np.any(totals != n):
        bad = int(np.ravel(totals)[np.ravel(totals != n)][0])
        raise ValueError(
            f"{what} sums to {bad} tokens but the profile has n = {n}; "
            "the steps must unmask every position exactly once"
        )
    return s.astype(np.int64)


def expected_kl(profile: EntropyProfile, tokens_per_step: Any) -> jnp.ndarray:
    """Exact expected KL (nats) between the data and a T-step sampler's law.

    Args:
        profile: the data's entropy profile (n tokens).
        tokens_per_step: int[..., T], tokens unmasked at each step, each >= 1, summing to n.
            Leading dimensions are a batch of schedules with the same T.

    Returns:
        float64[...] expected KL in nats. Sums non-negative terms, so it is accurate to
        ~1e-12 relative for any n. Jit-able; under jit the schedule is not validated.

    References:
        S. Chen, K. Cong, J. Li, "Optimal Inference Schedules for Masked Diffusion Models",
        COLT 2026, Theorem 4.
    """
    if not isinstance(tokens_per_step, jax.core.Tracer):
        tokens_per_step = check_tokens_per_step(tokens_per_step, profile.n)
    s = jnp.asarray(tokens_per_step)
    fn = _expected_kl
    for _ in range(s.ndim - 1):
        fn = jax.vmap(fn, in_axes=(None, 0))
    return fn(profile.entropy, s)


@jax.jit
def _expected_kl(entropy: jnp.ndarray, tokens_per_step: jnp.ndarray) -> jnp.ndarray:
    """Expected KL for entropy float[n+1] and tokens_per_step int[T] (zero-size steps allowed)."""
    g = jnp.diff(entropy)
    ends = jnp.cumsum(tokens_per_step)
    starts = ends - tokens_per_step
    j = jnp.arange(g.shape[0])
    # Position j belongs to the block whose end is the first end > j; empty blocks are skipped.
    block = jnp.clip(jnp.searchsorted(ends, j, side="right"), 0, ends.shape[0] - 1)
    return jnp.sum(g[starts[block]] - g)


def block_cost(entropy: jnp.ndarray, a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """KL of one block that unmasks positions a..b-1 in one step: (b - a) g_a - (H_b - H_a).

    Args:
        entropy: float[n + 1] H.
        a, b: int arrays (broadcast) with 0 <= a < b <= n; a == n is treated as g_a = 0.
    """
    g = jnp.diff(entropy)
    g_a = g[jnp.clip(a, 0, g.shape[0] - 1)]
    return (b - a) * g_a - (entropy[b] - entropy[a])


def relaxed_kl(profile: EntropyProfile, cuts: Any) -> jnp.ndarray:
    """The expected KL as a differentiable function of real cumulative cuts.

    With c_0 = 0 < c_1 < ... < c_{T-1} < c_T = n and g extended piecewise-linearly between
    integers, the objective is sum_k (c_k - c_{k-1}) g(c_{k-1}) - H_n. It equals
    `expected_kl` when every cut is an integer.

    Args:
        profile: the entropy profile.
        cuts: float[..., T - 1] interior cuts (revealed counts after steps 1..T-1).

    Returns:
        float[...] relaxed expected KL in nats.
    """
    cuts = jnp.asarray(cuts, dtype=profile.entropy.dtype)
    fn = _relaxed_kl
    for _ in range(cuts.ndim - 1):
        fn = jax.vmap(fn, in_axes=(None, 0))
    return fn(profile.entropy, cuts)


@jax.jit
def _relaxed_kl(entropy: jnp.ndarray, cuts: jnp.ndarray) -> jnp.ndarray:
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
    return values[left] + (x - left) * (values[right] - values[left])
