"""The lm-evaluation-harness model "schedopt": a Hugging Face masked diffusion LM decoded with a
schedule and an unmasking rule (`schedopt.generate`), scored with LLaDA's Monte Carlo bound.

    python -m schedopt.lm_eval_model --model schedopt --tasks TASK \\
        --model_args pretrained=DIR,schedule=S.json,rule=confidence,block_length=32

lm_eval finds models only in its registry, which imports fill (it reads no entry points for
models), so this module registers "schedopt" when imported and, run as a program, hands its
arguments to lm_eval's own command line, as LLaDA's eval_llada.py does. From Python, import it
before `lm_eval.simple_evaluate(model="schedopt", model_args=...)`.

- `generate_until` decodes every request's answer with `schedopt.generate` (the rule's choices,
  the schedule's counts; exact log-probabilities), decodes it with the tokenizer and cuts it at
  the first of the request's `until` strings or the tokenizer's EOS token. The answer length is
  the schedule's (or `gen_length`); the request's `max_gen_toks` and sampling settings are
  ignored: the sampler is set by the model arguments.
- `loglikelihood(context, continuation)` is the Monte Carlo estimator of LLaDA's eval_llada.py
  (`get_loglikelihood`, `_forward_process`): for mc_num / batch_size rounds, draw k uniform in
  1..n (n continuation tokens), mask l_i = ((round(k + i n / b) - 1) mod n) + 1 of them in row
  i = 0..b-1 (a uniformly random subset; a stratified l), and average
  -(n / l_i) sum_{masked j} -log p(c_j | context, unmasked continuation) over the rows. Its
  expectation is the masked diffusion ELBO, E_l[(n / l) E_S sum_{j in S} log p(c_j | ...)], a
  lower bound on the model's log p(continuation | context) (exact for one token). The draws
  come from a torch CPU generator seeded by (seed, the pair's text), so a pair's value does not
  depend on the other requests. With check_greedy=True the second value says whether greedy
  one-token-per-step confidence decoding (LLaDA's suffix_greedy_prediction) gives the
  continuation; otherwise it is False.
- `loglikelihood_rolling` is not provided (perplexity tasks).

The forward passes, answer tokens per second, the seed and the library versions are logged
after each call and returned in the results' "config" (`get_model_info`).
"""

from __future__ import annotations

import importlib.metadata
import logging
import sys
import time
import zlib
from typing import Any

import numpy as np

try:
    from lm_eval.api.model import LM
    from lm_eval.api.registry import register_model
except ImportError:
    raise ImportError("the lm-evaluation-harness model needs lm_eval, which is not installed; "
                      "pip install 'schedopt[lmeval]'") from None

from ._internal.checks import whole_number
from .decode import generate
from .rules import ORDERS, EntropyBoundRule, OrderRule, ThresholdRule
from .schedule import Schedule

NAME = "schedopt"
LOG = logging.getLogger("lm_eval.schedopt")
VERSIONED = ("schedopt", "lm_eval", "torch", "transformers", "jax")
ADAPTIVE = {"threshold": "tau", "entropy-bound": "gamma"}


def versions() -> dict[str, str | None]:
    """Installed versions of the libraries a result depends on (None: not installed)."""
    out = {}
    for name in VERSIONED:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def _whole(value: Any, name: str, minimum: int = 1) -> int:
    return whole_number(value, name, minimum=minimum)


def _device(device: str) -> str:
    """`device`, or "cpu" when it names CUDA on a machine without it: lm_eval's command line
    passes device="cuda:0" unless told otherwise (its HFLM falls back the same way)."""
    import torch

    if str(device).startswith("cuda") and not torch.cuda.is_available():
        LOG.warning("device %s asked for but CUDA is not available; using cpu", device)
        return "cpu"
    return str(device)


