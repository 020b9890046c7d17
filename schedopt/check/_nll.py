"""Judging a schedule on held-out data: the T-step negative log-likelihood (theory §9, 11).

For each held-out sequence x, one random order of its positions splits them into the
schedule's blocks (block k = the positions ranked N_{k-1}..N_k - 1), and

    NLL_T(x) = - sum_k sum_{i in block k} log p_theta(x_i | x_{first N_{k-1} positions}),

the model's own conditionals given what the sampler would have revealed before step k. Its
mean over sequences and orders is H(data) + KL(data || T-step sampler), model error included.
With one token per step (T = n) it is the any-order one-by-one NLL; the excess of a schedule
over it is exactly `expected_kl` of the held-out cross-entropy curve c (theory §11), which is
what makes the data curve the right one to optimize on. Both NLLs use the same order per
sequence, so their difference (the excess) has a much smaller interval than either.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.checks import check_tokens_per_step, whole_number
from .._internal.precision import float64
from .._internal.stats import Z95, standard_error
from ..schedule import Schedule
from ..sources import check_sequences
from ._sampler import schedule_log_likelihood


@dataclasses.dataclass(frozen=True)
class ScheduleNLL:
    """Held-out T-step NLL of one schedule, with its excess over one token per step.

    All values in nats per sequence; stderr is the standard error of the mean over sequences.

    Attributes:
        nll, stderr: mean T-step NLL and its standard error.
        one_by_one, one_by_one_stderr: the same for one token per step (T = n).
        excess, excess_stderr: mean of the per-sequence difference nll - one_by_one (the same
            order for both), the estimate of the schedule's KL for this model and data.
        steps: T.
        sequences: number of held-out sequences M.
        orders: random orders per sequence (per-sequence values are their means).
        forward_passes: model evaluations used (R M (T + n), or R M T when T = n).
        per_sequence: float64[M] T-step NLL of each sequence (mean over its orders), for
            paired comparisons between schedules scored with the same key.
    """

    nll: float
    stderr: float
    one_by_one: float
    one_by_one_stderr: float
    excess: float
    excess_stderr: float
    steps: int
    sequences: int
    orders: int
    forward_passes: int
    per_sequence: np.ndarray = dataclasses.field(compare=False, repr=False)

    @property
    def interval(self) -> tuple[float, float]:
        """95% confidence interval of the T-step NLL."""
        return self.nll - Z95 * self.stderr, self.nll + Z95 * self.stderr

    @property
    def excess_interval(self) -> tuple[float, float]:
        """95% confidence interval of the excess over one token per step."""
        return self.excess - Z95 * self.excess_stderr, self.excess + Z95 * self.excess_stderr

    def to_json(self) -> dict[str, Any]:
        """Everything but `per_sequence`, plus the two intervals, as JSON-able values."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name != "per_sequence"}
        out["interval"] = list(self.interval)
        out["excess_interval"] = list(self.excess_interval)
        return out


