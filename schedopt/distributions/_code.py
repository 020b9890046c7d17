"""Linear codes over a prime field: uniform on a subspace, a step-shaped profile."""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.checks import check_count
from ..curve import EntropyProfile
from ._base import MAX_ENUMERATION, Distribution, as_jax, check_length, point_mass

# Conditionals are float[..., n, q]; larger alphabets belong to a different tool.
MAX_FIELD = 1021


class LinearCode(Distribution):
    """The uniform law on a linear code {u G mod q : u in F_q^k}.

    Given revealed positions S, X_i is either a fixed linear combination of x_S (column i of
    G lies in the span of the columns in S) or uniform on F_q, so H(X_S) = rank(G_S) log q
    and H_j = E rank(G_S) log q over random j-subsets S.

    The profile is exact for maximum-distance-separable codes (`parity`, `reed_solomon`:
    H_j = min(j, k) log q) and, for any generator, when n <= 16 (all 2^n subsets are
    enumerated); otherwise it is a Monte Carlo estimate.

    Args:
        generator: int[k, n] generator matrix with entries in 0..q-1.
        q: a prime field size, 2 <= q <= 1021.
    """

    def __init__(self, generator: Any, q: int):
        self.q = _check_prime(q)
        g = np.asarray(generator)
        if g.ndim != 2 or 0 in g.shape:
            raise ValueError(f"generator must be a non-empty k x n matrix, got shape {g.shape}")
        if not (np.all(np.isfinite(g)) and np.all(g == np.round(g))):
            raise ValueError("generator must hold whole numbers (elements of F_q)")
        g = g.astype(np.int64)
        if np.any((g < 0) | (g >= self.q)):
            raise ValueError(
                f"generator entries must lie in 0..{self.q - 1} (elements of F_{self.q}), got "
                f"{int(g[(g < 0) | (g >= self.q)][0])}; reduce them modulo q"
            )
        self.generator = g
        self.n = g.shape[1]
        self.vocab_size = self.q
        self.rank = rank_mod_q(g, self.q)
        self._mds = False

    # ---------------------------------------------------------------- constructors
    @classmethod
    def parity(cls, n: int, q: int = 2) -> LinearCode:
        """Sequences whose tokens sum to 0 mod q (codimension 1; any n-1 positions are free).

        theory §8: H_j = j log q for j < n and H_n = (n - 1) log q.
        """
        n = check_length(n)
        if n < 2:
            raise ValueError(f"a parity code needs n >= 2 positions, got n = {n}")
        q = _check_prime(q)
        g = np.concatenate([np.eye(n - 1, dtype=np.int64), np.full((n - 1, 1), q - 1)], axis=1)
        code = cls(g, q)
        code._mds = True
        return code

    @classmethod
    def reed_solomon(cls, n: int, k: int, q: int) -> LinearCode:
        """The [n, k] Reed-Solomon code over F_q (polynomials of degree < k at n points).

        Any k positions determine the codeword (MDS): H_j = min(j, k) log q, the step that
        no schedule can find without knowing k (theory §5, lower bound).
        """
        n, k, q = check_length(n), check_length(k, "k"), _check_prime(q)
        if n > q:
            raise ValueError(
                f"a Reed-Solomon code over F_{q} has at most q = {q} positions, got n = {n}; "
                "choose a prime q >= n"
            )
        if k > n:
            raise ValueError(f"k must be at most n = {n}, got k = {k}")
        points = np.arange(n, dtype=np.int64)
        g = np.stack([pow_mod(points, r, q) for r in range(k)])
        code = cls(g, q)
        code._mds = True
        return code

    # ---------------------------------------------------------------- profile
    @property
    def exact_profile(self) -> bool:
        return self._mds or 2**self.n <= MAX_ENUMERATION

    def profile(self) -> EntropyProfile:
        """Exact for MDS codes and n <= 16 (else estimate it: `schedopt.estimate_law`)."""
        log_q = math.log(self.q)
        if self._mds:
            entropy = np.minimum(np.arange(self.n + 1), self.rank) * log_q
            method = "closed form (MDS)"
        elif 2**self.n <= MAX_ENUMERATION:
            entropy = self._mean_rank_by_size() * log_q
            method = "enumeration of subsets"
        else:
            return super().profile()
        meta = {"source": "exact", "distribution": "code", "method": method}
        return EntropyProfile.from_entropy(entropy, meta=meta)

    def _mean_rank_by_size(self) -> np.ndarray:
        """float64[n + 1]: E rank(G_S) over j-subsets S, every subset enumerated."""
        masks = ((np.arange(2**self.n)[:, None] >> np.arange(self.n)) & 1).astype(bool)
        ranks = np.concatenate(
            [self._ranks(masks[lo : lo + 4096]) for lo in range(0, len(masks), 4096)]
        )
        sizes = masks.sum(axis=1)
        totals = np.bincount(sizes, weights=ranks, minlength=self.n + 1)
        return totals / np.asarray([math.comb(self.n, j) for j in range(self.n + 1)])

    def _ranks(self, revealed: np.ndarray) -> np.ndarray:
        x = jnp.zeros(revealed.shape, jnp.int32)
        generator, inverse, q = self._field
        _, pivots = _eliminate_batch(*as_jax(generator, inverse), q, x, jnp.asarray(revealed))
        return np.asarray(jnp.sum(pivots, axis=-1))

    # ---------------------------------------------------------------- law
    @functools.cached_property
    def _field(self) -> tuple[np.ndarray, np.ndarray, int]:
        inverse = np.zeros(self.q, dtype=np.int64)
        inverse[1:] = pow_mod(np.arange(1, self.q), self.q - 2, self.q)  # Fermat
        return np.ascontiguousarray(self.generator.T), inverse, self.q

    def _conditionals(self, x, revealed):
        generator, inverse, q = self._field
        return _code_conditionals(*as_jax(generator, inverse), q, x, revealed)

    def sample(self, samples: int, *, key: jax.Array) -> jnp.ndarray:
        samples = check_count(samples, "samples")
        u = jax.random.randint(key, (samples, self.generator.shape[0]), 0, self.q, jnp.int64)
        return ((u @ self.generator) % self.q).astype(jnp.int32)

    def log_prob(self, x: Any) -> jnp.ndarray:
        """-rank log q for codewords, -inf for other sequences."""
        x = jnp.asarray(x, jnp.int32)
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.n)
        rows, pivots = _eliminate_batch(*as_jax(*self._field[:2]), self._field[2], flat,
                                        jnp.ones(flat.shape, bool))
        # A consistent system reduces every non-pivot equation to 0 = 0.
        member = jnp.all(pivots | (rows[..., -1] == 0), axis=-1)
        out = jnp.where(member, -self.rank * math.log(self.q), -jnp.inf)
        return out.reshape(lead)


