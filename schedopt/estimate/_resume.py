"""Checkpointed batch loops: long estimates that survive an interruption.

A Monte Carlo estimate is a loop over fixed batches whose results depend only on the
arguments (the random orders come from the key), so the finished batches can be saved as they
complete and a rerun with the same arguments skips them. The file records a fingerprint of
everything the results depend on (data, orders, grid, prompts, batch size); a file written for
other arguments is refused rather than mixed in. Saves are atomic (`schedopt._internal.io`), at most
every `SAVE_EVERY_S` seconds and once more when the loop stops for any reason: an error, or
Ctrl-C and SIGTERM (the CLI's signal watcher runs the save before the process ends, see
`schedopt.cli.interrupt`). The file is removed when the estimate completes.
"""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from .._internal import io as _io
from .._internal.progress import progress

SAVE_EVERY_S = 30.0  # seconds between saves while a loop runs


def fingerprint(what: str, **parts: Any) -> str:
    """A SHA-256 hex digest of `what` and every array (or list of arrays) in `parts`."""
    h = hashlib.sha256(what.encode())
    for name in sorted(parts):
        value = parts[name]
        h.update(name.encode())
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            a = np.ascontiguousarray(np.asarray(item if item is not None else []))
            h.update(str((a.dtype.str, a.shape)).encode())
            h.update(a.tobytes())
    return h.hexdigest()


class Checkpoint:
    """Saved batch results of one estimate (a no-op store when the path is None)."""

    def __init__(self, path: Path | None, key: str, saved: dict[str, np.ndarray]):
        self.path, self.key, self.saved = path, key, saved
        self._last_save = time.monotonic()
        # `saved` changes on the main thread and is saved from the signal watcher's thread.
        self._lock = threading.Lock()
        self.resumed = len(saved)  # batches found on disk when opened

    @classmethod
    def open(cls, path: str | os.PathLike | None, what: str, **parts: Any) -> Checkpoint:
        """Open (or start) the checkpoint at `path` for an estimate of `what` with `parts`.

        Raises:
            ValueError: the file exists but belongs to an estimate with other arguments, or
                is not a checkpoint.
        """
        key = fingerprint(what, **parts)
        if path is None:
            return cls(None, key, {})
        path = _io.check_output_path(path)
        if not path.exists():
            return cls(path, key, {})
        try:
            with np.load(path, allow_pickle=False) as f:
                saved = {name: f[name] for name in f.files}
        except (OSError, ValueError):
            raise ValueError(
                f"{str(path)!r} is not a schedopt checkpoint; delete it or choose another "
                "--checkpoint path"
            ) from None
        if str(saved.pop("fingerprint", "")) != key:
            raise ValueError(
                f"checkpoint {str(path)!r} was written by an estimate with other arguments "
                "(model data, seed, grid or batch size); delete it to start afresh"
            )
        return cls(path, key, saved)

    def run(
        self,
        name: str,
        starts: Iterable[int],
        compute: Callable[[int], tuple[np.ndarray, ...]],
        *,
        description: str,
        quiet: bool,
    ) -> list[tuple[np.ndarray, ...]]:
        """compute(start) for every batch start, reusing saved results; a progress bar with ETA.

        Returns:
            The results in the order of `starts`.
        """
        starts = list(starts)
        results = []
        with _io.saved_on_interrupt(self.save):
            try:
                for start in progress(starts, description=description, quiet=quiet):
                    results.append(self._batch(name, start, compute))
            finally:
                self.save()
        return results

    def _batch(self, name: str, start: int, compute) -> tuple[np.ndarray, ...]:
        """One batch's results: saved ones when there are, else computed (and kept)."""
        prefix = f"{name}:{start}:"
        if f"{prefix}0" in self.saved:
            count = sum(1 for k in self.saved if k.startswith(prefix))
            return tuple(self.saved[f"{prefix}{i}"] for i in range(count))
        out = tuple(np.asarray(o) for o in compute(start))
        if self.path is not None:
            with self._lock:
                self.saved.update({f"{prefix}{i}": o for i, o in enumerate(out)})
            if time.monotonic() - self._last_save >= SAVE_EVERY_S:
                self.save()
        return out

    def save(self) -> None:
        """Write every finished batch atomically (nothing when there is none, or no path)."""
        with self._lock:
            saved = dict(self.saved)
        if self.path is None or not saved:
            return
        buffer = io.BytesIO()
        np.savez(buffer, fingerprint=np.asarray(self.key), **saved)
        _io.atomic_write(self.path, buffer.getvalue())
        self._last_save = time.monotonic()

    def finish(self) -> None:
        """The estimate is complete: remove the file."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
