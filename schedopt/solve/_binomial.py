"""The best time grid of a random-count sampler: Optax on the logits of its increments.

docs/theory.md §6. The objective (`schedopt.objective.expected_kl_binomial`) is smooth in
alpha; the descent starts from the grid of the optimal fixed-count schedule and the
literature's grids, and keeps the best.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._internal.checks import check_alpha
from .._internal.precision import float64
from ..curve import EntropyProfile
from ..objective import expected_kl_binomial_traced
from ..schedule import TimeGrid
from ._relaxed import minimise


# --------------------------------------------------------------------------- the optimizer
def _alpha_from_logits(logits: jnp.ndarray) -> jnp.ndarray:
    """Strictly increasing grid from 0 to exactly 1: cumulative softmax of T logits."""
    inner = jnp.cumsum(jax.nn.softmax(logits))[:-1]
    return jnp.concatenate([jnp.zeros(1, logits.dtype), inner, jnp.ones(1, logits.dtype)])


def _logits_from_alpha(alpha: np.ndarray) -> np.ndarray:
    return np.log(np.diff(np.asarray(alpha, dtype=np.float64)))


def _warm_starts(profile: EntropyProfile, steps: int) -> np.ndarray:
    """Starting grids, float64[S, T + 1]: the fixed-count optimum's fractions, and uniform.

    The optimal fixed counts are the natural guess (random counts concentrate around their
    mean); uniform alpha guards against a poor exact optimum on degenerate curves.
    """
    starts = [np.linspace(0.0, 1.0, steps + 1)]
    if steps <= profile.n:
        from ._exact import optimal_schedule

        cumulative = optimal_schedule(profile, steps).cumulative
        starts.insert(0, cumulative / profile.n)
    return np.stack(starts)


@functools.partial(jax.jit, static_argnames=("optimizer", "num_iterations"))
def _descend(entropy, logits0, optimizer, num_iterations):
    """Run `optimizer` on the logits; return the best logits seen."""

    def objective(logits):
        return expected_kl_binomial_traced(entropy, _alpha_from_logits(logits))

    return minimise(objective, logits0, optimizer, num_iterations)[0]


@functools.lru_cache(maxsize=1)
def _default_optimizer() -> optax.GradientTransformationExtraArgs:
    # One instance, so that the jitted descent (keyed on the optimizer) compiles once. A
    # backtracking line search compiles several times faster than the default zoom search and
    # reaches the same optimum on this smooth objective.
    linesearch = optax.scale_by_backtracking_linesearch(max_backtracking_steps=15)
    return optax.lbfgs(linesearch=linesearch)


@float64
def optimize_binomial(
    profile: EntropyProfile,
    steps: int,
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_iterations: int = 100,
    init: Any = None,
) -> TimeGrid:
    """The best random-count grid with T steps: Optax over strictly increasing alpha.

    alpha is parametrised as the cumulative softmax of T logits, so every iterate is strictly
    increasing from exactly 0 to exactly 1. The descent starts from the exact fixed-count
    optimum's fractions N_k / n and from uniform alpha (both at once, under vmap) and keeps the
    better result.

    Args:
        profile: the entropy profile (n tokens).
        steps: the number of steps T >= 1 (more than n is allowed: counts are random).
        optimizer: any `optax.GradientTransformation`; default L-BFGS with a backtracking
            line search (the objective is smooth and cheap, so a quasi-Newton method converges
            in tens of iterations). Pass the same object again to reuse the compiled program.
        num_iterations: optimizer iterations.
        init: optional starting grid float[T + 1] (replaces the default starts).

    Returns:
        A `TimeGrid` with method "binomial-optax" and its exact expected KL.
    """
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    steps = int(steps)
    if not (isinstance(num_iterations, int) and num_iterations >= 1):
        raise ValueError(f"num_iterations must be a whole number >= 1, got {num_iterations!r}")
    if steps == 1:
        return TimeGrid.from_alpha(profile, [0.0, 1.0], "binomial-optax")
    if init is not None:
        starts = check_alpha(init, "init")[None]
        if starts.shape[-1] != steps + 1:
            raise ValueError(
                f"init has {starts.shape[-1]} values but steps = {steps} needs {steps + 1}"
            )
    else:
        starts = _warm_starts(profile, steps)
    optimizer = _default_optimizer() if optimizer is None else optimizer
    optimizer = optax.with_extra_args_support(optimizer)
    logits0 = jnp.asarray(np.stack([_logits_from_alpha(a) for a in starts]))
    descend = jax.vmap(_descend, in_axes=(None, 0, None, None))
    logits = descend(profile.entropy, logits0, optimizer, num_iterations)
    alphas = jax.vmap(_alpha_from_logits)(logits)
    kl = jax.vmap(expected_kl_binomial_traced, in_axes=(None, 0))
    values = np.asarray(kl(profile.entropy, alphas))
    best = np.array(alphas[int(np.argmin(values))])
    # Re-pin the ends exactly (the softmax sum can miss 1 by an ulp).
    best[0], best[-1] = 0.0, 1.0
    return TimeGrid.from_alpha(profile, best, "binomial-optax")
