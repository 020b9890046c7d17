"""CLI for known distributions: `profile --distribution`, `verify`, `demo` (issue 3)."""

from __future__ import annotations


def add_distribution_arguments(parser) -> None:
    parser.add_argument("--distribution", help="a known distribution (not yet available)")


def profile_from_distribution(args):
    raise ValueError("--distribution is not available yet")


def register(sub) -> None:
    pass
