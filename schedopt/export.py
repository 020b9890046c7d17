"""Schedules other samplers can use: counts, MaskGIT mask ratios, alpha grids and timesteps.

Formats (JSON key in brackets):
- counts ["counts"]: integer tokens per step (LLaDA's get_num_transfer_tokens, Fast-dLLM,
  diffusers' BlockRefinementScheduler, dllm). With a block length, a [num_blocks, max_steps]
  matrix, zero-padded on the right when blocks get different numbers of steps, with
  "steps_per_block" saying how many entries of each row are real steps.
- maskgit ["mask_ratio"]: still-masked fraction after each step k = 1..T (MaskGIT's
  mask_schedule, diffusers' aMUSEd). The sampler keeps floor(n * ratio) tokens masked (at least
  one, and at least one fewer than before) and unmasks everything at its last step, so each
  ratio is the midpoint (m_k + 1/2) / n: floor() recovers m_k exactly, even in float32.
- alpha ["alpha"]: revealed fraction after each step, alpha_0 = 0 .. alpha_T = 1 (MD4, Dream,
  dllm). For a fixed-count schedule alpha_k = N_k / n.
- timesteps ["t", "dt"]: t_0 = 1 > t_1 > ... > t_T = 0 for a masking family a(t) (THEORY 6):
  MD4 convention alpha(t) = (1 - 2 eps) a(t) + eps; MDLM/SEDD log-linear convention
  1 - alpha(t) = (1 - eps)(1 - a(t)) (for a(t) = 1 - t the move chance (1 - eps) t). Interior
  times solve alpha(t_k) = alpha_k; the ends are the sampler's own (t = 1 all masked, t = 0
  all revealed). dt_k = t_{k-1} - t_k.

Containers by the output's extension: .json (one object), .csv (a "# key=value ..." comment
line, a header, one row per step or block), .npz (one array per key plus a JSON "info" string).
`read_schedule_file` reads any of these (and schedopt.schedule / schedopt.time_grid files) back.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
from .binomial import FORMAT as TIME_GRID_FORMAT
from .binomial import TimeGrid, check_alpha, expected_kl_binomial
from .blocks import BlockProfiles, block_expected_kl, check_block_length, steps_per_block
from .divergence import expected_kl
from .profile import EntropyProfile
from .schedules import FORMAT as SCHEDULE_FORMAT
from .schedules import Schedule

FORMAT = "schedopt.export"
VERSION = 1
FORMATS = ("counts", "maskgit", "alpha", "timesteps")
CONVENTIONS = ("md4", "loglinear")
CONTAINERS = (".json", ".csv", ".npz")
DATA_KEYS = {
    "counts": ("counts",),
    "maskgit": ("mask_ratio",),
    "alpha": ("alpha",),
    "timesteps": ("t", "dt"),
}


# --------------------------------------------------------------------------- masking families
def check_eps(eps: Any) -> float:
    """Check the schedule offset eps: a number in (0, 0.5)."""
    try:
        e = float(eps)
    except (TypeError, ValueError):
        raise ValueError(f"eps must be a number in (0, 0.5), got {eps!r}") from None
    if not 0 < e < 0.5:
        raise ValueError(f"eps must lie in (0, 0.5) (MD4 uses 1e-4), got {eps!r}")
    return e


def parse_alpha_schedule(name: str) -> tuple[str, float]:
    """("linear" | "cosine" | "poly", exponent) from "linear", "cosine" or "polyK" (K > 0)."""
    if name in ("linear", "cosine"):
        return name, 1.0
    match = re.fullmatch(r"poly(\d+(?:\.\d*)?|\.\d+)", str(name))
    if match and float(match.group(1)) > 0:
        return "poly", float(match.group(1))
    raise ValueError(
        f"alpha schedule {name!r} is unknown; use linear, cosine or polyK with K > 0 (e.g. poly2)"
    )


def _family(name: str, t: np.ndarray) -> np.ndarray:
    """MD4's a(t): revealed fraction at time t in [0, 1] before the eps offset."""
    kind, k = parse_alpha_schedule(name)
    if kind == "linear":
        return 1.0 - t
    if kind == "cosine":
        return 1.0 - np.cos(np.pi / 2 * (1.0 - t))
    return 1.0 - t**k


