"""The optimizer: Optax on the relaxed schedule, then rounding and an exact local repair.

THEORY section 4. The relaxed objective `relaxed_kl` is minimised over real cuts kept ordered
inside (0, n) by the parametrisation

    tokens_per_step = 1 + (n - T) * softmax(theta),   cuts = cumsum(tokens_per_step)[:-1],

so every relaxed step unmasks at least one token. Four starts run side by side (vmapped), from
the square-root rule (block size proportional to (-g')^(-1/2)), the uniform schedule and two
other powers of -g'. Each start's relaxed cuts are rounded to integers and repaired by a
dynamic program restricted to a window of integer positions around each cut, re-centred until
no cut sits on its window's edge; the start with the least exact KL wins.

Budgets are padded to the next power of two (zero-width steps), so one compiled program
serves every T in a bucket.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from .divergence import _relaxed_kl
from .profile import EntropyProfile
from .schedules import Schedule, check_steps

NUM_ITERATIONS = 400
LEARNING_RATE = 0.1
WINDOW = 8  # the repair searches cut +- WINDOW around each rounded cut
_MAX_REPAIR_ROUNDS = 64


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
    sampler: str = "fixed",
    robust: int | None = None,
) -> Schedule:
    """The best T-step schedule for `profile`, found with Optax and repaired to integers.

    Args:
        profile: the entropy profile (n tokens).
        steps: the budget T, 1 <= T <= n.
        optimizer: any `optax.GradientTransformation` (default: Adam, cosine-decayed learning
            rate from 0.1). Pass the same object again to reuse the compiled program.
        num_iterations: gradient steps on the relaxed objective.
        window: half-width (tokens) of the exact repair's search window around each cut.
        sampler: "fixed" (integer counts, the default) or "binomial": the best alpha grid
            for random-count samplers, a `TimeGrid` (see `schedopt.optimize_binomial`).
        robust: R, for a profile with standard errors: minimise the mean expected KL over R
            perturbed, regularised copies of the curve and report it with an interval (see
            `schedopt.robust.optimize_robust`).

    Returns:
        A `Schedule` with method "optax", its exact expected KL (float64) and the relaxed
        objective value before rounding.

    Example:
        >>> import schedopt, numpy as np
        >>> g = 1.0 / (1.0 + np.arange(64))  # a decreasing conditional entropy curve
        >>> profile = schedopt.EntropyProfile.from_conditional_entropy(g)
        >>> schedopt.optimize(profile, 4).tokens_per_step.tolist()
        [1, 3, 10, 50]
    """
    if robust is not None:  # robust to the profile's estimation noise
        from .robust import optimize_robust

        return optimize_robust(
            profile, steps, robust, optimizer=optimizer, num_iterations=num_iterations,
            window=window,
        )
    if sampler != "fixed":  # random-count samplers
        from .binomial import optimize_binomial

        if sampler != "binomial":
            raise ValueError(f"sampler must be 'fixed' or 'binomial', got {sampler!r}")
        return optimize_binomial(profile, steps, optimizer=optimizer, num_iterations=num_iterations)
    steps = check_steps(steps, profile.n)
    if isinstance(num_iterations, bool) or int(num_iterations) != num_iterations:
        raise ValueError(f"num_iterations must be a whole number, got {num_iterations!r}")
    if num_iterations < 0 or window < 1:
        raise ValueError(
            f"need num_iterations >= 0 and window >= 1, got {num_iterations=} and {window=}"
        )
    if optimizer is None:
        optimizer = default_optimizer(int(num_iterations))
    n = profile.n
    if steps in (1, n):  # a single schedule exists
        tokens = np.full(steps, n // steps, dtype=np.int64)
        return Schedule.from_tokens(profile, tokens, "optax", relaxed_kl=None)
    cuts, relaxed = _optimize(
        profile.entropy, steps, bucket(steps), optimizer, int(num_iterations), int(window)
    )
    cuts = np.asarray(cuts)[: steps - 1]
    tokens = np.diff(np.concatenate([[0], cuts, [n]]))
    return Schedule.from_tokens(profile, tokens, "optax", relaxed_kl=float(relaxed))


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
def _optimize(entropy, steps, padded_steps, optimizer, num_iterations, window):
    """`solve` for one problem, compiled."""
    return solve(entropy, steps, padded_steps, optimizer, num_iterations, window)


def solve(
    entropy, steps, padded_steps, optimizer, num_iterations, window, *,
    powers=_START_POWERS, repair_fn=None,
):
    """Relaxed descent from several starts, each rounded and repaired; the best is kept.

    Pure and not compiled, so that callers can vmap it over (entropy, steps) (`optimize_batch`).

    Args:
        entropy: float[n + 1] H.
        steps: the budget T (may be traced).
        padded_steps: the compiled budget P >= T (static).
        optimizer, num_iterations, window: as for `optimize` (static).
        powers: the starts' density powers (a tuple, or an array that may be traced).
        repair_fn: (entropy, cuts, steps, window) -> cuts; default `repair`.

    Returns (int[padded_steps - 1] cuts, the first steps - 1 of them real; relaxed value).
    """
    n = entropy.shape[0] - 1
    repair_fn = repair if repair_fn is None else repair_fn

    def solve_from(power):
        theta = density_logits(entropy, steps, padded_steps, power)
        theta, relaxed = descend(entropy, theta, steps, optimizer, num_iterations)
        cuts = round_cuts(cuts_from_logits(theta, steps, n), steps, n)
        cuts = repair_fn(entropy, cuts, steps, window)
        return cuts, relaxed, cuts_kl(entropy, cuts)

    cuts, relaxed, kl = jax.vmap(solve_from)(jnp.asarray(powers, entropy.dtype))
    best = jnp.argmin(kl)
    return cuts[best], relaxed[best]


def cuts_kl(entropy: jnp.ndarray, cuts: jnp.ndarray) -> jnp.ndarray:
    """Expected KL of integer cuts (int[P - 1], padded with n): the sum of block costs."""
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    bounds = jnp.concatenate([jnp.zeros(1, cuts.dtype), cuts, jnp.full(1, n, cuts.dtype)])
    a, b = bounds[:-1], bounds[1:]
    return jnp.sum((b - a) * g[jnp.minimum(a, n - 1)] - (entropy[b] - entropy[a]))


def cuts_from_logits(theta: jnp.ndarray, steps, n: int) -> jnp.ndarray:
    """float[P] logits -> float[P - 1] ordered cuts for a T-step schedule padded to P steps.

    Each of the first T steps is at least one token wide; padded steps have width zero, so
    cuts T..P-1 sit at n.
    """
    real = jnp.arange(theta.shape[0]) < steps
    weights = jax.nn.softmax(jnp.where(real, theta, -jnp.inf))
    sizes = jnp.where(real, 1.0 + (n - steps) * weights, 0.0)
    return jnp.cumsum(sizes)[:-1]


def density_logits(entropy: jnp.ndarray, steps, padded_steps: int, power=0.5) -> jnp.ndarray:
    """Logits of the schedule whose cut density is proportional to (-g')^power.

    power = 1/2 is the square-root rule: the continuum optimum (THEORY 4) has block size
    proportional to (-g')^(-1/2). A small floor keeps cuts spread where g is flat.
    """
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    drop = jnp.maximum(g[:-1] - g[1:], 0.0) ** power
    density = jnp.concatenate([drop, jnp.zeros(1, drop.dtype)])
    density = density + 1e-3 * jnp.mean(density) + 1e-12
    mass = jnp.concatenate([jnp.zeros(1, density.dtype), jnp.cumsum(density)])
    targets = mass[-1] * jnp.arange(1, padded_steps) / steps
    cuts = jnp.interp(targets, mass, jnp.arange(n + 1, dtype=mass.dtype))
    sizes = jnp.diff(jnp.concatenate([jnp.zeros(1), cuts, jnp.full(1, n)]))
    return jnp.log(jnp.maximum(sizes - 1.0, 0.0) + 0.5)


def descend(entropy, theta, steps, optimizer, num_iterations):
    """Minimise the relaxed KL over logits with `optimizer`; returns (best logits, best value)."""
    n = entropy.shape[0] - 1
    return minimise(
        lambda t: _relaxed_kl(entropy, cuts_from_logits(t, steps, n)),
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
        updates, state = optimizer.update(
            grad, state, theta, value=value, grad=grad, value_fn=objective
        )
        return (optax.apply_updates(theta, updates), state, best_theta, best_value), None

    init = (theta, optimizer.init(theta), theta, jnp.asarray(jnp.inf, theta.dtype))
    (theta, _, best_theta, best_value), _ = jax.lax.scan(step, init, None, num_iterations)
    final = objective(theta)
    return jnp.where(final < best_value, theta, best_theta), jnp.minimum(final, best_value)


def round_cuts(cuts: jnp.ndarray, steps, n: int) -> jnp.ndarray:
    """Nearest integer cuts, pushed apart so that each of the T steps has at least one token.

    Padded cuts (index >= T - 1) are set to n.
    """
    k = jnp.arange(1, cuts.shape[0] + 1)
    c = jnp.clip(jnp.round(cuts).astype(jnp.int32), k, n - steps + k)
    # c_k - k must be non-decreasing for c to be strictly increasing.
    c = jnp.minimum(jax.lax.cummax(c - k) + k, n - steps + k)
    return jnp.where(k < steps, c, n)


def repair(entropy: jnp.ndarray, cuts: jnp.ndarray, steps, window: int) -> jnp.ndarray:
    """The best integer cuts within +-window of `cuts`, re-centred until none is on an edge.

    Each round is an exact dynamic program over the (P - 1) x (2 window + 1) candidate grid,
    so the result is at least as good as the rounded cuts and is a local optimum under
    simultaneous moves of every cut by up to `window` tokens.
    """

    def cond(carry):
        _, on_edge, rounds = carry
        return on_edge & (rounds < _MAX_REPAIR_ROUNDS)

    def body(carry):
        cuts, _, rounds = carry
        new, offsets = _window_dp(entropy, cuts, steps, window)
        edge = (offsets == 0) | (offsets == 2 * window)
        moved = jnp.any(new != cuts)
        return new, moved & jnp.any(edge), rounds + 1

    cuts, _, _ = jax.lax.while_loop(cond, body, (cuts, jnp.asarray(True), 0))
    return cuts


def _window_dp(entropy, cuts, steps, window):
    """One exact DP over cuts restricted to cuts +- window. Returns (cuts, chosen offsets).

    Padded cuts (index >= T - 1) may only stay at n, through zero-width blocks of cost 0.
    """
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    k = jnp.arange(1, cuts.shape[0] + 1)[:, None]
    cand = cuts[:, None] + jnp.arange(-window, window + 1)[None, :]  # [P-1, W]
    feasible = jnp.where(k < steps, (cand >= k) & (cand <= n - steps + k), cand == n)
    cand = jnp.clip(cand, 1, n)

    def cost(a, b):
        block = (b - a) * g[jnp.minimum(a, n - 1)] - (entropy[b] - entropy[a])
        return jnp.where(b > a, block, jnp.where((b == a) & (a == n), 0.0, jnp.inf))

    first = jnp.where(feasible[0], cost(0, cand[0]), jnp.inf)

    def step(value, xs):
        prev_cand, cand_k, feasible_k = xs
        total = value[:, None] + cost(prev_cand[:, None], cand_k[None, :])  # [W_prev, W]
        arg = jnp.argmin(total, axis=0)
        best = jnp.where(feasible_k, jnp.min(total, axis=0), jnp.inf)
        return best, arg

    last, args = jax.lax.scan(step, first, (cand[:-1], cand[1:], feasible[1:]))
    end = jnp.argmin(last + cost(cand[-1], n))

    def back(o, arg):
        return arg[o], o

    # args[i] maps an offset of cut i + 1 to the best offset of cut i.
    first_offset, later = jax.lax.scan(back, end, args, reverse=True)
    offsets = jnp.concatenate([first_offset[None], later])
    return jnp.take_along_axis(cand, offsets[:, None], axis=1)[:, 0], offsets
