"""Hugging Face masked diffusion LMs (LLaDA, Dream, MDLM, any AutoModelForMaskedLM).

Optional extra: `pip install 'schedopt[hf]'` (torch and transformers). Models load with
transformers' Auto classes from a local directory or the local cache only
(`local_files_only=True`): schedopt never downloads a model.

`HFScorer` is a `schedopt.conditioning.TokenScorer`: it runs the model on its own device and
reduces the logits there, in torch, to the cross-entropy of the true answer token and the
predictive entropy at each answer position. Only those [B, n] numbers cross to the host, so
memory on the host does not grow with the vocabulary (LLaDA's is 126464). Each row is the
prompt followed by the answer, with masked answer positions set to the mask id; rows of a
batch have different prompt lengths, so they are right-padded and the model gets an
attention mask (when its forward takes one; otherwise each batch is split by length).
Positions are those of the unpadded sequence, so absolute position embeddings see what they
would in generation.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import numpy as np

DTYPES = ("float32", "float16", "bfloat16")


def _import():
    try:
        import torch
        import transformers
    except ImportError:
        raise ImportError(
            "Hugging Face models need torch and transformers, which are not installed; "
            "install them with pip install 'schedopt[hf]'"
        ) from None
    return torch, transformers


def load_hf_model(
    name_or_dir: str,
    *,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str | None = None,
    tokenizer: bool = True,
) -> tuple[Any, Any]:
    """Load a masked LM and (optionally) its tokenizer, locally only.

    Tries AutoModelForMaskedLM, then AutoModel (LLaDA and Dream register their denoiser
    under AutoModel with trust_remote_code).

    Args:
        name_or_dir: a local directory, or a model name already in the local HF cache.
        trust_remote_code: run the modeling code shipped with the model (LLaDA, Dream).
        device: torch device ("cpu", "cuda", "cuda:1").
        dtype: None (as saved), "float32", "float16" or "bfloat16".
        tokenizer: also load the tokenizer (None when the directory has none).

    Returns:
        (model in eval mode on `device`, tokenizer or None).

    Raises:
        ImportError: torch or transformers missing.
        ValueError: the model cannot be found locally or loaded, or a bad dtype.
    """
    torch, transformers = _import()
    if dtype is not None and dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "local_files_only": True}
    if dtype is not None:  # transformers renamed torch_dtype to dtype in 4.56
        major, minor = (int(v) for v in transformers.__version__.split(".")[:2])
        kwargs["dtype" if (major, minor) >= (4, 56) else "torch_dtype"] = getattr(torch, dtype)
    try:
        try:
            model = transformers.AutoModelForMaskedLM.from_pretrained(name_or_dir, **kwargs)
        except ValueError as e:
            if "Unrecognized configuration class" not in str(e):
                raise
            model = transformers.AutoModel.from_pretrained(name_or_dir, **kwargs)
    except (OSError, ValueError, ImportError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"cannot load Hugging Face model {name_or_dir!r} from a local directory or the local "
            f"cache (schedopt never downloads; add --trust-remote-code for models that ship "
            f"their own code): {first}"
        ) from None
    try:
        model = model.to(device)
    except (RuntimeError, AssertionError) as e:
        raise ValueError(f"cannot move the model to device {device!r}: {e}") from None
    model.eval()
    tok = None
    if tokenizer:
        try:
            tok = transformers.AutoTokenizer.from_pretrained(
                name_or_dir, trust_remote_code=trust_remote_code, local_files_only=True
            )
        except (OSError, ValueError):
            tok = None  # id-list data needs no tokenizer
    return model, tok


class HFScorer:
    """A torch masked LM as a `TokenScorer`: statistics reduced on the model's device.

    Args:
        model: a torch module mapping input_ids LongTensor[B, L] (and optionally
            attention_mask) to logits [B, L, V'] (a tensor, a tuple whose first item is the
            logits, or an object with `.logits`).
        mask_id: the model's mask token id.
        batch_size: rows per forward pass.
        vocab_size: keep only the first V logits (drop extra special outputs); default all.
        device: where inputs go (default: the model's first parameter's device).

    Attributes:
        vocab_size: V, from one probe forward pass unless given.
    """

    def __init__(self, model: Any, *, mask_id: int, batch_size: int = 32,
                 vocab_size: int | None = None, device: Any = None):
        torch, _ = _import()
        for name, value in (("mask_id", mask_id), ("batch_size", batch_size)):
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.model, self.mask_id, self.batch_size = model, int(mask_id), int(batch_size)
        if device is None:
            first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        forward = getattr(model, "forward", model)
        try:
            self.takes_attention_mask = "attention_mask" in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            self.takes_attention_mask = False
        self._keep = vocab_size
        probe = self._logits(np.full((1, 2), self.mask_id, np.int64), None)
        if probe.ndim != 3 or tuple(probe.shape[:2]) != (1, 2):
            raise ValueError(
                f"the model returned logits of shape {tuple(probe.shape)} for input ids of "
                "shape (1, 2); it must return [B, L, V]"
            )
        self.vocab_size = int(probe.shape[-1])
        if vocab_size is not None and probe.shape[-1] < vocab_size:
            raise ValueError(f"vocab_size = {vocab_size} but the model has only "
                             f"{probe.shape[-1]} outputs")
        self.forward_passes = 0

    def _logits(self, ids: np.ndarray, attention: np.ndarray | None):
        torch, _ = _import()
        inputs = {"input_ids": torch.from_numpy(ids).to(self.device)}
        if attention is not None:
            inputs["attention_mask"] = torch.from_numpy(attention.astype(np.int64)).to(
                self.device)
        with torch.inference_mode():
            out = self.model(**inputs)
        out = getattr(out, "logits", out)
        out = out[0] if isinstance(out, tuple | list) else out
        return out[..., : self._keep] if self._keep is not None else out

    def token_statistics(
        self, prompts: Sequence[np.ndarray], answers: np.ndarray, revealed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """float64[B, n] cross-entropy and predictive entropy at every answer position (nats)."""
        return self._statistics(prompts, answers, revealed, 2)

    def rule_statistics(
        self, prompts: Sequence[np.ndarray], answers: np.ndarray, revealed: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """float64[B, n] cross-entropy, entropy, log top-1 and log top-2 probability (nats).

        What the state-dependent unmasking rules of `schedopt.rules` rank by.
        """
        return self._statistics(prompts, answers, revealed, 4)

    def _statistics(self, prompts, answers, revealed, count: int) -> tuple[np.ndarray, ...]:
        """The first `count` statistics of `_batch` for every row, batch by batch."""
        answers = np.asarray(answers, np.int64)
        b, n = answers.shape
        lengths = np.asarray([len(p) for p in prompts])
        shown = np.where(revealed, answers, self.mask_id)
        if self.takes_attention_mask:
            groups = [np.arange(b)]
        else:  # no attention mask: never pad, run each prompt length on its own
            groups = [np.nonzero(lengths == v)[0] for v in np.unique(lengths)]
        out = tuple(np.zeros((b, n)) for _ in range(count))
        for group in groups:
            for lo in range(0, group.size, self.batch_size):
                rows = group[lo:lo + self.batch_size]
                stats = self._batch([prompts[i] for i in rows], shown[rows], answers[rows])
                for o, v in zip(out, stats[:count], strict=True):
                    o[rows] = v
        return out

    def _batch(self, prompts, shown: np.ndarray, answers: np.ndarray):
        torch, _ = _import()
        b, n = answers.shape
        lengths = np.asarray([len(p) for p in prompts], np.int64)
        total = int(lengths.max()) + n
        ids = np.full((b, total), self.mask_id, np.int64)  # padding: masked out of attention
        attention = np.zeros((b, total), bool)
        for i, p in enumerate(prompts):
            ids[i, : lengths[i]] = p
            ids[i, lengths[i] : lengths[i] + n] = shown[i]
            attention[i, : lengths[i] + n] = True
        padded = not attention.all()
        logits = self._logits(ids, attention if padded or self.takes_attention_mask else None)
        self.forward_passes += b
        if logits.ndim != 3 or tuple(logits.shape[:2]) != (b, total):
            raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for "
                             f"input ids of shape ({b}, {total}); it must return [B, L, V]")
        rows = torch.arange(b, device=logits.device)[:, None]
        cols = torch.from_numpy(lengths[:, None] + np.arange(n)[None, :]).to(logits.device)
        logp = torch.log_softmax(logits[rows, cols].float(), dim=-1)  # [b, n, V], on device
        target = torch.from_numpy(answers).to(logits.device)
        ce = -logp.gather(-1, target[..., None])[..., 0]
        p = logp.exp()
        ent = -torch.where(p > 0, p * logp, torch.zeros_like(p)).sum(-1)
        # the two largest log-probabilities, for confidence / margin rules (schedopt.rules)
        top = torch.topk(logp, min(2, logp.shape[-1]), dim=-1).values
        top2 = top[..., 1] if top.shape[-1] > 1 else torch.full_like(top[..., 0], -torch.inf)
        return tuple(v.double().cpu().numpy() for v in (ce, ent, top[..., 0], top2))


def hf_scorer(
    name_or_dir: str,
    *,
    mask_id: int,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str | None = None,
    batch_size: int = 32,
    vocab_size: int | None = None,
) -> tuple[HFScorer, Any]:
    """Load a model by name or directory and wrap it: (HFScorer, tokenizer or None)."""
    model, tokenizer = load_hf_model(name_or_dir, trust_remote_code=trust_remote_code,
                                     device=device, dtype=dtype)
    return HFScorer(model, mask_id=mask_id, batch_size=batch_size, vocab_size=vocab_size), tokenizer
