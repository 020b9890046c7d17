"""Unmasking rules whose order depends on the state, scored exactly by teacher forcing (theory §13).

A rule chooses, at each state (the visible tokens), which masked positions a step reveals, as a
function of that state alone:

- `OrderRule(name, ...)` reveals a given number of positions per step (a count schedule),
  ranked by `name`: "confidence" (largest max_v p(v | state)), "margin" (largest top-1 minus
  top-2 probability), "entropy" (lowest predictive entropy), "left-to-right" (leftmost), or
  "random" (a uniformly random order drawn once per sequence, independent of the tokens:
  today's sampler).
- `ThresholdRule(tau)` (Fast-dLLM) reveals every masked position whose largest probability
  exceeds tau, and at least the single most confident one; the number of steps is adaptive.
- `EntropyBoundRule(gamma)` (EB-sampler) sorts masked positions by entropy, lowest first, and
  reveals the longest prefix U with sum_{i in U} H_i - max_{i in U} H_i <= gamma (at least one).

Each rule may act within LLaDA-style blocks (`block_length` L): only masked positions of the
leftmost block that still has one are candidates, so blocks decode left to right. Ties go to
the lowest position (a stable sort on the score).

Because the chosen set is a function of the visible tokens only, every output x is reached by
exactly one trajectory, the one teacher forcing on x follows, so

    -log q_T(x) = - sum_k sum_{i in A(S_{k-1})} log p(x_i | S_{k-1})

is exact per sequence at T forward passes (no Monte Carlo over orders); `rule_nll` computes it.
Models are reduced to [B, n] statistics on their own device (`PositionStats`): a JAX logits
function through `jax_statistics`, a `schedopt.sources.TokenScorer` through its
`rule_statistics` method (`schedopt.sources.HFScorer` has one).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from .._internal.stats import Z95, standard_error

ORDERS = ("random", "confidence", "margin", "entropy", "left-to-right")


class PositionStats(NamedTuple):
    """Per-position statistics of a model's conditionals, float64[B, n] each (nats).

    ce: -log p(true token); entropy: predictive entropy; log_p1, log_p2: log of the largest and
    second-largest probabilities. Values at revealed positions are ignored.
    """

    ce: np.ndarray
    entropy: np.ndarray
    log_p1: np.ndarray
    log_p2: np.ndarray


def _check_block_length(block_length: Any) -> None:
    if block_length is not None and (isinstance(block_length, bool)
                                     or not isinstance(block_length, int | np.integer)
                                     or block_length < 1):
        raise ValueError(f"block_length must be None or a whole number >= 1, got "
                         f"{block_length!r}; give the block length in tokens")


@dataclasses.dataclass(frozen=True)
class OrderRule:
    """Reveal a fixed number of positions per step, ranked by `name` (see module docstring)."""

    name: str
    block_length: int | None = None

    def __post_init__(self):
        if self.name not in ORDERS:
            raise ValueError(f"unknown unmasking order {self.name!r}; use one of "
                             f"{', '.join(ORDERS)}")
        _check_block_length(self.block_length)

    adaptive = False


@dataclasses.dataclass(frozen=True)
class ThresholdRule:
    """Fast-dLLM: reveal every masked position with max probability > tau (at least one)."""

    tau: float
    block_length: int | None = None

    def __post_init__(self):
        if not (isinstance(self.tau, int | float) and 0.0 < float(self.tau) <= 1.0):
            raise ValueError(f"threshold tau must lie in (0, 1], got {self.tau!r}; "
                             "0.9 is typical")
        _check_block_length(self.block_length)

    adaptive = True
    name = "threshold"


@dataclasses.dataclass(frozen=True)
class EntropyBoundRule:
    """EB-sampler: reveal the longest lowest-entropy prefix with sum - max entropy <= gamma."""

    gamma: float
    block_length: int | None = None

    def __post_init__(self):
        if not (isinstance(self.gamma, int | float) and math.isfinite(self.gamma)
                and self.gamma >= 0):
            raise ValueError(f"entropy bound gamma must be a finite number >= 0, got "
                             f"{self.gamma!r}; give gamma in nats")
        _check_block_length(self.block_length)

    adaptive = True
    name = "entropy-bound"


Rule = OrderRule | ThresholdRule | EntropyBoundRule


def rule_from_name(name: str, *, block_length: int | None = None) -> OrderRule:
    """The `OrderRule` for a CLI name (ValueError naming the choices when unknown)."""
    return OrderRule(name, block_length)


# ------------------------------------------------------------------ choosing positions
def candidates(masked: np.ndarray, block_length: int | None) -> np.ndarray:
    """bool[B, n]: the masked positions a step may reveal (the current block's, with blocks)."""
    if block_length is None:
        return masked
    b, n = masked.shape
    block = np.arange(n) // block_length
    first = np.where(masked, block[None, :], np.iinfo(np.int64).max).min(axis=1)
    return masked & (block[None, :] == first[:, None])


# What each rule ranks (and, for adaptive rules, bounds) by, named as the scorers name them
# (`schedopt.sources.STATISTICS`); a scorer computes only these and the cross-entropy.
_RANKED_BY = {"confidence": ("log_top1",), "threshold": ("log_top1",),
              "margin": ("log_top1", "log_top2"), "entropy": ("entropy",),
              "entropy-bound": ("entropy",), "left-to-right": (), "random": ()}


def statistics_read(rule: Rule) -> tuple[str, ...]:
    """The per-position statistics one step of `rule` reads: the cross-entropy (the NLL, or
    the drawn token's log-probability) and what the rule ranks by. Asking a scorer for these
    alone skips the rest (the top-2 search costs more than the others together)."""
    return ("cross_entropy", *_RANKED_BY[rule.name])


def priority(rule: Rule, stats: PositionStats, order: np.ndarray | None) -> np.ndarray:
    """float64[B, n]: larger is revealed first (ties: lowest position, by a stable sort)."""
    name = rule.name
    n = stats.ce.shape[1]
    if name in ("confidence", "threshold"):
        return np.asarray(stats.log_p1, np.float64)
    if name == "margin":
        return np.exp(stats.log_p1) - np.exp(stats.log_p2)
    if name in ("entropy", "entropy-bound"):
        return -np.asarray(stats.entropy, np.float64)
    if name == "left-to-right":
        return np.broadcast_to(-np.arange(n, dtype=np.float64), stats.ce.shape)
    return -np.asarray(order, np.float64)  # random: the drawn rank, lowest first


def choose(rule: Rule, stats: PositionStats, masked: np.ndarray, count: int | None = None,
           *, order: np.ndarray | None = None) -> np.ndarray:
    """bool[B, n]: the positions one step of `rule` reveals.

    Args:
        rule: an `OrderRule`, `ThresholdRule` or `EntropyBoundRule`.
        stats: the model's statistics at the current state, float64[B, n] each.
        masked: bool[B, n] still-masked positions; every row has at least one.
        count: tokens this step (order rules only); with blocks it is capped at what is left
            in the current block.
        order: int[B, n] ranks of a random order (the "random" rule only).
    """
    cand = candidates(np.asarray(masked, bool), rule.block_length)
    key = np.where(cand, priority(rule, stats, order), -np.inf)
    ranked = np.argsort(-key, axis=1, kind="stable")  # stable: ties to the lowest position
    available = cand.sum(axis=1)
    if isinstance(rule, OrderRule):
        take = np.minimum(int(count), available)
    elif isinstance(rule, ThresholdRule):
        take = np.maximum((cand & (np.exp(stats.log_p1) > rule.tau)).sum(axis=1), 1)
    else:
        h = np.take_along_axis(np.where(cand, stats.entropy, 0.0), ranked, axis=1)
        within = (np.cumsum(h, axis=1) - np.maximum.accumulate(h, axis=1)) <= rule.gamma
        within &= np.arange(h.shape[1])[None, :] < available[:, None]
        take = np.maximum(np.cumprod(within, axis=1).sum(axis=1), 1)
    pick = np.arange(masked.shape[1])[None, :] < take[:, None]
    out = np.zeros_like(cand)
    np.put_along_axis(out, ranked, pick, axis=1)
    return out & cand


# ------------------------------------------------------------------ model statistics
def logit_statistics(logits: jax.Array, tokens: jax.Array) -> tuple[jax.Array, ...]:
    """logits [B, n, V] -> (ce, entropy, log_p1, log_p2) [B, n], on the model's device."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ce = -jnp.take_along_axis(logp, tokens[..., None].astype(jnp.int32), axis=-1)[..., 0]
    p = jnp.exp(logp)
    ent = -jnp.sum(jnp.where(p > 0, p * logp, 0.0), axis=-1)
    if logp.shape[-1] == 1:  # one symbol: no second choice
        logp2 = jnp.concatenate([logp, jnp.full_like(logp, -jnp.inf)], axis=-1)
        top = jax.lax.top_k(logp2, 2)[0]
    else:
        top = jax.lax.top_k(logp, 2)[0]
    return ce, ent, top[..., 0], top[..., 1]


@functools.partial(jax.jit, static_argnums=0)
def _model_statistics(logits_fn, tokens: jax.Array, revealed: jax.Array):
    # logits_fn is static: JAX's own cache keeps one compiled program per model function, so
    # repeated calls with the same function (every rule_nll, rule_step_costs) compile once.
    return logit_statistics(logits_fn(tokens, revealed), tokens)


def jax_statistics(logits_fn) -> Callable[..., PositionStats]:
    """A JAX `logits_fn(tokens, revealed)` as a statistics function (prompts, answers, revealed).

    The vocabulary is reduced inside one jitted call, so only [B, n] arrays reach the host.
    """
    try:
        hash(logits_fn)
        stats = functools.partial(_model_statistics, logits_fn)
    except TypeError:  # an unhashable callable: compiled for this call only
        stats = jax.jit(functools.partial(_model_statistics.__wrapped__, logits_fn))

    def run(prompts: np.ndarray, answers: np.ndarray, revealed: np.ndarray) -> PositionStats:
        p = prompts.shape[1]
        tokens = np.concatenate([prompts, answers], axis=1).astype(np.int32)
        shown = np.concatenate([np.ones(prompts.shape, bool), revealed], axis=1)
        out = stats(jnp.asarray(tokens), jnp.asarray(shown))
        return PositionStats(*(np.asarray(a, np.float64)[:, p:] for a in out))

    return run


def statistics_fn(model, rule: Rule) -> Callable[..., PositionStats]:
    """The statistics function of a JAX logits_fn or a TokenScorer with rule_statistics.

    A scorer computes only what `rule` reads (`statistics_read`; the rest is NaN); a JAX
    model computes all four inside its jitted call, where they cost little.
    """
    from ..sources import is_scorer

    if is_scorer(model):
        if not hasattr(model, "rule_statistics"):
            raise ValueError(f"{type(model).__name__} has no rule_statistics method; state-"
                             "dependent rules need top-1/top-2 probabilities (use HFScorer)")

        read = statistics_read(rule)

        def run(prompts, answers, revealed):
            return PositionStats(*model.rule_statistics(list(prompts), answers, revealed,
                                                        statistics=read))
        return run
    return jax_statistics(model)


# ------------------------------------------------------------------ teacher forcing
def teacher_forced(stats_fn: Callable[..., PositionStats], prompts: np.ndarray,
                   answers: np.ndarray, rule: Rule, counts: np.ndarray | None = None,
                   *, order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Follow the rule's trajectory on each answer: (NLL float64[B], forward passes int64[B]).

    Args:
        stats_fn: (prompts int[B, P], answers int[B, n], revealed bool[B, n]) -> PositionStats.
        prompts, answers: int[B, P] always-visible prompts (P may be 0) and int[B, n] answers.
        rule: the unmasking rule.
        counts: tokens per step int[T] summing to n (order rules); None for adaptive rules.
        order: int[B, n] random ranks (the "random" rule).

    Rows that are done stop being evaluated, so an adaptive rule's forward passes per row are
    exactly its trajectory's steps.
    """
    def step(live, _tokens, revealed):  # the "drawn" token is the data's
        return answers[live], stats_fn(prompts[live], answers[live], revealed)

    _, nll, passes = follow(step, answers.shape, rule, counts, order=order)
    return nll, passes


def follow(step_fn: Callable[..., tuple[np.ndarray, PositionStats]], shape: tuple[int, int],
           rule: Rule, counts: np.ndarray | None = None, *,
           order: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Run a rule from the all-masked state: (tokens int64[B, n], NLL float64[B], passes).

    The one decoding loop, for teacher forcing and for generation alike.

    Args:
        step_fn: (live rows int[b], tokens int64[b, n], revealed bool[b, n]) -> (a token at
            every position int[b, n], the statistics of the distribution it came from, with
            ce the token's -log probability). Teacher forcing returns the data's tokens.
        shape: (B, n).
        rule, counts, order: as in `teacher_forced`.

    Returns:
        The tokens revealed, the summed -log probability of each row's revealed tokens at
        the steps they were revealed (nats), and the forward passes per row.
    """
    b, n = shape
    tokens = np.zeros((b, n), np.int64)
    revealed = np.zeros((b, n), bool)
    nll = np.zeros(b)
    passes = np.zeros(b, np.int64)
    step = 0
    while not revealed.all():
        live = np.nonzero(~revealed.all(axis=1))[0]
        drawn, s = step_fn(live, tokens[live], revealed[live])
        if np.isnan(np.where(revealed[live], 0.0, s.ce)).any():  # NaN logits make ce NaN
            raise ValueError("the model returned NaN probabilities at masked positions; check "
                             "that its weights loaded and that it handles masked inputs")
        count = None if counts is None else int(counts[step])
        pick = choose(rule, s, ~revealed[live], count,
                      order=None if order is None else order[live])
        nll[live] += np.where(pick, s.ce, 0.0).sum(axis=1)
        tokens[live] = np.where(pick, drawn, tokens[live])
        revealed[live] |= pick
        passes[live] += 1
        step += 1
        if counts is not None and step == len(counts) and not revealed.all():
            raise ValueError("the schedule's steps do not fit the blocks (a step crosses a "
                             "block boundary); give a block schedule for this block length")
    return tokens, nll, passes


@dataclasses.dataclass(frozen=True)
class RuleNLL:
    """Held-out T-step NLL of one rule (nats per sequence), with forward passes per sequence.

    Attributes:
        nll, stderr: mean NLL (the answer given its prompt) and its standard error.
        one_by_one, excess, excess_stderr: one token per step under the same order (for
            adaptive rules: the confidence / entropy order of the rule) and the paired excess.
        passes_mean, passes_std: forward passes per sequence (for count rules: T, spread 0).
        per_sequence: float64[M] NLL; per_sequence_passes: int64[M].
    """

    rule: Any
    nll: float
    stderr: float
    one_by_one: float
    excess: float
    excess_stderr: float
    passes_mean: float
    passes_std: float
    sequences: int
    per_sequence: np.ndarray = dataclasses.field(compare=False, repr=False)
    per_sequence_passes: np.ndarray = dataclasses.field(compare=False, repr=False)
    reference: np.ndarray = dataclasses.field(compare=False, repr=False)

    @property
    def interval(self) -> tuple[float, float]:
        return self.nll - Z95 * self.stderr, self.nll + Z95 * self.stderr

    @property
    def excess_interval(self) -> tuple[float, float]:
        return self.excess - Z95 * self.excess_stderr, self.excess + Z95 * self.excess_stderr

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("per_sequence", "per_sequence_passes", "reference", "rule")}
        out["rule"] = dataclasses.asdict(self.rule) | {"name": self.rule.name}
        out["interval"] = list(self.interval)
        out["excess_interval"] = list(self.excess_interval)
        return out


def one_by_one_rule(rule: Rule) -> OrderRule:
    """The one-token-per-step rule with the same ranking (the reference of the excess)."""
    name = {"threshold": "confidence", "entropy-bound": "entropy"}.get(rule.name, rule.name)
    return OrderRule(name, rule.block_length)


def rule_nll(model, data: Any, rule: Rule, counts: Any = None, *, key: jax.Array | None = None,
             prompts: Any = None, batch_size: int = 64, reference: bool = True) -> RuleNLL:
    """Exact held-out NLL of the sampler `rule` (with `counts` for order rules), theory §13.

    Args:
        model: a JAX logits_fn (tokens int32[B, L], revealed bool[B, L]) -> logits [B, L, V],
            or a TokenScorer with `rule_statistics` (e.g. `schedopt.sources.HFScorer`).
        data: int[M, n] answers, M >= 2.
        rule: `OrderRule`, `ThresholdRule` or `EntropyBoundRule`.
        counts: tokens per step int[T] summing to n for an `OrderRule`; None for adaptive rules.
        key: JAX PRNG key, required by the "random" rule (its orders), unused otherwise.
        prompts: None, int[M, P], or M lists of any lengths (always visible, never scored).
        batch_size: rows per forward pass.
        reference: also score one token per step under the same ranking (n more forward
            passes per sequence); without it the one-by-one NLL and excess are NaN.

    Returns:
        A `RuleNLL`; its excess is against one token per step under the same ranking, on the
        same sequences (paired).
    """
    from .._internal.checks import check_tokens_per_step
    from ..sources import check_prompts, prompt_groups

    x = np.asarray(data)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] == 0:
        raise ValueError(f"data must be a 2-D array of at least 2 sequences [M, n], got shape "
                         f"{x.shape}; an interval needs two or more sequences")
    m, n = x.shape
    if isinstance(rule, OrderRule):
        if counts is None:
            raise ValueError(f"the {rule.name!r} order needs a count schedule; give counts "
                             "summing to the answer length")
        counts = np.asarray(getattr(counts, "tokens_per_step", counts))
        if counts.ndim != 1 or counts.sum() != n:
            raise ValueError(f"the schedule unmasks {int(counts.sum())} tokens but the answers "
                             f"have n = {n}; give a schedule for answers of length {n}")
        counts = check_tokens_per_step(counts, n, "schedule")
    elif counts is not None:
        raise ValueError(f"the {rule.name} rule chooses its own counts; give no schedule")
    order = None
    if rule.name == "random":
        if key is None:
            raise ValueError("the 'random' order needs a PRNG key; pass key=jax.random.key(...)")
        order = np.asarray(jax.vmap(lambda k: jax.random.permutation(k, n))(
            jax.random.split(key, m)))
    stats_fn = statistics_fn(model, rule)
    groups = prompt_groups(check_prompts(prompts, m), m)
    if hasattr(model, "rule_statistics"):  # a scorer pads ragged prompts itself
        plist = check_prompts(prompts, m) or [np.zeros(0, np.int32)] * m
        ragged = np.empty(m, object)
        ragged[:] = plist
        groups = [(np.arange(m), ragged)]
    ref_rule = one_by_one_rule(rule)
    ref_fn = statistics_fn(model, ref_rule)
    nll, passes, ref = np.zeros(m), np.zeros(m, np.int64), np.zeros(m)
    for rows, pr in groups:
        for lo in range(0, len(rows), batch_size):
            idx = rows[lo:lo + batch_size]
            p = pr[lo:lo + batch_size]
            o = None if order is None else order[idx]
            nll[idx], passes[idx] = teacher_forced(stats_fn, p, x[idx], rule, counts, order=o)
            if not reference:
                ref[idx] = np.nan
            elif counts is not None and len(counts) == n and rule == ref_rule:
                ref[idx] = nll[idx]
            else:
                ref[idx] = teacher_forced(ref_fn, p, x[idx], ref_rule, np.ones(n, np.int64),
                                          order=o)[0]
    if not np.all(np.isfinite(nll)):
        raise ValueError("the model gave infinite or NaN log-probabilities for the data; "
                         "check the model")
    ex = nll - ref
    return RuleNLL(rule=rule, nll=float(nll.mean()), stderr=standard_error(nll),
                   one_by_one=float(ref.mean()), excess=float(ex.mean()),
                   excess_stderr=standard_error(ex), passes_mean=float(passes.mean()),
                   passes_std=float(passes.std(ddof=1)), sequences=m, per_sequence=nll,
                   per_sequence_passes=passes, reference=ref)
