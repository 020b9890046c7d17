"""Categorical draws and logs shared by the known laws and the sampler (JAX, traceable)."""

from __future__ import annotations

import jax.numpy as jnp


def inverse_cdf(u: jnp.ndarray, probs: jnp.ndarray) -> jnp.ndarray:
    """Categorical draws int32[...] from probs[..., V] given uniforms u[...] in [0, 1).

    Inverse-CDF sampling: the value whose cumulative interval holds u. All randomness is
    drawn once outside loops as plain uniforms, which compiles much faster than
    `jax.random.categorical` inside a `lax.scan`.
    """
    cdf = jnp.cumsum(probs, axis=-1)[..., :-1]
    return jnp.sum(u[..., None] >= cdf, axis=-1).astype(jnp.int32)


def log_or_neg_inf(p: jnp.ndarray) -> jnp.ndarray:
    """log p with log 0 = -inf and no warnings or NaN gradients."""
    return jnp.where(p > 0, jnp.log(jnp.where(p > 0, p, 1.0)), -jnp.inf)
