"""CLI for trained models: `profile --model`, `nll` (issue 4)."""

from __future__ import annotations


def add_model_arguments(parser) -> None:
    parser.add_argument("--model", help="a trained model (not yet available)")


def profile_from_model(args):
    raise ValueError("--model is not available yet")


def register(sub) -> None:
    pass
