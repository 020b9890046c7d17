"""The Monte Carlo curve of a known law: sequences drawn from it, scored by its own conditionals.

theory §8. The estimator draws from the law; the law never calls the estimator, so sources
stay upstream of estimation (`Distribution.profile()` is the exact curve, where one exists).
"""

from __future__ import annotations

from typing import Any

import jax

from .._internal.checks import check_samples
from .._internal.keys import key_bits
from .._internal.precision import float64
from ..distributions import Distribution
from ._monte_carlo import CurveEstimate, estimate_curves


@float64
def estimate_law(
    law: Distribution,
    *,
    key: jax.Array,
    samples: int = 1024,
    grid: Any = None,
    quiet: bool = True,
) -> CurveEstimate:
    """Rao-Blackwellised Monte Carlo values of a law's curve (theory §8), per sequence.

    `samples` sequences from the law, one random order each, and at every grid point the
    mean entropy of its exact conditionals at the masked positions (kind "model"; the
    cross-entropy, kind "data", comes from the same passes). `.profile("model")` is the
    regularised curve with standard errors; keep the estimate itself for standard errors of
    anything linear in g, such as a schedule's predicted KL.

    Args:
        law: a `schedopt.distributions.Distribution`.
        key: JAX PRNG key, keyword-only and required: no estimate silently reuses a seed.
        samples: number of sequences drawn.
        grid: revealed counts to evaluate (default `schedopt.estimate.default_grid`: every
            count for n <= 256).
        quiet: no progress bar.

    Returns:
        A `schedopt.estimate.CurveEstimate`.
    """
    if not isinstance(law, Distribution):
        raise TypeError(
            f"law is a {type(law).__name__}; give a schedopt.distributions law (for a model's "
            "conditionals, use schedopt.estimate_profile(logits_fn, data, key=...))"
        )
    key_bits(key)  # a clear error for a missing or malformed key
    samples = check_samples(samples, law.n)
    k_data, k_order = jax.random.split(key)
    data = law.sample(samples, key=k_data)
    return estimate_curves(law.log_conditionals, data, key=k_order, grid=grid, quiet=quiet)