@register_model(NAME)
class SchedoptLM(LM):
    """lm_eval model arguments (`--model_args key=value,...`).

    Args:
        pretrained: a local model directory (or a name in the local Hugging Face cache).
        schedule: a schedopt schedule file (order rules): for the whole answer, or for one block
            of `block_length` tokens, repeated in every block of `gen_length`.
        rule: confidence | margin | entropy | left-to-right | random (with a schedule), or
            threshold (with tau=) | entropy-bound (with gamma=) (with gen_length=).
        block_length: decode in blocks of this many tokens (default: the schedule's own).
        gen_length: answer tokens (default: the schedule's n).
        temperature, seed: as `schedopt.generate` (seed also seeds the Monte Carlo draws).
        mc_num, batch_size: Monte Carlo samples per loglikelihood request, in stratified rounds
            of batch_size (mc_num must be a multiple); batch_size also sets the rows per
            forward pass and the answers decoded together.
        check_greedy: compute loglikelihood's is-greedy flag (n forward passes per request).
        mask_id: the mask token id (default: the tokenizer's).
        trust_remote_code, device, dtype: as `schedopt.sources.hf_scorer`.
    """

    def __init__(self, pretrained: str | None = None, schedule: str | None = None,
                 rule: str = "confidence", tau: float | None = None,
                 gamma: float | None = None, block_length: int | None = None,
                 gen_length: int | None = None, temperature: float = 0.0, seed: int = 0,
                 mc_num: int = 128, batch_size: int | str = 32, check_greedy: bool = False,
                 mask_id: int | None = None, trust_remote_code: bool = False,
                 device: str = "cpu", dtype: str | None = None,
                 max_batch_size: int | None = None, **unknown: Any):
        super().__init__()
        if unknown:
            raise ValueError(f"unknown model argument(s) {', '.join(sorted(unknown))}; the "
                             "schedopt model takes " + ", ".join(_ARGUMENTS))
        if not pretrained:
            raise ValueError("give the model directory: --model_args pretrained=DIR,...")
        self.seed = _whole(seed, "seed", 0)
        self.mc_num = _whole(mc_num, "mc_num")
        self.batch_size = _whole(batch_size, "batch_size (--batch_size; 'auto' is not "
                                 "supported)")
        if self.mc_num % self.batch_size:
            raise ValueError(f"mc_num = {self.mc_num} is not a multiple of batch_size = "
                             f"{self.batch_size}; the Monte Carlo draws come in rounds of "
                             "batch_size rows (LLaDA's rule)")
        self.temperature = float(temperature)
        self.check_greedy = bool(check_greedy)
        block = None if block_length is None else _whole(block_length, "block_length")
        self.rule, self.counts, self.length = _sampler(rule, schedule, tau, gamma, block,
                                                       gen_length)
        from .sources import HFScorer, load_hf_model

        model, self.tokenizer = load_hf_model(str(pretrained), device=_device(device), dtype=dtype,
                                              trust_remote_code=bool(trust_remote_code))
        if self.tokenizer is None:
            raise ValueError(f"{pretrained} has no tokenizer; lm_eval's requests are text")
        if mask_id is None:
            mask_id = getattr(self.tokenizer, "mask_token_id", None)
            if mask_id is None:
                raise ValueError(f"{pretrained}'s tokenizer names no mask token; add "
                                 "mask_id=ID to --model_args (126336 for LLaDA)")
        self.scorer = HFScorer(model, mask_id=_whole(mask_id, "mask_id", 0),
                               batch_size=self.batch_size)
        self._device = self.scorer.device
        self.config = {"pretrained": str(pretrained), "schedule": schedule,
                       "rule": self.rule.name, "block_length": self.rule.block_length,
                       "gen_length": self.length, "temperature": self.temperature,
                       "seed": self.seed, "mc_num": self.mc_num, "batch_size": self.batch_size,
                       "tokens_per_step": None if self.counts is None
                       else [int(c) for c in self.counts]}
        self.stats = {"generate_until": {"answers": 0, "forward_passes": 0, "answer_tokens": 0,
                                         "seconds": 0.0},
                      "loglikelihood": {"requests": 0, "forward_passes": 0, "seconds": 0.0}}

    @classmethod
    def create_from_arg_obj(cls, arg_dict: dict[str, Any],
                            additional_config: dict[str, Any] | None = None) -> SchedoptLM:
        """The model from --model_args and the command line's --batch_size and --device.

        lm_eval always passes its own batch_size (default 1) and device (default cuda:0);
        a value also given in --model_args wins, so `batch_size=` there is not a clash.
        """
        extra = {k: v for k, v in (additional_config or {}).items()
                 if v is not None and k not in arg_dict}
        return cls(**arg_dict, **extra)

    @classmethod
    def create_from_arg_string(cls, arg_string: str,
                               additional_config: dict[str, Any] | None = None) -> SchedoptLM:
        from lm_eval.utils import simple_parse_args_string

        return cls.create_from_arg_obj(simple_parse_args_string(arg_string), additional_config)

    # ------------------------------------------------------------------ generation
    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        """One answer per request, cut at its `until` strings (see the module docstring)."""
        if not requests:
            return []
        import jax

        prompts = [self._encode(r.args[0]) for r in requests]
        out = generate(self.scorer, prompts, self.rule, self.counts, length=self.length,
                       temperature=self.temperature, key=jax.random.key(self.seed),
                       batch_size=self.batch_size)
        texts = []
        for request, tokens in zip(requests, out.tokens, strict=True):
            text = self.tokenizer.decode(tokens.tolist(), skip_special_tokens=False)
            text = cut(text, self._stops(request.args[1] if len(request.args) > 1 else {}))
            self.cache_hook.add_partial("generate_until", request.args, text)
            texts.append(text)
        s = self.stats["generate_until"]
        s["answers"] += len(requests)
        s["forward_passes"] += int(out.passes.sum())
        s["answer_tokens"] += int(out.tokens.size)
        s["seconds"] += out.seconds
        s["tokens_per_second"] = s["answer_tokens"] / s["seconds"] if s["seconds"] else None
        LOG.info("schedopt generate_until: %d answers, %d forward passes (%.1f per answer), "
                 "%.1f answer tokens/s, seed %d", len(requests), int(out.passes.sum()),
                 float(out.passes.mean()), out.tokens_per_second, self.seed)
        return texts

    def _stops(self, gen_kwargs: Any) -> list[str]:
        until = gen_kwargs.get("until", []) if isinstance(gen_kwargs, dict) else []
        stops = [until] if isinstance(until, str) else list(until or [])
        eos = getattr(self.tokenizer, "eos_token", None)
        return stops + ([eos] if isinstance(eos, str) and eos else [])

    # ------------------------------------------------------------------ likelihood
    def loglikelihood(self, requests: list, disable_tqdm: bool = False) -> list[tuple]:
        """(LLaDA's Monte Carlo ELBO estimate, is-greedy) per (context, continuation)."""
        start, passes = time.perf_counter(), self.scorer.forward_passes
        out = []
        for request in requests:
            context, continuation = request.args
            prompt, target = self._encode_pair(context, continuation)
            value = monte_carlo_loglikelihood(self.scorer, prompt, target, self.mc_num,
                                              self.batch_size, draws(self.seed, context,
                                                                     continuation))
            greedy = self._is_greedy(prompt, target) if self.check_greedy else False
            self.cache_hook.add_partial("loglikelihood", request.args, (value, greedy))
            out.append((value, greedy))
        s = self.stats["loglikelihood"]
        s["requests"] += len(requests)
        s["forward_passes"] += self.scorer.forward_passes - passes
        s["seconds"] += time.perf_counter() - start
        LOG.info("schedopt loglikelihood: %d requests, %d forward passes (mc_num %d), seed %d",
                 len(requests), self.scorer.forward_passes - passes, self.mc_num, self.seed)
        return out

    def _is_greedy(self, prompt: np.ndarray, target: np.ndarray) -> bool:
        if target.size == 0:
            return True
        got = generate(self.scorer, [prompt], OrderRule("confidence"), np.ones(target.size, int))
        return bool(np.array_equal(got.tokens[0], target))

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list:
        raise NotImplementedError(
            "the schedopt model has no loglikelihood_rolling (perplexity tasks such as "
            "wikitext): a masked diffusion model gives no left-to-right likelihood; use "
            "loglikelihood or generate_until tasks")

    # ------------------------------------------------------------------ text
    def _encode(self, text: str) -> np.ndarray:
        return np.asarray(self.tokenizer(text)["input_ids"], np.int64)

    def _encode_pair(self, context: str, continuation: str) -> tuple[np.ndarray, np.ndarray]:
        """The context as a prompt (with the tokenizer's special tokens, as generate_until's)
        and the continuation's tokens as they fall in context + continuation (context's
        trailing spaces moved to the continuation, as lm_eval and LLaDA do)."""
        spaces = len(context) - len(context.rstrip())
        if spaces:
            context, continuation = context[:-spaces], context[-spaces:] + continuation
        plain = self.tokenizer(context, add_special_tokens=False)["input_ids"]
        whole = self.tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
        return self._encode(context), np.asarray(whole[len(plain):], np.int64)

    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "")).replace("/", "__")

    def apply_chat_template(self, chat_history: list[dict[str, str]],
                            add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def get_model_info(self) -> dict:
        """What the results' "config" records: the sampler, the counts, the versions."""
        return {"schedopt": {**self.config, "versions": versions(), "stats": self.stats}}


_ARGUMENTS = ("pretrained", "schedule", "rule", "tau", "gamma", "block_length", "gen_length",
              "temperature", "seed", "mc_num", "batch_size", "check_greedy", "mask_id",
              "trust_remote_code", "device", "dtype")


def cut(text: str, stops: list[str]) -> str:
    """`text` up to the first occurrence of any of `stops`."""
    end = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=len(text))
    return text[:end]


