"""A profile from a training log: the masked cross-entropy at each mask ratio, no forward pass.

theory §11. Masked diffusion training measures the mean cross-entropy per masked token at random
mask ratios. With n tokens of which j are revealed, the mask ratio is (n - j) / n, so the loss
at that ratio is the data curve c_j, and theory §3 on c predicts a schedule's excess NLL. A loss
log therefore gives a schedule for free, with two caveats the profile's meta records: the loss
is measured on training data (an overfit model's training curve is too flat at high revealed
counts), and with dropout on.

The log is a CSV file with the header `mask_ratio,cross_entropy[,stderr]`, one row per
measurement at any ratios in (0, 1] (repeats allowed: they are pooled). `profile_from_loss_curve`
turns it into a profile:

1. rows at the same ratio are pooled (inverse-variance weights when errors are given; the
   spread of the repeats when they are not);
2. the curve is fitted by weighted least squares among non-increasing convex curves in j
   (shape "convex", the default) or among non-increasing ones (shape "monotone", weighted
   PAV: the shape Han's inequality gives the true curve). Either way the PAV fit is checked:
   a pooled stretch whose points reject a constant at the 1% level (chi-square against the
   per-row errors) is reported in meta as a place where the data do not support
   monotonicity, so the user can see where the fit is forced;
3. the fitted points are interpolated linearly in j onto 0..n-1 (flat beyond the data, and
   the extrapolated counts are listed in meta).

The fitted curve is a fixed linear map of the pooled points (each pooled stretch is a weighted
mean), so the per-row errors propagate exactly: the profile carries a standard error per j and
meta carries the joint entropy's interval.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._internal import io as _io
from .._internal.checks import BYTES_PER_TOKEN, check_fits
from .._internal.stats import Z95
from ._profile import EntropyProfile, isotonic_nonincreasing

HEADER = ("mask_ratio", "cross_entropy", "stderr")
# A pooled stretch whose chi-square p-value falls below this is reported as non-monotone.
_REJECT_P = 0.01


def read_loss_curve(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Read a loss-curve CSV: (mask_ratio float64[m], cross_entropy float64[m], stderr or None).

    The header must be `mask_ratio,cross_entropy` or `mask_ratio,cross_entropy,stderr`.
    Ratios lie in (0, 1]; cross-entropies are finite and >= 0 (nats per masked token);
    standard errors are finite and >= 0.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"loss-curve file {str(path)!r} does not exist; check the path")
    try:
        rows = list(csv.reader(io.StringIO(path.read_text())))
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"loss-curve file {str(path)!r} is not a readable CSV ({e})") from None
    rows = [r for r in rows if r and any(c.strip() for c in r)]
    if not rows:
        raise ValueError(f"loss-curve file {str(path)!r} is empty; write a header and rows")
    header = tuple(c.strip() for c in rows[0])
    if header not in (HEADER[:2], HEADER):
        raise ValueError(
            f"loss-curve file {str(path)!r} has header {','.join(header)!r}; the first row must "
            "be 'mask_ratio,cross_entropy' or 'mask_ratio,cross_entropy,stderr'"
        )
    body = rows[1:]
    if not body:
        raise ValueError(f"loss-curve file {str(path)!r} has a header but no rows")
    try:
        values = np.asarray([[float(c) for c in r] for r in body], dtype=np.float64)
    except ValueError:
        raise ValueError(
            f"loss-curve file {str(path)!r} has a cell that is not a number; every row must "
            "hold numbers only"
        ) from None
    if values.ndim != 2 or values.shape[1] != len(header):
        raise ValueError(
            f"loss-curve file {str(path)!r}: every row must have {len(header)} values, like "
            "the header"
        )
    ratio, ce = values[:, 0], values[:, 1]
    se = values[:, 2] if values.shape[1] == 3 else None
    check_loss_curve(ratio, ce, se, where=f"loss-curve file {str(path)!r}")
    return ratio, ce, se


def write_loss_curve(
    path: str | os.PathLike, mask_ratio: Any, cross_entropy: Any, stderr: Any = None
) -> Path:
    """Atomically write a loss-curve CSV (the format `read_loss_curve` reads).

    Rows whose cross-entropy is NaN (a count no training row had) are left out.
    """
    ratio = np.asarray(mask_ratio, np.float64)
    ce = np.asarray(cross_entropy, np.float64)
    se = None if stderr is None else np.asarray(stderr, np.float64)
    keep = np.isfinite(ce)
    if se is not None:
        keep &= np.isfinite(se)
    ratio, ce = ratio[keep], ce[keep]
    se = None if se is None else se[keep]
    check_loss_curve(ratio, ce, se, where="the loss curve")
    lines = [",".join(HEADER if se is not None else HEADER[:2])]
    for i in range(ratio.size):
        cells = [repr(float(ratio[i])), repr(float(ce[i]))]
        if se is not None:
            cells.append(repr(float(se[i])))
        lines.append(",".join(cells))
    return _io.atomic_write(path, "\n".join(lines) + "\n")


def loss_by_revealed_count(counts: Any, row_ce: Any, length: int) -> np.ndarray:
    """Bin per-row training losses by revealed count: float64[length, 3].

    The one binning every training script uses (`write_binned_loss_curve` writes its result).

    Args:
        counts: int[...] revealed count of each training row (answer tokens visible; a prompt
            that is always visible does not count).
        row_ce: float[...] its mean masked cross-entropy (nats per token).
        length: n; counts lie in 0..n-1 (a row with nothing masked has no loss: leave it out).

    Returns:
        Per count j: rows seen, mean CE and its standard error (std / sqrt(rows); NaN for
        fewer than 2 rows, and the mean is NaN for none).
    """
    c = np.asarray(counts, np.int64).ravel()
    v = np.asarray(row_ce, np.float64).ravel()
    if c.shape != v.shape:
        raise ValueError(f"counts and row_ce must have one value per row, got sizes {c.size} "
                         f"and {v.size}")
    if c.size and (c.min() < 0 or c.max() >= length):
        raise ValueError(f"revealed counts must lie in 0..{length - 1} (a row with nothing "
                         f"masked has no loss), got {int(c.min())}..{int(c.max())}")
    rows = np.bincount(c, minlength=length).astype(np.float64)
    total = np.bincount(c, v, minlength=length)
    square = np.bincount(c, v * v, minlength=length)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / rows
        var = np.maximum(square - rows * mean**2, 0.0) / (rows - 1)
        se = np.where(rows >= 2, np.sqrt(var / rows), np.nan)
    return np.stack([rows, mean, se], axis=1)


def write_binned_loss_curve(path: str | os.PathLike, binned: Any) -> Path:
    """Write `loss_by_revealed_count`'s float[n, 3] as a loss-curve CSV.

    Count j of n is mask ratio (n - j) / n; counts with fewer than 2 rows (no stderr) are
    left out.
    """
    binned = np.asarray(binned, np.float64)
    if binned.ndim != 2 or binned.shape[1] != 3:
        raise ValueError(f"binned must be float[n, 3] (rows, mean, stderr), got shape "
                         f"{binned.shape}")
    n = binned.shape[0]
    return write_loss_curve(path, (n - np.arange(n)) / n, binned[:, 1], binned[:, 2])


def check_loss_curve(ratio: np.ndarray, ce: np.ndarray, se: np.ndarray | None, *,
                     where: str) -> None:
    """Raise one clear ValueError for the first bad value of a loss curve."""
    if ratio.size == 0:
        raise ValueError(f"{where} has no rows; give at least one measurement")
    bad = np.nonzero(~np.isfinite(ratio) | (ratio <= 0) | (ratio > 1))[0]
    if bad.size:
        raise ValueError(
            f"{where}: row {int(bad[0]) + 1} has mask_ratio {ratio[bad[0]]}; a mask ratio is the "
            "fraction of masked tokens, in (0, 1]"
        )
    bad = np.nonzero(~np.isfinite(ce) | (ce < 0))[0]
    if bad.size:
        raise ValueError(
            f"{where}: row {int(bad[0]) + 1} has cross_entropy {ce[bad[0]]}; give the mean "
            "cross-entropy per masked token in nats (finite, >= 0)"
        )
    if se is not None:
        bad = np.nonzero(~np.isfinite(se) | (se < 0))[0]
        if bad.size:
            raise ValueError(
                f"{where}: row {int(bad[0]) + 1} has stderr {se[bad[0]]}; standard errors must "
                "be finite and >= 0"
            )


def profile_from_loss_curve(
    mask_ratio: Any,
    cross_entropy: Any,
    stderr: Any = None,
    *,
    length: int,
    shape: str = "convex",
    meta: dict | None = None,
) -> EntropyProfile:
    """The data-curve profile of theory §11 from losses at mask ratios (no forward pass).

    Args:
        mask_ratio: float[m] fractions of masked tokens in (0, 1]; repeats are pooled.
        cross_entropy: float[m] mean cross-entropy per masked token (nats) at each ratio.
        stderr: optional float[m] standard error of each row (nats). Without it, a ratio's
            repeats give its error; with neither, the fit is monotone everywhere and the
            profile has no interval.
        length: n, the sequence length the schedule is for. Ratio r is revealed count
            j = n (1 - r), which need not be a whole number.
        shape: "convex" (the default: weighted least squares over non-increasing convex
            curves, which smooths away the flat stretches a monotone fit leaves in noisy
            data; on the digits model's log its schedules matched the held-out estimate's
            at T = 8 and 16, where the monotone fit's lost 0.3 and 0.12 nats) or
            "monotone" (non-increasing only: no assumption beyond Han's inequality; for
            curves with steps, such as codes).
        meta: extra metadata (provenance) merged into the profile's meta.

    Returns:
        An `EntropyProfile` with entropy H_j = c_0 + ... + c_{j-1}, the fitted curve
        non-increasing (so it loads and optimizes like any profile), stderr per j when errors
        are known, and meta: source, the fitted points, the stretches where the data reject
        monotonicity, the extrapolated counts and the joint entropy's 95% interval.
    """
    if isinstance(length, bool) or not isinstance(length, int | np.integer) or length < 2:
        raise ValueError(f"length must be a whole number of tokens >= 2, got {length!r}")
    n = check_fits(int(length), "length", bytes_each=BYTES_PER_TOKEN, unit="tokens",
                   why="the profile")
    ratio = np.asarray(mask_ratio, np.float64).ravel()
    ce = np.asarray(cross_entropy, np.float64).ravel()
    se = None if stderr is None else np.asarray(stderr, np.float64).ravel()
    if ce.shape != ratio.shape or (se is not None and se.shape != ratio.shape):
        raise ValueError(
            f"mask_ratio, cross_entropy and stderr must have one value per row, got sizes "
            f"{ratio.size}, {ce.size}" + ("" if se is None else f", {se.size}")
        )
    check_loss_curve(ratio, ce, se, where="the loss curve")

    # 1. Pool rows at the same ratio; `pool` maps rows to pooled points (a linear map).
    points, inverse = np.unique(np.round(ratio, 12), return_inverse=True)
    revealed = n * (1.0 - points)  # real revealed counts, decreasing in ratio
    order = np.argsort(revealed, kind="stable")
    points, revealed = points[order], revealed[order]
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    inverse = rank[inverse]
    variance = _pooled_variance(inverse, ce, se, points.size)
    known = variance is not None
    row_weight = (1.0 / np.maximum(se, _floor(se)) ** 2) if se is not None else np.ones_like(ce)
    pool = np.zeros((points.size, ce.size))
    pool[inverse, np.arange(ce.size)] = row_weight
    pool /= pool.sum(axis=1, keepdims=True)
    value = pool @ ce

    # 2. Monotone fit (non-increasing in j), each pooled stretch a weighted mean of its points.
    if shape not in ("monotone", "convex"):
        raise ValueError(f"shape must be 'monotone' or 'convex', got {shape!r}")
    weight = 1.0 / np.maximum(variance, _floor(variance)) if known else np.ones_like(value)
    fitted = isotonic_nonincreasing(value, weight)
    blocks = _blocks(fitted)
    fit_map = np.zeros((points.size, points.size))
    rejected = []
    for lo, hi in blocks:
        w = weight[lo:hi] / weight[lo:hi].sum()
        fit_map[lo:hi, lo:hi] = w[None, :]
        if known and hi - lo > 1:
            chi2 = float(np.sum(weight[lo:hi] * (value[lo:hi] - fitted[lo]) ** 2))
            p = _chi2_sf(chi2, hi - lo - 1)
            if p < _REJECT_P:
                rejected.append({"mask_ratio": [float(points[hi - 1]), float(points[lo])],
                                 "chi2": chi2, "dof": hi - lo - 1, "p_value": p})

    if shape == "convex":
        # The convex fit is a projection onto a cone: linear on its active set, which is
        # what the error propagation below uses.
        fitted, fit_map = convex_nonincreasing(revealed, value, weight)

    # 3. Linear interpolation in j onto 0..n-1, flat outside the data.
    grid = np.arange(n, dtype=np.float64)
    interp = np.stack([np.interp(grid, revealed, e) for e in np.eye(points.size)], axis=1)
    to_curve = interp @ fit_map @ pool  # float64[n, m]: curve = to_curve @ rows
    curve = to_curve @ ce
    outside = grid[(grid < revealed[0] - 1e-9) | (grid > revealed[-1] + 1e-9)]
    curve_se = joint_se = None
    if known:
        row_var = _row_variance(inverse, ce, se, variance, pool)
        curve_se = np.sqrt((to_curve**2) @ row_var)
        joint_se = float(np.sqrt((to_curve.sum(axis=0) ** 2) @ row_var))
    joint = float(curve.sum())
    info = {
        "source": "loss curve",
        "shape": shape,
        "kind": "data",
        "caveat": "training loss: measured on training data (and with dropout, if any)",
        "rows": int(ce.size),
        "points": int(points.size),
        "mask_ratio_range": [float(points.min()), float(points.max())],
        "errors": ("per-row stderr" if se is not None else
                   "spread of repeated rows" if known else "none (no interval)"),
        "fitted_mask_ratio": [float(r) for r in points],
        "fitted_cross_entropy": [float(v) for v in fitted],
        "raw_cross_entropy": [float(v) for v in value],
        "nonmonotone": rejected,
        "extrapolated_revealed": [int(j) for j in outside],
        "joint_entropy_stderr": joint_se,
        "joint_entropy_interval": (None if joint_se is None else
                                   [joint - Z95 * joint_se, joint + Z95 * joint_se]),
    }
    return EntropyProfile.from_conditional_entropy(
        curve, np.arange(n), n=n, stderr=curve_se, meta={**info, **(meta or {})}
    )


def profile_from_loss_curve_file(path: str | os.PathLike, *, length: int,
                                 shape: str = "convex") -> EntropyProfile:
    """`profile_from_loss_curve` on a CSV file, with the file's name and SHA-256 in meta."""
    ratio, ce, se = read_loss_curve(path)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return profile_from_loss_curve(
        ratio, ce, se, length=length, shape=shape, meta={"file": str(path), "sha256": digest}
    )


def convex_nonincreasing(x: Any, y: Any, weights: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """Weighted least-squares fit of a non-increasing convex curve to points (x_i, y_i).

    The curve is f_i = a - sum_{k < i} (x_{k+1} - x_k) sum_{l >= k} v_l with v >= 0: its
    slopes -sum_{l >= k} v_l are <= 0 and non-decreasing, which is exactly the non-increasing
    convex piecewise-linear curves through the x_i. Solved by bounded least squares.

    Args:
        x: float[m] increasing abscissae.
        y: float[m] values.
        weights: float[m] positive weights (default all 1).

    Returns:
        (fitted float64[m], map float64[m, m]): the fitted values, and the linear map that
        gives them from y with the active constraints held fixed (for error propagation).
    """
    from scipy.optimize import lsq_linear

    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    m = x.size
    w = np.ones(m) if weights is None else np.asarray(weights, np.float64)
    if m < 3:
        return y.copy(), np.eye(m)
    width = np.diff(x)
    # basis[i, l] = -sum_{k < i, k <= l} width_k: the effect of v_l on f_i.
    basis = -np.cumsum(np.concatenate([np.zeros((1, m - 1)), np.triu(np.ones((m - 1, m - 1)))
                                       * width[:, None]]), axis=0)
    design = np.concatenate([np.ones((m, 1)), basis], axis=1)
    root = np.sqrt(w)
    lower = np.concatenate([[-np.inf], np.zeros(m - 1)])
    solution = lsq_linear(design * root[:, None], y * root, bounds=(lower, np.inf),
                          method="bvls", tol=1e-12).x
    fitted = design @ solution
    free = np.concatenate([[True], solution[1:] > 1e-12])
    active = design[:, free] * root[:, None]
    fit_map = design[:, free] @ np.linalg.pinv(active) * root[None, :]
    return fitted, fit_map


# --------------------------------------------------------------------------- helpers
def _floor(v: np.ndarray | None) -> float:
    """A tiny positive floor for errors, so a zero stderr does not give an infinite weight."""
    if v is None:
        return 1.0
    positive = v[v > 0]
    return max(float(np.median(positive)) * 1e-3 if positive.size else 1.0, 1e-12)


def _pooled_variance(inverse, ce, se, size) -> np.ndarray | None:
    """Variance of each pooled point, or None when errors cannot be known."""
    if se is not None:
        w = 1.0 / np.maximum(se, _floor(se)) ** 2
        return 1.0 / np.bincount(inverse, w, minlength=size)
    counts = np.bincount(inverse, minlength=size)
    if np.any(counts < 2):
        return None  # a single row at some ratio carries no error
    mean = np.bincount(inverse, ce, minlength=size) / counts
    dev = np.bincount(inverse, (ce - mean[inverse]) ** 2, minlength=size)
    return dev / (counts - 1) / counts


def _row_variance(inverse, ce, se, variance, pool) -> np.ndarray:
    """Per-row variance consistent with the pooled variances (for error propagation)."""
    if se is not None:
        return np.maximum(se, _floor(se)) ** 2
    # Without per-row errors, each row of a point gets the point's sample variance.
    counts = np.bincount(inverse, minlength=variance.size)
    return (variance * counts)[inverse]


def _blocks(fitted: np.ndarray) -> list[tuple[int, int]]:
    """The constant stretches [lo, hi) of a PAV fit."""
    edges = np.concatenate([[0], np.nonzero(np.diff(fitted) != 0)[0] + 1, [fitted.size]])
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _chi2_sf(x: float, dof: int) -> float:
    """P(chi-square with `dof` degrees of freedom > x)."""
    from scipy.stats import chi2

    return float(chi2.sf(max(x, 0.0), dof))
