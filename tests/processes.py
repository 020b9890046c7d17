"""Starting `schedopt` child processes as the installed program starts (see conftest.spawn)."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def cli_argv(args) -> list[str]:
    """The argv of a `schedopt ARGS` child process, started as the installed program starts.

    A shell may start the tests with SIGINT ignored (background jobs of a script are), and
    the CLI keeps an ignored SIGINT (as under nohup), so the child restores Python's handler
    before it runs the program.
    """
    start = ("import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
             "sys.argv[0] = 'schedopt'; runpy.run_module('schedopt', run_name='__main__')")
    return [sys.executable, "-c", start, *map(str, args)]


def child_env(**extra: str) -> dict[str, str]:
    """The environment of a child process: this checkout first on the path, no disk cache."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "SCHEDOPT_CACHE_DIR": "off", "PYTHONPATH": path, **extra}
