"""The entropy-bounded adaptive sampler (EB-sampler): each step reveals the masked positions of
lowest entropy whose entropies before the last sum to at most gamma, and counts the forward
passes each sequence takes.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import inverse_cdf, log_or_neg_inf
from .._internal.checks import check_count
from .._internal.precision import float64
from .._internal.progress import progress
from ..distributed import to_host
from ..estimate import (
    batch_sharding,
)
from ._sampler import BATCH_ELEMENTS, ConditionalsFn, vocab_size_of


# --------------------------------------------------------------------------- adaptive
@dataclasses.dataclass(frozen=True)
class AdaptiveSamples:
    """Sequences drawn by an adaptive sampler, with the forward passes each one cost.

    Attributes:
        tokens: int32[num, n] sampled sequences.
        forward_passes: int32[num] model calls per sequence (its number of steps).
        tokens_per_step: int32[num, n] tokens revealed at each step (zeros after the last).
    """

    tokens: np.ndarray
    forward_passes: np.ndarray
    tokens_per_step: np.ndarray

    @property
    def mean_forward_passes(self) -> float:
        """Average forward passes per sequence."""
        return float(np.mean(self.forward_passes))



@float64
def sample_entropy_bounded(
    conditionals_fn: ConditionalsFn,
    samples: int,
    *,
    length: int,
    gamma: float,
    key: jax.Array,
    logits: bool = False,
    batch_size: int | None = None,
    quiet: bool = True,
) -> AdaptiveSamples:
    """Draw `samples` sequences with the entropy-bounded (EB) adaptive sampler.

    At each step the model gives the conditionals of every masked position; positions are
    sorted by the entropy of their conditional (lowest first, ties broken at random), and the
    longest prefix U with

        sum_{i in U} H(p_i) - max_{i in U} H(p_i) <= gamma

    is revealed, each token drawn independently from its conditional. The left side bounds
    the mutual information among the revealed tokens, the error of drawing them in one step;
    at least one token is revealed per step. gamma = 0 reveals one token per step (several
    only when all but one have zero entropy), in an order that depends on the sample: exact
    sampling for exact conditionals. Larger gamma reveals more per step: fewer forward
    passes, a different count for every sequence.

    Args:
        conditionals_fn: (tokens int32[B, n], revealed bool[B, n]) -> float[B, n, V]
            probabilities (or logits with `logits=True`); traced under `jit`.
        samples: number of sequences.
        length: n, the sequence length.
        gamma: the entropy bound in nats, >= 0.
        key: JAX PRNG key.
        logits: conditionals_fn returns logits rather than probabilities.
        batch_size: sequences per compiled call (default: about 4M conditional values).
        quiet: no progress bar.

    Returns:
        `AdaptiveSamples`: tokens, forward passes per sequence and tokens per step.

    References:
        H. Ben-Hamu, I. Gat, D. Severo, N. Nolte, B. Karrer, "Accelerated Sampling from
        Masked Diffusion Models via Entropy Bounded Unmasking", arXiv 2505.24857 (2025).

    Example:
        >>> import jax, numpy as np, schedopt
        >>> chain = schedopt.distributions.MarkovChain(0.8 * np.eye(4) + 0.05, n=16)
        >>> out = schedopt.check.sample_entropy_bounded(
        ...     chain.conditionals, 3, length=16, gamma=0.0, key=jax.random.key(0))
        >>> out.tokens.shape, out.forward_passes.tolist()
        ((3, 16), [16, 16, 16])
    """
    samples = check_count(samples, "samples")
    n = check_count(length, "length")
    gamma = float(gamma)
    if not math.isfinite(gamma) or gamma < 0:
        raise ValueError(f"gamma must be a finite entropy bound >= 0 nats, got {gamma}")
    if batch_size is None:
        batch_size = max(1, min(samples, BATCH_ELEMENTS // (n * vocab_size_of(conditionals_fn, n))))
    sharding, batch = batch_sharding(batch_size, samples)
    outs = []
    for start in progress(range(0, samples, batch), description="sampling (EB)", quiet=quiet):
        tokens = jax.device_put(np.zeros((batch, n), np.int32), sharding)
        outs.append(_entropy_bounded_loop(conditionals_fn, logits, tokens, gamma,
                                          jax.random.fold_in(key, start)))
    x, passes, sizes = (np.concatenate([to_host(o[i]) for o in outs])[:samples] for i in range(3))
    return AdaptiveSamples(tokens=x, forward_passes=passes, tokens_per_step=sizes)



@functools.partial(jax.jit, static_argnums=(0, 1))
def _entropy_bounded_loop(fn, logits, tokens, gamma, key):
    """The EB loop for one batch, until every sequence is revealed (at most n steps)."""
    batch, n = tokens.shape
    rows = jnp.arange(batch)[:, None]

    def step(state):
        x, revealed, passes, sizes, k = state
        out = fn(x, revealed)
        logp = jax.nn.log_softmax(out, axis=-1) if logits else log_or_neg_inf(out)
        p = jnp.exp(logp)
        entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
        entropy = jnp.where(revealed, jnp.inf, entropy)
        # Ties (to 1e-6 nats) are broken at random: exact laws have many equal entropies
        # (a stationary chain at the start), and breaking them by position would reveal
        # neighbouring, strongly correlated tokens together.
        tie = jax.random.uniform(jax.random.fold_in(key, n + k), x.shape)
        order = jnp.lexsort((tie, jnp.round(entropy * 1e6)), axis=1)
        ranked = jnp.take_along_axis(entropy, order, axis=1)
        masked = jnp.isfinite(ranked)
        ranked = jnp.where(masked, ranked, 0.0)
        # Sorted ascending, the prefix's max is its last entry: the criterion is that the
        # entropies before it sum to at most gamma.
        before = jnp.cumsum(ranked, axis=1) - ranked
        take = masked & (before <= gamma)
        chosen = jnp.zeros_like(revealed).at[rows, order].set(take)
        u = jax.random.uniform(jax.random.fold_in(key, k), x.shape)
        x = jnp.where(chosen, inverse_cdf(u, p), x)
        active = ~jnp.all(revealed, axis=1)
        sizes = sizes.at[:, k].set(jnp.sum(chosen, axis=1).astype(jnp.int32))
        return x, revealed | chosen, passes + active.astype(passes.dtype), sizes, k + 1

    def unfinished(state):
        return (state[4] < n) & ~jnp.all(state[1])

    init = (tokens, jnp.zeros((batch, n), bool), jnp.zeros(batch, jnp.int32),
            jnp.zeros((batch, n), jnp.int32), jnp.asarray(0))
    x, _, passes, sizes, _ = jax.lax.while_loop(unfinished, step, init)
    return x, passes, sizes
