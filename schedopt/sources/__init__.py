"""Trained-model sources: Hugging Face and torch adapters, prompts and scorers, prompt/answer
files, and the shipped data. Known laws are in `schedopt.distributions`, JAX models in
`schedopt.models`."""

from ._conditioning import TokenScorer as TokenScorer
from ._conditioning import block_orders as block_orders
from ._conditioning import check_prompts as check_prompts
from ._conditioning import check_vocabulary as check_vocabulary
from ._conditioning import is_scorer as is_scorer
from ._conditioning import masked_row_means as masked_row_means
from ._conditioning import prompt_groups as prompt_groups
from ._conditioning import with_prompt as with_prompt
from ._data import check_sequences as check_sequences
from ._data import default_hmm as default_hmm
from ._data import digits as digits
from ._data import load_dataset as load_dataset
from ._hf import STATISTICS as STATISTICS
from ._hf import TRANSFORMERS_RANGE as TRANSFORMERS_RANGE
from ._hf import HFScorer as HFScorer
from ._hf import hf_scorer as hf_scorer
from ._hf import load_hf_model as load_hf_model
from ._hf import position_statistics as position_statistics
from ._pairs import read_pairs as read_pairs
from ._pairs import read_prompts as read_prompts
from ._torch import torch_logits_fn as torch_logits_fn
