"""Time grids: revealed fractions <-> sampler times, for every sampler convention (theory §6).

A schedule's grid is r_0 = 0 < r_1 < ... < r_T = 1, the (expected) fraction of the n tokens
revealed after step k. Samplers with a continuous time t in [0, 1] run from t = 1 (all masked)
to t = 0 and unmask each still-masked token between times t > s with a probability fixed by
their masking schedule; the revealed fraction after reaching time t is then a function r(t).
This module holds that function and its inverse for each convention, written once, and the
checks of a grid.

Masking families a(t) (MD4's `_alpha`, also dllm's alpha schedulers): "linear" 1 - t,
"cosine" 1 - cos(pi/2 (1 - t)), "polyK" 1 - t^K.

Conventions:
- "md4": alpha(t) = (1 - 2 eps) a(t) + eps (MD4 `MaskingSchedule.alpha`), unmask probability
  (alpha(s) - alpha(t)) / (1 - alpha(t)). Sampling starts fully masked at t = 1 where
  alpha(1) = eps, so the revealed fraction at t is r(t) = (alpha(t) - eps) / (1 - eps); to
  reveal r choose alpha(t) = 1 - (1 - eps)(1 - r), i.e. a(t) = r (1 - eps) / (1 - 2 eps).
  At t = 0 a fraction eps / (1 - eps) is still masked; MD4's final `decode` fills it, so the
  grid's last step (to t = 0, then decode) reveals the rest. A grid whose r_{T-1} exceeds
  1 - eps / (1 - eps) cannot be reached: its last step is smaller than MD4's leftover.
- "loglinear" (MDLM, SEDD, Dream "origin"): move chance (1 - eps)(1 - a(t)); both of MDLM's
  predictors (ddpm, ddpm_cache) unmask with probability 1 - (1 - a(s)) / (1 - a(t)), so
  r(t) = a(t) whatever eps is, and t_k = a^-1(r_k) exactly (t_k = 1 - r_k for linear).
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from .._internal.checks import check_alpha, real_number

CONVENTIONS = ("md4", "loglinear")
# MD4's offset eps (its `MaskingSchedule` default): the default wherever a sampler needs one.
MD4_EPS = 1e-4


def alpha_from_counts(tokens: Any) -> np.ndarray:
    """The grid N_k / n of positive counts per step: float64[T + 1], ends exactly 0 and 1."""
    tokens = np.asarray(tokens, dtype=np.int64)
    n = int(tokens.sum())
    alpha = np.concatenate([[0.0], np.cumsum(tokens) / n])
    alpha[-1] = 1.0
    return alpha


def check_eps(eps: Any) -> float:
    """Check the schedule offset eps: a number in (0, 0.5)."""
    e = real_number(eps, "eps")
    if not 0 < e < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5) (MD4 uses {MD4_EPS:g}), got {eps!r}")
    return e


def check_convention(convention: str) -> str:
    """Check a time convention name: "md4" or "loglinear"."""
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention {convention!r} is unknown; use 'md4' (alpha = (1-2eps) a(t) + eps) "
            "or 'loglinear' (MDLM/SEDD: 1 - alpha = (1-eps)(1 - a(t)))"
        )
    return convention


# --------------------------------------------------------------------------- families a(t)
def parse_alpha_schedule(name: str) -> tuple[str, float]:
    """("linear" | "cosine" | "poly", exponent) from "linear", "cosine" or "polyK" (K > 0)."""
    if name in ("linear", "cosine"):
        return name, 1.0
    match = re.fullmatch(r"poly(\d+(?:\.\d*)?|\.\d+)", str(name))
    if match and float(match.group(1)) > 0:
        return "poly", float(match.group(1))
    raise ValueError(
        f"alpha schedule {name!r} is unknown; use linear, cosine or polyK with K > 0 (e.g. poly2)"
    )


def family_alpha(name: str, t: Any) -> np.ndarray:
    """a(t): the family's revealed fraction at time t in [0, 1], before any eps offset."""
    kind, k = parse_alpha_schedule(name)
    t = np.asarray(t, dtype=np.float64)
    if kind == "linear":
        return 1.0 - t
    if kind == "cosine":
        return 1.0 - np.cos(np.pi / 2 * (1.0 - t))
    return 1.0 - t**k


def family_time(name: str, u: Any) -> np.ndarray:
    """t with a(t) = u, for u in [0, 1] (the inverse of `family_alpha`)."""
    kind, k = parse_alpha_schedule(name)
    u = np.asarray(u, dtype=np.float64)
    if kind == "linear":
        return 1.0 - u
    if kind == "cosine":
        return 1.0 - 2.0 / np.pi * np.arccos(1.0 - u)
    return (1.0 - u) ** (1.0 / k)


