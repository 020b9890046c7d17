"""Hugging Face masked diffusion LMs (LLaDA, Dream, MDLM, any AutoModelForMaskedLM).

Optional extra: `pip install 'schedopt[hf]'` (torch and transformers). Models load with
transformers' Auto classes from a local directory or the local cache only
(`local_files_only=True`): schedopt never downloads a model.

`HFScorer` is a `schedopt.sources.TokenScorer`: it runs the model on its own device and
reduces the logits there, in torch, to the cross-entropy of the true answer token and the
predictive entropy at each answer position. Only those [B, n] numbers cross to the host, so
memory on the host does not grow with the vocabulary (LLaDA's is 126464). Each row is the
prompt followed by the answer, with masked answer positions set to the mask id; rows of a
batch have different prompt lengths, so they are right-padded and the model gets an
attention mask in the form its forward takes, or, with no usable mask, each batch is split by
prompt length and never padded. Positions are those of the unpadded sequence, so absolute
position embeddings see what they would in generation.

Model conventions are read from the config, never assumed (docs/models.md, "Model
conventions"): models adapted from autoregressive ones (Dream) predict position i from output
i - 1; Dream's attention takes a 4-D bool mask, not a 2-D int one. The first padded batch is
also scored row by row unpadded, and a model whose scores change with padding (one that
accepts `attention_mask` but ignores it) is refused.

Memory: the logits [b, L, V] of one forward pass are the only vocabulary-sized buffer; the
reduction reads them in chunks of at most `CHUNK_ELEMENTS` numbers, into two chunk buffers
the scorer keeps (docs/benchmarks.md, "Host memory of rule scoring on CPU"), and
without an explicit batch size the rows per pass are chosen from the memory free on the
device.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

DTYPES = ("float32", "float16", "bfloat16")
ATTENTION_FORMS = ("auto", "2d", "4d", "none")
# config.model_type of models whose output i predicts position i + 1 (their samplers shift
# the logits right by one: Dream's `diffusion_generate`), and of those whose attention takes a
# bool/float [B, 1, L, L] mask (Dream's sdpa attention; a 2-D int64 mask fails there).
SHIFTED_MODEL_TYPES = frozenset({"Dream"})
MASK_4D_MODEL_TYPES = frozenset({"Dream"})
TRANSFORMERS_RANGE = "transformers>=4.40,<5"  # what LLaDA's and Dream's own code loads under
CHUNK_ELEMENTS = 1 << 23  # logits numbers per reduction chunk (32 MB in float32)
MAX_AUTO_ROWS = 256  # rows per forward pass at most when fitted to memory
PADDING_CHECK_ROWS = 3  # rows of the first padded batch re-scored unpadded


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
        raise ValueError(
            f"cannot load Hugging Face model {name_or_dir!r} from a local directory or the local "
            f"cache (schedopt never downloads; add --trust-remote-code for models that ship "
            f"their own code): {_first_line(e)}"
        ) from None
    except Exception as e:  # raised inside the model's own code (or transformers' hooks into it)
        raise ValueError(
            f"loading {name_or_dir!r} failed inside the model's code under transformers "
            f"{transformers.__version__} ({type(e).__name__}: {_first_line(e)}); LLaDA's and "
            f"Dream's code loads under transformers 4, so pip install '{TRANSFORMERS_RANGE}'"
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
        except Exception:  # noqa: BLE001 - e.g. KeyError 'LLaDAConfig' with no tokenizer files
            tok = None  # id-list data needs no tokenizer; text data then says it needs one
    return model, tok


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


# The statistics `position_statistics` returns, in the order the scorer's methods give them.
STATISTICS = ("cross_entropy", "entropy", "log_top1", "log_top2")


class Draw(NamedTuple):
    """Draw the token at each position instead of reading it: from softmax(logits /
    temperature), or the argmax at temperature 0 (statistics then of softmax(logits))."""

    temperature: float
    generator: Any = None  # a torch.Generator on the logits' device, or None


def position_statistics(logits: Any, targets: Any, names: Sequence[str] = STATISTICS, *,
                        draw: Draw | None = None, work: Any = None) -> dict[str, Any]:
    """Per-position statistics of one chunk of logits, on their device.

    The one place where logits are reduced. Computed in float32 whatever the model's dtype,
    in place in the buffers `work` (reused across chunks so the allocator sees no
    chunk-sized request per call; allocated here when None).

    Args:
        logits: float tensor [k, V], already shifted and sliced to the answer positions (may
            be `work[0]` itself, then overwritten).
        targets: int64 tensor [k], the true answer tokens (ignored with `draw`).
        names: the `STATISTICS` to compute. Each costs passes over [k, V]: ask for what is
            read ("log_top2" needs a search for the first maximum, slower than the rest
            together at V = 512).
        draw: draw the tokens (see `Draw`); cross_entropy is then of the drawn token.
        work: two float32 tensors of shape [k, V] (views of larger buffers are fine).

    Returns:
        float32 tensors [k] (nats), keyed by `names`: "cross_entropy" -log p(target),
        "entropy" -sum p log p, and "log_top1", "log_top2" the two largest log-probabilities
        (what the confidence and margin rules of `schedopt.rules` rank by; -inf for V = 1);
        with `draw`, also "token" (int64 [k]).
    """
    import torch

    if work is None:
        work = tuple(torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
                     for _ in range(2))
    z, e = work
    if z.data_ptr() != logits.data_ptr():
        z.copy_(logits)
    if draw is not None and draw.temperature > 0:
        z.div_(draw.temperature)
    # In place, never normalised in full: each pass over [k, V] costs about as much as a
    # small model's forward. z = logits - max (0 at the maximum), e = exp(z), and
    # log p = z - log sum e.
    unknown = set(names) - set(STATISTICS)
    if unknown:
        raise ValueError(f"unknown statistics {sorted(unknown)}; choose from {STATISTICS}")
    greedy = draw is not None and draw.temperature == 0
    if "log_top2" in names or greedy:
        top, first = z.max(dim=-1, keepdim=True)  # the first maximum, as torch.argmax
    else:
        top = z.amax(dim=-1, keepdim=True)  # several times faster than max with indices
    if greedy:
        targets = first[:, 0]
    out = {}
    if "log_top2" in names:  # the runner-up: the maximum with the first set aside (topk is slower)
        second = z.scatter_(-1, first, -torch.inf).amax(-1, keepdim=True)
        z.scatter_(-1, first, top)
    z.sub_(top)
    total = torch.exp(z, out=e).sum(-1)
    log_total = total.log()
    out["log_top1"] = -log_total
    if "log_top2" in names:
        out["log_top2"] = (second - top)[:, 0] - log_total
    if draw is not None and draw.temperature > 0:  # multinomial takes unnormalised weights
        targets = torch.multinomial(e, 1, generator=draw.generator)[:, 0]
    if draw is not None:
        out["token"] = targets
    if "cross_entropy" in names:
        out["cross_entropy"] = log_total - z.gather(-1, targets[..., None])[..., 0]
    if "entropy" in names:
        # -sum p log p = log sum e - sum e z / sum e, both terms >= 0; e z is 0 * -inf = NaN
        # where a logit is -inf, which nansum counts as the 0 that 0 log 0 is.
        out["entropy"] = log_total - e.mul_(z).nansum(-1) / total
    return {name: out[name] for name in (*names, *(("token",) if draw is not None else ()))}


def _is_out_of_memory(e: BaseException) -> bool:
    text = str(e)
    return isinstance(e, MemoryError) or "out of memory" in text or "not enough memory" in text


def _free_bytes(torch: Any, device: Any) -> int:
    """Memory free for new buffers on `device`, in bytes (CUDA: the driver's count; CPU:
    MemAvailable, else physical pages)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))


