"""Argument checks shared by every public function and every file reader: one behaviour, one
message style.

Whole numbers may be Python or numpy integers, or floats with an integral value (2.0, as JSON
and argparse produce them) up to 2^53, where floats stop being exact; 2.5, booleans, strings,
null, NaN and infinities are refused with one sentence that names the argument, its value
and the fix. Every number is checked as a Python number, before it becomes a numpy array, so
nothing is truncated or wraps around (2^63 overflows int64 silently).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import numpy as np

# Whole numbers given as floats are exact in float64 only up to here.
LARGEST_WHOLE = 2**53
# Memory a profile of n tokens needs per token, at least: its curve, standard errors and the
# solvers' work arrays hold about 16 float64 values per revealed count.
BYTES_PER_TOKEN = 128


def shown(value: Any) -> str:
    """A value as a message shows it: JSON spelling for text, true/false and null, short."""
    if isinstance(value, str | bool | type(None)):
        text = json.dumps(value)
    elif isinstance(value, np.ndarray):
        text = np.array2string(value, threshold=6)
    else:
        text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def is_whole(value: Any) -> bool:
    """True for a Python or numpy integer, or a finite integral float up to 2^53 in size."""
    if isinstance(value, bool | np.bool_):
        return False
    if isinstance(value, int | np.integer):
        return True
    if isinstance(value, float | np.floating):
        return math.isfinite(value) and float(value).is_integer() and abs(value) <= LARGEST_WHOLE
    return False


def whole_number(value: Any, name: str, *, minimum: int | None = None,
                 maximum: int | None = None, unit: str = "") -> int:
    """`value` as an int, after checking that it is a whole number in [minimum, maximum].

    Args:
        value: the argument (a flag's value, or a number read from a file).
        name: its name, for the message ("steps", "'s.json': n").
        minimum, maximum: inclusive bounds (None: unbounded).
        unit: what is counted, for the message ("tokens").
    """
    what = f"a whole number of {unit}" if unit else "a whole number"
    if minimum is not None and maximum is not None:
        what += f" between {minimum} and {maximum}"
    elif minimum is not None:
        what += f" >= {minimum}"
    elif maximum is not None:
        what += f" <= {maximum}"
    if not is_whole(value):
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    value = int(value)
    low = -math.inf if minimum is None else minimum
    high = math.inf if maximum is None else maximum
    if not low <= value <= high:
        raise ValueError(f"{name} must be {what}, got {value}")
    return value


def real_number(value: Any, name: str, *, minimum: float | None = None,
                positive: bool = False, unit: str = "") -> float:
    """`value` as a float, after checking that it is a finite number (>= minimum, or > 0).

    Booleans, text, null, NaN and infinities are refused; so are numbers below `minimum` (a
    negative KL, say) and, with `positive`, zero.
    """
    what = "a positive number" if positive else "a finite number"
    if minimum is not None and not positive:
        what += f" >= {minimum:g}"
    if unit:
        what += f" of {unit}"
    ok = not isinstance(value, bool | np.bool_) and isinstance(value, int | float | np.number)
    if ok:
        try:
            ok = math.isfinite(float(value))
        except OverflowError:  # an int too large for a float
            ok = False
    if ok and positive:
        ok = float(value) > 0
    if ok and minimum is not None:
        ok = float(value) >= minimum
    if not ok:
        raise ValueError(f"{name} must be {what}, got {shown(value)}")
    return float(value)


def expected_kl_field(value: Any, name: str) -> float:
    """An expected KL read from a file: nats >= 0, or null (written for "no finite value").

    A float64 KL of a flat curve can come out a rounding error below 0: down to -1e-9 is
    kept as 0.
    """
    if value is None:
        return math.nan
    try:
        kl = real_number(value, name, unit="nats")
    except ValueError as e:
        raise ValueError(f"{e}; give one number or drop the field") from None
    if kl < -1e-9:
        raise ValueError(
            f"{name} is {kl!r}, but a KL is never negative; recompute it (schedopt evaluate) "
            "or drop the field"
        )
    return max(kl, 0.0)


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the system does not say)."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):
        return None


def check_fits(count: int, name: str, *, bytes_each: int, unit: str, why: str) -> int:
    """Refuse up front a size whose arrays cannot fit in this machine's memory.

    Without it an impossible size attempts the allocation (745 GiB for a profile of 10^11
    tokens) and fails deep inside numpy or XLA with a MemoryError.

    Args:
        count: the size asked for.
        name: the argument, for the message ("--length").
        bytes_each: the memory one unit of `count` needs, at least.
        unit: what `count` counts ("tokens").
        why: what the memory holds, for the message ("its curves").
    """
    memory = memory_bytes()
    if memory is None or count * bytes_each <= memory:
        return count
    raise ValueError(
        f"{name} = {count} {unit} needs about {_bytes(count * bytes_each)} of memory for {why} "
        f"({bytes_each} bytes per {unit.rstrip('s')}), but this machine has {_bytes(memory)}; "
        f"give at most {memory // bytes_each} {unit}"
    )


def _bytes(size: int) -> str:
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20)):
        if size >= scale:
            return f"{size / scale:.3g} {unit}"
    return f"{size} bytes"


def check_steps(steps: Any, n: int, *, name: str = "steps") -> int:
    """A step budget T: a whole number in [1, n] (`name`: the argument, for the message)."""
    steps = whole_number(steps, name)
    if not 1 <= steps <= n:
        raise ValueError(
            f"{name} must be between 1 and n = {n} (each step unmasks at least one token), "
            f"got {steps}"
        )
    return steps


def check_tokens_per_step(tokens_per_step: Any, n: int, what: str = "tokens_per_step"):
    """A concrete schedule: positive whole numbers summing to n. Returns int64[..., T]."""
    if _holds_bool(tokens_per_step):  # np.asarray([True, 2, 3]) is [1, 2, 3]: look first
        raise ValueError(f"{what} holds true/false values; give whole numbers of tokens")
    try:
        s = np.asarray(tokens_per_step)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of token counts") from None
    if s.ndim < 1 or s.shape[-1] < 1:
        raise ValueError(f"{what} must be a non-empty list of token counts, got shape {s.shape}")
    if s.dtype == object and all(is_whole(v) for v in s.ravel()):
        # Python integers beyond int64 (2^70): checked exactly before any cast.
        values = [int(v) for v in s.ravel()]
        if min(values) < 1 or max(values) > n:
            bad = min(values) if min(values) < 1 else max(values)
            raise ValueError(
                f"{what} has a step of {bad} tokens but n = {n}; every step must unmask "
                "between 1 and n tokens, and all steps together n"
            )
        s = np.asarray(values, dtype=np.int64).reshape(s.shape)
    if s.dtype == bool or (s.dtype == object and any(isinstance(v, bool) for v in s.ravel())):
        raise ValueError(f"{what} holds true/false values; give whole numbers of tokens")
    if not (np.issubdtype(s.dtype, np.integer)
                               or np.issubdtype(s.dtype, np.floating)):
        raise ValueError(f"{what} must hold whole numbers of tokens, got {shown(s.tolist())}")
    if not np.issubdtype(s.dtype, np.integer):
        if not (np.all(np.isfinite(s)) and np.all(s == np.round(s))):
            raise ValueError(f"{what} must hold whole numbers of tokens, got {shown(s.tolist())}")
    # Range first, in the array's own dtype: a cast to int64 would wrap 2^63 around, and a
    # sum of huge counts can overflow to exactly n (2^62 * 3 + 2^62 + 4 sums to 4 in int64).
    if np.any(s < 1):
        raise ValueError(
            f"{what} has a step with {shown(s.min().item())} tokens; every step must unmask at "
            "least 1"
        )
    if np.any(s > n):
        raise ValueError(
            f"{what} has a step of {shown(s.max().item())} tokens but n = {n}; "
            "the steps must unmask every position exactly once"
        )
    s = s.astype(np.int64)
    totals = s.sum(axis=-1)
    # The float64 sum is within rounding of the exact one, so it catches an int64 overflow.
    approx = s.sum(axis=-1, dtype=np.float64)
    if np.any(totals != n) or np.any(np.abs(approx - n) > 1e-6 * n):
        rows = s.reshape(-1, s.shape[-1])
        bad = next(sum(int(v) for v in row) for row in rows if sum(int(v) for v in row) != n)
        raise ValueError(
            f"{what} sums to {bad} tokens but the profile has n = {n}; "
            "the steps must unmask every position exactly once"
        )
    return s


def _holds_bool(value: Any) -> bool:
    """Whether a (nested) list or tuple holds a boolean anywhere."""
    if isinstance(value, bool | np.bool_):
        return True
    return isinstance(value, list | tuple) and any(_holds_bool(v) for v in value)


def check_alpha(alpha: Any, what: str = "alpha") -> np.ndarray:
    """Check a concrete grid: float[..., T + 1] from exactly 0 to exactly 1, strictly increasing.

    Returns:
        float64[..., T + 1].
    """
    try:
        a = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a list of numbers, got {alpha!r}") from None
    if a.ndim < 1 or a.shape[-1] < 2:
        raise ValueError(f"{what} needs at least 2 values (0 and 1: one step), got shape {a.shape}")
    if not np.all(np.isfinite(a)) or np.any(a < 0) or np.any(a > 1):
        bad = np.ravel(a)[np.ravel(~(np.isfinite(a) & (a >= 0) & (a <= 1)))][0]
        raise ValueError(
            f"{what} holds {bad}, outside [0, 1]; revealed fractions lie between 0 and 1"
        )
    if np.any(a[..., 0] != 0) or np.any(a[..., -1] != 1):
        raise ValueError(
            f"{what} must start at 0 (nothing revealed) and end at 1 (everything revealed), "
            f"got {float(np.ravel(a[..., 0])[0])} ... {float(np.ravel(a[..., -1])[0])}"
        )
    steps = np.diff(a, axis=-1)
    if np.any(steps <= 0):
        k = int(np.nonzero(np.any(steps.reshape(-1, steps.shape[-1]) <= 0, axis=0))[0][0]) + 1
        raise ValueError(
            f"{what} must be strictly increasing, but {what}[{k}] does not exceed "
            f"{what}[{k - 1}]; every step must reveal a positive expected fraction"
        )
    return a


def check_count(num: Any, name: str) -> int:
    """A number of samples or sequences: a whole number >= 1."""
    return whole_number(num, name, minimum=1)


def check_samples(num: Any, n: int, name: str = "samples") -> int:
    """A number of sampled sequences of n tokens whose tokens, orders and scores fit in
    memory (about 32 bytes per token of each sequence)."""
    num = check_count(num, name)
    return check_fits(num, name, bytes_each=32 * (n + 1), unit="sequences",
                      why=f"{n}-token sequences, their orders and scores")
