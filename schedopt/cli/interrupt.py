"""Ctrl-C and SIGTERM end a command at any moment, with one line and no partial files.

Python runs a signal handler only between bytecodes of the main thread, and a long XLA
computation (or compilation, or the import of JAX) is one C++ call, so a KeyboardInterrupt
would wait until it returns, or be raised inside a garbage-collector callback and ignored.
Instead the C-level handler writes the signal number to a pipe (`signal.set_wakeup_fd`) and
the Python-level handler does nothing; a watcher thread reading the pipe runs the registered
saves (a checkpoint's), removes the temporary files of writes in progress (finished outputs
were renamed into place whole, others are untouched), prints one line and ends the process
with exit code 128 + the signal (130 for SIGINT, 143 for SIGTERM) through os._exit, which
skips an interpreter shutdown that could wait for, or crash in, XLA's threads.

`hold()` covers the moments before `exit_on_signal` starts: the program's entry point calls it
first, and a signal that arrives in between is acted on as soon as the watcher runs.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Iterator

# The signals that end a command, and the word printed for each.
SIGNALS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}


class _Held:
    """A Python-level handler that remembers the signals it receives."""

    def __init__(self) -> None:
        self.received: list[int] = []

    def __call__(self, signum, frame) -> None:
        self.received.append(signum)


def hold() -> None:
    """Remember SIGINT and SIGTERM until `exit_on_signal` acts on them (program start only).

    An ignored signal (SIGINT under nohup) stays ignored.
    """
    held = _Held()
    for sig in SIGNALS:
        if signal.getsignal(sig) is not signal.SIG_IGN:
            signal.signal(sig, held)


def _stay_running(signum, frame) -> None:
    """The Python-level handler while a command runs: the watcher thread does the work."""


@contextlib.contextmanager
def exit_on_signal() -> Iterator[None]:
    """Within this block, SIGINT and SIGTERM end the process at once (see the module doc).

    Outside the main thread (where signals cannot be set) it does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    except ValueError:
        os.close(read_fd)
        os.close(write_fd)
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    caught = [sig for sig, handler in previous.items() if handler is not signal.SIG_IGN]
    for sig in caught:
        signal.signal(sig, _stay_running)
    watcher = threading.Thread(target=_watch, args=(read_fd,), name="schedopt-signals",
                               daemon=True)
    watcher.start()
    for handler in previous.values():  # signals that came before this block
        for sig in getattr(handler, "received", ())[:1]:
            signal.raise_signal(sig)
    try:
        yield
    finally:
        signal.set_wakeup_fd(previous_fd)
        for sig in caught:
            signal.signal(sig, previous[sig] if previous[sig] is not None else signal.SIG_DFL)
        os.close(write_fd)  # the watcher reads end-of-file and returns
        watcher.join()
        os.close(read_fd)


def _watch(read_fd: int) -> None:
    while True:
        try:
            data = os.read(read_fd, 64)
        except OSError:
            return
        if not data:
            return  # the command finished and closed the pipe
        for sig in data:
            if sig in SIGNALS:
                _end(sig)


def _end(sig: int) -> None:
    from .._internal import io as _io

    try:
        _io.end_interrupted()
        os.write(2, f"schedopt: {SIGNALS[signal.Signals(sig)]}\n".encode())
    finally:
        os._exit(128 + sig)