# --------------------------------------------------------------------------- field arithmetic
def rank_mod_q(matrix: np.ndarray, q: int) -> int:
    """Rank of an integer matrix over F_q (Gaussian elimination, one column at a time)."""
    a = np.asarray(matrix, dtype=np.int64) % q
    rank = 0
    for c in range(a.shape[1]):
        rows = np.nonzero(a[rank:, c])[0]
        if rows.size == 0:
            continue
        p = rank + rows[0]
        a[[rank, p]] = a[[p, rank]]
        a[rank] = a[rank] * pow_mod(a[rank, c], q - 2, q) % q
        others = np.arange(a.shape[0]) != rank
        a[others] = (a[others] - a[others, c : c + 1] * a[rank]) % q
        rank += 1
        if rank == a.shape[0]:
            break
    return rank


def pow_mod(base: np.ndarray, exponent: int, q: int) -> np.ndarray:
    """base ** exponent mod q elementwise, by squaring (no overflow for q < 2^31)."""
    base = np.asarray(base, dtype=np.int64) % q
    result = np.ones_like(base)
    while exponent:
        if exponent & 1:
            result = result * base % q
        base = base * base % q
        exponent >>= 1
    return result


def _check_prime(q: Any) -> int:
    if isinstance(q, bool) or not isinstance(q, int | np.integer) or not 2 <= q <= MAX_FIELD:
        raise ValueError(f"q must be a prime between 2 and {MAX_FIELD}, got {q!r}")
    q = int(q)
    if any(q % p == 0 for p in range(2, math.isqrt(q) + 1)):
        raise ValueError(
            f"q must be prime (F_q is a field only then), got {q}; try {_next_prime(q)}"
        )
    return q


def _next_prime(q: int) -> int:
    m = q + 1
    while any(m % p == 0 for p in range(2, math.isqrt(m) + 1)):
        m += 1
    return m


def _eliminate(gen_t, inverse, q, x, revealed):
    """Gauss-Jordan elimination mod q of the revealed equations G_i . u = x_i.

    Every position is a row [G_i | y_i] with y_i = x_i if revealed, else 0. Pivots are
    chosen among revealed rows only, and all other rows (masked ones included) are reduced
    against them. A masked row whose G-part becomes 0 is in the span of the revealed
    columns; its value column then holds -x_i.

    Args:
        gen_t: int64[n, k], the transposed generator.
        x: int[n] tokens, revealed: bool[n].

    Returns:
        rows int64[n, k + 1] after reduction, and pivots bool[n] (revealed rows used as
        pivots; their number is rank(G_S)).
    """
    k = gen_t.shape[1]
    rows = jnp.concatenate([gen_t, jnp.where(revealed, x, 0)[:, None].astype(gen_t.dtype)], 1)

    def column(c, state):
        rows, free, pivots = state
        candidates = free & (rows[:, c] != 0)
        found = jnp.any(candidates)
        p = jnp.argmax(candidates)
        pivot_row = rows[p] * inverse[rows[p, c]] % q
        reduced = (rows - rows[:, c][:, None] * pivot_row[None]) % q
        reduced = reduced.at[p].set(pivot_row)
        return (
            jnp.where(found, reduced, rows),
            free & ~(found & (jnp.arange(free.shape[0]) == p)),
            pivots | (found & (jnp.arange(free.shape[0]) == p)),
        )

    rows, _, pivots = jax.lax.fori_loop(
        0, k, column, (rows, revealed, jnp.zeros(revealed.shape, bool))
    )
    return rows, pivots


@functools.partial(jax.jit, static_argnums=(2,))
def _eliminate_batch(gen_t, inverse, q, x, revealed):
    return jax.vmap(_eliminate, in_axes=(None, None, None, 0, 0))(gen_t, inverse, q, x, revealed)


@functools.partial(jax.jit, static_argnums=(2,))
def _code_conditionals(gen_t, inverse, q, x, revealed):
    rows, _ = _eliminate_batch(gen_t, inverse, q, x, revealed)
    determined = jnp.all(rows[..., :-1] == 0, axis=-1)
    value = (-rows[..., -1]) % q
    probs = jnp.where(
        determined[..., None], jax.nn.one_hot(value, q, dtype=float), 1.0 / q
    )
    return point_mass(x, revealed, probs)
