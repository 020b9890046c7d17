"""Use a PyTorch masked diffusion model with schedopt (optional extra: `schedopt[torch]`).

LLaDA, Dream and MDLM denoisers map input ids, with masked positions set to a mask id, to
logits over the vocabulary. `torch_logits_fn` wraps such a module as the
`logits_fn(tokens, revealed) -> logits` that `estimate_profile`, `schedule_nll` and the sampler
take. The call goes through `jax.pure_callback`, so the wrapped function can be traced and
jitted like a JAX model (PyTorch runs on the host, outside XLA, in chunks of `batch_size`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def _import_torch():
    try:
        import torch
    except ImportError:
        raise ImportError(
            "torch_logits_fn needs PyTorch, which is not installed; install it with "
            "pip install 'schedopt[torch]'"
        ) from None
    return torch


def torch_logits_fn(
    module: Callable[[Any], Any],
    *,
    mask_id: int,
    vocab_size: int | None = None,
    batch_size: int = 64,
    device: Any = None,
) -> Callable[[jax.Array, jax.Array], jax.Array]:
    """Wrap a PyTorch denoiser as a schedopt `logits_fn`.

    Args:
        module: a torch module (or any callable) taking input ids, a LongTensor [B, n] in which
            masked positions hold `mask_id`, and returning logits [B, n, V'] (a tensor, a tuple
            whose first item is the logits, or an object with a `.logits` attribute, as
            Hugging Face models return). For a model with extra inputs (MDLM's noise level,
            an attention mask), pass a lambda that supplies them.
        mask_id: the model's mask token id.
        vocab_size: keep only the first `vocab_size` logits (the real tokens), e.g. to drop
            special tokens; default all V'. Data tokens must be below it.
        batch_size: sequences per PyTorch call (bounds its memory).
        device: torch device for the inputs (default: the module's first parameter's, or CPU).

    Returns:
        logits_fn(tokens int[B, n], revealed bool[B, n]) -> float32[B, n, V], traceable by
        JAX; unrevealed tokens are replaced by mask_id before the module sees them.

    Raises:
        ImportError: PyTorch is not installed.
        ValueError: bad arguments, or the module's output has the wrong shape (checked on a
            probe input the first time each sequence length is traced).
    """
    torch = _import_torch()
    if not callable(module):
        raise ValueError(f"module must be a torch module or callable, got {type(module).__name__}")
    for name, value in (("mask_id", mask_id), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    if vocab_size is not None and (isinstance(vocab_size, bool) or int(vocab_size) < 1):
        raise ValueError(f"vocab_size must be a positive whole number or None, got {vocab_size!r}")
    if device is None:
        params = getattr(module, "parameters", None)
        first = next(iter(params()), None) if callable(params) else None
        device = first.device if first is not None else torch.device("cpu")

    def run(input_ids: np.ndarray) -> np.ndarray:
        """float32[B, n, V] logits for int[B, n] ids, in chunks of batch_size."""
        chunks = []
        with torch.inference_mode():
            for start in range(0, input_ids.shape[0], batch_size):
                ids = torch.from_numpy(np.ascontiguousarray(input_ids[start:start + batch_size],
                                                            dtype=np.int64)).to(device)
                out = module(ids)
                out = getattr(out, "logits", out)
                out = out[0] if isinstance(out, tuple | list) else out
                if vocab_size is not None:
                    out = out[..., :vocab_size]
                chunks.append(out.detach().float().cpu().numpy())
        return np.concatenate(chunks)

    vocab_by_length: dict[int, int] = {}

    def vocab_for(n: int) -> int:
        """V for length-n inputs, from one probe call (cached), after checking the shape."""
        if n not in vocab_by_length:
            shape = run(np.full((1, n), mask_id, np.int64)).shape
            if len(shape) != 3 or shape[:2] != (1, n) or shape[2] < 1:
                raise ValueError(
                    f"the torch module returned shape {shape} for input ids of shape (1, {n}); "
                    f"it must return logits of shape (1, {n}, V)"
                )
            if vocab_size is not None and shape[2] < vocab_size:
                raise ValueError(
                    f"vocab_size = {vocab_size} but the module returns only {shape[2]} logits; "
                    "lower vocab_size"
                )
            vocab_by_length[n] = int(shape[2])
        return vocab_by_length[n]

    def host(tokens: np.ndarray, revealed: np.ndarray) -> np.ndarray:
        n = tokens.shape[-1]
        ids = np.where(revealed, tokens, mask_id).reshape(-1, n)
        out = run(ids)
        return out.reshape(*tokens.shape, out.shape[-1]).astype(np.float32)

    def logits_fn(tokens: jax.Array, revealed: jax.Array) -> jax.Array:
        tokens = jnp.asarray(tokens, jnp.int32)
        n = tokens.shape[-1]
        result = jax.ShapeDtypeStruct((*tokens.shape, vocab_for(n)), jnp.float32)
        return jax.pure_callback(host, result, tokens, jnp.asarray(revealed, jnp.bool_),
                                 vmap_method="broadcast_all")

    return logits_fn
