"""Float64 where the certificate needs it, without touching the user's JAX configuration.

Reported KLs are sums of many small non-negative terms and the exact DP compares costs that
differ in the last digits, so they are computed in float64. JAX's precision is a global
setting (`jax_enable_x64`); schedopt never changes it. Public functions that report a KL run
inside `jax.enable_x64(True)` (a context, undone on return) and hand back host (numpy)
values, so the caller's own JAX code keeps running in float32.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import jax

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
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]
