"""The best split of T steps across blocks (docs/theory.md §7): each block's KL-vs-steps
frontier, then an exact min-plus dynamic program over blocks.
"""

from __future__ import annotations

import numpy as np

from .._internal.checks import whole_number
from .._internal.precision import float64
from ..curve import BlockProfiles
from ..schedule import Schedule


# --------------------------------------------------------------------------- optimal split
def block_frontiers(blocks: BlockProfiles, max_steps: int | None = None) -> np.ndarray:
    """Each block's optimal KL for 1..max_steps steps: float64[B, max_steps] (default L)."""
    from ._exact import frontier

    max_steps = blocks.block_length if max_steps is None else int(max_steps)
    return np.stack([frontier(p, max_steps) for p in blocks.profiles])


def allocate_steps(frontiers: np.ndarray, steps: int) -> tuple[np.ndarray, float]:
    """The split of `steps` across blocks minimising the total KL (exact DP over blocks).

    best_b(t) = min_{1 <= s <= S} best_{b-1}(t - s) + F_b(s): a min-plus convolution per
    block, O(B T S) with S = frontiers.shape[1].

    Args:
        frontiers: float[B, S], row b holds block b's optimal KL with 1..S steps.
        steps: total T, with B <= T <= B * S.

    Returns:
        (int64[B] steps per block, the total KL in nats).
    """
    f = np.asarray(frontiers, dtype=np.float64)
    num_blocks, width = f.shape
    if not num_blocks <= steps <= num_blocks * width:
        raise ValueError(
            f"steps must be between the number of blocks ({num_blocks}: one step each) and "
            f"{num_blocks * width} (one token per step), got {steps}"
        )
    best = np.full(steps + 1, np.inf)
    best[0] = 0.0
    choices = np.zeros((num_blocks, steps + 1), dtype=np.int64)
    s = np.arange(1, width + 1)
    for b in range(num_blocks):
        t = np.arange(steps + 1)[:, None]
        prev = np.where(t - s >= 0, best[np.clip(t - s, 0, steps)], np.inf)
        total = prev + f[b][None, :]
        choices[b] = s[np.argmin(total, axis=1)]
        best = np.min(total, axis=1)
    split = np.zeros(num_blocks, dtype=np.int64)
    t = steps
    for b in range(num_blocks - 1, -1, -1):
        split[b] = choices[b, t]
        t -= split[b]
    return split, float(best[steps])


@float64
def optimize_blocks(blocks: BlockProfiles, steps: int, *, equal_split: bool = False) -> Schedule:
    """The exact optimal semi-autoregressive schedule with T steps in all.

    Args:
        blocks: per-block curves (B blocks of L tokens).
        steps: total steps T: B <= T <= n; with equal_split, a multiple of B (LLaDA's
            `steps % num_blocks == 0`).
        equal_split: give every block T / B steps (LLaDA's sampler) instead of the optimal
            split; each block still gets its own optimal counts.

    Returns:
        A `Schedule` over all n tokens (blocks concatenated) with method "exact-blocks", the
        exact block KL as expected_kl, and meta "block_length", "steps_per_block",
        "block_kl" (per-block nats) and "equal_split".
    """
    from ._exact import frontier, optimal_schedule

    return solve_blocks(
        blocks, steps, equal_split=equal_split, method="exact-blocks",
        frontier_fn=frontier, schedule_fn=optimal_schedule,
    )


def solve_blocks(blocks: BlockProfiles, steps: int, *, equal_split: bool, method: str,
                 frontier_fn, schedule_fn) -> Schedule:
    """A block schedule from any per-block solver: split T across blocks, solve each block.

    Args:
        blocks: per-block curves.
        steps: total steps T (checked here; a multiple of B with equal_split).
        equal_split: T / B steps per block (LLaDA) instead of the split that merges the
            per-block frontiers exactly (`allocate_steps`).
        method: the returned schedule's method.
        frontier_fn: (EntropyProfile, K) -> float[K], a block's least KL for 1..K steps.
        schedule_fn: (EntropyProfile, t) -> Schedule, a block's best t-step schedule.
    """
    steps = whole_number(steps, "steps")
    num_blocks, length = blocks.num_blocks, blocks.block_length
    if equal_split:
        if steps % num_blocks or not num_blocks <= steps <= blocks.n:
            raise ValueError(
                f"with an equal split, steps must be a multiple of the {num_blocks} blocks "
                f"between {num_blocks} and {blocks.n}, got {steps}"
            )
        split = np.full(num_blocks, steps // num_blocks, dtype=np.int64)
    else:
        frontiers = np.stack([frontier_fn(blocks.profile(b), length) for b in range(num_blocks)])
        split, _ = allocate_steps(frontiers, steps)
    parts = [schedule_fn(blocks.profile(b), int(split[b])) for b in range(num_blocks)]
    block_kl = [float(p.expected_kl) for p in parts]
    tokens = np.concatenate([np.asarray(p.tokens_per_step) for p in parts])
    meta = {
        "block_length": length,
        "steps_per_block": [int(s) for s in split],
        "block_kl": block_kl,
        "equal_split": bool(equal_split),
        "block_curves": blocks.meta.get("source", "custom"),
    }
    if "curve" in parts[0].meta:  # e.g. RAW_CURVE: how the per-block solver read the curves
        meta["curve"] = parts[0].meta["curve"]
    return Schedule(
        tokens_per_step=np.asarray(tokens, np.int64),
        expected_kl=np.float64(sum(block_kl)),
        method=method,
        meta=meta,
    )
