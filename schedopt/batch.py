"""Many (profile, budget) problems in one compiled, vmapped and sharded Optax run.

`optimize_batch` groups the problems by sequence length n and budget bucket (`bucket(T)`, the
next power of two: the same compiled shapes `optimize` uses), and solves each group with one
call of a jit-compiled `jax.vmap` of the optimizer's core (`schedopt.optimize.solve`): no
Python loop over problems. The batch axis is sharded over every device with `jax.sharding`
(a one-axis `Mesh` and a `NamedSharding`), padded to a multiple of the device count; each
problem's arithmetic is independent of the others, so the schedules are the same on 1 device
as on 8.

Batch settings differ from `optimize`'s (measured in scripts/bench_batch.py): one start (the
square-root rule) and fewer gradient steps, but a wider repair window iterated to a fixed
point (`settle`). A problem whose relaxed objective ends above the KL of its integer schedule
has not converged (the relaxed optimum is never above the integer one), so those few are
solved again with `optimize`'s number of steps and the better schedule is kept.

Multi-host (a TPU pod): call `jax.distributed.initialize()` first on every host and run the
same program everywhere; `jax.devices()` then lists every chip, every host reads the same
manifest, and each contributes its devices' slice of the batch.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from . import _progress
from .divergence import _expected_kl
from .optimize import NUM_ITERATIONS, _window_dp, bucket, default_optimizer, solve
from .profile import EntropyProfile
from .schedules import Schedule, check_steps

BATCH_ITERATIONS = 200
BATCH_WINDOW = 12
_SETTLE_ROUNDS = 64
# Problems per compiled call are capped so that a chunk's arrays stay near this size.
_CHUNK_BYTES = 1 << 29
_BYTES_PER_TOKEN = 64  # float64 H, g and the optimizer's per-token temporaries


def optimize_batch(
    profiles: Sequence[EntropyProfile],
    steps: int | Sequence[int],
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_iterations: int = BATCH_ITERATIONS,
    window: int = BATCH_WINDOW,
    polish_iterations: int = NUM_ITERATIONS,
    quiet: bool = True,
) -> list[Schedule]:
    """The best schedule for every (profile, budget) pair, in a few compiled calls.

    Args:
        profiles: the entropy profiles (any mix of sequence lengths n).
        steps: one budget T for all, or one per profile (1 <= T <= that profile's n).
        optimizer: any `optax.GradientTransformation` (default: Adam with a cosine-decayed
            learning rate, as `optimize`).
        num_iterations: gradient steps per problem.
        window: half-width (tokens) of the exact repair window, moved until a fixed point.
        polish_iterations: gradient steps for the problems whose descent did not converge.
        quiet: no progress bar over the groups.

    Returns:
        One `Schedule` per problem, in order (method "optax", with its exact float64 KL).

    Example:
        >>> import schedopt, numpy as np
        >>> profiles = [schedopt.EntropyProfile.from_conditional_entropy(
        ...     1.0 / (1.0 + np.arange(64)) ** p) for p in (0.5, 1.0, 2.0)]
        >>> [s.steps for s in schedopt.optimize_batch(profiles, [4, 8, 16])]
        [4, 8, 16]
    """
    profiles = list(profiles)
    budgets = _check_budgets(profiles, steps)
    counts = {"num_iterations": num_iterations, "polish_iterations": polish_iterations}
    for name, value in counts.items():
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"{name} must be a whole number >= 0, got {value!r}")
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ValueError(f"window must be a whole number >= 1, got {window!r}")
    settings = (int(num_iterations), int(window), int(polish_iterations), optimizer)
    results: list[Schedule | None] = [None] * len(profiles)
    trivial, groups = _group(profiles, budgets)
    for i in trivial:  # T = 1 or T = n: a single schedule exists
        n, t = profiles[i].n, budgets[i]
        results[i] = _schedule(np.full(t, n // t, np.int64), _kl_sum(profiles[i], t), None)
    for (n, padded), members in _progress.progress(
        groups.items(), total=len(groups), description="optimizing", quiet=quiet
    ):
        for chunk in _chunks(members, n):
            entropy = np.stack([np.asarray(profiles[i].entropy) for i in chunk])
            cuts, relaxed, kl = _solve_group(entropy, budgets[chunk], padded, settings)
            tokens = np.diff(np.concatenate(
                [np.zeros((len(chunk), 1), np.int64), cuts, np.full((len(chunk), 1), n)], 1
            ), axis=1)
            for row, i in enumerate(chunk):
                t = budgets[i]
                results[i] = _schedule(tokens[row, :t], kl[row], float(relaxed[row]))
    return results  # type: ignore[return-value]


def settle(entropy: jnp.ndarray, cuts: jnp.ndarray, steps, window: int) -> jnp.ndarray:
    """Exact window DPs (`schedopt.optimize._window_dp`) re-centred until the cuts stop moving.

    At the fixed point no simultaneous move of the cuts by up to `window` tokens each lowers
    the KL. (`optimize.repair` stops as soon as no cut is on its window's edge, which is one
    round earlier and leaves about 0.4% of random problems short of the optimum.)
    """

    def body(carry):
        cuts, _, rounds = carry
        new, _ = _window_dp(entropy, cuts, steps, window)
        return new, jnp.any(new != cuts), rounds + 1

    cuts, _, _ = jax.lax.while_loop(
        lambda c: c[1] & (c[2] < _SETTLE_ROUNDS), body, (cuts, jnp.asarray(True), 0)
    )
    return cuts


def _check_budgets(profiles: list, steps) -> np.ndarray:
    if not all(isinstance(p, EntropyProfile) for p in profiles):
        bad = next(i for i, p in enumerate(profiles) if not isinstance(p, EntropyProfile))
        raise ValueError(
            f"profiles[{bad}] is a {type(profiles[bad]).__name__}, not an EntropyProfile; "
            "load it with EntropyProfile.load or build it with EntropyProfile.from_entropy"
        )
    if np.ndim(steps) == 0:
        steps = [steps] * len(profiles)
    steps = list(steps)
    if len(steps) != len(profiles):
        raise ValueError(
            f"got {len(steps)} budgets for {len(profiles)} profiles; give one budget for all "
            "or one per profile"
        )
    budgets = []
    for i, (profile, t) in enumerate(zip(profiles, steps, strict=True)):
        try:
            budgets.append(check_steps(t, profile.n))
        except (ValueError, TypeError) as e:
            raise ValueError(f"problem {i}: {e}") from None
    return np.asarray(budgets, dtype=np.int64)


def _group(profiles: list, budgets: np.ndarray) -> tuple[list[int], dict]:
    """Problems with T in (1, n) grouped by (n, bucket(T)); the others need no optimizer."""
    trivial, groups = [], {}
    for i, (profile, t) in enumerate(zip(profiles, budgets, strict=True)):
        if t in (1, profile.n):
            trivial.append(i)
        else:
            groups.setdefault((profile.n, bucket(t)), []).append(i)
    return trivial, {key: np.asarray(v) for key, v in groups.items()}


def _chunks(members: np.ndarray, n: int) -> list[np.ndarray]:
    size = max(1, _CHUNK_BYTES // (_BYTES_PER_TOKEN * (n + 1)))
    return [members[i : i + size] for i in range(0, len(members), size)]


def _padded_size(count: int) -> int:
    """A batch size that shards evenly: a power of two (few compiled shapes), and a multiple
    of the device count."""
    devices = jax.device_count()
    size = max(1 << (count - 1).bit_length(), devices)
    return -(-size // devices) * devices


def _solve_group(entropy: np.ndarray, steps: np.ndarray, padded: int, settings):
    """Solve one group; returns (int[B, padded - 1] cuts, float[B] relaxed, float[B] KL)."""
    iterations, window, polish, optimizer = settings
    first = optimizer if optimizer is not None else default_optimizer(iterations)
    cuts, relaxed, kl = _sharded(entropy, steps, padded, first, iterations, window)
    # A descent that ends above its own integer schedule's KL has not converged.
    again = np.nonzero(relaxed > kl * (1 + 1e-12) + 1e-12)[0]
    if again.size and polish > 0:
        second = optimizer if optimizer is not None else default_optimizer(polish)
        c2, r2, k2 = _sharded(entropy[again], steps[again], padded, second, polish, window)
        better = k2 < kl[again]
        cuts[again[better]], relaxed[again[better]], kl[again[better]] = (
            c2[better], r2[better], k2[better]
        )
    return cuts, relaxed, kl


def _sharded(entropy, steps, padded, optimizer, iterations, window):
    """One compiled call over the batch axis, sharded across all devices (and hosts)."""
    count = entropy.shape[0]
    size = _padded_size(count)
    fill = np.arange(size) % count  # padding rows repeat real problems; dropped below
    entropy, steps = entropy[fill], steps[fill].astype(np.int32)
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    inputs = [
        jax.make_array_from_callback(a.shape, sharding, lambda index, a=a: a[index])
        for a in (entropy, steps)
    ]
    outputs = _solve_vmapped(*inputs, padded, optimizer, iterations, window)
    return tuple(np.array(_to_host(x)[:count]) for x in outputs)


@functools.partial(
    jax.jit, static_argnames=("padded_steps", "optimizer", "num_iterations", "window")
)
def _solve_vmapped(entropy, steps, padded_steps, optimizer, num_iterations, window):
    def one(entropy, steps):
        cuts, relaxed = solve(
            entropy, steps, padded_steps, optimizer, num_iterations, window,
            powers=(0.5,), repair_fn=settle,
        )
        sizes = jnp.diff(jnp.concatenate([jnp.zeros(1, cuts.dtype), cuts,
                                          jnp.full(1, entropy.shape[0] - 1, cuts.dtype)]))
        return cuts, relaxed, _expected_kl(entropy, sizes)  # THEORY 3's first form, float64

    return jax.vmap(one)(entropy, steps)


def _to_host(x: jax.Array) -> np.ndarray:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def _kl_sum(profile: EntropyProfile, steps: int) -> float:
    """KL of the only schedule: one step of n tokens (T = 1) or n single tokens (zero)."""
    if steps == profile.n:
        return 0.0
    g = np.asarray(profile.conditional_entropy)
    return float(np.sum(g[0] - g))


def _schedule(tokens: np.ndarray, kl, relaxed: float | None) -> Schedule:
    # Built directly: the KL was computed in the batch (Schedule.from_tokens would re-check and
    # re-evaluate every schedule one call at a time).
    return Schedule(
        tokens_per_step=np.asarray(tokens, dtype=np.int64),
        expected_kl=np.float64(kl),
        method="optax",
        relaxed_kl=relaxed,
    )
