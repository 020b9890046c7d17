"""Baselines and paired comparisons for held-out checks of a schedule.

LLaDA's stock sampler splits the T steps equally over its blocks (steps % num_blocks == 0)
and, inside each block, unmasks floor(L / t) tokens per step with the remainder going to the
first steps (`get_num_transfer_tokens`). A recommendation is worth shipping only if it beats
this on held-out pairs: `paired_difference` compares two schedules scored with the same
orders (`schedopt.check.schedules_nll`), whose per-sequence NLLs are strongly correlated, so the
difference has a much smaller interval than either NLL.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._internal.stats import Z95
from ..schedule import Schedule, uniform_tokens


def llada_stock(n: int, steps: int, block_length: int | None = None) -> Schedule:
    """LLaDA's stock schedule: equal steps per block, uniform counts within each block.

    Args:
        n: answer length (gen_length).
        steps: T; with blocks a multiple of n / block_length.
        block_length: L dividing n, or None for one block (block_length = gen_length).

    Returns:
        A `Schedule` (method "llada-stock"); expected_kl is NaN (no curve given); with blocks,
        meta "block_length" and "steps_per_block".
    """
    length = n if block_length is None else int(block_length)
    if length < 1 or n % length:
        raise ValueError(f"block_length {length} does not divide the answer length n = {n}; "
                         "use a divisor of n")
    blocks = n // length
    if isinstance(steps, bool) or int(steps) != steps or steps % blocks or not (
        blocks <= steps <= n
    ):
        raise ValueError(
            f"LLaDA needs steps to be a multiple of the {blocks} blocks between {blocks} and "
            f"{n}, got {steps}"
        )
    per_block = int(steps) // blocks
    tokens = np.tile(uniform_tokens(length, per_block), blocks)
    meta = {} if block_length is None else {"block_length": length,
                                            "steps_per_block": [per_block] * blocks}
    return Schedule(tokens_per_step=jnp.asarray(tokens), expected_kl=jnp.asarray(float("nan")),
                    method="llada-stock", meta=meta)


def paired_difference(nll: np.ndarray, reference: np.ndarray) -> tuple[float, float, float]:
    """Mean of the per-sequence difference nll - reference, and its 95% interval (nats).

    Args:
        nll, reference: float[M] per-sequence NLLs scored with the same orders
            (`ScheduleNLL.per_sequence`).

    Returns:
        (mean, low, high); negative means `nll`'s schedule is better.
    """
    d = np.asarray(nll, np.float64) - np.asarray(reference, np.float64)
    if d.ndim != 1 or d.size < 2:
        raise ValueError(f"need per-sequence NLLs of two or more sequences, got shape {d.shape}")
    half = Z95 * d.std(ddof=1) / math.sqrt(d.size)
    return float(d.mean()), float(d.mean() - half), float(d.mean() + half)
