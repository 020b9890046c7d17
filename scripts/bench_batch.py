"""Benchmark of batch jobs: optimize_batch on smooth and regularised curves, and the frontier.

1. `optimize_batch` on a batch of random profiles (n = 1024, T = 32, 4096 problems by default)
   of each family: the first call (compile included), the median of warm calls, schedules per
   second, the solver mix, and every schedule's KL against the exact optimum of the
   uncompressed DP (every integer position a candidate cut, vmapped), with the fraction within
   1e-9 (relative or absolute). Beside it, `optimize` (one problem per call) on a subset.
2. `fast_frontier` (certified lower envelopes) for n = 131072, K = 4096, beside the
   divide-and-conquer `frontier` timed on its first layers and extrapolated.

Profiles: g_j = a exp(-j / s1) + b (1 + j / s2)^(-p) + c with random a, b, c, s1, s2, p
(smooth, every shape from a sharp early drop to a slow power law); the family "noisy" adds
Gaussian noise (0.01 nats) and regularises (PAV), which leaves flat runs, as every estimated
curve has. Frontier profile: the sticky 4-state Markov chain of docs/theory.md §10.

    python scripts/bench_batch.py                                  # everything, defaults
    python scripts/bench_batch.py --batch 1024 --skip-frontier     # smaller, quicker
    python scripts/bench_batch.py --family noisy --batch 1024 --skip-frontier

Prints the JAX backend and devices first (run it on a GPU/TPU host as is).
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import jax
import numpy as np
from bench_optimize import timed  # same folder: median wall time of repeats

import schedopt
from schedopt.curve import isotonic_nonincreasing
from schedopt.distributions import MarkovChain
from schedopt.solve import fast_frontier, full_grid, grid_frontier, within_tolerance


def random_entropy(rng: np.random.Generator, count: int, n: int, family: str) -> np.ndarray:
    """float64[count, n + 1] H of random decreasing curves (see the module docstring)."""
    j = np.arange(n)[None, :]
    a, b, c = rng.uniform(0.2, 2.0, (3, count, 1))
    s1 = np.exp(rng.uniform(np.log(2), np.log(n), (count, 1)))
    s2 = np.exp(rng.uniform(0.0, np.log(n / 4), (count, 1)))
    p = rng.uniform(0.3, 2.0, (count, 1))
    g = a * np.exp(-j / s1) + b * (1 + j / s2) ** (-p) + 0.1 * c
    if family == "noisy":
        g = g + rng.normal(size=g.shape) * 0.01
        g = np.stack([np.maximum(isotonic_nonincreasing(row), 0.0) for row in g])
    return np.concatenate([np.zeros((count, 1)), np.cumsum(g, axis=1)], axis=1)


def relative_gap(kl: np.ndarray, optimum: np.ndarray) -> np.ndarray:
    """(KL - optimum) / optimum, 0 where within tolerance; inf where the optimum is 0."""
    excess = np.where(within_tolerance(kl, optimum), 0.0, kl - optimum)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(excess > 0, excess / optimum, 0.0)


def exact_optima(entropy: np.ndarray, steps: int) -> np.ndarray:
    """The uncompressed DP's optimum for every row (every integer a candidate cut), vmapped."""
    with jax.enable_x64(True):
        solve = jax.jit(jax.vmap(lambda e: grid_frontier(full_grid(e), steps)[-1]))
        return np.concatenate(
            [np.asarray(solve(entropy[i : i + 256])) for i in range(0, len(entropy), 256)]
        )


def bench_family(args, family: str) -> list[str]:
    """Table rows for one family of curves."""
    n, steps, size = args.n, args.steps, args.batch
    entropy = random_entropy(np.random.default_rng(0), size, n, family)
    profiles = [schedopt.EntropyProfile.from_entropy(h, check=False) for h in entropy]
    first, _ = timed(lambda: schedopt.optimize_batch(profiles, steps), 1)
    warm, schedules = timed(lambda: schedopt.optimize_batch(profiles, steps), args.repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kl = np.asarray([float(s.expected_kl) for s in schedules])
    start = time.perf_counter()
    optimum = exact_optima(entropy, steps)
    exact_time = time.perf_counter() - start
    gap = relative_gap(kl, optimum)
    certified = np.mean([s.certified for s in schedules]) * 100
    count = min(args.single, size)
    schedopt.optimize(profiles[0], steps)  # compile
    single, alone = timed(lambda: [schedopt.optimize(p, steps) for p in profiles[:count]], 1)
    alone_gap = relative_gap(np.asarray([float(s.expected_kl) for s in alone]), optimum[:count])
    return [
        f"| {family} | first call (compile + run) | {first:.1f} s |",
        f"| {family} | warm call (median of {args.repeats}) | {warm:.2f} s |",
        f"| {family} | schedules per second | {size / warm:.0f} |",
        f"| {family} | solved by the exact DP (certified) | {certified:.1f}% |",
        f"| {family} | optimal (within 1e-9 of the uncompressed DP) | "
        f"{np.mean(gap == 0) * 100:.2f}% ({int(np.sum(gap > 0))} of {size} above) |",
        f"| {family} | largest relative gap | {gap.max():.2e} |",
        f"| {family} | peak memory (process RSS so far) | {rss:.0f} MiB |",
        f"| {family} | uncompressed DP check, all {size} | {exact_time:.1f} s |",
        f"| {family} | optimize(), one problem per call | {count / single:.1f} schedules/s, "
        f"{np.mean(alone_gap == 0) * 100:.0f}% of {count} optimal |",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--family", choices=("smooth", "noisy", "both"), default="both")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=16, help="problems for optimize()")
    parser.add_argument("--frontier-n", type=int, default=131072)
    parser.add_argument("--frontier-k", type=int, default=4096)
    parser.add_argument("--skip-frontier", action="store_true")
    args = parser.parse_args()

    print(f"JAX {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} "
          f"device(s): {jax.devices()[0].device_kind}; {os.cpu_count()} CPU cores")
    families = ("smooth", "noisy") if args.family == "both" else (args.family,)
    print(f"\n## optimize_batch, n = {args.n}, T = {args.steps}, batch {args.batch}")
    print("| curves | what | value |\n|---|---|---|")
    for family in families:
        print("\n".join(bench_family(args, family)), flush=True)

    if not args.skip_frontier:
        fn, k = args.frontier_n, args.frontier_k
        profile = MarkovChain(0.8 * np.eye(4) + 0.05, fn).profile()
        first, _ = timed(lambda: fast_frontier(profile, k), 1)
        warm, values = timed(lambda: fast_frontier(profile, k), 2)
        probe = min(64, k)
        dp_first, _ = timed(lambda: schedopt.frontier(profile, probe), 1)
        dp_warm, dp_values = timed(lambda: schedopt.frontier(profile, probe), 1)
        same = np.allclose(values[:probe], dp_values, rtol=1e-10, atol=1e-9 * dp_values[0])
        print(f"\n## exact frontier, sticky Markov chain, n = {fn}, T = 1..{k}")
        print("| method | time |\n|---|---|")
        print(f"| fast_frontier (envelopes), first call | {first:.1f} s |")
        print(f"| fast_frontier, warm (median of 2) | {warm:.1f} s |")
        print(f"| frontier (divide and conquer), {probe} layers | {dp_warm:.1f} s "
              f"(about {dp_warm / probe * k:.0f} s for {k}) |")
        print(f"| same values on T <= {probe} | {same} |")


if __name__ == "__main__":
    main()
