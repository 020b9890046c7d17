"""An explicit joint probability table for small n: everything exact by enumeration."""

from __future__ import annotations

import functools
import itertools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.checks import check_count
from ..curve import EntropyProfile
from ._base import (
    Distribution,
    as_jax,
    check_enumerable,
    check_probabilities,
    entropy_nats,
    log_nonneg,
    point_mass,
    safe_normalize,
)


class Table(Distribution):
    """A law given by its joint probability table (V^n entries, at most 65536).

    The profile is exact: H(X_S) is computed for every subset S by marginalising one axis at
    a time, which costs about (V + 1)^n operations.

    Args:
        joint: float[V, V, ..., V] (n axes, all of length V), non-negative, summing to 1.
            A 1-D array of length V^n is read as the table in row-major order when
            `n` is given.
        n: sequence length, only needed for a flattened table.
    """

    def __init__(self, joint: Any, n: int | None = None):
        a = np.asarray(joint, dtype=np.float64)
        if n is not None and a.ndim == 1:
            v = round(a.size ** (1.0 / n))
            if v**n != a.size:
                raise ValueError(
                    f"a flat joint table of {a.size} entries is not V^n for n = {n}; "
                    "give V^n probabilities"
                )
            a = a.reshape((v,) * n)
        if a.ndim < 1 or len(set(a.shape)) != 1:
            raise ValueError(
                f"joint must have n axes of equal length V (one per position), got shape "
                f"{a.shape}"
            )
        self.n, self.vocab_size = a.ndim, a.shape[0]
        check_enumerable(self.vocab_size, self.n, "joint")
        self.joint = check_probabilities(a.reshape(1, -1), "joint", 2).reshape(a.shape)

    @property
    def exact_profile(self) -> bool:
        return True

    def profile(self) -> EntropyProfile:
        """The exact profile by enumeration of all subsets."""
        entropy = subset_entropy_curve(self.joint)
        meta = {"source": "exact", "distribution": "table", "method": "enumeration"}
        return EntropyProfile.from_entropy(entropy, meta=meta)

    def table(self) -> np.ndarray:
        return self.joint

    @functools.cached_property
    def _flat(self) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities float[V^n], every sequence int32[V^n, n]) in row-major order."""
        seqs = np.asarray(list(itertools.product(range(self.vocab_size), repeat=self.n)))
        return self.joint.reshape(-1), seqs.astype(np.int32)

    def _conditionals(self, x, revealed):
        return _table_conditionals(*as_jax(*self._flat), self.vocab_size, x, revealed)

    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        samples = check_count(samples, "samples")
        p, seqs = self._flat
        index = jnp.searchsorted(jnp.cumsum(p), jax.random.uniform(key, (samples,)), side="right")
        return jnp.asarray(seqs)[jnp.clip(index, 0, p.size - 1)]

    def log_prob(self, x: Any) -> jnp.ndarray:
        x = jnp.asarray(x, jnp.int32)
        flat_index = jnp.ravel_multi_index(
            tuple(jnp.moveaxis(x, -1, 0)), self.joint.shape, mode="clip"
        )
        return jnp.asarray(log_nonneg(self._flat[0]))[flat_index]


def subset_entropy_curve(joint: np.ndarray) -> np.ndarray:
    """H_0..H_n: the mean over j-subsets S of H(X_S) (nats), by enumeration.

    Each subset is visited once, by a depth-first walk that sums out axes in increasing
    order, so marginals are never recomputed from the full table.
    """
    n = joint.ndim
    totals = np.zeros(n + 1)

    def visit(marginal: np.ndarray, first: int) -> None:
        totals[marginal.ndim] += entropy_nats(marginal.reshape(-1))
        for axis in range(first, marginal.ndim):
            visit(marginal.sum(axis=axis), axis)

    visit(joint, 0)
    return totals / np.asarray([math.comb(n, j) for j in range(n + 1)], dtype=np.float64)


@functools.partial(jax.jit, static_argnums=(2,))
def _table_conditionals(p, seqs, vocab_size, x, revealed):
    """Sum the table over the sequences that agree with x on the revealed positions."""
    agree = jnp.all((seqs[None] == x[:, None]) | ~revealed[:, None], axis=-1)  # [B, V^n]
    weights = jnp.where(agree, p[None], 0.0)
    onehot = jax.nn.one_hot(seqs, vocab_size, dtype=p.dtype)  # [V^n, n, V]
    probs = safe_normalize(jnp.einsum("bs,siv->biv", weights, onehot))
    return point_mass(x, revealed, probs)
