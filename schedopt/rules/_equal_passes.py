"""Decoders compared at equal forward passes: exact held-out NLL against mean passes.

The field compares decoders by task accuracy at a compute cost; this compares them by the
exact likelihood each gives held-out data (theory §13) at the same mean number of forward
passes per sequence. For every budget T the rows are:

- random order with the counts optimal for the model's held-out cross-entropy curve (theory
  §11; the curve is estimated on the tune data, the raw curve, not regularised);
- each ranking rule (confidence by default) with LLaDA's stock counts and with counts
  optimized for that rule on the tune data (`schedopt.rules`);
- the confidence threshold (Fast-dLLM) and the entropy bound (EB-sampler) with their setting
  swept until their mean passes on the scored data match T. Only the passes steer the sweep,
  never the NLL, so matching on the scored data leaks nothing about the likelihood.

Every row is scored on the same held-out sequences, so differences are paired: each row's
excess is over the confidence rule at one token per step (n passes), and `vs_stock` is the
difference against the confidence rule with stock counts at the same T.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

from .._internal import progress as _progress
from ..check import llada_stock, paired_difference
from ._counts import optimize_rule_counts, rule_step_costs
from ._rules import EntropyBoundRule, OrderRule, RuleNLL, ThresholdRule, rule_nll

RANDOM_OPTIMAL = "random order, optimal counts"
THRESHOLD = "threshold"
ENTROPY_BOUND = "entropy bound"
# The sweep bisects the setting this many times at most, and stops once the mean passes are
# this close to the budget (passes are whole numbers per sequence, so their mean moves in
# steps of 1/M).
SWEEP_ITERATIONS = 14
PASSES_TOLERANCE = 0.25


@dataclasses.dataclass(frozen=True)
class PassesRow:
    """One decoder at one budget, scored on the held-out sequences.

    Attributes:
        decoder: what decodes ("confidence, stock counts", "threshold", ...).
        budget: the T the row is matched to.
        setting: the threshold tau or entropy bound gamma (nats) found by the sweep, else None.
        counts: tokens per step for count rules, else None.
        passes_mean, passes_std: forward passes per sequence on the held-out data.
        nll, nll_interval: mean T-step NLL (nats per sequence) and its 95% interval.
        excess, excess_interval: paired mean of nll minus the reference (confidence, one
            token per step) and its 95% interval.
        vs_stock, vs_stock_interval: paired difference against confidence with LLaDA's stock
            counts at this budget (None where LLaDA cannot run the budget, or for that row).
    """

    decoder: str
    budget: int
    setting: float | None
    counts: list[int] | None
    passes_mean: float
    passes_std: float
    nll: float
    nll_interval: tuple[float, float]
    excess: float
    excess_interval: tuple[float, float]
    vs_stock: float | None
    vs_stock_interval: tuple[float, float] | None


@dataclasses.dataclass(frozen=True)
class EqualPasses:
    """The equal-passes comparison: rows for every budget, and what they are measured against.

    Attributes:
        rows: `PassesRow`s, budget by budget, in a fixed decoder order.
        reference_nll: mean NLL of the confidence rule at one token per step (n passes).
        sequences: M held-out sequences scored; tune_sequences: those the counts came from.
        n: answer length; block_length: L or None.
    """

    rows: list[PassesRow]
    reference_nll: float
    sequences: int
    tune_sequences: int
    n: int
    block_length: int | None

    def to_json(self) -> dict[str, Any]:
        return {**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                   if f.name != "rows"},
                "rows": [dataclasses.asdict(r) for r in self.rows]}

    def best(self, budget: int) -> PassesRow:
        """The row with the lowest NLL at `budget`."""
        return min((r for r in self.rows if r.budget == budget), key=lambda r: r.nll)


def equal_passes(model, data: Any, tune: Any, steps: Sequence[int], *, key: jax.Array,
                 prompts: Any = None, tune_prompts: Any = None, block_length: int | None = None,
                 orders: Sequence[str] = ("confidence",), batch_size: int = 64,
                 quiet: bool = True) -> EqualPasses:
    """Held-out NLL of random-order, ranking and adaptive decoders at equal forward passes.

    Args:
        model: a JAX logits_fn (tokens int32[B, L], revealed bool[B, L]) -> logits [B, L, V],
            or a TokenScorer with `rule_statistics` (e.g. `schedopt.sources.HFScorer`).
        data: int[M, n] held-out answers, scored (M >= 2).
        tune: int[M', n] answers the counts are chosen on (disjoint from `data`, M' >= 2).
        steps: the budgets T, each in 1..n (with blocks: at least the number of blocks).
        key: JAX PRNG key (the random-order curve and the random orders of its rows).
        prompts, tune_prompts: None, int[M, P], or M lists (always visible, never scored).
        block_length: semi-autoregressive blocks of L tokens (every rule decodes inside the
            current block), or None.
        orders: ranking rules given stock and optimized counts; the first must be
            "confidence" (the stock reference and the adaptive rules rank by confidence).
        batch_size: rows per forward pass.
        quiet: no progress bar.

    Returns:
        An `EqualPasses` with one row per decoder and budget.
    """
    x, t = np.asarray(data), np.asarray(tune)
    if x.ndim != 2 or t.ndim != 2 or x.shape[1] != t.shape[1]:
        raise ValueError(f"data and tune must be [M, n] answers of one length, got shapes "
                         f"{x.shape} and {t.shape}")
    n = x.shape[1]
    budgets = _check_budgets(steps, n, block_length)
    orders = list(orders)
    if not orders or orders[0] != "confidence" or "random" in orders:
        raise ValueError(f"orders must start with 'confidence' and name ranking rules, got "
                         f"{orders}; random order has its own row")
    k_curve, k_orders = jax.random.split(key)

    def score(rule, counts=None, *, rng=None) -> RuleNLL:
        return rule_nll(model, x, rule, counts, key=rng, prompts=prompts,
                        batch_size=batch_size, reference=False)

    reference = score(OrderRule("confidence", block_length), np.ones(n, np.int64))
    random_counts = _random_order_counts(model, t, budgets, key=k_curve, prompts=tune_prompts,
                                         block_length=block_length, batch_size=batch_size)
    costs = {name: rule_step_costs(model, t, OrderRule(name, block_length), prompts=tune_prompts,
                                   batch_size=batch_size) for name in orders}
    rows: list[PassesRow] = []
    for budget in _progress.progress(budgets, description="equal passes", quiet=quiet):
        scored: list[tuple[str, float | None, np.ndarray | None, RuleNLL]] = []
        scored.append((RANDOM_OPTIMAL, None, random_counts[budget],
                       score(OrderRule("random", block_length), random_counts[budget],
                             rng=k_orders)))
        for name in orders:
            rule = OrderRule(name, block_length)
            stock = _stock_counts(n, budget, block_length)
            if stock is not None:
                scored.append((f"{name}, stock counts", None, stock, score(rule, stock)))
            best = optimize_rule_counts(model, t, rule, budget, costs=costs[name],
                                        prompts=tune_prompts, batch_size=batch_size)
            counts = np.asarray(best.tokens_per_step)
            scored.append((f"{name}, optimized counts", None, counts, score(rule, counts)))
        for label, make, low, high, geometric in _ADAPTIVE:
            setting, result = match_passes(lambda v, make=make: score(make(v, block_length)),
                                           budget, low, high(n), geometric=geometric)
            scored.append((label, setting, None, result))
        stock_row = next((r for d, _, _, r in scored if d == "confidence, stock counts"), None)
        rows += [_row(d, budget, s, c, r, reference, stock_row) for d, s, c, r in scored]
    return EqualPasses(rows=rows, reference_nll=reference.nll, sequences=x.shape[0],
                       tune_sequences=t.shape[0], n=n, block_length=block_length)


# The adaptive rules and their sweeps: (label, rule from setting, lowest, highest for n,
# bisect on a log scale). A lower threshold and a higher entropy bound reveal more per step.
_ADAPTIVE = (
    (THRESHOLD, ThresholdRule, 1e-6, lambda n: 1.0, False),
    (ENTROPY_BOUND, EntropyBoundRule, 1e-4, lambda n: 64.0 * n, True),
)


def match_passes(score: Callable[[float], RuleNLL], budget: float, low: float, high: float, *,
                 geometric: bool = False) -> tuple[float, RuleNLL]:
    """The setting of an adaptive rule whose mean forward passes are closest to `budget`.

    Bisects on [low, high] (on a log scale when `geometric`), assuming the mean passes move
    monotonically with the setting, in either direction; stops within `PASSES_TOLERANCE`
    passes or after `SWEEP_ITERATIONS` scores.

    Args:
        score: setting -> the rule's `RuleNLL` on the held-out data.
        budget: the mean passes to reach.
        low, high: the setting's range.

    Returns:
        (setting, its RuleNLL), the closest of all settings scored.
    """
    ends = [(v, score(v)) for v in (low, high)]
    rising = ends[1][1].passes_mean >= ends[0][1].passes_mean
    tried = list(ends)
    for _ in range(SWEEP_ITERATIONS - 2):
        best = min(tried, key=lambda vr: abs(vr[1].passes_mean - budget))
        if abs(best[1].passes_mean - budget) <= PASSES_TOLERANCE:
            break
        mid = math.sqrt(low * high) if geometric else (low + high) / 2
        result = score(mid)
        tried.append((mid, result))
        if (result.passes_mean > budget) == rising:
            high = mid
        else:
            low = mid
    return min(tried, key=lambda vr: abs(vr[1].passes_mean - budget))


def _check_budgets(steps: Sequence[int], n: int, block_length: int | None) -> list[int]:
    from .._internal.checks import check_steps
    from ..curve import check_block_length

    blocks = 1 if block_length is None else n // check_block_length(block_length, n)
    budgets = [check_steps(s, n) for s in steps]
    if not budgets:
        raise ValueError("give at least one budget T")
    small = [b for b in budgets if b < blocks]
    if small:
        raise ValueError(f"budgets {small} are fewer than the {blocks} blocks; give T >= "
                         f"{blocks}")
    return sorted(set(budgets))


def _stock_counts(n: int, steps: int, block_length: int | None) -> np.ndarray | None:
    """LLaDA's stock counts at T, or None when LLaDA cannot run T (blocks must divide it)."""
    try:
        return np.asarray(llada_stock(n, steps, block_length).tokens_per_step)
    except ValueError:
        return None