@float64
def schedule_nll(
    logits_fn,
    data: Any,
    schedule: Schedule | Any,
    *,
    key: jax.Array,
    prompts: Any = None,
    block_length: int | None = None,
    orders: int = 1,
    batch_size: int | None = None,
    quiet: bool = True,
) -> ScheduleNLL:
    """Held-out T-step NLL of `schedule` with a 95% interval, from the model's conditionals.

    Args:
        logits_fn: (tokens int32[B, n], revealed bool[B, n]) -> logits float[B, n, V]; it
            must ignore tokens at unrevealed positions (e.g. `schedopt.models.logits_fn`); or
            a `schedopt.sources.TokenScorer` such as `schedopt.sources.HFScorer`.
        data: int[M, n] held-out sequences, M >= 2, tokens in 0..V-1 (with prompts, answers).
        schedule: a `Schedule` or tokens per step int[T] summing to n.
        key: JAX PRNG key for the random orders (the same key gives the same orders).
        prompts: None, or M always-visible prompts (int[M, P] or lists of any lengths),
            never scored: the NLL is then of the answers given their prompts (theory §12).
        block_length: None, or L: the semi-autoregressive T-step NLL with blocks of L tokens
            decoded left to right (theory §7); the one-by-one reference uses the same block
            orders, so the excess is what per-block curves predict. Default: the schedule's
            meta "block_length" when it has one.
        orders: random orders per sequence; more orders shrink the part of the interval
            that comes from the orders (the sequences' own spread remains).
        batch_size: sequences per compiled call (default: the sampler's).
        quiet: no progress bar.

    Returns:
        A `ScheduleNLL` (nats per sequence).

    Example:
        >>> import jax, schedopt
        >>> from schedopt.models import MDMConfig, MaskedDiffusionTransformer, logits_fn
        >>> from flax import nnx
        >>> model = MaskedDiffusionTransformer(MDMConfig(5, 8, width=16, depth=1, heads=2),
        ...                                    rngs=nnx.Rngs(0))
        >>> x = jax.random.randint(jax.random.key(0), (16, 8), 0, 5)
        >>> r = schedopt.schedule_nll(logits_fn(model), x, [4, 4], key=jax.random.key(1))
        >>> r.steps, r.sequences
        (2, 16)
    """
    return schedules_nll(logits_fn, data, [schedule], key=key, prompts=prompts,
                         block_length=block_length, orders=orders, batch_size=batch_size,
                         quiet=quiet)[0]


@float64
def schedules_nll(
    logits_fn,
    data: Any,
    schedules: Sequence[Schedule | Any],
    *,
    key: jax.Array,
    prompts: Any = None,
    block_length: int | None = None,
    orders: int = 1,
    batch_size: int | None = None,
    quiet: bool = True,
) -> list[ScheduleNLL]:
    """`schedule_nll` for several schedules: the same orders for all, one one-by-one pass.

    With blocks every schedule must respect the same block length (its meta "block_length",
    when present, must match).
    """
    from ..sources import check_prompts

    m_rows = np.shape(data)[0] if np.ndim(data) == 2 else 0
    prompt_list = check_prompts(prompts, m_rows) if m_rows else None
    tokens = _check_inputs(logits_fn, data, prompt_list)
    m, n = tokens.shape
    block_length = _common_block_length(schedules, block_length)
    if len(schedules) == 0:
        raise ValueError("schedules is empty; give at least one schedule")
    orders = whole_number(orders, "orders", minimum=1)
    steps = [_tokens_per_step(s, n, i) for i, s in enumerate(schedules)]
    rows = np.tile(tokens, (orders, 1))  # row r * M + i: sequence i, order r
    row_prompts = None if prompt_list is None else prompt_list * orders

    def per_sequence(s: np.ndarray) -> np.ndarray:
        loglik = schedule_log_likelihood(logits_fn, rows, s, key, logits=True,
                                         prompts=row_prompts, block_length=block_length,
                                         batch_size=batch_size, quiet=quiet)
        if not np.all(np.isfinite(loglik)):
            raise ValueError(
                "logits_fn returned NaN or infinite log-probabilities for the data; check the "
                "model (and that it handles fully masked and fully revealed inputs)"
            )
        return -loglik.reshape(orders, m).mean(axis=0)

    reference = per_sequence(np.ones(n, np.int64))
    out = []
    for s in steps:
        nll = reference if s.size == n else per_sequence(s)
        excess = nll - reference
        out.append(ScheduleNLL(
            nll=float(nll.mean()), stderr=standard_error(nll),
            one_by_one=float(reference.mean()), one_by_one_stderr=standard_error(reference),
            excess=float(excess.mean()), excess_stderr=standard_error(excess),
            steps=int(s.size), sequences=m, orders=int(orders),
            forward_passes=orders * m * (int(s.size) + (n if s.size < n else 0)),
            per_sequence=nll,
        ))
    return out