def _family_inverse(name: str, u: np.ndarray) -> np.ndarray:
    """t with a(t) = u, for u in [0, 1]."""
    kind, k = parse_alpha_schedule(name)
    if kind == "linear":
        return 1.0 - u
    if kind == "cosine":
        return 1.0 - 2.0 / np.pi * np.arccos(1.0 - u)
    return (1.0 - u) ** (1.0 / k)


def _check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(
            f"convention {convention!r} is unknown; use 'md4' (alpha = (1-2eps) a(t) + eps) "
            "or 'loglinear' (MDLM/SEDD: 1 - alpha = (1-eps)(1 - a(t)))"
        )
    return convention


def sampler_alpha(
    t: Any, alpha_schedule: str = "linear", eps: float = 1e-4, convention: str = "md4"
) -> np.ndarray:
    """The sampler's revealed fraction alpha(t) at times t (THEORY 6 conventions)."""
    a = _family(alpha_schedule, np.asarray(t, dtype=np.float64))
    eps = check_eps(eps)
    if _check_convention(convention) == "md4":
        return (1.0 - 2.0 * eps) * a + eps
    return 1.0 - (1.0 - eps) * (1.0 - a)


def alpha_to_timesteps(
    alpha: Any, alpha_schedule: str = "linear", eps: float = 1e-4, convention: str = "md4"
) -> tuple[np.ndarray, np.ndarray]:
    """Times t_0 = 1 > t_1 > ... > t_T = 0 at which the sampler's alpha(t) equals the grid.

    Args:
        alpha: float[T + 1] revealed fractions from 0 to 1, strictly increasing.
        alpha_schedule: "linear", "cosine" or "polyK".
        eps: the sampler's offset in (0, 0.5).
        convention: "md4" or "loglinear".

    Returns:
        (t float64[T + 1], dt float64[T] with dt_k = t_{k-1} - t_k > 0).

    Raises:
        ValueError: an interior alpha_k lies where the sampler cannot reach (below eps, or
            above 1 - eps for MD4); a smaller eps fixes it.
    """
    a = check_alpha(alpha)
    eps = check_eps(eps)
    convention = _check_convention(convention)
    inner = a[1:-1]
    if convention == "md4":
        low, high = eps, 1.0 - eps
        u = (inner - eps) / (1.0 - 2.0 * eps)
    else:
        low, high = eps, 1.0
        u = 1.0 - (1.0 - inner) / (1.0 - eps)
    bad = np.nonzero((inner <= low) | (inner >= high))[0]
    if bad.size:
        k = int(bad[0]) + 1
        raise ValueError(
            f"alpha[{k}] = {inner[bad[0]]:.6g} is outside ({low:.6g}, {high:.6g}), which the "
            f"{convention} sampler with eps = {eps:g} cannot reach; pass a smaller eps"
        )
    t = np.concatenate([[1.0], _family_inverse(alpha_schedule, u), [0.0]])
    dt = -np.diff(t)
    if np.any(dt <= 0):
        k = int(np.nonzero(dt <= 0)[0][0]) + 1
        raise ValueError(
            f"steps {k} and {k + 1} map to the same time in float64; the grid is too fine "
            "for this alpha schedule, use fewer steps or the linear family"
        )
    return t, dt


def timesteps_to_alpha(
    t: Any, alpha_schedule: str = "linear", eps: float = 1e-4, convention: str = "md4"
) -> np.ndarray:
    """The revealed-fraction grid a sampler realises on times t_0 = 1 > ... > t_T = 0.

    Interior points are the sampler's alpha(t_k); the ends are 0 (the sampler starts fully
    masked) and 1 (it ends fully revealed).
    """
    t = np.asarray(t, dtype=np.float64)
    if t.ndim != 1 or t.size < 2 or not np.all(np.isfinite(t)):
        raise ValueError(f"t must be a list of at least 2 finite times, got shape {t.shape}")
    if np.any(np.diff(t) >= 0) or t[0] > 1 or t[-1] < 0:
        raise ValueError(
            "t must decrease strictly from t_0 <= 1 to t_T >= 0 (sampling runs from 1 to 0), "
            f"got {t[:3].tolist()} ... {t[-2:].tolist()}"
        )
    inner = sampler_alpha(t[1:-1], alpha_schedule, eps, convention)
    return np.concatenate([[0.0], inner, [1.0]])


