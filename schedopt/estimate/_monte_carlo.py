"""Estimating a profile from any model of the conditionals: Rao-Blackwellised Monte Carlo.

docs/theory.md §8 and §11. For each sequence x and one random order of its positions, reveal
the first j positions for every j on a grid and ask the model for its predicted distributions
at all positions (one forward pass per sequence and grid point). At the masked positions
average

- the cross-entropy -log p(x_i | x_revealed): the held-out curve c_j (kind "data"), the right
  curve for a trained model, since schedules optimized on it minimise the KL from the data
  to what the sampler produces, model error included;
- the predictive entropy H(p(. | x_revealed)): the model's own curve (kind "model").

Both come from the same forward passes. For a known law passed as its own conditionals (log
probabilities as logits), both are unbiased for g_j; "model" has the lower variance. The same
order serves every grid point (common random numbers make differences of g precise). Batches
are split across all JAX devices (Mesh + NamedSharding over the batch axis), those of every
process in a multi-process run (`schedopt.distributed`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._internal.checks import check_tokens_per_step
from .._internal.keys import host_rng
from .._internal.precision import float64
from ..curve import EntropyProfile
from ..distributed import to_host

LogitsFn = Callable[[jax.Array, jax.Array], jax.Array]

KINDS = ("data", "model")


# Up to this length the default grid is every revealed count 0..n-1: the curve is then measured
# where any schedule cuts, with no interpolation. Between grid points linear interpolation
# over-states g on a convex stretch, which biases a predicted KL upwards (docs/checks.md).
FULL_GRID_MAX = 256

# Grid size used above FULL_GRID_MAX.
SPARSE_GRID_SIZE = 33


def default_grid(n: int) -> np.ndarray:
    """The default revealed counts: every count 0..n-1 for n <= FULL_GRID_MAX, else 33 points.

    Add a schedule's own cut points with `schedule_grid` when n is larger.
    """
    return revealed_grid(n, n if n <= FULL_GRID_MAX else SPARSE_GRID_SIZE)


def schedule_grid(n: int, *schedules: Any, base: Any = None) -> np.ndarray:
    """A grid that holds each schedule's cut points N_0..N_{T-1} and their neighbours.

    theory §3's KL weights g at each step's first revealed count by the step size, so a
    prediction needs g measured there; the neighbours keep the interpolated sum over all
    counts (H_n) close to the curve around each cut.

    Args:
        n: sequence length.
        *schedules: tokens per step, int[T] each (any T), each summing to n.
        base: revealed counts to start from (default `default_grid(n)`).

    Returns:
        int64[G] strictly increasing revealed counts in 0..n-1, with 0 and n - 1.
    """
    points = [default_grid(n) if base is None else np.asarray(base, np.int64).ravel(), [0, n - 1]]
    for tokens_per_step in schedules:
        steps = check_tokens_per_step(tokens_per_step, n, "tokens_per_step")
        cuts = (np.cumsum(steps, axis=-1) - steps).ravel()
        points += [cuts - 1, cuts, cuts + 1]
    return np.unique(np.clip(np.concatenate(points), 0, n - 1)).astype(np.int64)


def revealed_grid(n: int, size: int = SPARSE_GRID_SIZE) -> np.ndarray:
    """Revealed counts from 0 to n - 1, denser at both ends.

    g changes fastest near the ends of the curve (the first revealed tokens and the last
    masked ones), so grid points cluster there: the first and last size // 8 counts are all
    included, and the rest follow a cosine spacing.

    Args:
        n: sequence length.
        size: number of grid points wanted (fewer when n is small; every count when
            size >= n).

    Returns:
        int64[<= size], strictly increasing, starting at 0 and ending at n - 1.
    """
    if n < 1 or size < 2:
        raise ValueError(f"a revealed grid needs n >= 1 and size >= 2, got n={n}, size={size}")
    if size >= n:
        return np.arange(n)
    edge = max(1, size // 8)
    u = np.linspace(0.0, 1.0, max(2, size - 2 * edge))
    inner = n - 1 - 2 * edge  # the spaced points run from edge to n - 1 - edge
    spaced = edge + np.round(inner * (1 - np.cos(np.pi * u)) / 2).astype(np.int64)
    ends = np.concatenate([np.arange(edge), n - 1 - np.arange(edge)])
    return np.unique(np.concatenate([ends, spaced]))


@struct.dataclass
class CurveEstimate:
    """Per-sequence Monte Carlo values of both curves at the grid points.

    Attributes:
        revealed: int64[G] revealed counts (0 .. n-1).
        cross_entropy: float64[M, G] mean over masked positions of -log p(x_i | x_revealed)
            for each sequence (nats per token): samples of the data curve c.
        predictive_entropy: float64[M, G] mean predictive entropy (nats per token): samples
            of the model curve.
        n: sequence length.
        forward_passes: number of forward passes made (one per sequence and grid point).
    """

    revealed: np.ndarray
    cross_entropy: np.ndarray
    predictive_entropy: np.ndarray
    n: int = struct.field(pytree_node=False)
    forward_passes: int = struct.field(pytree_node=False)

    @property
    def sequences(self) -> int:
        """Number of sequences M."""
        return int(self.cross_entropy.shape[0])

    def values(self, kind: str) -> np.ndarray:
        """float64[M, G] per-sequence values of the chosen curve."""
        return self.cross_entropy if check_kind(kind) == "data" else self.predictive_entropy

    def curve(
        self, kind: str = "data", *, bootstrap: int = 0, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Mean of the curve at each grid point and its standard error (nats per token).

        Args:
            kind: "data" (cross-entropy) or "model" (predictive entropy).
            bootstrap: 0 for the across-sequence standard error std / sqrt(M); else the
                number of bootstrap resamples of the sequences.
            seed: bootstrap seed.

        Returns:
            (mean float64[G], stderr float64[G] or None when M = 1).
        """
        v = self.values(kind)
        return v.mean(axis=0), _stderr(v, bootstrap, seed)

    @property
    def calibration_gap(self) -> tuple[float, float]:
        """(gap, stderr) in nats: the data curve's H_n minus the model curve's H_n.

        Positive when the model is overconfident (its entropy under-states the held-out
        cross-entropy). About 0 for a known law scored by its own conditionals.
        """
        per_sequence = (self.cross_entropy - self.predictive_entropy) @ sum_weights(
            self.revealed, self.n
        )
        se = _stderr(per_sequence[:, None], 0, 0)
        return float(per_sequence.mean()), float(se[0]) if se is not None else float("nan")

    def kl_per_sequence(self, tokens_per_step: Any, kind: str = "data") -> np.ndarray:
        """float64[M]: theory §3's formula applied to each sequence's own curve (nats).

        The formula sum_k sum_{j in block k} (g_{N_{k-1}} - g_j) is linear in the curve:
        weight s_k at each step's first revealed count N_{k-1}, minus the sum over all
        counts. The first part uses the curve measured at the cuts themselves (never
        interpolated, which biases a step on a convex stretch of g); the sum is exact on a
        full grid and interpolated otherwise.

        Args:
            tokens_per_step: int[T] summing to n.
            kind: "data" or "model".

        Raises:
            ValueError: a cut is not on the grid; estimate with `schedule_grid(n, steps)`
                or every count.
        """
        steps = check_tokens_per_step(tokens_per_step, self.n)
        cuts = np.concatenate([[0], np.cumsum(steps)[:-1]])
        grid = np.asarray(self.revealed)
        missing = np.setdiff1d(cuts, grid)
        if missing.size:
            raise ValueError(
                f"the curve was not measured at revealed counts {missing[:5].tolist()} where "
                "the schedule's steps start, and interpolating there biases the predicted KL; "
                "estimate with grid=schedule_grid(n, tokens_per_step) or every count"
            )
        weights = -sum_weights(grid, self.n)
        np.add.at(weights, np.searchsorted(grid, cuts), steps)
        return self.values(kind) @ weights

    def expected_kl(self, tokens_per_step: Any, kind: str = "data") -> tuple[float, float]:
        """A schedule's expected KL predicted from the raw curve, with its standard error.

        The mean of `kl_per_sequence` (unbiased when the grid holds every count, and up to
        the interpolated sum otherwise) and the standard error from its spread. For kind
        "data" it predicts a model's excess T-step NLL (theory §11).

        The regularised profile is not used: projecting a noisy flat stretch of g onto
        non-increasing curves tilts it, which biases the KL of a long step upwards.

        Args:
            tokens_per_step: int[T] summing to n; each step's first revealed count must be
                on the grid (see `kl_per_sequence`).
            kind: "data" or "model".

        Returns:
            (mean, stderr) in nats; stderr is NaN for a single sequence.
        """
        per_sequence = self.kl_per_sequence(tokens_per_step, kind)
        se = _stderr(per_sequence[:, None], 0, 0)
        return float(per_sequence.mean()), float(se[0]) if se is not None else float("nan")

    def profile(self, kind: str = "data", *, bootstrap: int = 0, seed: int = 0) -> EntropyProfile:
        """The regularised profile of one curve, with stderr and diagnostics in `meta`."""
        mean, se = self.curve(kind, bootstrap=bootstrap, seed=seed)
        per_sequence_h = self.values(kind) @ sum_weights(self.revealed, self.n)
        h_se = _stderr(per_sequence_h[:, None], bootstrap, seed)
        gap, gap_se = self.calibration_gap
        meta = {
            "source": "monte carlo",
            "kind": kind,
            "sequences": self.sequences,
            "forward_passes": self.forward_passes,
            "grid": [int(j) for j in self.revealed],
            "raw_conditional_entropy": [float(g) for g in mean],
            "joint_entropy_stderr": float(h_se[0]) if h_se is not None else None,
            "calibration_gap": gap,
            "calibration_gap_stderr": gap_se,
        }
        raw = EntropyProfile.from_conditional_entropy(
            mean, self.revealed, n=self.n, stderr=se, meta=meta, check=False
        )
        return raw.regularize()


