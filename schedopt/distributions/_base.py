"""The interface every known distribution implements, and the input checks they share.

A distribution is a law mu over sequences x in {0..V-1}^n. It samples, gives the conditional
marginals mu(x_i | x_revealed) of every position, scores sequences, and knows its entropy
profile (theory §2 and 8): exactly where a formula or an enumeration exists, otherwise by the
Rao-Blackwellised Monte Carlo estimator of `schedopt.estimate`.
"""

from __future__ import annotations

import abc
import inspect
import itertools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import log_or_neg_inf
from .._internal.checks import BYTES_PER_TOKEN, check_fits, whole_number
from .._internal.precision import float64
from ..curve import EntropyProfile

# Enumerating V^n sequences (Distribution.table) is refused above this many.
MAX_ENUMERATION = 2**16

# Probabilities given by users may carry rounding from text files; anything further off
# than this is a mistake, not rounding.
_SUM_TOLERANCE = 1e-6


class Distribution(abc.ABC):
    """A known law over length-n token sequences with vocabulary size V.

    Subclasses implement `_conditionals` on 2-D batches, `sample` and `log_prob`; exact
    profiles override `profile`.

    Attributes:
        n: sequence length (tokens).
        vocab_size: V, the number of token values.
    """

    n: int
    vocab_size: int

    def __init_subclass__(cls, **kwargs):
        # A known law is the laboratory: its profiles, samples and probabilities are exact
        # references, computed in float64 whatever the caller's JAX precision.
        super().__init_subclass__(**kwargs)
        for name, attribute in list(vars(cls).items()):
            if inspect.isfunction(attribute) and not name.startswith("_"):
                setattr(cls, name, float64(attribute))

    # ---------------------------------------------------------------- to implement
    @abc.abstractmethod
    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        """`samples` independent sequences from mu: int32[samples, n]."""

    @abc.abstractmethod
    def log_prob(self, x: Any) -> jnp.ndarray:
        """log mu(x) in nats for x int[..., n]: float64[...] (-inf outside the support)."""

    @abc.abstractmethod
    def _conditionals(self, x: jnp.ndarray, revealed: jnp.ndarray) -> jnp.ndarray:
        """`conditionals` on x int32[B, n], revealed bool[B, n] (traceable)."""

    # ---------------------------------------------------------------- shared
    @property
    def exact_profile(self) -> bool:
        """Whether `profile()` gives the exact curve (else estimate it: `schedopt.estimate_law`)."""
        return False

    @float64
    def conditionals(self, x: Any, revealed: Any) -> jnp.ndarray:
        """The conditional marginals mu(x_i = v | x_revealed) of every position.

        Args:
            x: int[..., n] tokens; values at unrevealed positions are ignored.
            revealed: bool[..., n], which positions are observed.

        Returns:
            float64[..., n, V] probabilities. At a masked position i, the law of X_i given the
            revealed tokens; at a revealed position, the point mass on x_i.
        """
        x, revealed = self._check_batch(x, revealed)
        lead = x.shape[:-1]
        out = self._conditionals(x.reshape(-1, self.n), revealed.reshape(-1, self.n))
        return out.reshape(*lead, self.n, self.vocab_size)

    @float64
    def log_conditionals(self, x: Any, revealed: Any) -> jnp.ndarray:
        """log of `conditionals` (nats; -inf where a value is impossible).

        Pass this as `logits_fn` to `schedopt.estimate_profile`: log-probabilities are
        logits whose softmax is the conditional itself.
        """
        return log_or_neg_inf(self.conditionals(x, revealed))

    def profile(self) -> EntropyProfile:
        """The exact entropy profile H_0..H_n (nats), where this law has one (`exact_profile`).

        A law without an exact curve has its Monte Carlo estimate in the estimation stage,
        which draws from it: `schedopt.estimate_law(law, key=...).profile("model")`.

        Raises:
            ValueError: the law has no exact curve.
        """
        raise ValueError(
            f"{type(self).__name__} has no exact entropy profile; estimate it by Monte Carlo "
            "with schedopt.estimate_law(law, key=jax.random.key(seed)).profile(\"model\")"
        )

    @float64
    def table(self) -> np.ndarray:
        """The joint probabilities as float64[V, ..., V] (n axes), by enumeration.

        Raises:
            ValueError: V^n exceeds `MAX_ENUMERATION`.
        """
        size = check_enumerable(self.vocab_size, self.n, "the distribution")
        grid = np.asarray(list(itertools.product(range(self.vocab_size), repeat=self.n)))
        logp = np.asarray(self.log_prob(jnp.asarray(grid.reshape(size, self.n), jnp.int32)))
        return np.exp(logp).reshape((self.vocab_size,) * self.n)

    def _check_batch(self, x: Any, revealed: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
        x = jnp.asarray(x)
        revealed = jnp.asarray(revealed)
        if x.ndim < 1 or x.shape[-1] != self.n:
            raise ValueError(
                f"x has shape {x.shape} but the distribution has n = {self.n}; "
                f"give tokens of shape [..., {self.n}]"
            )
        if revealed.shape != x.shape:
            raise ValueError(
                f"revealed has shape {revealed.shape} but x has {x.shape}; give one flag "
                "per token"
            )
        if not isinstance(x, jax.core.Tracer) and x.size:  # concrete: check token ids
            low, high = int(x.min()), int(x.max())
            if low < 0 or high >= self.vocab_size:
                bad = low if low < 0 else high
                raise ValueError(
                    f"x holds token {bad} but the vocabulary is 0..{self.vocab_size - 1}; "
                    "give token ids in range"
                )
        return x.astype(jnp.int32), revealed.astype(bool)


# --------------------------------------------------------------------------- helpers
def as_jax(*arrays: Any) -> tuple[jnp.ndarray, ...]:
    """A law's numpy parameters as JAX arrays in the current precision.

    Jitted kernels get JAX arrays, never numpy ones: a numpy argument lets a program compiled
    under one precision be reused under the other (the laws run in float64 inside, and in the
    caller's precision when traced by the caller), which XLA then refuses. The dtype is
    explicit because JAX (0.10) caches the conversion of a numpy array per object, so a
    parameter converted once under float64 would come back float64 inside a float32 trace.
    """
    return tuple(jnp.asarray(a, dtype=jax.dtypes.canonicalize_dtype(np.asarray(a).dtype))
                 for a in arrays)


def point_mass(x: jnp.ndarray, revealed: jnp.ndarray, probs: jnp.ndarray) -> jnp.ndarray:
    """Replace the conditionals at revealed positions by the point mass on x_i."""
    onehot = jax.nn.one_hot(x, probs.shape[-1], dtype=probs.dtype)
    return jnp.where(revealed[..., None], onehot, probs)


def entropy_nats(p: np.ndarray, axis: int = -1) -> np.ndarray:
    """Shannon entropy -sum p log p (nats) along `axis`, with 0 log 0 = 0."""
    p = np.asarray(p, dtype=np.float64)
    safe = np.where(p > 0, p, 1.0)
    return -np.sum(p * np.log(safe), axis=axis)


def check_length(n: Any, name: str = "n") -> int:
    """A sequence length: a whole number >= 1 whose curves fit in memory (see
    `schedopt._internal.checks.whole_number` and `check_fits`)."""
    n = whole_number(n, name, minimum=1, unit="tokens")
    return check_fits(n, name, bytes_each=BYTES_PER_TOKEN, unit="tokens", why="its curves")


def check_probabilities(p: Any, name: str, ndim: int) -> np.ndarray:
    """Check an array of distributions along its last axis and renormalise rounding away.

    Args:
        p: the array.
        name: its argument name, for messages.
        ndim: the number of axes it must have.

    Returns:
        float64 array whose last axis sums to 1 exactly (to rounding).
    """
    try:
        a = np.asarray(p, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an array of numbers") from None
    if a.ndim != ndim or 0 in a.shape:
        raise ValueError(
            f"{name} must be a non-empty {ndim}-D array of probabilities, got shape {a.shape}"
        )
    if not np.all(np.isfinite(a)):
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"{name}{list(idx)} is {a[idx]}; probabilities must be finite numbers")
    if np.any(a < 0):
        idx = tuple(int(i) for i in np.argwhere(a < 0)[0])
        raise ValueError(
            f"{name}{list(idx)} = {a[idx]:.6g} is negative; probabilities must be >= 0"
        )
    sums = a.sum(axis=-1)
    # np.atleast_1d: for a single distribution sums is 0-d, where argwhere finds nothing.
    bad = np.argwhere(np.atleast_1d(np.abs(sums - 1.0) > _SUM_TOLERANCE))
    if bad.size:
        idx = tuple(int(i) for i in bad[0]) if sums.ndim else ()
        where = f"{name}{list(idx)}" if idx else name
        raise ValueError(
            f"{where} sums to {sums[idx]:.6g}, not 1; normalise each distribution along the "
            "last axis so it sums to 1"
        )
    return a / sums[..., None]


def check_enumerable(vocab_size: int, n: int, what: str) -> int:
    """V^n, after refusing tables too large to enumerate."""
    size = vocab_size**n
    if size > MAX_ENUMERATION:
        raise ValueError(
            f"{what} has V^n = {vocab_size}^{n} = {size:.3g} sequences, more than the "
            f"{MAX_ENUMERATION} that exact enumeration allows; use a structured distribution "
            "(MarkovChain, HiddenMarkov, MixtureOfProducts) or estimate the profile by Monte "
            "Carlo with schedopt.estimate_profile"
        )
    return size


def safe_normalize(w: jnp.ndarray, axis: int = -1) -> jnp.ndarray:
    """w / sum(w) along `axis`; rows that sum to 0 (impossible evidence) become uniform."""
    total = jnp.sum(w, axis=axis, keepdims=True)
    uniform = jnp.ones_like(w) / w.shape[axis]
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), uniform)


def log_nonneg(p: np.ndarray) -> np.ndarray:
    """NumPy log p with log 0 = -inf and no warnings (for parameters kept as constants)."""
    p = np.asarray(p, dtype=np.float64)
    return np.where(p > 0, np.log(np.where(p > 0, p, 1.0)), -np.inf)