# --------------------------------------------------------------------------- export
def _tokens_of(schedule: Any, n: int | None) -> tuple[np.ndarray, dict]:
    """Counts (zeros allowed) and descriptive fields of a Schedule or a raw count list."""
    if isinstance(schedule, Schedule):
        tokens = np.asarray(schedule.tokens_per_step, dtype=np.int64)
        info = {"method": schedule.method, "expected_kl": float(schedule.expected_kl)}
        return tokens, info
    s = np.asarray(schedule)
    if s.ndim != 1 or s.size < 1 or not np.all(np.isfinite(s)) or np.any(s != np.round(s)):
        raise ValueError(
            f"a schedule must be a Schedule, a TimeGrid or a 1-D list of whole token counts, "
            f"got {schedule!r}"
        )
    tokens = s.astype(np.int64)
    if np.any(tokens < 0):
        raise ValueError(f"token counts must be >= 0, got {tokens.tolist()}")
    total = int(tokens.sum())
    if n is not None and total != n:
        raise ValueError(
            f"the counts sum to {total} tokens but n = {n}; the steps must unmask every "
            "position exactly once"
        )
    if total < 1:
        raise ValueError("the counts sum to 0 tokens; a schedule unmasks n >= 1 tokens")
    return tokens, {"method": "custom"}


def _no_empty_steps(tokens: np.ndarray, fmt: str, why: str) -> None:
    empty = np.nonzero(tokens == 0)[0]
    if empty.size:
        raise ValueError(
            f"step {int(empty[0]) + 1} unmasks 0 tokens, which the {fmt} format cannot "
            f"express ({why}); drop the empty steps or export --format counts"
        )


def mask_ratios(tokens: np.ndarray) -> np.ndarray:
    """MaskGIT ratios after steps 1..T: (m_k + 1/2) / n, and 0 after the last step."""
    n = int(tokens.sum())
    masked = n - np.cumsum(tokens)
    ratio = (masked + 0.5) / n
    ratio[-1] = 0.0
    return ratio


def export_schedule(
    schedule: Schedule | TimeGrid | Any,
    fmt: str,
    *,
    block_length: int | None = None,
    alpha_schedule: str = "linear",
    eps: float = 1e-4,
    convention: str = "md4",
    n: int | None = None,
) -> dict:
    """A schedule in a format another sampler reads, as a JSON-ready dict.

    Args:
        schedule: a `Schedule` (fixed counts), a `TimeGrid` (random counts) or a raw list of
            counts (zero-token steps allowed for the counts format only).
        fmt: "counts", "maskgit", "alpha" or "timesteps".
        block_length: counts only: the [num_blocks, max_steps] matrix for blocks of this many
            tokens (must divide n; no step may cross a block boundary).
        alpha_schedule: timesteps only: "linear", "cosine" or "polyK".
        eps: timesteps only: the sampler's offset in (0, 0.5) (MD4: 1e-4).
        convention: timesteps only: "md4" or "loglinear" (MDLM/SEDD).
        n: for a raw count list, the sequence length the counts must sum to.

    Returns:
        A dict with "format": "schedopt.export", "version", "kind" (= fmt), "n", "steps",
        "sampler" ("fixed" or "binomial"), "method", "expected_kl" when known, and the data
        keys: "counts" | "mask_ratio" | "alpha" | "t" and "dt".
    """
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r} is unknown; use one of {', '.join(FORMATS)}")
    check_eps(eps)
    parse_alpha_schedule(alpha_schedule)
    _check_convention(convention)
    if block_length is not None and fmt != "counts":
        raise ValueError(
            f"--block-length applies to --format counts only (got --format {fmt}); "
            "drop it or export counts"
        )
    head: dict[str, Any] = {"format": FORMAT, "version": VERSION, "kind": fmt}
    if isinstance(schedule, TimeGrid):
        if fmt in ("counts", "maskgit"):
            raise ValueError(
                f"a random-count time grid has no fixed counts to export as {fmt}; "
                "use --format alpha or --format timesteps"
            )
        alpha = check_alpha(np.asarray(schedule.alpha))
        head.update(
            n=int(schedule.meta.get("n", 0)),
            steps=schedule.steps,
            sampler="binomial",
            method=schedule.method,
            expected_kl=float(schedule.expected_kl),
        )
    else:
        tokens, info = _tokens_of(schedule, n)
        total = int(tokens.sum())
        head.update(n=total, steps=int(tokens.size), sampler="fixed", **info)
        if fmt == "counts":
            return {**head, **_counts_data(schedule, tokens, block_length)}
        if fmt == "maskgit":
            _no_empty_steps(tokens, fmt, "MaskGIT unmasks at least one token per step")
            return {**head, "mask_ratio": mask_ratios(tokens).tolist()}
        _no_empty_steps(tokens, fmt, "alpha must increase strictly")
        alpha = np.concatenate([[0.0], np.cumsum(tokens) / total])
        alpha[-1] = 1.0
    if fmt == "alpha":
        return {**head, "alpha": alpha.tolist()}
    t, dt = alpha_to_timesteps(alpha, alpha_schedule, eps, convention)
    return {
        **head,
        "alpha_schedule": alpha_schedule,
        "eps": float(eps),
        "convention": convention,
        "t": t.tolist(),
        "dt": dt.tolist(),
    }


