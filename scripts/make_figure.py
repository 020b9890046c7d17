"""Draw the README's picture: two laws, their curves, frontiers and 8-step schedules.

    python scripts/make_figure.py [--out docs/figure.png]

Row 1: clustered sequences (the demo's mixture of 32 prototypes, n = 128, Monte Carlo
profile from 4096 sequences). Row 2: theory §10's sticky Markov chain (n = 128, exact
profile). Each row: g with the optimized, uniform and cosine 8-step schedules (shaded area =
expected KL), the least KL at every budget against the baselines, and tokens per step.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

import schedopt
from schedopt.cli.known import clustered_sequences
from schedopt.distributions import MarkovChain
from schedopt.plot import plot_frontier, plot_profile, plot_tokens, save_png

STEPS = 8


def rows():
    mixture = clustered_sequences(prototypes=32, fidelities=(0.9,), n=128)
    yield (
        "clustered sequences: 32 prototypes, n = 128, V = 8, 90% fidelity (Monte Carlo profile)",
        mixture.profile(key=jax.random.key(0), samples=4096),
        "symlog",
    )
    yield (
        "sticky Markov chain: 4 states, P = 0.8 I + 0.05, n = 128 (exact profile)",
        MarkovChain(0.8 * np.eye(4) + 0.05, 128).profile(),
        "linear",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "docs" / "figure.png"))
    args = parser.parse_args()

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16.5, 9.4), layout="constrained")
    FigureCanvasAgg(figure)
    for sub, (title, profile, xscale) in zip(figure.subfigures(2, 1), rows(), strict=True):
        schedules = [schedopt.optimize(profile, STEPS), schedopt.uniform(profile, STEPS),
                     schedopt.cosine(profile, STEPS)]
        axes = sub.subplots(1, 3, gridspec_kw={"width_ratios": (1.25, 1, 1)})
        drawn = plot_profile(profile, schedules, axes[0], xscale=xscale)
        plot_frontier(profile, 32, axes[1], schedules=schedules)
        plot_tokens(schedules, axes[2])
        sub.suptitle(title, fontsize=12, fontweight="bold")
        kl = ", ".join(f"{s.method} {np.asarray(s.tokens_per_step).tolist()} "
                       f"{float(s.expected_kl):.4g}" for s in schedules)
        print(f"{title}\n  expected KL (nats): {kl}; shaded areas {np.round(drawn.areas, 4)}")
    save_png(figure, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