# --------------------------------------------------------------------------- conventions
def revealed_fraction(
    t: Any, alpha_schedule: str = "linear", eps: float = MD4_EPS, convention: str = "md4"
) -> np.ndarray:
    """Expected fraction of tokens revealed when a sampler started fully masked at t = 1
    reaches time t: (alpha(t) - eps) / (1 - eps) for MD4, a(t) for the log-linear samplers."""
    a = family_alpha(alpha_schedule, t)
    eps = check_eps(eps)
    if check_convention(convention) == "md4":
        return a * (1.0 - 2.0 * eps) / (1.0 - eps)
    return a


def md4_leftover(eps: float) -> float:
    """Fraction of tokens MD4 leaves masked at t = 0 (filled by its final decode)."""
    eps = check_eps(eps)
    return eps / (1.0 - eps)


def realised_grid(alpha: Any, eps: float = MD4_EPS, convention: str = "md4") -> np.ndarray:
    """The grid a sampler runs when asked for `alpha`: MD4 (convention "md4") reaches only
    1 - eps / (1 - eps) at t = 0 and its final decode reveals the rest, one more step of
    random counts; the log-linear samplers reveal everything at t = 0.

    Returns:
        float64[T + 2] for MD4 (the decode step last), else float64[T + 1] (alpha itself).
    """
    a = check_alpha(alpha)
    if check_convention(convention) == "loglinear":
        return a
    last = 1.0 - md4_leftover(eps)
    if a.size > 2 and a[-2] >= last:
        raise ValueError(
            f"alpha[{a.size - 2}] = {a[-2]:.9g} leaves fewer tokens masked than MD4 leaves at "
            f"t = 0; pass a smaller eps"
        )
    return np.concatenate([a[:-1], [last, 1.0]])


def alpha_to_timesteps(
    alpha: Any, alpha_schedule: str = "linear", eps: float = MD4_EPS, convention: str = "md4"
) -> tuple[np.ndarray, np.ndarray]:
    """Times t_0 = 1 > t_1 > ... > t_T = 0 after which the sampler has revealed alpha_k in
    expectation.

    Args:
        alpha: float[T + 1] revealed fractions from 0 to 1, strictly increasing.
        alpha_schedule: "linear", "cosine" or "polyK".
        eps: the sampler's offset in (0, 0.5); the log-linear times do not depend on it.
        convention: "md4" or "loglinear".

    Returns:
        (t float64[T + 1], dt float64[T] with dt_k = t_{k-1} - t_k > 0).

    Raises:
        ValueError: (MD4) an interior alpha_k leaves fewer tokens masked than MD4 leaves at
            t = 0 (a fraction eps / (1 - eps)); a smaller eps or a larger last step fixes it.
    """
    a = check_alpha(alpha)
    eps = check_eps(eps)
    inner = a[1:-1]
    if check_convention(convention) == "md4":
        u = inner * ((1.0 - eps) / (1.0 - 2.0 * eps))
        bad = np.nonzero(u >= 1.0)[0]
        if bad.size:
            k = int(bad[0]) + 1
            raise ValueError(
                f"alpha[{k}] = {inner[bad[0]]:.9g} leaves fewer tokens masked than MD4 with "
                f"eps = {eps:g} leaves at t = 0 (a fraction {md4_leftover(eps):.3g}); pass a "
                "smaller eps or use a schedule with a larger last step"
            )
    else:
        u = inner
    t = np.concatenate([[1.0], family_time(alpha_schedule, u), [0.0]])
    dt = -np.diff(t)
    if np.any(dt <= 0):
        k = int(np.nonzero(dt <= 0)[0][0]) + 1
        raise ValueError(
            f"steps {k} and {k + 1} map to the same time in float64; the grid is too fine "
            "for this alpha schedule, use fewer steps or the linear family"
        )
    return t, dt


def timesteps_to_alpha(
    t: Any, alpha_schedule: str = "linear", eps: float = MD4_EPS, convention: str = "md4"
) -> np.ndarray:
    """The revealed-fraction grid a sampler realises on times t_0 > ... > t_T (in expectation).

    Interior points are the sampler's revealed fraction at t_k, starting fully masked at t_0;
    the last point is 1 (the last step, with MD4's decode or MDLM's noise removal, reveals the
    rest).
    """
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)):
        raise ValueError(f"t must be a list of at least 2 finite times, got shape {t.shape}")
    if np.any(np.diff(t) >= 0) or t[0] > 1 or t[-1] < 0:
        raise ValueError(
            "t must decrease strictly from t_0 <= 1 to t_T >= 0 (sampling runs from 1 to 0), "
            f"got {t[:3].tolist()} ... {t[-2:].tolist()}"
        )
    start = revealed_fraction(t[0], alpha_schedule, eps, convention)
    inner = revealed_fraction(t[1:-1], alpha_schedule, eps, convention)
    # Started fully masked at t_0: the fraction revealed by t is relative to what t_0 leaves.
    inner = (inner - start) / (1.0 - start)
    return np.concatenate([[0.0], inner, [1.0]])
