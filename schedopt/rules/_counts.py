"""Count schedules for a state-dependent ranking rule (theory §13): a surrogate DP, rescored
exactly.

For an `OrderRule` the state after N tokens depends on how they were grouped, so the T-step
NLL is not a function of one curve (theory §4 does not apply). The surrogate follows the
one-token-per-step trajectory S_0, S_1, ..., S_n of each held-out sequence (n forward passes):
at S_a the rule ranks the candidates, and revealing its top b - a of them in one step costs

    C[a, b] = sum of -log p(x_i | S_a) over those b - a positions.

C[a, a + 1] summed is the exact one-by-one NLL, and C[0, n] the exact one-step NLL; in between
the state the real sampler reaches differs from S_b, which is why it is a surrogate. The count
schedule minimizing sum_k C[N_{k-1}, N_k] is found by a DP over compositions of n into T parts;
`optimize_rule_counts` then rescores it and its neighbours (one token moved between adjacent
steps) exactly with `rule_nll` and returns the best measured one, with the measured number.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from ._rules import OrderRule, PositionStats, candidates, priority, rule_nll, statistics_fn


def rule_step_costs(model, data: Any, rule: OrderRule, *, prompts: Any = None,
                    batch_size: int = 64) -> np.ndarray:
    """Mean surrogate step costs float64[n + 1, n + 1] (nats; +inf where a step is not allowed).

    C[a, b], a < b: the cost of revealing the rule's top b - a candidates at the state after
    a tokens of the one-token-per-step trajectory (with blocks, b may not pass the current
    block's end). n forward passes per sequence.
    """
    from ..sources import check_prompts

    if not isinstance(rule, OrderRule) or rule.name == "random":
        raise ValueError(f"count schedules are optimized for a ranking rule (confidence, margin, "
                         f"entropy, left-to-right), got {rule!r}; random orders use "
                         "`schedopt optimize` on the curve")
    x = np.asarray(data)
    m, n = x.shape
    stats_fn = statistics_fn(model, rule)
    plist = check_prompts(prompts, m) or [np.zeros(0, np.int32)] * m
    ragged = np.empty(m, object)
    ragged[:] = plist
    total = np.zeros((n + 1, n + 1))
    for lo in range(0, m, batch_size):
        idx = np.arange(lo, min(m, lo + batch_size))
        if hasattr(model, "rule_statistics"):
            p = ragged[idx]
        else:
            if len({plist[i].size for i in idx}) > 1:
                raise ValueError("a JAX model takes prompts of one length per batch; pad the "
                                 "prompts or use batch_size=1")
            p = np.stack([plist[i] for i in idx]).reshape(idx.size, -1)
        total += _batch_costs(stats_fn, p, x[idx], rule).sum(axis=0)
    costs = total / m
    costs[np.tril_indices(n + 1)] = np.inf
    return costs


def _batch_costs(stats_fn, prompts, answers: np.ndarray, rule: OrderRule) -> np.ndarray:
    b, n = answers.shape
    c = np.full((b, n + 1, n + 1), np.inf)
    revealed = np.zeros((b, n), bool)
    rows = np.arange(b)
    for a in range(n):
        s: PositionStats = stats_fn(prompts, answers, revealed)
        cand = candidates(~revealed, rule.block_length)
        key = np.where(cand, priority(rule, s, None), -np.inf)
        ranked = np.argsort(-key, axis=1, kind="stable")
        ce = np.take_along_axis(np.where(cand, s.ce, np.inf), ranked, axis=1)
        c[:, a, a + 1:] = np.cumsum(ce, axis=1)[:, : n - a]  # inf past the block's end
        revealed[rows, ranked[:, 0]] = True  # one token per step: the rule's first choice
    return c


def best_counts(costs: np.ndarray, steps: int) -> tuple[np.ndarray, float]:
    """The composition of n into `steps` parts minimizing sum_k C[N_{k-1}, N_k] (a DP).

    Args:
        costs: float[n + 1, n + 1] step costs (+inf: not allowed).
        steps: T, 1 <= T <= n.

    Returns:
        (tokens per step int64[T], its surrogate cost). Ties go to the first minimum found.
    """
    n = costs.shape[0] - 1
    if not 1 <= steps <= n:
        raise ValueError(f"steps must lie in 1..{n}, got {steps}; give 1 <= T <= n")
    value = np.full((steps + 1, n + 1), np.inf)
    arg = np.zeros((steps + 1, n + 1), np.int64)
    value[0, 0] = 0.0
    for k in range(1, steps + 1):
        total = value[k - 1][:, None] + costs  # [a, b]
        arg[k] = np.argmin(total, axis=0)
        value[k] = total[arg[k], np.arange(n + 1)]
    if not np.isfinite(value[steps, n]):
        raise ValueError(f"no schedule of {steps} steps fits the blocks; use more steps")
    cuts, b = [n], n
    for k in range(steps, 0, -1):
        b = int(arg[k, b])
        cuts.append(b)
    return np.diff(cuts[::-1]), float(value[steps, n])


def neighbours(counts: np.ndarray) -> list[np.ndarray]:
    """Schedules one token away: one token moved between two adjacent steps (parts stay >= 1)."""
    out = []
    for k in range(len(counts) - 1):
        for d in (-1, 1):
            c = counts.copy()
            c[k] += d
            c[k + 1] -= d
            if c[k] >= 1 and c[k + 1] >= 1:
                out.append(c)
    return out


@dataclasses.dataclass(frozen=True)
class RuleCounts:
    """Optimized counts for a ranking rule, chosen by measured NLL among the DP's neighbours.

    tokens_per_step: int64[T]; nll: its exact mean NLL on the scoring data (nats);
    surrogate: its surrogate cost; surrogate_choice: the DP's own choice; rescored: {tuple of
    counts: exact NLL} of every schedule rescored.
    """

    tokens_per_step: np.ndarray
    nll: float
    surrogate: float
    surrogate_choice: np.ndarray
    rescored: dict


def optimize_rule_counts(model, data: Any, rule: OrderRule, steps: int, *,
                         costs: np.ndarray | None = None, prompts: Any = None,
                         batch_size: int = 64) -> RuleCounts:
    """The count schedule of T steps for `rule`: surrogate DP, then exact rescoring.

    Args:
        model, data, prompts, batch_size: as in `schedopt.rules.rule_nll`.
        rule: an `OrderRule` other than "random".
        steps: T.
        costs: `rule_step_costs` already measured on `data` (measured here when None).
    """
    if costs is None:
        costs = rule_step_costs(model, data, rule, prompts=prompts, batch_size=batch_size)
    choice, value = best_counts(costs, steps)
    finite = [c for c in [choice, *neighbours(choice)]
              if np.isfinite(sum(costs[a, b] for a, b in _cuts(c)))]
    rescored = {tuple(int(v) for v in c): rule_nll(model, data, rule, c, prompts=prompts,
                                                   batch_size=batch_size, reference=False).nll
                for c in finite}
    best = min(rescored, key=rescored.get)
    return RuleCounts(np.asarray(best, np.int64), rescored[best],
                      float(sum(costs[a, b] for a, b in _cuts(np.asarray(best)))),
                      choice, rescored)


def _cuts(counts: np.ndarray) -> list[tuple[int, int]]:
    n = np.concatenate([[0], np.cumsum(counts)])
    return list(zip(n[:-1].tolist(), n[1:].tolist(), strict=True))
