"""PRNG keys: the one place a JAX key is checked, read as bits, or turned into a numpy RNG.

Host-side randomness (bootstrap resampling, perturbed curves) is drawn from a
`numpy.random.Generator` seeded with the key's bits, so that one `key` argument, typed
(`jax.random.key`) or legacy (`jax.random.PRNGKey`), drives every random choice.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np


def key_bits(key: Any, name: str = "key") -> np.ndarray:
    """uint32[..., k] the raw bits of PRNG keys, typed or legacy (integers, k >= 2 per key);
    a clear error for anything else."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key))
    bits = np.asarray(key) if dtype is not None else None
    if (bits is None or not np.issubdtype(bits.dtype, np.integer) or bits.ndim < 1
            or bits.shape[-1] < 2):
        raise TypeError(f"{name} must be a JAX PRNG key, got {type(key).__name__}; pass "
                        f"{name}=jax.random.key(0) (any seed)")
    return bits.astype(np.uint32)


def host_rng(key: Any, name: str = "key") -> np.random.Generator:
    """A numpy Generator seeded by the bits of `key` (the same key, the same draws)."""
    return np.random.default_rng(key_bits(key, name).ravel().tolist())
