"""Benchmark of the exact solver: the certified result against a plain O(T n) hull DP.

For n in {1024, 4096, 32768, 131072} and T in {8, 64, 512} on three curves (smooth
g_j = 1 / (1 + j / 64); a sticky 4-state Markov chain, closed form; the chain with 0.01 nats of
noise projected by PAV, "regularised"), medians after compile of:

- `optimal_schedule` (the certified result, and the certificate inside `optimize`), the
  solver alone (`schedopt.solve.optimal_tokens`, without building the `Schedule`), and the
  building alone (`Schedule.from_tokens`: checking the tokens and re-evaluating the KL);
- a plain convex-hull-trick DP written below (numba, every integer position a candidate cut,
  O(T n)): the baseline the issue sets, and an independent check of the optimum;
- `optimize(..., certify=False)` (the Optax relaxation and its repair, n <= --optax-max-n),
  with its KL as a ratio to the optimum.

Then the exact frontier (`frontier`) at n = 131072 for every T <= 4096 on the smooth curve and
on the chain, beside the plain hull DP run to T = 4096 (the same layers) as the baseline of the
same run.

    python scripts/bench_exact.py [--repeats 3]
    python scripts/bench_exact.py --steps 8 --no-frontier     # the T = 8 rows only
    python scripts/bench_exact.py --jax-dp     # only: the vmapped JAX DP against numba, CPU
    python scripts/bench_exact.py --kl         # only: one schedule's KL, numpy against XLA

`--jax-dp` times, at n = 4096 on the chain and its regularised version, the JAX DP of
`schedopt.solve` (one curve, and a batch of 32 through one vmapped call) against the numba
Lagrangian solver, to choose the CPU path (docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba
import numpy as np

import schedopt
from schedopt.distributions import MarkovChain
from schedopt.solve import optimal_tokens

TRANSITION = 0.8 * np.eye(4) + 0.05


@numba.njit(cache=True)
def hull_dp(h, steps):
    """The least KL with exactly `steps` blocks, by the layered hull DP on every position.

    F_t(b) = min_a F_{t-1}(a) + (b - a) g_a - (H_b - H_a): in b, candidate a is a line of slope
    g_a (non-increasing in a) and intercept F_{t-1}(a) + H_a - a g_a, queried at increasing b.
    Slopes within rounding of each other count as equal (on a flat run of g the differences
    of H differ in the last bits, and the hull test on such near-equal slopes is noise).
    """
    n = h.shape[0] - 1
    g = h[1:] - h[:-1]
    tol = 64 * np.finfo(np.float64).eps * np.max(np.abs(h))
    prev = np.full(n + 1, np.inf)
    prev[0] = 0.0
    cur = np.empty(n + 1)
    slope = np.empty(n)
    inter = np.empty(n)
    for t in range(1, steps + 1):
        size = 0
        ptr = 0
        cur[: t] = np.inf
        for b in range(t, n + 1):
            a = b - 1
            c = prev[a] + h[a] - a * g[a]
            s = g[a]
            if c < np.inf:
                if size > 0 and slope[size - 1] - s <= tol:  # equal slopes: the lower line
                    if inter[size - 1] <= c:
                        c = np.inf
                    else:
                        size -= 1
            if c < np.inf:
                while size >= 2 and ((c - inter[size - 2]) * (slope[size - 2] - slope[size - 1])
                                     <= (inter[size - 1] - inter[size - 2])
                                     * (slope[size - 2] - s)):
                    size -= 1
                slope[size] = s
                inter[size] = c
                size += 1
            if ptr >= size:
                ptr = size - 1
            best = inter[ptr] + slope[ptr] * b
            while ptr + 1 < size and inter[ptr + 1] + slope[ptr + 1] * b <= best:
                ptr += 1
                best = inter[ptr] + slope[ptr] * b
            cur[b] = best - h[b]
        prev, cur = cur, prev
    return prev[n]


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time (s) of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def curves(n: int) -> dict[str, schedopt.EntropyProfile]:
    smooth = 1.0 / (1.0 + np.arange(n) / 64.0)
    chain = MarkovChain(TRANSITION, n).profile()
    g = np.asarray(chain.conditional_entropy)
    noisy = g + np.random.default_rng(0).normal(size=n) * 0.01
    return {
        "smooth": schedopt.EntropyProfile.from_conditional_entropy(smooth),
        "chain": chain,
        "regularised": schedopt.EntropyProfile.from_conditional_entropy(
            noisy, check=False).regularize(),
    }


def jax_against_numba() -> None:
    """The vmapped JAX DP on the run grid against the numba Lagrangian solver, per curve."""
    import jax

    from schedopt.solve import _exact as exact

    for curve, profile in curves(4096).items():
        if curve == "smooth":
            continue
        h = np.asarray(profile.entropy, np.float64)
        starts = exact.run_starts(h)
        for steps in (64, 512):
            padded = 1 << (steps - 1).bit_length()
            with jax.enable_x64(True):
                grid = exact.make_grid(h, starts)
                batch = jax.tree.map(lambda a: np.stack([a] * 32), grid)
                vmapped = jax.jit(jax.vmap(
                    lambda g: exact.solve_on_grid(g, steps, padded)))  # noqa: B023
                one, _ = timed(lambda: jax.block_until_ready(
                    exact._solve_on_grid(grid, steps, padded)), 4)  # noqa: B023
                many, _ = timed(lambda: jax.block_until_ready(vmapped(batch)), 3)  # noqa: B023
            optimal_tokens(h, steps)
            numba_time, _ = timed(lambda: optimal_tokens(h, steps), 4)  # noqa: B023
            print(f"{curve}, n = 4096, {starts.size - 1} runs, T = {steps}: JAX DP "
                  f"{one * 1e3:.1f} ms one curve, {many / 32 * 1e3:.1f} ms per curve vmapped "
                  f"x32; numba Lagrangian {numba_time * 1e3:.2f} ms", flush=True)


def kl_routes(repeats: int) -> None:
    """`evaluate_kl` on one schedule (its numpy route) against the same schedule as a batch of
    one (the jitted JAX kernel), on the smooth curve at n = 131072: medians of `repeats`."""
    from schedopt.objective import evaluate_kl

    h = np.asarray(curves(131072)["smooth"].entropy, np.float64)
    n = h.size - 1
    print("| n | T | one schedule, numpy (ms) | a batch of one, XLA (ms) |")
    print("|---|---|---|---|")
    for steps in (8, 64, 512, 4096):
        tokens = np.full(steps, n // steps)
        tokens[: n - tokens.sum()] += 1
        evaluate_kl(h, tokens[None])  # compile
        one, a = timed(lambda: evaluate_kl(h, tokens), repeats)  # noqa: B023
        batch, b = timed(lambda: evaluate_kl(h, tokens[None]), repeats)  # noqa: B023
        assert abs(float(a) - float(b[0])) <= 1e-9 * float(a)
        print(f"| {n} | {steps} | {one * 1e3:.2f} | {batch * 1e3:.2f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--optax-max-n", type=int, default=32768)
    parser.add_argument("--jax-dp", action="store_true", help="only the JAX DP against numba")
    parser.add_argument("--steps", default="8,64,512", help="comma-separated budgets T")
    parser.add_argument("--no-frontier", action="store_true", help="skip the frontier timing")
    parser.add_argument("--kl", action="store_true", help="only one schedule's KL, both routes")
    args = parser.parse_args()
    if args.kl:
        kl_routes(max(args.repeats, 20))
        return
    budgets = [int(t) for t in args.steps.split(",")]
    if args.jax_dp:
        jax_against_numba()
        return

    print("| curve | n | T | certified (ms) | solver alone (ms) | Schedule (ms) | hull DP (ms) | "
          "hull / certified | abs(KL - hull DP) (nats) | certify=False (ms) | "
          "its KL / optimum |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    hull_dp(np.linspace(0.0, 1.0, 3) ** 0.5, 1)  # compile
    for n in (1024, 4096, 32768, 131072):
        for curve, profile in curves(n).items():
            h = np.asarray(profile.entropy, np.float64)
            for steps in budgets:
                repeats = args.repeats if n <= 32768 or steps <= 64 else 1
                schedopt.optimal_schedule(profile, steps)  # compile
                exact_time, exact = timed(
                    lambda: schedopt.optimal_schedule(profile, steps), repeats)  # noqa: B023
                solver_time, _ = timed(
                    lambda: optimal_tokens(h, steps), repeats)  # noqa: B023
                build_time, _ = timed(lambda: schedopt.Schedule.from_tokens(  # noqa: B023
                    profile, exact.tokens_per_step, "exact"), repeats)  # noqa: B023
                hull_time, hull = timed(lambda: hull_dp(h, steps), repeats)  # noqa: B023
                kl = float(exact.expected_kl)
                assert bool(exact.certified)
                optax, ratio = "", ""
                if n <= args.optax_max_n:
                    schedopt.optimize(profile, steps, certify=False)  # compile
                    fast, relaxed = timed(
                        lambda: schedopt.optimize(profile, steps, certify=False),  # noqa: B023
                        repeats)
                    optax = f"{fast * 1e3:.1f}"
                    ratio = f"{float(relaxed.expected_kl) / kl:.4f}" if kl > 0 else "-"
                print(f"| {curve} | {n} | {steps} | {exact_time * 1e3:.1f} | "
                      f"{solver_time * 1e3:.1f} | {build_time * 1e3:.1f} | "
                      f"{hull_time * 1e3:.1f} | "
                      f"{hull_time / exact_time:.2g} | {abs(kl - hull):.0e} | "
                      f"{optax} | {ratio} |", flush=True)

    if args.no_frontier:
        return
    print()
    for curve, profile in curves(131072).items():
        if curve == "regularised":
            continue
        first, _ = timed(lambda: schedopt.frontier(profile, 4096), 1)  # noqa: B023
        warm, values = timed(lambda: schedopt.frontier(profile, 4096), 3)  # noqa: B023
        check = abs(values[511] - float(schedopt.optimal_schedule(profile, 512).expected_kl))
        # The plain hull DP to T = 4096 makes the same K n sweeps: the same-load baseline.
        plain, _ = timed(lambda: hull_dp(np.asarray(profile.entropy), 4096), 1)  # noqa: B023
        print(f"exact frontier, {curve}, n=131072, every T <= 4096: {warm:.2f} s after "
              f"compile (median of 3), {first:.2f} s first call; |f(512) - optimum| = "
              f"{check:.1e}; the plain hull DP to T = 4096 (the same layers): {plain:.2f} s",
              flush=True)


if __name__ == "__main__":
    main()
