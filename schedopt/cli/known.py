"""CLI for known distributions: `profile --distribution`, `verify`, `demo`.

    schedopt profile --distribution markov --transition transition.npy --length 128 --out P.json
    schedopt verify --distribution markov --transition transition.npy --length 128 --schedule S.json
    schedopt demo --out demo-out
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

DISTRIBUTIONS = ("markov", "hmm", "mixture", "code", "product", "table")

# What each --distribution needs, for the error message when something is missing.
_NEEDS = {
    "markov": ("transition", "length"),
    "hmm": ("transition", "emission", "length"),
    "mixture": ("weights", "marginals"),
    "product": ("marginals",),
    "table": ("joint",),
    "code": ("q",),
}


def add_distribution_arguments(parser: argparse.ArgumentParser, *, source=None) -> None:
    """--distribution and its parameter files (.npy or .json), plus --samples; --distribution
    goes into `source` (an exclusive group of curve sources) when given."""
    g = parser.add_argument_group("known distribution (parameter files are .npy or .json)")
    (source or g).add_argument("--distribution", choices=DISTRIBUTIONS,
                               help="a known distribution")
    g.add_argument("--transition", metavar="transition.npy",
                   help="markov, hmm: row-stochastic matrix")
    g.add_argument("--emission", metavar="E.npy", help="hmm: emission matrix [K hidden, V]")
    g.add_argument("--length", type=int, metavar="N", help="markov, hmm, code: sequence length")
    g.add_argument("--weights", metavar="W.npy", help="mixture: component weights [K]")
    g.add_argument(
        "--marginals", metavar="M.npy", help="mixture: [K, n, V]; product: [n, V] per position"
    )
    g.add_argument("--joint", metavar="J.npy", help="table: joint probabilities, n axes of V")
    g.add_argument("--generator", metavar="G.npy", help="code: generator matrix [k, n] over F_q")
    g.add_argument("--q", type=int, help="code: prime field size")
    g.add_argument(
        "--k", type=int,
        help="code without --generator: dimension; k = N-1 gives the parity code, otherwise "
        "a Reed-Solomon code (needs N <= q)",
    )
    g.add_argument(
        "--samples", type=int, default=1024, metavar="M",
        help="Monte Carlo sequences (hmm and mixture profiles, verify's sampling; default 1024)",
    )


def load_distribution(args: argparse.Namespace):
    """The `Distribution` described by --distribution and its parameter files."""
    from .. import distributions as d

    name = args.distribution
    missing = [f"--{a}" for a in _NEEDS[name] if getattr(args, a, None) is None]
    if missing:
        raise ValueError(f"--distribution {name} needs {' and '.join(missing)}")
    if args.length is not None:  # checked here, so that the message names the flag
        d.check_length(args.length, "--length")
    if name == "markov":
        return d.MarkovChain(_load_array(args.transition, "--transition"), args.length)
    if name == "hmm":
        return d.HiddenMarkov(
            _load_array(args.transition, "--transition"),
            _load_array(args.emission, "--emission"),
            args.length,
        )
    if name == "mixture":
        return d.MixtureOfProducts(
            _load_array(args.weights, "--weights"), _load_array(args.marginals, "--marginals")
        )
    if name == "product":
        return d.Product(_load_array(args.marginals, "--marginals"))
    if name == "table":
        return d.Table(_load_array(args.joint, "--joint"))
    if args.generator is not None:
        return d.LinearCode(_load_array(args.generator, "--generator"), args.q)
    if args.k is None or args.length is None:
        raise ValueError("--distribution code needs --generator G.npy, or --k and --length")
    if args.k == args.length - 1:
        return d.LinearCode.parity(args.length, args.q)
    return d.LinearCode.reed_solomon(args.length, args.k, args.q)


def profile_from_distribution(args: argparse.Namespace):
    """The profile of --distribution: exact where possible, else Monte Carlo (--samples)."""
    import jax

    return law_profile(load_distribution(args), jax.random.key(args.seed), args.samples, args.quiet)


def law_profile(law, key, samples: int, quiet: bool):
    """A law's exact curve where it has one, else its Monte Carlo estimate from `samples`
    sequences (measured at every revealed count for n <= FULL_GRID_MAX)."""
    from ..estimate import estimate_law

    if law.exact_profile:
        return law.profile()
    return estimate_law(law, key=key, samples=samples, quiet=quiet).profile("model")


def register(sub) -> None:
    p = sub.add_parser(
        "verify",
        help="check a schedule's predicted KL by sampling a known distribution",
        description="Sample the known distribution, score each sequence under the "
        "schedule's sampler on a random partition, and compare the Monte Carlo KL with the "
        "KL predicted from the profile (for a law without an exact profile, from its curve "
        "measured on the same sequences and orders: a paired check). Exit code 0 if the "
        "95% interval of the difference holds 0, 1 if not (verdict DISAGREES, or "
        "inconclusive when heavy tails make the interval untrustworthy); docs/checks.md.",
    )
    add_distribution_arguments(p)
    p.add_argument("--schedule", required=True, metavar="S.json", help="schedule file")
    p.add_argument(
        "--profile", metavar="P.json",
        help="predict from this profile (default: the distribution's own, exact or estimated)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.set_defaults(func=run_verify)

    p = sub.add_parser(
        "demo",
        help="the whole idea on two built-in examples, in under a minute",
        description="Profiles of a clustered-sequences mixture and a Markov chain, optimized "
        "vs uniform, cosine, TC and DTC schedules, the steps each needs for a target KL, a "
        "check by sampling, and schedule files and a picture in --out.",
    )
    p.add_argument(
        "--out", default="demo-out", metavar="DIR", help="output folder (default demo-out)"
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--quick", action="store_true", help="shorter sequences, fewer samples and budgets"
    )
    p.set_defaults(func=run_demo)


# --------------------------------------------------------------------------- verify
def run_verify(args: argparse.Namespace) -> int:
    import jax

    from ..check import verify
    from ..curve import EntropyProfile
    from ..schedule import Schedule

    if args.distribution is None:
        raise ValueError("say which law to sample: --distribution NAME and its parameter files")
    dist = load_distribution(args)
    schedule = Schedule.load(args.schedule)
    if schedule.n != dist.n:
        raise ValueError(
            f"schedule {args.schedule!r} is for n = {schedule.n} tokens but the distribution "
            f"has n = {dist.n}; use a schedule made for this length"
        )
    profile = None if args.profile is None else EntropyProfile.load(args.profile, check=False)
    result = verify(
        dist, schedule, key=jax.random.key(args.seed), samples=args.samples,
        profile=profile, quiet=args.quiet,
    )
    print(_verification_lines(result, f"{args.schedule} (T = {schedule.steps}, n = {dist.n})"))
    return 0 if result.agrees else 1


def _verification_lines(result, label: str) -> str:
    pm = f" ± {result.predicted_stderr:.4g}" if result.predicted_stderr else ""
    paired = ", paired: same sequences and orders" if result.paired else ""
    return "\n".join(
        [
            f"schedule      {label}",
            f"predicted KL  {result.predicted:.6g} nats{pm}",
            f"sampled KL    {result.mean:.6g} nats ± {result.stderr:.3g} (95% interval "
            f"{result.low:.4g} .. {result.high:.4g}, {result.samples} samples)",
            f"difference    {result.difference:+.4g} nats ± {result.difference_stderr:.3g}"
            f"{paired}",
            f"verdict       {result.verdict}",
        ]
    )


def _load_array(path: str, flag: str) -> np.ndarray:
    """A parameter array from a .npy file or a .json file holding a (nested) list."""
    from .._internal.io import check_input_file, number_array, read_json

    p = Path(path)
    if p.suffix == ".npy":
        check_input_file(p, f"{flag}")
        try:
            a = np.load(p, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise ValueError(
                f"{flag} file {path!r} is not a readable .npy array ({type(e).__name__}); "
                "write it with numpy.save"
            ) from None
        if a.dtype.kind not in "iuf":
            raise ValueError(f"{flag} file {path!r} holds {a.dtype} values; give numbers")
        return a
    if p.suffix == ".json":
        obj = read_json(p, flag)
        depth, probe = 0, obj
        while isinstance(probe, list) and probe:
            depth, probe = depth + 1, probe[0]
        return number_array(obj, f"{flag} file {path!r}", ndim=max(depth, 1))
    raise ValueError(f"{flag} file {path!r} must end in .npy or .json")



# --------------------------------------------------------------------------- demo
BUDGETS = (4, 8, 16)
TARGET_KL = 1.0  # nats, for "steps needed"
DEMO_STEPS = 8  # the schedule written, drawn and verified


# The demo's mixture: each of 4 prototypes copied at 8 fidelities. Identifying the prototype
# takes a few tokens and learning the fidelity takes many, so g falls steeply and then
# slowly, and no single rare sequence carries much of a schedule's KL: its check by sampling
# has light tails (docs/checks.md). With one high fidelity (32 prototypes at 0.9, the README
# figure) g falls within a few tokens, but the check's tails are too heavy for a verdict.
DEMO_PROTOTYPES = 4
DEMO_FIDELITIES = (0.3, 0.39, 0.48, 0.57, 0.66, 0.75, 0.84, 0.93)


def clustered_sequences(
    prototypes: int = DEMO_PROTOTYPES,
    fidelities=DEMO_FIDELITIES,
    n: int = 128,
    vocab: int = 8,
    seed: int = 0,
):
    """Clustered sequences: an equal-weight mixture of products with one component per
    (prototype, fidelity) pair.

    The prototypes are random sequences of length n over `vocab` symbols; a component keeps
    each token of its prototype with probability `fidelity`, else draws one of the other
    vocab - 1 symbols uniformly. Tokens are independent given the component.
    """
    from ..distributions import MixtureOfProducts

    rng = np.random.default_rng(seed)
    keep = np.asarray(fidelities, np.float64).reshape(1, -1, 1, 1)  # [1, F, 1, 1]
    chosen = np.eye(vocab, dtype=bool)[rng.integers(0, vocab, size=(prototypes, n))]
    marginals = np.where(chosen[:, None], keep, (1 - keep) / (vocab - 1))  # [P, F, n, V]
    marginals = marginals.reshape(-1, n, vocab)
    return MixtureOfProducts(np.full(len(marginals), 1 / len(marginals)), marginals)


def demo_examples(n: int = 128):
    """(name, description, distribution) for the demo's two laws of length n."""
    from ..distributions import MarkovChain

    fidelities = f"{DEMO_FIDELITIES[0]:.0%} to {DEMO_FIDELITIES[-1]:.0%}"
    return [
        (
            "mixture",
            f"clustered sequences: {DEMO_PROTOTYPES} prototypes x {len(DEMO_FIDELITIES)} "
            f"fidelities ({fidelities}), n = {n}, V = 8",
            clustered_sequences(n=n),
        ),
        (
            "markov",
            f"sticky Markov chain: 4 states, P = 0.8 I + 0.05, n = {n} (theory §10)",
            MarkovChain(0.8 * np.eye(4) + 0.05, n),
        ),
    ]


