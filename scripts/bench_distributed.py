"""Jobs per second of `optimize_batch` against the number of devices and processes.

One process with D simulated CPU devices:

    XLA_FLAGS=--xla_force_host_platform_device_count=4 python scripts/bench_distributed.py

P processes joined on localhost (run each line in its own shell, or with & as below):

    for i in 0 1; do XLA_FLAGS=--xla_force_host_platform_device_count=2 \\
      python scripts/bench_distributed.py --coordinator 127.0.0.1:12345 \\
      --num-processes 2 --process-id $i & done; wait

Process 0 prints one line: devices, processes, problems, n, T, and the median wall time of
warm calls (compile excluded) with the schedules per second. Profiles are random smooth
decreasing curves g_j = a exp(-j / s) + b (1 + j)^(-p) + c (fixed seed, the same in every
process).
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=256, help="sequence length")
    parser.add_argument("--steps", type=int, default=16, help="budget T")
    parser.add_argument("--batch", type=int, default=1024, help="problems per call")
    parser.add_argument("--repeats", type=int, default=3, help="warm calls (median)")
    parser.add_argument("--certify", choices=("auto", "true", "false"), default="auto",
                        help="optimize_batch's solver choice (default auto)")
    parser.add_argument("--coordinator", default=None, help="HOST:PORT of process 0")
    parser.add_argument("--num-processes", type=int, default=None)
    parser.add_argument("--process-id", type=int, default=None)
    args = parser.parse_args()

    from schedopt.distributed import _runtime as distributed

    if args.coordinator is not None:
        distributed.initialize(args.coordinator, args.num_processes, args.process_id,
                               timeout=120, label="bench_distributed")
    import jax
    import numpy as np

    import schedopt

    rng = np.random.default_rng(0)
    j = np.arange(args.n)[None, :]
    a, b, c = rng.uniform(0.2, 2.0, (3, args.batch, 1))
    s = np.exp(rng.uniform(np.log(2), np.log(args.n), (args.batch, 1)))
    p = rng.uniform(0.3, 2.0, (args.batch, 1))
    g = a * np.exp(-j / s) + b * (1 + j) ** (-p) + 0.1 * c
    profiles = [schedopt.EntropyProfile.from_conditional_entropy(row) for row in g]

    certify = {"auto": "auto", "true": True, "false": False}[args.certify]
    start = time.perf_counter()
    schedules = schedopt.optimize_batch(profiles, args.steps, certify=certify)
    first = time.perf_counter() - start
    methods = sorted({s.method for s in schedules})
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        schedopt.optimize_batch(profiles, args.steps, certify=certify)
        times.append(time.perf_counter() - start)
    warm = float(np.median(times))
    if jax.process_index() == 0:
        print(f"devices {jax.device_count()} ({jax.devices()[0].platform}), processes "
              f"{jax.process_count()}, problems {args.batch}, n {args.n}, T {args.steps}, "
              f"solver {'+'.join(methods)}: "
              f"first call {first:.2f} s, warm {warm:.3f} s (median of {args.repeats}), "
              f"{args.batch / warm:.0f} schedules/s", flush=True)


if __name__ == "__main__":
    main()
