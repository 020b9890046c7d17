"""Hand an exported schedule to another sampler: exactly the object its loop indexes.

`load(path)` reads any file `schedopt export` writes (.json, .csv, .npz; counts, maskgit, alpha
or timesteps), a `schedopt.schedule` or `schedopt.time_grid` file, or a hand-written file with
one data key, and returns a `SamplerSchedule`. Its methods give each sampler its own object:

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
samplers reveal the schedule's tokens per step in expectation (theory §6, `schedopt.timegrid`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from . import _io
from .timegrid import (
    alpha_from_counts,
    alpha_to_timesteps,
    check_alpha,
    check_eps,
    parse_alpha_schedule,
    timesteps_to_alpha,
)

CONTAINERS = (".json", ".csv", ".npz")


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
                info = json.loads(str(z["info"])) if "info" in z.files else {}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, RecursionError) as e:
            raise ValueError(
                f"{str(path)!r} is not a readable .npz file ({type(e).__name__}); write it "
                "with schedopt export or numpy.savez"
            ) from None
        if not isinstance(info, dict):
            raise ValueError(f"{str(path)!r}: the .npz \"info\" entry must be a JSON object")
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
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must be a list of numbers") from None
    if v.ndim != 1 or v.size < 1:
        raise ValueError(f"{key} must be a 1-D list of numbers, got shape {v.shape}")
    return v


def whole(values: Any, key: str) -> np.ndarray:
    """Whole non-negative token counts as int64, or one clear error naming the key."""
    try:
        v = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{key} must hold whole numbers of tokens >= 0") from None
    if not np.all(np.isfinite(v)) or np.any(v != np.round(v)) or np.any(v < 0):
        raise ValueError(f"{key} must hold whole numbers of tokens >= 0")
    return v.astype(np.int64)


# --------------------------------------------------------------------------- the schedule
@dataclasses.dataclass(frozen=True)
class SamplerSchedule:
    """An exported schedule, ready for other samplers.

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
    """

    n: int
    alpha: np.ndarray
    counts: np.ndarray | None = None
    block_length: int | None = None
    steps_per_block: np.ndarray | None = None
    kind: str = "counts"

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

    def md4_timesteps(self, alpha_schedule: str = "cosine", eps: float = 1e-4):
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


# --------------------------------------------------------------------------- loading
def load(path: str | os.PathLike, n: int | None = None) -> SamplerSchedule:
    """Read an exported schedule for another sampler.

    Args:
        path: a file from `schedopt export` (.json, .csv, .npz; counts, maskgit, alpha,
            timesteps), a `schedopt.schedule` / `schedopt.time_grid` file, or a hand-written
            file with one data key ({"counts": [...]}, a CSV with an alpha column, ...).
        n: the sequence length; needed only for files that do not say it (mask ratios or an
            alpha grid written by hand). When given it is checked against the file.

    Returns:
        A `SamplerSchedule`.
    """
    path = Path(path)
    try:
        return from_dict(read_export_file(path), n)
    except ValueError as e:
        where = f"{str(path)!r}"
        if str(e).startswith(where):
            raise
        raise ValueError(f"{where}: {e}") from None


def _declared_n(data: dict, n: int | None) -> int | None:
    declared = data.get("n")
    if declared is not None:
        try:
            declared = int(float(declared))
        except (TypeError, ValueError):
            raise ValueError(f"n must be a whole number, got {data['n']!r}") from None
    if declared and n is not None and declared != n:
        raise ValueError(f"the file is for n = {declared} tokens, not n = {n}")
    return n if n is not None else (declared or None)


def from_dict(data: dict, n: int | None = None) -> SamplerSchedule:
    """A `SamplerSchedule` from the keys of an exported file (see `load`)."""
    n = _declared_n(data, n)
    if "tokens_per_step" in data:  # a schedopt.schedule file
        if (data.get("meta") or {}).get("block_length") is not None:
            raise ValueError(
                "this block schedule must be exported first: schedopt export --format counts "
                "--block-length L"
            )
        data = {"counts": data["tokens_per_step"]}
    if "counts" in data:
        return _counts(data, n)
    if "mask_ratio" in data:
        if n is None:
            raise ValueError("mask ratios need the sequence length: pass n")
        counts = maskgit_counts(data["mask_ratio"], n)
        return SamplerSchedule(n, alpha_from_counts(counts), counts, kind="maskgit")
    if "alpha" in data:
        alpha = check_alpha(vector(data["alpha"], "alpha"))
        kind = "time_grid" if data.get("format") == "schedopt.time_grid" else "alpha"
        return _random(alpha, n, kind)
    if "t" in data:
        schedule = str(data.get("alpha_schedule", "linear"))
        parse_alpha_schedule(schedule)
        eps = check_eps(data.get("eps", 1e-4))
        alpha = timesteps_to_alpha(
            vector(data["t"], "t"), schedule, eps, str(data.get("convention", "md4"))
        )
        return _random(alpha, n, "timesteps")
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
    if counts.ndim == 1:
        total = int(counts.sum())
        if total < 1 or (n is not None and total != n):
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
    total = int(flat.sum())
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
