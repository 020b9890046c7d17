"""Float64 where the certificate needs it, without touching the user's JAX configuration.

Reported KLs are sums of many small non-negative terms and the exact DP compares costs that
differ in the last digits, so they are computed in float64. JAX's precision is a global
setting (`jax_enable_x64`); schedopt never changes it. Public functions that report a KL, a
curve or a likelihood run inside `jax.enable_x64(True)` (a context, undone on return) and
hand back host (numpy) values, so the caller's own JAX code keeps running in float32.

Functions that call a model you pass in (`estimate_profile`, `schedule_nll`, `sample`,
`verify`) call it inside that scope too: arrays your model creates without an explicit dtype
are float64 during the call (its float32 parameters stay float32). Give dtypes explicitly in
model code that must stay float32; PyTorch models are unaffected.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax
import numpy as np

F = TypeVar("F", bound=Callable)


def float64(fn: F) -> F:
    """Run `fn` with JAX's float64 mode on, restoring the caller's setting on return.

    Called with traced arguments (inside the caller's `jax.jit` or `grad`), `fn` runs in the
    caller's precision instead: a trace cannot change precision halfway.
    """

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves = jax.tree.leaves((args, kwargs))
        if any(isinstance(leaf, jax.core.Tracer) for leaf in leaves):
            return fn(*args, **kwargs)
        with jax.enable_x64(True):
            return jax.tree.map(_to_host, fn(*args, **kwargs))

    return wrapper  # type: ignore[return-value]


def _to_host(leaf):
    # A float64 JAX array would be silently demoted by the caller's next float32 operation;
    # as a numpy array it keeps its precision.
    if isinstance(leaf, jax.Array) and leaf.dtype == np.float64:
        return np.asarray(leaf)
    return leaf
