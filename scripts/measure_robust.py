"""Measure how often `optimize_robust`'s interval holds the chosen schedule's true KL.

    python scripts/measure_robust.py [--seeds 200] [--sequences 64] [--n 48] [--steps 6]

Each seed draws `--sequences` sequences of a sticky Markov chain (stay 0.8 + 0.05, 4 states),
estimates its profile by Monte Carlo (`MarkovChain.estimate(...).profile("model")`, with
standard errors, regularised), runs `optimize_robust(profile, steps, 32, key=...)` and
checks whether "kl_interval" holds the KL of the returned schedule under the chain's exact
curve (`MarkovChain.profile()`): once with the profile alone (the bootstrap interval) and once
with `holdout=` a second estimate on `--sequences` independent sequences. Prints the coverage
with its 95% binomial (Wilson) interval,
the mean width and how the misses fall (truth below or above the interval).
"""

from __future__ import annotations

import argparse
import math

import jax
import numpy as np

import schedopt
from schedopt.distributions import MarkovChain
from schedopt.objective import evaluate_kl


def wilson(hits: int, total: int, z: float = 1.959964) -> tuple[float, float]:
    """The 95% Wilson score interval for a binomial proportion hits / total."""
    p = hits / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return centre - half, centre + half


def run(seeds: int, sequences: int, n: int, steps: int, draws: int, holdout: bool) -> dict:
    chain = MarkovChain(0.8 * np.eye(4) + 0.05, n)
    truth = np.asarray(chain.profile().entropy)
    hits = below = above = 0
    widths = []
    for seed in range(seeds):
        key_profile, key_holdout, key_draws = jax.random.split(jax.random.key(seed), 3)
        estimate = schedopt.estimate_law(chain, key=key_profile, samples=sequences)
        held = schedopt.estimate_law(chain, key=key_holdout, samples=sequences) if holdout else None
        schedule = schedopt.optimize_robust(estimate.profile("model"), steps, draws,
                                            key=key_draws, holdout=held)
        true_kl = float(evaluate_kl(truth, np.asarray(schedule.tokens_per_step)))
        low, high = schedule.meta["kl_interval"]
        hits += low <= true_kl <= high
        below += true_kl < low
        above += true_kl > high
        widths.append(high - low)
    return {"seeds": seeds, "covered": hits, "truth_below": below, "truth_above": above,
            "wilson": wilson(hits, seeds), "mean_width": float(np.mean(widths))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--n", type=int, default=48)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--draws", type=int, default=32)
    args = parser.parse_args()
    print(f"n = {args.n}, T = {args.steps}, {args.sequences} sequences per estimate, "
          f"{args.draws} draws, {args.seeds} seeds")
    for holdout in (False, True):
        r = run(args.seeds, args.sequences, args.n, args.steps, args.draws, holdout)
        low, high = r["wilson"]
        print(f"{'holdout' if holdout else 'bootstrap'}: held the true KL in {r['covered']} of "
              f"{r['seeds']} ({r['covered'] / r['seeds']:.1%}, 95% binomial interval "
              f"{low:.1%} .. {high:.1%}); truth below {r['truth_below']}, above "
              f"{r['truth_above']}; mean width {r['mean_width']:.4g} nats")


if __name__ == "__main__":
    main()
