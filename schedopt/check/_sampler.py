"""theory §1's sampler in JAX, and its proof by sampling (theory §9).

A schedule s_1..s_T reveals s_k positions at step k, each drawn independently from its
conditional given the positions revealed before the step. Step sizes differ, so each
sequence gets one random order of its positions and step k reveals the positions ranked
N_{k-1}..N_k - 1: every step then has the same array shapes (masks instead of gathers) and
the whole loop is one `lax.scan` under `jit`, batched over sequences.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import inverse_cdf, log_or_neg_inf
from .._internal.checks import check_count, check_samples, check_tokens_per_step
from .._internal.precision import float64
from .._internal.progress import progress
from ..curve import EntropyProfile
from ..distributed import to_host
from ..distributions import Distribution
from ..estimate import (
    FULL_GRID_MAX,
    CurveEstimate,
    batch_sharding,
    estimate_curves,
    random_orders,
    schedule_grid,
)
from ..objective import expected_kl
from ..schedule import Schedule

ConditionalsFn = Callable[[jax.Array, jax.Array], jax.Array]

# Default batch: about this many float64 conditionals (B * n * V) per step.
_BATCH_ELEMENTS = 2**22


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
    steps = _tokens(schedule)
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
    steps = _tokens(schedule)
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


# Excess kurtosis of the per-sequence values above which a 95% interval from their standard
# error is not trusted. Measured: below 25 in every one of 3600 checks of 200 sequences on
# small exact laws (a sample kurtosis is noisy), in the hundreds or thousands on
# the demo's clustered law, where rare sequences carry much of the KL.
HEAVY_TAIL_KURTOSIS = 50.0


@dataclasses.dataclass(frozen=True)
class Verification:
    """A Monte Carlo check of a schedule's predicted expected KL (theory §9).

    Attributes:
        mean: sampled estimate of E_partition KL(mu || nu_partition) (nats).
        stderr: its standard error (nats).
        predicted: theory §3's formula (nats): on an `EntropyProfile` taken as exact, or on a
            Monte Carlo curve measured at the schedule's own cuts (unbiased).
        predicted_stderr: standard error of `predicted` when it is a Monte Carlo estimate (0
            for a profile taken as exact).
        samples: number of sequences drawn.
        steps: T.
        difference_stderr: standard error of mean - predicted (nats). When the prediction
            comes from the same sequences and orders as the sample (a paired check), it is
            the spread of the per-sequence differences, smaller than the two errors combined
            as far as they share noise; otherwise hypot(stderr, predicted_stderr).
        paired: whether prediction and sample share sequences and orders.
        excess_kurtosis: of the per-sequence values behind the test (the differences when
            paired, else the sampled KLs); above `HEAVY_TAIL_KURTOSIS` the interval is not
            trusted.
        largest_share: the largest single sequence's share of the sum of squared deviations
            (a second view of the same tail).
    """

    mean: float
    stderr: float
    predicted: float
    predicted_stderr: float
    samples: int
    steps: int
    difference_stderr: float = math.nan
    paired: bool = False
    excess_kurtosis: float = 0.0
    largest_share: float = 0.0

    @classmethod
    def from_samples(
        cls,
        sampled: Any,
        predicted: Any,
        *,
        predicted_stderr: float = 0.0,
        steps: int,
    ) -> Verification:
        """Summarise per-sequence sampled KLs against a prediction.

        Args:
            sampled: float[M] per-sequence sampled KLs (nats), M >= 2.
            predicted: a float (from a profile; `predicted_stderr` is its error, independent
                of the sample), or float[M] per-sequence predictions from the same sequences
                and orders (a paired check; its own spread gives the errors).
            predicted_stderr: standard error of a scalar prediction.
            steps: T.
        """
        kl = np.asarray(sampled, np.float64)
        m = kl.size
        if kl.ndim != 1 or m < 2:
            raise ValueError(
                f"sampled must be a 1-D array of at least 2 per-sequence KLs, got shape "
                f"{kl.shape}"
            )
        stderr = float(kl.std(ddof=1) / math.sqrt(m))
        pred = np.asarray(predicted, np.float64)
        if pred.ndim == 1:
            if pred.shape != kl.shape:
                raise ValueError(
                    f"paired predictions have shape {pred.shape} but there are {m} samples; "
                    "give one prediction per sampled sequence"
                )
            tested = pred - kl
            predicted_stderr = float(pred.std(ddof=1) / math.sqrt(m))
            difference_stderr = float(tested.std(ddof=1) / math.sqrt(m))
        else:
            tested = kl
            difference_stderr = math.hypot(stderr, float(predicted_stderr))
        deviation = tested - tested.mean()
        square = float(np.sum(deviation**2))
        kurtosis = m * float(np.sum(deviation**4)) / square**2 - 3.0 if square > 0 else 0.0
        return cls(
            mean=float(kl.mean()),
            stderr=stderr,
            predicted=float(pred.mean()),
            predicted_stderr=float(predicted_stderr),
            samples=m,
            steps=int(steps),
            difference_stderr=difference_stderr,
            paired=pred.ndim == 1,
            excess_kurtosis=kurtosis,
            largest_share=float(np.max(deviation**2)) / square if square > 0 else 0.0,
        )

    @property
    def low(self) -> float:
        """Lower end of the 95% interval of the sampled KL."""
        return self.mean - 1.96 * self.stderr

    @property
    def high(self) -> float:
        """Upper end of the 95% interval of the sampled KL."""
        return self.mean + 1.96 * self.stderr

    @property
    def difference(self) -> float:
        """Sampled minus predicted KL (nats)."""
        return self.mean - self.predicted

    @property
    def agrees(self) -> bool:
        """Whether the 95% interval of the difference (sampled - predicted) holds 0."""
        spread = self.difference_stderr
        if math.isnan(spread):  # built by hand without it: both errors, independent
            spread = math.hypot(self.stderr, self.predicted_stderr)
        return abs(self.difference) <= 1.96 * spread + 1e-12

    @property
    def heavy_tails(self) -> bool:
        """Whether the per-sequence values are too heavy-tailed for a normal interval."""
        return self.excess_kurtosis > HEAVY_TAIL_KURTOSIS

    @property
    def status(self) -> str:
        """"agrees", "inconclusive" (heavy tails, no agreement) or "disagrees"."""
        if self.agrees:
            return "agrees"
        return "inconclusive" if self.heavy_tails else "disagrees"

    @property
    def verdict(self) -> str:
        """One plain sentence."""
        if self.status == "agrees":
            text = "agrees: the sampled KL matches the prediction within its 95% interval"
            if self.heavy_tails:
                text += (
                    f" (heavy tails, excess kurtosis {self.excess_kurtosis:.3g}: the interval "
                    "may be too narrow, and the true KL is more likely above the sampled value)"
                )
            return text
        if self.status == "inconclusive":
            return (
                f"inconclusive: heavy tails (excess kurtosis {self.excess_kurtosis:.3g}): rare "
                "sequences carry much of the KL, so the interval is too narrow and the risk "
                "one-sided: the true KL is more likely above the sampled value than below"
            )
        return (
            "DISAGREES: the sampled KL is outside the 95% interval around the prediction "
            "(a wrong profile, or conditionals that are not the law's)"
        )


@float64
def verify(
    distribution: Distribution,
    schedule: Schedule | Any,
    *,
    key: jax.Array,
    samples: int = 1000,
    profile: EntropyProfile | CurveEstimate | None = None,
    batch_size: int | None = None,
    quiet: bool = True,
) -> Verification:
    """Check a schedule's predicted KL by sampling from a known distribution (theory §9).

    Draws `samples` sequences x ~ mu and one random order per sequence; the schedule's
    blocks are consecutive runs of the order. Each sequence gives
    log mu(x) - sum_k sum_{i in block k} log mu(x_i | x revealed before step k), an unbiased
    estimate of E_partition KL(mu || nu_partition). The prediction is theory §3's formula on:

    - `profile`, an `EntropyProfile`: taken as exact (no error of its own);
    - `profile`, a `CurveEstimate`: its raw "model" curve from other sequences, with its
      standard error counted independently; its grid must hold the schedule's cuts;
    - None, for a law with an exact profile: that profile;
    - None otherwise: a paired check. The curve is measured on the same sequences and
      orders as the sample, at every revealed count (n <= `estimate.FULL_GRID_MAX`) or at
      the schedule's cuts and their neighbours, and the per-sequence differences give the
      interval (smaller than the two errors combined, as far as they share noise).

    The verdict is "agrees" when the 95% interval of sampled - predicted holds 0;
    otherwise "inconclusive: heavy tails" when the tested per-sequence values have excess
    kurtosis above `HEAVY_TAIL_KURTOSIS` (the interval is then too narrow and the sampled
    mean too low more often than too high), else "DISAGREES". docs/checks.md gives the
    measured coverage.

    Args:
        distribution: the known law mu.
        schedule: a `Schedule` or tokens per step.
        key: JAX PRNG key.
        samples: number of sequences (at least 2).
        profile: what to predict from (see above).
        batch_size: sequences per compiled call.
        quiet: no progress bar.

    Returns:
        A `Verification`: mean, stderr, 95% interval (low, high), predicted, the
        difference's standard error and a verdict.
    """
    samples = check_count(samples, "samples")
    if samples < 2:
        raise ValueError(f"samples must be at least 2 to give an interval, got {samples}")
    steps = _tokens(schedule)
    sampled, predicted, predicted_stderr = verification_samples(
        distribution, steps, key=key, samples=samples, profile=profile,
        batch_size=batch_size, quiet=quiet,
    )
    return Verification.from_samples(
        sampled, predicted, predicted_stderr=predicted_stderr, steps=steps.size
    )


@float64
def verification_samples(
    distribution: Distribution,
    schedule: Schedule | Any,
    *,
    key: jax.Array,
    samples: int,
    profile: EntropyProfile | CurveEstimate | None = None,
    batch_size: int | None = None,
    quiet: bool = True,
) -> tuple[np.ndarray, np.ndarray | float, float]:
    """The per-sequence values behind `verify` (same arguments, same random draws).

    Returns:
        (sampled float64[M] per-sequence KLs in nats, predicted, predicted_stderr):
        predicted is float64[M] per-sequence predictions from the same sequences and orders
        for a paired check (predicted_stderr 0), else a float with its standard error.
        `Verification.from_samples` summarises them; any subset of sequences gives a valid
        check of its own, which is how the coverage tests split one large draw.
    """
    samples = check_samples(samples, distribution.n)
    steps = _tokens(schedule)
    check_tokens_per_step(steps, distribution.n, "schedule")
    k_data, k_part = jax.random.split(key)
    if profile is None and distribution.exact_profile:
        profile = distribution.profile()
    if profile is not None and profile.n != distribution.n:
        raise ValueError(
            f"profile has n = {profile.n} but the distribution has n = {distribution.n}; "
            "give the profile of this distribution"
        )
    x = distribution.sample(samples, key=k_data)
    loglik = schedule_log_likelihood(
        distribution.conditionals, x, steps, k_part, batch_size=batch_size, quiet=quiet
    )
    kl = np.asarray(distribution.log_prob(x), np.float64) - loglik
    if isinstance(profile, CurveEstimate):
        predicted, predicted_stderr = profile.expected_kl(steps, "model")
        return kl, predicted, predicted_stderr
    if profile is not None:
        return kl, float(expected_kl(profile, steps)), 0.0
    # Paired: the same key gives the estimator the orders the sampler used (random_orders).
    n = distribution.n
    grid = np.arange(n) if n <= FULL_GRID_MAX else schedule_grid(n, steps)
    rows = max(1, _BATCH_ELEMENTS // (n * distribution.vocab_size))
    curves = estimate_curves(
        distribution.log_conditionals, x, key=k_part, grid=grid, batch_size=rows, quiet=quiet
    )
    return kl, curves.kl_per_sequence(steps, "model"), 0.0


# --------------------------------------------------------------------------- internals
def _tokens(schedule: Schedule | Any) -> np.ndarray:
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
        vocab = _vocab_size(fn, length)
        batch_size = max(1, min(m, _BATCH_ELEMENTS // (length * vocab)))
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


def _vocab_size(fn, n: int) -> int:
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
        batch_size = max(1, min(samples, _BATCH_ELEMENTS // (n * _vocab_size(conditionals_fn, n))))
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
        return x, revealed | chosen, passes + active, sizes, k + 1

    def unfinished(state):
        return (state[4] < n) & ~jnp.all(state[1])

    init = (tokens, jnp.zeros((batch, n), bool), jnp.zeros(batch, jnp.int32),
            jnp.zeros((batch, n), jnp.int32), jnp.asarray(0))
    x, _, passes, sizes, _ = jax.lax.while_loop(unfinished, step, init)
    return x, passes, sizes
