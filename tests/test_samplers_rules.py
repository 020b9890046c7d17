"""Exported files run by each sampler's own counting rule, through the snippets of docs/export.md.

Every sampler below is a minimal re-implementation, written here from its source (repository,
commit, file and lines cited on each function), of what decides how many tokens a step
unmasks; the model is replaced by random confidences. The snippets of docs/export.md run as
written (only the file name changes with the format and container) and the objects they make
are indexed exactly as the sampler's loop indexes its own. Fixed-count samplers must realise
the schedule's counts exactly; random-count samplers must reveal them in expectation: within
1e-3 tokens when their rule is evaluated in float64 on the file's times, and within float32
rounding (FLOAT32_TOKENS) when it runs in float32 on the snippet's table as the sampler does.
"""

from __future__ import annotations

import functools
import math
import re
import sys
import types
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import schedopt
from schedopt import export
from schedopt.export import _integrations as integrations
from schedopt.schedule import TimeGrid

torch = pytest.importorskip("torch", reason="the samplers are re-implemented in torch")

DOC = Path(__file__).resolve().parents[1] / "docs" / "export.md"
FORMATS = ("counts", "maskgit", "alpha", "timesteps")
CONTAINERS = (".json", ".csv", ".npz")


def float32_tokens(n: int) -> float:
    """Tolerance for expected tokens per step computed in float32: each step's probability
    carries a few float32 roundings (2^-24 relative) of quantities of size 1, on at most n
    tokens; 16 roundings is a generous count of the operations in any of these rules."""
    return 16 * n * 2.0**-24


# --------------------------------------------------------------------------- schedules
def composition(seed: int, n: int, steps: int) -> list[int]:
    """Random positive counts summing to n (a generic schedule, not a smooth one)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, n), size=steps - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [n]])).astype(int).tolist()


SMALL = composition(0, 256, 16)
MEDIUM = composition(1, 1000, 37)
LARGE = composition(2, 32768, 512)
# MD4 leaves a fraction eps / (1 - eps) masked at t = 0: the last step must be larger.
LARGE[-1] += 8
LARGE[0] -= 8
# Blocks of 16 tokens with different numbers of steps (LLaDA's own rule needs an equal split).
BLOCKS = composition(3, 16, 3) + composition(4, 16, 1) + composition(5, 16, 5) + [8, 8]


def write(tmp_path: Path, schedule, fmt: str, suffix: str, **kwargs) -> str:
    """Export `schedule` as `fmt` into a file of this container; returns its name."""
    kwargs.setdefault("eps", 1e-6 if fmt == "timesteps" else 1e-4)
    name = f"{fmt}{suffix}"
    export.write_export(tmp_path / name, export.export_schedule(schedule, fmt, **kwargs))
    return name


# --------------------------------------------------------------------------- doc snippets
def snippet(sampler: str) -> str:
    """The ```python block of docs/export.md whose first line is `# sampler: <sampler>`."""
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    found = [b for b in blocks if b.startswith(f"# sampler: {sampler}\n")]
    assert len(found) == 1, f"docs/export.md needs one snippet for {sampler}"
    return found[0]


def run_snippet(sampler: str, tmp_path: Path, monkeypatch, filename: str, **namespace) -> dict:
    """Execute a doc snippet in tmp_path with its file name replaced by `filename`."""
    code = snippet(sampler)
    code, replaced = re.subn(r'read_schedule_file\("[^"]+"\)', f'read_schedule_file("{filename}")',
                             code)
    assert replaced == 1
    monkeypatch.chdir(tmp_path)
    ns = dict(namespace)
    exec(compile(code, f"docs/export.md[{sampler}]", "exec"), ns)  # noqa: S102
    return ns


def fake_module(monkeypatch, name: str, **attrs) -> None:
    """Install a stand-in module (and its parents) so a snippet's import finds our re-
    implementation instead of the real package."""
    parts = name.split(".")
    for k in range(1, len(parts) + 1):
        module = types.ModuleType(".".join(parts[:k]))
        monkeypatch.setitem(sys.modules, module.__name__, module)
        if k > 1:
            setattr(sys.modules[".".join(parts[: k - 1])], parts[k - 1], module)
    for key, value in attrs.items():
        setattr(sys.modules[name], key, value)


# --------------------------------------------------------------------------- LLaDA, Fast-dLLM
def llada_generate(num_transfer, block_length, gen_length, prompt_length, batch, seed=0):
    """ML-GSAI/LLaDA@b7e6c35 generate.py, `generate` lines 60-118 with remasking='random'
    (line 105) and, as docs/export.md says, lines 71-72 dropped, line 76 reading
    `num_transfer[num_block]` and line 77 looping over its steps. Returns the tokens revealed
    per step, int64[batch, total steps]."""
    gen = torch.Generator().manual_seed(seed)
    width = prompt_length + gen_length
    masked = torch.zeros(batch, width, dtype=torch.bool)
    masked[:, prompt_length:] = True  # lines 60-61
    assert gen_length % block_length == 0  # line 68
    num_blocks = gen_length // block_length  # line 69
    revealed = []
    for num_block in range(num_blocks):  # line 74
        num_transfer_tokens = num_transfer[num_block]  # line 76 as replaced
        for i in range(num_transfer_tokens.shape[1]):  # line 77 as replaced
            mask_index = masked.clone()  # line 78
            x0_p = torch.rand(batch, width, generator=gen)  # line 105
            x0_p[:, prompt_length + (num_block + 1) * block_length :] = -np.inf  # line 109
            confidence = torch.where(mask_index, x0_p, -np.inf)  # line 112
            transfer_index = torch.zeros_like(mask_index)  # line 114
            for j in range(confidence.shape[0]):  # lines 115-117
                _, select_index = torch.topk(confidence[j], k=num_transfer_tokens[j, i])
                transfer_index[j, select_index] = True
            # A count larger than the block's masked tokens would pick -inf positions.
            assert torch.all(torch.isfinite(confidence[transfer_index]))
            masked &= ~transfer_index  # line 118
            revealed.append(transfer_index.sum(dim=1))
    assert not masked.any()
    return torch.stack(revealed, dim=1)