def run_demo(args: argparse.Namespace) -> int:
    import jax

    from .. import solve
    from ..check import verify
    from ..schedule import uniform
    from ..solve import optimize
    from . import format_table

    start = time.perf_counter()
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {args.out!r} is a file; give a folder name")
    if not out.parent.is_dir():
        raise ValueError(f"cannot create {args.out!r}: {str(out.parent)!r} does not exist")
    out.mkdir(exist_ok=True)
    quiet = args.quiet
    budgets = (DEMO_STEPS,) if args.quick else BUDGETS
    samples = 512 if args.quick else 4096
    checks = 1024 if args.quick else 4096  # sequences for the check by sampling
    length = 32 if args.quick else 128
    key = jax.random.key(args.seed)
    figures = []
    for index, (name, description, dist) in enumerate(demo_examples(length)):
        k_profile, k_verify = jax.random.split(jax.random.fold_in(key, index))
        print(f"== {name}: {description}")
        # A Monte Carlo curve is measured at every revealed count (n <= FULL_GRID_MAX), so
        # the schedules' cuts are never interpolated.
        profile = law_profile(dist, k_profile, samples, quiet)
        profile.save(out / f"{name}-profile.json")
        s = profile.summary()
        how = "exact" if dist.exact_profile else f"Monte Carlo, {samples} sequences"
        print(
            f"profile ({how}): H_n = {s['joint_entropy']:.4g} nats, TC = "
            f"{s['total_correlation']:.4g}, DTC = {s['dual_total_correlation']:.4g}"
        )
        rows = budget_table(profile, budgets)
        methods = [m for m in rows[0] if m != "T"]
        print("expected KL (nats) by step budget T:")
        print(format_table(rows, ("T", *methods), ("T", *(solve.LABELS[m] for m in methods))))
        fewest = solve.fewest_steps(profile, TARGET_KL)
        print(
            f"steps to reach KL <= {TARGET_KL:g} nat: "
            + ", ".join(f"{solve.LABELS[m]} {t}" for m, t in fewest.items())
        )
        best = optimize(profile, DEMO_STEPS)
        flat = uniform(profile, DEMO_STEPS)
        best.save(out / f"{name}-optimized-{DEMO_STEPS}.json")
        flat.save(out / f"{name}-uniform-{DEMO_STEPS}.json")
        # Paired for a Monte Carlo law: predicted and sampled KL from the same sequences.
        result = verify(dist, best, key=k_verify, samples=checks, quiet=quiet)
        ratio = float(flat.expected_kl) / max(float(best.expected_kl), 1e-300)
        print(
            f"optimized {DEMO_STEPS}-step schedule {np.asarray(best.tokens_per_step).tolist()}: "
            f"{ratio:.3g}x lower KL than uniform"
        )
        how = "paired with the curve on the same sequences" if result.paired else "exact curve"
        print(f"check by sampling ({checks} sequences, {how}): sampled KL {result.mean:.4g} "
              f"nats, predicted {result.predicted:.4g}, difference {result.difference:+.2g} ± "
              f"{result.difference_stderr:.2g}; {result.verdict}")
        print()
        figures.append((name, profile, best, flat))
    picture = out / "demo.png"
    draw_step_approximations(figures, picture)
    print(f"wrote profiles, {DEMO_STEPS}-step schedules and {picture.name} to {out}/ "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


def budget_table(profile, budgets) -> list[dict]:
    """Expected KL (nats) of each method (`schedopt.solve.METHODS`) at each budget T, one
    dict per T: one frontier pass and one batched evaluation, plus the optimizer per T."""
    from .. import solve
    from ..solve import optimize

    table = solve.budget_table(profile, max(budgets))
    rows = []
    for steps in budgets:
        row = {"T": steps, "optimized": float(optimize(profile, steps).expected_kl)}
        row.update({name: float(kl[steps - 1]) for name, (_, kl) in table.items()})
        rows.append(row)
    return rows


def draw_step_approximations(figures, path) -> None:
    """One panel per law: g and the left-endpoint steps of its schedules (schedopt.check).

    The shaded area between g and a schedule's steps is its expected KL (theory §3).
    """
    from .. import check

    figure = check.new_figure((6.4 * len(figures), 4.2))
    for ax, (name, profile, *schedules) in zip(
        figure.subplots(1, len(figures), squeeze=False)[0], figures, strict=True
    ):
        check.plot_profile(profile, schedules, ax, xscale="symlog")
        ax.set_title(f"{name}: shaded area = expected KL")
    check.save_png(figure, path)
