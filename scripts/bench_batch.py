"""Benchmark of batch jobs: optimize_batch, scipy, and the exact frontier.

1. `optimize_batch` on a batch of random profiles (n = 1024, T = 32, 4096 problems by default):
   the first call (compile included), the median of warm calls, schedules per second, and every
   schedule's KL against the exact optimum (the divide-and-conquer DP, vmapped), with the
   fraction within 1e-6 (relative). Beside it, `optimize` (one problem per call) on a subset.
2. scipy.optimize L-BFGS-B on the same relaxed objective (same logits, same objective and
   gradient, compiled), followed by the same rounding and repair, one problem at a time: time
   per schedule and quality on a subset, and the speed ratio.
3. `fast_frontier` (certified lower envelopes) for n = 131072, K = 4096, beside the
   divide-and-conquer `frontier` timed on its first layers and extrapolated.

Profiles: g_j = a exp(-j / s1) + b (1 + j / s2)^(-p) + c with random a, b, c, s1, s2, p
(smooth, every shape from a sharp early drop to a slow power law); `--family noisy` adds
Gaussian noise (0.01 nats) and regularises (PAV), which leaves flat runs. Frontier profile:
the sticky 4-state Markov chain of THEORY 10.

    python scripts/bench_batch.py                                  # everything, defaults
    python scripts/bench_batch.py --batch 1024 --skip-frontier     # smaller, quicker
    python scripts/bench_batch.py --family noisy --batch 1024 --skip-frontier --scipy 0

Prints the JAX backend and devices first (run it on a GPU/TPU host as is).
"""

from __future__ import annotations

import argparse
import importlib
import os
import resource
import time

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize
from bench_optimize import timed  # same folder: median wall time of repeats

import schedopt
from schedopt.batch import settle
from schedopt.distributions import MarkovChain
from schedopt.divergence import _expected_kl, _relaxed_kl
from schedopt.exact import _frontier, fast_frontier
from schedopt.profile import isotonic_nonincreasing