def fast_dllm_generate(num_transfer, block_length, gen_length, prompt_length, cached, seed=0):
    """NVlabs/Fast-dLLM@24cc59e llada/generate.py, `generate` lines 75-98 (batch 1, line 75)
    with `get_transfer_index` lines 235-261 (remasking='random', threshold=None), line 87
    replaced by `num_transfer[num_block]` and lines 81-82 dropped, as docs/export.md says.
    `cached`: `generate_with_prefix_cache` (lines 118-172): its first step outside the loop
    (lines 139-142, index 0), then i = 1, 2, ... until the block is unmasked (lines 153-169)."""
    gen = torch.Generator().manual_seed(seed)
    width = prompt_length + gen_length
    masked = torch.zeros(1, width, dtype=torch.bool)
    masked[:, prompt_length:] = True
    revealed = []

    def transfer(num_block, k_step):  # one step: lines 91-95 / 156-166
        mask_index = masked.clone()
        mask_index[:, prompt_length + (num_block + 1) * block_length :] = False  # line 93
        x0_p = torch.rand(1, width, generator=gen)  # line 244
        confidence = torch.where(mask_index, x0_p, -np.inf)  # line 249
        transfer_index = torch.zeros_like(mask_index)
        for j in range(confidence.shape[0]):  # lines 254-256
            _, select_index = torch.topk(confidence[j], k=k_step[j])
            transfer_index[j, select_index] = True
        assert torch.all(torch.isfinite(confidence[transfer_index]))
        masked[transfer_index] = False  # line 95
        revealed.append(int(transfer_index.sum()))

    for num_block in range(gen_length // block_length):  # lines 79, 85
        num_transfer_tokens = num_transfer[num_block]  # line 87 (134) as replaced
        start = prompt_length + num_block * block_length
        i = 0
        if cached:
            transfer(num_block, num_transfer_tokens[:, 0])  # line 141
            i = 1  # line 153
        while True:  # lines 89-98 / 154-169
            transfer(num_block, num_transfer_tokens[:, i])  # line 94 / 165
            if not masked[:, start : start + block_length].any():  # line 97 / 167
                break
            i += 1  # line 96 / 169
    return revealed


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("batch", [1, 8])
def test_llada_without_blocks_runs_the_counts(tmp_path, monkeypatch, fmt, suffix, batch):
    name = write(tmp_path, MEDIUM, fmt, suffix)
    prompt = torch.zeros(batch, 5, dtype=torch.long)
    ns = run_snippet("llada", tmp_path, monkeypatch, name, prompt=prompt)
    assert ns["num_transfer"][0].dtype == torch.int64
    revealed = llada_generate(ns["num_transfer"], ns["block_length"], 1000, 5, batch)
    assert revealed.tolist() == [MEDIUM] * batch


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("batch", [1, 8])
def test_llada_with_uneven_blocks_runs_the_counts(tmp_path, monkeypatch, suffix, batch):
    name = write(tmp_path, BLOCKS, "counts", suffix, block_length=16)
    prompt = torch.zeros(batch, 7, dtype=torch.long)
    ns = run_snippet("llada", tmp_path, monkeypatch, name, prompt=prompt)
    assert ns["block_length"] == 16 and len(ns["num_transfer"]) == 4
    revealed = llada_generate(ns["num_transfer"], ns["block_length"], 64, 7, batch)
    assert revealed.tolist() == [BLOCKS] * batch


def test_lladas_own_rule_refuses_an_uneven_split():
    """Why the snippet drops LLaDA's assert: 15 steps over 4 blocks fail `steps % num_blocks`
    (generate.py line 71), while the exported block matrix runs them."""
    assert 15 % 4 != 0
    data = export.export_schedule(
        [4, 4, 4, 4, 8, 8, 16, 2, 2, 2, 2, 2, 2, 2, 2], "counts", block_length=16
    )
    assert data["steps_per_block"] == [4, 2, 1, 8]


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("cached", [False, True], ids=["generate", "prefix_cache"])
def test_fast_dllm_runs_the_counts(tmp_path, monkeypatch, fmt, suffix, cached):
    # The cached variants always run a step after their first one: two steps per block at least.
    blocks = [2, 14, 9, 7, 1, 8, 3, 4, 5, 11]
    schedule, block_length = (MEDIUM, None) if fmt != "counts" else (blocks, 16)
    name = write(tmp_path, schedule, fmt, suffix, block_length=block_length)
    prompt = torch.zeros(1, 3, dtype=torch.long)
    ns = run_snippet("llada", tmp_path, monkeypatch, name, prompt=prompt)
    n = sum(schedule)
    assert fast_dllm_generate(ns["num_transfer"], ns["block_length"], n, 3, cached) == schedule


def test_fast_dllm_prefix_cache_needs_two_steps_per_block(tmp_path, monkeypatch):
    """Fast-dLLM's cached loop indexes step 1 even when step 0 unmasked the block (its own
    uniform counts fail the same way with one step per block)."""
    name = write(tmp_path, BLOCKS, "counts", ".json", block_length=16)
    ns = run_snippet("llada", tmp_path, monkeypatch, name, prompt=torch.zeros(1, 3))
    assert fast_dllm_generate(ns["num_transfer"], 16, 64, 3, cached=False) == BLOCKS
    with pytest.raises(IndexError):
        fast_dllm_generate(ns["num_transfer"], 16, 64, 3, cached=True)


# --------------------------------------------------------------------------- diffusers
class BlockRefinementScheduler:
    """huggingface/diffusers@58eb52c src/diffusers/schedulers/scheduling_block_refinement.py:
    `__init__` (lines 68-81), `set_timesteps` (83-100), `get_num_transfer_tokens` (102-110),
    the mask-filling part of `step` (304-327, 345-349; editing off) and
    `check_block_should_continue` (412-454)."""

    def __init__(
        self,
        block_length=32,
        num_inference_steps=32,
        threshold=0.95,
        editing_threshold=None,
        minimal_topk=1,
    ):
        self.config = types.SimpleNamespace(
            block_length=block_length,
            threshold=threshold,
            editing_threshold=editing_threshold,
            minimal_topk=minimal_topk,
        )
        self.num_inference_steps = num_inference_steps
        self._transfer_schedule = None

    def set_timesteps(self, num_inference_steps, device=None, block_length=None):
        if block_length is None:
            block_length = self.config.block_length
        self.num_inference_steps = num_inference_steps
        self.timesteps = torch.arange(num_inference_steps - 1, -1, -1, dtype=torch.long)
        self._transfer_schedule = self.get_num_transfer_tokens(block_length, num_inference_steps)

    def get_num_transfer_tokens(self, block_length, num_inference_steps):
        base, remainder = divmod(block_length, num_inference_steps)
        out = torch.full((num_inference_steps,), base, dtype=torch.long)
        out[:remainder] += 1
        return out

    def step(self, model_output, timestep, sample, *, mask_token_id=None, threshold=None, **kwargs):
        threshold = float(self.config.threshold) if threshold is None else threshold
        sampled_probs = model_output  # stands for the sampled tokens' probabilities
        step_index = int(timestep)
        active_block = sample == mask_token_id
        transfer_index = torch.zeros_like(sample, dtype=torch.bool)
        if active_block.any() and self._transfer_schedule is not None:
            clamped_step = min(step_index, len(self._transfer_schedule) - 1)
            num_to_transfer = int(self._transfer_schedule[clamped_step].item())
            confidence = torch.where(
                active_block, sampled_probs.float(), torch.full_like(sampled_probs, -torch.inf)
            )
            for b in range(sample.shape[0]):
                high_conf = confidence[b] > threshold
                if high_conf.sum().item() >= num_to_transfer:
                    transfer_index[b] = high_conf
                else:
                    k = min(num_to_transfer, int(active_block[b].sum().item()))
                    if k > 0:
                        _, idx = torch.topk(confidence[b], k=k)
                        transfer_index[b, idx] = True
        prev_sample = sample.clone()
        prev_sample[transfer_index] = 0  # the committed token ids (any non-mask id)
        return types.SimpleNamespace(
            prev_sample=prev_sample,
            transfer_index=transfer_index,
            editing_transfer_index=torch.zeros_like(transfer_index),
        )

    def check_block_should_continue(
        self,
        step_idx,
        masks_remaining,
        editing_enabled,
        editing_transfer_index,
        post_steps,
        max_post_steps,
        finished,
    ):
        if finished.all():
            return False
        if not masks_remaining and not editing_enabled:
            return False
        if not masks_remaining and not editing_transfer_index.any():
            return False
        if masks_remaining and step_idx >= self.num_inference_steps:
            return False
        return not (not masks_remaining and post_steps > max_post_steps)


def llada2_pipeline(
    scheduler,
    gen_length,
    block_length,
    prompt_length,
    batch,
    num_inference_steps=8,
    threshold=1.0,
    seed=0,
):
    """huggingface/diffusers@58eb52c src/diffusers/pipelines/llada2/pipeline_llada2.py
    `__call__` lines 402-404, 407, 420-425 and the block loop 434-535 (editing off, no EOS
    stop). Returns the tokens committed at each step of each block (rows of the batch agree)."""
    gen = torch.Generator().manual_seed(seed)
    mask = -1
    num_inference_steps = min(num_inference_steps, gen_length // 1)  # line 402, minimal_topk 1
    scheduler.set_timesteps(num_inference_steps, block_length=block_length)  # line 404
    num_blocks = (prompt_length + gen_length + block_length - 1) // block_length  # line 407
    x = torch.full((batch, num_blocks * block_length), mask, dtype=torch.long)  # line 420
    x[:, :prompt_length] = 1
    prefill_blocks = prompt_length // block_length  # line 424
    finished = torch.zeros(batch, dtype=torch.bool)
    per_block = []
    for num_block in range(prefill_blocks, num_blocks):  # line 434
        block_x = x[:, : (num_block + 1) * block_length]  # a view, as in line 436
        post_steps, step_idx, should_continue, committed = 0, 0, True, []
        while should_continue:  # line 458
            block_tokens = block_x[:, -block_length:]
            masks_remaining = bool((block_tokens == mask).any())
            if not masks_remaining:
                post_steps += 1
            probs = torch.rand(batch, block_length, generator=gen)
            out = scheduler.step(
                model_output=probs,
                timestep=step_idx,
                sample=block_tokens,
                mask_token_id=mask,
                threshold=threshold,
                editing_threshold=None,
            )  # lines 468-483
            final_transfer = out.transfer_index | out.editing_transfer_index  # line 490
            if final_transfer.any():  # lines 496-499
                block_x[:, -block_length:] = torch.where(
                    final_transfer, out.prev_sample, block_tokens
                )
            if masks_remaining:  # lines 520-522
                step_idx += 1
                committed.append(final_transfer.sum(dim=1).tolist())
            should_continue = scheduler.check_block_should_continue(  # lines 524-532
                step_idx=step_idx,
                masks_remaining=masks_remaining,
                editing_enabled=False,
                editing_transfer_index=out.editing_transfer_index,
                post_steps=post_steps,
                max_post_steps=16,
                finished=finished,
            )
        per_block.append(committed)
    assert not (x[:, prompt_length : prompt_length + gen_length] == mask).any()
    return per_block


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_block_refinement_pipeline_runs_the_counts(tmp_path, monkeypatch, fmt, suffix):
    schedule, block_length = (SMALL, None) if fmt != "counts" else (BLOCKS, 16)
    name = write(tmp_path, schedule, fmt, suffix, block_length=block_length)
    fake_module(monkeypatch, "diffusers", BlockRefinementScheduler=BlockRefinementScheduler)
    ns = run_snippet("block-refinement", tmp_path, monkeypatch, name)
    length = block_length or sum(schedule)
    per_block = llada2_pipeline(ns["scheduler"], sum(schedule), length, 2 * length, batch=2)
    flat = [c for block in per_block for c in block]
    assert flat == [[s, s] for s in schedule]


# --------------------------------------------------------------------------- MaskGIT, aMUSEd
@functools.partial(jax.jit, static_argnums=1)
def maskgit_masked_after(mask_ratio_table, n: int, seed: int = 0):
    """google-research/maskgit@1db2359 maskgit/libml/parallel_decode.py: `decode` lines
    106-169 and `mask_by_random_topk` lines 49-56, with lines 135-136 replaced by
    `mask_ratio = mask_ratio_table[step]` as docs/export.md says; random confidences stand for
    the model's. Runs in `lax.while_loop` (the step is traced) with JAX's float32 default.
    Returns the tokens still masked after each step."""
    num_iter = mask_ratio_table.shape[0]

    def body(state):
        step, unknown_map, rng, masked_after = state
        ratio = 1.0 * (step + 1) / num_iter  # line 134 (kept: it sets the temperature)
        mask_ratio = mask_ratio_table[step]  # lines 135-136 as replaced
        rng, sample_rng, choice_rng = jax.random.split(rng, 3)
        probs = jax.random.uniform(sample_rng, (1, n))
        selected_probs = jnp.where(unknown_map, probs, jnp.inf)  # line 145
        unknown_number_in_the_beginning = jnp.array([n], dtype=jnp.int32)  # line 107
        mask_len = jnp.expand_dims(jnp.floor(unknown_number_in_the_beginning * mask_ratio), 1)
        mask_len = jnp.maximum(
            1, jnp.minimum(jnp.sum(unknown_map, -1, keepdims=True) - 1, mask_len)
        )  # lines 152-154
        confidence = jnp.log(selected_probs) + (1.0 - ratio) * jax.random.gumbel(
            choice_rng, selected_probs.shape
        )  # line 49
        cut_off = jnp.take_along_axis(jnp.sort(confidence, -1), mask_len.astype(jnp.int32), -1)
        masking = confidence < cut_off  # lines 51-55
        # The last iteration's final_seqs hold every sampled token (lines 138-139, 170).
        left = jnp.where(step == num_iter - 1, 0, jnp.sum(masking))
        return step + 1, masking, rng, masked_after.at[step].set(left)

    state = (
        jnp.array(0),
        jnp.ones((1, n), bool),
        jax.random.key(seed),
        jnp.zeros(num_iter, jnp.int32),
    )
    return jax.lax.while_loop(lambda s: s[0] < num_iter, body, state)[3]  # line 169


def maskgit_decode(mask_ratio_table, n: int) -> list[int]:
    """Tokens MaskGIT reveals per step, run in JAX's defaults: float32 and standard promotion
    (MaskGIT multiplies an int32 count by a float ratio)."""
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):
        masked = np.concatenate([[n], np.asarray(maskgit_masked_after(mask_ratio_table, n))])
    return (-np.diff(masked)).tolist()


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_maskgit_in_a_lax_loop_runs_the_counts(tmp_path, monkeypatch, fmt, suffix):
    name = write(tmp_path, SMALL, fmt, suffix)
    ns = run_snippet("maskgit", tmp_path, monkeypatch, name)
    table = ns["mask_ratio_table"]
    assert isinstance(table, jax.Array) and table.dtype == jnp.float32
    assert maskgit_decode(table, 256) == SMALL


@functools.partial(jax.jit, static_argnums=1)
def maskgit_mask_lengths(mask_ratio_table, n: int):
    """The counting lines of MaskGIT's `decode` alone (parallel_decode.py lines 107, 135-136
    as replaced, 148-154), in a `lax.fori_loop`: the masked count after each step, since
    `mask_by_random_topk` masks exactly mask_len tokens (the runs above check it)."""

    def body(step, state):
        unknown, out = state
        mask_ratio = mask_ratio_table[step]
        mask_len = jnp.floor(jnp.array([n], dtype=jnp.int32) * mask_ratio)
        mask_len = jnp.maximum(1, jnp.minimum(unknown - 1, mask_len))
        left = jnp.where(step == mask_ratio_table.shape[0] - 1, 0, mask_len[0])
        return mask_len.astype(jnp.int32), out.at[step].set(left.astype(jnp.int32))

    init = (jnp.array([n], dtype=jnp.int32), jnp.zeros(mask_ratio_table.shape[0], jnp.int32))
    return jax.lax.fori_loop(0, mask_ratio_table.shape[0], body, init)[1]


def test_maskgit_counting_rule_on_a_long_schedule(tmp_path, monkeypatch):
    name = write(tmp_path, LARGE, "maskgit", ".npz")
    ns = run_snippet("maskgit", tmp_path, monkeypatch, name)
    with jax.enable_x64(False), jax.numpy_dtype_promotion("standard"):  # MaskGIT's own
        masked = np.asarray(maskgit_mask_lengths(ns["mask_ratio_table"], 32768))
    assert (-np.diff(np.concatenate([[32768], masked]))).tolist() == LARGE


def amused_run(mask_ratio_table, n: int, steps: int, batch: int = 2, seed: int = 0):
    """huggingface/diffusers@58eb52c src/diffusers/schedulers/scheduling_amused.py:
    `set_timesteps` line 117 and `step` lines 140, 153-182 with lines 158-165 replaced by
    `mask_ratio = mask_ratio_table[step_idx]` as docs/export.md says; `mask_by_random_topk`
    lines 54-58. Returns the tokens revealed per step (rows of the batch agree)."""
    gen = torch.Generator().manual_seed(seed)
    timesteps = torch.arange(steps).flip(0)  # line 117
    masked = torch.ones(batch, n, dtype=torch.bool)
    revealed = []
    for timestep in timesteps:
        unknown_map = masked  # line 140
        if timestep == 0:  # lines 153-154
            new_masked = torch.zeros_like(masked)
        else:
            seq_len = n
            step_idx = (timesteps == timestep).nonzero()  # line 157
            mask_ratio = mask_ratio_table[step_idx]  # lines 158-165 as replaced
            mask_ratio = 1.0 * mask_ratio  # line 167, starting_mask_ratio = 1
            mask_len = (seq_len * mask_ratio).floor()  # line 169
            mask_len = torch.min(unknown_map.sum(dim=-1, keepdim=True) - 1, mask_len)  # 171
            mask_len = torch.max(torch.tensor([1]), mask_len)  # line 173
            probs = torch.rand(batch, n, generator=gen)
            selected_probs = torch.where(unknown_map, probs, torch.finfo(probs.dtype).max)
            gumbel = -torch.log(-torch.log(torch.rand(batch, n, generator=gen).clamp(1e-20)))
            confidence = torch.log(selected_probs.clamp(1e-20)) + 1.0 * gumbel  # line 54
            cut_off = torch.gather(torch.sort(confidence, dim=-1).values, 1, mask_len.long())
            new_masked = confidence < cut_off  # lines 55-57, 182
        revealed.append((masked.sum(1) - new_masked.sum(1)).tolist())
        masked = new_masked
    return revealed


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_amused_runs_the_counts(tmp_path, monkeypatch, fmt, suffix):
    name = write(tmp_path, SMALL, fmt, suffix)
    ns = run_snippet("amused", tmp_path, monkeypatch, name)
    table = ns["mask_ratio_table"]
    assert table.dtype == torch.float32
    assert amused_run(table, 256, len(SMALL)) == [[s, s] for s in SMALL]


# --------------------------------------------------------------------------- MD4
class MD4:
    """google-deepmind/md4@b9fbf29 md4/models/diffusion/md4.py: `MaskingSchedule._alpha` and
    `alpha` (lines 59-71), `get_sampling_grid` (275-281, the default linear grid), the unmask
    probability of `ancestral_sample_step` (283-303) and `decode` (173-187), looped as
    md4/sampling.py lines 48-61 (`jax.lax.fori_loop`, i traced)."""

    def __init__(self, schedule_fn_type: str, eps: float, timesteps: int):
        self.schedule_fn_type, self.eps, self.timesteps = schedule_fn_type, eps, timesteps

    def _alpha(self, t):
        if self.schedule_fn_type == "linear":
            return 1.0 - t
        if self.schedule_fn_type.startswith("poly"):
            return 1.0 - t ** float(self.schedule_fn_type[4:])
        return 1.0 - jax.lax.cos(math.pi / 2.0 * (1.0 - t))

    def alpha(self, t):
        return (1.0 - 2 * self.eps) * self._alpha(t) + self.eps

    def get_sampling_grid(self, i, timesteps):
        t = (timesteps - i) / timesteps
        return t - 1 / timesteps, t

    def unmask_probabilities(self) -> np.ndarray:
        """float32[T]: the probability step i unmasks each masked token (line 294)."""

        def body(i, probs):
            s, t = self.get_sampling_grid(i, self.timesteps)
            alpha_t, alpha_s = self.alpha(t), self.alpha(s)
            return probs.at[i].set((alpha_s - alpha_t) / (1 - alpha_t))

        with jax.enable_x64(False):
            probs = jax.lax.fori_loop(0, self.timesteps, body, jnp.zeros(self.timesteps))
            assert probs.dtype == jnp.float32
        return np.asarray(probs, dtype=np.float64)


def expected_tokens(n: int, unmask: np.ndarray, fill_rest: bool) -> np.ndarray:
    """Expected tokens revealed per step, float64, when each masked token is unmasked at step
    k with probability unmask[k]; `fill_rest` adds what is still masked after the last step to
    it (MD4's decode, MDLM's noise removal)."""
    masked, out = float(n), []
    for p in unmask:
        out.append(masked * p)
        masked *= 1.0 - p
    out = np.asarray(out)
    if fill_rest:
        out[-1] += masked
    return out


def md4_float64_tokens(t, family: str, eps: float, n: int) -> np.ndarray:
    """The same rule (md4.py lines 70-71, 294) in float64 on the file's own times."""
    t = np.asarray(t, dtype=np.float64)
    if family == "linear":
        a = 1.0 - t
    elif family.startswith("poly"):
        a = 1.0 - t ** float(family[4:])
    else:
        a = 1.0 - np.cos(np.pi / 2 * (1.0 - t))
    alpha = (1 - 2 * eps) * a + eps
    unmask = (alpha[1:] - alpha[:-1]) / (1 - alpha[:-1])
    return expected_tokens(n, unmask, fill_rest=True)


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_md4_reveals_the_counts_in_expectation(tmp_path, monkeypatch, fmt, suffix):
    name = write(tmp_path, MEDIUM, fmt, suffix, alpha_schedule="cosine", eps=1e-4)
    fake_module(monkeypatch, "md4.models.diffusion.md4", MD4=MD4)
    monkeypatch.setattr(MD4, "get_sampling_grid", MD4.get_sampling_grid)  # restored after
    ns = run_snippet("md4", tmp_path, monkeypatch, name)
    table = ns["t_table"]
    assert isinstance(table, jax.Array) and table.dtype == jnp.float32
    model = MD4("cosine", 1e-4, timesteps=len(MEDIUM))
    got = expected_tokens(1000, model.unmask_probabilities(), fill_rest=True)
    np.testing.assert_allclose(got, MEDIUM, rtol=0, atol=float32_tokens(1000))
    exact = md4_float64_tokens(np.asarray(table, np.float64), "cosine", 1e-4, 1000)
    np.testing.assert_allclose(exact, MEDIUM, rtol=0, atol=float32_tokens(1000))


@pytest.mark.parametrize("family", ["linear", "cosine", "poly2", "poly0.5"])
@pytest.mark.parametrize("schedule, n", [(LARGE, 32768), (MEDIUM, 1000)], ids=["n32768", "n1000"])
def test_md4_file_times_are_exact_in_float64(tmp_path, family, schedule, n):
    """The exported times themselves, through MD4's rule in float64: within 1e-3 tokens."""
    for suffix in CONTAINERS:
        name = write(tmp_path, schedule, "timesteps", suffix, alpha_schedule=family, eps=1e-4)
        t = integrations.read_export_file(tmp_path / name)["t"]
        np.testing.assert_allclose(
            md4_float64_tokens(t, family, 1e-4, n), schedule, rtol=0, atol=1e-3
        )


def test_md4_long_schedule_in_float32(tmp_path, monkeypatch):
    name = write(tmp_path, LARGE, "alpha", ".json")
    fake_module(monkeypatch, "md4.models.diffusion.md4", MD4=MD4)
    monkeypatch.setattr(MD4, "get_sampling_grid", MD4.get_sampling_grid)
    run_snippet("md4", tmp_path, monkeypatch, name)
    got = expected_tokens(32768, MD4("cosine", 1e-4, 512).unmask_probabilities(), True)
    np.testing.assert_allclose(got, LARGE, rtol=0, atol=float32_tokens(32768))


def test_md4_refuses_a_last_step_below_its_leftover():
    """MD4 leaves n eps / (1 - eps) tokens masked at t = 0; a smaller last step is refused."""
    with pytest.raises(ValueError, match="pass a smaller eps"):
        export.export_schedule([32767, 1], "timesteps", eps=1e-4)
    data = export.export_schedule([32767, 1], "timesteps", eps=1e-6)
    np.testing.assert_allclose(
        md4_float64_tokens(data["t"], "linear", 1e-6, 32768), [32767, 1], rtol=0, atol=1e-3
    )


# --------------------------------------------------------------------------- MDLM
def mdlm_unmask(timesteps, dt_table, sampler: str, eps: float) -> np.ndarray:
    """kuleshov-group/mdlm@c112c52 diffusion.py `_sample` lines 669-686 with lines 669-671
    replaced as docs/export.md says (`dt = dt_table[i]`), and the unmask probability of
    `_ddpm_update` (lines 613-633: move chance 1 - exp(-sigma), sigma = -log1p(-(1 - eps) t),
    noise_schedule.py lines 143-144; a masked token stays masked with weight mc_s out of mc_t)
    or `_ddpm_caching_update` (lines 598-606: move chance t). float32 torch, as MDLM runs."""
    probs = []
    for i in range(len(dt_table)):
        t = timesteps[i] * torch.ones(1, 1)  # line 675
        dt = dt_table[i]
        if sampler == "ddpm":
            sigma_t = -torch.log1p(-(1 - eps) * t)
            sigma_s = -torch.log1p(-(1 - eps) * (t - dt))
            move_t, move_s = 1 - torch.exp(-sigma_t), 1 - torch.exp(-sigma_s)
        else:
            move_t, move_s = t, t - dt
        assert move_t.dtype == torch.float32
        probs.append(float((move_t - move_s) / move_t))  # q_xs mass off the mask token
    return np.asarray(probs)


@pytest.mark.parametrize("sampler", ["ddpm", "ddpm_cache"])
@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_mdlm_reveals_the_counts_in_expectation(tmp_path, monkeypatch, fmt, suffix, sampler):
    name = write(tmp_path, MEDIUM, fmt, suffix, convention="loglinear", eps=1e-3)
    ns = run_snippet("mdlm", tmp_path, monkeypatch, name)
    for eps in (1e-3, 1e-5):  # the model's eps does not matter
        unmask = mdlm_unmask(ns["timesteps"], ns["dt_table"], sampler, eps)
        assert unmask[-1] == 1.0  # the last step ends at t = 0: nothing left to noise removal
        got = expected_tokens(1000, unmask, fill_rest=False)
        np.testing.assert_allclose(got, MEDIUM, rtol=0, atol=float32_tokens(1000))


def test_mdlm_long_schedule_and_a_random_count_grid(tmp_path, monkeypatch):
    name = write(tmp_path, LARGE, "timesteps", ".npz", convention="loglinear", eps=1e-3)
    ns = run_snippet("mdlm", tmp_path, monkeypatch, name)
    got = expected_tokens(32768, mdlm_unmask(ns["timesteps"], ns["dt_table"], "ddpm", 1e-3), False)
    np.testing.assert_allclose(got, LARGE, rtol=0, atol=float32_tokens(32768))
    # A random-count grid (n alpha_k not whole): expected tokens n (alpha_k - alpha_{k-1}).
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(777)))
    alpha = np.array([0.0, 0.013, 0.2, 0.5501, 0.9, 0.9993, 1.0])
    grid = TimeGrid.from_alpha(profile, alpha)
    name = write(tmp_path, grid, "timesteps", ".csv", convention="loglinear", eps=1e-3)
    ns = run_snippet("mdlm", tmp_path, monkeypatch, name)
    got = expected_tokens(777, mdlm_unmask(ns["timesteps"], ns["dt_table"], "ddpm_cache", 0), False)
    np.testing.assert_allclose(got, 777 * np.diff(alpha), rtol=0, atol=1e-3)


