"""A small dilated-convolution masked LM (schedopt's stdlib example)."""

import torch
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import MaskedLMOutput


class StdlibConvConfig(PretrainedConfig):
    model_type = "schedopt_stdlib_conv"

    def __init__(self, vocab_size=512, width=96, kernel=5, dilations=(1, 2, 4, 8), **kwargs):
        self.vocab_size, self.width, self.kernel = vocab_size, width, kernel
        self.dilations = list(dilations)
        super().__init__(**kwargs)


class StdlibConvForMaskedLM(PreTrainedModel):
    config_class = StdlibConvConfig
    base_model_prefix = "stdlib_conv"  # not a prefix of any weight name (transformers 4 strips it)

    def __init__(self, config):
        super().__init__(config)
        d, k = config.width, config.kernel
        self.embed = torch.nn.Embedding(config.vocab_size, d)
        self.convs = torch.nn.ModuleList(
            torch.nn.Conv1d(d, d, k, padding=(k // 2) * r, dilation=r) for r in config.dilations)
        self.norms = torch.nn.ModuleList(torch.nn.LayerNorm(d) for _ in config.dilations)
        self.head = torch.nn.Linear(d, config.vocab_size)
        self.post_init()

    def _init_weights(self, module):
        pass  # PyTorch's default initialisation

    def forward(self, input_ids, attention_mask=None, **kwargs):
        h = self.embed(input_ids)
        keep = None if attention_mask is None else attention_mask[..., None].to(h.dtype)
        for conv, norm in zip(self.convs, self.norms, strict=True):
            if keep is not None:
                h = h * keep  # padding contributes nothing to its neighbours
            h = h + torch.nn.functional.gelu(conv(norm(h).transpose(1, 2)).transpose(1, 2))
        return MaskedLMOutput(logits=self.head(h))
