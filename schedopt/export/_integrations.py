"""Hand an exported schedule to another sampler: exactly the object its loop indexes.

`read_schedule_file(path)` is the one reader of schedule-like files: any file `schedopt export`
writes (.json, .csv, .npz; counts, maskgit, alpha or timesteps), a `schedopt.schedule` or
`schedopt.time_grid` file (checked by `Schedule.load` / `TimeGrid.load`, their own readers), or
a hand-written file with one data key. It returns a `SamplerSchedule`, which schedopt scores
(`schedopt.export.score_imported`) and whose methods give each sampler its own object:

=================================  =============================================================
sampler                            method -> what its loop indexes
=================================  =============================================================
LLaDA, Fast-dLLM                   `llada_num_transfer_tokens(block, batch=B)`: torch int64
                                   [B, steps of the block], read as `num_transfer_tokens[j, i]`
diffusers BlockRefinementScheduler `block_refinement_counts(block)`: torch int64 [steps]
MaskGIT                            `maskgit_mask_ratio()`: jnp float32 [T], indexed by the traced
                                   step inside `lax.while_loop`
aMUSEd                             `amused_mask_ratio()`: torch float32 [T], indexed by the
                                   tensor `step_idx`
MD4                                `md4_timesteps(alpha_schedule, eps)`: jnp float32 [T + 1]
MDLM (ddpm, ddpm_cache), SEDD      `mdlm_timesteps()`: torch float32 t [T + 1] and dt [T]
Dream                              `dream_timesteps(alg)`: torch float32 [T + 1]
dllm                               `dllm_scheduler()`: an alpha scheduler for `MDLMSampler`
=================================  =============================================================

Only numpy is needed to read a file; torch and jax are imported when a method returns their
tensors. Every method is exact: fixed counts come back as the same integers, random-count
samplers reveal the schedule's tokens per step in expectation (theory §6, `schedopt.schedule`).
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from .._internal import io as _io
from .._internal.checks import LARGEST_WHOLE, check_alpha, expected_kl_field, shown, whole_number
from ..curve import check_block_length, steps_per_block
from ..schedule import (
    MD4_EPS,
    SCHEDULE_FORMAT,
    TIME_GRID_FORMAT,
    Schedule,
    TimeGrid,
    alpha_from_counts,
    alpha_to_timesteps,
    check_eps,
    parse_alpha_schedule,
    realised_grid,
    timesteps_to_alpha,
)

CONTAINERS = (".json", ".csv", ".npz")
EXPORT_FORMAT = "schedopt.export"


# --------------------------------------------------------------------------- containers
def read_export_file(path: str | os.PathLike) -> dict:
    """The keys of an exported file as a dict of plain values (lists, numbers, strings).

    .json: the object; .csv: the "# key=value" comment line plus one list per data column
    ("counts", "mask_ratio", "alpha", "t", or a block matrix "counts" with "steps_per_block");
    .npz: one array per key plus the JSON "info" string. Any other extension is read as JSON.
    """
    path = _io.check_input_file(path, "schedule")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        try:
            # Our own handle: np.load leaks the one it opens when the zip is corrupt.
            with open(path, "rb") as f, np.load(f, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files if k != "info"}
                info = (_io.parse_json(str(z["info"]), path, "schedule")
                        if "info" in z.files else {})
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RecursionError) as e:
            raise ValueError(
                f"{str(path)!r} is not a readable .npz file ({type(e).__name__}); write it "
                "with schedopt export or numpy.savez"
            ) from None
        if not isinstance(info, dict):
            raise ValueError(f"{str(path)!r}: the .npz \"info\" entry must be a JSON object")
        both = sorted(set(info) & set(data))
        if both:
            raise ValueError(f"{str(path)!r} gives {', '.join(both)} both as an array and in "
                             "\"info\"; keep one of them")
        return {**info, **{k: v.tolist() for k, v in data.items()}}
    if suffix == ".csv":
        return _read_csv(path)
    obj = _io.read_json(path, "schedule")
    if not isinstance(obj, dict):
        raise ValueError(
            f"{str(path)!r} holds a JSON {type(obj).__name__}, not an object; wrap the list "
            'as {"counts": [...]} (or mask_ratio, alpha, t)'
        )
    return obj


# The columns a schedule CSV may have: one data column (or t_start and t_end, or a block
# matrix), besides the step numbers.
_CSV_COLUMNS = ("step", "counts", "mask_ratio", "alpha", "t", "t_start", "t_end", "dt", "block",
                "steps")


def _read_csv(path: Path) -> dict:
    where = repr(str(path))
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise ValueError(f"{where} is not text (not UTF-8); give a CSV file") from None
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    meta: dict[str, Any] = {}
    rows = []
    for line in lines:
        if line.startswith("#"):
            for key, value in re.findall(r"(\w+)=(\S+)", line):
                if key in meta:
                    raise ValueError(f"{where} gives {key}= twice in its comment line; keep one")
                meta[key] = _csv_scalar(value)
        else:
            rows.append([c.strip() for c in line.split(",")])
    if len(rows) < 2:
        raise ValueError(f"{where} has no data rows; expected a header and one row per step")
    header, body = rows[0], rows[1:]
    _check_csv_header(header, where)
    for k, row in enumerate(body):
        if len(row) != len(header):
            raise ValueError(f"{where}: data row {k + 1} has {len(row)} cells but the header "
                             f"has {len(header)}; give one number per column")
    try:
        columns = {h: [float(r[i]) for r in body] for i, h in enumerate(header)}
    except ValueError as e:
        raise ValueError(f"{where}: every cell must be a number ({e})") from None
    out = dict(meta)
    if "t_start" in columns or "t_end" in columns:
        if not ("t_start" in columns and "t_end" in columns):
            missing = "t_end" if "t_start" in columns else "t_start"
            raise ValueError(f"{where} has no {missing} column; a timesteps CSV has "
                             "step,t_start,t_end,dt (schedopt export --format timesteps)")
        if columns["t_start"][1:] != columns["t_end"][:-1]:
            raise ValueError(f"{where}: each row's t_start must be the previous row's t_end")
        out["t"] = columns["t_start"] + columns["t_end"][-1:]
        if "dt" in columns:  # a sampler may read dt: it is checked against t like JSON's
            out["dt"] = columns["dt"]
    elif "block" in columns:
        counts = [h for h in header if h.startswith("step_")]
        if "steps" not in columns or not counts:
            raise ValueError(f"{where} has a block column but no steps column or no step_1, "
                             "step_2, ... count columns; a block CSV has "
                             "block,steps,step_1,... (schedopt export --block-length L)")
        out["counts"] = [[columns[h][b] for h in counts] for b in range(len(body))]
        out["steps_per_block"] = columns["steps"]
    else:
        for key in ("counts", "mask_ratio", "alpha", "t", "dt"):
            if key in columns:
                out[key] = columns[key]
    return out


def _check_csv_header(header: list[str], where: str) -> None:
    seen = set()
    for h in header:
        if h in seen:
            raise ValueError(f"{where} has the column {h!r} twice; keep one of them")
        seen.add(h)
        if h not in _CSV_COLUMNS and not re.fullmatch(r"step_[1-9]\d*", h):
            raise ValueError(
                f"{where} has the unknown column {h!r}; the columns are step and one of counts, "
                "mask_ratio, alpha, t, or t_start,t_end,dt, or block,steps,step_1,..."
            )


def _csv_scalar(text: str) -> Any:
    """A CSV comment value: an int or float where it reads as one, else the text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