def _counts_data(schedule: Any, tokens: np.ndarray, block_length: int | None) -> dict:
    if block_length is None:
        return {"counts": tokens.tolist()}
    total = int(tokens.sum())
    length = check_block_length(block_length, total)
    meta = schedule.meta if isinstance(schedule, Schedule) else {}
    if "block_length" in meta and int(meta["block_length"]) != length:
        raise ValueError(
            f"the schedule was optimized for blocks of {meta['block_length']} tokens, not "
            f"{length}; pass --block-length {meta['block_length']}"
        )
    _no_empty_steps(tokens, "block counts", "an empty step belongs to no block")
    split = steps_per_block(tokens, length)
    matrix = np.zeros((split.size, int(split.max())), dtype=np.int64)
    bounds = np.concatenate([[0], np.cumsum(split)])
    for b in range(split.size):
        matrix[b, : split[b]] = tokens[bounds[b] : bounds[b + 1]]
    return {
        "block_length": length,
        "num_blocks": int(split.size),
        "steps_per_block": split.tolist(),
        "counts": matrix.tolist(),
    }


def load_schedule(path: str | os.PathLike) -> Schedule | TimeGrid:
    """Read a `schedopt.schedule` (fixed counts) or `schedopt.time_grid` (random counts) file."""
    obj = _io.read_json(path, "schedule")
    if isinstance(obj, dict) and obj.get("format") == TIME_GRID_FORMAT:
        return TimeGrid.load(path)
    if isinstance(obj, dict) and obj.get("format") == SCHEDULE_FORMAT:
        return Schedule.load(path)
    got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
    raise ValueError(
        f"{str(path)!r} is not a schedopt schedule or time grid (format {got!r}); "
        "pass a file written by schedopt optimize"
    )


# --------------------------------------------------------------------------- containers
def check_output_path_extension(path: str | os.PathLike) -> Path:
    """The output path, after checking its extension names a container and its folder exists."""
    path = Path(path)
    if path.suffix.lower() not in CONTAINERS:
        raise ValueError(
            f"cannot tell the container of {str(path)!r} from its extension; "
            "name the output .json, .csv or .npz"
        )
    return _io.check_output_path(path)


def write_export(path: str | os.PathLike, data: dict) -> Path:
    """Write an `export_schedule` dict atomically; .json, .csv or .npz by the extension."""
    path = check_output_path_extension(path)
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _io.write_json(path, data)
    if suffix == ".csv":
        return _io.atomic_write(path, _to_csv(data))
    arrays = {k: np.asarray(data[k]) for k in _array_keys(data)}
    info = {k: v for k, v in data.items() if k not in arrays}
    buffer = io.BytesIO()
    np.savez(buffer, info=np.asarray(json.dumps(info)), **arrays)
    return _io.atomic_write(path, buffer.getvalue())


