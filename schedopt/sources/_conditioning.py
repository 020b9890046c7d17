"""Prompts that stay visible, and models scored on the device (theory §12).

An instruct model generates an n-token answer given a prompt that is always visible. Every
curve, KL and NLL is then conditional on the prompt and averaged over prompts: the answer's
positions are the only ones masked, revealed and scored. schedopt represents this by giving
the prompt's positions the rank -1 in each sequence's random order: "revealed" is always
`rank < count`, so the prompt is revealed at every count and never among the positions a
step unmasks or a statistic averages over. The kernels that estimate curves and run the
sampler need no other change.

Prompts may differ in length. A JAX `logits_fn` sees each prompt length as one shape (one
compilation per distinct length), so rows are grouped by prompt length. A `TokenScorer` (a
PyTorch or Hugging Face model behind `schedopt.sources`) takes a ragged batch itself, pads it and
passes an attention mask, and returns only per-position statistics [B, n], never logits.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

PROMPT_RANK = -1  # the rank of a prompt position: below every revealed count, never unmasked


@runtime_checkable
class TokenScorer(Protocol):
    """A model that scores answers given prompts on its own device.

    Attributes:
        vocab_size: V; answer tokens must lie in 0..V-1.

    `token_statistics(prompts, answers, revealed)` takes a list of B prompts (int arrays of any
    lengths, possibly empty), answers int[B, n] and revealed bool[B, n] (answer positions the
    model may see; the others are masked), and returns float64 arrays [B, n]:
    the cross-entropy -log p(answer_i | prompt, revealed answer tokens) and the predictive
    entropy at every answer position (nats). Values at revealed positions are ignored.
    """

    vocab_size: int

    def token_statistics(
        self, prompts: Sequence[np.ndarray], answers: np.ndarray, revealed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


def is_scorer(fn: Any) -> bool:
    """Whether `fn` is a `TokenScorer` rather than a JAX logits function."""
    return isinstance(fn, TokenScorer)


def check_vocabulary(tokens: np.ndarray, vocab_size: int, *, what: str = "data",
                     model: str = "the model") -> None:
    """Refuse token ids the model cannot predict, in one sentence naming both sizes."""
    if tokens.size and int(tokens.max()) >= vocab_size:
        raise ValueError(
            f"{what} holds token {int(tokens.max())} but {model} predicts only "
            f"V = {vocab_size} values; tokens must lie in 0..{vocab_size - 1}"
        )


def check_prompts(prompts: Any, m: int) -> list[np.ndarray] | None:
    """Prompts as a list of M int32 arrays (None stays None).

    Args:
        prompts: None; an int array [M, P] (every prompt P tokens); or a sequence of M 1-D
            int arrays of any lengths (0 allowed: no prompt for that answer).
        m: number of answers M.

    Raises:
        ValueError: wrong count, not 1-D, not whole numbers, or negative ids.
    """
    if prompts is None:
        return None
    if isinstance(prompts, np.ndarray) and prompts.ndim == 2:
        rows = list(prompts)
    elif isinstance(prompts, np.ndarray) or isinstance(prompts, str | bytes):
        raise ValueError(
            f"prompts must be an int array [M, P] or a list of M token-id lists, got "
            f"{type(prompts).__name__} of shape {np.shape(prompts)}"
        )
    else:
        rows = list(prompts)
    if len(rows) != m:
        raise ValueError(
            f"prompts has {len(rows)} entries but data has {m} answers; give one prompt per "
            "answer (an empty list for none)"
        )
    out = []
    for i, row in enumerate(rows):
        p = np.asarray(row)
        if p.size == 0:
            out.append(np.zeros(0, np.int32))
            continue
        if p.ndim != 1:
            raise ValueError(
                f"prompt {i} has shape {p.shape}; each prompt must be a 1-D list of ids"
            )
        if not np.issubdtype(p.dtype, np.integer) and not (
            np.issubdtype(p.dtype, np.number) and np.all(p == np.round(p))
        ):
            raise ValueError(f"prompt {i} must hold whole-number token ids, got dtype {p.dtype}")
        if p.min() < 0:
            raise ValueError(f"prompt {i} holds token {int(p.min())}; token ids must be >= 0")
        out.append(p.astype(np.int32))
    return out


def prompt_groups(prompts: list[np.ndarray] | None, m: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Rows grouped by prompt length, for models that compile one shape per length.

    Returns:
        [(row indices int64[k], prompts int32[k, P])], one entry per distinct length P, in
        order of first appearance; [(all rows, int32[M, 0])] when prompts is None.
    """
    if prompts is None:
        return [(np.arange(m), np.zeros((m, 0), np.int32))]
    lengths = np.asarray([p.size for p in prompts])
    groups = []
    for length in dict.fromkeys(lengths.tolist()):
        idx = np.nonzero(lengths == length)[0]
        groups.append((idx, np.stack([prompts[i] for i in idx]).reshape(idx.size, length)))
    return groups


def with_prompt(prompt: np.ndarray, tokens: np.ndarray, order: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray]:
    """Prepend prompts to answers and give the prompt positions rank -1 (always revealed).

    Args:
        prompt: int[k, P] prompts (P may be 0).
        tokens: int[k, n] answers.
        order: int[k, n] rank of each answer position in its random order.

    Returns:
        (int32[k, P + n] tokens, int32[k, P + n] ranks).
    """
    k, p = prompt.shape
    ranks = np.full((k, p), PROMPT_RANK, np.int32)
    return (np.concatenate([prompt, tokens], axis=1).astype(np.int32),
            np.concatenate([ranks, order], axis=1).astype(np.int32))


def block_orders(orders: np.ndarray, block_length: int) -> np.ndarray:
    """Random orders made semi-autoregressive: block b's positions take ranks bL..bL+L-1.

    Revealing the first N ranks then reveals every earlier block and, inside the current block,
    a uniformly random subset (LLaDA's blocks decode left to right, theory §7). Within each block
    the positions keep the relative order they have in `orders`, so the result is still uniform.

    Args:
        orders: int[M, n] uniformly random ranks (`schedopt.estimate.random_orders`).
        block_length: L dividing n.

    Returns:
        int32[M, n].
    """
    m, n = orders.shape
    blocks = n // block_length
    within = np.argsort(np.argsort(orders.reshape(m, blocks, block_length), axis=2), axis=2)
    return (within + block_length * np.arange(blocks)[None, :, None]).reshape(m, n).astype(
        np.int32
    )


def masked_row_means(ce: np.ndarray, entropy: np.ndarray, masked: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row: mean cross-entropy and entropy over the masked positions (float64), and NaN flags.

    The host-side twin of `schedopt.estimate.masked_means` for statistics a `TokenScorer`
    already reduced on its device.
    """
    ce = np.asarray(ce, np.float64)
    entropy = np.asarray(entropy, np.float64)
    count = masked.sum(axis=1)
    bad = np.any(np.isnan(np.where(masked, ce, 0.0)) | np.isnan(np.where(masked, entropy, 0.0)),
                 axis=1)
    return (np.where(masked, ce, 0.0).sum(axis=1) / count,
            np.where(masked, entropy, 0.0).sum(axis=1) / count, bad)