@float64
def estimate_curves(
    logits_fn: LogitsFn,
    data: Any,
    *,
    key: jax.Array,
    prompts: Any = None,
    grid: Any = None,
    batch_size: int = 128,
    jit: bool = True,
    quiet: bool = True,
    checkpoint: Any = None,
) -> CurveEstimate:
    """Evaluate both curves on `data` with one random order per sequence.

    Args:
        logits_fn: (tokens int32[B, L], revealed bool[B, L]) -> logits float[B, L, V]; it must
            ignore tokens at unrevealed positions (a model replaces them by its mask token).
            For a known distribution pass its `log_conditionals`. Or a
            `schedopt.sources.TokenScorer` (e.g. `schedopt.sources.HFScorer`), which reduces
            logits to per-position statistics on its own device.
        data: int[M, n] sequences (held-out data for a trained model; samples for a known law);
            with prompts, the answers.
        key: JAX PRNG key for the random orders.
        prompts: None, or one prompt per sequence (int[M, P], or a list of M token-id lists of
            any lengths): always visible, never masked or scored (theory §12); the curves are
            then over the n answer positions, averaged over prompts. A JAX logits_fn sees
            prompt + answer (L = P + n) and compiles once per distinct prompt length.
        grid: revealed counts to evaluate: None (`default_grid`: every count for
            n <= FULL_GRID_MAX, else 33 points), an int (that many points, `revealed_grid`)
            or an explicit list such as `schedule_grid` (0 and n - 1 are added if missing).
        batch_size: rows per forward pass (rounded up to a multiple of the device count);
            shapes are fixed, so the model compiles once.
        jit: compile logits_fn with the statistics; pass False for a function that JAX
            cannot trace (a PyTorch model behind a callback, say).
        quiet: no progress bar.
        checkpoint: None, or a file path: finished batches are saved there as they complete,
            and a later call with the same arguments resumes from it, giving the same result
            as an uninterrupted run (`schedopt.estimate`). The file is removed at the end.

    Returns:
        A `CurveEstimate`; call `.profile(kind)` for the regularised profile.
    """
    from ..sources import check_prompts
    from ._resume import Checkpoint

    tokens = check_data(data)
    m, n = tokens.shape
    prompt_list = check_prompts(prompts, m)
    grid = _make_grid(grid, n)
    order = random_orders(m, n, key=key)
    rows = m * grid.size
    store = Checkpoint.open(checkpoint, "curves", tokens=tokens, order=order, grid=grid,
                            prompts=prompt_list, batch_size=batch_size)
    ce, ent = curve_rows(logits_fn, tokens, order, grid, prompt_list, batch_size=batch_size,
                         jit=jit, quiet=quiet, store=store)
    store.finish()
    return CurveEstimate(
        revealed=grid,
        cross_entropy=ce.reshape(m, grid.size),
        predictive_entropy=ent.reshape(m, grid.size),
        n=n,
        forward_passes=rows,
    )


