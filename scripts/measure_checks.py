"""Measure how far `verify` can be trusted: coverage on small laws, and the demo's clustered law.

    python scripts/measure_checks.py coverage [--checks 400] [--sequences 200]
    python scripts/measure_checks.py demo [--seeds 14] [--sequences 4096] [--sharp]
    python scripts/measure_checks.py grid [--n 384] [--sequences 2048]

coverage: the fraction of 95% intervals that hold the truth, for laws whose exact KL is known
(Markov chain: closed form; HMM: enumerated table) and for the paired check of a mixture (its
curve measured on the same sequences). One large draw per schedule is split into `--checks`
independent checks of `--sequences` sequences each.

demo: the demo's 8-step check on its clustered law over seeds, as `schedopt demo` runs it
(profile from 4096 sequences, optimized schedule, paired check): verdicts, the mean
difference and the spread of the differences over seeds next to the reported standard error,
and how heavy the tails are. `--sharp`: the same for the README figure's clustered law (32
prototypes at 90% fidelity), whose tails are heavy.

grid: the bias of a predicted KL from a sparse curve against the curve at every count, on the
same sequences (n above the full-grid limit): the default (33 points plus each cut and its
neighbours) and plain 33-point interpolation.
"""

from __future__ import annotations

import argparse
import collections
import statistics

import jax
import numpy as np

import schedopt
from schedopt.check import Verification, verification_samples
from schedopt.cli.known import clustered_sequences, demo_examples
from schedopt.distributions import HiddenMarkov, MarkovChain, MixtureOfProducts, Table
from schedopt.estimate import (
    CurveEstimate,
    estimate_curves,
    interpolation_matrix,
    revealed_grid,
    schedule_grid,
)


def coverage(checks: int, sequences: int) -> None:
    hmm = HiddenMarkov(0.9 * np.eye(2) + 0.05, [[0.8, 0.15, 0.05], [0.05, 0.15, 0.8]], 6)
    mixture = MixtureOfProducts(
        [0.5, 0.3, 0.2],
        np.stack([np.tile(r, (6, 1)) for r in
                  ([0.9, 0.05, 0.05], [0.05, 0.9, 0.05], [0.1, 0.1, 0.8])]),
    )
    cases = [
        ("markov n=6 (closed form)", MarkovChain(0.85 * np.eye(3) + 0.05, 6), None),
        ("hmm n=6 (enumerated)", hmm, Table(hmm.table()).profile()),
        ("mixture n=6 (paired)", mixture, None),
    ]
    print(f"| law | schedule | coverage of {checks} checks x {sequences} sequences | "
          "max excess kurtosis |")
    print("|---|---|---|---|")
    for name, law, profile in cases:
        for steps in ([1, 5], [3, 3], [6]):
            kl, predicted, se = verification_samples(
                law, steps, key=jax.random.key(1), samples=checks * sequences, profile=profile
            )
            kl = kl.reshape(checks, sequences)
            paired = np.ndim(predicted) == 1
            pred = np.reshape(predicted, (checks, sequences)) if paired else predicted
            results = [
                Verification.from_samples(kl[i], pred[i] if paired else pred,
                                          predicted_stderr=se, steps=len(steps))
                for i in range(checks)
            ]
            covered = np.mean([r.agrees for r in results])
            kurtosis = max(r.excess_kurtosis for r in results)
            print(f"| {name} | {steps} | {covered:.1%} | {kurtosis:.3g} |")


def demo(seeds: int, sequences: int, sharp: bool) -> None:
    if sharp:  # the README figure's law: 32 prototypes at 90% fidelity (heavy tails)
        description = "clustered sequences: 32 prototypes at 90% fidelity, n = 128, V = 8"
        law = clustered_sequences(prototypes=32, fidelities=(0.9,), n=128)
    else:
        _, description, law = demo_examples(128)[0]
    print(description)
    rows = []
    for seed in range(seeds):
        k_profile, k_verify = jax.random.split(jax.random.fold_in(jax.random.key(seed), 0))
        profile = schedopt.estimate_law(law, key=k_profile, samples=4096).profile("model")
        best = schedopt.optimize(profile, 8)
        rows.append(schedopt.verify(law, best, key=k_verify, samples=sequences))
    diff = np.array([r.difference for r in rows])
    print(f"{seeds} seeds, {sequences} sequences each: "
          f"{dict(collections.Counter(r.status for r in rows))}")
    print(f"sampled below predicted in {int(np.sum(diff < 0))} of {seeds}")
    print(f"mean difference {diff.mean():+.4f} nats; spread over seeds {diff.std(ddof=1):.4f}; "
          "median reported paired stderr "
          f"{statistics.median(r.difference_stderr for r in rows):.4f}"
          f"; median unpaired stderr "
          f"{statistics.median(np.hypot(r.stderr, r.predicted_stderr) for r in rows):.4f}")
    kurtosis = [r.excess_kurtosis for r in rows]
    share = [r.largest_share for r in rows]
    print(f"excess kurtosis: median {statistics.median(kurtosis):.2f}, range "
          f"{min(kurtosis):.2f} .. {max(kurtosis):.2f}; largest sequence's share of the "
          f"squared deviations: at most {max(share):.3f}")


def grid(n: int, sequences: int) -> None:
    law = clustered_sequences(prototypes=32, fidelities=(0.9,), n=n)
    key = jax.random.key(0)
    x = law.sample(sequences, key=key)
    full = estimate_curves(law.log_conditionals, x, key=key, grid=np.arange(n))
    profile = full.profile("model")
    for steps_budget in (8, 16):
        steps = np.asarray(schedopt.optimize(profile, steps_budget).tokens_per_step)
        reference = full.kl_per_sequence(steps, "model")
        g = schedule_grid(n, steps)
        sparse = CurveEstimate(revealed=g, cross_entropy=full.cross_entropy[:, g],
                               predictive_entropy=full.predictive_entropy[:, g], n=n,
                               forward_passes=0)
        default = sparse.kl_per_sequence(steps, "model")
        g33 = revealed_grid(n)
        weights = -np.ones(n)
        np.add.at(weights, np.cumsum([0, *steps[:-1]]), steps)
        old = full.predictive_entropy[:, g33] @ (interpolation_matrix(g33, n).T @ weights)
        print(f"T = {steps_budget}, steps {steps.tolist()}: full grid "
              f"{reference.mean():.5f} nats")
        for name, v in (("default (33 + cuts)", default), ("33-point interpolation", old)):
            d = v - reference
            print(f"  {name}: bias {d.mean():+.5f} +- {d.std(ddof=1) / np.sqrt(d.size):.5f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("coverage", "demo", "grid"))
    parser.add_argument("--checks", type=int, default=400)
    parser.add_argument("--sequences", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=14)
    parser.add_argument("--n", type=int, default=384)
    parser.add_argument("--sharp", action="store_true",
                        help="demo: the README figure's law (32 prototypes at 90%% fidelity)")
    args = parser.parse_args()
    if args.what == "coverage":
        coverage(args.checks, args.sequences or 200)
    elif args.what == "demo":
        demo(args.seeds, args.sequences or 4096, args.sharp)
    else:
        grid(args.n, args.sequences or 2048)
