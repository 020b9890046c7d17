"""The files a command writes: never one of its inputs, and one writer at a time.

`claimed(args)` wraps every subcommand (`schedopt.cli.main`): before any work it refuses an
output path that is the same file as an input of the command (`optimize --profile P.json
--out P.json` would replace the profile it reads), whatever the spelling (a relative path,
a symbolic or hard link), and it holds a lock on each output so that a second schedopt
process writing the same file stops at once with one line instead of overwriting the first
one's results or checkpoint. There is no option to force either: give another --out.
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator

from .._internal import io as _io

# Options whose values are files a command reads (a list for repeatable options).
INPUT_OPTIONS = ("profile", "schedule", "transition", "emission", "weights", "marginals",
                 "joint", "generator", "manifest", "data", "from_loss_curve", "model")

FRONTIER_FORMAT = "schedopt.frontier"  # `schedopt frontier`'s JSON and CSV output

_HELD: list[_io.OutputLock] = []  # the locks this command holds, released when it ends


def inputs(args: argparse.Namespace) -> dict[str, str]:
    """{"--profile": path, "--schedule": path, ...}: every input file named on the command line."""
    out = {}
    for name in INPUT_OPTIONS:
        value = getattr(args, name, None)
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            if isinstance(item, str) and item:
                flag = "manifest" if name == "manifest" else f"--{name.replace('_', '-')}"
                out[flag if not isinstance(value, list) or len(value) == 1 else
                    f"{flag} #{i + 1}"] = item
    return out


def outputs(args: argparse.Namespace) -> dict[str, str]:
    """{"--out": path, ...}: the files (or folder) the command writes, with the checkpoint
    files of a resumable estimate (OUT.partial.npz and OUT.partial.json)."""
    out = getattr(args, "out", None)
    if not isinstance(out, str) or not out:
        return {}
    found = {"--out": out}
    if getattr(args, "hf_model", None):
        found["the checkpoint"] = f"{out}.partial.npz"
        found["the checkpoint's options"] = f"{out}.partial.json"
    return found


def refuse_overlap(written: dict[str, str | os.PathLike], read: dict[str, str | os.PathLike],
                   *, fix: str = "give another --out") -> None:
    """Raise ValueError when a file to write is the same file as one to read.

    Args:
        written: what the command writes, by the name the user knows it by ("--out").
        read: what it reads, likewise ("--profile", "jobs[2].profile").
        fix: the end of the message.
    """
    for out_name, out_path in written.items():
        for in_name, in_path in read.items():
            if same_file(out_path, in_path):
                raise ValueError(
                    f"{out_name} {str(out_path)!r} is the same file as {in_name} "
                    f"{str(in_path)!r}: writing it would destroy the input; {fix}"
                )


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same resolved path, or one file (hard links)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist yet
        pass
    return os.path.realpath(a) == os.path.realpath(b)


def distributed_wanted(args: argparse.Namespace) -> bool:
    """Whether the command joins a multi-process run (only process 0 then writes)."""
    return bool(getattr(args, "distributed", False)) or any(
        getattr(args, name, None) is not None
        for name in ("coordinator", "num_processes", "process_id"))


def lock_outputs(args: argparse.Namespace) -> None:
    """Hold the write lock of the command's --out until it ends (see `claimed`)."""
    out = outputs(args).get("--out")
    if out is not None:
        _HELD.append(_io.OutputLock.acquire(out))


@contextlib.contextmanager
def claimed(args: argparse.Namespace) -> Iterator[None]:
    """Check the command's outputs against its inputs, and lock them while it runs.

    In a multi-process run only process 0 writes: `schedopt.cli.distributed.start` takes
    the lock there once the process ids are known.
    """
    refuse_overlap(outputs(args), inputs(args))
    try:
        if not distributed_wanted(args):
            lock_outputs(args)
        yield
    finally:
        while _HELD:
            _HELD.pop().release()

