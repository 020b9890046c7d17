"""Fixed schedules against the entropy-bounded adaptive sampler, on laws with exact quality.

    python scripts/bench_adaptive.py --samples 2000 --json adaptive.json --plot adaptive.png

For three known laws (n = 64 unless --length says otherwise):

- code: the Reed-Solomon [n, 5] code over F_67; quality = fraction of samples that are
  codewords (exact sampling: 1);
- markov: a sticky 8-state Markov chain; quality = mean log-likelihood of the samples under
  the chain (nats per sequence; exact sampling gives -H(X));
- mixture: 16 clusters of product laws over 8 symbols; quality as for markov;

it samples with the optimal fixed schedule (exact DP on the law's profile: exact for the code
and the chain, a 4096-sequence Monte Carlo estimate for the mixture), uniform, cosine (each at
T in --steps) and the EB sampler (at a grid of gamma, and at the gamma whose mean forward
passes match each T of --match, found by bisection on a small batch). Prints a Markdown table
of quality at equal average forward passes, and draws quality against passes.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import jax
import numpy as np

import schedopt
from schedopt.check import sample_entropy_bounded, sample_quality
from schedopt.distributions import LinearCode, MarkovChain, MixtureOfProducts
from schedopt.schedule import cosine_tokens, uniform_tokens
from schedopt.solve import optimal_schedule


def laws(n: int) -> dict:
    rng = np.random.default_rng(0)
    sticky = 0.9 * np.eye(8) + 0.1 * rng.dirichlet(np.ones(8), size=8)
    marginals = rng.dirichlet(np.full(8, 0.3), size=(16, n))
    q = next(p for p in range(max(n, 2), 4 * n + 8) if all(p % d for d in range(2, p)))
    return {
        "code": LinearCode.reed_solomon(n, 5, q),
        "markov": MarkovChain(sticky, n),
        "mixture": MixtureOfProducts(np.full(16, 1 / 16), marginals),
    }


def quality(law_name: str, law, tokens) -> tuple[float, float]:
    """(value, stderr): codeword fraction for the code, mean log-likelihood otherwise."""
    r = sample_quality(law, np.asarray(tokens))
    if law_name == "code":
        return r.in_support, r.in_support_stderr
    return r.log_likelihood, r.log_likelihood_stderr


def eb_at_passes(law, target: float, key, probe: int) -> float:
    """The gamma whose mean forward passes on `probe` samples are closest to `target`."""
    lo, hi = -8.0, math.log(law.n * math.log(law.vocab_size))  # log gamma
    best = (math.inf, 0.0)
    for i in range(14):
        mid = (lo + hi) / 2
        gamma = math.exp(mid)
        passes = sample_entropy_bounded(law.conditionals, probe, length=law.n, gamma=gamma,
                                        key=jax.random.fold_in(key, i)).mean_forward_passes
        best = min(best, (abs(passes - target), gamma))
        if passes > target:
            lo = mid
        else:
            hi = mid
    return best[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--length", type=int, default=64)
    parser.add_argument("--samples", type=int, default=2000, help="sequences per point")
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 3, 4, 6, 8, 12, 16, 24, 32])
    parser.add_argument("--match", type=int, nargs="+", default=[2, 4, 8, 16])
    parser.add_argument("--gammas", type=float, nargs="+",
                        default=[0.0, 0.03, 0.1, 0.3, 1, 3, 10, 30, 100])
    parser.add_argument("--probe", type=int, default=256, help="samples per bisection step")
    parser.add_argument("--json", default=None, metavar="OUT.json")
    parser.add_argument("--plot", default=None, metavar="OUT.png")
    args = parser.parse_args(argv)
    key = jax.random.key(0)
    results = {}
    start = time.perf_counter()
    for li, (name, law) in enumerate(laws(args.length).items()):
        k = jax.random.fold_in(key, li)
        if law.exact_profile:
            profile = law.profile()
        else:
            estimate = schedopt.estimate_law(law, key=jax.random.fold_in(k, 99), samples=4096)
            profile = estimate.profile("model")
        rows = []
        for t in args.steps:
            for method, tokens in (("optimal", optimal_schedule(profile, t).tokens_per_step),
                                   ("uniform", uniform_tokens(law.n, t)),
                                   ("cosine", cosine_tokens(law.n, t))):
                tokens = np.asarray(tokens)
                x = schedopt.sample(law.conditionals, tokens, args.samples,
                                    key=jax.random.fold_in(k, t))
                value, se = quality(name, law, x)
                kl = float(schedopt.expected_kl(profile, tokens))
                rows.append({"method": method, "steps": t, "passes": float(t), "quality": value,
                             "stderr": se, "predicted_kl": kl})
        for g in args.gammas:
            out = sample_entropy_bounded(law.conditionals, args.samples, length=law.n, gamma=g,
                                         key=jax.random.fold_in(k, 1000 + int(g * 1000)))
            value, se = quality(name, law, out.tokens)
            rows.append({"method": "EB", "gamma": g, "passes": out.mean_forward_passes,
                         "passes_range": [int(out.forward_passes.min()),
                                          int(out.forward_passes.max())],
                         "quality": value, "stderr": se})
        matched = []
        for t in args.match:
            gamma = eb_at_passes(law, t, jax.random.fold_in(k, 5000 + t), args.probe)
            out = sample_entropy_bounded(law.conditionals, args.samples, length=law.n,
                                         gamma=gamma, key=jax.random.fold_in(k, 6000 + t))
            value, se = quality(name, law, out.tokens)
            row = {"method": "EB", "target": t, "gamma": gamma,
                   "passes": out.mean_forward_passes,
                   "passes_range": [int(out.forward_passes.min()), int(out.forward_passes.max())],
                   "quality": value, "stderr": se}
            rows.append(row)
            matched.append(row)
        exact = (1.0 if name == "code" else -profile.joint_entropy)
        results[name] = {"n": law.n, "vocab": law.vocab_size, "exact_quality": exact,
                         "quality": "codeword fraction" if name == "code" else
                         "mean log-likelihood (nats/sequence)", "rows": rows}
        print(f"[{name}] done at {time.perf_counter() - start:.0f} s", file=sys.stderr)
    print(table(results, args.match))
    if args.json:
        from schedopt._internal.io import write_json

        write_json(args.json, results)
    if args.plot:
        plot(results, args.plot)
    return 0


def table(results: dict, match: list[int]) -> str:
    lines = []
    for name, r in results.items():
        rows = r["rows"]
        lines.append(f"\n**{name}** (n = {r['n']}, V = {r['vocab']}; {r['quality']}, exact "
                     f"sampling: {r['exact_quality']:.4g}; +- is 1.96 standard errors)\n")
        lines.append("| passes | optimal fixed | uniform | cosine | EB (mean passes, range) |")
        lines.append("|---|---|---|---|---|")
        for t in match:
            cells = []
            for m in ("optimal", "uniform", "cosine"):
                hit = [x for x in rows if x["method"] == m and x["steps"] == t]
                cells.append(f"{hit[0]['quality']:.4g} +- {1.96 * hit[0]['stderr']:.2g}"
                             if hit else "-")
            eb = [x for x in rows if x["method"] == "EB" and x.get("target") == t]
            e = eb[0]
            cells.append(f"{e['quality']:.4g} +- {1.96 * e['stderr']:.2g} "
                         f"({e['passes']:.2f}, {e['passes_range'][0]}-{e['passes_range'][1]})")
            lines.append(f"| {t} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    from schedopt.check import new_figure, save_png

    figure = new_figure((4.2 * len(results), 3.4))
    axes = figure.subplots(1, len(results))
    colors = {"optimal": "tab:blue", "uniform": "tab:gray", "cosine": "tab:olive",
              "EB": "tab:red"}
    for ax, (name, r) in zip(np.atleast_1d(axes), results.items(), strict=True):
        for method, color in colors.items():
            # EB's points are joined in order of gamma (its passes need not fall strictly).
            pts = sorted((x.get("gamma", 0.0) if method == "EB" else x["passes"],
                          x["passes"], x["quality"], x["stderr"]) for x in r["rows"]
                         if x["method"] == method)
            _, p, q, s = (np.asarray(v) for v in zip(*pts, strict=True))
            ax.errorbar(p, q, yerr=1.96 * s, color=color, marker="o", ms=3, lw=1.2,
                        capsize=2, label="optimal fixed" if method == "optimal" else method)
        ax.axhline(r["exact_quality"], color="k", lw=0.8, ls=":", label="exact sampling")
        ax.set_xscale("log", base=2)
        ax.set_xlabel("forward passes per sequence (mean for EB)")
        ax.set_ylabel("codeword fraction" if name == "code" else "log-likelihood (nats)")
        ax.set_title(f"{name} (n = {r['n']})")
        if name != "code":
            lo = min(x["quality"] for x in r["rows"])
            ax.set_ylim(lo - 0.05 * abs(lo), r["exact_quality"] + 0.02 * abs(lo))
    np.atleast_1d(axes)[0].legend(fontsize=8)
    save_png(figure, path)


if __name__ == "__main__":
    sys.exit(main())
