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
- timesteps ["t", "dt"]: t_0 = 1 > t_1 > ... > t_T = 0 for a masking family a(t) (theory §6):
  MD4 convention alpha(t) = (1 - 2 eps) a(t) + eps; MDLM/SEDD log-linear convention
  1 - alpha(t) = (1 - eps)(1 - a(t)). Interior times are those after which the sampler,
  started fully masked at t = 1, has revealed alpha_k in expectation (`schedopt.schedule`);
  the ends are the sampler's own. dt_k = t_{k-1} - t_k.

Containers by the output's extension: .json (one object), .csv (a "# key=value ..." comment
line, a header, one row per step or block), .npz (one array per key plus a JSON "info" string).
`schedopt.export.read_schedule_file` reads any of these (and schedopt.schedule / schedopt.time_grid
files) back.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .._internal import io as _io
from .._internal.checks import check_alpha
from ..curve import BlockProfiles, EntropyProfile, check_block_length, steps_per_block
from ..objective import block_expected_kl, expected_kl, expected_kl_binomial
from ..schedule import CONVENTIONS as CONVENTIONS  # the names `export --convention` accepts
from ..schedule import (
    MD4_EPS,
    SCHEDULE_FORMAT,
    TIME_GRID_FORMAT,
    Schedule,
    TimeGrid,
    alpha_from_counts,
    alpha_to_timesteps,
    check_convention,
    check_eps,
    parse_alpha_schedule,
)
from ._integrations import CONTAINERS as CONTAINERS  # the output extensions export writes
from ._integrations import EXPORT_FORMAT, SamplerSchedule
from ._integrations import mask_ratios as mask_ratios

VERSION = 1
FORMATS = ("counts", "maskgit", "alpha", "timesteps")
DATA_KEYS = {
    "counts": ("counts",),
    "maskgit": ("mask_ratio",),
    "alpha": ("alpha",),
    "timesteps": ("t", "dt"),
}


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


def export_schedule(
    schedule: Schedule | TimeGrid | Any,
    fmt: str,
    *,
    block_length: int | None = None,
    alpha_schedule: str = "linear",
    eps: float = MD4_EPS,
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
        eps: timesteps only: the sampler's offset in (0, 0.5) (MD4: `MD4_EPS`, 1e-4).
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
    check_convention(convention)
    if block_length is not None and fmt != "counts":
        raise ValueError(
            f"--block-length applies to --format counts only (got --format {fmt}); "
            "drop it or export counts"
        )
    head: dict[str, Any] = {**_io.header(EXPORT_FORMAT, VERSION), "kind": fmt}
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
        alpha = alpha_from_counts(tokens)
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
    lines = [f"# {EXPORT_FORMAT} {meta}"]
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


# --------------------------------------------------------------------------- scoring
def score_imported(profile: EntropyProfile, imported: SamplerSchedule) -> dict:
    """Expected KL (nats) of a schedule read back (`read_schedule_file`) under `profile`, both
    ways of running it.

    Returns:
        {"kind", "sampler", "steps", "expected_kl"} where expected_kl is for the sampler the
        format belongs to, plus "expected_kl_fixed" (the counts round(n alpha_k), run with fixed
        counts) for random-count grids, or "expected_kl_random" (the same alpha grid run with
        random counts, as MD4 would) for fixed counts. Block schedules are scored per block on
        the profile sliced into blocks (exact for exchangeable laws). Random-count files also
        get "expected_tokens_per_step", n (alpha_k - alpha_{k-1}) on the grid the sampler
        really runs (MD4 timesteps: its decode is one more step), which their expected_kl uses
        (theory §6), and "sampler_steps", the length of that list (steps + 1 for MD4).
    """
    out: dict[str, Any] = {
        "kind": imported.kind,
        "sampler": imported.sampler,
        "steps": imported.steps,
    }
    grid = imported.alpha if imported.sampler_grid is None else imported.sampler_grid
    random_kl = float(expected_kl_binomial(profile, grid))
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
        tokens = (profile.n * np.diff(grid)).tolist()
        out.update(
            expected_kl=random_kl, expected_kl_fixed=fixed_kl, expected_tokens_per_step=tokens,
            sampler_steps=len(tokens),
        )
    return out