def _array_keys(data: dict) -> list[str]:
    keys = list(DATA_KEYS[data["kind"]])
    return keys + (["steps_per_block"] if "steps_per_block" in data else [])


def _to_csv(data: dict) -> str:
    scalars = {k: v for k, v in data.items() if k not in _array_keys(data) and k != "format"}
    meta = " ".join(f"{k}={_csv_value(v)}" for k, v in scalars.items())
    lines = [f"# {FORMAT} {meta}"]
    kind = data["kind"]
    if kind == "counts" and "steps_per_block" in data:
        width = len(data["counts"][0])
        lines.append(",".join(["block", "steps"] + [f"step_{k + 1}" for k in range(width)]))
        for b, (row, s) in enumerate(zip(data["counts"], data["steps_per_block"], strict=True)):
            lines.append(",".join(str(v) for v in [b, s, *row]))
    elif kind == "timesteps":
        lines.append("step,t_start,t_end,dt")
        t, dt = data["t"], data["dt"]
        lines += [f"{k + 1},{t[k]!r},{t[k + 1]!r},{dt[k]!r}" for k in range(len(dt))]
    else:
        key = DATA_KEYS[kind][0]
        first = 0 if kind == "alpha" else 1
        lines.append(f"step,{key}")
        lines += [f"{k + first},{v!r}" for k, v in enumerate(data[key])]
    return "\n".join(lines) + "\n"


def _csv_value(v: Any) -> str:
    return repr(v) if isinstance(v, float) else str(v).replace(" ", "_")


# --------------------------------------------------------------------------- import
@dataclasses.dataclass(frozen=True)
class ImportedSchedule:
    """A schedule file read back into what schedopt scores.

    Attributes:
        kind: "schedule", "time_grid", "counts", "maskgit", "alpha" or "timesteps".
        sampler: "fixed" (integer counts per step) or "binomial" (random counts on a grid):
            how the sampler that reads this format runs it.
        tokens_per_step: int64[T'] positive counts (empty steps dropped: they cost a forward
            pass but no KL), or None when the counts are random and n * alpha is not whole.
        alpha: float64[T + 1] revealed-fraction grid (N_k / n for fixed counts).
        block_length: the block length of a block counts matrix or block schedule, else None.
        steps: the number of steps the sampler runs (empty ones included).
    """

    kind: str
    sampler: str
    tokens_per_step: np.ndarray | None
    alpha: np.ndarray
    block_length: int | None = None
    steps: int = 0


def read_schedule_file(path: str | os.PathLike, n: int) -> ImportedSchedule:
    """Read a counts / maskgit / alpha / timesteps file (.json, .csv, .npz), or a
    schedopt.schedule or schedopt.time_grid file, for a sequence of n tokens.

    Counts are checked to sum to n; MaskGIT ratios go through MaskGIT's own rounding
    (masked after step k: max(1, min(m_{k-1} - 1, floor(n r_k))), all revealed at the end);
    timesteps through the sampler's alpha(t) (the file's alpha_schedule / eps / convention,
    default linear / 1e-4 / md4).

    Args:
        path: the file.
        n: the sequence length of the profile it will be scored against.

    Returns:
        An `ImportedSchedule`.
    """
    path = Path(path)
    data = _read_container(path)
    where = f"{str(path)!r}"
    fmt = data.get("format")
    try:
        if fmt == SCHEDULE_FORMAT:
            schedule = Schedule.load(path)
            tokens = np.asarray(schedule.tokens_per_step, dtype=np.int64)
            _check_total(tokens, n)
            return _fixed("schedule", tokens, schedule.meta.get("block_length"), tokens.size)
        if fmt == TIME_GRID_FORMAT:
            return _random("time_grid", TimeGrid.load(path).alpha, n)
        if "counts" in data:
            return _import_counts(data, n)
        if "mask_ratio" in data:
            ratio = _vector(data["mask_ratio"], "mask_ratio")
            return _fixed("maskgit", _maskgit_tokens(ratio, n), None, ratio.size)
        if "alpha" in data:
            return _random("alpha", _vector(data["alpha"], "alpha"), n)
        if "t" in data:
            alpha = timesteps_to_alpha(
                _vector(data["t"], "t"),
                str(data.get("alpha_schedule", "linear")),
                float(data.get("eps", 1e-4)),
                str(data.get("convention", "md4")),
            )
            return _random("timesteps", alpha, n)
    except ValueError as e:
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where}: {e}") from None
    raise ValueError(
        f"{where} holds no schedule: expected a schedopt schedule or time grid, or a key "
        "counts, mask_ratio, alpha or t"
    )