class HFScorer:
    """A torch masked LM as a `TokenScorer`: statistics reduced on the model's device.

    Args:
        model: a torch module mapping input_ids LongTensor[B, L] (and optionally
            attention_mask) to logits [B, L, V'] (a tensor, a tuple whose first item is the
            logits, or an object with `.logits`).
        mask_id: the model's mask token id; must equal the config's `mask_token_id` when it
            has one, unless `force_mask_id`.
        batch_size: rows per forward pass; None: as many as fit in half the free memory of
            the device (at most 256), halved on an out-of-memory error.
        vocab_size: keep only the first V logits (drop extra special outputs); default the
            config's `vocab_size`, else the input embeddings' rows.
        device: where inputs go (default: the model's first parameter's device).
        shifted: whether output i predicts position i + 1 (Dream and other models adapted
            from autoregressive ones); None: from the config's `model_type`.
        attention: the mask the forward takes: "2d" (int64 [B, L], 1 = keep), "4d" (bool
            [B, 1, L, L], True = attend), "none" (no mask: rows grouped by prompt length,
            never padded), or "auto" (4d for Dream, 2d when the forward takes
            `attention_mask`, else none).
        force_mask_id: use `mask_id` although the config names another mask token.
        check_padding: score a few rows of the first padded batch unpadded too, and refuse
            a model whose scores change with padding.

    Attributes:
        vocab_size: V.
        shifted, attention: the conventions in use (resolved from "auto"/None).
        forward_passes: rows scored (the padding check's rows are not counted).
    """

    def __init__(self, model: Any, *, mask_id: int, batch_size: int | None = None,
                 vocab_size: int | None = None, device: Any = None,
                 shifted: bool | None = None, attention: str = "auto",
                 force_mask_id: bool = False, check_padding: bool = True):
        torch, _ = _import()
        for name, value in (("mask_id", mask_id), ("batch_size", batch_size),
                            ("vocab_size", vocab_size)):
            if value is None and name != "mask_id":
                continue
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"{name} must be a non-negative whole number, got {value!r}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if attention not in ATTENTION_FORMS:
            raise ValueError(f"attention must be one of {', '.join(ATTENTION_FORMS)}, got "
                             f"{attention!r}")
        self.model, self.mask_id = model, int(mask_id)
        self.batch_size = None if batch_size is None else int(batch_size)
        if device is None:
            first = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
            device = first.device if first is not None else torch.device("cpu")
        self.device = torch.device(device)
        config = getattr(model, "config", None)
        model_type = getattr(config, "model_type", None)
        self.shifted = model_type in SHIFTED_MODEL_TYPES if shifted is None else bool(shifted)
        self.attention = self._attention_form(attention, model_type)
        outputs = self._output_count(config)
        self.vocab_size = int(vocab_size if vocab_size is not None else outputs or 0)
        if self.vocab_size < 1:
            raise ValueError("cannot tell the model's vocabulary size (no config.vocab_size "
                             "and no input embeddings); pass vocab_size=V")
        self._check_mask_id(getattr(config, "mask_token_id", None), force_mask_id)
        self._check_padding = bool(check_padding)
        self._checked_shape = False
        self.forward_passes = 0
        self._buffers: dict = {}  # name -> a chunk buffer of the reduction (`_buffer`)

    def _attention_form(self, attention: str, model_type: str | None) -> str:
        if attention != "auto":
            return attention
        if model_type in MASK_4D_MODEL_TYPES:
            return "4d"
        forward = getattr(self.model, "forward", self.model)
        try:
            takes = "attention_mask" in inspect.signature(forward).parameters
        except (TypeError, ValueError):
            takes = False
        return "2d" if takes else "none"

    def _output_count(self, config: Any) -> int | None:
        """The model's vocabulary from its config or embeddings (no forward pass)."""
        size = getattr(config, "vocab_size", None)
        if isinstance(size, int) and size > 0:
            return size
        return self._input_rows()

    def _input_rows(self) -> int | None:
        """Rows of the input embedding table (the ids the model can read), if it has one."""
        embeddings = getattr(self.model, "get_input_embeddings", None)
        try:
            weight = getattr(embeddings(), "weight", None) if embeddings is not None else None
        except (AttributeError, NotImplementedError, TypeError):
            weight = None
        return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None

    def _check_mask_id(self, named: Any, force: bool) -> None:
        rows = self._input_rows()
        if rows is not None and self.mask_id >= rows:
            raise ValueError(f"mask id {self.mask_id} is outside the model's vocabulary "
                             f"0..{rows - 1}; pass the model's mask token id (--mask-id)")
        if isinstance(named, int) and named != self.mask_id and not force:
            raise ValueError(f"mask id {self.mask_id} is not the model's: its config says "
                             f"mask_token_id = {named}; pass --mask-id {named}, or "
                             f"--force-mask-id (force_mask_id=True) to use {self.mask_id}")

    # ------------------------------------------------------------------ forward and reduce
    def _forward(self, ids: np.ndarray, live: np.ndarray):
        """Logits [b, L, V] of right-padded rows; `live` bool [b, L] marks the real tokens."""
        torch, _ = _import()
        inputs = {"input_ids": torch.from_numpy(ids).to(self.device)}
        keep = torch.from_numpy(live).to(self.device)
        if self.attention == "2d":
            inputs["attention_mask"] = keep.long()
        elif self.attention == "4d":  # every query attends to the live keys of its row
            b, length = live.shape
            inputs["attention_mask"] = keep[:, None, None, :].expand(b, 1, length, length)
        try:
            with torch.inference_mode():
                out = self.model(**inputs)
        except IndexError as e:  # an id past the embedding table: the mask id, most likely
            raise ValueError(f"the model cannot read token ids up to {int(ids.max())} "
                             f"({_first_line(e)}); is mask id {self.mask_id} in its "
                             "vocabulary? pass the model's mask token id (--mask-id)") from None
        except RuntimeError as e:
            if _is_out_of_memory(e):
                raise
            raise ValueError(
                f"the model's forward failed on input ids of shape {tuple(ids.shape)} with the "
                f"{self.attention!r} attention mask ({_first_line(e)}); if it takes another mask "
                "form, pass --attention-mask 2d|4d|none (attention=)") from None
        out = getattr(out, "logits", out)
        out = out[0] if isinstance(out, tuple | list) else out
        b, length = ids.shape
        if out.ndim != 3 or tuple(out.shape[:2]) != (b, length):
            raise ValueError(f"the model returned logits of shape {tuple(out.shape)} for input "
                             f"ids of shape ({b}, {length}); it must return [B, L, V]")
        if out.shape[-1] < self.vocab_size:
            raise ValueError(f"vocab_size = {self.vocab_size} but the model returned only "
                             f"{out.shape[-1]} logits per position")
        return out

    def _reduce(self, logits: Any, lengths: np.ndarray, answers: np.ndarray,
                names: tuple[str, ...],
                draw: Draw | None = None, wanted: np.ndarray | None = None) -> dict:
        """Statistics [b, n] (float64, host) from logits [b, L, V], in chunks of positions.

        With `draw`, the statistics are of the distribution drawn from, cross_entropy is of
        the drawn token, and "token" holds the draws (int64 [b, n]); `answers` then only
        gives the shape. With `wanted` (bool [b, n]) only those positions are reduced; the
        others hold NaN (token 0).

        Memory: the chunks are gathered into buffers kept by the scorer (two float32 [k, V],
        and one [k, V'] in the logits' dtype when that is not float32; k * V at most
        `CHUNK_ELEMENTS`), so no chunk-sized allocation reaches the host allocator,
        which keeps what it is given back, and no pass pays to fault fresh pages in.
        """
        torch, _ = _import()
        b, n = answers.shape
        cols = lengths[:, None] + np.arange(n)[None, :]
        if self.shifted:  # output q - 1 predicts position q (position 0 reads output 0)
            cols = np.maximum(cols - 1, 0)
        flat = (np.arange(b * n) if wanted is None
                else np.flatnonzero(np.asarray(wanted, bool).ravel()))
        length, width = logits.shape[1:]
        rows, cols = flat // n, cols.ravel()[flat]
        where = rows * length + cols  # rows of the logits viewed as [b * L, V']
        targets = torch.from_numpy(answers.ravel()[flat]).to(logits.device)
        step = min(max(1, CHUNK_ELEMENTS // self.vocab_size), max(1, flat.size))
        table = logits.view(b * length, width) if logits.is_contiguous() else None

        work = (self._buffer("z", step, width, torch.float32, logits.device),
                self._buffer("e", step, self.vocab_size, torch.float32, logits.device))
        raw = (work[0] if logits.dtype == torch.float32
               else self._buffer("raw", step, width, logits.dtype, logits.device))
        parts: dict[str, list] = {}
        for lo in range(0, flat.size, step):
            k = min(step, flat.size - lo)
            if table is not None:
                index = torch.from_numpy(where[lo:lo + k]).to(logits.device)
                torch.index_select(table, 0, index, out=raw[:k])
            else:  # a strided view: advanced indexing copies the k rows only
                r, c = (torch.from_numpy(x[lo:lo + k]).to(logits.device) for x in (rows, cols))
                raw[:k].copy_(logits[r, c])
            chunk = raw[:k, : self.vocab_size]
            stats = position_statistics(chunk, targets[lo:lo + k], names, draw=draw,
                                        work=(work[0][:k, : self.vocab_size], work[1][:k]))
            for name, value in stats.items():
                parts.setdefault(name, []).append(
                    value.cpu() if name == "token" else value.double().cpu())
        out = {}
        for name in (*names, *(("token",) if draw is not None else ())):
            full = np.zeros(b * n, np.int64) if name == "token" else np.full(b * n, np.nan)
            if flat.size:
                full[flat] = torch.cat(parts[name]).numpy()
            out[name] = full.reshape(b, n)
        return out

    def _buffer(self, name: str, rows: int, columns: int, dtype: Any, device: Any) -> Any:
        """A [rows, columns] view of the kept buffer `name`, grown when too small."""
        torch, _ = _import()
        kept = self._buffers.get(name)
        if (kept is None or kept.shape[0] < rows or kept.shape[1] != columns
                or kept.dtype != dtype or kept.device != device):
            kept = self._buffers[name] = torch.empty((rows, columns), dtype=dtype,
                                                     device=device)
        return kept[:rows]

    def _score(self, prompts, shown: np.ndarray, answers: np.ndarray, names: tuple[str, ...],
               draw: Draw | None = None, wanted: np.ndarray | None = None) -> dict:
        """One forward pass over right-padded rows, reduced to statistics [b, n]."""
        b, n = answers.shape
        lengths = np.asarray([len(p) for p in prompts], np.int64)
        total = int(lengths.max()) + n
        ids = np.full((b, total), self.mask_id, np.int64)  # padding: masked out of attention
        live = np.zeros((b, total), bool)
        for i, p in enumerate(prompts):
            ids[i, : lengths[i]] = p
            ids[i, lengths[i] : lengths[i] + n] = shown[i]
            live[i, : lengths[i] + n] = True
        return self._reduce(self._forward(ids, live), lengths, answers, names, draw, wanted)

    def _rows_per_pass(self, length: int) -> int:
        """Rows that fit: the logits [rows, length, V] plus as much again for the model's
        own buffers, in half the free memory (a guide, not a guarantee)."""
        if self.batch_size is not None:
            return self.batch_size
        torch, _ = _import()
        first = next(iter(self.model.parameters()), None)
        itemsize = first.element_size() if first is not None else 4
        per_row = 2 * length * self.vocab_size * max(itemsize, 4)
        return int(np.clip(_free_bytes(torch, self.device) // 2 // per_row, 1, MAX_AUTO_ROWS))

    def _scored_in_passes(self, prompts, shown, answers, names: tuple[str, ...],
                          draw: Draw | None = None,
                          wanted: np.ndarray | None = None) -> dict:
        """Statistics of all rows, in passes of `_rows_per_pass` rows (halved on OOM)."""
        b, n = answers.shape
        size = self._rows_per_pass(max(len(p) for p in prompts) + n)
        out: dict[str, np.ndarray] = {}
        lo = 0
        while lo < b:
            part = slice(lo, min(b, lo + size))
            try:
                stats = self._score(prompts[part], shown[part], answers[part], names, draw,
                                    None if wanted is None else wanted[part])
            except (RuntimeError, MemoryError) as e:
                if not _is_out_of_memory(e):
                    raise
                if self.batch_size is not None or size == 1:
                    raise ValueError(
                        f"out of memory running the model on {part.stop - part.start} rows of "
                        f"{max(len(p) for p in prompts[part]) + n} tokens on {self.device}; "
                        f"pass a smaller --batch-size (batch_size=), e.g. "
                        f"{max(1, (part.stop - part.start) // 2)}") from None
                size = max(1, size // 2)
                continue
            for name, value in stats.items():
                out.setdefault(name, np.zeros((b, n), value.dtype))[part] = value
            self.forward_passes += part.stop - part.start
            lo = part.stop
        return out

    def _check_padding_changes_nothing(self, prompts, shown, answers, got: dict,
                                       names: tuple[str, ...],
                                       draw: Draw | None = None) -> None:
        """Re-score the most padded rows alone; refuse when padding moved a score."""
        lengths = np.asarray([len(p) for p in prompts])
        if lengths.min() == lengths.max():
            return
        self._check_padding = False
        worst = 0.0
        for i in np.argsort(lengths, kind="stable")[:PADDING_CHECK_ROWS]:
            alone = self._score([prompts[i]], shown[i:i + 1], answers[i:i + 1], names, draw)
            masked = shown[i] == self.mask_id
            for name, value in alone.items():
                if draw is not None and name in ("token", "cross_entropy"):
                    continue  # of a random draw: differs between the two passes anyway
                a, b = value[0][masked], got[name][i][masked]
                with np.errstate(invalid="ignore"):  # inf - inf: equal, so no gap
                    gap = np.where(a == b, 0.0, np.abs(a - b))
                worst = max(worst, float(np.nan_to_num(gap, nan=np.inf).max(initial=0.0)))
        first = next(iter(self.model.parameters()), None)
        tol = 1e-3 if first is None or first.element_size() >= 4 else 5e-2
        if worst > tol:
            raise ValueError(
                f"the model's scores change when a row is right-padded (by up to {worst:.3g} "
                f"nats at an answer position, attention {self.attention!r}): its forward "
                "ignores or misreads the attention mask; pass --attention-mask none "
                "(attention='none') so rows are grouped by prompt length and never padded")

    def token_statistics(
        self, prompts: Sequence[np.ndarray], answers: np.ndarray, revealed: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """float64[B, n] cross-entropy and predictive entropy at every answer position (nats)."""
        return self._statistics(prompts, answers, revealed, ("cross_entropy", "entropy"))

    def rule_statistics(
        self, prompts: Sequence[np.ndarray], answers: np.ndarray, revealed: np.ndarray, *,
        statistics: Sequence[str] = STATISTICS,
    ) -> tuple[np.ndarray, ...]:
        """float64[B, n] cross-entropy, entropy, log top-1 and log top-2 probability (nats).

        What the state-dependent unmasking rules of `schedopt.rules` rank by: given at the
        masked positions only (NaN where `revealed`, whose logits are never reduced: a rule
        chooses among masked positions, and this halves the work on average). Only the
        `statistics` named are computed (a rule's `statistics_read`); the others are NaN.
        """
        return self._statistics(prompts, answers, revealed, tuple(statistics),
                                masked_only=True, every=True)

    def sampled_statistics(
        self, prompts: Sequence[np.ndarray], state: np.ndarray, revealed: np.ndarray, *,
        temperature: float, generator: Any = None, statistics: Sequence[str] = STATISTICS,
    ) -> tuple[np.ndarray, ...]:
        """One decoding step: a token drawn at every answer position, and its statistics.

        Args:
            prompts: B int arrays, always visible.
            state: int[B, n] answers so far (read only where `revealed`).
            revealed: bool[B, n].
            temperature: draw from softmax(logits / temperature); 0 takes the argmax.
            generator: a torch.Generator on the model's device (temperature > 0).
            statistics: the statistics to compute, as in `rule_statistics`.

        Returns:
            (tokens int64[B, n], cross_entropy, entropy, log_top1, log_top2 float64[B, n]):
            the statistics are those of the distribution drawn from, cross_entropy that of
            the drawn token (nats); at masked positions only, as `rule_statistics` (token 0
            and NaN where `revealed`).
        """
        draw = Draw(float(temperature), generator)
        out = self._statistics(prompts, state, revealed, tuple(statistics), draw,
                               masked_only=True, every=True)
        return (out[-1].astype(np.int64), *out[:-1])

    def _statistics(self, prompts, answers, revealed, names: tuple[str, ...],
                    draw: Draw | None = None, *, masked_only: bool = False,
                    every: bool = False) -> tuple[np.ndarray, ...]:
        """The statistics `names` for every row, float64[B, n] each (then the drawn tokens,
        with `draw`: see `_reduce`); with `masked_only`, NaN at revealed positions, which are
        then not reduced at all; with `every`, all of `STATISTICS`, NaN where not named."""
        answers = np.asarray(answers, np.int64)
        b, n = answers.shape
        prompts = [np.asarray(p, np.int64) for p in prompts]
        lengths = np.asarray([len(p) for p in prompts])
        shown = np.where(revealed, answers, self.mask_id)
        if self.attention != "none":
            groups = [np.arange(b)]
        else:  # no attention mask: never pad, run each prompt length on its own
            groups = [np.nonzero(lengths == v)[0] for v in np.unique(lengths)]
        stats: dict[str, np.ndarray] = {}
        for rows in groups:
            part_prompts = [prompts[i] for i in rows]
            wanted = ~np.asarray(revealed, bool)[rows] if masked_only else None
            got = self._scored_in_passes(part_prompts, shown[rows], answers[rows], names, draw,
                                         wanted)
            if self._check_padding and self.attention != "none":
                self._check_padding_changes_nothing(part_prompts, shown[rows], answers[rows],
                                                    got, names, draw)
            for name, value in got.items():
                stats.setdefault(name, np.zeros((b, n), value.dtype))[rows] = value
        out = tuple(stats[name] if name in stats else np.full((b, n), np.nan)
                    for name in (STATISTICS if every else names))
        return out + ((stats["token"],) if draw is not None else ())


def hf_scorer(
    name_or_dir: str,
    *,
    mask_id: int,
    trust_remote_code: bool = False,
    device: str = "cpu",
    dtype: str | None = None,
    batch_size: int | None = None,
    vocab_size: int | None = None,
    shifted: bool | None = None,
    attention: str = "auto",
    force_mask_id: bool = False,
) -> tuple[HFScorer, Any]:
    """Load a model by name or directory and wrap it: (HFScorer, tokenizer or None).

    The keyword arguments after `dtype` are `HFScorer`'s.
    """
    model, tokenizer = load_hf_model(name_or_dir, trust_remote_code=trust_remote_code,
                                     device=device, dtype=dtype)
    scorer = HFScorer(model, mask_id=mask_id, batch_size=batch_size, vocab_size=vocab_size,
                      shifted=shifted, attention=attention, force_mask_id=force_mask_id)
    return scorer, tokenizer