# --------------------------------------------------------------------------- Dream
def dream_sample(timesteps, n: int, alg: str, steps: int):
    """ZHZisZZ/dllm@ca17675 dllm/pipelines/dream/models/generation_utils.py (Dream's
    `DreamGenerationMixin._sample`), lines 410-451 with line 406 replaced by the snippet's
    table: "origin" unmasks each masked token with p_transfer = 1 - s / t (line 423, 1 at the
    last step); the confidence algorithms unmask int(num_mask_token * (1 - s / t)) tokens
    (lines 437-438, all at the last step). Returns expected tokens per step for origin and the
    realised counts otherwise."""
    masked, out = float(n), []
    for i in range(steps):
        t, s = timesteps[i], timesteps[i + 1]  # lines 419-420, float32 tensors
        if alg == "origin":
            p_transfer = float(1 - s / t) if i < steps - 1 else 1.0
            out.append(masked * p_transfer)
            masked *= 1 - p_transfer
        else:
            mask_index = torch.zeros(1, n, dtype=torch.bool)
            mask_index[0, : int(masked)] = True
            num_mask_token = mask_index.sum() / mask_index.shape[0]  # line 437
            number = int(num_mask_token * (1 - s / t)) if i < steps - 1 else int(num_mask_token)
            out.append(number)
            masked -= number
    return out


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("alg", ["origin", "maskgit_plus", "entropy"])
def test_dream_runs_the_schedule(tmp_path, monkeypatch, fmt, suffix, alg):
    name = write(tmp_path, MEDIUM, fmt, suffix)
    ns = run_snippet("dream", tmp_path, monkeypatch, name, alg=alg)
    table = ns["dream_timesteps"]
    assert table.dtype == torch.float32
    got = dream_sample(table, 1000, alg, len(MEDIUM))
    if alg == "origin":
        np.testing.assert_allclose(got, MEDIUM, rtol=0, atol=float32_tokens(1000))
    else:
        assert got == MEDIUM


