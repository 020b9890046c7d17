"""Samplers with random counts: the exact expected KL of a time grid, and its optimum.

docs/theory.md §6. MD4, MDLM, SEDD and Dream's "origin" step unmask every masked token
independently. With revealed fraction alpha_k after step k (alpha_0 = 0 < ... < alpha_T = 1) a
token is revealed by step k with probability alpha_k, so N_{k-1} ~ Binomial(n, alpha_{k-1}) and
the revealed positions are uniform given their number. With p_k = (alpha_k - alpha_{k-1}) /
(1 - alpha_{k-1}) and g_n := 0,

    E KL = sum_k E_{t ~ Bin(n, alpha_{k-1})} [(n - t) p_k g_t] - H_n
         = n sum_k (alpha_k - alpha_{k-1}) E_{t ~ Bin(n - 1, alpha_{k-1})} [g_t] - H_n,

the second form by the identity (n - t) Bin(t; n, a) = n (1 - a) Bin(t; n - 1, a).
It needs no g_n and no division, and is smooth in alpha: Optax optimizes it directly.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.scipy.special import gammaln, xlog1py, xlogy

from . import _io
from .checks import LARGEST_WHOLE, expected_kl_field, shown, whole_number
from .precision import float64
from .profile import EntropyProfile
from .relaxed import minimise
from .timegrid import MD4_EPS, alpha_to_timesteps, check_alpha

FORMAT = "schedopt.time_grid"
VERSION = 1


@struct.dataclass
class TimeGrid:
    """A random-count sampler's grid of revealed fractions, with its expected KL.

    Attributes:
        alpha: float64[T + 1], alpha_0 = 0 < alpha_1 < ... < alpha_T = 1: the probability that
            a token is revealed by the end of step k (the expected revealed fraction).
        expected_kl: the exact expected KL (nats) of the random-count sampler on this grid.
        method: how it was made ("binomial-optax", "cosine", "custom", ...).
        meta: free-form metadata kept in the file (holds "n").
    """

    alpha: jnp.ndarray
    expected_kl: jnp.ndarray
    method: str = struct.field(pytree_node=False, default="custom")
    meta: dict = struct.field(pytree_node=False, default_factory=dict)

    @property
    def steps(self) -> int:
        """Number of steps T."""
        return int(np.asarray(self.alpha).shape[-1]) - 1

    @classmethod
    def from_alpha(cls, profile: EntropyProfile, alpha: Any, method: str = "custom") -> TimeGrid:
        """A grid for `profile` from its revealed fractions, with the exact expected KL."""
        alpha = check_alpha(alpha)
        if alpha.ndim != 1:
            raise ValueError(f"alpha must be 1-D for one grid, got shape {alpha.shape}")
        kl = expected_kl_binomial(profile, alpha)
        return cls(alpha=np.asarray(alpha, np.float64), expected_kl=kl, method=method,
                   meta={"n": profile.n})

    def timesteps(
        self, alpha_schedule: str = "linear", eps: float = MD4_EPS, convention: str = "md4"
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sampler times t_0 = 1 > ... > t_T = 0 and dt_k = t_{k-1} - t_k for this grid.

        See `schedopt.timegrid` for the conventions (MD4, MDLM/SEDD).
        """
        return alpha_to_timesteps(np.asarray(self.alpha), alpha_schedule, eps, convention)

    def to_json(self) -> dict:
        """The grid as a `schedopt.time_grid` version 1 dict."""
        return {
            "format": FORMAT,
            "version": VERSION,
            "n": int(self.meta.get("n", 0)),
            "steps": self.steps,
            "alpha": [float(a) for a in np.asarray(self.alpha)],
            "expected_kl": float(self.expected_kl),
            "unit": "nats",
            "sampler": "binomial",
            "method": self.method,
            "meta": dict(self.meta),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the grid atomically as JSON."""
        _io.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, profile: EntropyProfile | None = None) -> TimeGrid:
        """Read a `schedopt.time_grid` file; with `profile`, re-evaluate its KL under it."""
        obj = _io.check_format(_io.read_json(path, "time grid"), path, FORMAT, VERSION)
        _io.check_fields(obj, path, _io.TIME_GRID_FIELDS, "schedopt.time_grid file")
        _io.require_keys(obj, path, ("n", "alpha"))
        where = repr(str(path))
        try:
            # A grid's n goes on to samplers as is: no longer than floats count exactly.
            n = whole_number(obj["n"], "n", minimum=1, maximum=LARGEST_WHOLE, unit="tokens")
            alpha = check_alpha(_io.number_array(obj["alpha"], "alpha"))
            if "steps" in obj and whole_number(obj["steps"], "steps", minimum=1) != alpha.size - 1:
                raise ValueError(
                    f"steps is {obj['steps']} but alpha has {alpha.size} entries "
                    f"({alpha.size - 1} steps); fix or drop the steps field"
                )
            stored = expected_kl_field(obj.get("expected_kl"), "expected_kl")
            if obj.get("unit", "nats") != "nats":
                raise ValueError(f"unit is {shown(obj['unit'])}; time-grid KLs are in \"nats\"")
            if obj.get("sampler", "binomial") != "binomial":
                raise ValueError(f"sampler is {shown(obj['sampler'])}; a time grid is run with "
                                 "random counts: \"binomial\" or drop the field")
            if not isinstance(obj.get("method", ""), str):
                raise ValueError(f"method is {shown(obj['method'])}; give a name in quotes")
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from None
        meta = _io.meta_field(obj, path)
        meta["n"] = n
        if profile is not None:
            if n != profile.n:
                raise ValueError(
                    f"time grid {where} is for n = {n} tokens but the profile has "
                    f"n = {profile.n}; use a grid made for this profile's sequence length"
                )
            kl = expected_kl_binomial(profile, alpha)
        else:
            kl = stored
        return cls(
            alpha=np.asarray(alpha, np.float64),
            expected_kl=np.float64(kl),
            method=str(obj.get("method", "custom")),
            meta=meta,
        )




# --------------------------------------------------------------------------- the objective
def expected_kl_binomial(profile: EntropyProfile, alpha: Any) -> jnp.ndarray:
    """Exact expected KL (nats) of a random-count sampler on the grid `alpha`.

    Every masked token is revealed at step k with probability
    p_k = (alpha_k - alpha_{k-1}) / (1 - alpha_{k-1}), independently (MD4, MDLM, SEDD, Dream's
    "origin" algorithm); the KL is averaged over the random counts and positions.

    Args:
        profile: the data's entropy profile (n tokens).
        alpha: float[..., T + 1] revealed fractions, 0 = alpha_0 < ... < alpha_T = 1. Leading
            dimensions are a batch of grids with the same T.

    Returns:
        float64[...] expected KL in nats. Differentiable in alpha (the Binomial pmf is computed
        in log space with gammaln in float64); jit-able, and unchecked under jit.

    References:
        S. Chen, K. Cong, J. Li, "Optimal Inference Schedules for Masked Diffusion Models",
        COLT 2026; docs/theory.md §6.
    """
    if isinstance(alpha, jax.core.Tracer):
        return _batched_kl_binomial(jnp.asarray(profile.entropy, alpha.dtype), alpha)
    return _expected_kl_binomial_host(profile.entropy, check_alpha(alpha))


@float64
def _expected_kl_binomial_host(entropy: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    return np.asarray(_batched_kl_binomial(jnp.asarray(entropy), jnp.asarray(alpha)))


def _batched_kl_binomial(entropy: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    fn = _expected_kl_binomial
    for _ in range(alpha.ndim - 1):
        fn = jax.vmap(fn, in_axes=(None, 0))
    return fn(entropy, alpha)


@jax.jit
def _expected_kl_binomial(entropy: jnp.ndarray, alpha: jnp.ndarray) -> jnp.ndarray:
    """E KL for entropy float64[n + 1] and a grid float64[T + 1] (second form above)."""
    n = entropy.shape[0] - 1
    return n * jnp.sum(jnp.diff(alpha) * _mean_g(entropy, alpha[:-1])) - entropy[-1]


@float64
def mean_conditional_entropy(profile: EntropyProfile, fraction: Any) -> np.ndarray:
    """E_{t ~ Bin(n - 1, a)} [g_t] (nats) for each revealed fraction a in [0, 1].

    Step (a, b) of a random-count grid costs n (b - a) times this at a (theory §6), so the
    expected KL is their sum minus H_n.
    """
    a = np.asarray(fraction, np.float64)
    if not np.all((a >= 0) & (a <= 1)):
        raise ValueError(f"fractions must lie in [0, 1], got {a.min()} .. {a.max()}")
    entropy = jnp.asarray(profile.entropy)
    return np.asarray(_mean_g(entropy, jnp.asarray(a).ravel())).reshape(a.shape)


@jax.jit
def _mean_g(entropy: jnp.ndarray, fraction: jnp.ndarray) -> jnp.ndarray:
    """E_{t ~ Bin(n - 1, a)} [g_t] for each a of float[m]."""
    n = entropy.shape[0] - 1
    g = jnp.diff(entropy)
    start = fraction[:, None]
    t = jnp.arange(n, dtype=fraction.dtype)
    # Double where: the pmf at alpha = 0 (or 1) is a point mass, and the masked branch keeps
    # log(0) out of the gradient.
    inside = (start > 0) & (start < 1)
    a = jnp.where(inside, start, 0.5)
    log_pmf = (
        gammaln(n * 1.0) - gammaln(t + 1) - gammaln(n - t) + xlogy(t, a) + xlog1py(n - 1 - t, -a)
    )
    point = jnp.where(start >= 1, t == n - 1, t == 0).astype(fraction.dtype)
    pmf = jnp.where(inside, jnp.exp(log_pmf), point)
    return pmf @ g


# --------------------------------------------------------------------------- the optimizer
def _alpha_from_logits(logits: jnp.ndarray) -> jnp.ndarray:
    """Strictly increasing grid from 0 to exactly 1: cumulative softmax of T logits."""
    inner = jnp.cumsum(jax.nn.softmax(logits))[:-1]
    return jnp.concatenate([jnp.zeros(1, logits.dtype), inner, jnp.ones(1, logits.dtype)])


def _logits_from_alpha(alpha: np.ndarray) -> np.ndarray:
    return np.log(np.diff(np.asarray(alpha, dtype=np.float64)))


def _warm_starts(profile: EntropyProfile, steps: int) -> np.ndarray:
    """Starting grids, float64[S, T + 1]: the fixed-count optimum's fractions, and uniform.

    The optimal fixed counts are the natural guess (random counts concentrate around their
    mean); uniform alpha guards against a poor exact optimum on degenerate curves.
    """
    starts = [np.linspace(0.0, 1.0, steps + 1)]
    if steps <= profile.n:
        from .exact import optimal_schedule

        cumulative = optimal_schedule(profile, steps).cumulative
        starts.insert(0, cumulative / profile.n)
    return np.stack(starts)


@functools.partial(jax.jit, static_argnames=("optimizer", "num_iterations"))
def _descend(entropy, logits0, optimizer, num_iterations):
    """Run `optimizer` on the logits; return the best logits seen."""

    def objective(logits):
        return _expected_kl_binomial(entropy, _alpha_from_logits(logits))

    return minimise(objective, logits0, optimizer, num_iterations)[0]


@functools.lru_cache(maxsize=1)
def _default_optimizer() -> optax.GradientTransformationExtraArgs:
    # One instance, so that the jitted descent (keyed on the optimizer) compiles once. A
    # backtracking line search compiles several times faster than the default zoom search and
    # reaches the same optimum on this smooth objective.
    linesearch = optax.scale_by_backtracking_linesearch(max_backtracking_steps=15)
    return optax.lbfgs(linesearch=linesearch)


@float64
def optimize_binomial(
    profile: EntropyProfile,
    steps: int,
    *,
    optimizer: optax.GradientTransformation | None = None,
    num_iterations: int = 100,
    init: Any = None,
) -> TimeGrid:
    """The best random-count grid with T steps: Optax over strictly increasing alpha.

    alpha is parametrised as the cumulative softmax of T logits, so every iterate is strictly
    increasing from exactly 0 to exactly 1. The descent starts from the exact fixed-count
    optimum's fractions N_k / n and from uniform alpha (both at once, under vmap) and keeps the
    better result.

    Args:
        profile: the entropy profile (n tokens).
        steps: the number of steps T >= 1 (more than n is allowed: counts are random).
        optimizer: any `optax.GradientTransformation`; default L-BFGS with a backtracking
            line search (the objective is smooth and cheap, so a quasi-Newton method converges
            in tens of iterations). Pass the same object again to reuse the compiled program.
        num_iterations: optimizer iterations.
        init: optional starting grid float[T + 1] (replaces the default starts).

    Returns:
        A `TimeGrid` with method "binomial-optax" and its exact expected KL.
    """
    if isinstance(steps, bool) or not float(steps).is_integer() or steps < 1:
        raise ValueError(f"steps must be a whole number >= 1, got {steps!r}")
    steps = int(steps)
    if not (isinstance(num_iterations, int) and num_iterations >= 1):
        raise ValueError(f"num_iterations must be a whole number >= 1, got {num_iterations!r}")
    if steps == 1:
        return TimeGrid.from_alpha(profile, [0.0, 1.0], "binomial-optax")
    if init is not None:
        starts = check_alpha(init, "init")[None]
        if starts.shape[-1] != steps + 1:
            raise ValueError(
                f"init has {starts.shape[-1]} values but steps = {steps} needs {steps + 1}"
            )
    else:
        starts = _warm_starts(profile, steps)
    optimizer = _default_optimizer() if optimizer is None else optimizer
    optimizer = optax.with_extra_args_support(optimizer)
    logits0 = jnp.asarray(np.stack([_logits_from_alpha(a) for a in starts]))
    descend = jax.vmap(_descend, in_axes=(None, 0, None, None))
    logits = descend(profile.entropy, logits0, optimizer, num_iterations)
    alphas = jax.vmap(_alpha_from_logits)(logits)
    values = np.asarray(jax.vmap(_expected_kl_binomial, in_axes=(None, 0))(profile.entropy, alphas))
    best = np.array(alphas[int(np.argmin(values))])
    # Re-pin the ends exactly (the softmax sum can miss 1 by an ulp).
    best[0], best[-1] = 0.0, 1.0
    return TimeGrid.from_alpha(profile, best, "binomial-optax")
