"""Semi-autoregressive blocks (LLaDA's block_length): per-block curves, frontiers, step split.

docs/theory.md §7. The n positions are cut into B = n / L contiguous blocks of L tokens that
decode left to right; block b runs its own schedule with every earlier block revealed and every
later block still masked. By the chain rule the expected KL is the sum over blocks of theory §3
applied to the block's own curve

    H^b_j = E_{S in block b, |S| = j} H(X_S | X_{blocks < b}),   j = 0..L,

so the best split of T steps across blocks is a min-plus convolution of the per-block
KL-vs-steps frontiers, solved exactly by a dynamic program over blocks.

A block schedule is stored as an ordinary `Schedule` over all n tokens whose steps never cross
a block boundary, with meta "block_length" and "steps_per_block"; `schedopt export --format
counts --block-length L` turns it into the [num_blocks, max_steps] matrix samplers use.
"""


from __future__ import annotations

import itertools
import math
import os
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import struct

from .._internal import io as _io
from .._internal.checks import check_tokens_per_step, shown, whole_number
from .._internal.precision import float64
from ._profile import EntropyProfile

BLOCK_PROFILES_FORMAT = "schedopt.block_profiles"


VERSION = 1


# Enumerating subsets of a block costs 2^L joint-table marginals per block.
MAX_TABLE_BLOCK_LENGTH = 16


def check_block_length(block_length: Any, n: int) -> int:
    """Check a block length: a whole number >= 1 that divides n."""
    length = whole_number(block_length, "block_length", minimum=1, unit="tokens")
    if n % length:
        raise ValueError(
            f"block_length {length} does not divide the sequence length n = {n}; "
            f"use a divisor of {n} (LLaDA requires gen_length % block_length == 0)"
        )
    return length