@pytest.mark.parametrize("alg", ["origin", "topk_margin"])
def test_dream_long_schedule(tmp_path, monkeypatch, alg):
    name = write(tmp_path, LARGE, "counts", ".json")
    ns = run_snippet("dream", tmp_path, monkeypatch, name, alg=alg)
    got = dream_sample(ns["dream_timesteps"], 32768, alg, len(LARGE))
    if alg == "origin":
        np.testing.assert_allclose(got, LARGE, rtol=0, atol=float32_tokens(32768))
    else:
        assert got == LARGE


def test_dream_origin_times_are_exact_in_float64(tmp_path):
    """t_k = 1 - alpha_k: Dream's p_transfer = 1 - s / t telescopes to the schedule."""
    alpha = export.export_schedule(LARGE, "alpha")["alpha"]
    t = 1.0 - np.asarray(alpha)
    unmask = np.append(1 - t[1:-1] / t[:-2], 1.0)
    np.testing.assert_allclose(expected_tokens(32768, unmask, False), LARGE, rtol=0, atol=1e-3)


# --------------------------------------------------------------------------- dllm
def dllm_sample(scheduler, n: int, steps: int, block_size: int | None = None):
    """ZHZisZZ/dllm@ca17675 dllm/core/samplers/mdlm.py `MDLMSampler.sample` block loop,
    lines 22 (default block_size 128), 130-161, with `get_num_transfer_tokens` from
    dllm/core/samplers/utils.py lines 28-69 (deterministic: round(m (1 - reverse_mask_prob)),
    zero steps dropped). Returns the tokens revealed per step over all blocks."""
    block_size = 128 if block_size is None else block_size  # line 22
    num_blocks = math.ceil(n / block_size)  # line 130
    steps = math.ceil(steps / num_blocks)  # line 131
    revealed = []
    for b in range(num_blocks):
        width = min(block_size, n - b * block_size)
        mask_num = width
        row = []
        for t, s in zip(range(steps, 0, -1), range(steps - 1, -1, -1), strict=True):  # l. 33
            s /= steps
            t /= steps
            reverse_transfer_prob = 1 - scheduler.reverse_mask_prob(s=s, t=t)  # line 36
            x = torch.tensor(mask_num, dtype=torch.float64) * reverse_transfer_prob  # l. 38
            count = min(int(torch.round(x)), mask_num)  # lines 39, 47-49
            row.append(count)
            mask_num -= count
            if mask_num == 0:  # lines 51-52
                break
        revealed += [c for c in row if c > 0]  # lines 56-69: zero steps are skipped
        assert mask_num == 0
    return revealed