def _read_container(path: Path) -> dict:
    suffix = path.suffix.lower()
    if suffix == ".json" or suffix not in CONTAINERS:
        obj = _io.read_json(path, "schedule")
        if not isinstance(obj, dict):
            raise ValueError(
                f"{str(path)!r} holds a JSON {type(obj).__name__}, not an object; wrap the list "
                'as {"counts": [...]} (or mask_ratio, alpha, t)'
            )
        return obj
    _io.check_input_file(path, "schedule")
    if suffix == ".npz":
        try:
            # Our own handle: np.load leaks the one it opens when the zip is corrupt.
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files if k != "info"}
                info = json.loads(str(z["info"])) if "info" in z.files else {}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RecursionError) as e:
            raise ValueError(
                f"{str(path)!r} is not a readable .npz file ({type(e).__name__}); write it "
                "with schedopt export or numpy.savez"
            ) from None
        if not isinstance(info, dict):
            raise ValueError(f"{str(path)!r}: the .npz \"info\" entry must be a JSON object")
        return {**info, **{k: v.tolist() for k, v in data.items()}}
    return _read_csv(path)


def _read_csv(path: Path) -> dict:
    lines = [ln.strip() for ln in path.read_text().splitlines() if ln.strip()]
    meta: dict[str, Any] = {}
    rows = []
    for line in lines:
        if line.startswith("#"):
            for key, value in re.findall(r"(\w+)=(\S+)", line):
                meta[key] = value
        else:
            rows.append([c.strip() for c in line.split(",")])
    if len(rows) < 2:
        raise ValueError(f"{str(path)!r} has no data rows; expected a header and one row per step")
    header, body = rows[0], rows[1:]
    try:
        columns = {h: np.asarray([float(r[i]) for r in body]) for i, h in enumerate(header)}
    except (ValueError, IndexError):
        raise ValueError(f"{str(path)!r}: every row must hold {len(header)} numbers") from None
    out = dict(meta)
    if "t_start" in columns:
        out["t"] = np.append(columns["t_start"], columns["t_end"][-1]).tolist()
    elif "steps" in columns and "block" in columns:
        out["counts"] = np.stack([columns[h] for h in header[2:]], axis=1).tolist()
        out["steps_per_block"] = columns["steps"].tolist()
    else:
        for key in ("counts", "mask_ratio", "alpha", "t"):
            if key in columns:
                out[key] = columns[key].tolist()
    return out


def _vector(values: Any, key: str) -> np.ndarray:
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a list of numbers") from None
    if v.ndim != 1 or v.size < 1:
        raise ValueError(f"{key} must be a 1-D list of numbers, got shape {v.shape}")
    return v


def _check_total(tokens: np.ndarray, n: int) -> None:
    if int(tokens.sum()) != n:
        raise ValueError(
            f"the counts sum to {int(tokens.sum())} tokens but the profile has n = {n}; "
            "use a schedule made for this sequence length"
        )


def _whole(values: Any, key: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.float64)
    if not np.all(np.isfinite(v)) or np.any(v != np.round(v)) or np.any(v < 0):
        raise ValueError(f"{key} must hold whole numbers of tokens >= 0")
    return v.astype(np.int64)