# --------------------------------------------------------------------------- sampler rules
def maskgit_counts(mask_ratio: Any, n: int) -> np.ndarray:
    """Tokens MaskGIT / aMUSEd unmask per step for still-masked fractions `mask_ratio` [T].

    Their rule: keep max(1, min(m_{k-1} - 1, floor(n r_k))) masked after step k, and sample
    every position at the last step.
    """
    ratio = vector(mask_ratio, "mask_ratio")
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


def mask_ratios(tokens: Any) -> np.ndarray:
    """MaskGIT ratios after steps 1..T: (m_k + 1/2) / n, and 0 after the last step.

    The midpoint makes MaskGIT's floor(n * ratio) give back m_k exactly, also in float32.
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    n = int(tokens.sum())
    masked = n - np.cumsum(tokens)
    ratio = (masked + 0.5) / n
    ratio[-1] = 0.0
    return ratio


def vector(values: Any, key: str) -> np.ndarray:
    """A 1-D float64 array from a file's list, or one clear error naming the key."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    v = _io.number_array(values, key)
    if v.size < 1:
        raise ValueError(f"{key} is an empty list; give one value per step")
    return v


def whole(values: Any, key: str) -> np.ndarray:
    """Whole non-negative token counts as int64 (a list, or a list of lists), or one clear
    error naming the key and the first bad entry."""
    if isinstance(values, np.ndarray):
        values = values.tolist()
    depth, probe = 1, values
    if isinstance(probe, list) and probe and isinstance(probe[0], list):
        depth = 2
    v = _io.number_array(values, key, ndim=depth, whole=True, nonnegative=True)
    if v.size < 1:
        raise ValueError(f"{key} is an empty list; give the tokens of each step")
    return v


