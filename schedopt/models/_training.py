"""Training an MDM on the masked cross-entropy, with held-out early stopping.

The loss of one sequence: draw a revealed count j uniformly from 0..n-1 and a uniformly random
set of j revealed positions, and average -log p(x_i | x_revealed) over the n - j masked
positions. Its expectation, (1/n) sum_j c_j in nats per token, is exactly MD4's continuous-time
ELBO with the linear masking schedule divided by n (integrating 1/t against the binomial mask
count gives weight 1 to every count), with less variance. It is also the mean of the held-out
cross-entropy curve c of theory §11, so it is the validation metric that stops training: an
overfit model's curve mispredicts the NLL of real samplers.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from .._internal import progress as _progress
from ..curve import loss_by_revealed_count
from ..sources import check_sequences
from ._transformer import MaskedDiffusionTransformer, MDMConfig, init_model, masked_inputs


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """A trained model and how it got there.

    Attributes:
        model: the weights with the lowest validation masked CE seen.
        best_step: the optimizer step those weights come from.
        steps: optimizer steps taken before stopping.
        valid_ce: validation masked cross-entropy of `model` (nats per token).
        history: one dict per evaluation: step, train_loss, valid_ce.
        seconds: wall-clock training time.
        settings: the training hyper-parameters (for the checkpoint's record).
        loss_curve: float64[n, 3] or None: the training loss by revealed count j = 0..n-1,
            measured on the training batches of the evaluation interval that ended at
            `best_step` (columns: rows seen, mean masked CE in nats per token, its standard
            error; NaN where no row had that count). It is the data curve c_j of theory §11
            on training data, at no extra forward pass (dropout on, if the model uses it).
    """

    model: MaskedDiffusionTransformer
    best_step: int
    steps: int
    valid_ce: float
    history: list[dict[str, float]]
    seconds: float
    settings: dict[str, Any]
    loss_curve: np.ndarray | None = None


def random_revealed(batch: int, length: int, counts: jax.Array | None = None, *,
                    key: jax.Array) -> jax.Array:
    """bool[batch, length]: `counts` (default uniform in 0..length-1) revealed positions each.

    The positions are a uniformly random subset: the first counts[b] of a random permutation.
    """
    k_count, k_perm = jax.random.split(key)
    if counts is None:
        counts = jax.random.randint(k_count, (batch,), 0, length)
    rank = jnp.argsort(jax.random.uniform(k_perm, (batch, length), jnp.float32), axis=1)
    rank = jnp.argsort(rank, axis=1)  # rank[b, i]: where position i falls in the permutation
    return rank < counts[:, None]


def masked_cross_entropy(logits: jax.Array, tokens: jax.Array, revealed: jax.Array) -> jax.Array:
    """float32[B]: mean over masked positions of -log softmax(logits)[token] (nats per token)."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    nll = -jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    masked = (~revealed).astype(jnp.float32)
    return jnp.sum(nll * masked, axis=-1) / jnp.maximum(jnp.sum(masked, axis=-1), 1.0)


def _loss(model: MaskedDiffusionTransformer, tokens, key, dropout: bool):
    k_mask, k_drop = jax.random.split(key)
    revealed = random_revealed(tokens.shape[0], tokens.shape[1], key=k_mask)
    logits = model(masked_inputs(tokens, revealed, model.config.mask_id),
                   dropout_key=k_drop if dropout else None)
    per_row = masked_cross_entropy(logits, tokens, revealed)
    return jnp.mean(per_row), (jnp.sum(revealed, axis=-1), per_row)


def heldout_masked_ce(model: MaskedDiffusionTransformer, data: Any, *, repeats: int = 8,
                      seed: int = 0, batch_size: int = 512) -> float:
    """Held-out masked cross-entropy (nats per token): the mean of the data curve c_j over j.

    Each of the `repeats` passes over `data` reveals a fixed random set per sequence, with
    revealed counts spread evenly over 0..n-1 (stratified, so the estimate has low variance
    and the same seed compares checkpoints on common random numbers).
    """
    data = check_sequences(data, length=model.config.length,
                           vocab_size=model.config.vocab_size)
    graphdef, state = nnx.split(model)
    m, n = data.shape
    total = 0.0
    for r in range(repeats):
        for start in range(0, m, batch_size):
            tokens = jnp.asarray(data[start : start + batch_size])
            counts = (jnp.arange(start, start + tokens.shape[0]) + r * m) % n
            key = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), r), start)
            total += float(_eval_batch(graphdef, state, tokens, counts, key))
    return total / (repeats * m)


@jax.jit
def _eval_batch(graphdef, state, tokens, counts, key):
    model = nnx.merge(graphdef, state)
    revealed = random_revealed(tokens.shape[0], tokens.shape[1], counts, key=key)
    logits = model(masked_inputs(tokens, revealed, model.config.mask_id))
    return jnp.sum(masked_cross_entropy(logits, tokens, revealed))