def curve_rows(
    logits_fn: Any,
    tokens: np.ndarray,
    order: np.ndarray,
    grid: np.ndarray,
    prompts: list[np.ndarray] | None = None,
    *,
    batch_size: int = 128,
    jit: bool = True,
    quiet: bool = True,
    store: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Both curves on every (sequence, grid point) row: one forward pass per row.

    The kernel behind `estimate_curves` and `schedopt.estimate`: row r = i * G + g
    reveals the answer positions of rank < grid[g] in order[i] (prompt positions always) and
    averages, over the masked positions, the cross-entropy and the predictive entropy.

    Args:
        logits_fn: a JAX logits function or a `schedopt.sources.TokenScorer`.
        tokens: int32[M, n] answers (checked by `check_data`).
        order: int32[M, n] each position's rank (`random_orders`).
        grid: int64[G] revealed counts.
        prompts: None or M int32 prompts (`schedopt.sources.check_prompts`).
        batch_size, jit, quiet: as in `estimate_curves`.
        store: a `schedopt.estimate.Checkpoint` (None: nothing saved).

    Returns:
        (cross-entropy float64[M * G], predictive entropy float64[M * G]).

    Raises:
        ValueError: NaN logits, or a data token with probability 0.
    """
    from ..sources import is_scorer, prompt_groups
    from ._resume import Checkpoint

    store = Checkpoint(None, "", {}) if store is None else store
    m = tokens.shape[0]
    rows = m * grid.size
    if is_scorer(logits_fn):
        ce, ent, bad = _scorer_rows(logits_fn, tokens, order, grid, prompts, batch_size,
                                    quiet, store)
    else:
        ce, ent, bad = (np.zeros(rows), np.zeros(rows), np.zeros(rows, bool))
        for idx, prompt in prompt_groups(prompts, m):
            # Row r = seq * G + point, so a group's rows are its sequences' blocks of G.
            where = (idx[:, None] * grid.size + np.arange(grid.size)).ravel()
            out = _logits_rows(logits_fn, tokens[idx], order[idx], prompt, grid, batch_size,
                               jit, quiet, store)
            ce[where], ent[where], bad[where] = out
    if bad.any():
        raise ValueError(
            "logits_fn returned NaN logits; check the model (and that it handles fully "
            "masked and fully revealed inputs)"
        )
    if not np.all(np.isfinite(ce)):
        raise ValueError(
            "the model gives probability 0 to a token in the data (infinite cross-entropy); "
            "check that the data matches the model's vocabulary"
        )
    return np.asarray(ce, np.float64), np.asarray(ent, np.float64)


def _logits_rows(logits_fn, tokens, order, prompt, grid, batch_size, jit, quiet, store):
    """(ce, entropy, bad) per row (sequence, grid point) of one prompt-length group."""
    from ..sources import check_vocabulary, with_prompt

    m, n = tokens.shape
    tokens, order = with_prompt(prompt, tokens, order)
    length = tokens.shape[1]
    rows = m * grid.size
    sharding, batch = batch_sharding(batch_size, rows)
    vocab = _check_logits_shape(logits_fn, batch, length, jit)
    check_vocabulary(tokens, vocab, model="logits_fn")

    def compute(start):
        idx = np.arange(start, start + batch)
        idx = np.where(idx < rows, idx, 0)  # padding rows repeat row 0 and are dropped
        seq, point = idx // grid.size, idx % grid.size
        args = [jax.device_put(a, sharding) for a in (tokens[seq], order[seq], grid[point])]
        out = _row_statistics(logits_fn, *args) if jit else _eager_row_statistics(logits_fn,
                                                                                   *args)
        return tuple(to_host(o) for o in out)  # every row, from every process's devices

    results = store.run(f"group{prompt.shape[1]}", range(0, rows, batch), compute,
                        description="estimating the curve", quiet=quiet)
    return tuple(np.concatenate([r[i] for r in results])[:rows] for i in range(3))


def _scorer_rows(scorer, tokens, order, grid, prompts, batch_size, quiet, store):
    """(ce, entropy, bad) per row from a TokenScorer: only [B, n] statistics reach the host."""
    from ..sources import check_vocabulary, masked_row_means

    m, n = tokens.shape
    check_vocabulary(tokens, scorer.vocab_size)
    prompts = prompts if prompts is not None else [np.zeros(0, np.int32)] * m
    rows = m * grid.size
    batch = max(1, min(int(batch_size), rows))

    def compute(start):
        idx = np.arange(start, min(start + batch, rows))
        seq, point = idx // grid.size, idx % grid.size
        revealed = order[seq] < grid[point][:, None]
        ce, ent = scorer.token_statistics([prompts[s] for s in seq], tokens[seq], revealed)
        return masked_row_means(ce, ent, ~revealed)

    results = store.run("scorer", range(0, rows, batch), compute,
                        description="estimating the curve", quiet=quiet)
    return tuple(np.concatenate([r[i] for r in results]) for i in range(3))


@float64
def estimate_profile(
    logits_fn: LogitsFn,
    data: Any,
    *,
    key: jax.Array,
    kind: str = "data",
    prompts: Any = None,
    grid: Any = None,
    batch_size: int = 128,
    bootstrap: int = 0,
    jit: bool = True,
    quiet: bool = True,
    checkpoint: Any = None,
) -> EntropyProfile:
    """Estimate an entropy profile from a model's conditionals (theory §8 and 11).

    Args:
        logits_fn: (tokens int32[B, n], revealed bool[B, n]) -> logits float[B, n, V], or a
            `TokenScorer` (see `estimate_curves`).
        data: int[M, n] held-out sequences (or samples of a known law); with prompts, answers.
        key: JAX PRNG key for the random orders (and the bootstrap).
        kind: "data" (held-out cross-entropy curve, the default: optimize schedules on it)
            or "model" (the model's predictive-entropy curve).
        prompts: None, or one always-visible prompt per sequence (see `estimate_curves`):
            the profile is then the prompt-averaged curve over answer positions (theory §12).
        grid: revealed counts (see `estimate_curves`).
        batch_size: rows per forward pass.
        bootstrap: 0 for across-sequence standard errors, else this many bootstrap
            resamples over sequences.
        jit: compile logits_fn (False for untraceable models).
        quiet: no progress bar.
        checkpoint: a file for resumable partial results (see `estimate_curves`).

    Returns:
        The profile with g projected onto non-increasing sequences (`regularize`), stderr per
        revealed count, and `meta` holding the grid, the raw curve, the number of forward
        passes and the calibration gap (nats, data curve minus model curve in H_n).

    Example:
        >>> import jax, numpy as np, schedopt
        >>> chain = schedopt.distributions.MarkovChain(0.8 * np.eye(4) + 0.05, n=32)
        >>> x = chain.sample(256, key=jax.random.key(0))
        >>> p = schedopt.estimate_profile(chain.log_conditionals, x, key=jax.random.key(1))
        >>> abs(p.joint_entropy - chain.profile().joint_entropy) < 1.0
        True
    """
    check_kind(kind)
    estimate = estimate_curves(
        logits_fn, data, key=key, prompts=prompts, grid=grid, batch_size=batch_size, jit=jit,
        quiet=quiet, checkpoint=checkpoint,
    )
    seed = int(jax.random.randint(jax.random.fold_in(key, 1), (), 0, 2**31 - 1))
    return estimate.profile(kind, bootstrap=bootstrap, seed=seed)


# --------------------------------------------------------------------------- kernels
def masked_means(logits, tokens, revealed):
    """Per row: mean cross-entropy and mean predictive entropy over masked positions."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    p = jnp.exp(logp)
    entropy = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
    ce = -jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]
    masked = ~revealed
    ce_total = jnp.sum(jnp.where(masked, ce, 0.0).astype(float), axis=-1)
    ent_total = jnp.sum(jnp.where(masked, entropy, 0.0).astype(float), axis=-1)
    count = jnp.sum(masked, axis=-1).astype(ce_total.dtype)
    ce_mean, ent_mean = ce_total / count, ent_total / count
    bad = jnp.any(jnp.isnan(logits), axis=(-2, -1))
    return ce_mean, ent_mean, bad


@functools.partial(jax.jit, static_argnums=(0,))
def _row_statistics(logits_fn, tokens, order, counts):
    revealed = order < counts[:, None].astype(order.dtype)
    return masked_means(logits_fn(tokens, revealed), tokens, revealed)


_masked_means_jit = jax.jit(masked_means)


def _eager_row_statistics(logits_fn, tokens, order, counts):
    revealed = order < counts[:, None].astype(order.dtype)
    logits = jnp.asarray(logits_fn(tokens, revealed))
    return _masked_means_jit(logits, tokens, revealed)


# --------------------------------------------------------------------------- helpers
def random_orders(samples: int, n: int, *, key: jax.Array) -> np.ndarray:
    """int32[samples, n]: for each sequence, every position's rank in a uniform random order.

    Revealing the positions of rank < j reveals a uniform random j-subset, nested in j.
    Drawn on the host by NumPy, seeded from the JAX key's bits: host-side data preparation
    that compiles nothing and gives the same orders on any number of devices.
    """
    return host_rng(key).permuted(np.tile(np.arange(n, dtype=np.int32), (samples, 1)), axis=1)


def batch_sharding(batch_size: int, rows: int) -> tuple[NamedSharding, int]:
    """A sharding that splits axis 0 over every JAX device, and a fixed batch size.

    The batch is at most `batch_size` (and no larger than `rows` needs), rounded up to a
    multiple of the device count so each device gets an equal share.
    """
    whole = isinstance(batch_size, int | np.integer) and not isinstance(batch_size, bool)
    if not whole or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    devices = jax.devices()
    sharding = NamedSharding(Mesh(np.asarray(devices), ("batch",)), PartitionSpec("batch"))
    batch = -(-max(1, min(int(batch_size), rows)) // len(devices)) * len(devices)
    return sharding, batch


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'data' or 'model', got {kind!r}")
    return kind


def check_data(data: Any) -> np.ndarray:
    x = np.asarray(data)
    if x.ndim != 2:
        raise ValueError(f"data must be a 2-D array of token sequences [M, n], got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"data is empty (shape {x.shape}); give at least one sequence")
    if not np.issubdtype(x.dtype, np.integer):
        if not (np.all(np.isfinite(x)) and np.all(x == np.round(x))):
            raise ValueError("data must hold whole-number token ids")
    if x.min() < 0:
        raise ValueError(f"data holds token {int(x.min())}; token ids must be >= 0")
    return x.astype(np.int32)


def _make_grid(grid: Any, n: int) -> np.ndarray:
    if grid is None:
        return default_grid(n)
    if isinstance(grid, int | np.integer) and not isinstance(grid, bool):
        return revealed_grid(n, int(grid))
    g = np.asarray(grid)
    if g.ndim != 1 or not np.all(g == np.round(g)) or g.min() < 0 or g.max() > n - 1:
        raise ValueError(
            f"grid must be a list of revealed counts between 0 and n - 1 = {n - 1}, got {grid!r}"
        )
    return np.unique(np.concatenate([[0, n - 1], g.astype(np.int64)]))


def _check_logits_shape(logits_fn: LogitsFn, batch: int, n: int, jit: bool) -> int:
    """V, after checking that logits_fn maps [B, n] to [B, n, V]."""
    tokens = jax.ShapeDtypeStruct((batch, n), jnp.int32)
    revealed = jax.ShapeDtypeStruct((batch, n), jnp.bool_)
    if jit:
        shape = jax.eval_shape(logits_fn, tokens, revealed).shape
    else:
        shape = np.shape(logits_fn(jnp.zeros((batch, n), jnp.int32), jnp.zeros((batch, n), bool)))
    if len(shape) != 3 or shape[:2] != (batch, n) or shape[2] < 1:
        raise ValueError(
            f"logits_fn returned shape {tuple(shape)} for tokens of shape ({batch}, {n}); it "
            f"must return logits of shape ({batch}, {n}, V)"
        )
    return int(shape[2])


def _stderr(values: np.ndarray, bootstrap: int, seed: int) -> np.ndarray | None:
    """Standard error of the column means of values[M, G]; None when M = 1."""
    m = values.shape[0]
    if m < 2:
        return None
    if bootstrap <= 0:
        return values.std(axis=0, ddof=1) / np.sqrt(m)
    rng = np.random.default_rng(seed)
    means = np.stack([values[rng.integers(0, m, m)].mean(axis=0) for _ in range(bootstrap)])
    return means.std(axis=0, ddof=1)


def interpolation_matrix(revealed: np.ndarray, n: int) -> np.ndarray:
    """float64[n, G] A with A @ values = values linearly interpolated onto 0..n-1.

    Any linear function of the full curve (H_n, an expected KL) is then a fixed weighting of
    the grid values, which turns per-sequence grid values into per-sequence estimates.
    """
    return np.stack([np.interp(np.arange(n), revealed, e) for e in np.eye(revealed.size)], 1)


def sum_weights(revealed: np.ndarray, n: int) -> np.ndarray:
    """float64[G] w with sum_{j<n} interp(j) = values @ w (per-sequence H_n).

    The column sums of `interpolation_matrix`, in closed form (O(G) memory, for any n): an
    interval of length L between grid points gives (L + 1) / 2 to its left end and
    (L - 1) / 2 to its right end; the last grid point (n - 1) also counts itself.
    """
    r = np.asarray(revealed, np.int64)
    if r.ndim != 1 or r.size == 0 or r[0] != 0 or r[-1] != n - 1 or np.any(np.diff(r) <= 0):
        raise ValueError(f"revealed must rise strictly from 0 to n - 1 = {n - 1}")
    length = np.diff(r).astype(np.float64)
    w = np.zeros(r.size)
    w[:-1] += (length + 1) / 2
    w[1:] += (length - 1) / 2
    w[-1] += 1.0
    return w
