"""Hidden Markov models: conditionals by forward-backward with missing observations."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import inverse_cdf
from .._internal.checks import check_count
from ._base import (
    Distribution,
    as_jax,
    check_length,
    check_probabilities,
    point_mass,
    safe_normalize,
)
from ._markov import stationary_distribution


class HiddenMarkov(Distribution):
    """A stationary hidden Markov model: hidden chain H_i, observed tokens X_i.

    H_0 follows the stationary law of `transition`, H_{i+1} | H_i = a follows transition[a],
    and X_i | H_i = h follows emission[h]. Conditionals are exact (forward-backward, O(n K^2)
    per sequence); the profile is a Monte Carlo estimate (no closed form is known).

    Args:
        transition: float[K, K] row-stochastic hidden-state transition matrix with a unique
            stationary law.
        emission: float[K, V] row-stochastic emission probabilities.
        n: sequence length >= 1.
    """

    def __init__(self, transition: Any, emission: Any, n: int):
        self.transition = check_probabilities(transition, "transition", 2)
        k = self.transition.shape[0]
        if self.transition.shape != (k, k):
            raise ValueError(
                f"transition must be square (K x K hidden states), got shape "
                f"{self.transition.shape}"
            )
        self.emission = check_probabilities(emission, "emission", 2)
        if self.emission.shape[0] != k:
            raise ValueError(
                f"emission has {self.emission.shape[0]} rows but transition has {k} hidden "
                "states; give one emission row per hidden state"
            )
        self.n = check_length(n)
        self.vocab_size = self.emission.shape[1]
        self.stationary = stationary_distribution(self.transition)

    @property
    def _params(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return as_jax(self.stationary, self.transition, self.emission)

    def _conditionals(self, x, revealed):
        return _hmm_conditionals(*self._params, x, revealed)

    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        samples = check_count(samples, "samples")
        return _hmm_sample(key, *self._params, samples, self.n)

    def sample_hidden(self, samples: int, *, key: jax.Array) -> tuple[jnp.ndarray, jnp.ndarray]:
        """(tokens int32[samples, n], hidden states int32[samples, n]); same draws as `sample`."""
        samples = check_count(samples, "samples")
        return _hmm_sample_with_states(key, *self._params, samples, self.n)

    def log_prob(self, x: Any) -> jnp.ndarray:
        x = jnp.asarray(x, jnp.int32)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.n)
        out = _hmm_log_prob(*self._params, flat)
        return out.reshape(lead)


# --------------------------------------------------------------------------- kernels
def _evidence(emission, x, revealed):
    """float[B, n, K]: Pr(x_i | H_i = h) at revealed positions, 1 at masked ones."""
    return jnp.where(revealed[..., None], emission.T[x], 1.0)


def _forward(pi, transition, evidence):
    """Normalised predictive messages f_i(h) ∝ Pr(H_i = h, x_{S, <i}) and log normalisers.

    Returns:
        f float[B, n, K] (before position i's own evidence), and float[B] the log-likelihood
        of the revealed tokens.
    """

    def step(carry, e):
        f, loglik = carry
        joint = f * e
        z = jnp.sum(joint, axis=-1)
        nxt = safe_normalize(joint) @ transition
        return (nxt, loglik + jnp.log(z)), f

    batch = evidence.shape[0]
    f0 = jnp.broadcast_to(pi, (batch, pi.shape[0]))
    (_, loglik), fs = jax.lax.scan(step, (f0, jnp.zeros(batch)), jnp.swapaxes(evidence, 0, 1))
    return jnp.swapaxes(fs, 0, 1), loglik


@jax.jit
def _hmm_conditionals(pi, transition, emission, x, revealed):
    evidence = _evidence(emission, x, revealed)
    f, _ = _forward(pi, transition, evidence)
    b = _backward_messages(transition, evidence)
    hidden = safe_normalize(f * b)  # Pr(H_i | x_{S \\ i}): position i's own token excluded
    return point_mass(x, revealed, hidden @ emission)


def _backward_messages(transition, evidence):
    """b_i(h) ∝ Pr(x_{S, >i} | H_i = h), normalised, float[B, n, K]."""

    def step(b, e):
        # b is b_{i+1}; e is the evidence at i + 1; returns b_i.
        prev = safe_normalize((e * b) @ transition.T)
        return prev, prev

    batch, n, k = evidence.shape
    b_last = jnp.ones((batch, k)) / k
    later = jnp.swapaxes(evidence[:, 1:], 0, 1)[::-1]  # evidence at n-1, ..., 1
    _, earlier = jax.lax.scan(step, b_last, later)  # b_{n-2}, ..., b_0
    return jnp.concatenate([jnp.swapaxes(earlier[::-1], 0, 1), b_last[:, None]], axis=1)


@jax.jit
def _hmm_log_prob(pi, transition, emission, x):
    evidence = _evidence(emission, x, jnp.ones(x.shape, bool))
    _, loglik = _forward(pi, transition, evidence)
    return loglik


@functools.partial(jax.jit, static_argnums=(4, 5))
def _hmm_sample_with_states(key, pi, transition, emission, num, n):
    u_hidden, u_tokens = jax.random.uniform(key, (2, n, num))
    h0 = inverse_cdf(u_hidden[0], pi)

    def step(h, u_i):
        nxt = inverse_cdf(u_i, transition[h])
        return nxt, nxt

    _, rest = jax.lax.scan(step, h0, u_hidden[1:])
    hidden = jnp.concatenate([h0[:, None], rest.T], axis=1)
    return inverse_cdf(u_tokens.T, emission[hidden]), hidden


def _hmm_sample(key, pi, transition, emission, num, n):
    return _hmm_sample_with_states(key, pi, transition, emission, num, n)[0]
