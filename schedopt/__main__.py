"""`python -m schedopt` and the `schedopt` program."""

import sys


def run() -> int:
    """The program's entry point: signals are held from here until the command can act."""
    from .cli import interrupt

    interrupt.hold()
    from .cli import main

    return main()


if __name__ == "__main__":
    sys.exit(run())
