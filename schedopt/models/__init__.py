"""Masked diffusion models: a small bidirectional transformer, its training and checkpoints.

`MaskedDiffusionTransformer` maps token ids (masked positions hold `config.mask_id`) to logits;
`train` fits it on the masked cross-entropy with held-out early stopping; `save_checkpoint` and
`load_checkpoint` store it as safetensors plus JSON; `logits_fn(model)` is the adapter the
estimator and `schedule_nll` take.
"""

from ._checkpoint import PRETRAINED as PRETRAINED
from ._checkpoint import load_checkpoint as load_checkpoint
from ._checkpoint import save_checkpoint as save_checkpoint
from ._training import TrainResult as TrainResult
from ._training import heldout_masked_ce as heldout_masked_ce
from ._training import masked_cross_entropy as masked_cross_entropy
from ._training import random_revealed as random_revealed
from ._training import train as train
from ._transformer import LogitsFn as LogitsFn
from ._transformer import MaskedDiffusionTransformer as MaskedDiffusionTransformer
from ._transformer import MDMConfig as MDMConfig
from ._transformer import init_model as init_model
from ._transformer import logits_fn as logits_fn
from ._transformer import masked_inputs as masked_inputs