# --------------------------------------------------------------------------- the schedule
@dataclasses.dataclass(frozen=True)
class SamplerSchedule:
    """A schedule read from a file: what schedopt scores, and each sampler's object.

    Attributes:
        n: tokens to generate.
        alpha: float64[T + 1], the revealed fraction after each step (N_k / n for fixed
            counts; the expected fraction for a random-count grid).
        counts: int64[T] tokens per step (fixed counts; zero-token steps kept), or None for a
            random-count grid.
        block_length: tokens per block for a block counts matrix (LLaDA `block_length`), else
            None.
        steps_per_block: int64[num_blocks] steps of each block, or None.
        kind: the file's format ("counts", "maskgit", "alpha", "timesteps", "schedule",
            "time_grid").
        sampler_grid: for MD4 timesteps, the grid MD4 really runs: alpha with its final decode
            as one more random-count step (`schedopt.schedule.realised_grid`); else None.
    """

    n: int
    alpha: np.ndarray
    counts: np.ndarray | None = None
    block_length: int | None = None
    steps_per_block: np.ndarray | None = None
    kind: str = "counts"
    sampler_grid: np.ndarray | None = None

    @property
    def sampler(self) -> str:
        """How the sampler that reads this kind runs it: "fixed" (integer counts per step) or
        "binomial" (random counts on the alpha grid)."""
        return "fixed" if self.kind in ("counts", "maskgit", "schedule") else "binomial"

    @property
    def tokens_per_step(self) -> np.ndarray:
        """int64[T'] positive counts: the file's own (empty steps dropped: they cost a forward
        pass but no KL), or for a random-count grid the nearest whole counts round(n alpha_k)."""
        if self.sampler == "fixed":
            return self.counts[self.counts > 0]
        diffs = np.diff(np.round(self.alpha * self.n)).astype(np.int64)
        return diffs[diffs > 0]

    @property
    def steps(self) -> int:
        """T: the number of steps (forward passes) of the whole schedule."""
        return int(self.alpha.size - 1) if self.counts is None else int(self.counts.size)

    @property
    def block_size(self) -> int:
        """Tokens per block: the block length, or n without blocks."""
        return self.n if self.block_length is None else int(self.block_length)

    @property
    def num_blocks(self) -> int:
        """Number of semi-autoregressive blocks (1 without blocks)."""
        return 1 if self.steps_per_block is None else int(self.steps_per_block.size)

    # ------------------------------------------------------------------ fixed counts
    def _fixed(self, sampler: str) -> np.ndarray:
        if self.counts is None:
            raise ValueError(
                f"{sampler} unmasks fixed numbers of tokens, but this file holds a random-count "
                "grid (alpha); export a fixed-count schedule (schedopt optimize without "
                "--sampler binomial)"
            )
        return self.counts

    def block_counts(self, block: int | None = None) -> np.ndarray:
        """int64[steps of the block]: tokens per step of block `block` (None: the whole
        schedule, which must then have no blocks)."""
        counts = self._fixed("a count-based sampler")
        if block is None:
            if self.steps_per_block is not None:
                raise ValueError(
                    f"this schedule has {self.num_blocks} blocks of {self.block_length} tokens; "
                    "pass the block index (0 .. num_blocks - 1)"
                )
            return counts.copy()
        if self.steps_per_block is None:
            if block != 0:
                raise ValueError(f"block {block} does not exist: this schedule has one block")
            return counts.copy()
        if not 0 <= int(block) < self.num_blocks:
            raise ValueError(
                f"block {block} does not exist: blocks run from 0 to {self.num_blocks - 1}"
            )
        bounds = np.concatenate([[0], np.cumsum(self.steps_per_block)])
        return counts[bounds[block] : bounds[block + 1]].copy()

    def llada_num_transfer_tokens(
        self, block: int | None = None, *, batch: int = 1, device: Any = None
    ):
        """LLaDA / Fast-dLLM `num_transfer_tokens` for one block: torch int64 [batch, steps].

        Their loops read `num_transfer_tokens[j, i]` (LLaDA) or `num_transfer_tokens[:, i]`
        (Fast-dLLM) for row j of the batch and step i of the block; every row is the same.
        """
        import torch

        row = self.block_counts(block)
        if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
            raise ValueError(f"batch must be a whole number >= 1, got {batch!r}")
        table = torch.as_tensor(np.tile(row, (batch, 1)), dtype=torch.int64)
        return table if device is None else table.to(device)

    def block_refinement_counts(self, block: int | None = None):
        """diffusers `BlockRefinementScheduler` transfer schedule of one block: torch int64."""
        import torch

        return torch.as_tensor(self.block_counts(block), dtype=torch.int64)

    def _mask_ratio(self) -> np.ndarray:
        counts = self.block_counts(None)
        if np.any(counts == 0):
            raise ValueError(
                "MaskGIT unmasks at least one token per step; drop the zero-token steps"
            )
        return mask_ratios(counts)

    def maskgit_mask_ratio(self):
        """MaskGIT's mask ratios, jnp float32 [T]: `mask_ratio = table[step]` in its loop."""
        import jax.numpy as jnp

        return jnp.asarray(self._mask_ratio(), dtype=jnp.float32)

    def amused_mask_ratio(self, device: Any = None):
        """aMUSEd's mask ratios, torch float32 [T]: `mask_ratio = table[step_idx]`."""
        import torch

        table = torch.as_tensor(self._mask_ratio(), dtype=torch.float32)
        return table if device is None else table.to(device)

    # ------------------------------------------------------------------ time grids
    def _grid(self) -> np.ndarray:
        if self.steps_per_block is not None:
            raise ValueError(
                "a time grid covers the whole sequence; block schedules run with counts "
                "(llada_num_transfer_tokens, block_refinement_counts) or dllm_scheduler"
            )
        if self.counts is not None and np.any(self.counts == 0):
            return alpha_from_counts(self.counts[self.counts > 0])
        return self.alpha

    def md4_timesteps(self, alpha_schedule: str = "cosine", eps: float = MD4_EPS):
        """MD4 times t_0 = 1 > ... > t_T = 0, jnp float32 [T + 1], for its `noise_schedule`
        (`alpha_schedule`) and `eps`; MD4's step i runs from t = table[i] to s = table[i + 1]."""
        import jax.numpy as jnp

        t, _ = alpha_to_timesteps(self._grid(), alpha_schedule, eps, "md4")
        return jnp.asarray(t, dtype=jnp.float32)

    def mdlm_timesteps(self, alpha_schedule: str = "linear", device: Any = None):
        """MDLM / SEDD times and steps, torch float32 (t [T + 1], dt [T]); step i runs from
        t[i] to t[i] - dt[i]. Exact whatever the model's eps (log-linear noise: linear)."""
        import torch

        t, _ = alpha_to_timesteps(self._grid(), alpha_schedule, 0.25, "loglinear")
        t32 = torch.as_tensor(t, dtype=torch.float32)
        dt = t32[:-1] - t32[1:]  # in float32, so that t - dt gives back the next time
        return (t32, dt) if device is None else (t32.to(device), dt.to(device))

    def dream_timesteps(self, alg: str = "origin", device: Any = None):
        """Dream `diffusion_generate` times, torch float32 [T + 1] (`timesteps` in `_sample`).

        alg "origin" (random counts): t_k = 1 - alpha_k, exact in expectation. The confidence
        algorithms ("maskgit_plus", "topk_margin", "entropy") unmask int(m (1 - s / t)) of m
        masked tokens: the times put m (1 - s / t) half a token above each count, so that the
        truncation gives back the counts exactly in float32.
        """
        import torch

        if alg == "origin":
            t = 1.0 - self._grid()
            t[-1] = 0.0
        elif alg in ("maskgit_plus", "topk_margin", "entropy"):
            counts = self._grid_counts("Dream's confidence algorithms")
            masked = self.n - np.cumsum(counts)
            previous = np.concatenate([[self.n], masked[:-1]])
            ratio = (masked[:-1] - 0.5) / previous[:-1]
            t = np.concatenate([[1.0], np.cumprod(ratio), [0.0]])
        else:
            raise ValueError(
                f"alg {alg!r} is unknown; use origin, maskgit_plus, topk_margin or entropy"
            )
        table = torch.as_tensor(t, dtype=torch.float32)
        return table if device is None else table.to(device)

    def _grid_counts(self, sampler: str) -> np.ndarray:
        counts = self._fixed(sampler)
        self._grid()
        return counts[counts > 0]

    def dllm_scheduler(self) -> DllmAlphaScheduler:
        """An alpha scheduler for dllm's `MDLMSampler(model, tokenizer, scheduler=...)`.

        dllm evaluates the scheduler on its step grid t = (S - j) / S of each block and
        unmasks round(m (1 - (1 - alpha(s)) / (1 - alpha(t)))) tokens: this scheduler returns
        the schedule's alpha there, so the counts come back exactly. Run it with
        `steps=self.steps` and `block_size=self.n` (or the block length for a block schedule
        whose blocks all share one row of counts); any other step grid raises an error
        instead of running a different schedule.
        """
        if self.steps_per_block is None:
            return DllmAlphaScheduler(self._grid())
        rows = [tuple(self.block_counts(b)) for b in range(self.num_blocks)]
        if len(set(rows)) > 1:
            raise ValueError(
                "dllm runs every block with the same alpha scheduler, but this schedule's "
                "blocks have different counts; use llada_num_transfer_tokens per block instead"
            )
        return DllmAlphaScheduler(alpha_from_counts(np.asarray(rows[0])))


