"""schedopt's diffusers schedulers inside the real installed pipelines.

Each test builds a tiny model from a config (nothing downloaded), runs the real `LLaDA2Pipeline`
or `AmusedPipeline` call and counts what the pipeline's own loop reveals at each step: masked
positions before the step minus masked positions after it, read from the loop's tensors through
its callback (not from the scheduler's output), and forward passes through a hook on the model.
The same instrument on the stock scheduler gives the split diffusers documents (re-derived here
in closed form), so the instrument itself is checked.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from schedopt.export import _diffusers as ds  # noqa: E402
from schedopt.export import (  # noqa: E402
    export_schedule,
    read_schedule_file,
    write_export,
)
from schedopt.schedule import Schedule  # noqa: E402

pytestmark = pytest.mark.torch

MASK = 31  # the last id of a 32-token vocabulary, as in diffusers' LLaDA2 and aMUSEd tests


def block_schedule(tokens, block_length):
    return Schedule(tokens_per_step=np.asarray(tokens, dtype=np.int64),
                    expected_kl=np.float64(0.0), meta={"block_length": block_length})


# --------------------------------------------------------------------------- LLaDA2
def tiny_lm(seed=0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32,
                         num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
                         max_position_embeddings=128)
    model = LlamaForCausalLM(config).eval()
    with torch.no_grad():  # varied, peaked confidences (a random init is nearly uniform)
        model.lm_head.weight.mul_(20.0)
    return model


def run_llada2(scheduler, prompt_length=4, batch=2, **call):
    """Per block, the tokens each step revealed in each row; and the forward passes."""
    from diffusers import LLaDA2Pipeline

    model = tiny_lm()
    passes = []
    model.register_forward_hook(lambda *_: passes.append(1))
    pipe = LLaDA2Pipeline(model=model, scheduler=scheduler, tokenizer=None)
    pipe.set_progress_bar_config(disable=True)
    steps: dict[int, list[list[int]]] = {}
    block_length = call["block_length"]

    def count(pipe, global_step, step_idx, kwargs):
        block_x, before = kwargs["block_x"], kwargs["active_block"]
        after = block_x[:, -block_length:] == MASK
        block = block_x.shape[1] // block_length - 1 - prompt_length // block_length
        steps.setdefault(block, []).append((before.sum(-1) - after.sum(-1)).tolist())
        return {}

    prompt = torch.arange(5, 5 + prompt_length * batch, dtype=torch.long).reshape(batch, -1) % 30
    out = pipe(input_ids=prompt, use_chat_template=False, mask_token_id=MASK, eos_token_id=None,
               eos_early_stop=False, output_type="seq", temperature=0.0,
               callback_on_step_end=count,
               callback_on_step_end_tensor_inputs=["block_x", "active_block"], **call)
    assert not bool((out.sequences == MASK).any())
    per_block = [np.asarray(steps[b]).T.tolist() for b in sorted(steps)]  # [block][row][step]
    return per_block, len(passes)


TOKENS, LENGTH = [1, 3, 2, 1, 1, 4], 4  # blocks of 4 tokens: [1, 3], [2, 1, 1], [4]


def test_block_schedule_counts_in_the_pipeline():
    schedule = block_schedule(TOKENS, LENGTH)
    scheduler = ds.block_refinement_scheduler(schedule)
    assert scheduler.call_kwargs == {"gen_length": 12, "block_length": 4,
                                     "num_inference_steps": 3, "minimal_topk": 1}
    counts, passes = run_llada2(scheduler, **scheduler.call_kwargs)
    assert counts == [[[1, 3]] * 2, [[2, 1, 1]] * 2, [[4]] * 2]
    assert passes == len(TOKENS)  # each block runs its own steps, no more


def test_threshold_and_editing_of_the_pipeline_do_not_change_counts():
    scheduler = ds.block_refinement_scheduler(block_schedule(TOKENS, LENGTH))
    # the pipeline's defaults threshold=0.7, editing_threshold=0.5; threshold 0 would commit all
    counts, _ = run_llada2(scheduler, threshold=0.0, **scheduler.call_kwargs)
    assert counts == [[[1, 3]] * 2, [[2, 1, 1]] * 2, [[4]] * 2]
    # and a second call starts again at the first block
    again, _ = run_llada2(scheduler, **scheduler.call_kwargs)
    assert again == counts


def test_keep_threshold_is_the_stock_rule():
    scheduler = ds.block_refinement_scheduler(block_schedule(TOKENS, LENGTH), keep_threshold=True)
    # every masked position has probability > 0: the stock rule commits the whole block at
    # once; the pipeline then runs one more pass in a block with steps left (its loop sees the
    # block unmasked only at the top of the next iteration)
    counts, passes = run_llada2(scheduler, threshold=0.0, editing_threshold=None,
                                **scheduler.call_kwargs)
    assert counts == [[[4, 0]] * 2, [[4, 0]] * 2, [[4]] * 2] and passes == 5
    # above 1 no confidence clears the threshold: the scheduled counts, as without it
    counts, _ = run_llada2(scheduler, threshold=2.0, **scheduler.call_kwargs)
    assert counts == [[[1, 3]] * 2, [[2, 1, 1]] * 2, [[4]] * 2]


@pytest.mark.parametrize("suffix", [".csv", ".json", ".npz"])
def test_export_files_and_schedule_files(tmp_path, suffix):
    schedule = block_schedule(TOKENS, LENGTH)
    path = write_export(tmp_path / f"blocks{suffix}",
                        export_schedule(schedule, "counts", block_length=LENGTH))
    for source in (path, read_schedule_file(path)):
        scheduler = ds.block_refinement_scheduler(source)
        counts, _ = run_llada2(scheduler, **scheduler.call_kwargs)
        assert counts == [[[1, 3]] * 2, [[2, 1, 1]] * 2, [[4]] * 2]
    schedule.save(tmp_path / "s.json")  # a schedule file keeps its blocks
    scheduler = ds.block_refinement_scheduler(tmp_path / "s.json")
    assert scheduler.call_kwargs["num_inference_steps"] == 3


def test_flat_schedule_split_into_blocks():
    flat = Schedule(tokens_per_step=np.array([2, 2, 3, 1]), expected_kl=np.float64(0.0))
    scheduler = ds.block_refinement_scheduler(flat, block_length=4)
    counts, _ = run_llada2(scheduler, **scheduler.call_kwargs)
    assert counts == [[[2, 2]] * 2, [[3, 1]] * 2]


@pytest.mark.parametrize("block_length,steps", [(8, 8), (8, 3), (6, 4), (12, 5)])
def test_stock_scheduler_gives_the_documented_even_split(block_length, steps):
    """diffusers: "evenly distributing the block length across the steps", the remainder on
    the first steps (as LLaDA's get_num_transfer_tokens): step i commits ceil((L - i) / T)."""
    from diffusers import BlockRefinementScheduler

    even = [math.ceil((block_length - i) / steps) for i in range(steps)]
    assert sum(even) == block_length
    counts, passes = run_llada2(
        BlockRefinementScheduler(block_length=block_length), prompt_length=block_length,
        gen_length=2 * block_length, block_length=block_length, num_inference_steps=steps,
        threshold=2.0)
    assert counts == [[even] * 2] * 2 and passes == 2 * steps


@pytest.mark.parametrize("call,message", [
    ({"num_inference_steps": 4}, "num_inference_steps=3"),
    ({"block_length": 6}, "block_length=4"),
    ({"gen_length": 16}, "gen_length=12"),
    ({"prompt_length": 3}, "multiple of"),
])
def test_pipeline_called_off_schedule_is_refused(call, message):
    scheduler = ds.block_refinement_scheduler(block_schedule(TOKENS, LENGTH))
    kwargs = {**scheduler.call_kwargs, **call}
    with pytest.raises(ValueError, match=message) as info:
        run_llada2(scheduler, **kwargs)
    assert "\n" not in str(info.value)


def test_bad_schedules_are_refused(tmp_path):
    with pytest.raises(ValueError, match="random-count grid"):
        ds.block_refinement_scheduler(read_schedule_file(_alpha_file(tmp_path), n=8))
    with pytest.raises(ValueError, match="blocks of 4 tokens, not 8"):
        ds.block_refinement_scheduler(read_schedule_file(_blocks_file(tmp_path)), block_length=8)
    with pytest.raises(ValueError, match="comes from the schedule"):
        ds.block_refinement_scheduler(block_schedule(TOKENS, LENGTH), block_length=4,
                                      num_inference_steps=3)
    with pytest.raises(ValueError, match="a schedopt Schedule"):
        ds.block_refinement_scheduler([1, 2, 3])
    with pytest.raises(ValueError, match="whole image"):
        ds.amused_scheduler(read_schedule_file(_blocks_file(tmp_path)), mask_token_id=MASK)


def _alpha_file(tmp_path):
    path = tmp_path / "alpha.json"
    path.write_text(json.dumps({"alpha": [0.0, 0.3, 1.0]}))
    return path


def _blocks_file(tmp_path):
    return write_export(tmp_path / "b.json", export_schedule(
        block_schedule(TOKENS, LENGTH), "counts", block_length=LENGTH))


# --------------------------------------------------------------------------- aMUSEd
def tiny_amused(scheduler, tmp_path):
    """diffusers' aMUSEd fast-test components, with a CLIP tokenizer written to tmp_path."""
    from diffusers import AmusedPipeline, UVit2DModel, VQModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    torch.manual_seed(0)
    transformer = UVit2DModel(
        hidden_size=8, use_bias=False, hidden_dropout=0.0, cond_embed_dim=8,
        micro_cond_encode_dim=2, micro_cond_embed_dim=10, encoder_hidden_size=8, vocab_size=32,
        codebook_size=8, in_channels=8, block_out_channels=8, num_res_blocks=1, downsample=True,
        upsample=True, block_num_heads=1, num_hidden_layers=1, num_attention_heads=1,
        attention_dropout=0.0, intermediate_size=8, layer_norm_eps=1e-6,
        ln_elementwise_affine=True)
    vqvae = VQModel(
        act_fn="silu", block_out_channels=[8], down_block_types=["DownEncoderBlock2D"],
        in_channels=3, latent_channels=8, layers_per_block=1, norm_num_groups=8,
        num_vq_embeddings=8, out_channels=3, sample_size=8,
        up_block_types=["UpDecoderBlock2D"], mid_block_add_attention=False,
        lookup_from_codebook=True)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=2, hidden_size=8, intermediate_size=8,
        layer_norm_eps=1e-5, num_attention_heads=1, num_hidden_layers=1, pad_token_id=1,
        vocab_size=1000, projection_dim=8))
    vocab = {"<|startoftext|>": 0, "!": 1, "<|endoftext|>": 2, "a</w>": 3, "cat</w>": 4,
             "c": 5, "a": 6, "t": 7, "ca": 8}
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    (tmp_path / "merges.txt").write_text("#version: 0.2\nc a\nca t</w>\n")
    tokenizer = CLIPTokenizer(str(tmp_path / "vocab.json"), str(tmp_path / "merges.txt"),
                              model_max_length=8)
    pipe = AmusedPipeline(vqvae=vqvae, tokenizer=tokenizer, text_encoder=text_encoder,
                          transformer=transformer, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def run_amused(pipe, side=8, batch=2, steps=4):
    """Tokens revealed at each step in each image, from the pipeline's latents per step."""
    masked = [[side * side] * batch]
    passes = []
    pipe.transformer.register_forward_hook(lambda *_: passes.append(1))
    out = pipe(prompt=["a cat"] * batch, height=side, width=side, num_inference_steps=steps,
               generator=torch.Generator().manual_seed(0), output_type="np",
               callback=lambda i, t, latents: masked.append(
                   (latents == MASK).reshape(batch, -1).sum(-1).tolist()))
    assert out.images.shape == (batch, side, side, 3)
    masked = np.asarray(masked)
    return (-np.diff(masked, axis=0)).T.tolist(), len(passes)


@pytest.mark.parametrize("tokens", [[1, 5, 20, 38], [30, 0, 30, 4], [64]])
def test_amused_schedule_counts_in_the_pipeline(tmp_path, tokens):
    flat = Schedule(tokens_per_step=np.asarray(tokens), expected_kl=np.float64(0.0))
    scheduler = ds.amused_scheduler(flat, mask_token_id=MASK)
    pipe = tiny_amused(scheduler, tmp_path)
    counts, passes = run_amused(pipe, **{"steps": scheduler.call_kwargs["num_inference_steps"]})
    assert counts == [tokens] * 2 and passes == len(tokens)


def test_amused_reads_a_maskgit_export(tmp_path):
    tokens = [3, 9, 20, 32]
    flat = Schedule(tokens_per_step=np.asarray(tokens), expected_kl=np.float64(0.0))
    path = write_export(tmp_path / "mask_ratio.csv", export_schedule(flat, "maskgit"))
    scheduler = ds.amused_scheduler(read_schedule_file(path, n=64), mask_token_id=MASK)
    pipe = tiny_amused(scheduler, tmp_path)
    assert run_amused(pipe)[0] == [tokens] * 2


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_stock_amused_counts_follow_its_mask_schedule(tmp_path, schedule):
    """The MaskGIT rule aMUSEd documents: after step k of T, floor(n * r) positions stay
    masked, r = cos(pi/2 * (k + 1) / T) (cosine) or 1 - (k + 1) / T (linear), at least one,
    fewer than before, none after the last."""
    from diffusers import AmusedScheduler

    n, steps = 64, 5
    masked = [n]
    for k in range(steps - 1):
        frac = (k + 1) / steps
        r = math.cos(math.pi / 2 * frac) if schedule == "cosine" else 1 - frac
        masked.append(max(1, min(masked[-1] - 1, math.floor(n * r))))
    masked.append(0)
    pipe = tiny_amused(AmusedScheduler(mask_token_id=MASK, masking_schedule=schedule), tmp_path)
    counts, passes = run_amused(pipe, steps=steps)
    assert counts == [(-np.diff(masked)).tolist()] * 2 and passes == steps


@pytest.mark.parametrize("call,message", [
    ({"steps": 3}, "num_inference_steps=4"),
    ({"side": 16}, "256 latent tokens"),
])
def test_amused_called_off_schedule_is_refused(tmp_path, call, message):
    flat = Schedule(tokens_per_step=np.array([1, 5, 20, 38]), expected_kl=np.float64(0.0))
    pipe = tiny_amused(ds.amused_scheduler(flat, mask_token_id=MASK), tmp_path)
    with pytest.raises(ValueError, match=message) as info:
        run_amused(pipe, **call)
    assert "\n" not in str(info.value)
