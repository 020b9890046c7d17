"""Progress bars for long work: on stderr, only on a terminal, off with quiet=True.

No module state: every caller passes `quiet` (the CLI passes its --quiet flag down), so a
library call never depends on what an earlier command set."""

from __future__ import annotations

import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")

def progress(
    items: Iterable[T], *, total: int | None = None, description: str = "", quiet: bool
) -> Iterator[T]:
    """Iterate over `items`, drawing a rich progress bar on stderr when it is a terminal.

    Args:
        items: what to iterate over.
        total: number of items, when `items` has no len().
        description: a few words shown left of the bar.
        quiet: never draw (required: the caller decides, the CLI from --quiet).
    """
    if quiet or not sys.stderr.isatty():
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
