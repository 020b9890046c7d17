"""Exact quality of samples from a known law: log-likelihood under the law, and support.

When the law mu is known, a sampler's output x ~ nu can be judged without any model: the mean
log-likelihood E_nu log mu(x) (nats per sequence; exact sampling gives -H(mu), and a sampler
that breaks the law's correlations scores lower), and the fraction of samples mu can produce
at all (for a code, the fraction of codewords). Both are plain Monte Carlo means, reported
with standard errors.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np

from ..distributions import Distribution


@dataclasses.dataclass(frozen=True)
class SampleQuality:
    """Quality of `samples` sequences under a known law.

    Attributes:
        log_likelihood: mean of log mu(x) over the samples inside the support (nats per
            sequence; NaN when none is), and `log_likelihood_stderr` its standard error.
        in_support: fraction of samples with mu(x) > 0 (codewords, for a code), and
            `in_support_stderr` its binomial standard error.
        samples: number of sequences judged.
    """

    log_likelihood: float
    log_likelihood_stderr: float
    in_support: float
    in_support_stderr: float
    samples: int


def sample_quality(distribution: Distribution, tokens: Any) -> SampleQuality:
    """Judge sampled sequences by the law they should follow.

    Args:
        distribution: the known law mu.
        tokens: int[M, n] sampled sequences, M >= 2.

    Returns:
        `SampleQuality` (nats per sequence; fractions in [0, 1]).
    """
    x = np.asarray(tokens)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] != distribution.n:
        raise ValueError(
            f"tokens has shape {x.shape} but the law has n = {distribution.n}; give at least "
            f"2 sampled sequences of shape [M, {distribution.n}]"
        )
    logp = np.asarray(distribution.log_prob(x.astype(np.int32)), np.float64)
    inside = np.isfinite(logp)
    m = x.shape[0]
    frac = float(inside.mean())
    kept = logp[inside]
    mean = float(kept.mean()) if kept.size else float("nan")
    se = float(kept.std(ddof=1) / math.sqrt(kept.size)) if kept.size > 1 else float("nan")
    return SampleQuality(
        log_likelihood=mean,
        log_likelihood_stderr=se,
        in_support=frac,
        in_support_stderr=math.sqrt(frac * (1 - frac) / m),
        samples=m,
    )