def predicted_excess(estimate, schedule: Schedule | Any, kind: str = "data"
                     ) -> tuple[float, float]:
    """The excess NLL a curve predicts for a schedule (theory §11), with its standard error.

    theory §3's formula sum_k sum_{j in block k} (c_{N_{k-1}} - c_j) on the raw (not
    regularised) curve of `estimate`. It is linear in the curve, so applying it to each
    sequence's curve gives per-sequence predictions, whose spread is the standard error.

    Args:
        estimate: a `schedopt.estimate.CurveEstimate` (from `estimate_curves`).
        schedule: a `Schedule` or tokens per step summing to estimate.n.
        kind: "data" (held-out cross-entropy: predicts `ScheduleNLL.excess`) or "model".

    Returns:
        (mean, stderr) in nats per sequence.
    """
    return estimate.expected_kl(_tokens_per_step(schedule, estimate.n, 0), kind)


def _tokens_per_step(schedule: Schedule | Any, n: int, index: int) -> np.ndarray:
    s = schedule.tokens_per_step if isinstance(schedule, Schedule) else schedule
    s = np.asarray(s)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(
            f"schedule {index} must be a non-empty 1-D list of tokens per step, got shape "
            f"{s.shape}"
        )
    if np.issubdtype(s.dtype, np.number) and s.sum() != n:
        raise ValueError(
            f"schedule {index} unmasks {s.sum()} tokens but the data has n = {n} positions; "
            f"give a schedule for sequences of length {n}"
        )
    return check_tokens_per_step(s, n, f"schedule {index}")


def _common_block_length(schedules: Sequence[Any], block_length: int | None) -> int | None:
    """The block length every schedule is scored with (explicit, or from schedule meta)."""
    found = {int(s.meta["block_length"]) for s in schedules
             if isinstance(s, Schedule) and "block_length" in (s.meta or {})}
    if block_length is None and len(found) > 1:
        raise ValueError(
            f"the schedules were made for different block lengths {sorted(found)}; score "
            "schedules of one block length together"
        )
    if block_length is None:
        return found.pop() if found else None
    if found - {int(block_length)}:
        raise ValueError(
            f"a schedule was made for blocks of {sorted(found)} tokens but block_length is "
            f"{block_length}; score it with its own block length"
        )
    return int(block_length)


def _check_inputs(logits_fn, data: Any, prompts: list[np.ndarray] | None = None) -> np.ndarray:
    """The data as int32[M, n] after checking it against the model's output shape."""
    from ..sources import is_scorer

    x = np.asarray(data)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] == 0:
        raise ValueError(
            f"data must be a 2-D array of at least 2 held-out sequences [M, n], got shape "
            f"{x.shape}; an interval needs two or more sequences"
        )
    if is_scorer(logits_fn):
        return check_sequences(x, length=None, vocab_size=int(logits_fn.vocab_size))
    lengths = {0} if prompts is None else {p.size for p in prompts}
    length = getattr(logits_fn, "length", None)  # set by schedopt.models.logits_fn
    if length is not None and {x.shape[1] + p for p in lengths} != {length}:
        raise ValueError(
            f"data has sequences of length {x.shape[1]} (plus prompts of {sorted(lengths)} "
            f"tokens) but the model takes {length} tokens; use data of the model's sequence "
            "length"
        )
    total = x.shape[1] + min(lengths)
    probe = (jax.ShapeDtypeStruct((1, total), jnp.int32),
             jax.ShapeDtypeStruct((1, total), jnp.bool_))
    try:
        shape = tuple(jax.eval_shape(logits_fn, *probe).shape)
    except (TypeError, ValueError) as e:  # e.g. a model of another length
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"logits_fn fails on sequences of length {total} ({message}); use data of "
            "the model's sequence length"
        ) from None
    if len(shape) != 3 or shape[:2] != (1, total) or shape[2] < 1:
        raise ValueError(
            f"logits_fn returned shape {shape} for tokens of shape (1, {total}); it must "
            f"return logits of shape (1, {total}, V)"
        )
    return check_sequences(x, length=None, vocab_size=shape[2])
