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

import functools
import itertools
import math
import os
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from . import _io
from .checks import check_tokens_per_step, shown, whole_number
from .divergence import expected_kl
from .estimate import check_data, check_kind, masked_means
from .keys import key_bits
from .precision import float64
from .profile import EntropyProfile
from .schedules import Schedule

FORMAT = "schedopt.block_profiles"
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
            "format": FORMAT,
            "version": VERSION,
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
        obj = _io.check_format(_io.read_json(path, "block profiles"), path, FORMAT, VERSION)
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
    if isinstance(obj, dict) and obj.get("format") == FORMAT:
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


# --------------------------------------------------------------------------- estimated curves
@float64
def estimate_block_profiles(
    logits_fn: Callable[[jax.Array, jax.Array], jax.Array],
    data: Any,
    block_length: int,
    *,
    key: jax.Array,
    kind: str = "data",
    prompts: Any = None,
    regularize: bool = True,
    batch_size: int = 256,
    jit: bool = True,
    quiet: bool = True,
    checkpoint: Any = None,
) -> BlockProfiles:
    """Monte Carlo per-block curves: earlier blocks revealed, later ones masked.

    For each block b and sequence, one random order of the block's positions serves every
    revealed count j = 0..L-1 (common random numbers); the block's first j positions in that
    order and all earlier blocks are revealed, everything else masked, and g^b_j is the mean
    over the block's still-masked positions of -log p(x_i | revealed) (kind "data", the
    held-out cross-entropy curve of theory §11) or of the predictive entropy (kind "model"),
    the same statistics as `schedopt.estimate_profile`. Each block's curve is then
    regularised (weighted isotonic projection of g) unless `regularize=False`.

    Args:
        logits_fn: (tokens int32[B, n], revealed bool[B, n]) -> logits float[B, n, V];
            unrevealed positions of `tokens` hold 0 and must be ignored. Or a
            `schedopt.conditioning.TokenScorer`.
        data: int[M, n] held-out sequences (M >= 2), or samples of a known law; with prompts,
            the answers.
        block_length: L, dividing n.
        key: PRNG key for the orders.
        kind: "data" or "model".
        prompts: None, or M always-visible prompts (int[M, P] or lists of any lengths): each
            block's curve is then conditioned on the prompt and the earlier blocks (theory §12).
        regularize: project each block's g onto non-increasing sequences. Pass False to keep
            the raw curve, which is the one whose KL formula predicts held-out NLL exactly
            (theory §11); optimize a raw curve with `schedopt.unregularized`.
        batch_size: rows per logits_fn call (the last batch is padded: one compilation).
        jit: compile logits_fn (False for functions JAX cannot trace).
        quiet: no progress bar.
        checkpoint: None, or a file where finished blocks are saved; a rerun with the same
            arguments resumes from it (`schedopt.resume`).

    Returns:
        `BlockProfiles` with per-block standard errors (across sequences); meta records the
        number of forward passes (M * n).
    """
    from .conditioning import check_prompts
    from .resume import Checkpoint

    check_kind(kind)
    x = check_data(data)
    prompt_list = check_prompts(prompts, x.shape[0])
    if x.shape[0] < 2:
        raise ValueError(f"data has {x.shape[0]} sequence; give at least 2 for standard errors")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    m, n = x.shape
    length = check_block_length(block_length, n)
    keys = jax.random.split(key, n // length)
    column = 0 if kind == "data" else 1
    store = Checkpoint.open(checkpoint, f"blocks{length}", data=x, prompts=prompt_list,
                            key=key_bits(key), kind=np.asarray(column), batch_size=batch_size)
    profiles = []

    def block_statistics(b):
        start = b * length
        order = jax.vmap(lambda k: jax.random.permutation(k, length))(jax.random.split(keys[b], m))
        rank = np.argsort(np.asarray(order), axis=1)  # rank[i] = place of position i in order
        j = np.arange(length)
        # Row (sequence, j): the prefix and the block's first j positions in order revealed.
        revealed = np.zeros((m, length, n), dtype=bool)
        revealed[:, :, :start] = True
        revealed[:, :, start : start + length] = rank[:, None, :] < j[None, :, None]
        scored = np.zeros(n, dtype=bool)
        scored[start : start + length] = True
        return _prompted_block_statistics(
            logits_fn, x, revealed.reshape(-1, n), scored, prompt_list, batch_size, jit
        )

    stats_by_block = store.run("block", range(n // length), block_statistics,
                               description="block curves", quiet=quiet)
    for stats in stats_by_block:
        g = stats[column].reshape(m, length)
        stderr = g.std(axis=0, ddof=1) / math.sqrt(m)
        raw = EntropyProfile.from_conditional_entropy(
            g.mean(axis=0), n=length, stderr=stderr, check=False
        )
        profiles.append(raw.regularize() if regularize else raw)
    store.finish()
    meta = {"source": "estimate", "kind": kind, "sequences": m, "forward_passes": m * n,
            "regularized": bool(regularize), "prompted": prompt_list is not None}
    return BlockProfiles.from_profiles(profiles, meta=meta)


def _prompted_block_statistics(logits_fn, x, revealed, scored, prompts, batch_size, jit):
    """(cross-entropy, entropy) per row (sequence, j): x's rows repeat L times in `revealed`.

    A TokenScorer gets ragged prompts directly; a JAX logits_fn gets prompt + answer, with
    the prompt revealed and unscored, one prompt length at a time.
    """
    from .conditioning import check_vocabulary, is_scorer, masked_row_means, prompt_groups

    m, n = x.shape
    reps = revealed.shape[0] // m
    if is_scorer(logits_fn):
        check_vocabulary(x, logits_fn.vocab_size)
        seq = np.repeat(np.arange(m), reps)
        rows = [np.zeros(0, np.int32)] * m if prompts is None else prompts
        ce, ent = np.zeros(seq.size), np.zeros(seq.size)
        for lo in range(0, seq.size, batch_size):
            s = seq[lo:lo + batch_size]
            shown = revealed[lo:lo + batch_size]
            c, e = logits_fn.token_statistics([rows[i] for i in s], x[s], shown)
            c, e, bad = masked_row_means(c, e, ~shown & scored[None, :])
            if bad.any() or not np.all(np.isfinite(c)):
                raise ValueError("the model returned NaN statistics or gave probability 0 to "
                                 "a token in the data; check the model and the data")
            ce[lo:lo + s.size], ent[lo:lo + s.size] = c, e
        return ce, ent
    ce, ent = np.zeros(m * reps), np.zeros(m * reps)
    for idx, prompt in prompt_groups(prompts, m):
        where = (idx[:, None] * reps + np.arange(reps)).ravel()
        p = prompt.shape[1]
        tokens = np.concatenate([np.repeat(prompt, reps, axis=0), np.repeat(x[idx], reps, axis=0)],
                                axis=1)
        shown = np.concatenate([np.ones((where.size, p), bool), revealed[where]], axis=1)
        c, e = _block_statistics(logits_fn, tokens, shown,
                                 np.concatenate([np.zeros(p, bool), scored]), batch_size, jit)
        ce[where], ent[where] = c, e
    return ce, ent


def _block_statistics(logits_fn, tokens, revealed, scored, batch_size, jit):
    """(cross-entropy, entropy) means over each row's masked positions inside `scored`."""
    rows = tokens.shape[0]
    batch = min(batch_size, rows)
    out = []
    for lo in range(0, rows, batch):
        idx = np.arange(lo, lo + batch)
        idx = np.where(idx < rows, idx, 0)  # padding rows repeat row 0 and are dropped
        args = (jnp.asarray(tokens[idx]), jnp.asarray(revealed[idx]), jnp.asarray(scored))
        if jit:
            out.append(_jit_block_rows(logits_fn, *args))
        else:
            shown = jnp.where(args[1], args[0], 0)
            logits = jnp.asarray(logits_fn(shown, args[1]))
            out.append(_masked_block_means(logits, *args))
    ce, ent, bad = (np.concatenate([np.asarray(o[i]) for o in out])[:rows] for i in range(3))
    if bad.any() or not np.all(np.isfinite(ce)):
        raise ValueError(
            "logits_fn returned NaN logits or gave probability 0 to a token in the data; "
            "check the model and that the data matches its vocabulary"
        )
    return ce, ent


def _masked_block_means(logits, tokens, revealed, scored):
    # Positions outside the block count as revealed, so the means run over the block only.
    if logits.ndim != 3 or logits.shape[:2] != tokens.shape:
        raise ValueError(
            f"logits_fn returned shape {logits.shape} for tokens of shape {tokens.shape}; "
            "it must return logits[B, n, V]"
        )
    return masked_means(logits, tokens, revealed | ~scored[None, :])


@functools.partial(jax.jit, static_argnums=0)
def _jit_block_rows(logits_fn, tokens, revealed, scored):
    logits = logits_fn(jnp.where(revealed, tokens, 0), revealed)
    return _masked_block_means(logits, tokens, revealed, scored)


# --------------------------------------------------------------------------- optimal split
def block_frontiers(blocks: BlockProfiles, max_steps: int | None = None) -> np.ndarray:
    """Each block's optimal KL for 1..max_steps steps: float64[B, max_steps] (default L)."""
    from .exact import frontier

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
    from .exact import frontier, optimal_schedule

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
