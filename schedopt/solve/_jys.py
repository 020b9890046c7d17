"""Jump Your Steps' coarse-to-fine search of a random-count time grid (docs/theory.md §5).

For masked diffusion with exact conditionals, Jump Your Steps' KLUB (arXiv 2410.07761) is the
expected KL of the random-count sampler of theory §6 (`expected_kl_binomial`), so their search
is a baseline on that objective: start from one step, and at each level split every interval
(a, b) of the grid at the point found by a golden-section search, which doubles T. The
objective separates over steps (step (a, b) costs n (b - a) E_{t ~ Bin(n - 1, a)}[g_t]), so
each split is a search on its own, and a level's searches run together. The search runs on
the revealed fraction alpha rather than on JYS's time t; the two are one monotone map apart,
so the searched functions have the same minimisers whenever they are unimodal.
"""

from __future__ import annotations

import math

import numpy as np

from ..curve import EntropyProfile
from ..objective import mean_conditional_entropy
from ..schedule import TimeGrid

_INVERSE_GOLDEN = (math.sqrt(5) - 1) / 2


def jys_grid(profile: EntropyProfile, steps: int, *, tolerance: float = 1e-7) -> TimeGrid:
    """The random-count grid of Jump Your Steps' hierarchical golden-section search.

    Args:
        profile: the entropy profile (n tokens).
        steps: T, a power of two (each level doubles the steps).
        tolerance: width of the final bracket of each golden-section search (revealed fraction).

    Returns:
        A `TimeGrid` with method "jys" and its exact expected KL (nats).

    References:
        Y.-H. Park, C.-H. Lai, S. Hayakawa, Y. Takida, Y. Mitsufuji, "Jump Your Steps:
        Optimizing Sampling Schedule of Discrete Diffusion Models", ICLR 2025,
        arXiv 2410.07761.
    """
    if isinstance(steps, bool) or int(steps) != steps or steps < 1 or steps & (steps - 1):
        raise ValueError(f"steps must be a power of two (1, 2, 4, ...) for the JYS search, "
                         f"got {steps!r}")
    if not (tolerance > 0 and math.isfinite(tolerance)):
        raise ValueError(f"tolerance must be a positive number, got {tolerance!r}")
    alpha = np.array([0.0, 1.0])
    while alpha.size - 1 < steps:
        cuts = _best_splits(profile, alpha[:-1], alpha[1:], tolerance)
        alpha = np.insert(alpha, np.arange(1, alpha.size), cuts)
    alpha[0], alpha[-1] = 0.0, 1.0
    return TimeGrid.from_alpha(profile, alpha, "jys")


def _best_splits(profile: EntropyProfile, a: np.ndarray, b: np.ndarray, tolerance: float):
    """For each interval (a, b), the c in it with the least KL of the steps (a, c), (c, b):
    n [(c - a) m(a) + (b - c) m(c)], m = `mean_conditional_entropy`. One golden-section
    search per interval, all run together."""
    at_start = mean_conditional_entropy(profile, a)

    def cost(c):
        return (c - a) * at_start + (b - c) * mean_conditional_entropy(profile, c)

    lo, hi = a.copy(), b.copy()
    x1, x2 = hi - _INVERSE_GOLDEN * (hi - lo), lo + _INVERSE_GOLDEN * (hi - lo)
    f1, f2 = cost(x1), cost(x2)
    while np.any(hi - lo > tolerance):
        left = f1 <= f2  # the minimum lies in [lo, x2]; else in [x1, hi]
        hi, lo = np.where(left, x2, hi), np.where(left, lo, x1)
        x1, x2 = (np.where(left, hi - _INVERSE_GOLDEN * (hi - lo), x2),
                  np.where(left, x1, lo + _INVERSE_GOLDEN * (hi - lo)))
        fresh = np.where(left, x1, x2)
        value = cost(fresh)
        f1, f2 = np.where(left, value, f2), np.where(left, f1, value)
    return np.where(f1 <= f2, x1, x2)
