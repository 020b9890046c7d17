"""The curve everything else is computed from: a distribution's average entropy profile.

docs/theory.md §2 and §8. For a law mu on V^n, H_j = E_{|S|=j} H(X_S) (nats) for j = 0..n and
g_j = H_{j+1} - H_j, the entropy of a fresh token given j random revealed tokens. Han's
inequality makes g non-increasing (H concave), and H non-decreasing.
"""

from __future__ import annotations

import math
import os
from typing import Any

import numpy as np
from flax import struct

from .._internal import io as _io
from .._internal.checks import whole_number

PROFILE_FORMAT = "schedopt.profile"
VERSION = 1

# Curves computed in float64 from exact formulas are concave to ~1e-12 relative; anything
# worse is an estimate that needs `regularize()`.
_RELATIVE_TOLERANCE = 1e-9


@struct.dataclass
class EntropyProfile:
    """The average entropy curve H_0..H_n of a distribution over length-n sequences.

    Build one with `from_entropy`, `from_conditional_entropy` or `load`; the plain
    constructor does no checking (it is what JAX calls when it rebuilds the pytree).

    Attributes:
        entropy: float64[n + 1], H_j in nats; entropy[0] == 0. A host (numpy) array, so
            that a profile keeps its float64 values whatever JAX's precision setting is.
        stderr: float64[n] or None: standard error (nats) of each g_j when the curve was
            estimated; it weights `regularize()`.
        meta: free-form metadata (not traced), kept through save/load.
    """

    entropy: np.ndarray
    stderr: np.ndarray | None = None
    meta: dict = struct.field(pytree_node=False, default_factory=dict)

    # ----------------------------------------------------------------- construction
    @classmethod
    def from_entropy(
        cls,
        entropy: Any,
        revealed: Any = None,
        *,
        stderr: Any = None,
        meta: dict | None = None,
        check: bool = True,
    ) -> EntropyProfile:
        """A profile from H at revealed counts `revealed` (default: every count 0..n).

        On a partial grid, H is interpolated linearly between grid points (g constant between
        them): the concave interpolant that adds no information. Monte Carlo estimates of g
        should use `from_conditional_entropy` instead.

        Args:
            entropy: H at each revealed count (nats), shape [len(revealed)].
            revealed: strictly increasing integers from 0 to n; default arange(len(entropy)).
            stderr: optional standard error (nats) of g at each revealed count (the entry at
                n is ignored).
            meta: optional metadata dict, stored in the file.
            check: validate the curve (H_0 = 0, finite, non-decreasing, concave).
        """
        entropy = np.asarray(entropy, dtype=np.float64)
        if entropy.ndim != 1 or entropy.size < 2:
            raise ValueError(
                f"entropy must be a 1-D list with at least 2 values (H_0 and H_n), "
                f"got shape {entropy.shape}"
            )
        revealed = _check_revealed(revealed, entropy.size, last=None)
        n = int(revealed[-1])
        grid = np.arange(n + 1)
        # Finite values are required even unchecked: regularize() would turn NaN into NaN KLs.
        _check_finite(entropy, revealed, "entropy")
        full = np.interp(grid, revealed, entropy) if revealed.size < n + 1 else entropy
        if check:
            _check_entropy(full, revealed if revealed.size < n + 1 else grid, entropy)
        se = None
        if stderr is not None:
            se = np.asarray(stderr, dtype=np.float64)
            if se.shape != revealed.shape:
                raise ValueError(
                    f"stderr has shape {se.shape} but revealed has {revealed.shape}; give one "
                    "standard error per revealed count"
                )
            _check_finite(se, revealed, "stderr")
            if np.any(se < 0):
                j = int(revealed[np.argmax(se < 0)])
                raise ValueError(
                    f"stderr at revealed count {j} is negative; a standard error is >= 0"
                )
            se = np.interp(grid[:-1], revealed, se)
        return cls(entropy=full, stderr=_as_stderr(se), meta=dict(meta or {}))

    @classmethod
    def from_conditional_entropy(
        cls,
        conditional_entropy: Any,
        revealed: Any = None,
        *,
        n: int | None = None,
        stderr: Any = None,
        meta: dict | None = None,
        check: bool = True,
    ) -> EntropyProfile:
        """A profile from g at revealed counts, as a Monte Carlo estimator produces it.

        g is interpolated linearly between grid points and H_j = g_0 + ... + g_{j-1}.

        Args:
            conditional_entropy: g at each revealed count (nats per token).
            revealed: strictly increasing integers from 0 to n - 1; default every count.
            n: the sequence length (default: revealed[-1] + 1).
            stderr: optional standard error of g at each revealed count (nats).
            meta: optional metadata dict.
            check: validate the resulting H (run `regularize()` on noisy estimates first:
                pass check=False, then call `.regularize()`).
        """
        g = np.asarray(conditional_entropy, dtype=np.float64)
        if g.ndim != 1 or g.size < 1:
            raise ValueError(f"conditional_entropy must be a non-empty 1-D list, got {g.shape}")
        if revealed is None:
            revealed = np.arange(g.size)
        revealed = np.asarray(revealed)
        n = int(revealed[-1]) + 1 if n is None else int(n)
        revealed = _check_revealed(revealed, g.size, last=n - 1)
        _check_finite(g, revealed, "conditional entropy")
        grid = np.arange(n)
        g_full = np.interp(grid, revealed, g)
        se = None if stderr is None else np.interp(grid, revealed, np.asarray(stderr, float))
        entropy = np.concatenate([[0.0], np.cumsum(g_full)])
        if check:
            _check_entropy(entropy, np.arange(n + 1), entropy)
        return cls(entropy=entropy, stderr=_as_stderr(se), meta=dict(meta or {}))

    # ----------------------------------------------------------------- curves
    @property
    def n(self) -> int:
        """Sequence length (tokens)."""
        return self.entropy.shape[-1] - 1

    @property
    def conditional_entropy(self) -> np.ndarray:
        """float64[n]: g_j = H_{j+1} - H_j for j = 0..n-1 (nats per token), non-increasing."""
        return np.diff(np.asarray(self.entropy, dtype=np.float64), axis=-1)

    @property
    def information_curve(self) -> np.ndarray:
        """The paper's Z_j = H_1 - g_{j-1} for j = 1..n (nats), non-decreasing, Z_1 = 0."""
        g = self.conditional_entropy
        return g[..., :1] - g

    @property
    def joint_entropy(self) -> float:
        """H_n = H(X), the entropy of the whole sequence (nats)."""
        return float(self.entropy[-1])

    @property
    def total_correlation(self) -> float:
        """TC = sum_i H(X_i) - H(X) = n g_0 - H_n (nats)."""
        g = np.asarray(self.conditional_entropy)
        return float(self.n * g[0] - self.entropy[-1])

    @property
    def dual_total_correlation(self) -> float:
        """DTC = H(X) - sum_i H(X_i | X_-i) = H_n - n g_{n-1} (nats)."""
        g = np.asarray(self.conditional_entropy)
        return float(self.entropy[-1] - self.n * g[-1])

    def summary(self) -> dict[str, float]:
        """n, H_n, TC and DTC (nats) as a dict, for printing."""
        return {
            "n": self.n,
            "joint_entropy": self.joint_entropy,
            "total_correlation": self.total_correlation,
            "dual_total_correlation": self.dual_total_correlation,
        }

    # ----------------------------------------------------------------- regularisation
    def regularize(self) -> EntropyProfile:
        """Project g onto non-increasing, non-negative sequences (least squares).

        Weighted by 1 / stderr^2 when the profile carries standard errors (weighted isotonic
        regression by pool-adjacent-violators). Estimated curves need this before they are
        optimized: an optimizer exploits noise and can even predict a negative KL.
        """
        g = np.asarray(self.conditional_entropy, dtype=np.float64)
        weights = None
        if self.stderr is not None:
            se = np.asarray(self.stderr, dtype=np.float64)
            floor = max(float(np.median(se[se > 0])) if np.any(se > 0) else 1.0, 1e-12) * 1e-3
            weights = 1.0 / np.maximum(se, floor) ** 2
        g = np.maximum(isotonic_nonincreasing(g, weights), 0.0)
        entropy = np.concatenate([[0.0], np.cumsum(g)])
        return self.replace(entropy=entropy)

    # ----------------------------------------------------------------- file io
    def to_json(self) -> dict:
        """The profile as a `schedopt.profile` version 1 dict (full grid 0..n)."""
        out = {
            **_io.header(PROFILE_FORMAT, VERSION),
            "n": self.n,
            "unit": "nats",
            "revealed": list(range(self.n + 1)),
            "entropy": [float(h) for h in np.asarray(self.entropy)],
        }
        if self.stderr is not None:
            out["stderr"] = [float(s) for s in np.asarray(self.stderr)] + [0.0]
        if self.meta:
            out["meta"] = self.meta
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the profile atomically as JSON (format in docs/formats.md)."""
        _io.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, *, check: bool = True) -> EntropyProfile:
        """Read a `schedopt.profile` version 1 JSON file.

        Args:
            path: the file.
            check: validate the curve; pass False to load a noisy estimate and then call
                `regularize()`.
        """
        obj = _io.check_format(_io.read_json(path, "profile"), path, PROFILE_FORMAT, VERSION)
        _io.require_keys(obj, path, ("n", "revealed", "entropy"))
        _io.check_fields(obj, path, _io.PROFILE_FIELDS, "schedopt.profile file")
        name = repr(str(path))
        if obj.get("unit", "nats") not in ("nats", "bits"):
            raise ValueError(f"{name} has unit {obj['unit']!r}; use 'nats' or 'bits'")
        scale = math.log(2) if obj.get("unit") == "bits" else 1.0
        n = whole_number(obj["n"], f"{name}: n", minimum=1, unit="tokens")
        revealed = _io.number_array(obj["revealed"], f"{name}: revealed", whole=True)
        entropy = _io.number_array(obj["entropy"], f"{name}: entropy") * scale
        stderr = obj.get("stderr")
        if stderr is not None:
            stderr = _io.number_array(stderr, f"{name}: stderr", nonnegative=True) * scale
        if entropy.size != revealed.size:
            raise ValueError(
                f"{name} has {entropy.size} entropy values for {revealed.size} revealed "
                "counts; give one value per revealed count"
            )
        if revealed.size == 0 or revealed[-1] != n:
            raise ValueError(
                f"{name}: the revealed grid must end at n = {n}; "
                "add the full-sequence entropy H_n"
            )
        meta = obj.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise ValueError(f"{name}: meta must be an object, got {type(meta).__name__}")
        try:
            return cls.from_entropy(entropy, revealed, stderr=stderr, meta=meta, check=check)
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None


# --------------------------------------------------------------------------- helpers
def _as_stderr(se: np.ndarray | None) -> np.ndarray | None:
    return None if se is None else np.asarray(se, dtype=np.float64)


def _check_revealed(revealed: Any, size: int, last: int | None) -> np.ndarray:
    """Check a revealed-count grid: integers, strictly increasing, from 0 (to `last`)."""
    if revealed is None:
        return np.arange(size)
    r = np.asarray(revealed)
    if r.ndim != 1 or r.size != size:
        raise ValueError(
            f"revealed has shape {r.shape} but there are {size} curve values; "
            "give one revealed count per value"
        )
    if not np.all(np.isfinite(r)) or not np.all(r == np.round(r)):
        raise ValueError("revealed counts must be whole numbers; fix the revealed grid")
    r = r.astype(np.int64)
    if r[0] != 0:
        raise ValueError(f"the revealed grid must start at 0, got {int(r[0])}; add H_0 = 0")
    if last is not None and r[-1] != last:
        raise ValueError(f"the revealed grid must end at {last}, got {int(r[-1])}")
    bad = np.nonzero(np.diff(r) <= 0)[0]
    if bad.size:
        i = int(bad[0]) + 1
        raise ValueError(
            f"the revealed grid must be strictly increasing, but revealed[{i}] = {int(r[i])} "
            f"follows {int(r[i - 1])}; sort it and drop duplicates"
        )
    return r


def _check_finite(values: np.ndarray, revealed: np.ndarray, what: str) -> None:
    bad = np.nonzero(~np.isfinite(values))[0]
    if bad.size:
        raise ValueError(
            f"{what} at revealed count {int(revealed[bad[0]])} is {values[bad[0]]}; "
            f"every {what} must be a finite number of nats"
        )


def _check_entropy(full: np.ndarray, revealed: np.ndarray, given: np.ndarray) -> None:
    """Validate H: finite, H_0 = 0, non-decreasing and concave within a tolerance.

    Messages name the first bad revealed count and point to `regularize()`.
    """
    bad = np.nonzero(~np.isfinite(given))[0]
    if bad.size:
        raise ValueError(
            f"entropy at revealed count {int(revealed[bad[0]])} is {given[bad[0]]}; "
            "every entropy must be a finite number of nats"
        )
    scale = max(1.0, float(np.max(np.abs(given))))
    tol = _RELATIVE_TOLERANCE * scale
    if abs(given[0]) > tol:
        raise ValueError(
            f"H_0 must be 0 (nothing revealed, no entropy), got {given[0]}; "
            "subtract it from every entropy value"
        )
    # Secant slopes on the grid: non-negative (non-decreasing H) and non-increasing (concave).
    slopes = np.diff(given) / np.diff(revealed)
    bad = np.nonzero(slopes < -tol)[0]
    if bad.size:
        j = int(revealed[bad[0] + 1])
        raise ValueError(
            f"entropy decreases at revealed count {j} (g = {slopes[bad[0]]:.3g} nats < 0); "
            "an average entropy curve never decreases: load with check=False and call "
            "regularize(), or pass --regularize"
        )
    bad = np.nonzero(np.diff(slopes) > tol)[0]
    if bad.size:
        j = int(revealed[bad[0] + 1])
        raise ValueError(
            f"entropy is not concave at revealed count {j} (g rises by "
            f"{np.diff(slopes)[bad[0]]:.3g} nats); the conditional entropy curve must be "
            "non-increasing: load with check=False and call regularize(), or pass --regularize"
        )


def isotonic_nonincreasing(y: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Weighted least-squares projection of `y` onto non-increasing sequences (PAV).

    Args:
        y: float[m] values.
        weights: float[m] positive weights (default all 1).

    Returns:
        float[m], the non-increasing sequence closest to y in the weighted 2-norm.
    """
    y = np.asarray(y, dtype=np.float64)
    w = np.ones_like(y) if weights is None else np.asarray(weights, dtype=np.float64)
    # Pool-adjacent-violators on blocks (mean, weight, length), merging while a block's
    # mean exceeds its predecessor's.
    means: list[float] = []
    wsum: list[float] = []
    length: list[int] = []
    for yi, wi in zip(y.tolist(), w.tolist(), strict=True):
        means.append(yi)
        wsum.append(wi)
        length.append(1)
        while len(means) > 1 and means[-1] > means[-2]:
            m2, w2, l2 = means.pop(), wsum.pop(), length.pop()
            w1 = wsum[-1]
            means[-1] = (means[-1] * w1 + m2 * w2) / (w1 + w2)
            wsum[-1] = w1 + w2
            length[-1] += l2
    return np.repeat(np.asarray(means), np.asarray(length))