class DllmAlphaScheduler:
    """dllm alpha-scheduler interface (`alpha`, `__call__`, `reverse_mask_prob`,
    `alpha_derivative`, `weight`) for a grid alpha_0 = 0 < ... < alpha_T = 1 placed at dllm's
    times t_k = 1 - k / T; piecewise linear between them (dllm samples only on the grid)."""

    def __init__(self, alpha: Any):
        self.grid = check_alpha(alpha)
        self.steps = int(self.grid.size - 1)

    def _value(self, i: Any) -> np.ndarray:
        x = np.asarray(self._float(i), dtype=np.float64)
        if np.any((x < 0) | (x > 1)):
            raise ValueError(f"dllm time {i} is outside [0, 1]")
        # alpha at time t: the grid runs from t = 1 (alpha 0) to t = 0 (alpha 1).
        return np.interp((1.0 - x) * self.steps, np.arange(self.steps + 1), self.grid)

    @staticmethod
    def _float(i: Any):
        return i.detach().cpu().numpy() if hasattr(i, "detach") else i

    def _like(self, value: np.ndarray, i: Any):
        if isinstance(i, float | int):
            return float(value)
        if hasattr(i, "detach"):
            import torch

            return torch.as_tensor(value, dtype=torch.float32, device=i.device)
        return value

    def alpha(self, i: Any):
        """Revealed fraction at dllm time i in [0, 1] (1 = all masked)."""
        return self._like(self._value(i), i)

    __call__ = alpha

    def alpha_derivative(self, i: Any):
        """d alpha / dt of the piecewise-linear interpolation (training weights only)."""
        x = np.asarray(self._float(i), dtype=np.float64)
        k = np.clip(np.floor((1.0 - x) * self.steps), 0, self.steps - 1).astype(np.int64)
        return self._like(-np.diff(self.grid)[k] * self.steps, i)

    def weight(self, i: Any):
        """dllm's loss weight -alpha'(t) / (1 - alpha(t)) (training only)."""
        return self._like(
            -np.asarray(self._float(self.alpha_derivative(i))) / (1.0 - self._value(i) + 1e-6),
            i,
        )

    def reverse_mask_prob(self, s: Any, t: Any):
        """(1 - alpha(s)) / (1 - alpha(t)): the chance a token masked at t is still masked at s.

        Raises:
            ValueError: dllm asked for a step that is not 1 / T long (it re-split the
                schedule: pass steps = T and block_size = n, or the block length).
        """
        s_v, t_v = self._float(s), self._float(t)
        width = np.asarray(t_v, dtype=np.float64) - np.asarray(s_v, dtype=np.float64)
        if np.any(np.abs(width * self.steps - 1.0) > 1e-6):
            got = 1.0 / float(np.ravel(width)[0]) if np.ravel(width)[0] > 0 else float("inf")
            raise ValueError(
                f"dllm runs {got:.6g} steps per block but this schedule has {self.steps}; "
                f"pass steps={self.steps} per block and block_size equal to the exported "
                "sequence or block length (dllm's default block_size splits the sequence)"
            )
        value = (1.0 - self._value(s_v)) / (1.0 - self._value(t_v))
        return self._like(value, t)