@pytest.mark.parametrize("suffix", CONTAINERS)
@pytest.mark.parametrize("fmt", FORMATS)
def test_dllm_with_block_size_set_runs_the_counts(tmp_path, monkeypatch, fmt, suffix):
    name = write(tmp_path, MEDIUM, fmt, suffix)
    ns = run_snippet("dllm", tmp_path, monkeypatch, name)
    kwargs = ns["sample_kwargs"]
    assert kwargs["block_size"] == 1000 and kwargs["max_new_tokens"] == 1000
    assert dllm_sample(ns["scheduler"], 1000, kwargs["steps"], kwargs["block_size"]) == MEDIUM


def test_dllm_long_schedule_and_blocks_sharing_one_row(tmp_path, monkeypatch):
    name = write(tmp_path, LARGE, "alpha", ".npz")
    ns = run_snippet("dllm", tmp_path, monkeypatch, name)
    kwargs = ns["sample_kwargs"]
    assert dllm_sample(ns["scheduler"], 32768, kwargs["steps"], kwargs["block_size"]) == LARGE
    shared = [3, 5, 8] * 4
    name = write(tmp_path, shared, "counts", ".csv", block_length=16)
    ns = run_snippet("dllm", tmp_path, monkeypatch, name)
    kwargs = ns["sample_kwargs"]
    assert kwargs["block_size"] == 16 and kwargs["steps"] == 12
    assert dllm_sample(ns["scheduler"], 64, kwargs["steps"], kwargs["block_size"]) == shared


