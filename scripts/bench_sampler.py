"""Benchmark the known distributions: sampler throughput, profile time, Markov at n = 32768.

    python scripts/bench_sampler.py [--repeats 3] [--sequences 256]

Prints a Markdown table of medians over repeats (compilation excluded: each measurement is
run once first). Sampler throughput counts generated tokens per second for the T-step
sampler of theory §1 with exact conditionals (one conditionals call per step on every
sequence of the batch).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import numpy as np

import schedopt
from schedopt.distributions import HiddenMarkov, MarkovChain, MixtureOfProducts
from schedopt.schedule import uniform_tokens


def laws(n: int) -> dict:
    rng = np.random.default_rng(0)
    sticky = 0.9 * np.eye(8) + 0.1 * rng.dirichlet(np.ones(8), size=8)
    marginals = rng.dirichlet(np.full(8, 0.3), size=(16, n))
    return {
        "markov (V=8)": MarkovChain(sticky, n),
        "hmm (K=8, V=16)": HiddenMarkov(sticky, rng.dirichlet(np.full(16, 0.3), size=8), n),
        "mixture (K=16, V=8)": MixtureOfProducts(np.full(16, 1 / 16), marginals),
    }


def median_seconds(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sequences", type=int, default=256, help="sequences per sample call")
    parser.add_argument("--profile-samples", type=int, default=256)
    args = parser.parse_args()
    n = 1024
    key = jax.random.key(0)
    print(f"n = {n}, {args.sequences} sequences per call, median of {args.repeats}; "
          f"devices: {jax.devices()}")
    print()
    print("| distribution | sampler T=16 (tokens/s) | sampler T=64 (tokens/s) | profile | "
          "profile time (s) |")
    print("|---|---|---|---|---|")
    for name, law in laws(n).items():
        rates = []
        for steps in (16, 64):
            tokens = uniform_tokens(n, steps)
            seconds = median_seconds(
                lambda t=tokens, law=law: schedopt.sample(
                    law.conditionals, t, args.sequences, key=key
                ),
                args.repeats,
            )
            rates.append(args.sequences * n / seconds)
        how = "exact" if law.exact_profile else f"MC, {args.profile_samples} seq x 33 pts"
        seconds = median_seconds(
            lambda law=law: (law.profile() if law.exact_profile else schedopt.estimate_law(
                law, key=key, samples=args.profile_samples).profile("model")).entropy,
            args.repeats,
        )
        print(f"| {name} | {rates[0]:,.0f} | {rates[1]:,.0f} | {how} | {seconds:.2f} |")
    print()
    print("| Markov closed form | n | time (s) |")
    print("|---|---|---|")
    for label, transition in (
        ("random 8-state chain", np.random.default_rng(1).dirichlet(np.ones(8), size=8)),
        ("sticky 8-state chain (0.999 I)", 0.999 * np.eye(8) + 0.001 / 8),
    ):
        seconds = median_seconds(
            lambda t=transition: MarkovChain(t, 32768).profile().entropy, args.repeats
        )
        print(f"| {label} | 32768 | {seconds:.2f} |")


if __name__ == "__main__":
    main()