# --------------------------------------------------------------------------- reading
def read_schedule_file(path: str | os.PathLike, n: int | None = None) -> SamplerSchedule:
    """Read any schedule-like file: the one reader, for scoring and for other samplers.

    Counts are checked to sum to n; MaskGIT ratios go through MaskGIT's own rounding (masked
    after step k: max(1, min(m_{k-1} - 1, floor(n r_k))), all revealed at the end); timesteps
    through the sampler's own rule (the file's alpha_schedule / eps / convention, default
    linear / 1e-4 / md4) to the grid it realises.

    Args:
        path: a file from `schedopt export` (.json, .csv, .npz; counts, maskgit, alpha,
            timesteps), a `schedopt.schedule` (block schedules included) or
            `schedopt.time_grid` file, or a hand-written file with one data key
            ({"counts": [...]}, a CSV with an alpha column, ...).
        n: the sequence length; needed only for files that do not say it (mask ratios or an
            alpha grid written by hand). When given it is checked against the file.

    Returns:
        A `SamplerSchedule`.
    """
    path = Path(path)
    try:
        data = read_export_file(path)
        if data.get("format") == SCHEDULE_FORMAT:
            return _from_schedule(Schedule.load(path), n)
        if data.get("format") == TIME_GRID_FORMAT:
            alpha = np.asarray(TimeGrid.load(path).alpha, np.float64)
            return _random(alpha, _declared_n(data, n), "time_grid")
        return from_dict(data, n)
    except ValueError as e:
        where = f"{str(path)!r}"
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where}: {e}") from None