def test_dllm_with_block_size_unset(tmp_path, monkeypatch):
    """dllm's default block_size (128): a short sequence is one block and runs exactly; a
    longer one would be re-split, which the scheduler refuses instead of running it."""
    short = composition(6, 100, 9)
    name = write(tmp_path, short, "counts", ".json")
    ns = run_snippet("dllm", tmp_path, monkeypatch, name)
    assert dllm_sample(ns["scheduler"], 100, 9) == short
    name = write(tmp_path, SMALL, "counts", ".json")
    ns = run_snippet("dllm", tmp_path, monkeypatch, name)
    with pytest.raises(ValueError, match="dllm runs 8 steps per block but this schedule has 16"):
        dllm_sample(ns["scheduler"], 256, 16)


def test_dllm_refuses_blocks_with_different_rows(tmp_path):
    export.write_export(
        tmp_path / "b.json", export.export_schedule(BLOCKS, "counts", block_length=16)
    )
    with pytest.raises(ValueError, match="use llada_num_transfer_tokens"):
        integrations.read_schedule_file(tmp_path / "b.json").dllm_scheduler()


# --------------------------------------------------------------------------- evaluate
def binomial_kl(entropy: np.ndarray, grid: np.ndarray) -> float:
    """theory §6, first form, in numpy: sum_k E_{t ~ Bin(n, a_{k-1})}[(n - t) p_k g_t] - H_n."""
    from scipy.stats import binom

    n = entropy.size - 1
    g = np.append(np.diff(entropy), 0.0)
    t = np.arange(n + 1)
    total = 0.0
    for a0, a1 in zip(grid[:-1], grid[1:], strict=True):
        p = (a1 - a0) / (1 - a0)
        total += float(np.sum(binom.pmf(t, n, a0) * (n - t) * p * g))
    return total - float(entropy[-1])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"alpha_schedule": "cosine", "eps": 1e-4, "convention": "md4"},
        {"alpha_schedule": "linear", "eps": 1e-3, "convention": "loglinear"},
    ],
    ids=["md4", "mdlm"],
)
def test_evaluate_scores_what_the_sampler_really_reveals(tmp_path, kwargs):
    """`evaluate` on a timesteps file: the expected tokens per step are those of the sampler's
    own rule on the file's times (MD4's decode a step of its own), and the expected KL is
    theory §6 on that grid."""
    n = 1000
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(n)))
    name = write(tmp_path, MEDIUM, "timesteps", ".npz", **kwargs)
    scores = export.score_imported(profile, export.read_schedule_file(tmp_path / name, n))
    t = np.asarray(integrations.read_export_file(tmp_path / name)["t"], dtype=np.float64)
    if kwargs["convention"] == "md4":
        a = 1.0 - np.cos(np.pi / 2 * (1.0 - t))
        alpha = (1 - 2e-4) * a + 1e-4  # md4.py lines 59-71
        unmask = (alpha[1:] - alpha[:-1]) / (1 - alpha[:-1])  # line 294
        steps = expected_tokens(n, unmask, fill_rest=False)
        steps = np.append(steps, n - steps.sum())  # decode (lines 173-187) fills the rest
    else:
        unmask = 1 - t[1:] / t[:-1]  # MDLM ddpm_cache, diffusion.py lines 598-606
        steps = expected_tokens(n, unmask, fill_rest=False)
    np.testing.assert_allclose(scores["expected_tokens_per_step"], steps, rtol=0, atol=1e-9)
    grid = np.concatenate([[0.0], np.cumsum(steps) / n])
    grid[-1] = 1.0
    assert scores["expected_kl"] == pytest.approx(
        binomial_kl(np.asarray(profile.entropy), grid), rel=1e-9
    )


