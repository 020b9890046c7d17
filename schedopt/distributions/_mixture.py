"""Product laws (independent positions) and finite mixtures of them."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import inverse_cdf
from .._internal.checks import check_count
from ..curve import EntropyProfile
from ._base import Distribution, as_jax, check_probabilities, entropy_nats, log_nonneg, point_mass


class Product(Distribution):
    """Independent positions: X_i ~ marginals[i]. The profile is exact and linear.

    H_j = (j / n) sum_i H(X_i), so g is constant and every schedule has zero KL.

    Args:
        marginals: float[n, V], row i the law of X_i.
    """

    def __init__(self, marginals: Any):
        self.marginals = check_probabilities(marginals, "marginals", 2)
        self.n, self.vocab_size = self.marginals.shape

    @property
    def exact_profile(self) -> bool:
        return True

    def profile(self) -> EntropyProfile:
        """The exact profile."""
        total = float(np.sum(entropy_nats(self.marginals)))
        entropy = np.arange(self.n + 1) * (total / self.n)
        meta = {"source": "exact", "distribution": "product"}
        return EntropyProfile.from_entropy(entropy, meta=meta)

    def _conditionals(self, x, revealed):
        probs = jnp.broadcast_to(self.marginals, (*x.shape, self.vocab_size))
        return point_mass(x, revealed, probs)

    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        samples = check_count(samples, "samples")
        return _product_sample(key, *as_jax(self.marginals), samples)

    def log_prob(self, x: Any) -> jnp.ndarray:
        x = jnp.asarray(x, jnp.int32)
        log_m = jnp.asarray(log_nonneg(self.marginals))
        return jnp.sum(log_m[jnp.arange(self.n), x], axis=-1)


class MixtureOfProducts(Distribution):
    """A finite mixture of product laws: pick component c ~ weights, then X_i ~ marginals[c, i].

    Clustered sequences: once a few tokens identify the cluster, the rest are nearly
    independent, so g drops steeply at the start; schedules that reveal few tokens first
    gain a lot. Conditionals use the exact posterior over components; the profile is a Monte
    Carlo estimate.

    Args:
        weights: float[K] mixture weights.
        marginals: float[K, n, V], component c's law of position i.
    """

    def __init__(self, weights: Any, marginals: Any):
        self.weights = check_probabilities(weights, "weights", 1)
        self.marginals = check_probabilities(marginals, "marginals", 3)
        k, self.n, self.vocab_size = self.marginals.shape
        if self.weights.shape[0] != k:
            raise ValueError(
                f"weights has {self.weights.shape[0]} entries but marginals has {k} "
                "components (its first axis); give one weight per component"
            )

    @functools.cached_property
    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        return log_nonneg(self.weights), log_nonneg(self.marginals)

    def _conditionals(self, x, revealed):
        return _mixture_conditionals(*as_jax(*self._params), x, revealed)

    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        samples = check_count(samples, "samples")
        return _mixture_sample(key, *as_jax(self.weights, self.marginals), samples)

    def log_prob(self, x: Any) -> jnp.ndarray:
        x = jnp.asarray(x, jnp.int32)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.n)
        log_weights, log_marginals = as_jax(*self._params)
        everything = jnp.ones(flat.shape, bool)
        return _mixture_log_joint(log_weights, log_marginals, flat, everything).reshape(lead)


# --------------------------------------------------------------------------- kernels
def _component_log_likelihood(log_m, x, revealed):
    """float[B, K]: log Pr(x_revealed | component c)."""
    # log_m[:, i, x[b, i]] for every b, i: [K, B, n].
    picked = jnp.take_along_axis(log_m[:, None], x[None, ..., None], axis=-1)[..., 0]
    return jnp.sum(jnp.where(revealed[None], picked, 0.0), axis=-1).T


@jax.jit
def _mixture_log_joint(log_w, log_m, x, revealed):
    return jax.nn.logsumexp(log_w + _component_log_likelihood(log_m, x, revealed), axis=-1)


@jax.jit
def _mixture_conditionals(log_w, log_m, x, revealed):
    log_post = log_w + _component_log_likelihood(log_m, x, revealed)
    post = jax.nn.softmax(log_post, axis=-1)  # [B, K]
    probs = jnp.einsum("bk,kiv->biv", post, jnp.exp(log_m))
    return point_mass(x, revealed, probs)


@functools.partial(jax.jit, static_argnums=(2,))
def _product_sample(key, marginals, num):
    return inverse_cdf(jax.random.uniform(key, (num, marginals.shape[0])), marginals)


@functools.partial(jax.jit, static_argnums=(3,))
def _mixture_sample(key, weights, marginals, num):
    k_c, k_x = jax.random.split(key)
    c = inverse_cdf(jax.random.uniform(k_c, (num,)), weights)
    return inverse_cdf(jax.random.uniform(k_x, (num, marginals.shape[1])), marginals[c])