# `schedopt.optimize` is also the name of the function; this is the module.
opt_module = importlib.import_module("schedopt.optimize")


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
    """(KL - optimum) / optimum, with float64 slack; inf where the optimum is 0 and KL is not."""
    excess = np.maximum(kl - optimum - 1e-12, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(excess > 0, excess / optimum, 0.0)


def exact_optima(entropy: np.ndarray, steps: int) -> np.ndarray:
    """The DP's optimum for every row (vmapped divide and conquer, in chunks)."""
    solve = jax.jit(jax.vmap(lambda e: _frontier(e, steps)[-1]))
    return np.concatenate(
        [np.asarray(solve(jnp.asarray(entropy[i : i + 256]))) for i in range(0, len(entropy), 256)]
    )


def scipy_schedule(entropy: np.ndarray, steps: int, padded: int, window: int):
    """L-BFGS-B on the relaxed KL over the same logits, then the same rounding and repair."""
    n = entropy.shape[0] - 1
    h = jnp.asarray(entropy)
    theta0 = np.asarray(opt_module.density_logits(h, steps, padded, 0.5))

    value_and_grad = _compiled_value_and_grad(n, steps, padded)
    result = scipy.optimize.minimize(
        lambda t: tuple(np.asarray(x, np.float64) for x in value_and_grad(h, jnp.asarray(t))),
        theta0, jac=True, method="L-BFGS-B", options={"maxiter": 2000, "gtol": 1e-10},
    )
    cuts = _compiled_round_repair(n, steps, padded, window)(h, jnp.asarray(result.x))
    return float(_expected_kl(h, np.diff(np.concatenate([[0], np.asarray(cuts), [n]]))))


_CACHE: dict = {}


def _compiled_value_and_grad(n, steps, padded):
    key = ("vg", n, steps, padded)
    if key not in _CACHE:
        _CACHE[key] = jax.jit(jax.value_and_grad(
            lambda h, t: _relaxed_kl(h, opt_module.cuts_from_logits(t, steps, n))))
    return _CACHE[key]


def _compiled_round_repair(n, steps, padded, window):
    key = ("rr", n, steps, padded, window)
    if key not in _CACHE:
        def round_repair(h, theta):
            cuts = opt_module.round_cuts(opt_module.cuts_from_logits(theta, steps, n), steps, n)
            return settle(h, cuts, steps, window)[: steps - 1]

        _CACHE[key] = jax.jit(round_repair)
    return _CACHE[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--family", choices=("smooth", "noisy"), default="smooth")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--single", type=int, default=16, help="problems for optimize()")
    parser.add_argument("--scipy", type=int, default=64, help="problems for scipy (0: skip)")
    parser.add_argument("--frontier-n", type=int, default=131072)
    parser.add_argument("--frontier-k", type=int, default=4096)
    parser.add_argument("--skip-frontier", action="store_true")
    args = parser.parse_args()

    print(f"JAX {jax.__version__}, backend {jax.default_backend()}, {jax.device_count()} "
          f"device(s): {jax.devices()[0].device_kind}; {os.cpu_count()} CPU cores")
    n, steps, size = args.n, args.steps, args.batch
    entropy = random_entropy(np.random.default_rng(0), size, n, args.family)
    profiles = [schedopt.EntropyProfile.from_entropy(h, check=False) for h in entropy]

    first, _ = timed(lambda: schedopt.optimize_batch(profiles, steps), 1)
    warm, schedules = timed(lambda: schedopt.optimize_batch(profiles, steps), args.repeats)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    kl = np.asarray([float(s.expected_kl) for s in schedules])
    start = time.perf_counter()
    optimum = exact_optima(entropy, steps)
    exact_time = time.perf_counter() - start
    gap = relative_gap(kl, optimum)
    polished = np.mean([s.relaxed_kl > float(s.expected_kl) for s in schedules])
    print(f"\n## optimize_batch, {args.family} profiles, n = {n}, T = {steps}, batch {size}")
    print("| what | value |\n|---|---|")
    print(f"| first call (compile + run) | {first:.1f} s |")
    print(f"| warm call (median of {args.repeats}) | {warm:.2f} s |")
    print(f"| schedules per second | {size / warm:.0f} |")
    print(f"| within 1e-6 of the exact optimum | {np.mean(gap <= 1e-6) * 100:.2f}% "
          f"({int(np.sum(gap > 1e-6))} of {size} above) |")
    print(f"| median, largest relative gap | {np.median(gap):.2e}, {gap.max():.2e} |")
    print(f"| relaxed value still above the integer KL | {polished * 100:.1f}% |")
    print(f"| peak memory (process RSS) | {rss:.0f} MiB |")
    print(f"| exact check (vmapped DP, all {size}) | {exact_time:.1f} s |")

    count = min(args.single, size)
    schedopt.optimize(profiles[0], steps)  # compile
    single, alone = timed(lambda: [schedopt.optimize(p, steps) for p in profiles[:count]], 1)
    alone_gap = relative_gap(np.asarray([float(s.expected_kl) for s in alone]), optimum[:count])
    print(f"| optimize(), one problem per call | {count / single:.1f} schedules/s "
          f"({size / warm / (count / single):.0f}x slower), {np.mean(alone_gap <= 1e-6) * 100:.0f}%"
          f" of {count} within 1e-6 |")

    if args.scipy:
        count = min(args.scipy, size)
        padded = opt_module.bucket(steps)
        scipy_schedule(entropy[0], steps, padded, 12)  # compile the objective and repair
        start = time.perf_counter()
        scipy_kl = np.asarray([scipy_schedule(h, steps, padded, 12) for h in entropy[:count]])
        scipy_time = (time.perf_counter() - start) / count
        scipy_gap = relative_gap(scipy_kl, optimum[:count])
        print(f"\n## scipy.optimize L-BFGS-B on the same relaxed objective ({count} problems)")
        print("| method | s per schedule | within 1e-6 of the optimum |\n|---|---|---|")
        within = np.mean(gap[:count] <= 1e-6) * 100
        print(f"| optimize_batch | {warm / size * 1e3:.3f} ms | {within:.1f}% |")
        print(f"| L-BFGS-B (gtol 1e-10) + same repair | {scipy_time * 1e3:.1f} ms | "
              f"{np.mean(scipy_gap <= 1e-6) * 100:.1f}% |")
        print(f"| speed ratio (scipy / batch) | {scipy_time / (warm / size):.0f}x | |")

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
