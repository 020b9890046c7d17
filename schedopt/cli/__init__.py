"""The `schedopt` command line: one module per group of subcommands.

Every subcommand module defines `register(subparsers)`, which adds its parsers with
`set_defaults(func=...)`; `func(args)` returns the exit code. Bad input raises ValueError (or
OSError), which `main` prints as one line on stderr with exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator

from . import distributed, interrupt

# Subcommand modules, in the order their commands appear in --help.
_MODULES = ("core", "profile", "known", "export", "learned", "decode", "passes", "plot", "batch")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


_QUIET_HELP = "no progress bars (results still go to stdout)"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="schedopt",
        description="Optimal unmasking schedules for masked diffusion models.",
    )
    parser.add_argument("--quiet", action="store_true", help=_QUIET_HELP)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name in _MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    # --quiet after the subcommand too; SUPPRESS keeps an earlier --quiet from being reset.
    for command in sub.choices.values():
        command.add_argument(
            "--quiet", action="store_true", default=argparse.SUPPRESS, help=_QUIET_HELP
        )
    return parser


@contextlib.contextmanager
def _command_settings() -> Iterator[None]:
    """The settings of one command, restored when it returns (main() may be embedded).

    Compiled XLA programs are kept on disk, so repeated commands skip most compile time: the
    folder is $SCHEDOPT_CACHE_DIR, else ~/.cache/schedopt/jax; SCHEDOPT_CACHE_DIR=off, or a
    folder that cannot be made, turns the cache off. (--quiet is passed down as args.quiet.)
    """
    import jax

    saved = {name: getattr(jax.config, name) for name in _CACHE_SETTINGS}
    path = os.environ.get("SCHEDOPT_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "schedopt", "jax"
    )
    try:
        if path != "off":
            with contextlib.suppress(OSError):
                os.makedirs(path, exist_ok=True)
                jax.config.update("jax_compilation_cache_dir", path)
                jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)
        yield
    finally:
        for name, value in saved.items():
            jax.config.update(name, value)


_CACHE_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs")


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit code.

    0 success; 1 a check that did not pass (verify); 2 bad input or a failure, as one line
    on stderr; 130 interrupted (Ctrl-C) and 143 terminated (SIGTERM), with no partial output
    file left behind (`schedopt.cli.interrupt`).
    """
    with interrupt.exit_on_signal():
        args = build_parser().parse_args(argv)
        with _command_settings():
            return _run(args)


def _run(args: argparse.Namespace) -> int:
    """The command's own work; its failures become one line and an exit code."""
    try:
        from .outputs import claimed

        with claimed(args):  # no output may be an input; one writer per output
            code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here rather than at exit
        if code == 0:
            distributed.succeeded()
        return code
    except BrokenPipeError:
        _silence_stdout()  # `schedopt frontier | head -1`: the reader has what it wants
        return 0
    except (ValueError, OSError) as e:
        _error(args.command, _first_line(e))
        return 2
    except Exception as e:  # a case no check caught: still one line, not a traceback
        if os.environ.get("SCHEDOPT_DEBUG"):
            raise
        _error(args.command, f"unexpected {type(e).__name__}: {_first_line(e)} (a bug: "
               "please report it; SCHEDOPT_DEBUG=1 shows the traceback)")
        return 2


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _error(command: str, message: str) -> None:
    print(f"schedopt {command}: error: {message}", file=sys.stderr)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass


def load_profile(path: str, regularize: bool = False):
    """Load a profile file for a subcommand; with regularize, project noisy curves first."""
    from ..curve import EntropyProfile

    if regularize:
        return EntropyProfile.load(path, check=False).regularize()
    return EntropyProfile.load(path)


def add_profile_argument(parser: argparse.ArgumentParser) -> None:
    """--profile and --regularize, shared by every subcommand that reads a profile."""
    parser.add_argument("--profile", required=True, metavar="P.json", help="profile file")
    parser.add_argument(
        "--regularize",
        action="store_true",
        help="project the curve onto concave, non-decreasing ones first (for noisy estimates)",
    )


def format_table(rows: list[dict], keys: tuple[str, ...], headers: tuple[str, ...]) -> str:
    """Rows as a plain aligned text table (numbers to 6 significant digits)."""

    def cell(v) -> str:
        if isinstance(v, float):
            return f"{v:.6g}"
        return "-" if v is None else str(v)

    cells = [list(headers)] + [[cell(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(keys))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in
                       enumerate(zip(line, widths, strict=True))) for line in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