# --------------------------------------------------------------------------- the reader itself
def test_reading_a_file_needs_no_torch(tmp_path):
    """Tensors are built lazily: reading and numpy tables leave torch unimported."""
    import subprocess

    name = write(tmp_path, SMALL, "counts", ".npz")
    code = (
        "import sys; from schedopt.export import read_schedule_file; "
        f"s = read_schedule_file({str(tmp_path / name)!r}); c = s.block_counts(); "
        "print('torch' in sys.modules, c.sum())"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**__import__("os").environ},
    )
    assert out.stdout.split() == ["False", "256"]


@pytest.mark.parametrize(
    "content, n, call, message",
    [
        ({"alpha": [0, 0.5, 1]}, None, None, "needs the sequence length: pass n"),
        ({"mask_ratio": [0.5, 0.0]}, None, None, "need the sequence length: pass n"),
        ({"counts": [4, 4], "n": 8}, 10, None, "the file is for n = 8 tokens, not n = 10"),
        ({"counts": [3, 4]}, 8, None, "sum to 7 tokens but n = 8"),
        ({"counts": [3, 0, 5]}, None, "maskgit_mask_ratio", "drop the zero-token steps"),
        ({"alpha": [0, 0.31, 1]}, 10, "llada_num_transfer_tokens", "random-count grid"),
        (
            {"counts": [[4, 4], [8, 0]], "steps_per_block": [2, 1]},
            None,
            "block_counts",
            "pass the block index",
        ),
        (
            {"counts": [[4, 4], [8, 0]], "steps_per_block": [2, 1]},
            None,
            "md4_timesteps",
            "block schedules run with counts",
        ),
        ({"counts": [4, 4]}, None, "dream_timesteps:greedy", "alg 'greedy' is unknown"),
        ({"steps": [1, 2]}, None, None, "holds no schedule"),
    ],
)
def test_reader_bad_input_is_one_clear_error(tmp_path, content, n, call, message):
    import json

    (tmp_path / "s.json").write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message) as info:
        schedule = integrations.read_schedule_file(tmp_path / "s.json", n)
        if call is not None:
            method, _, arg = call.partition(":")
            getattr(schedule, method)(*([arg] if arg else []))
    assert "\n" not in str(info.value)
