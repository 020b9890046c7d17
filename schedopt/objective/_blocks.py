"""The exact expected KL of a block schedule (docs/theory.md §7): the sum of the per-block
theory §3 KLs, each on its block's own curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .._internal.checks import check_tokens_per_step
from ..curve import BlockProfiles, steps_per_block
from ._divergence import expected_kl


def block_expected_kl(blocks: BlockProfiles, tokens_per_step: Any) -> float:
    """The exact expected KL (nats) of a block schedule: the sum of per-block theory §3 KLs."""
    s = check_tokens_per_step(tokens_per_step, blocks.n)
    split = steps_per_block(s, blocks.block_length)
    bounds = np.concatenate([[0], np.cumsum(split)])
    return float(
        sum(
            expected_kl(blocks.profile(b), s[bounds[b] : bounds[b + 1]])
            for b in range(blocks.num_blocks)
        )
    )