def train(
    config: MDMConfig,
    train_data: Any,
    valid_data: Any,
    *,
    seed: int = 0,
    batch_size: int = 128,
    learning_rate: float = 1e-3,
    weight_decay: float = 0.05,
    warmup_steps: int = 200,
    max_steps: int = 20_000,
    eval_every: int = 250,
    patience: int = 8,
    eval_repeats: int = 8,
    quiet: bool = False,
) -> TrainResult:
    """Train a `MaskedDiffusionTransformer` with AdamW and held-out early stopping.

    Deterministic given `seed` (initialisation, batches, masks and dropout all derive from it).

    Args:
        config: the model's shape; its vocab_size and length must fit the data.
        train_data, valid_data: int[M, n] token ids.
        seed: the one source of randomness.
        batch_size: sequences per step (sampled with replacement).
        learning_rate: peak AdamW learning rate (linear warm-up, cosine decay to 5%).
        weight_decay: AdamW decoupled weight decay.
        warmup_steps, max_steps: learning-rate schedule length and the step cap.
        eval_every: optimizer steps between validation evaluations (one jit call runs them).
        patience: stop after this many evaluations without a new best validation CE.
        eval_repeats: stratified passes over valid_data per evaluation.
        quiet: no progress bar.

    Returns:
        TrainResult whose model holds the best validation weights.
    """
    settings = dict(seed=seed, batch_size=batch_size, learning_rate=learning_rate,
                    weight_decay=weight_decay, warmup_steps=warmup_steps, max_steps=max_steps,
                    eval_every=eval_every, patience=patience, eval_repeats=eval_repeats)
    for name in ("batch_size", "max_steps", "eval_every", "patience", "eval_repeats"):
        if int(settings[name]) < 1:
            raise ValueError(f"{name} must be a positive whole number, got {settings[name]!r}")
    train_data = jnp.asarray(check_sequences(train_data, length=config.length,
                                             vocab_size=config.vocab_size, what="train_data"))
    valid_data = check_sequences(valid_data, length=config.length,
                                 vocab_size=config.vocab_size, what="valid_data")
    start = time.perf_counter()
    key = jax.random.key(seed)
    model = init_model(config, seed)
    graphdef, state = nnx.split(model)
    hyper = _Hyper(batch_size, learning_rate, weight_decay, warmup_steps, max_steps,
                   config.dropout > 0)
    opt_state = _optimizer(hyper).init(state)

    best = (np.inf, 0, state)
    best_curve = None
    history: list[dict[str, float]] = []
    step, stale = 0, 0
    chunks = -(-max_steps // eval_every)
    for chunk in _progress.progress(range(chunks), description="training", quiet=quiet):
        count = min(eval_every, max_steps - step)
        state, opt_state, losses, counts, row_ce = _run_steps(
            graphdef, hyper, count, state, opt_state, jax.random.fold_in(key, chunk + 1),
            train_data,
        )
        step += count
        valid_ce = heldout_masked_ce(nnx.merge(graphdef, state), valid_data,
                                     repeats=eval_repeats, seed=seed)
        history.append({"step": step, "train_loss": float(jnp.mean(losses)),
                        "valid_ce": valid_ce})
        if not np.isfinite(valid_ce):
            raise ValueError(
                f"training diverged at step {step} (validation CE {valid_ce}); "
                "lower learning_rate"
            )
        if valid_ce < best[0]:
            best, stale = (valid_ce, step, jax.tree.map(jnp.copy, state)), 0  # state is donated
            best_curve = loss_by_revealed_count(counts, row_ce, config.length)
        else:
            stale += 1
            if stale >= patience:
                break
    return TrainResult(
        model=nnx.merge(graphdef, best[2]), best_step=best[1], steps=step,
        valid_ce=float(best[0]), history=history, seconds=time.perf_counter() - start,
        settings=settings, loss_curve=best_curve)


class _Hyper(NamedTuple):
    """Hashable training settings: one compiled training program per distinct value."""

    batch_size: int
    learning_rate: float
    weight_decay: float
    warmup_steps: int
    max_steps: int
    dropout: bool


def _optimizer(hyper: _Hyper) -> optax.GradientTransformation:
    """AdamW (clipped gradients), linear warm-up then cosine decay to 5% of the peak rate."""
    warmup = min(hyper.warmup_steps, hyper.max_steps - 1)
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, hyper.learning_rate, warmup, hyper.max_steps, end_value=0.05 * hyper.learning_rate)
    return optax.chain(optax.clip_by_global_norm(1.0),
                       optax.adamw(schedule, weight_decay=hyper.weight_decay))


@functools.partial(jax.jit, static_argnums=(0, 1, 2), donate_argnums=(3, 4))
def _run_steps(graphdef, hyper: _Hyper, count: int, state, opt_state, key, data):
    """`count` optimizer steps in one lax.scan.

    Returns (state, opt_state, losses[count], revealed counts int[count, B], per-row masked
    CE float32[count, B]); the last two log the training loss curve at no extra cost.
    """
    optimizer = _optimizer(hyper)

    def one_step(carry, key):
        state, opt_state = carry
        k_batch, k_loss = jax.random.split(key)
        rows = jax.random.randint(k_batch, (hyper.batch_size,), 0, data.shape[0])

        def loss_of(s):
            return _loss(nnx.merge(graphdef, s), data[rows], k_loss, hyper.dropout)

        (loss, (counts, row_ce)), grads = jax.value_and_grad(loss_of, has_aux=True)(state)
        # optax's schedules multiply their int32 step count by floats: standard promotion
        # here, whatever the caller's setting (identical values).
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, state)
        return (optax.apply_updates(state, updates), opt_state), (loss, counts, row_ce)

    (state, opt_state), (losses, counts, row_ce) = jax.lax.scan(
        one_step, (state, opt_state), jax.random.split(key, count))
    return state, opt_state, losses, counts, row_ce