def _import_counts(data: dict, n: int) -> ImportedSchedule:
    counts = _whole(data["counts"], "counts")
    if counts.ndim == 1:
        _check_total(counts, n)
        return _fixed("counts", counts, None, counts.size)
    if counts.ndim != 2:
        raise ValueError(f"counts must be a list or a [blocks, steps] matrix, got {counts.shape}")
    num_blocks = counts.shape[0]
    split = data.get("steps_per_block")
    split = _whole(split, "steps_per_block") if split is not None else None
    if split is None:
        split = np.full(num_blocks, counts.shape[1], dtype=np.int64)
    if split.shape != (num_blocks,) or np.any(split > counts.shape[1]):
        raise ValueError("steps_per_block must give each block's step count (<= the row length)")
    rows = [counts[b, : split[b]] for b in range(num_blocks)]
    _check_total(np.concatenate(rows), n)
    if n % num_blocks:
        raise ValueError(
            f"{num_blocks} blocks cannot split n = {n} tokens equally: the block length must "
            "divide n"
        )
    length = n // num_blocks
    for b, row in enumerate(rows):
        if int(row.sum()) != length:
            raise ValueError(
                f"block {b} unmasks {int(row.sum())} tokens but blocks of n / {num_blocks} = "
                f"{length} tokens need {length} each"
            )
    return _fixed("counts", np.concatenate(rows), length, int(split.sum()))


def _maskgit_tokens(ratio: np.ndarray, n: int) -> np.ndarray:
    """MaskGIT's floor rule: masked counts after each step, then the counts per step."""
    if np.any(~np.isfinite(ratio)) or np.any(ratio < 0) or np.any(ratio > 1):
        raise ValueError("mask_ratio values must lie in [0, 1]")
    masked = [n]
    for k, r in enumerate(ratio):
        if k == ratio.size - 1:
            masked.append(0)  # the last step unmasks everything left
        else:
            masked.append(max(1, min(masked[-1] - 1, math.floor(n * r))))
    if masked[-2] < 1 or any(b >= a for a, b in zip(masked[:-1], masked[1:], strict=True)):
        raise ValueError(
            f"{ratio.size} MaskGIT steps cannot unmask n = {n} tokens at one or more per step"
        )
    return -np.diff(np.asarray(masked, dtype=np.int64))


def _fixed(kind: str, tokens: np.ndarray, block_length: Any, steps: int) -> ImportedSchedule:
    n = int(tokens.sum())
    kept = tokens[tokens > 0]
    alpha = np.concatenate([[0.0], np.cumsum(kept) / n])
    alpha[-1] = 1.0
    length = None if block_length is None else int(block_length)
    return ImportedSchedule(kind, "fixed", kept, alpha, length, int(steps))


def _random(kind: str, alpha: Any, n: int) -> ImportedSchedule:
    alpha = check_alpha(np.asarray(alpha))
    # The fixed-count reading: the nearest whole counts N_k = round(n alpha_k).
    diffs = np.diff(np.round(alpha * n)).astype(np.int64)
    return ImportedSchedule(kind, "binomial", diffs[diffs > 0], alpha, None, int(alpha.size - 1))


def score_imported(profile: EntropyProfile, imported: ImportedSchedule) -> dict:
    """Expected KL (nats) of an imported schedule under `profile`, both ways of running it.

    Returns:
        {"kind", "sampler", "steps", "expected_kl"} where expected_kl is for the sampler the
        format belongs to, plus "expected_kl_fixed" (the counts round(n alpha_k), run with fixed
        counts) for random-count grids, or "expected_kl_random" (the same alpha grid run with
        random counts, as MD4 would) for fixed counts. Block schedules are scored per block on
        the profile sliced into blocks (exact for exchangeable laws).
    """
    out: dict[str, Any] = {
        "kind": imported.kind,
        "sampler": imported.sampler,
        "steps": imported.steps,
    }
    random_kl = float(expected_kl_binomial(profile, imported.alpha))
    fixed_kl = float(expected_kl(profile, imported.tokens_per_step))
    if imported.block_length is not None:
        blocks = BlockProfiles.from_sequence_profile(profile, imported.block_length)
        out.update(
            block_length=imported.block_length,
            expected_kl=block_expected_kl(blocks, imported.tokens_per_step),
        )
    elif imported.sampler == "fixed":
        out.update(expected_kl=fixed_kl, expected_kl_random=random_kl)
    else:
        out.update(expected_kl=random_kl, expected_kl_fixed=fixed_kl)
    return out
