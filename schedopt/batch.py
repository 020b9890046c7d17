"""Many (profile, budget) problems in one compiled, vmapped and sharded Optax run.

`optimize_batch` groups the problems by sequence length n and budget bucket (`bucket(T)`, the
next power of two: the same compiled shapes `optimize` uses), and solves each group with a
jit-compiled `jax.vmap` of the optimizer's core (`schedopt.optimize.solve`), one call per
chunk of up to a power of two of problems sized to about 128 MB (1024 problems at n = 1024):
no Python loop over problems, and memory O(chunk * (n + T)). The batch axis is sharded over
every device with `jax.sharding` (a one-axis `Mesh` and a `NamedSharding`), padded to a
multiple of the device count; each problem's arithmetic is independent of the others, so the
schedules are the same on 1 device as on 8.

Batch settings differ from `optimize`'s (measured in scripts/bench_batch.py): one start (the
square-root rule) and fewer gradient steps, but a wider repair window iterated to a fixed
point (`settle`). A problem whose relaxed objective ends above the KL of its integer schedule
has not converged (the relaxed optimum is never above the integer one), so for those few
(about 6%) the repair is run again with a window twice as wide, from where it stopped.

Several processes (a TPU pod, a GPU cluster, workstations): after
`schedopt.distributed.initialize` in every process, which all run the same call on the same
inputs, `jax.devices()` lists the devices of every process; each process builds only its own
devices' shards of the batch (`jax.make_array_from_callback`) and every process gets all the
results back (`schedopt.distributed.to_host`), the same as from one process.
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
from .distributed import to_host
from .divergence import _expected_kl
from .optimize import _window_dp, bucket, default_optimizer, solve
from .profile import EntropyProfile
from .schedules import Schedule, check_steps

BATCH_ITERATIONS = 200
BATCH_WINDOW = 12
_SETTLE_ROUNDS = 64
# Problems per compiled call: a power of two whose arrays stay near this size (1024 problems at
# n = 1024). Memory is O(chunk * (n + T)); smaller chunks also stop the vmapped repair loops
# sooner (they run until the chunk's slowest problem settles).
_CHUNK_BYTES = 1 << 27
_BYTES_PER_TOKEN = 64  # float64 H, g and the optimizer's per-token temporaries


def optimize_batch(
    profiles: Sequence[EntropyProfile],
    steps: int | Sequence[int],
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_iterations: int = BATCH_ITERATIONS,
    window: int = BATCH_WINDOW,
    polish: bool = True,
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
        polish: repair the problems whose descent did not converge again, with a window
            twice as wide.
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
    if isinstance(num_iterations, bool) or int(num_iterations) != num_iterations or (
        num_iterations < 0
    ):
        raise ValueError(f"num_iterations must be a whole number >= 0, got {num_iterations!r}")
    if isinstance(window, bool) or int(window) != window or window < 1:
        raise ValueError(f"window must be a whole number >= 1, got {window!r}")
    settings = (int(num_iterations), int(window), bool(polish), optimizer)
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
    fit = max(1, _CHUNK_BYTES // (_BYTES_PER_TOKEN * (n + 1)))
    size = 1 << (fit.bit_length() - 1)  # a power of two: full chunks share one compiled shape
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
    optimizer = optimizer if optimizer is not None else default_optimizer(iterations)
    cuts, relaxed, kl = _sharded(
        _solve_vmapped, (entropy, steps.astype(np.int32)),
        padded_steps=padded, optimizer=optimizer, num_iterations=iterations, window=window,
    )
    # A descent that ends above its own integer schedule's KL has not converged: its cuts may
    # sit in a long, nearly flat valley, more than `window` tokens from the optimum.
    again = np.nonzero(relaxed > kl * (1 + 1e-12) + 1e-12)[0]
    if again.size and polish:
        rows = (entropy[again], cuts[again], steps[again].astype(np.int32))
        cuts[again], kl[again] = _sharded(_settle_vmapped, rows, window=2 * window)
    return cuts, relaxed, kl


def _sharded(fn, rows: tuple, **static) -> tuple:
    """`fn(*rows, **static)` in one compiled call, the batch axis sharded across all devices
    (and hosts)."""
    count = rows[0].shape[0]
    fill = np.arange(_padded_size(count)) % count  # padding repeats real rows; dropped below
    mesh = Mesh(np.asarray(jax.devices()), ("batch",))
    sharding = NamedSharding(mesh, PartitionSpec("batch"))
    inputs = [
        jax.make_array_from_callback(a.shape, sharding, lambda index, a=a: a[index])
        for a in (a[fill] for a in rows)
    ]
    return tuple(np.array(to_host(x)[:count]) for x in fn(*inputs, **static))


@functools.partial(
    jax.jit, static_argnames=("padded_steps", "optimizer", "num_iterations", "window")
)
def _solve_vmapped(entropy, steps, padded_steps, optimizer, num_iterations, window):
    def one(entropy, steps):
        cuts, relaxed = solve(
            entropy, steps, padded_steps, optimizer, num_iterations, window,
            powers=(0.5,), repair_fn=settle,
        )
        return cuts, relaxed, _cuts_kl(entropy, cuts)

    return jax.vmap(one)(entropy, steps)


@functools.partial(jax.jit, static_argnames="window")
def _settle_vmapped(entropy, cuts, steps, window):
    def one(entropy, cuts, steps):
        cuts = settle(entropy, cuts, steps, window)
        return cuts, _cuts_kl(entropy, cuts)

    return jax.vmap(one)(entropy, cuts, steps)


def _cuts_kl(entropy: jnp.ndarray, cuts: jnp.ndarray) -> jnp.ndarray:
    """The exact KL of padded cuts, by THEORY 3's first form (float64)."""
    n = entropy.shape[0] - 1
    bounds = jnp.concatenate([jnp.zeros(1, cuts.dtype), cuts, jnp.full(1, n, cuts.dtype)])
    return _expected_kl(entropy, jnp.diff(bounds))


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
