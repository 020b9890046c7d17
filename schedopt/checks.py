"""Argument checks shared by every public function: one behaviour, one message style.

Whole numbers may be Python or numpy integers, or floats with an integral value (2.0, as JSON
and argparse produce them); 2.5, booleans, strings, NaN and infinities are refused with one
sentence that names the argument, its value and the fix.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def whole_number(value: Any, name: str, *, minimum: int | None = None,
                 maximum: int | None = None, unit: str = "") -> int:
    """`value` as an int, after checking that it is a whole number in [minimum, maximum].

    Args:
        value: the argument.
        name: its name, for the message.
        minimum, maximum: inclusive bounds (None: unbounded).
        unit: what is counted, for the message ("tokens").
    """
    ok = not isinstance(value, bool | np.bool_) and isinstance(value, int | float | np.number)
    if ok and not isinstance(value, int | np.integer):
        ok = math.isfinite(float(value)) and float(value).is_integer()
    what = f"a whole number of {unit}" if unit else "a whole number"
    if minimum is not None and maximum is not None:
        what += f" between {minimum} and {maximum}"
    elif minimum is not None:
        what += f" >= {minimum}"
    elif maximum is not None:
        what += f" <= {maximum}"
    if not ok:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    value = int(value)
    low = -math.inf if minimum is None else minimum
    high = math.inf if maximum is None else maximum
    if not low <= value <= high:
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def check_steps(steps: Any, n: int) -> int:
    """A step budget T: a whole number in [1, n]."""
    steps = whole_number(steps, "steps")
    if not 1 <= steps <= n:
        raise ValueError(
            f"steps must be between 1 and n = {n} (each step unmasks at least one token), "
            f"got {steps}"
        )
    return steps


def check_tokens_per_step(tokens_per_step: Any, n: int, what: str = "tokens_per_step"):
    """A concrete schedule: positive whole numbers summing to n. Returns int64[..., T]."""
    try:
        s = np.asarray(tokens_per_step)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of token counts") from None
    if s.ndim < 1 or s.shape[-1] < 1:
        raise ValueError(f"{what} must be a non-empty list of token counts, got shape {s.shape}")
    if s.dtype == bool or (s.dtype == object and any(isinstance(v, bool) for v in s.ravel())):
        raise ValueError(f"{what} holds true/false values; give whole numbers of tokens")
    if not (np.issubdtype(s.dtype, np.integer)
                               or np.issubdtype(s.dtype, np.floating)):
        raise ValueError(f"{what} must hold whole numbers of tokens, got {s.tolist()!r}")
    if not np.issubdtype(s.dtype, np.integer):
        if not (np.all(np.isfinite(s)) and np.all(s == np.round(s))):
            raise ValueError(f"{what} must hold whole numbers of tokens, got {s.tolist()}")
    s = s.astype(np.int64)
    if np.any(s < 1):
        raise ValueError(
            f"{what} has a step with {int(s.min())} tokens; every step must unmask at least 1"
        )
    totals = s.sum(axis=-1)
    if np.any(totals != n):
        bad = int(np.ravel(totals)[np.ravel(totals != n)][0])
        raise ValueError(
            f"{what} sums to {bad} tokens but the profile has n = {n}; "
            "the steps must unmask every position exactly once"
        )
    return s

