"""Draw the README's picture: two laws, their curves, frontiers and 8-step schedules.

    python scripts/make_figure.py [--out docs/figure.png] [--caption-only]

Row 1: clustered sequences (the demo's mixture of 32 prototypes, n = 128, Monte Carlo
profile from 4096 sequences). Row 2: theory §10's sticky Markov chain (n = 128, exact
profile). Each row: g with the optimized, uniform and cosine 8-step schedules (shaded area =
expected KL), the least KL at every budget against the baselines, and tokens per step.

It prints the numbers of the README's caption (`caption`); tests/test_make_figure.py checks
that the README shows them. `--caption-only` prints them without drawing (the fast path).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import numpy as np

import schedopt
from schedopt.check import plot_frontier, plot_profile, plot_tokens, save_png
from schedopt.cli.known import clustered_sequences
from schedopt.distributions import MarkovChain

STEPS = 8


def rows():
    mixture = clustered_sequences(prototypes=32, fidelities=(0.9,), n=128)
    yield (
        "clustered sequences: 32 prototypes, n = 128, V = 8, 90% fidelity (Monte Carlo profile)",
        schedopt.estimate_law(mixture, key=jax.random.key(0), samples=4096).profile("model"),
        "symlog",
    )
    yield (
        "sticky Markov chain: 4 states, P = 0.8 I + 0.05, n = 128 (exact profile)",
        MarkovChain(0.8 * np.eye(4) + 0.05, 128).profile(),
        "linear",
    )


def schedules_of(profile) -> list:
    """The optimized, uniform and cosine 8-step schedules of one row."""
    return [schedopt.optimize(profile, STEPS), schedopt.uniform(profile, STEPS),
            schedopt.cosine(profile, STEPS)]


def caption(clustered: list, chain: list) -> str:
    """The numbers sentence of the README's caption, from each row's `schedules_of`."""
    best, uniform, cosine = (float(s.expected_kl) for s in clustered)
    tokens = np.asarray(clustered[0].tokens_per_step).tolist()
    chain_kl = [f"{float(s.expected_kl):.2f}" for s in chain]
    return (
        f"Top, clustered sequences: g falls within a few tokens, so the optimum `{tokens}` has "
        f"KL {best:.3g} nats against {uniform:.2f} for uniform and {cosine:.2f} for cosine. "
        f"Bottom, a sticky Markov chain: {chain_kl[0]} against {chain_kl[1]} and {chain_kl[2]}."
    )


def draw(computed: list, out: str) -> None:
    """The two-row picture of (title, profile, xscale, schedules) rows, written to `out`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(16.5, 9.4), layout="constrained")
    FigureCanvasAgg(figure)
    for sub, (title, profile, xscale, schedules) in zip(
        figure.subfigures(2, 1), computed, strict=True
    ):
        axes = sub.subplots(1, 3, gridspec_kw={"width_ratios": (1.25, 1, 1)})
        drawn = plot_profile(profile, schedules, axes[0], xscale=xscale)
        plot_frontier(profile, 32, axes[1], schedules=schedules)
        plot_tokens(schedules, axes[2])
        sub.suptitle(title, fontsize=12, fontweight="bold")
        kl = ", ".join(f"{s.method} {np.asarray(s.tokens_per_step).tolist()} "
                       f"{float(s.expected_kl):.4g}" for s in schedules)
        print(f"{title}\n  expected KL (nats): {kl}; shaded areas {np.round(drawn.areas, 4)}")
    save_png(figure, out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(Path(__file__).parent.parent / "docs" / "figure.png"))
    parser.add_argument("--caption-only", action="store_true",
                        help="print the caption's numbers without drawing")
    args = parser.parse_args(argv)
    computed = [(t, p, x, schedules_of(p)) for t, p, x in rows()]
    if not args.caption_only:
        draw(computed, args.out)
        print(f"wrote {args.out}")
    print("caption: " + caption(computed[0][3], computed[1][3]))


if __name__ == "__main__":
    main()