def _from_schedule(schedule: Schedule, n: int | None) -> SamplerSchedule:
    counts = np.asarray(schedule.tokens_per_step, dtype=np.int64)
    total = int(counts.sum())
    if n is not None and total != n:
        raise ValueError(
            f"the counts sum to {total} tokens but n = {n}; use a schedule made for this "
            "sequence length"
        )
    length = schedule.meta.get("block_length")
    if length is None:
        return SamplerSchedule(total, alpha_from_counts(counts), counts, kind="schedule")
    length = check_block_length(length, total)
    return SamplerSchedule(total, alpha_from_counts(counts), counts, length,
                           steps_per_block(counts, length), kind="schedule")


def _declared_n(data: dict, n: int | None) -> int | None:
    if "n" not in data:
        return n
    declared = whole_number(data["n"], "n", minimum=1, maximum=LARGEST_WHOLE, unit="tokens")
    if n is not None and declared != n:
        raise ValueError(f"the file is for n = {declared} tokens, not n = {n}")
    return declared


# Each data key, with the `kind` an exported file gives it.
_DATA_KINDS = {"counts": "counts", "mask_ratio": "maskgit", "alpha": "alpha", "t": "timesteps"}


def _check_fields(data: dict) -> str | None:
    """The one data key of an exported or hand-written file, after checking every other field;
    None when there is none."""
    fmt = data.get("format")
    formats = (EXPORT_FORMAT, SCHEDULE_FORMAT, TIME_GRID_FORMAT)
    if fmt is not None and fmt != EXPORT_FORMAT:
        raise ValueError(f"format is {shown(fmt)}, not a schedule format; use one of "
                         f"{', '.join(formats)} or drop the field")
    _io.check_fields(data, None, _io.EXPORT_FIELDS, f"{fmt or 'schedule'} file")
    if not _io.is_version(data.get("version", 1), 1):
        raise ValueError(f"version is {shown(data['version'])}; this schedopt reads version 1")
    present = [k for k in _DATA_KINDS if k in data]
    if len(present) > 1:
        raise ValueError(
            f"the file gives both {' and '.join(present)}, which may disagree; keep the one "
            "the sampler should run and remove the other"
        )
    if not present:
        raise ValueError(
            "the file holds no schedule: expected a schedopt schedule or time grid, or a key "
            "counts, mask_ratio, alpha or t"
        )
    key = present[0]
    kind = data.get("kind")
    if kind is not None and kind != _DATA_KINDS[key]:
        raise ValueError(f"kind is {shown(kind)} but the file holds {key}; "
                         "fix or drop the kind field")
    if "dt" in data and key != "t":
        raise ValueError("the file gives dt without t; give the times t (dt follows from them)")
    for name in ("steps", "block_length", "num_blocks"):
        if name in data:
            whole_number(data[name], name, minimum=1)
    if "expected_kl" in data:
        expected_kl_field(data["expected_kl"], "expected_kl")
    for name, allowed in (("sampler", ("fixed", "binomial")), ("unit", ("nats",))):
        if name in data and data[name] not in allowed:
            raise ValueError(f"{name} is {shown(data[name])}; use "
                             f"{' or '.join(map(repr, allowed))} or drop the field")
    for name in ("method", "alpha_schedule", "convention"):
        if name in data and not isinstance(data[name], str):
            raise ValueError(f"{name} is {shown(data[name])}; give a name in quotes")
    if "meta" in data and not isinstance(data["meta"] or {}, dict):
        raise ValueError(f"meta must be a JSON object of notes, got {shown(data['meta'])}; "
                         "wrap it in an object or drop it")
    return key


