"""Progress bars for long work: on stderr, only on a terminal, off with quiet=True."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

# Set by the CLI's --quiet flag; library callers pass `quiet=` explicitly.
QUIET = False


def progress(
    items: Iterable[T], *, total: int | None = None, description: str = "", quiet: bool = False
) -> Iterator[T]:
    """Iterate over `items`, drawing a rich progress bar on stderr when it is a terminal.

    Args:
        items: what to iterate over.
        total: number of items, when `items` has no len().
        description: a few words shown left of the bar.
        quiet: never draw (also forced by the CLI's --quiet).
    """
    if quiet or QUIET or not sys.stderr.isatty():
        yield from items
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total if total is not None else _len(items))
        for item in items:
            yield item
            bar.advance(task)


def _len(items) -> int | None:
    try:
        return len(items)
    except TypeError:
        return None
