"""Generate answers with a schedule and an unmasking rule: the sampler users run (theory §13).

`generate` decodes every prompt's answer from the all-masked state. At each step the model
sees the prompt and the tokens revealed so far, a token is drawn at every masked position
(the argmax at temperature 0, else from softmax(logits / temperature)), the rule picks the
positions to reveal from the statistics of that distribution alone (confidence, margin,
entropy, left-to-right, a random order, a threshold or an entropy bound; with a block length,
inside the current block), and their drawn tokens are revealed. An order rule reveals exactly
the schedule's count at each step.

This is the loop `schedopt.rules.rule_nll` teacher-forces, written once (`rules.follow`), so
the log-probability `generate` reports for an output equals minus the teacher-forced NLL of
that output under the same rule and counts: the sampler's exact log-likelihood of its sample.

At temperature 0 the choices are those of LLaDA's `generate()` with `remasking =
"low_confidence"` (confidence = the argmax's probability) and of Dream's "entropy" and
"topk_margin" algorithms. At a temperature above 0 LLaDA ranks by the probability of the drawn
token instead, which makes the choice depend on the draw; schedopt ranks by the distribution
(as Dream does), the form whose NLL theory §13 makes exact.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.checks import check_tokens_per_step, real_number, whole_number
from ..rules import OrderRule, PositionStats, Rule, follow, logit_statistics, statistics_read
from ..sources import check_prompts, is_scorer


@dataclasses.dataclass(frozen=True)
class Generation:
    """The answers `generate` drew.

    Attributes:
        tokens: int64[M, n] answer tokens.
        log_prob: float64[M], the sampler's log-probability of each answer given its prompt
            (nats; the sum of the drawn tokens' log-probabilities at the steps they appeared).
        passes: int64[M] forward passes per answer (T for an order rule).
        seconds: wall-clock time of the decoding, s.
    """

    tokens: np.ndarray
    log_prob: np.ndarray
    passes: np.ndarray
    seconds: float

    @property
    def tokens_per_second(self) -> float:
        """Answer tokens produced per second of decoding."""
        return float(self.tokens.size / self.seconds) if self.seconds > 0 else float("inf")


def generate(model: Any, prompts: Any, rule: Rule, counts: Any = None, *,
             length: int | None = None, temperature: float = 0.0,
             key: jax.Array | None = None, batch_size: int = 64) -> Generation:
    """Decode one answer per prompt with `rule` (and `counts` for an order rule).

    Args:
        model: a `schedopt.sources.HFScorer` (any Hugging Face masked LM), or a JAX logits_fn
            (tokens int32[B, L], revealed bool[B, L]) -> logits [B, L, V].
        prompts: M token-id lists of any lengths (an HFScorer pads them; a JAX logits_fn
            needs one length), or an int array [M, P].
        rule: `OrderRule`, `ThresholdRule` or `EntropyBoundRule` (schedopt.rules).
        counts: tokens per step int[T] (or a `Schedule`) for an order rule; None otherwise.
        length: answer length n; default the counts' sum (required for adaptive rules).
        temperature: >= 0; 0 is greedy (argmax).
        key: JAX PRNG key, required when temperature > 0 or the rule is "random".
        batch_size: answers decoded together.

    Returns:
        A `Generation`.
    """
    counts, n = _counts_and_length(rule, counts, length)
    temperature = real_number(temperature, "temperature", minimum=0.0)
    batch_size = whole_number(batch_size, "batch_size", minimum=1)
    if key is None and (temperature > 0 or rule.name == "random"):
        raise ValueError("sampling at a temperature above 0, or the 'random' order, needs a "
                         "PRNG key; pass key=jax.random.key(seed)")
    if prompts is None:
        raise ValueError("give prompts (M token-id lists; empty lists for no prompt)")
    plist = check_prompts(prompts, len(prompts))
    m = len(plist)
    if m == 0:
        raise ValueError("prompts is empty; give at least one prompt")
    keys = jax.random.split(key, 3) if key is not None else (None, None, None)
    order = None
    if rule.name == "random":
        order = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, n))(
            jax.random.split(keys[0], m)))
    step_fn = _step_function(model, rule, plist, temperature, keys[1])
    tokens = np.zeros((m, n), np.int64)
    log_prob, passes = np.zeros(m), np.zeros(m, np.int64)
    start = time.perf_counter()
    for lo in range(0, m, batch_size):
        rows = np.arange(lo, min(m, lo + batch_size))
        t, nll, p = follow(lambda live, tok, rev, rows=rows: step_fn(rows[live], tok, rev),
                           (rows.size, n), rule, counts,
                           order=None if order is None else order[rows])
        tokens[rows], log_prob[rows], passes[rows] = t, -nll, p
    return Generation(tokens=tokens, log_prob=log_prob, passes=passes,
                      seconds=time.perf_counter() - start)


def _counts_and_length(rule: Rule, counts: Any, length: Any) -> tuple[np.ndarray | None, int]:
    """The checked counts (None for adaptive rules) and the answer length n."""
    if isinstance(rule, OrderRule):
        if counts is None:
            raise ValueError(f"the {rule.name!r} order needs a count schedule; give counts "
                             "(tokens per step) or a Schedule")
        counts = np.asarray(getattr(counts, "tokens_per_step", counts))
        n = int(counts.sum()) if length is None else whole_number(length, "length", minimum=1)
        return check_tokens_per_step(counts, n, "schedule"), n
    if counts is not None:
        raise ValueError(f"the {rule.name} rule chooses its own counts; give no schedule")
    if length is None:
        raise ValueError(f"the {rule.name} rule needs the answer length; pass length=n")
    return None, whole_number(length, "length", minimum=1)


def _step_function(model: Any, rule: Rule, prompts: list[np.ndarray], temperature: float,
                   key: Any):
    """(rows, tokens, revealed) -> (drawn tokens, PositionStats) for one decoding step."""
    if is_scorer(model):
        if not hasattr(model, "sampled_statistics"):
            raise ValueError(f"{type(model).__name__} cannot draw tokens (no "
                             "sampled_statistics method); use schedopt.sources.HFScorer")
        generator = _torch_generator(model, key)
        read = statistics_read(rule)

        def hf_step(rows, tokens, revealed):
            drawn, *stats = model.sampled_statistics(
                [prompts[i] for i in rows], tokens, revealed, temperature=temperature,
                generator=generator, statistics=read)
            return drawn, PositionStats(*stats)
        return hf_step
    if len({p.size for p in prompts}) > 1:
        raise ValueError("a JAX logits_fn reads one prompt length; give prompts of equal "
                         "length (or an HFScorer, which pads)")
    draw = _jax_draw(model, temperature)
    counter = iter(range(1 << 62))

    def jax_step(rows, tokens, revealed):
        prompt = np.stack([prompts[i] for i in rows]).reshape(rows.size, -1)
        k = jax.random.fold_in(key, next(counter)) if key is not None else jax.random.key(0)
        out = draw(jnp.asarray(np.concatenate([prompt, tokens], axis=1), jnp.int32),
                   jnp.asarray(np.concatenate([np.ones(prompt.shape, bool), revealed], axis=1)),
                   k)
        p = prompt.shape[1]
        drawn, *stats = (np.asarray(a)[:, p:] for a in out)
        return drawn.astype(np.int64), PositionStats(*(s.astype(np.float64) for s in stats))
    return jax_step


def _jax_draw(logits_fn, temperature: float):
    """A jitted (tokens, revealed, key) -> (drawn, ce, entropy, log_p1, log_p2) [B, L]."""
    @jax.jit
    def draw(tokens, revealed, key):
        logits = logits_fn(tokens, revealed).astype(jnp.float32)
        if temperature == 0:
            drawn = jnp.argmax(logits, axis=-1)
        else:  # the key is used only here (the greedy key above is a placeholder)
            logits = logits / temperature
            drawn = jax.random.categorical(key, logits, axis=-1)
        return (drawn, *logit_statistics(logits, drawn))
    return draw


def _torch_generator(scorer: Any, key: Any):
    """A torch.Generator on the scorer's device, seeded from the JAX key (None: greedy)."""
    if key is None:
        return None
    import torch

    generator = torch.Generator(device=scorer.device)
    generator.manual_seed(int(jax.random.randint(key, (), 0, np.iinfo(np.int32).max)))
    return generator
