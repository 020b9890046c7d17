"""Benchmark of the core engine: optimize() vs the exact DP.

For n in {256, 4096, 32768} and T in {4, 64, 512}: optimize() after compile (median of
repeats), the first call including compile, the exact DP (optimal_schedule) after compile, and
the KL ratio optimize / exact. Then the exact frontier for n = 32768, T <= 512, and
`schedopt optimize` as a whole process at n = 4096, T = 64 (cold and warm compile cache).

Profiles: a sticky 4-state Markov chain (closed form), the worked example's family.

    python scripts/bench_optimize.py [--repeats 5]
    python scripts/bench_optimize.py --windows [--repeats 7]   # repair window 8 vs 12, paired
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

import schedopt
from schedopt.distributions import MarkovChain

TRANSITION = 0.8 * np.eye(4) + 0.05


def timed(fn, repeats: int) -> tuple[float, object]:
    """Median wall time (s) of `repeats` calls, and the last result."""
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def regularised(profile, seed: int = 0):
    """The chain's curve plus 0.01 nats of noise, projected by PAV (an estimate's flat runs)."""
    g = np.asarray(profile.conditional_entropy)
    noisy = g + np.random.default_rng(seed).normal(size=g.size) * 0.01
    return schedopt.EntropyProfile.from_conditional_entropy(noisy, check=False).regularize()


def window_table(repeats: int) -> None:
    """optimize() with the repair window 8 against 12 (the default), calls interleaved."""
    print("| n | T | window 8 (ms) | window 12 (ms) | ratio 12 / 8 |")
    print("|---|---|---|---|---|")
    for n in (4096, 32768):
        profile = MarkovChain(TRANSITION, n).profile()
        for steps in (4, 64, 512):
            times: dict[int, list[float]] = {8: [], 12: []}
            for window in times:
                schedopt.optimize(profile, steps, window=window)  # compile
            for _ in range(repeats):
                for window in times:
                    start = time.perf_counter()
                    schedopt.optimize(profile, steps, window=window)
                    times[window].append(time.perf_counter() - start)
            w8, w12 = statistics.median(times[8]), statistics.median(times[12])
            print(f"| {n} | {steps} | {w8 * 1e3:.1f} | {w12 * 1e3:.1f} | {w12 / w8:.2f} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--windows", action="store_true",
                        help="only the paired table of repair windows 8 and 12")
    args = parser.parse_args()
    if args.windows:
        window_table(args.repeats)
        return

    print("| curve | n | T | optimize, certified (ms) | optimize, certify=False (ms) | "
          "first call (s) | exact DP (ms) | KL ratio | certified |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in (256, 4096, 32768):
        chain = MarkovChain(TRANSITION, n).profile()
        for curve, profile in (("chain", chain), ("regularised", regularised(chain))):
            for steps in (4, 64, 512):
                if steps > n:
                    continue
                first, _ = timed(lambda: schedopt.optimize(profile, steps), 1)  # noqa: B023
                warm, opt = timed(
                    lambda: schedopt.optimize(profile, steps), args.repeats  # noqa: B023
                )
                schedopt.optimize(profile, steps, certify=False)  # noqa: B023
                fast, _ = timed(
                    lambda: schedopt.optimize(profile, steps, certify=False),  # noqa: B023
                    args.repeats,
                )
                schedopt.optimal_schedule(profile, steps)  # compile
                exact_time, exact = timed(
                    lambda: schedopt.optimal_schedule(profile, steps),  # noqa: B023
                    max(1, args.repeats // 2),
                )
                ratio = (float(opt.expected_kl) / float(exact.expected_kl)
                         if float(exact.expected_kl) > 0 else 1.0)
                print(
                    f"| {curve} | {n} | {steps} | {warm * 1e3:.1f} | {fast * 1e3:.1f} | "
                    f"{first:.2f} | {exact_time * 1e3:.0f} | {ratio:.12f} | {opt.certified} |",
                    flush=True,
                )

    profile = MarkovChain(TRANSITION, 32768).profile()
    first, _ = timed(lambda: schedopt.frontier(profile, 512), 1)
    cpu = time.process_time()
    warm, _ = timed(lambda: schedopt.frontier(profile, 512), 3)
    cpu = (time.process_time() - cpu) / 3
    print(f"\nexact frontier n=32768, T<=512: {warm:.2f} s after compile ({cpu:.2f} s of CPU "
          f"time), {first:.2f} s first call")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "p.json")
        MarkovChain(TRANSITION, 4096).profile().save(path)
        env = {**os.environ, "SCHEDOPT_CACHE_DIR": os.path.join(tmp, "cache")}
        command = [sys.executable, "-m", "schedopt", "--quiet", "optimize", "--profile", path,
                   "--steps", "64", "--out", os.path.join(tmp, "s.json")]

        def run():
            subprocess.run(command, check=True, env=env, capture_output=True)

        cold, _ = timed(run, 1)
        warm, _ = timed(run, 3)
        print(f"`schedopt optimize` n=4096, T=64 whole process: {cold:.2f} s with an empty "
              f"compile cache, {warm:.2f} s (median of 3) with a warm one")


if __name__ == "__main__":
    main()
