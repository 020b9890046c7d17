"""Stationary Markov chains: exact profile in closed form (theory §8)."""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.categorical import inverse_cdf
from .._internal.checks import check_count
from ..curve import EntropyProfile
from ._base import (
    Distribution,
    as_jax,
    check_length,
    check_probabilities,
    entropy_nats,
    log_nonneg,
    point_mass,
    safe_normalize,
)

# Matrix powers are formed this many at a time (one einsum per block).
_POWER_BLOCK = 256
# Elements per chunk of the weighted lag sums (memory ~ 8 bytes each, a few arrays).
_CHUNK_ELEMENTS = 2**21
# The weight of lag d among a j-subset's gaps decays like exp(-(j-1)(d-1)/n); past
# 46 n / (j-1) lags it is below e^-46 ~ 1e-20 of the first and is dropped.
_DECAY_CUTOFF = 46.0


class MarkovChain(Distribution):
    """A stationary Markov chain X_0 -> X_1 -> ... -> X_{n-1}.

    X_0 follows the stationary law pi of `transition`; X_{i+1} | X_i = a follows
    transition[a]. The profile is exact (theory §8) and takes O(n log n + n V^3) time.

    Args:
        transition: float[V, V] row-stochastic matrix P[a, b] = Pr(X_{i+1} = b | X_i = a);
            it must have a unique stationary law (one closed class).
        n: sequence length >= 1.
    """

    def __init__(self, transition: Any, n: int):
        self.transition = check_probabilities(transition, "transition", 2)
        v = self.transition.shape[0]
        if self.transition.shape != (v, v):
            raise ValueError(
                f"transition must be square (V x V), got shape {self.transition.shape}; "
                "row a holds the probabilities of the next token given token a"
            )
        self.n = check_length(n)
        self.vocab_size = v
        self.stationary = stationary_distribution(self.transition)

    @property
    def exact_profile(self) -> bool:
        return True

    def profile(self) -> EntropyProfile:
        """The exact profile from theory §8's closed form."""
        entropy = markov_entropy_curve(self.transition, self.stationary, self.n)
        meta = {"source": "exact", "distribution": "markov", "method": "closed form"}
        return EntropyProfile.from_entropy(entropy, meta=meta)

    @functools.cached_property
    def _powers(self) -> np.ndarray:
        """float64[n, V, V]: P^0 .. P^{n-1} (the largest gap between revealed neighbours).

        Parameters stay NumPy arrays: they become constants when a caller traces under jit.
        """
        return matrix_powers(self.transition, self.n)

    def _conditionals(self, x, revealed):
        return _markov_conditionals(*as_jax(self._powers, self.stationary), x, revealed)

    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        samples = check_count(samples, "samples")
        return _markov_sample(key, *as_jax(self.stationary, self.transition), samples, self.n)

    def log_prob(self, x: Any) -> jnp.ndarray:
        x = jnp.asarray(x, jnp.int32)
        log_pi = jnp.asarray(log_nonneg(self.stationary))
        log_p = jnp.asarray(log_nonneg(self.transition))
        return log_pi[x[..., 0]] + jnp.sum(log_p[x[..., :-1], x[..., 1:]], axis=-1)


