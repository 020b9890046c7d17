"""Pictures of a profile and its schedules: the area between g and its steps is the KL.

theory §3: a schedule's expected KL is the error of the left-endpoint step approximation of
the conditional entropy curve g. `plot_profile` draws exactly that (Chen, Cong and Li,
Figure 1): g as a staircase (g_j on [j, j + 1)) and, for each schedule, the step function
at height g_{N_{k-1}} on [N_{k-1}, N_k); the shaded region between them has area
sum_k sum_{j in block k} (g_{N_{k-1}} - g_j), the expected KL in nats. The area is measured
on the polygons actually drawn and returned, so the picture can be checked against
`expected_kl`. `plot_frontier` draws the least KL at every step budget against the
baselines, `plot_tokens` the tokens per step, and `plot_report` all three in one PNG.

matplotlib is imported only when a function here is called, and only through its
object-oriented API with the Agg canvas: nothing here changes pyplot's global backend, so
the functions also draw into a notebook's own axes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from .._internal import io as _io
from .._internal.checks import check_steps, check_tokens_per_step
from ..curve import EntropyProfile
from ..objective import expected_kl
from ..schedule import Schedule
from ..solve import LABELS, WITHIN_BUDGET, budget_table

# Legend names for a Schedule's method ("optax" and "exact" are how schedules record the
# optimizer and the DP; the rest are the names of schedopt.solve.METHODS).
_METHOD_NAMES = {**LABELS, "optax": LABELS["optimized"], "exact": LABELS["optimal"]}
_COLORS = ("tab:blue", "tab:red", "tab:green", "tab:purple", "tab:orange", "tab:brown",
           "tab:pink", "tab:olive", "tab:cyan")
_BASELINE_COLORS = {"uniform": "tab:gray", "cosine": "tab:olive", "eds": "tab:cyan",
                    "pyramid": "tab:purple", "tc": "tab:brown", "dtc": "tab:pink"}
_DPI = 110


class ProfilePlot(NamedTuple):
    """What `plot_profile` drew.

    Attributes:
        ax: the matplotlib Axes.
        areas: float64[S], the area (nats) of each schedule's shaded region, measured on
            the drawn polygons; it equals the schedule's expected KL.
    """

    ax: Any
    areas: np.ndarray


def plot_profile(
    profile: EntropyProfile,
    schedules: Sequence[Schedule | Any],
    ax: Any = None,
    *,
    labels: Sequence[str] | None = None,
    xscale: str = "linear",
) -> ProfilePlot:
    """Draw g and each schedule's left-endpoint steps; the shaded area is its expected KL.

    Args:
        profile: the entropy profile (n tokens).
        schedules: `Schedule`s or tokens-per-step lists, each summing to n.
        ax: matplotlib Axes to draw into (default: a new figure, 6.4 x 4.2 inches).
        labels: legend names (default: the schedule's method, e.g. "optimized").
        xscale: "linear" (areas look like what they measure) or "symlog" (linear for the
            first 8 revealed tokens, logarithmic after: shows a curve that falls early).

    Returns:
        `ProfilePlot(ax, areas)`, areas float64[S] in nats (one per schedule).
    """
    tokens = _check_schedules(profile, schedules)
    labels = _labels(schedules, labels)
    if xscale not in ("linear", "symlog"):
        raise ValueError(f"xscale must be 'linear' or 'symlog', got {xscale!r}")
    ax = _axes(ax, (6.4, 4.2))
    n = profile.n
    g = np.asarray(profile.conditional_entropy, dtype=np.float64)
    # g_j holds on [j, j + 1): the staircase whose area is sum_j g_j = H_n.
    edges = np.arange(n + 1, dtype=np.float64)
    curve = np.append(g, g[-1])
    areas = np.zeros(len(tokens))
    # Largest area first, each fill opaque: every point of the picture shows the color of the
    # most accurate schedule whose error covers it, with no blending of colors.
    kls = [float(expected_kl(profile, s)) for s in tokens]
    for index in sorted(range(len(tokens)), key=lambda i: -kls[i]):
        color = _tint(_COLORS[index % len(_COLORS)])
        shade = ax.fill_between(edges, curve, _left_endpoint_steps(g, tokens[index]),
                                step="post", color=color, lw=0)
        areas[index] = _filled_area(shade)
    for index, (s, label) in enumerate(zip(tokens, labels, strict=True)):
        ax.step(edges, _left_endpoint_steps(g, s), where="post", lw=1.2, zorder=2,
                color=_COLORS[index % len(_COLORS)],
                label=f"{label}, T = {s.size}: KL {kls[index]:.4g} nats")
    # A held-out cross-entropy curve (a trained model's "data" profile) is c, not g.
    held_out = profile.meta.get("kind") == "data"
    symbol, what = ("c", "held-out cross-entropy") if held_out else ("g", "conditional entropy")
    # Unlabelled: the title and y label name the black curve, keeping the legend small.
    ax.step(edges, curve, where="post", color="black", lw=1.6, zorder=3)
    if xscale == "symlog":
        ax.set_xscale("symlog", linthresh=8, linscale=0.8)
        powers = [2**k for k in range(4, n.bit_length())]
        ticks = sorted({0, 1, 2, 4, 8, n, *(powers[::2] if len(powers) > 6 else powers)})
        ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.set_xlim(0, n)
    # Areas between two curves do not depend on the baseline: zoom in on a curve that stays
    # far from 0, so that its steps stay visible.
    top, low = float(g.max()), float(g.min())
    if top - low > 1e-9 * max(top, 1.0):
        ax.set_ylim(0 if low < 0.5 * top else low - 0.15 * (top - low), top + 0.05 * (top - low))
    else:  # a flat curve: every schedule has KL 0
        ax.set_ylim(0, max(1.2 * top, 1.0))
    ax.set_xlabel("revealed tokens j")
    ax.set_ylabel(f"${symbol}_j$: {what} of a fresh token (nats)", fontsize=9)
    ax.set_title(f"${symbol}$ (black) and schedules' steps; shaded area = expected KL")
    # Under a non-increasing curve (steps lie above it) the lower left corner stays empty.
    if tokens:
        ax.legend(fontsize=8, loc="lower left")
    return ProfilePlot(ax, areas)


def _left_endpoint_steps(g: np.ndarray, tokens_per_step: np.ndarray) -> np.ndarray:
    """float64[n + 1]: g at the start of each position's block, for a step="post" plot."""
    starts = np.cumsum(tokens_per_step) - tokens_per_step
    return np.append(np.repeat(g[starts], tokens_per_step), g[starts[-1]])


def plot_frontier(
    profile: EntropyProfile,
    max_steps: int,
    ax: Any = None,
    *,
    schedules: Sequence[Schedule | Any] = (),
    labels: Sequence[str] | None = None,
    quiet: bool = True,
) -> Any:
    """Expected KL against the number of steps (log-log): the optimum and the baselines.

    Args:
        profile: the entropy profile (n tokens).
        max_steps: the largest budget drawn, 1 <= max_steps <= n.
        ax: matplotlib Axes (default: a new figure).
        schedules: schedules to mark as points at (T, KL), in `plot_profile`'s colors.
        labels: their legend names.
        quiet: no progress bar.

    Returns:
        The Axes. KL = 0 cannot be drawn on a log scale: such points are left out.
    """
    max_steps = check_steps(max_steps, profile.n, name="max_steps")
    tokens = _check_schedules(profile, schedules)
    labels = _labels(schedules, labels)
    ax = _axes(ax, (6.4, 4.2))
    curves = budget_table(profile, max_steps)
    drawn = []
    for name, (steps, kl) in curves.items():
        if name in WITHIN_BUDGET:  # each distinct schedule once, at the steps it uses
            steps, first = np.unique(steps, return_index=True)
            kl = kl[first]
        keep = kl > 0
        drawn.append(kl[keep])
        if name == "optimal":
            ax.plot(steps[keep], kl[keep], color="black", lw=2, label="optimum (exact DP)",
                    zorder=3)
        else:
            ax.plot(steps[keep], kl[keep], color=_BASELINE_COLORS[name], lw=1.2,
                    marker="." if name in WITHIN_BUDGET else None, label=LABELS[name])
    for index, (s, label) in enumerate(zip(tokens, labels, strict=True)):
        kl = float(expected_kl(profile, s))
        if kl > 0:
            ax.plot([s.size], [kl], "o", color=_COLORS[index % len(_COLORS)], ms=7,
                    mec="white", zorder=4, label=f"{label} (T = {s.size})")
    ax.set_xscale("log")
    ax.set_xlim(0.9, max_steps * 1.1)
    ticks = [2**k for k in range(max_steps.bit_length())]
    ticks = ticks[::2] if len(ticks) > 8 else ticks
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.minorticks_off()
    if any(v.size for v in drawn):
        ax.set_yscale("log")
        # Below a millionth of the one-step KL lies float rounding, not schedule quality.
        top = max(float(v.max()) for v in drawn if v.size)
        ax.set_ylim(bottom=max(min(float(v.min()) for v in drawn if v.size), 1e-6 * top) / 2)
    else:
        ax.set_ylim(0, 1)
        ax.text(0.5, 0.5, "every schedule has KL 0\n(g is flat)",
                transform=ax.transAxes, ha="center", va="center")
    ax.set_xlabel("steps T")
    ax.set_ylabel("expected KL (nats)")
    ax.set_title(f"expected KL against steps, n = {profile.n}")
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    return ax


def plot_tokens(
    schedules: Sequence[Schedule | Any],
    ax: Any = None,
    *,
    labels: Sequence[str] | None = None,
) -> Any:
    """Tokens unmasked at each step, as grouped bars (one color per schedule).

    The y axis is logarithmic when step sizes span more than a factor 20, so that the
    single-token steps of a steep curve stay visible next to a large last step.

    Args:
        schedules: `Schedule`s or tokens-per-step lists.
        ax: matplotlib Axes (default: a new figure).
        labels: legend names.

    Returns:
        The Axes.
    """
    tokens = [_as_tokens(s, f"schedule {i}") for i, s in enumerate(schedules)]
    if not tokens:
        raise ValueError("schedules is empty; give at least one schedule to draw")
    labels = _labels(schedules, labels)
    ax = _axes(ax, (6.4, 4.2))
    width = 0.8 / len(tokens)
    for index, (s, label) in enumerate(zip(tokens, labels, strict=True)):
        x = np.arange(1, s.size + 1) + (index - (len(tokens) - 1) / 2) * width
        ax.bar(x, s, width=width, color=_COLORS[index % len(_COLORS)],
               label=f"{label} (T = {s.size})")
    high = max(int(s.max()) for s in tokens)
    low = min(int(s.min()) for s in tokens)
    # Headroom above the tallest bar keeps the legend off the bars.
    if high > 20 * low:
        ax.set_yscale("log")
        ax.set_ylim(0.8, high * 4)
    else:
        ax.set_ylim(0, high * 1.3)
    longest = max(s.size for s in tokens)
    ax.set_xlim(0.4, longest + 0.6)
    if longest <= 20:
        ax.set_xticks(np.arange(1, longest + 1))
    ax.set_xlabel("step k")
    ax.set_ylabel("tokens unmasked at step k")
    ax.set_title("tokens per step")
    ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_report(
    profile: EntropyProfile,
    schedules: Sequence[Schedule | Any],
    path: str | os.PathLike,
    *,
    labels: Sequence[str] | None = None,
    max_steps: int | None = None,
    xscale: str = "auto",
    title: str | None = None,
    quiet: bool = True,
) -> np.ndarray:
    """One PNG with all three panels, written atomically to `path`.

    Args:
        profile: the entropy profile (n tokens).
        schedules: `Schedule`s or tokens-per-step lists, each summing to n.
        path: the .png file to write (its folder must exist).
        labels: legend names (default: each schedule's method).
        max_steps: the frontier's largest budget (default: twice the longest schedule,
            at least 32, at most n).
        xscale: for the curve panel: "linear", "symlog", or "auto" (symlog when half of
            g's fall happens within the first n / 16 revealed tokens).
        title: a line above the panels.
        quiet: no progress bar.

    Returns:
        float64[S]: the shaded areas of the curve panel (nats), one per schedule.
    """
    path = check_png_path(path)
    tokens = _check_schedules(profile, schedules)
    if not tokens:
        raise ValueError("schedules is empty; give at least one schedule to draw")
    if max_steps is None:
        max_steps = min(profile.n, max(32, 2 * max(s.size for s in tokens)))
    if xscale == "auto":
        xscale = _auto_xscale(profile)
    figure = new_figure((16.5, 4.6))
    axes = figure.subplots(1, 3, gridspec_kw={"width_ratios": (1.25, 1, 1)})
    labels = _labels(schedules, labels)
    drawn = plot_profile(profile, tokens, axes[0], labels=labels, xscale=xscale)
    plot_frontier(profile, max_steps, axes[1], schedules=tokens, labels=labels, quiet=quiet)
    plot_tokens(tokens, axes[2], labels=labels)
    if title:
        figure.suptitle(title)
    save_png(figure, path)
    return drawn.areas


def plot_equal_passes(result: Any, ax: Any = None) -> Any:
    """Held-out excess NLL against mean forward passes, one line per decoder.

    Args:
        result: a `schedopt.rules.EqualPasses`.
        ax: matplotlib Axes (default: a new figure).

    Returns:
        The Axes. Each point is a decoder at one budget, at its measured mean passes, with
        the paired 95% interval of its excess over confidence at one token per step.
    """
    ax = _axes(ax, (6.4, 4.2))
    decoders = list(dict.fromkeys(r.decoder for r in result.rows))
    colors = (*_COLORS, "tab:gray", "black")  # up to 11 decoders, each its own color
    for index, decoder in enumerate(decoders):
        rows = sorted((r for r in result.rows if r.decoder == decoder),
                      key=lambda r: r.passes_mean)
        x = [r.passes_mean for r in rows]
        y = np.asarray([r.excess for r in rows])
        spread = np.abs(np.asarray([r.excess_interval for r in rows]).T - y)
        ax.errorbar(x, y, yerr=spread, color=colors[index % len(colors)], marker="o",
                    ms=4, lw=1.2, capsize=3, label=decoder)
    budgets = sorted({r.budget for r in result.rows})
    passes = [r.passes_mean for r in result.rows]
    ax.set_xscale("log")
    ax.set_xlim(min(passes) / 1.25, max(passes) * 1.25)
    ax.set_xticks(budgets, [str(b) for b in budgets])
    ax.minorticks_off()
    ax.axhline(0.0, color="black", lw=0.8, alpha=0.5)
    ax.set_xlabel("mean forward passes per sequence")
    ax.set_ylabel("excess NLL over confidence, 1 token/step (nats)")
    blocks = "" if result.block_length is None else f", blocks of {result.block_length}"
    ax.set_title(f"decoders at equal passes: {result.sequences} held-out sequences, "
                 f"n = {result.n}{blocks}", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


def save_png(figure: Any, path: str | os.PathLike) -> Path:
    """Render a figure to PNG bytes and write them atomically (no partial file on failure)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=_DPI, bbox_inches="tight", pad_inches=0.15)
    return _io.atomic_write(path, buffer.getvalue())


# --------------------------------------------------------------------------- internals
def new_figure(size: tuple[float, float]) -> Any:
    """A figure on the Agg canvas, outside pyplot (no global backend or figure registry)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def _axes(ax: Any, size: tuple[float, float]) -> Any:
    return new_figure(size).add_subplot() if ax is None else ax


def _tint(color: str, weight: float = 0.3) -> tuple[float, float, float]:
    """`color` mixed with white: an opaque pale version of it."""
    from matplotlib.colors import to_rgb

    return tuple(weight * c + (1 - weight) for c in to_rgb(color))


def _filled_area(collection: Any) -> float:
    """Signed area of a fill_between region, from its polygons' vertices (shoelace).

    fill_between traces the upper curve forward and the lower one back, so the signed
    area is the integral of (steps - g); it stays right where the two touch.
    """
    total = 0.0
    for path in collection.get_paths():
        for polygon in path.to_polygons(closed_only=False):
            x, y = polygon[:, 0], polygon[:, 1]
            total += 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
    return abs(total)


def _as_tokens(schedule: Schedule | Any, what: str) -> np.ndarray:
    s = np.asarray(schedule.tokens_per_step if isinstance(schedule, Schedule) else schedule)
    if s.ndim != 1 or s.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-D list of tokens per step, "
                         f"got shape {s.shape}")
    return check_tokens_per_step(s, int(np.sum(s)), what)


def _check_schedules(profile: EntropyProfile, schedules: Sequence[Schedule | Any]
                     ) -> list[np.ndarray]:
    out = []
    for i, schedule in enumerate(schedules):
        s = _as_tokens(schedule, f"schedule {i}")
        if int(s.sum()) != profile.n:
            raise ValueError(
                f"schedule {i} unmasks {int(s.sum())} tokens but the profile has "
                f"n = {profile.n}; draw schedules made for this profile"
            )
        out.append(s)
    return out


def _labels(schedules: Sequence[Schedule | Any], labels: Sequence[str] | None) -> list[str]:
    if labels is not None:
        if len(labels) != len(schedules):
            raise ValueError(f"labels has {len(labels)} names for {len(schedules)} schedules; "
                             "give one name per schedule")
        return [str(label) for label in labels]
    return [
        _METHOD_NAMES.get(s.method, s.method) if isinstance(s, Schedule) else f"schedule {i}"
        for i, s in enumerate(schedules)
    ]


def _auto_xscale(profile: EntropyProfile) -> str:
    g = np.asarray(profile.conditional_entropy)
    fall = g[0] - g[-1]
    early = g[0] - g[max(1, profile.n // 16)]
    return "symlog" if profile.n >= 64 and fall > 0 and early > 0.5 * fall else "linear"


def check_png_path(path: str | os.PathLike) -> Path:
    path = _io.check_output_path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the picture {str(path)!r} must be a .png file; "
                         "give an output name ending in .png")
    return path
