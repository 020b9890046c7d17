"""Samplers with random counts: the exact expected KL of a time grid, and its optimum.

docs/theory.md §6. MD4, MDLM, SEDD and Dream's "origin" step unmask every masked token
independently. With revealed fraction alpha_k after step k (alpha_0 = 0 < ... < alpha_T = 1) a
token is revealed by step k with probability alpha_k, so N_{k-1} ~ Binomial(n, alpha_{k-1}) and
the revealed positions are uniform given their number. With p_k = (alpha_k - alpha_{k-1}) /
(1 - alpha_{k-1}) and g_n := 0,

    E KL = sum_k E_{t ~ Bin(n, alpha_{k-1})} [(n - t) p_k g_t] - H_n
         = n sum_k (alpha_k - alpha_{k-1}) E_{t ~ Bin(n - 1, alpha_{k-1})} [g_t] - H_n,

the second form by the identity (n - t) Bin(t; n, a) = n (1 - a) Bin(t; n - 1, a).
It needs no g_n and no division, and is smooth in alpha: Optax optimizes it directly.
"""


from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import gammaln, xlog1py, xlogy

from .._internal.checks import check_alpha
from .._internal.precision import float64
from ..curve import EntropyProfile


# --------------------------------------------------------------------------- the objective
def expected_kl_binomial(profile: EntropyProfile, alpha: Any) -> jnp.ndarray:
    """Exact expected KL (nats) of a random-count sampler on the grid `alpha`.

    Every masked token is revealed at step k with probability
    p_k = (alpha_k - alpha_{k-1}) / (1 - alpha_{k-1}), independently (MD4, MDLM, SEDD, Dream's
    "origin" algorithm); the KL is averaged over the random counts and positions.

    Args:
        profile: the data's entropy profile (n tokens).
        alpha: float[..., T + 1] revealed fractions, 0 = alpha_0 < ... < alpha_T = 1. Leading
            dimensions are a batch of grids with the same T.

    Returns:
        float64[...] expected KL in nats. Differentiable in alpha (the Binomial pmf is computed
        in log space with gammaln in float64); jit-able, and unchecked under jit.

    References:
        S. Chen, K. Cong, J. Li, "Optimal Inference Schedules for Masked Diffusion Models",
        COLT 2026; docs/theory.md §6.
    """
    if isinstance(alpha, jax.core.Tracer):
        return _batched_kl_binomial(jnp.asarray(profile.entropy, alpha.dtype), alpha)
    return _expected_kl_binomial_host(profile.entropy, check_alpha(alpha))


@float64
def _expected_kl_binomial_host(entropy: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.asarray(_batched_kl_binomial(jnp.asarray(entropy), jnp.asarray(alpha)))


def _batched_kl_binomial(entropy: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    fn = expected_kl_binomial_traced
    for _ in range(alpha.ndim - 1):
        fn = jax.vmap(fn, in_axes=(None, 0))
    return fn(entropy, alpha)


@jax.jit
def expected_kl_binomial_traced(entropy: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    """E KL for entropy float64[n + 1] and a grid float64[T + 1] (second form above)."""
    n = entropy.shape[0] - 1
    return n * jnp.sum(jnp.diff(alpha) * _mean_g(entropy, alpha[:-1])) - entropy[-1]


@float64
def mean_conditional_entropy(profile: EntropyProfile, fraction: Any) -> np.ndarray:
    """E_{t ~ Bin(n - 1, a)} [g_t] (nats) for each revealed fraction a in [0, 1].

    Step (a, b) of a random-count grid costs n (b - a) times this at a (theory §6), so the
    expected KL is their sum minus H_n.
    """
    a = np.asarray(fraction, np.float64)
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"fractions must lie in [0, 1], got {a.min()} .. {a.max()}")
    entropy = jnp.asarray(profile.entropy)
    return np.asarray(_mean_g(entropy, jnp.asarray(a).ravel())).reshape(a.shape)


@jax.jit
def _mean_g(entropy: jnp.ndarray, fraction: jnp.ndarray) -> jnp.ndarray:
    """E_{t ~ Bin(n - 1, a)} [g_t] for each a of float[m]."""
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    start = fraction[:, None]
    t = jnp.arange(n, dtype=fraction.dtype)
    # Double where: the pmf at alpha = 0 (or 1) is a point mass, and the masked branch keeps
    # log(0) out of the gradient.
    inside = (start > 0) & (start < 1)
    a = jnp.where(inside, start, 0.5)
    log_pmf = (
        gammaln(n * 1.0) - gammaln(t + 1) - gammaln(n - t) + xlogy(t, a) + xlog1py(n - 1 - t, -a)
    )
    point = jnp.where(start >= 1, t == n - 1, t == 0).astype(fraction.dtype)
    pmf = jnp.where(inside, jnp.exp(log_pmf), point)
    return pmf @ g
