"""Per-block curves from a model (docs/theory.md §7, §8): Rao-Blackwellised Monte Carlo inside
each block, with every earlier block revealed and every later one masked.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.keys import key_bits
from .._internal.precision import float64
from ..curve import BlockProfiles, EntropyProfile, check_block_length
from ._monte_carlo import check_data, check_kind, masked_means


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
            `schedopt.sources.TokenScorer`.
        data: int[M, n] held-out sequences (M >= 2), or samples of a known law; with prompts,
            the answers.
        block_length: L, dividing n.
        key: PRNG key for the orders.
        kind: "data" or "model".
        prompts: None, or M always-visible prompts (int[M, P] or lists of any lengths): each
            block's curve is then conditioned on the prompt and the earlier blocks (theory §12).
        regularize: project each block's g onto non-increasing sequences. Pass False to keep
            the raw curve, which is the one whose KL formula predicts held-out NLL exactly
            (theory §11); optimize a raw curve with `schedopt.solve`.
        batch_size: rows per logits_fn call (the last batch is padded: one compilation).
        jit: compile logits_fn (False for functions JAX cannot trace).
        quiet: no progress bar.
        checkpoint: None, or a file where finished blocks are saved; a rerun with the same
            arguments resumes from it (`schedopt.estimate`).

    Returns:
        `BlockProfiles` with per-block standard errors (across sequences); meta records the
        number of forward passes (M * n).
    """
    from ..sources import check_prompts
    from ._resume import Checkpoint

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
    from ..sources import check_vocabulary, is_scorer, masked_row_means, prompt_groups

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