@struct.dataclass
class BlockProfiles:
    """Per-block entropy curves H^b_0..H^b_L (each block given all earlier blocks revealed).

    Attributes:
        entropy: float64[B, L + 1], row b is block b's curve in nats (entropy[:, 0] == 0).
        stderr: float64[B, L] or None: standard error of each block's g when estimated.
        meta: free-form metadata ("source": "table", "estimate", "sequence-slice", ...).
    """

    entropy: jnp.ndarray
    stderr: jnp.ndarray | None = None
    meta: dict = struct.field(pytree_node=False, default_factory=dict)

    @property
    def num_blocks(self) -> int:
        return int(self.entropy.shape[0])

    @property
    def block_length(self) -> int:
        return int(self.entropy.shape[1]) - 1

    @property
    def n(self) -> int:
        """Total sequence length B * L."""
        return self.num_blocks * self.block_length

    def profile(self, b: int) -> EntropyProfile:
        """Block b's curve as an `EntropyProfile` over its L tokens."""
        stderr = None if self.stderr is None else self.stderr[b]
        return EntropyProfile(entropy=self.entropy[b], stderr=stderr, meta={"block": b})

    @property
    def profiles(self) -> list[EntropyProfile]:
        return [self.profile(b) for b in range(self.num_blocks)]

    @classmethod
    def from_profiles(cls, profiles: list[EntropyProfile], meta: dict | None = None):
        """Stack per-block profiles of equal length (block 0 first)."""
        if not profiles:
            raise ValueError("profiles is empty; give one EntropyProfile per block")
        lengths = {p.n for p in profiles}
        if len(lengths) != 1:
            raise ValueError(
                f"every block must have the same length, got lengths {sorted(lengths)}; "
                "LLaDA-style blocks are equal"
            )
        entropy = np.stack([np.asarray(p.entropy, np.float64) for p in profiles])
        stderr = None
        if all(p.stderr is not None for p in profiles):
            stderr = np.stack([np.asarray(p.stderr, np.float64) for p in profiles])
        return cls(entropy=entropy, stderr=stderr, meta=dict(meta or {}))

    @classmethod
    def from_sequence_profile(cls, profile: EntropyProfile, block_length: int) -> BlockProfiles:
        """Blocks read off the whole-sequence curve: H^b_j = H_{bL + j} - H_{bL}.

        Exact for exchangeable laws (where H(X_S | X_R) depends only on |S| and |R|: mixtures
        of i.i.d. tokens, parity, codes); for other laws an approximation that ignores where
        the revealed tokens sit. Estimate per-block curves (`estimate_block_profiles`) when
        the order matters.
        """
        length = check_block_length(block_length, profile.n)
        h = np.asarray(profile.entropy, dtype=np.float64)
        starts = np.arange(0, profile.n, length)
        rows = h[starts[:, None] + np.arange(length + 1)] - h[starts][:, None]
        stderr = None
        if profile.stderr is not None:
            se = np.asarray(profile.stderr, dtype=np.float64)
            stderr = np.asarray(se.reshape(-1, length), np.float64)
        meta = {"source": "sequence-slice", **profile.meta}
        return cls(entropy=np.asarray(rows, np.float64), stderr=stderr, meta=meta)

    # ----------------------------------------------------------------- file io
    def to_json(self) -> dict:
        out = {
            **_io.header(BLOCK_PROFILES_FORMAT, VERSION),
            "n": self.n,
            "block_length": self.block_length,
            "num_blocks": self.num_blocks,
            "unit": "nats",
            "entropy": np.asarray(self.entropy, dtype=np.float64).tolist(),
        }
        if self.stderr is not None:
            out["stderr"] = np.asarray(self.stderr, dtype=np.float64).tolist()
        if self.meta:
            out["meta"] = self.meta
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the block curves atomically as JSON (format `schedopt.block_profiles`)."""
        _io.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, *, check: bool = True) -> BlockProfiles:
        """Read a `schedopt.block_profiles` version 1 file (each row checked as a profile)."""
        obj = _io.read_json(path, "block profiles")
        obj = _io.check_format(obj, path, BLOCK_PROFILES_FORMAT, VERSION)
        _io.check_fields(obj, path, _io.BLOCK_PROFILES_FIELDS, "schedopt.block_profiles file")
        _io.require_keys(obj, path, ("entropy",))
        where = repr(str(path))
        if obj.get("unit", "nats") not in ("nats", "bits"):
            raise ValueError(f"{where}: unit is {shown(obj['unit'])}; use \"nats\" or \"bits\"")
        scale = math.log(2) if obj.get("unit") == "bits" else 1.0
        entropy = _io.number_array(obj["entropy"], f"{where}: entropy", ndim=2) * scale
        if entropy.shape[1] < 2:
            raise ValueError(
                f"{where}: entropy has shape {entropy.shape}; expected "
                "[num_blocks, block_length + 1] with block_length >= 1"
            )
        stderr = obj.get("stderr")
        if stderr is not None:
            stderr = _io.number_array(stderr, f"{where}: stderr", ndim=2, nonnegative=True)
            if stderr.shape != (entropy.shape[0], entropy.shape[1] - 1):
                raise ValueError(
                    f"{where}: stderr has shape {stderr.shape} but entropy has "
                    f"{entropy.shape}; give one row of {entropy.shape[1] - 1} per block"
                )
            stderr = stderr * scale
        # The sizes a file states must be the ones its curves have: a file edited by hand
        # (blocks dropped, or n changed) would otherwise be read as something else silently.
        sizes = {"num_blocks": entropy.shape[0], "block_length": entropy.shape[1] - 1,
                 "n": entropy.shape[0] * (entropy.shape[1] - 1)}
        for name, size in sizes.items():
            if name in obj:
                stated = whole_number(obj[name], f"{where}: {name}", minimum=1)
                if stated != size:
                    raise ValueError(
                        f"{where}: {name} is {stated} but the entropy rows give {size} "
                        f"({entropy.shape[0]} blocks of {entropy.shape[1] - 1} tokens); fix "
                        f"or drop the {name} field"
                    )
        meta = _io.meta_field(obj, path)
        rows = []
        for b, row in enumerate(entropy):
            try:
                se = None if stderr is None else np.append(stderr[b], 0.0)
                rows.append(EntropyProfile.from_entropy(row, stderr=se, check=check))
            except ValueError as e:
                raise ValueError(f"{where}, block {b}: {e}") from None
        return cls.from_profiles(rows, meta=meta)


def load_block_profiles(path: str | os.PathLike, block_length: int, regularize: bool = False):
    """Per-block curves from a file: a `schedopt.block_profiles` file, or a plain profile
    sliced into blocks (`BlockProfiles.from_sequence_profile`)."""
    obj = _io.read_json(path, "profile")
    if isinstance(obj, dict) and obj.get("format") == BLOCK_PROFILES_FORMAT:
        blocks = BlockProfiles.load(path, check=not regularize)
        if regularize:
            blocks = BlockProfiles.from_profiles(
                [p.regularize() for p in blocks.profiles], meta=blocks.meta
            )
        if blocks.block_length != int(block_length):
            raise ValueError(
                f"{str(path)!r} holds blocks of {blocks.block_length} tokens but block_length "
                f"is {block_length}; pass --block-length {blocks.block_length}"
            )
        return blocks
    profile = EntropyProfile.load(path, check=not regularize)
    profile = profile.regularize() if regularize else profile
    return BlockProfiles.from_sequence_profile(profile, block_length)


# --------------------------------------------------------------------------- exact curves
@float64
def block_profiles_from_table(joint: Any, block_length: int) -> BlockProfiles:
    """Exact per-block curves of an explicit joint table, by enumeration.

    Args:
        joint: float[V, ..., V] (n axes) joint probabilities summing to 1, or any object with a
            `table()` method returning one (e.g. `schedopt.distributions.Table`).
        block_length: L, dividing n, at most MAX_TABLE_BLOCK_LENGTH.

    Returns:
        `BlockProfiles` with H^b_j = mean over j-subsets S of block b of
        H(X_{<b}, X_S) - H(X_{<b}).
    """
    table = np.asarray(joint.table() if hasattr(joint, "table") else joint, dtype=np.float64)
    n = table.ndim
    if n < 1 or np.any(table < 0) or not math.isclose(float(table.sum()), 1.0, abs_tol=1e-9):
        raise ValueError(
            "joint must be a table of non-negative probabilities summing to 1 with one axis "
            f"per position, got shape {table.shape} and total {float(table.sum()):.6g}"
        )
    length = check_block_length(block_length, n)
    if length > MAX_TABLE_BLOCK_LENGTH:
        raise ValueError(
            f"block_length {length} needs 2^{length} subsets per block, above the limit of "
            f"{MAX_TABLE_BLOCK_LENGTH}; use estimate_block_profiles for longer blocks"
        )

    def joint_entropy(axes: tuple[int, ...]) -> float:
        others = tuple(i for i in range(n) if i not in axes)
        p = table.sum(axis=others) if others else table
        p = p[p > 0]
        return float(-np.sum(p * np.log(p)))

    rows = []
    for start in range(0, n, length):
        prefix = tuple(range(start))
        base = joint_entropy(prefix) if prefix else 0.0
        block = range(start, start + length)
        row = [0.0]
        for j in range(1, length + 1):
            subsets = itertools.combinations(block, j)
            row.append(float(np.mean([joint_entropy(prefix + s) - base for s in subsets])))
        rows.append(row)
    return BlockProfiles(entropy=np.asarray(rows, np.float64), meta={"source": "table"})


def steps_per_block(tokens_per_step: Any, block_length: int) -> np.ndarray:
    """How many of a schedule's steps fall in each block; steps must not cross a boundary.

    Args:
        tokens_per_step: int[T] positive counts summing to n.
        block_length: L dividing n.

    Returns:
        int64[n / L].
    """
    s = check_tokens_per_step(tokens_per_step, int(np.sum(tokens_per_step)))
    n = int(s.sum())
    length = check_block_length(block_length, n)
    ends = np.cumsum(s)
    starts = ends - s
    first_block, last_block = starts // length, (ends - 1) // length
    crossing = np.nonzero(first_block != last_block)[0]
    if crossing.size:
        k = int(crossing[0])
        raise ValueError(
            f"step {k + 1} unmasks tokens {int(starts[k])}..{int(ends[k]) - 1}, across the block "
            f"boundary at {int(last_block[k]) * length}; optimize with --block-length {length} "
            "to get a schedule whose steps stay inside blocks"
        )
    return np.bincount(first_block, minlength=n // length).astype(np.int64)