# --------------------------------------------------------------------------- exact curve
def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The unique pi with pi P = pi, sum pi = 1.

    Raises:
        ValueError: the chain has several closed classes (no unique stationary law).
    """
    v = transition.shape[0]
    # The rows of P^T - I sum to zero, so one of them is redundant; replacing it by the
    # normalisation gives a system that is non-singular exactly when pi is unique.
    a = transition.T - np.eye(v)
    a[-1] = 1.0
    rhs = np.zeros(v)
    rhs[-1] = 1.0
    if np.linalg.cond(a) > 1e12:
        raise ValueError(
            "transition has more than one stationary distribution (the chain splits into "
            "separate closed classes); make every state reachable from every recurrent state"
        )
    pi = np.clip(np.linalg.solve(a, rhs), 0.0, None)
    return pi / pi.sum()


def power_blocks(p: np.ndarray, start: int = 0):
    """Yield float64[<= 256, V, V] blocks P^start, P^(start+1), ... (one einsum per block)."""
    v = p.shape[0]
    base = np.empty((_POWER_BLOCK, v, v))
    base[0] = np.eye(v)
    for r in range(1, _POWER_BLOCK):
        base[r] = base[r - 1] @ p
    step = base[-1] @ p  # P^block
    current = np.linalg.matrix_power(p, start)
    while True:
        yield np.einsum("ab,rbc->rac", current, base)
        current = current @ step


def matrix_powers(p: np.ndarray, count: int) -> np.ndarray:
    """float64[count, V, V]: P^0, ..., P^(count - 1)."""
    blocks = power_blocks(p)
    out = np.concatenate([next(blocks) for _ in range(-(-count // _POWER_BLOCK))])
    return out[:count]


def lag_mutual_information(
    transition: np.ndarray, stationary: np.ndarray, max_lag: int
) -> np.ndarray:
    """delta_d = I(X_0; X_d) = H(pi) - h_d (nats) for d = 1..D, D <= max_lag.

    Computed as sum_a pi_a KL(P^d[a] || pi), which keeps its relative accuracy when delta is
    small. The data-processing inequality makes delta non-increasing in d, so the series
    stops once it is negligible (below 1e-15 H(pi)); later terms are treated as zero.
    """
    tol = 1e-15 * max(float(entropy_nats(stationary)), 1e-300)
    safe_pi = np.where(stationary > 0, stationary, 1.0)
    out = []
    done = 0
    for q in power_blocks(transition, start=1):
        if done >= max_lag:
            break
        q = q[: max_lag - done]
        ratio = np.where(q > 0, q / safe_pi, 1.0)
        kl = np.sum(q * np.log(ratio), axis=-1)  # KL(P^d[a] || pi) for each a
        delta = np.clip(kl @ stationary, 0.0, None)
        small = np.nonzero(delta < tol)[0]
        if small.size:
            out.append(delta[: small[0]])
            break
        out.append(delta)
        done += q.shape[0]
    return np.concatenate(out) if out else np.zeros(0)


def markov_entropy_curve(transition: np.ndarray, stationary: np.ndarray, n: int) -> np.ndarray:
    """H_0..H_n (nats) of the stationary chain, theory §8's closed form.

    theory §8 writes H_j = H(pi) + sum_d (n-d) C(n-d-1, j-2) / C(n, j) h_d for j >= 2. The
    weights w_{j,d} = (n-d) C(n-d-1, j-2) / C(n, j) (the mean number of gaps of length d
    between consecutive elements of a random j-subset) sum to j - 1, so with
    delta_d = H(pi) - h_d,

        H_j = j H(pi) - sum_d w_{j,d} delta_d,

    a small positive correction to j H(pi) instead of a sum of large terms. The weights
    follow w_{j,1} = j (j-1) / n and w_{j,d+1} = w_{j,d} (n-d-j+1) / (n-d) (cumulative
    products, no factorials). Both delta (mixing) and w (for large j) decay, so only
    O(n log n) terms are summed.

    Returns:
        float64[n + 1] with H_0 = 0 and H_1 = H(pi).
    """
    h_pi = float(entropy_nats(stationary))
    delta = lag_mutual_information(transition, stationary, max(n - 1, 0))
    j = np.arange(n + 1, dtype=np.float64)
    entropy = j * h_pi
    if n >= 2 and delta.size:
        entropy[2:] -= _weighted_lag_sums(delta, n)
    return entropy


def _weighted_lag_sums(delta: np.ndarray, n: int) -> np.ndarray:
    """S_j = sum_{d>=1} w_{j,d} delta_d for j = 2..n (float64[n - 1])."""
    js = np.arange(2, n + 1)
    # Lags needed per j: at most n-j+1 (longest gap), len(delta), and the decay cutoff.
    need = np.minimum(np.minimum(n - js + 1, delta.size), 1 + np.ceil(_DECAY_CUTOFF * n / (js - 1)))
    need = need.astype(np.int64)  # non-increasing in j
    out = np.empty(js.size)
    lo = 0
    while lo < js.size:
        lags = int(need[lo])
        hi = min(js.size, lo + max(1, _CHUNK_ELEMENTS // lags))
        jj = js[lo:hi, None].astype(np.float64)
        d = np.arange(1, lags, dtype=np.float64)[None, :]
        ratio = np.clip((n - d - jj + 1) / (n - d), 0.0, None)
        w = np.concatenate([np.ones((hi - lo, 1)), np.cumprod(ratio, axis=1)], axis=1)
        out[lo:hi] = (jj[:, 0] * (jj[:, 0] - 1) / n) * (w @ delta[:lags])
        lo = hi
    return out


# --------------------------------------------------------------------------- jitted kernels
@jax.jit
def _markov_conditionals(powers, pi, x, revealed):
    """Conditionals from the nearest revealed neighbours on each side.

    With the left neighbour a steps back holding u and the right one b steps ahead holding
    w, mu(x_i = v | ...) is proportional to P^a[u, v] P^b[v, w]; pi replaces the left factor
    when nothing to the left is revealed, and 1 the right one when nothing to the right is.
    """
    n = x.shape[-1]
    idx = jnp.arange(n)
    left = jax.lax.cummax(jnp.where(revealed, idx, -1), axis=1)
    right = jax.lax.cummin(jnp.where(revealed, idx, n), axis=1, reverse=True)
    has_left, has_right = left >= 0, right < n
    u = jnp.take_along_axis(x, jnp.clip(left, 0, n - 1), axis=1)
    w = jnp.take_along_axis(x, jnp.clip(right, 0, n - 1), axis=1)
    a = jnp.where(has_left, idx - left, 0)
    b = jnp.where(has_right, right - idx, 0)
    left_factor = jnp.where(has_left[..., None], powers[a, u, :], pi)
    right_factor = jnp.where(has_right[..., None], powers[b, :, w], 1.0)
    return point_mass(x, revealed, safe_normalize(left_factor * right_factor))


@functools.partial(jax.jit, static_argnums=(3, 4))
def _markov_sample(key, pi, transition, num, n):
    u = jax.random.uniform(key, (n, num))
    x0 = inverse_cdf(u[0], pi)

    def step(x, u_i):
        nxt = inverse_cdf(u_i, transition[x])
        return nxt, nxt

    _, rest = jax.lax.scan(step, x0, u[1:])
    return jnp.concatenate([x0[:, None], rest.T], axis=1)
