"""theory §1's sampler in JAX: `sample` and the log-likelihood of a sequence under it.

A schedule s_1..s_T reveals s_k positions at step k, each drawn independently from its
conditional given the positions revealed before the step. Step sizes differ, so each
sequence gets one random order of its positions and step k reveals the positions ranked
N_{k-1}..N_k - 1: every step then has the same array shapes (masks instead of gathers) and
the whole loop is one `lax.scan` under `jit`, batched over sequences.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import inverse_cdf, log_or_neg_inf
from .._internal.checks import check_count, check_tokens_per_step
from .._internal.precision import float64
from .._internal.progress import progress
from ..distributed import to_host
from ..estimate import (
    batch_sharding,
    random_orders,
)
from ..schedule import Schedule

ConditionalsFn = Callable[[jax.Array, jax.Array], jax.Array]



# Default batch: about this many float64 conditionals (B * n * V) per step.
BATCH_ELEMENTS = 2**22



@float64
def sample(
    conditionals_fn: ConditionalsFn,
    schedule: Schedule | Any,
    samples: int,
    *,
    key: jax.Array,
    logits: bool = False,
    prompts: Any = None,
    batch_size: int | None = None,
    quiet: bool = True,
) -> jnp.ndarray:
    """Draw `samples` sequences with the T-step sampler of theory §1.

    Args:
        conditionals_fn: (tokens int32[B, n], revealed bool[B, n]) -> float[B, n, V]
            probabilities of every position given the revealed ones (e.g. a distribution's
            `conditionals`), or logits with `logits=True` (a model). It must ignore the
            tokens at unrevealed positions. It is traced under `jit`.
        schedule: a `Schedule` or tokens per step int[T] (each >= 1, summing to n).
        key: JAX PRNG key.
        samples: number of sequences.
        logits: conditionals_fn returns logits rather than probabilities.
        prompts: None, or `samples` prompts (int[samples, P] or a list of token-id lists of any
            lengths) that stay visible while the answer is drawn (theory §12);
            conditionals_fn then sees prompt + answer.
        batch_size: sequences per compiled call (default: about 4M conditional values).
        quiet: no progress bar.

    Returns:
        int32[samples, n] sampled sequences (the answers, without the prompts).

    Example:
        >>> import jax, numpy as np, schedopt
        >>> chain = schedopt.distributions.MarkovChain(0.8 * np.eye(4) + 0.05, n=16)
        >>> x = schedopt.sample(chain.conditionals, [4, 4, 8], samples=3, key=jax.random.key(0))
        >>> x.shape
        (3, 16)
    """
    samples = check_count(samples, "samples")
    steps = schedule_counts(schedule)
    n = int(steps.sum())
    k_order, k_draw = jax.random.split(key)
    tokens = np.zeros((samples, n), np.int32)
    x, _ = _run(conditionals_fn, True, logits, tokens, steps, k_order, k_draw, batch_size, quiet,
                prompts=prompts)
    return jnp.asarray(x)



@float64
def schedule_log_likelihood(
    conditionals_fn: ConditionalsFn,
    tokens: Any,
    schedule: Schedule | Any,
    key: jax.Array,
    *,
    logits: bool = False,
    prompts: Any = None,
    block_length: int | None = None,
    batch_size: int | None = None,
    quiet: bool = True,
) -> np.ndarray:
    """log nu(x): the log-likelihood of each sequence under the T-step sampler (nats).

    For each sequence, one random partition of its positions into the schedule's blocks:
    sum_k sum_{i in block k} log p(x_i | x revealed before step k). Its negative is theory
    §9's T-step NLL; with T = n it is the one-by-one NLL.

    Args:
        conditionals_fn: as in `sample`, or a `schedopt.sources.TokenScorer` (then the
            steps run on the host, one scorer call per step and batch).
        tokens: int[M, n] sequences to score (with prompts, the answers).
        schedule: a `Schedule` or tokens per step int[T].
        key: JAX PRNG key for the partitions.
        logits: conditionals_fn returns logits.
        prompts: None, or M always-visible prompts (see `sample`), never scored.
        block_length: None, or L: semi-autoregressive blocks of L tokens decoded left to
            right (theory §7), each with the earlier blocks revealed; the schedule's steps must
            not cross a block boundary.
        batch_size: sequences per compiled call.
        quiet: no progress bar.

    Returns:
        float64[M] log-likelihoods (nats).
    """
    steps = schedule_counts(schedule)
    x = np.asarray(tokens)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != steps.sum():
        raise ValueError(
            f"tokens has shape {x.shape} but the schedule is for n = {int(steps.sum())}; "
            f"give a non-empty [M, {int(steps.sum())}] array"
        )
    if block_length is not None:
        from ..curve import steps_per_block

        steps_per_block(steps, block_length)  # checks that no step crosses a block boundary
    _, loglik = _run(
        conditionals_fn, False, logits, x.astype(np.int32), steps, key, key, batch_size, quiet,
        prompts=prompts, block_length=block_length,
    )
    return loglik



# --------------------------------------------------------------------------- internals
def schedule_counts(schedule: Schedule | Any) -> np.ndarray:
    s = schedule.tokens_per_step if isinstance(schedule, Schedule) else schedule
    s = np.asarray(s)
    if s.ndim != 1:
        raise ValueError(f"schedule must be a 1-D list of tokens per step, got shape {s.shape}")
    return check_tokens_per_step(s, int(np.sum(s)), "schedule")



def _run(fn, draw, logits, tokens, steps, k_order, k_draw, batch_size, quiet, *, prompts=None,
         block_length=None):
    """Run the sampler on every row; returns (answers int32[M, n], loglik float64[M]).

    Prompt positions get rank -1 (always revealed, never unmasked: `schedopt.sources`);
    rows are grouped by prompt length, one compilation per length.
    """
    from ..sources import block_orders, check_prompts, is_scorer, prompt_groups, with_prompt

    m, n = tokens.shape
    prompt_list = check_prompts(prompts, m)
    order = random_orders(m, n, key=k_order)
    if block_length is not None:
        order = block_orders(order, block_length)
    bounds = np.concatenate([[0], np.cumsum(steps)]).astype(np.int32)
    if is_scorer(fn):
        if draw:
            raise ValueError("a TokenScorer scores answers but cannot draw them; sample with a "
                             "JAX conditionals function")
        return tokens, _scorer_log_likelihood(fn, tokens, order, bounds, prompt_list,
                                              batch_size, quiet)
    x = np.zeros_like(tokens)
    loglik = np.zeros(m)
    groups = prompt_groups(prompt_list, m)
    for g, (idx, prompt) in enumerate(groups):
        full, ranks = with_prompt(prompt, tokens[idx], order[idx])
        key = k_draw if len(groups) == 1 else jax.random.fold_in(k_draw, g)
        out, loglik[idx] = _run_group(fn, draw, logits, full, ranks, steps, key, batch_size, quiet)
        x[idx] = out[:, prompt.shape[1]:]
    return x, loglik



def _run_group(fn, draw, logits, tokens, order, steps, k_draw, batch_size, quiet):
    """The scan over fixed-size batches of rows sharing one length (prompt + answer)."""
    m, length = tokens.shape
    n = int(steps.sum())
    # Pad T to a bucket with empty steps (skipped at run time): one compilation serves
    # every T up to the bucket.
    bucket = max(8, 1 << (int(steps.size) - 1).bit_length())
    bounds = np.full(bucket + 1, n, np.int32)
    bounds[: steps.size + 1] = np.concatenate([[0], np.cumsum(steps)])
    if batch_size is None:
        vocab = vocab_size_of(fn, length)
        batch_size = max(1, min(m, BATCH_ELEMENTS // (length * vocab)))
    sharding, batch = batch_sharding(batch_size, m)
    outs = []
    for start in progress(range(0, m, batch), description="sampling", quiet=quiet):
        idx = np.minimum(np.arange(start, start + batch), m - 1)  # pad by repeating the last
        args = [jax.device_put(a, sharding) for a in (tokens[idx], order[idx])]
        key = jax.random.fold_in(k_draw, start)
        outs.append(_scan_steps(fn, draw, logits, *args, bounds, key))
    x = np.concatenate([to_host(o[0]) for o in outs])[:m]
    loglik = np.concatenate([to_host(o[1]) for o in outs])[:m]
    return x, loglik



def _scorer_log_likelihood(scorer, tokens, order, bounds, prompts, batch_size, quiet):
    """float64[M] sampler log-likelihood from a TokenScorer: one call per batch and step."""
    from ..sources import check_vocabulary

    m, n = tokens.shape
    check_vocabulary(tokens, scorer.vocab_size, what="tokens")
    prompts = prompts if prompts is not None else [np.zeros(0, np.int32)] * m
    batch = max(1, min(int(batch_size or 64), m))
    loglik = np.zeros(m)
    for start in progress(range(0, m, batch), description="scoring", quiet=quiet):
        idx = np.arange(start, min(start + batch, m))
        rows = [prompts[i] for i in idx]
        for k in range(bounds.size - 1):
            revealed = order[idx] < bounds[k]
            new = ~revealed & (order[idx] < bounds[k + 1])
            ce, _ = scorer.token_statistics(rows, tokens[idx], revealed)
            loglik[idx] -= np.where(new, np.asarray(ce, np.float64), 0.0).sum(axis=1)
    return loglik



def vocab_size_of(fn, n: int) -> int:
    shape = jax.eval_shape(
        fn, jax.ShapeDtypeStruct((1, n), jnp.int32), jax.ShapeDtypeStruct((1, n), jnp.bool_)
    ).shape
    if len(shape) != 3 or shape[:2] != (1, n):
        raise ValueError(
            f"conditionals_fn returned shape {tuple(shape)} for tokens of shape (1, {n}); it "
            f"must return shape (1, {n}, V)"
        )
    return int(shape[2])



@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _scan_steps(fn, draw, logits, tokens, order, bounds, key):
    """The T-step loop for one batch.

    Args:
        fn: the conditionals function; draw: sample new tokens (True) or score the given
            ones (False); logits: fn returns logits.
        tokens: int32[B, n] (ignored where not yet revealed when drawing).
        order: int32[B, n], each position's rank in its sequence's random order.
        bounds: int32[T + 1] cumulative counts N_0 = 0, ..., N_T = n; steps with
            N_k = N_{k-1} (padding) are skipped without calling fn.

    Returns:
        (tokens int32[B, n], log-likelihood float64[B] of the tokens under the sampler).
    """

    def reveal(carry, k):
        x, loglik = carry
        revealed = order < bounds[k]
        new = (order >= bounds[k]) & (order < bounds[k + 1])
        out = fn(x, revealed)
        logp = jax.nn.log_softmax(out, axis=-1) if logits else log_or_neg_inf(out)
        if draw:
            u = jax.random.uniform(jax.random.fold_in(key, k), x.shape)
            x = jnp.where(new, inverse_cdf(u, jnp.exp(logp)), x)
        picked = jnp.take_along_axis(logp, x[..., None], axis=-1)[..., 0]
        loglik = loglik + jnp.sum(jnp.where(new, picked, 0.0), axis=-1).astype(float)
        return x, loglik

    def step(carry, k):
        carry = jax.lax.cond(bounds[k] < bounds[k + 1], reveal, lambda c, _: c, carry, k)
        return carry, None

    init = (tokens, jnp.zeros(tokens.shape[0], float))
    (x, loglik), _ = jax.lax.scan(step, init, jnp.arange(bounds.shape[0] - 1))
    return x, loglik
