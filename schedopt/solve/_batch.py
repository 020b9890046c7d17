"""Many (profile, budget) problems in a few compiled, vmapped and sharded calls.

`optimize_batch` groups the problems by sequence length n, budget bucket (`bucket(T)`, the
next power of two), grid size (the run-start grid of g, padded to a power of two) and solver,
and solves each group with one jit-compiled `jax.vmap`, in chunks of a power of two of
problems sized to about 128 MB: no Python loop over problems, and memory O(chunk * (n + T)).
Two solvers share the grid of run starts of g (docs/theory.md §4):

- "exact": certified. On CPU, the Lagrangian solver of `schedopt.solve` (numba), one
  problem at a time: O(m log(1/eps)) for any T, faster than the optimizer at every size
  measured (docs/benchmarks.md). On an accelerator, the vmapped divide-and-conquer DP of
  `schedopt.solve` on the padded grid.
- "optax": the optimizer of `schedopt.optimize` with one start and fewer gradient steps, its
  repair iterated to a fixed point on the same grid; not certified.

`certify="auto"` (the default) is exact on CPU, and on an accelerator when the grid has at
most `AUTO_EXACT_GRID` points; `certify=True` always, `False` never. The batch axis is sharded
over every device with `jax.sharding` (a one-axis `Mesh` and a `NamedSharding`), padded to a
multiple of the device count; each problem's arithmetic is independent of the others, so the
schedules are the same on 1 device as on 8.

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
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from .._internal import progress as _progress
from .._internal.checks import check_steps, whole_number
from .._internal.precision import float64
from ..curve import EntropyProfile
from ..distributed import to_host
from ..objective import kl_of_tokens
from ..schedule import Schedule
from ._exact import (
    CutGrid,
    grid_size,
    make_grid,
    optimal_tokens,
    run_starts,
    solve_on_grid,
    spread_cuts,
)
from ._relaxed import NUM_ITERATIONS, WINDOW, bucket, default_optimizer, kl_of_cuts, solve

# The DP is used by default on grids of at most this many intervals (measured in
# scripts/bench_batch.py: there it is about as fast as the optimizer).
AUTO_EXACT_GRID = 512
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
    num_iterations: int = NUM_ITERATIONS,
    window: int = WINDOW,
    certify: bool | str = "auto",
    quiet: bool = True,
) -> list[Schedule]:
    """The best schedule for every (profile, budget) pair, in a few compiled calls.

    Args:
        profiles: the entropy profiles (any mix of sequence lengths n).
        steps: one budget T for all, or one per profile (1 <= T <= that profile's n).
        optimizer: any `optax.GradientTransformation` for the "optax" solver (default: Adam
            with a cosine-decayed learning rate, as `optimize`).
        num_iterations: gradient steps per problem ("optax" solver; `optimize`'s default).
        window: half-width (grid points) of the exact repair window, moved until a fixed
            point (`optimize`'s default).
        certify: True: solve every problem exactly (certified); False: with the optimizer;
            "auto": exactly on CPU (the Lagrangian solver is the fastest route there), and on
            an accelerator where the grid of run starts is small (`AUTO_EXACT_GRID`).
        quiet: no progress bar over the groups.

    Returns:
        One `Schedule` per problem, in order (method "exact" or "optax", with its exact float64
        KL, `certified` and, for the DP, `lower_bound`).

    Example:
        >>> import schedopt, numpy as np
        >>> profiles = [schedopt.EntropyProfile.from_conditional_entropy(
        ...     1.0 / (1.0 + np.arange(64)) ** p) for p in (0.5, 1.0, 2.0)]
        >>> [s.steps for s in schedopt.optimize_batch(profiles, [4, 8, 16])]
        [4, 8, 16]
    """
    profiles = list(profiles)
    budgets = _check_budgets(profiles, steps)
    num_iterations = whole_number(num_iterations, "num_iterations", minimum=0)
    window = whole_number(window, "window", minimum=1)
    if certify not in (True, False, "auto"):
        raise ValueError(f"certify must be True, False or 'auto', got {certify!r}")
    optimizer = optimizer if optimizer is not None else default_optimizer(num_iterations)
    return _optimize_batch(
        profiles, budgets, (optimizer, num_iterations, window), certify, bool(quiet)
    )


@float64
def _optimize_batch(profiles, budgets, settings, certify, quiet) -> list[Schedule]:
    results: list[Schedule | None] = [None] * len(profiles)
    groups: dict[tuple, list] = {}
    solved: dict[tuple, list] = {}
    for i, (profile, t) in enumerate(zip(profiles, budgets, strict=True)):
        entropy = np.asarray(profile.entropy, np.float64)
        starts = run_starts(entropy)
        if t == 1 or t >= starts.size - 1:  # one schedule, or KL 0 with a cut at every run
            tokens = spread_cuts(starts[1:-1], profile.n, t) if t > 1 else np.array([profile.n])
            kl = float(np.maximum(kl_of_tokens(entropy, tokens), 0.0))
            results[i] = _schedule(tokens, kl, "exact", None, kl)
            continue
        m = grid_size(starts.size - 1)
        on_cpu = jax.default_backend() == "cpu"
        exact = certify is True or (certify == "auto" and (on_cpu or m <= AUTO_EXACT_GRID))
        if exact and on_cpu:  # the compiled CPU solver beats the vmapped DP here
            bound, tokens = optimal_tokens(entropy, int(t))
            solved.setdefault((profile.n, bucket(t)), []).append((i, entropy, tokens, bound))
            continue
        key = (profile.n, bucket(t), m, "exact" if exact else "optax")
        groups.setdefault(key, []).append((i, entropy, make_grid(entropy, starts, m)))
    for (n, padded, _, solver), members in _progress.progress(
        groups.items(), total=len(groups), description="optimizing", quiet=quiet
    ):
        for chunk in _chunks(members, n):
            index = [i for i, _, _ in chunk]
            entropy = np.stack([e for _, e, _ in chunk])
            grid = jax.tree.map(lambda *a: np.stack(a), *[g for _, _, g in chunk])
            rows = (entropy, budgets[index].astype(np.int32), *grid_fields(grid))
            if solver == "exact":
                value, cuts, kl = _sharded(_exact_vmapped, rows, padded_steps=padded)
                relaxed = [None] * len(index)
            else:
                optimizer, iterations, window = settings
                cuts, relaxed, kl = _sharded(
                    _optax_vmapped, rows, padded_steps=padded, optimizer=optimizer,
                    num_iterations=iterations, window=window,
                )
            zeros, ends = np.zeros((len(index), 1), np.int64), np.full((len(index), 1), n)
            tokens = np.diff(np.concatenate([zeros, cuts, ends], axis=1), axis=1)
            for row, i in enumerate(index):
                t = budgets[i]
                kl_i = max(float(kl[row]), 0.0)
                bound = max(float(value[row]), 0.0) if solver == "exact" else None
                rel = None if relaxed[row] is None else float(relaxed[row])
                results[i] = _schedule(tokens[row, :t], kl_i, solver, rel, bound)
    for (_, padded), members in solved.items():
        _finish_solved(results, members, padded)
    return results  # type: ignore[return-value]


def _finish_solved(results: list, members: list, padded: int) -> None:
    """Schedules for problems solved on the host: their KLs in one batched call per group
    (the budgets padded with zero-size steps, so one compiled program serves the group)."""
    tokens = np.zeros((len(members), padded), np.int64)
    for row, (_, _, t, _) in enumerate(members):
        tokens[row, : t.size] = t
    kl = np.asarray(kl_of_tokens(np.stack([e for _, e, _, _ in members]), tokens))
    for row, (i, _, t, bound) in enumerate(members):
        results[i] = _schedule(t, max(float(kl[row]), 0.0), "exact", None, max(bound, 0.0))


def grid_fields(grid: CutGrid) -> tuple:
    """A `CutGrid`'s arrays in a fixed order (to pass through `_sharded`)."""
    return grid.position, grid.entropy, grid.slope, grid.last


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


@functools.partial(jax.jit, static_argnames="padded_steps")
def _exact_vmapped(entropy, steps, position, grid_entropy, slope, last, padded_steps):
    def one(entropy, steps, *fields):
        value, cuts = solve_on_grid(CutGrid(*fields), steps, padded_steps)
        return value, cuts, kl_of_cuts(entropy, cuts)

    return jax.vmap(one)(entropy, steps, position, grid_entropy, slope, last)


@functools.partial(
    jax.jit, static_argnames=("padded_steps", "optimizer", "num_iterations", "window")
)
def _optax_vmapped(entropy, steps, position, grid_entropy, slope, last, padded_steps,
                   optimizer, num_iterations, window):
    def one(entropy, steps, *fields):
        return solve(
            entropy, CutGrid(*fields), steps, padded_steps, optimizer, num_iterations, window,
            powers=(0.5,),
        )

    return jax.vmap(one)(entropy, steps, position, grid_entropy, slope, last)


def _schedule(tokens: np.ndarray, kl: float, method: str, relaxed, bound) -> Schedule:
    # Built directly: the KL was computed in the batch (Schedule.from_tokens would re-check and
    # re-evaluate every schedule one call at a time).
    return Schedule(
        tokens_per_step=np.asarray(tokens, dtype=np.int64),
        expected_kl=np.float64(kl),
        method=method,
        relaxed_kl=relaxed,
        certified=bound is not None,
        lower_bound=bound,
    )
