"""Every option of every subcommand has help text, and the rendered help has no stray `%%`."""

import argparse

import pytest

from schedopt.cli import build_parser


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("schedopt's parser has no subcommands")


SUBCOMMANDS = _subparsers()


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_has_help_and_states_its_default(name):
    parser = SUBCOMMANDS[name]
    for action in parser._actions:
        what = f"schedopt {name} {'/'.join(action.option_strings) or action.dest}"
        assert action.help and action.help is not argparse.SUPPRESS, f"{what} has no help text"
        shown = action.default not in (None, False, argparse.SUPPRESS)
        if shown and not isinstance(action, argparse._HelpAction):
            assert "default" in action.help, f"{what}: help does not state its default"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_rendered_help_has_no_doubled_percent(name):
    text = SUBCOMMANDS[name].format_help()
    assert "%%" not in text, f"schedopt {name} --help shows a literal %%"