def _random_order_counts(model, tune: np.ndarray, budgets: list[int], *, key: jax.Array,
                         prompts: Any, block_length: int | None,
                         batch_size: int) -> dict[int, np.ndarray]:
    """Optimal random-order counts per budget for the raw held-out curve of the tune data."""
    from ..estimate import estimate_block_profiles, estimate_curves
    from ..solve import optimal_schedule_unregularized, optimize_blocks_unregularized

    n = tune.shape[1]
    if block_length is None:
        curve = estimate_curves(model, tune, key=key, prompts=prompts, grid=n,
                                batch_size=batch_size).curve("data")[0]
        return {b: np.asarray(optimal_schedule_unregularized(curve, b).tokens_per_step)
                for b in budgets}
    blocks = estimate_block_profiles(model, tune, block_length, key=key, prompts=prompts,
                                     regularize=False, batch_size=batch_size)
    return {b: np.asarray(optimize_blocks_unregularized(blocks, b).tokens_per_step)
            for b in budgets}


def _row(decoder: str, budget: int, setting: float | None, counts: np.ndarray | None,
         result: RuleNLL, reference: RuleNLL, stock: RuleNLL | None) -> PassesRow:
    excess, lo, hi = paired_difference(result.per_sequence, reference.per_sequence)
    vs, vs_interval = None, None
    if stock is not None and decoder != "confidence, stock counts":
        vs, vlo, vhi = paired_difference(result.per_sequence, stock.per_sequence)
        vs_interval = (vlo, vhi)
    return PassesRow(decoder=decoder, budget=budget, setting=setting,
                     counts=None if counts is None else [int(c) for c in counts],
                     passes_mean=result.passes_mean, passes_std=result.passes_std,
                     nll=result.nll, nll_interval=result.interval, excess=excess,
                     excess_interval=(lo, hi), vs_stock=vs, vs_stock_interval=vs_interval)
