"""Tiny Hugging Face models and tokenizers built offline for the tests (nothing downloaded).

- `save_tokenizer(dir)`: a word-level fast tokenizer with [PAD], [UNK], [MASK], [EOS] and a
  chat template.
- `save_bert(dir)`: a randomly initialised BERT-style AutoModelForMaskedLM from a config.
- `save_markov_model(dir, transition)`: a `trust_remote_code` model directory with its own
  configuration and modeling files (as LLaDA and Dream ship), whose logits are the exact
  conditionals of a stationary Markov chain given any revealed positions: the law is known, so
  prompt-conditioned curves can be checked against closed forms. Options reproduce the
  conventions of real checkpoints: `dream=True` (config.model_type "Dream", output i predicts
  position i + 1, attention takes only a 4-D bool/float mask, as Dream's sdpa attention),
  `ignore_mask=True` (accepts `attention_mask` but ignores it, as Fast-dLLM's copy of LLaDA;
  its outputs are then sharpened by the number of mask tokens in the row, so padding shows),
  `fail_on_load` (raises inside its own __init__, as LLaDA does under transformers 5) and
  `min_tokens` (refuses shorter inputs).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

WORDS = ["[PAD]", "[UNK]", "[MASK]", "[EOS]", "<user>", "<assistant>"] + [
    "the", "cat", "dog", "sat", "ran", "on", "a", "mat", "log", "and", "is", "what", "who",
    "red", "blue", "big", "small", "?", ".",
]
MASK_ID, EOS_ID = 2, 3
CHAT_TEMPLATE = (
    "{% for m in messages %}<user> {{ m['content'] }} {% endfor %}"
    "{% if add_generation_prompt %}<assistant>{% endif %}"
)


def save_tokenizer(path: Path) -> Path:
    from tokenizers import Tokenizer
    from tokenizers.models import WordLevel
    from tokenizers.pre_tokenizers import Whitespace
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tok.pre_tokenizer = Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]",
                                   mask_token="[MASK]", eos_token="[EOS]")
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(path)
    return path


def save_bert(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(WORDS), hidden_size=16, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=32, max_position_embeddings=64)
    model = BertForMaskedLM(config)
    # Larger output weights give peaked, varied predictions (a random init is nearly uniform).
    with torch.no_grad():
        model.cls.predictions.decoder.weight.mul_(40.0)
    model.save_pretrained(path)
    save_tokenizer(path)
    return path


CONFIGURATION = '''
from transformers import PretrainedConfig


class MarkovChainConfig(PretrainedConfig):
    model_type = "markov_chain_test"

    def __init__(self, states=3, mask_id=3, shift=False, mask_format="2d", fail_on_load="",
                 min_tokens=0, **kwargs):
        self.states = states
        self.mask_id = mask_id
        self.shift = shift
        self.mask_format = mask_format
        self.fail_on_load = fail_on_load
        self.min_tokens = min_tokens
        super().__init__(**kwargs)


class DreamLikeConfig(MarkovChainConfig):
    model_type = "Dream"
'''

MODELING = '''
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput

from .configuration_markov import DreamLikeConfig, MarkovChainConfig


class MarkovChainModel(PreTrainedModel):
    """Exact conditionals of a stationary Markov chain with transition matrix `transition`."""

    config_class = MarkovChainConfig
    base_model_prefix = "markov"

    def __init__(self, config):
        if config.fail_on_load:
            raise AttributeError(config.fail_on_load)
        super().__init__(config)
        self.transition = torch.nn.Parameter(torch.full((config.states, config.states),
                                                        1.0 / config.states))
        self.post_init()

    def _init_weights(self, module):
        pass

    def forward(self, input_ids, attention_mask=None, **kwargs):
        p = self.transition.double()
        s = p.shape[0]
        vals, vecs = torch.linalg.eig(p.T)
        pi = vecs[:, torch.argmin((vals - 1).abs())].real
        pi = pi / pi.sum()
        b, length = input_ids.shape
        if length < self.config.min_tokens:
            raise RuntimeError(f"inputs must have at least {self.config.min_tokens} tokens")
        if self.config.mask_format == "4d" and attention_mask is not None:
            if attention_mask.ndim != 4 or not (attention_mask.dtype == torch.bool
                                                or attention_mask.is_floating_point()):
                raise RuntimeError("Expected attn_mask dtype to be bool or float or to match "
                                   "query dtype")
            attention_mask = attention_mask[:, 0, -1, :].long()  # the last query's live keys
        if self.config.mask_format == "ignore" or attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        powers = [torch.eye(s, dtype=p.dtype)]
        for _ in range(length):
            powers.append(powers[-1] @ p)
        out = torch.zeros(b, length, s, dtype=torch.float64)
        for r in range(b):
            live = int(attention_mask[r].sum())
            ids = input_ids[r, :live].tolist()
            shown = [t != self.config.mask_id for t in ids]
            for i in range(live):
                if shown[i]:
                    row = torch.full((s,), float("-inf"), dtype=torch.float64)
                    row[ids[i]] = 0.0
                    out[r, i] = row
                    continue
                left = [j for j in range(i) if shown[j]]
                right = [j for j in range(i + 1, live) if shown[j]]
                w = powers[i - left[-1]][ids[left[-1]]] if left else pi
                if right:
                    w = w * powers[right[0] - i][:, ids[right[0]]]
                out[r, i] = torch.log(w / w.sum())
        if self.config.mask_format == "ignore":  # padding's mask tokens sharpen every output
            masked = (input_ids == self.config.mask_id).sum(-1).double()
            out = torch.log_softmax(out * (1.0 + 0.1 * masked)[:, None, None], dim=-1)
        if self.config.shift:  # output i predicts position i + 1 (the last output repeats)
            out = torch.cat([out[:, 1:], out[:, -1:]], dim=1)
        return MaskedLMOutput(logits=out.float())


class DreamLikeModel(MarkovChainModel):
    config_class = DreamLikeConfig
'''


def save_markov_model(path: Path, transition: np.ndarray, *, dream: bool = False,
                      ignore_mask: bool = False, fail_on_load: str = "",
                      min_tokens: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    states = transition.shape[0]
    (path / "configuration_markov.py").write_text(CONFIGURATION)
    (path / "modeling_markov.py").write_text(MODELING)
    config_class = "DreamLikeConfig" if dream else "MarkovChainConfig"
    config = {
        "model_type": "Dream" if dream else "markov_chain_test",
        "architectures": ["MarkovChainModel"],
        "auto_map": {"AutoConfig": f"configuration_markov.{config_class}",
                     "AutoModel": "modeling_markov."
                                  + ("DreamLikeModel" if dream else "MarkovChainModel")},
        "states": states,
        "mask_id": states,
        "mask_token_id": states,
        "vocab_size": states,
        "shift": dream,
        "mask_format": "4d" if dream else "ignore" if ignore_mask else "2d",
        "fail_on_load": fail_on_load,
        "min_tokens": min_tokens,
    }
    (path / "config.json").write_text(json.dumps(config))
    save_file({"transition": torch.tensor(transition, dtype=torch.float32)},
              str(path / "model.safetensors"), metadata={"format": "pt"})
    return path


def stationary(transition: np.ndarray) -> np.ndarray:
    vals, vecs = np.linalg.eig(transition.T)
    pi = np.real(vecs[:, np.argmin(np.abs(vals - 1))])
    return pi / pi.sum()


def sample_chain(transition: np.ndarray, lengths, seed: int) -> list[np.ndarray]:
    """Stationary chains of the given lengths."""
    rng = np.random.default_rng(seed)
    pi = stationary(transition)
    out = []
    for length in lengths:
        x = [rng.choice(len(pi), p=pi)]
        for _ in range(length - 1):
            x.append(rng.choice(len(pi), p=transition[x[-1]]))
        out.append(np.asarray(x))
    return out