def _check_steps(data: dict, schedule: SamplerSchedule) -> SamplerSchedule:
    if "steps" in data and int(data["steps"]) != schedule.steps:
        raise ValueError(f"steps is {data['steps']} but the schedule has {schedule.steps} steps; "
                         "fix or drop the steps field")
    if "num_blocks" in data and int(data["num_blocks"]) != schedule.num_blocks:
        raise ValueError(f"num_blocks is {data['num_blocks']} but the counts have "
                         f"{schedule.num_blocks} rows; fix or drop the num_blocks field")
    if "block_length" in data and int(data["block_length"]) != schedule.block_size:
        raise ValueError(f"block_length is {data['block_length']} but the counts give blocks of "
                         f"{schedule.block_size} tokens; fix or drop the block_length field")
    return schedule


def from_dict(data: dict, n: int | None = None) -> SamplerSchedule:
    """A `SamplerSchedule` from the keys of an exported or hand-written file (see
    `read_schedule_file`, which reads schedopt's own formats with their types' readers)."""
    return _check_steps(data, _from_dict(data, n))


def _from_dict(data: dict, n: int | None) -> SamplerSchedule:
    key = _check_fields(data)
    n = _declared_n(data, n)
    if key == "counts":
        return _counts(data, n)
    if key == "mask_ratio":
        if n is None:
            raise ValueError("mask ratios need the sequence length: pass n")
        counts = maskgit_counts(data["mask_ratio"], n)
        return SamplerSchedule(n, alpha_from_counts(counts), counts, kind="maskgit")
    if key == "alpha":
        return _random(check_alpha(vector(data["alpha"], "alpha")), n, "alpha")
    if key == "t":
        schedule = str(data.get("alpha_schedule", "linear"))
        parse_alpha_schedule(schedule)
        eps = check_eps(data.get("eps", MD4_EPS))
        t = vector(data["t"], "t")
        if "dt" in data:
            dt = vector(data["dt"], "dt")
            if dt.shape != (t.size - 1,) or not np.allclose(dt, -np.diff(t), rtol=1e-6,
                                                             atol=1e-9):
                raise ValueError("dt disagrees with t (dt_k must be t_{k-1} - t_k); fix or "
                                 "drop the dt field")
        convention = str(data.get("convention", "md4"))
        alpha = timesteps_to_alpha(t, schedule, eps, convention)
        grid = realised_grid(alpha, eps, "md4") if convention == "md4" else None
        return dataclasses.replace(_random(alpha, n, "timesteps"), sampler_grid=grid)
    raise ValueError(
        "the file holds no schedule: expected a schedopt schedule or time grid, or a key "
        "counts, mask_ratio, alpha or t"
    )


