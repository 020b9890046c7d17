"""The `Schedule` type, its file format, and the baselines from the literature (theory §5)."""

from __future__ import annotations

import math
import os

import numpy as np
from flax import struct

from .._internal import io as _io
from .._internal.checks import (
    check_steps,
    check_tokens_per_step,
    expected_kl_field,
    real_number,
    shown,
    whole_number,
)
from ..curve import EntropyProfile
from ..objective import evaluate_kl, expected_kl

SCHEDULE_FORMAT = "schedopt.schedule"
VERSION = 1
# meta["curve"] of a schedule optimized on a raw (not monotone) estimated curve: its
# expected_kl is theory §11's predicted NLL excess, which such a curve can make negative.
RAW_CURVE = "raw (not regularised)"


@struct.dataclass
class Schedule:
    """Integer tokens unmasked per step, with the expected KL they incur.

    Attributes:
        tokens_per_step: int64[T], each >= 1, summing to n.
        expected_kl: the exact expected KL (nats, float64) under the profile it was built for;
            for meta["curve"] == RAW_CURVE, the predicted NLL excess, which may be negative.
        method: how it was made ("optax", "exact", "uniform", "cosine", "eds", "pyramid", "tc",
            "dtc", ...).
        relaxed_kl: the optimizer's relaxed objective (nats) before rounding, if any.
        certified: True when an exact solver proved that no T-step schedule has a lower KL
            (within 1e-9 relative or absolute).
        lower_bound: a proven lower bound (nats) on the least KL of any T-step schedule, when
            one is known (equal to expected_kl, to rounding, when certified); None otherwise.
            expected_kl - lower_bound is the certified gap.
        meta: free-form metadata kept in the file.
    """

    tokens_per_step: np.ndarray
    expected_kl: np.ndarray
    method: str = struct.field(pytree_node=False, default="custom")
    relaxed_kl: float | None = struct.field(pytree_node=False, default=None)
    certified: bool = struct.field(pytree_node=False, default=False)
    lower_bound: float | None = struct.field(pytree_node=False, default=None)
    meta: dict = struct.field(pytree_node=False, default_factory=dict)

    @property
    def gap(self) -> float | None:
        """The certified gap expected_kl - lower_bound (nats), or None without a bound."""
        if self.lower_bound is None:
            return None
        return max(float(self.expected_kl) - float(self.lower_bound), 0.0)

    @property
    def n(self) -> int:
        """Sequence length (tokens)."""
        return int(np.sum(np.asarray(self.tokens_per_step)))

    @property
    def steps(self) -> int:
        """Number of steps T."""
        return int(np.asarray(self.tokens_per_step).shape[-1])

    @property
    def cumulative(self) -> np.ndarray:
        """int[T + 1] revealed counts N_0 = 0, N_1, ..., N_T = n."""
        return np.concatenate([[0], np.cumsum(np.asarray(self.tokens_per_step))])

    @classmethod
    def from_tokens(
        cls, profile: EntropyProfile, tokens_per_step, method: str = "custom", **kwargs
    ) -> Schedule:
        """A schedule for `profile` from its tokens per step, with the exact expected KL."""
        s = check_tokens_per_step(tokens_per_step, profile.n)
        if s.ndim != 1:
            raise ValueError(f"tokens_per_step must be 1-D, got shape {s.shape}")
        kl = evaluate_kl(profile.entropy, s)  # s is checked
        return cls(tokens_per_step=s, expected_kl=np.float64(kl), method=method, **kwargs)

    def to_json(self) -> dict:
        """The schedule as a `schedopt.schedule` version 1 dict."""
        out = {
            **_io.header(SCHEDULE_FORMAT, VERSION),
            "n": self.n,
            "steps": self.steps,
            "tokens_per_step": [int(s) for s in np.asarray(self.tokens_per_step)],
            "expected_kl": float(self.expected_kl),
            "unit": "nats",
            "method": self.method,
            "meta": dict(self.meta),
        }
        if self.relaxed_kl is not None:
            out["meta"]["relaxed_kl"] = float(self.relaxed_kl)
        if self.certified:
            out["certified_optimal"] = True
        if self.lower_bound is not None:
            out["lower_bound"] = float(self.lower_bound)
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write the schedule atomically as JSON."""
        _io.write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike, profile: EntropyProfile | None = None) -> Schedule:
        """Read a `schedopt.schedule` version 1 file.

        Args:
            path: the file.
            profile: when given, the schedule is checked against its n and its expected KL
                is recomputed under it.
        """
        obj = _io.check_format(_io.read_json(path, "schedule"), path, SCHEDULE_FORMAT, VERSION)
        _io.check_fields(obj, path, _io.SCHEDULE_FIELDS, "schedopt.schedule file")
        _io.require_keys(obj, path, ("n", "tokens_per_step"))
        where = repr(str(path))
        try:
            n = whole_number(obj["n"], "n", minimum=1, unit="tokens")
            s = check_tokens_per_step(obj["tokens_per_step"], n)
            if s.ndim != 1:
                raise ValueError(f"tokens_per_step must be a flat list, got shape {s.shape}")
            if "steps" in obj and whole_number(obj["steps"], "steps", minimum=1) != s.size:
                raise ValueError(
                    f"steps is {obj['steps']} but tokens_per_step has {s.size} entries; "
                    "fix or drop the steps field"
                )
            raw = isinstance(obj.get("meta"), dict) and obj["meta"].get("curve") == RAW_CURVE
            stored = (real_number(obj["expected_kl"], "expected_kl", unit="nats")
                      if raw and obj.get("expected_kl") is not None
                      else expected_kl_field(obj.get("expected_kl"), "expected_kl"))
            if obj.get("lower_bound") is not None:
                expected_kl_field(obj["lower_bound"], "lower_bound")
            if obj.get("unit", "nats") != "nats":
                raise ValueError(f"unit is {shown(obj['unit'])}; schedule KLs are in \"nats\"")
            if not isinstance(obj.get("method", ""), str):
                raise ValueError(f"method is {shown(obj['method'])}; give a name in quotes")
            if not isinstance(obj.get("certified_optimal", False), bool):
                raise ValueError(f"certified_optimal is {shown(obj['certified_optimal'])}; "
                                 "give true or false")
        except (ValueError, TypeError) as e:
            raise ValueError(f"{where}: {e}") from None
        meta = _io.meta_field(obj, path)
        if meta.get("block_length") is not None:  # a block schedule: the exporters read it
            try:
                whole_number(meta["block_length"], "meta.block_length", minimum=1, maximum=n)
            except ValueError as e:
                raise ValueError(f"{where}: {e}") from None
        if profile is not None and n != profile.n:
            raise ValueError(
                f"schedule {where} is for n = {n} tokens but the profile has "
                f"n = {profile.n}; use a schedule made for this profile's sequence length"
            )
        kl = expected_kl(profile, s) if profile is not None else stored
        return cls(
            tokens_per_step=s,
            expected_kl=np.float64(kl),
            method=str(obj.get("method", "custom")),
            meta=meta,
        )




# --------------------------------------------------------------------------- baselines
def uniform_tokens(n: int, steps: int) -> np.ndarray:
    """LLaDA's get_num_transfer_tokens: floor(n/T) each, the remainder to the first steps."""
    s = np.full(steps, n // steps, dtype=np.int64)
    s[: n % steps] += 1
    return s


def cosine_tokens(n: int, steps: int) -> np.ndarray:
    """MaskGIT's cosine schedule: floor(n cos(pi/2 k/T)) still masked after step k.

    Each step unmasks at least one token (the masked count is kept in [T - k, m_{k-1} - 1]).
    """
    masked = [n]
    for k in range(1, steps + 1):
        m = math.floor(n * math.cos(math.pi / 2 * k / steps))
        masked.append(min(max(m, steps - k), masked[-1] - 1))
    return -np.diff(np.asarray(masked, dtype=np.int64))


def eds_tokens(entropy, steps: int) -> np.ndarray:
    """Steps equally spaced in cumulative information (EDS, arXiv 2602.06849), on a curve.

    schedopt's reading of the rule: the k-th cut N_k (k = 1..T-1) is the first revealed count
    j at which the average entropy curve H reaches k/T of H_n (H_j >= k/T H_n, to a relative
    1e-12 for float rounding), so every step reveals about H_n / T nats. The cuts are then
    forced strictly increasing with N_k in [k, n - (T - k)], so that exactly T steps each
    reveal at least one token. A flat curve (H_n = 0) gives the uniform schedule.

    Args:
        entropy: float[n + 1], H_0 = 0, H_1, ..., H_n in nats (`EntropyProfile.entropy`); a
            curve that is not monotone is read through its running maximum.
        steps: T, 1 <= T <= n.

    Returns:
        int64[T] tokens per step, summing to n.

    References:
        "Equally spaced in cumulative information", arXiv 2602.06849. The paper could not be
        read from where this was written; the definition above is schedopt's reading of its
        title rule, not a checked transcription.
    """
    h = np.maximum.accumulate(np.asarray(entropy, np.float64))
    n = h.size - 1
    if not h[-1] > 0:
        return uniform_tokens(n, steps)
    targets = h[-1] * np.arange(1, steps) / steps
    cuts = np.searchsorted(h, targets * (1 - 1e-12), side="left")
    counts = [0]
    for k, cut in enumerate(cuts, start=1):
        counts.append(min(max(int(cut), counts[-1] + 1), n - (steps - k)))
    counts.append(n)
    return np.diff(np.asarray(counts, np.int64))


def pyramid_tokens_for_factor(n: int, factor: int) -> np.ndarray:
    """The pyramid of LLaDA's issue 93: i // factor + 1 tokens at step i = 0, 1, ... until n
    tokens are placed (the last step takes the remainder)."""
    tokens, placed, i = [], 0, 0
    while placed < n:
        tokens.append(min(i // factor + 1, n - placed))
        placed += tokens[-1]
        i += 1
    return np.asarray(tokens, np.int64)


def _pyramid_length(n: int, factor: int) -> int:
    # Run r (r = 0, 1, ...) is `factor` steps of r + 1 tokens; m full runs hold f m (m + 1) / 2.
    lo, hi = 0, math.isqrt(2 * n) + 1  # the most full runs that hold fewer than n tokens
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if factor * mid * (mid + 1) // 2 < n else (lo, mid - 1)
    left = n - factor * lo * (lo + 1) // 2
    return lo * factor + -(-left // (lo + 1))


def pyramid_tokens(n: int, steps: int) -> tuple[np.ndarray, int | None]:
    """The pyramidal rule of LLaDA's issue 93 for a budget of `steps` steps.

    The pyramid with integer factor f >= 1 reveals i // f + 1 tokens at step i
    (`pyramid_tokens_for_factor`); its length grows with f. The largest f whose pyramid fits
    in T steps is used (it may use fewer than T steps, as TC does). When even f = 1 needs
    more than T steps (T below about sqrt(2n)), no factor fits and the same linear ramp is
    scaled to T steps: step i gets (i + 1) n / (T (T + 1) / 2) tokens, rounded by largest
    remainders (ties to the later step), so the counts are non-decreasing, each >= 1, and
    sum to n.

    Args:
        n: sequence length.
        steps: the budget T, 1 <= T <= n.

    Returns:
        (int64 tokens per step; the factor f, or None for the scaled ramp).

    References:
        LLaDA issue 93, https://github.com/ML-GSAI/LLaDA/issues/93.
    """
    if _pyramid_length(n, 1) > steps:
        quota = np.arange(1, steps + 1) * n / (steps * (steps + 1) / 2)
        tokens = np.floor(quota).astype(np.int64)
        short = n - int(tokens.sum())
        order = np.lexsort((-np.arange(steps), -(quota - tokens)))
        tokens[order[:short]] += 1
        return tokens, None
    lo, hi = 1, n  # factor n reveals one token per step: n steps, which always fit
    while lo < hi:
        mid = (lo + hi + 1) // 2
        lo, hi = (mid, hi) if _pyramid_length(n, mid) <= steps else (lo, mid - 1)
    return pyramid_tokens_for_factor(n, lo), lo


def tc_tokens(n: int, eps: float, tc_bound: float) -> np.ndarray:
    """Chen-Cong-Li's TC schedule (App. D): big steps first, then single tokens."""
    return tc_tokens_for_zeta(n, _zeta(eps, tc_bound))


def dtc_tokens(n: int, eps: float, dtc_bound: float) -> np.ndarray:
    """The DTC schedule, TC's mirror image: single tokens first, then geometric growth."""
    return dtc_tokens_for_zeta(n, _zeta(eps, dtc_bound))


def tc_tokens_for_zeta(n: int, zeta: int) -> np.ndarray:
    """The TC schedule for zeta = 1 + ceil(bound / eps) (App. D of Chen-Cong-Li)."""
    if zeta >= n + 1:
        return np.ones(n, dtype=np.int64)
    counts = [0]
    for _ in range(_num_geometric_steps(n, zeta)):
        counts.append(counts[-1] + (n - counts[-1]) // zeta)
    counts.extend(range(counts[-1] + 1, n + 1))
    return _steps_from_counts(counts)


def dtc_tokens_for_zeta(n: int, zeta: int) -> np.ndarray:
    """The DTC schedule for zeta = 1 + ceil(bound / eps): TC's mirror image."""
    if zeta >= n + 1:
        return np.ones(n, dtype=np.int64)
    masked = [n]
    for _ in range(_num_geometric_steps(n, zeta)):
        masked.append(-((-masked[-1] * (zeta - 1)) // zeta))  # ceil(N (1 - 1/zeta))
    masked.extend(range(masked[-1] - 1, -1, -1))
    return _steps_from_counts(masked[::-1])


def _zeta(eps: float, bound: float) -> int:
    if not (eps > 0 and math.isfinite(eps)):
        raise ValueError(f"the target KL eps must be a positive number of nats, got {eps}")
    if not (bound >= 0 and math.isfinite(bound)):
        raise ValueError(f"the correlation bound must be a finite number >= 0, got {bound}")
    return 1 + math.ceil(bound / eps)


def _num_geometric_steps(n: int, zeta: int) -> int:
    if zeta == 1:
        return 1  # no correlation: one step unmasks everything
    return math.floor(math.log(n - zeta + 1) / math.log(1 / (1 - 1 / zeta))) + 2


def _steps_from_counts(counts) -> np.ndarray:
    s = np.diff(np.asarray(counts, dtype=np.int64))
    return s[s > 0]


def uniform(profile: EntropyProfile, steps: int) -> Schedule:
    """The uniform schedule (LLaDA) with its expected KL under `profile`."""
    steps = check_steps(steps, profile.n)
    return Schedule.from_tokens(profile, uniform_tokens(profile.n, steps), "uniform")


def cosine(profile: EntropyProfile, steps: int) -> Schedule:
    """MaskGIT's cosine schedule with its expected KL under `profile`."""
    steps = check_steps(steps, profile.n)
    return Schedule.from_tokens(profile, cosine_tokens(profile.n, steps), "cosine")


def eds(profile: EntropyProfile, steps: int) -> Schedule:
    """Steps equally spaced in cumulative information (`eds_tokens`) under `profile`."""
    steps = check_steps(steps, profile.n)
    return Schedule.from_tokens(profile, eds_tokens(profile.entropy, steps), "eds")


def pyramid(profile: EntropyProfile, steps: int) -> Schedule:
    """LLaDA issue 93's pyramid within `steps` steps (`pyramid_tokens`) under `profile`.

    Its meta holds the factor used (None for the ramp scaled to T steps).
    """
    steps = check_steps(steps, profile.n)
    tokens, factor = pyramid_tokens(profile.n, steps)
    return Schedule.from_tokens(profile, tokens, "pyramid", meta={"factor": factor})


def tc_schedule(profile: EntropyProfile, eps: float, tc_bound: float | None = None) -> Schedule:
    """The TC schedule guaranteeing E KL <= eps, given tc_bound >= TC (default: exact TC)."""
    bound = profile.total_correlation if tc_bound is None else tc_bound
    s = tc_tokens(profile.n, eps, bound)
    return Schedule.from_tokens(profile, s, "tc", meta={"eps": eps, "tc_bound": bound})


def dtc_schedule(
    profile: EntropyProfile, eps: float, dtc_bound: float | None = None
) -> Schedule:
    """The DTC schedule guaranteeing E KL <= eps, given dtc_bound >= DTC (default: exact)."""
    bound = profile.dual_total_correlation if dtc_bound is None else dtc_bound
    s = dtc_tokens(profile.n, eps, bound)
    return Schedule.from_tokens(profile, s, "dtc", meta={"eps": eps, "dtc_bound": bound})


def correlation_tokens_within(
    n: int, steps: int, kind: str, *, smallest_zeta: int = 1
) -> tuple[np.ndarray, int]:
    """The TC (or DTC) schedule with the largest zeta that needs at most `steps` steps.

    The TC/DTC schedules are indexed by zeta = 1 + ceil(bound / eps), and their step count
    grows with zeta; bisection finds the most accurate one that fits the budget.

    Args:
        n: sequence length.
        steps: the budget T.
        kind: "tc" or "dtc".
        smallest_zeta: a zeta known to fit (a smaller budget's answer), to start from.

    Returns:
        (int64 tokens per step, possibly fewer than T; its zeta).
    """
    if kind not in ("tc", "dtc"):
        raise ValueError(f"kind must be 'tc' or 'dtc', got {kind!r}")
    make = tc_tokens_for_zeta if kind == "tc" else dtc_tokens_for_zeta
    lo, hi = smallest_zeta, n + 1  # make(n, 1) has 1 step
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if make(n, mid).size <= steps:
            lo = mid
        else:
            hi = mid - 1
    return make(n, lo), lo


def correlation_schedule_within(profile: EntropyProfile, steps: int, kind: str) -> Schedule:
    """The TC (or DTC) schedule with the smallest eps that needs at most `steps` steps.

    So that they can be compared with the others at equal T; its meta holds the eps it
    guarantees. See `correlation_tokens_within`.
    """
    steps = check_steps(steps, profile.n)
    tokens, zeta = correlation_tokens_within(profile.n, steps, kind)
    bound = profile.total_correlation if kind == "tc" else profile.dual_total_correlation
    eps = bound / (zeta - 1) if zeta > 1 else float("inf")
    return Schedule.from_tokens(profile, tokens, kind, meta={"eps": eps})
