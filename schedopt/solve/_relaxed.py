"""The optimizer: Optax on the relaxed schedule, then rounding, an exact local repair, and a
certificate from the exact DP.

docs/theory.md §4. The relaxed objective `relaxed_kl` is minimised over real cuts kept ordered
inside (0, n) by the parametrisation

    tokens_per_step = 1 + (n - T) * softmax(theta),   cuts = cumsum(tokens_per_step)[:-1],

so every relaxed step unmasks at least one token. Four starts run side by side (vmapped), from
the square-root rule (block size proportional to (-g')^(-1/2)), the uniform schedule and two
other powers of -g'. Each start's relaxed cuts are mapped onto the grid of run starts of g (a
cut inside a flat run of g moves to the run's start at no cost, docs/theory.md §4), rounded,
and repaired by a dynamic program restricted to a window of grid points around each cut,
re-centred until the cuts stop moving (a fixed point: no simultaneous move of the cuts by up
to `window` grid points lowers the KL). Working on the run grid lets the repair jump across
the long plateaus of regularised estimates, where the relaxed objective has no gradient. The
start with the least exact KL wins, and the exact solver (`schedopt.solve.optimal_tokens`, the
Lagrangian search of `schedopt.solve`, O(m log(1/eps)) for any T) certifies it (or, in
the rare case it finds better, replaces it).

Budgets are padded to the next power of two (zero-width steps) and grids to a power of two of
points, so one compiled program serves many problems.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .._internal.checks import check_steps, whole_number
from .._internal.precision import float64
from ..curve import EntropyProfile
from ..objective import block_cost, kl_of_tokens, relaxed_kl_of_cuts
from ..schedule import Schedule
from ._exact import CutGrid, make_grid, optimal_tokens, run_starts, spread_cuts

NUM_ITERATIONS = 400
LEARNING_RATE = 0.1
WINDOW = 12  # the repair searches +- WINDOW grid points around each rounded cut
_MAX_REPAIR_ROUNDS = 64
# Results within this (relative and absolute, nats) of the DP's optimum count as optimal.
TOLERANCE = 1e-9


@functools.lru_cache(maxsize=8)
def default_optimizer(num_iterations: int = NUM_ITERATIONS) -> optax.GradientTransformation:
    """Adam with a cosine-decayed learning rate (one cached object per length, so that jit
    compiles once per problem shape)."""
    return optax.adam(optax.cosine_decay_schedule(LEARNING_RATE, num_iterations, alpha=1e-3))


def optimize(
    profile: EntropyProfile,
    steps: int,
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_iterations: int = NUM_ITERATIONS,
    window: int = WINDOW,
    certify: bool = True,
) -> Schedule:
    """The best T-step schedule for `profile`, found with Optax, repaired and certified.

    For random-count samplers see `schedopt.optimize_binomial`; for noisy estimates,
    `schedopt.optimize_robust`.

    Args:
        profile: the entropy profile (n tokens; g non-increasing).
        steps: the budget T, 1 <= T <= n.
        optimizer: any `optax.GradientTransformation` (default: Adam, cosine-decayed learning
            rate from 0.1). Pass the same object again to reuse the compiled program.
        num_iterations: gradient steps on the relaxed objective.
        window: half-width (grid points) of the exact repair's search window around each cut.
        certify: run the exact solver to certify the result (always affordable: it costs
            less than the optimizer); its schedule replaces the optimizer's if it is better.

    Returns:
        A `Schedule` with its exact expected KL (float64), the relaxed objective before
        rounding, `certified` and `lower_bound`. Method "optax", or "exact" when the DP had to
        replace the optimizer's schedule.

    Example:
        >>> import schedopt, numpy as np
        >>> g = 1.0 / (1.0 + np.arange(64))  # a decreasing conditional entropy curve
        >>> profile = schedopt.EntropyProfile.from_conditional_entropy(g)
        >>> schedopt.optimize(profile, 4).tokens_per_step.tolist()
        [2, 5, 15, 42]
    """
    steps = check_steps(steps, profile.n)
    num_iterations = whole_number(num_iterations, "num_iterations", minimum=0)
    window = whole_number(window, "window", minimum=1)
    if optimizer is None:
        optimizer = default_optimizer(num_iterations)
    return _optimize_host(profile, steps, optimizer, num_iterations, window, bool(certify))


@float64
def _optimize_host(profile, steps, optimizer, num_iterations, window, certify) -> Schedule:
    entropy = np.asarray(profile.entropy, np.float64)
    n = profile.n
    starts = run_starts(entropy)
    runs = starts.size - 1
    if steps >= runs:  # a cut at every run start leaves every block flat: KL 0
        tokens = spread_cuts(starts[1:-1], n, steps)
        return Schedule.from_tokens(profile, tokens, "optax", certified=True, lower_bound=0.0)
    grid = make_grid(entropy, starts)
    cuts, relaxed, kl = _optimize(
        entropy, grid, np.int32(steps), bucket(steps), optimizer, num_iterations, window
    )
    tokens = np.diff(np.concatenate([[0], np.asarray(cuts)[: steps - 1], [n]]))
    kl = float(kl)
    if not certify:
        return Schedule.from_tokens(profile, tokens, "optax", relaxed_kl=float(relaxed))
    optimum, exact_tokens = optimal_tokens(entropy, steps)
    optimum = max(optimum, 0.0)
    if within_tolerance(kl, optimum):
        return Schedule.from_tokens(
            profile, tokens, "optax", relaxed_kl=float(relaxed), certified=True,
            lower_bound=optimum,
        )
    return Schedule.from_tokens(
        profile, exact_tokens, "exact", relaxed_kl=float(relaxed), certified=True,
        lower_bound=optimum, meta={"optax_kl": kl},
    )


def within_tolerance(kl, optimum):
    """Whether a KL is the optimum, to `TOLERANCE` relative or absolute (numpy-vectorised)."""
    return kl <= optimum + TOLERANCE * np.maximum(1.0, np.abs(optimum))


def bucket(steps: int) -> int:
    """The padded step count a budget is compiled for: the next power of two (at least 2).

    Budgets in one bucket share a compiled program; padded steps unmask zero tokens.
    """
    return max(2, 1 << (int(steps) - 1).bit_length())


# Warm starts: cut density proportional to (-g')^power; power 0 is the uniform schedule and
# 1/2 the continuum optimum. Several starts guard against the relaxed objective's local minima
# (g is only piecewise linear, and flat stretches of g leave cuts with no gradient).
_START_POWERS = (0.5, 0.0, 1.0 / 3.0, 1.0)


@functools.partial(
    jax.jit, static_argnames=("padded_steps", "optimizer", "num_iterations", "window")
)
def _optimize(entropy, grid, steps, padded_steps, optimizer, num_iterations, window):
    """`solve` for one problem, compiled."""
    return solve(entropy, grid, steps, padded_steps, optimizer, num_iterations, window)


def solve(
    entropy, grid: CutGrid, steps, padded_steps, optimizer, num_iterations, window, *,
    powers=_START_POWERS,
):
    """Relaxed descent from several starts, each rounded and repaired; the best is kept.

    Pure and not compiled, so that callers can vmap it over problems (`optimize_batch`).

    Args:
        entropy: float[n + 1] H.
        grid: the `CutGrid` of run starts of g (`schedopt.solve.make_grid`), with more than
            T real intervals.
        steps: the budget T (may be traced).
        padded_steps: the compiled budget P >= T (static).
        optimizer, num_iterations, window: as for `optimize` (static).
        powers: the starts' density powers (a tuple, or an array that may be traced).

    Returns:
        (int32[P - 1] cut positions, the first T - 1 real and the rest n; the relaxed value;
        the exact KL of the cuts).
    """
    n = entropy.shape[0] - 1

    def solve_from(power):
        theta = density_logits(entropy, steps, padded_steps, power)
        theta, relaxed = descend(entropy, theta, steps, optimizer, num_iterations)
        index = grid_index(grid, cuts_from_logits(theta, steps, n), steps)
        cuts = grid.position[repair(grid, index, steps, window)].astype(jnp.int32)
        return cuts, relaxed, kl_of_cuts(entropy, cuts)

    cuts, relaxed, kl = jax.vmap(solve_from)(jnp.asarray(powers, entropy.dtype))
    best = jnp.argmin(kl)
    return cuts[best], relaxed[best], kl[best]


def kl_of_cuts(entropy: jnp.ndarray, cuts: jnp.ndarray) -> jnp.ndarray:
    """Expected KL of integer cuts (int[P - 1], padded with n), by `kl_of_tokens`."""
    n = entropy.shape[0] - 1
    bounds = jnp.concatenate([jnp.zeros(1, cuts.dtype), cuts, jnp.full(1, n, cuts.dtype)])
    return kl_of_tokens(entropy, jnp.diff(bounds))


def grid_index(grid: CutGrid, cuts: jnp.ndarray, steps) -> jnp.ndarray:
    """Real cuts float[P - 1] -> feasible grid indices int32[P - 1] of a T-step schedule.

    Each cut is rounded to an integer position and moved to the start of its run of g (no
    cost), then the indices are pushed apart so that each of the T steps spans at least one
    grid interval; padded cuts (index >= T - 1) go to the point n.
    """
    rounded = jnp.round(cuts).astype(grid.position.dtype)
    index = jnp.searchsorted(grid.position, rounded, side="right").astype(jnp.int32) - 1
    k = jnp.arange(1, cuts.shape[0] + 1, dtype=jnp.int32)
    upper = grid.last - steps + k
    index = jnp.clip(index, k, upper)
    # index_k - k must be non-decreasing for the indices to be strictly increasing.
    index = jnp.minimum(jax.lax.cummax(index - k) + k, upper)
    return jnp.where(k < steps, index, grid.last).astype(jnp.int32)


def repair(grid: CutGrid, index: jnp.ndarray, steps, window: int) -> jnp.ndarray:
    """Exact window DPs re-centred until the cuts stop moving (grid indices in and out).

    Each round is an exact DP over the (P - 1) x (2 window + 1) candidate grid, so the result
    is at least as good as the input, and at the fixed point no simultaneous move of the cuts
    by up to `window` grid points each lowers the KL.
    """

    def body(carry):
        index, _, rounds = carry
        new = _window_dp(grid, index, steps, window)
        return new, jnp.any(new != index), rounds + 1

    index, _, _ = jax.lax.while_loop(
        lambda c: c[1] & (c[2] < _MAX_REPAIR_ROUNDS), body, (index, jnp.asarray(True), 0)
    )
    return index


def _window_dp(grid: CutGrid, index, steps, window):
    """One exact DP over cut indices restricted to index +- window.

    Padded cuts (index >= T - 1) may only stay at the point n, through zero-width blocks of
    cost 0.
    """
    last = grid.last
    m = grid.slope.shape[0]
    k = jnp.arange(1, index.shape[0] + 1, dtype=jnp.int32)[:, None]
    cand = index[:, None] + jnp.arange(-window, window + 1, dtype=jnp.int32)[None, :]  # [P-1, W]
    feasible = jnp.where(k < steps, (cand >= k) & (cand <= last - steps + k), cand == last)
    cand = jnp.clip(cand, 1, last)

    def cost(a, b):
        block = block_cost(
            grid.position[a], grid.entropy[a], grid.slope[jnp.minimum(a, m - 1)],
            grid.position[b], grid.entropy[b],
        )
        return jnp.where(b > a, block, jnp.where((b == a) & (a == last), 0.0, jnp.inf))

    first = jnp.where(feasible[0], cost(0, cand[0]), jnp.inf)

    def step(value, xs):
        prev_cand, cand_k, feasible_k = xs
        total = value[:, None] + cost(prev_cand[:, None], cand_k[None, :])  # [W_prev, W]
        arg = jnp.argmin(total, axis=0)
        best = jnp.where(feasible_k, jnp.min(total, axis=0), jnp.inf)
        return best, arg

    final, args = jax.lax.scan(step, first, (cand[:-1], cand[1:], feasible[1:]))
    end = jnp.argmin(final + cost(cand[-1], last))

    def back(o, arg):
        return arg[o], o

    # args[i] maps an offset of cut i + 1 to the best offset of cut i.
    first_offset, later = jax.lax.scan(back, end, args, reverse=True)
    offsets = jnp.concatenate([first_offset[None], later])
    return jnp.take_along_axis(cand, offsets[:, None], axis=1)[:, 0].astype(jnp.int32)


def cuts_from_logits(theta: jnp.ndarray, steps, n: int) -> jnp.ndarray:
    """float[P] logits -> float[P - 1] ordered cuts for a T-step schedule padded to P steps.

    Each of the first T steps is at least one token wide; padded steps have width zero, so
    cuts T..P-1 sit at n.
    """
    real = jnp.arange(theta.shape[0], dtype=jnp.int32) < steps
    weights = jax.nn.softmax(jnp.where(real, theta, -jnp.inf))
    sizes = jnp.where(real, 1.0 + jnp.asarray(n - steps, weights.dtype) * weights, 0.0)
    return jnp.cumsum(sizes)[:-1]


def density_logits(entropy: jnp.ndarray, steps, padded_steps: int, power=0.5) -> jnp.ndarray:
    """Logits of the schedule whose cut density is proportional to (-g')^power.

    power = 1/2 is the square-root rule: the continuum optimum (theory §4) has block size
    proportional to (-g')^(-1/2). A small floor keeps cuts spread where g is flat.
    """
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    drop = jnp.maximum(g[:-1] - g[1:], 0.0) ** power
    density = jnp.concatenate([drop, jnp.zeros(1, drop.dtype)])
    density = density + 1e-3 * jnp.mean(density) + 1e-12
    mass = jnp.concatenate([jnp.zeros(1, density.dtype), jnp.cumsum(density)])
    targets = mass[-1] * jnp.arange(1, padded_steps, dtype=mass.dtype)
    targets = targets / jnp.asarray(steps, mass.dtype)
    cuts = jnp.interp(targets, mass, jnp.arange(n + 1, dtype=mass.dtype))
    sizes = jnp.diff(jnp.concatenate([jnp.zeros(1, cuts.dtype), cuts, jnp.full(1, n, cuts.dtype)]))
    return jnp.log(jnp.maximum(sizes - 1.0, 0.0) + 0.5)


def descend(entropy, theta, steps, optimizer, num_iterations):
    """Minimise the relaxed KL over logits with `optimizer`; returns (best logits, best value)."""
    n = entropy.shape[0] - 1
    return minimise(
        lambda t: relaxed_kl_of_cuts(entropy, cuts_from_logits(t, steps, n)),
        theta,
        optax.with_extra_args_support(optimizer),
        num_iterations,
    )


def minimise(objective, theta, optimizer, num_iterations):
    """Run an Optax optimizer for a fixed number of steps under `lax.scan`.

    The optimizer receives value, grad and value_fn as extra arguments, so line-search methods
    (optax.lbfgs) work too; wrap plain transformations with `optax.with_extra_args_support`.

    Returns:
        (the best parameters seen, their objective value).
    """
    value_and_grad = jax.value_and_grad(objective)

    def step(carry, _):
        theta, state, best_theta, best_value = carry
        value, grad = value_and_grad(theta)
        better = value < best_value
        best_theta = jnp.where(better, theta, best_theta)
        best_value = jnp.where(better, value, best_value)
        # Standard promotion for the optimizer alone: optax's L-BFGS adds int32 and int64
        # indices under float64, which a caller's strict promotion would refuse.
        with jax.numpy_dtype_promotion("standard"):
            updates, state = optimizer.update(
                grad, state, theta, value=value, grad=grad, value_fn=objective
            )
        return (optax.apply_updates(theta, updates), state, best_theta, best_value), None

    init = (theta, optimizer.init(theta), theta, jnp.asarray(jnp.inf, theta.dtype))
    (theta, _, best_theta, best_value), _ = jax.lax.scan(step, init, None, num_iterations)
    final = objective(theta)
    return jnp.where(final < best_value, theta, best_theta), jnp.minimum(final, best_value)
