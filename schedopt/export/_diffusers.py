"""diffusers schedulers that run a schedopt schedule: drop-in for the stock ones.

- `block_refinement_scheduler(schedule)`: a subclass of diffusers' `BlockRefinementScheduler`
  (the `LLaDA2Pipeline`'s) that commits the schedule's counts in each block: block b's step i
  commits `schedule.block_counts(b)[i]` masked positions, the most confident ones, and block b
  runs as many steps as the schedule gives it.
- `amused_scheduler(schedule, mask_token_id)`: a subclass of diffusers' `AmusedScheduler`
  (`AmusedPipeline`) that leaves `n - N_k` latent tokens masked after step k, the cumulative
  counts of the schedule, instead of its cosine or linear mask ratio.

`schedule` is a `Schedule` (a block schedule from `optimize --block-length` keeps its
blocks), a `SamplerSchedule` from `schedopt.export.read_schedule_file`, or a path to any file
that reads (a schedule file or a `schedopt export` file). diffusers is imported when a scheduler is
built, never by `import schedopt`. A pipeline called with a block length, step count or size
that is not the schedule's is refused with a ValueError naming the value to pass;
`scheduler.call_kwargs` holds the arguments to call the pipeline with.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import numpy as np

from ..schedule import SCHEDULE_FORMAT, Schedule
from . import _integrations as integrations


# --------------------------------------------------------------------------- the schedule
def sampler_schedule(schedule: Any,
                     block_length: int | None = None) -> integrations.SamplerSchedule:
    """A `SamplerSchedule` from a `Schedule`, a `SamplerSchedule` or a file path.

    Args:
        schedule: the schedule or a path to a schedule or export file.
        block_length: split a schedule without blocks into blocks of this many tokens (no step
            may cross a block boundary); a block schedule must already have this length.
    """
    from ._export import export_schedule

    if isinstance(schedule, (str, os.PathLike)):
        data = integrations.read_export_file(schedule)
        if isinstance(data, dict) and data.get("format") == SCHEDULE_FORMAT:
            schedule = Schedule.load(schedule)
        else:
            schedule = integrations.read_schedule_file(schedule)
    if isinstance(schedule, Schedule):
        length = block_length
        if length is None:
            length = schedule.meta.get("block_length")
        data = export_schedule(schedule, "counts",
                               block_length=None if length is None else int(length))
        return integrations.from_dict(data)
    if isinstance(schedule, integrations.SamplerSchedule):
        if block_length is not None and int(block_length) != schedule.block_size:
            raise ValueError(
                f"the schedule has blocks of {schedule.block_size} tokens, not {block_length}; "
                f"drop block_length or export the schedule with --block-length {block_length}"
            )
        return schedule
    raise ValueError(
        f"a schedule must be a schedopt Schedule, a SamplerSchedule or a file path, got "
        f"{type(schedule).__name__}; pass Schedule.load(path) or the path itself"
    )


def _fixed_counts(schedule: integrations.SamplerSchedule, sampler: str) -> None:
    if schedule.counts is None:
        raise ValueError(
            f"{sampler} unmasks fixed numbers of tokens, but this schedule is a random-count "
            "grid; use a fixed-count schedule (schedopt optimize without --sampler binomial)"
        )


def _block_rows(schedule: integrations.SamplerSchedule) -> list[np.ndarray]:
    _fixed_counts(schedule, "BlockRefinementScheduler")
    if schedule.steps_per_block is None:
        return [schedule.block_counts(None)]
    return [schedule.block_counts(b) for b in range(schedule.num_blocks)]


# --------------------------------------------------------------------------- LLaDA2
@functools.cache
def _block_refinement_class():
    import torch
    from diffusers import BlockRefinementScheduler

    class ScheduledBlockRefinementScheduler(BlockRefinementScheduler):
        """`BlockRefinementScheduler` committing a schedopt schedule's counts in each block.

        Built by `schedopt.export.block_refinement_scheduler`; see its doc.
        """

        def _attach(self, schedule, keep_threshold: bool) -> None:
            self.schedopt_schedule = schedule
            self.schedopt_rows = _block_rows(schedule)
            self.keep_threshold = bool(keep_threshold)
            self.schedopt_block = -1
            self._device = "cpu"
            longest = max(len(r) for r in self.schedopt_rows)
            self.call_kwargs = {"gen_length": schedule.n, "block_length": schedule.block_size,
                                "num_inference_steps": longest, "minimal_topk": 1}

        def get_num_transfer_tokens(self, block_length, num_inference_steps):
            row = self.schedopt_rows[max(self.schedopt_block, 0)]
            return torch.as_tensor(row, dtype=torch.long)

        def set_timesteps(self, num_inference_steps, device=None, block_length=None):
            want = self.call_kwargs["num_inference_steps"]
            if int(num_inference_steps) != want:
                raise ValueError(
                    f"the pipeline asks for {num_inference_steps} steps per block but the "
                    f"schedule's longest block has {want}; call it with num_inference_steps="
                    f"{want} and minimal_topk=1 (scheduler.call_kwargs)"
                )
            size = self.schedopt_schedule.block_size
            if block_length is not None and int(block_length) != size:
                raise ValueError(
                    f"the pipeline runs blocks of {block_length} tokens but the schedule's "
                    f"blocks have {size}; call it with block_length={size} "
                    "(scheduler.call_kwargs)"
                )
            self.schedopt_block = -1
            self._device = device if device is not None else "cpu"
            self._start_block(0)

        def _start_block(self, block: int) -> None:
            steps = len(self.schedopt_rows[block])
            self.num_inference_steps = steps
            self.timesteps = torch.arange(steps - 1, -1, -1, device=self._device,
                                          dtype=torch.long)
            self._transfer_schedule = torch.as_tensor(
                self.schedopt_rows[block], dtype=torch.long, device=self._device)
            self._committed = None

        def _next_block(self, sample, mask_token_id) -> None:
            block = self.schedopt_block + 1
            rows = len(self.schedopt_rows)
            size = self.schedopt_schedule.block_size
            if block >= rows:
                raise ValueError(
                    f"the pipeline started block {block + 1} but the schedule has {rows}; "
                    f"call it with gen_length={self.schedopt_schedule.n} and a prompt whose "
                    f"length is a multiple of {size} (pad it on the left)"
                )
            if sample.shape[-1] != size:
                raise ValueError(
                    f"the pipeline runs blocks of {sample.shape[-1]} tokens but the schedule's "
                    f"blocks have {size}; call it with block_length={size}"
                )
            masked = (sample == mask_token_id).sum(dim=-1)
            if bool((masked != size).any()):
                raise ValueError(
                    f"block {block + 1} starts with {int(masked.min())} masked positions, not "
                    f"the schedule's {size}: the prompt length must be a multiple of "
                    f"block_length={size} (pad it on the left)"
                )
            self.schedopt_block = block
            self._device = sample.device
            self._start_block(block)

        def step(self, model_output, timestep, sample, *args, mask_token_id=None,
                 threshold=None, **kwargs):
            if mask_token_id is None:
                raise ValueError(
                    "a schedopt schedule counts masked positions, so it needs mask_token_id; "
                    "pass the model's mask token id"
                )
            step_index = int(timestep.item() if isinstance(timestep, torch.Tensor) else timestep)
            if step_index == 0 and bool((sample == mask_token_id).any()):
                self._next_block(sample, mask_token_id)
            if not self.keep_threshold:
                threshold = math.inf  # only the scheduled count is committed
            return super().step(model_output, timestep, sample, *args,
                                mask_token_id=mask_token_id, threshold=threshold, **kwargs)

    return ScheduledBlockRefinementScheduler


def block_refinement_scheduler(schedule: Any, *, block_length: int | None = None,
                               keep_threshold: bool = False, **config: Any):
    """A `BlockRefinementScheduler` for `LLaDA2Pipeline` that commits the schedule's counts.

    Args:
        schedule: a `Schedule`, a `SamplerSchedule` or a path to a schedule or export file
            with fixed counts; its blocks are the pipeline's blocks.
        block_length: split a schedule without blocks into blocks of this many tokens.
        keep_threshold: False (default): step i of block b commits exactly the scheduled
            count, the most confident masked positions, whatever `threshold` the pipeline
            passes. True: the stock rule, where every position above `threshold` is committed
            when at least the scheduled count clear it, so a count is a minimum and a block can
            finish in fewer steps.
        **config: other `BlockRefinementScheduler` arguments (`editing_threshold`, ...).

    Returns:
        The scheduler. Call the pipeline with `**scheduler.call_kwargs` (gen_length = n,
        block_length, num_inference_steps = the longest block's steps, minimal_topk=1) and a
        prompt whose length is a multiple of the block length. A fresh `set_timesteps` (each
        pipeline call) starts again from the first block.
    """
    plan = sampler_schedule(schedule, block_length)
    rows = _block_rows(plan)
    for name in ("block_length", "num_inference_steps"):
        if name in config:
            raise ValueError(f"{name} comes from the schedule; drop it from the arguments")
    cls = _block_refinement_class()
    scheduler = cls(block_length=plan.block_size,
                    num_inference_steps=max(len(r) for r in rows), **config)
    scheduler._attach(plan, keep_threshold)
    return scheduler


# --------------------------------------------------------------------------- aMUSEd
@functools.cache
def _amused_class():
    import torch
    from diffusers import AmusedScheduler
    from diffusers.schedulers.scheduling_amused import AmusedSchedulerOutput, mask_by_random_topk

    class ScheduledAmusedScheduler(AmusedScheduler):
        """`AmusedScheduler` whose masked count after each step follows a schedopt schedule.

        Built by `schedopt.export.amused_scheduler`; see its doc.
        """

        def _attach(self, schedule) -> None:
            self.schedopt_schedule = schedule
            counts = schedule.block_counts(None)
            # still masked after step k: n - N_k
            self.schedopt_masked = schedule.n - np.cumsum(counts)
            self.call_kwargs = {"num_inference_steps": int(counts.size)}

        def set_timesteps(self, num_inference_steps, temperature=(2, 0), device=None):
            want = self.call_kwargs["num_inference_steps"]
            if int(num_inference_steps) != want:
                raise ValueError(
                    f"the pipeline asks for {num_inference_steps} steps but the schedule has "
                    f"{want}; call it with num_inference_steps={want}"
                )
            super().set_timesteps(num_inference_steps, temperature, device)

        def step(self, model_output, timestep, sample, starting_mask_ratio=1.0,
                 generator=None, return_dict=True):
            if starting_mask_ratio != 1.0:
                raise ValueError(
                    "a schedopt schedule unmasks a fully masked image, but this pipeline starts "
                    f"from a mask ratio of {starting_mask_ratio}; use AmusedPipeline"
                )
            grid = sample.ndim == 3 and model_output.ndim == 4
            shape = sample.shape
            if grid:
                batch, codebook = model_output.shape[:2]
                sample = sample.reshape(batch, -1)
                model_output = model_output.reshape(batch, codebook, -1).transpose(1, 2)
            n = self.schedopt_schedule.n
            if sample.shape[1] != n:
                raise ValueError(
                    f"the image has {sample.shape[1]} latent tokens but the schedule is for "
                    f"n = {n}; choose height and width giving {n} latent tokens, or a schedule "
                    f"for n = {sample.shape[1]}"
                )
            unknown = sample == self.config.mask_token_id
            probs = model_output.softmax(dim=-1)
            # one draw per position, as the stock scheduler (float32 on the generator's device)
            flat = probs.reshape(-1, probs.shape[-1])
            if generator is not None:
                flat = flat.to(generator.device)
            if flat.device.type == "cpu" and flat.dtype != torch.float32:
                flat = flat.float()
            drawn = torch.multinomial(flat, 1, generator=generator).to(probs.device)
            drawn = drawn.view(sample.shape)
            pred = torch.where(unknown, drawn, sample)

            index = int((self.timesteps == timestep).nonzero()[0, 0])
            target = int(self.schedopt_masked[index])
            keep = torch.clamp(unknown.sum(dim=-1, keepdim=True), max=target)
            chosen = torch.gather(probs, -1, pred[:, :, None])[:, :, 0]
            chosen = torch.where(unknown, chosen, torch.finfo(chosen.dtype).max)
            seq_len = sample.shape[1]
            masking = mask_by_random_topk(keep.clamp(max=seq_len - 1), chosen,
                                          self.temperatures[index], generator)
            masking = torch.where(keep >= seq_len, unknown, masking)
            prev = torch.where(masking, self.config.mask_token_id, pred)
            if grid:
                prev, pred = prev.reshape(shape), pred.reshape(shape)
            if not return_dict:
                return prev, pred
            return AmusedSchedulerOutput(prev, pred)

    return ScheduledAmusedScheduler


def amused_scheduler(schedule: Any, mask_token_id: int, **config: Any):
    """An `AmusedScheduler` whose masked count after step k is `n - N_k` of the schedule.

    Args:
        schedule: a `Schedule`, a `SamplerSchedule` or a path to a schedule or export file with
            fixed counts and no blocks (an image is unmasked as a whole); n is the number of
            latent tokens, (height / s) * (width / s) for the VQ model's scale factor s.
        mask_token_id: the transformer's mask token id (as for `AmusedScheduler`).
        **config: other `AmusedScheduler` arguments (`masking_schedule` is stored, unused).

    Returns:
        The scheduler; call `AmusedPipeline` with `**scheduler.call_kwargs`
        (num_inference_steps = T). Which positions are revealed keeps the stock rule
        (confidence of the drawn token plus Gumbel noise at the pipeline's temperature); a step
        of the schedule with 0 tokens reveals none (the stock scheduler always reveals one).
    """
    plan = sampler_schedule(schedule)
    _fixed_counts(plan, "AmusedScheduler")
    if plan.steps_per_block is not None:
        raise ValueError(
            f"this schedule has {plan.num_blocks} blocks, but aMUSEd unmasks the whole image at "
            "once; use a schedule optimized without --block-length"
        )
    scheduler = _amused_class()(mask_token_id=mask_token_id, **config)
    scheduler._attach(plan)
    return scheduler