def draws(seed: int, context: str, continuation: str):
    """The torch CPU generator of one pair's Monte Carlo draws: seeded by (seed, its text)."""
    import torch

    state = np.random.SeedSequence([seed, zlib.crc32(context.encode()),
                                    zlib.crc32(continuation.encode())]).generate_state(1)
    return torch.Generator().manual_seed(int(state[0]))


def monte_carlo_loglikelihood(scorer: Any, prompt: np.ndarray, target: np.ndarray,
                              mc_num: int, batch_size: int, generator: Any) -> float:
    """LLaDA's estimate of log p(target | prompt) (an ELBO in expectation; module docstring).

    `generator` is a torch.Generator, drawn from as LLaDA's `_forward_process` draws: per
    round, k = randint(1, n + 1), then one randperm(n) per row.
    """
    import torch

    n = int(target.size)
    if n == 0:
        return 0.0
    masked, ratio = [], []
    for _ in range(mc_num // batch_size):
        k = int(torch.randint(1, n + 1, (), generator=generator))
        count = torch.round(torch.linspace(float(k), k + (batch_size - 1) * (n / batch_size),
                                           steps=batch_size)).long()
        count = (count - 1) % n + 1
        for i in range(batch_size):
            masked.append((torch.randperm(n, generator=generator) < count[i]).numpy())
        ratio.append(count.numpy() / n)
    masked, ratio = np.stack(masked), np.concatenate(ratio)
    rows = masked.shape[0]
    ce, _ = scorer.token_statistics([prompt] * rows, np.tile(target, (rows, 1)), ~masked)
    loss = np.where(masked, ce, 0.0).sum(axis=1) / ratio
    return float(-loss.mean())


def _sampler(rule: str, schedule: str | None, tau: Any, gamma: Any, block: int | None,
             gen_length: Any):
    """(rule, counts or None, answer length) from the model arguments."""
    length = None if gen_length is None else _whole(gen_length, "gen_length")
    rule = str(rule).replace("_", "-")
    if rule in ADAPTIVE:
        if schedule is not None:
            raise ValueError(f"rule={rule} chooses its own counts; drop schedule=")
        value = tau if rule == "threshold" else gamma
        if value is None:
            raise ValueError(f"rule={rule} needs {ADAPTIVE[rule]}=VALUE in --model_args")
        if length is None:
            raise ValueError(f"rule={rule} needs the answer length; add gen_length=N")
        made = (ThresholdRule if rule == "threshold" else EntropyBoundRule)(float(value), block)
        return made, None, length
    if rule not in ORDERS:
        raise ValueError(f"unknown rule {rule!r}; use one of {', '.join(ORDERS)}, threshold "
                         "(with tau=) or entropy-bound (with gamma=)")
    if schedule is None:
        raise ValueError(f"rule={rule} needs a count schedule; add schedule=S.json")
    s = Schedule.load(schedule)
    own = s.meta.get("block_length")
    if block is not None and own is not None and block != own:
        raise ValueError(f"the schedule is for blocks of {own} tokens but block_length is "
                         f"{block}; drop block_length or pass {own}")
    block = block if block is not None else own
    counts = np.asarray(s.tokens_per_step, np.int64)
    length = s.n if length is None else length
    if s.n != length:
        if block is None or s.n != block or length % block:
            raise ValueError(f"the schedule covers {s.n} tokens but gen_length is {length}; "
                             "give a schedule for the whole answer, or one for a block of "
                             "block_length tokens with gen_length a multiple of it")
        counts = np.tile(counts, length // block)
    return OrderRule(rule, block), counts, length


def main() -> None:
    """lm_eval's command line, with the "schedopt" model registered."""
    from lm_eval.__main__ import cli_evaluate

    sys.argv[0] = "python -m schedopt.lm_eval_model"
    cli_evaluate()


if __name__ == "__main__":
    main()