def _random(alpha: np.ndarray, n: int | None, kind: str) -> SamplerSchedule:
    if n is None:
        raise ValueError("an alpha grid needs the sequence length: pass n")
    # A fixed-count schedule exported as a grid: alpha_k n whole numbers give its counts back.
    scaled = alpha * n
    counts = None
    if np.all(np.abs(scaled - np.round(scaled)) < 1e-6 * max(1, n)):
        counts = np.diff(np.round(scaled)).astype(np.int64)
    return SamplerSchedule(int(n), alpha, counts, kind=kind)


def _counts(data: dict, n: int | None) -> SamplerSchedule:
    counts = whole(data["counts"], "counts")
    # Summed as Python integers: 1024 counts of 2^53 would wrap around in int64.
    total = sum(int(c) for c in counts.ravel())
    if total > LARGEST_WHOLE:
        raise ValueError(f"the counts sum to {total} tokens, more than any sequence; give the "
                         "tokens of each step")
    if counts.ndim == 1:
        if total < 1:
            raise ValueError("the counts sum to 0 tokens; a schedule unmasks n >= 1 tokens")
        if n is not None and total != n:
            raise ValueError(
                f"the counts sum to {total} tokens but n = {n}; the steps must unmask every "
                "position exactly once"
            )
        return SamplerSchedule(total, alpha_from_counts(counts[counts > 0]), counts)
    if counts.ndim != 2:
        raise ValueError(f"counts must be a list or a [blocks, steps] matrix, got {counts.shape}")
    num_blocks = counts.shape[0]
    split = data.get("steps_per_block")
    split = whole(split, "steps_per_block") if split is not None else None
    if split is None:
        split = np.full(num_blocks, counts.shape[1], dtype=np.int64)
    if split.shape != (num_blocks,) or np.any(split > counts.shape[1]) or np.any(split < 1):
        raise ValueError("steps_per_block must give each block's step count (<= the row length)")
    rows = [counts[b, : split[b]] for b in range(num_blocks)]
    flat = np.concatenate(rows)
    total = int(flat.sum())  # at most the matrix's sum, checked above
    if n is not None and total != n:
        raise ValueError(
            f"the counts sum to {total} tokens but n = {n}; "
            "use a schedule made for this sequence length"
        )
    if total % num_blocks:
        raise ValueError(
            f"{num_blocks} blocks cannot split n = {total} tokens equally: the block length "
            "must divide n"
        )
    length = total // num_blocks
    for b, row in enumerate(rows):
        if int(row.sum()) != length:
            raise ValueError(
                f"block {b} unmasks {int(row.sum())} tokens but blocks of n / {num_blocks} = "
                f"{length} tokens need {length} each"
            )
    return SamplerSchedule(
        total, alpha_from_counts(flat[flat > 0]), flat, length, split.astype(np.int64)
    )
