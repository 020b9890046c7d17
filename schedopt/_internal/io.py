"""File helpers shared by every reader and writer: clear errors, atomic writes."""

from __future__ import annotations

import contextlib
import json
import math
import os
import stat
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .checks import LARGEST_WHOLE, shown


def check_output_path(path: str | os.PathLike) -> Path:
    """Return `path` as a Path after checking that it can be written as a file.

    Raises:
        ValueError: the parent directory is missing, or `path` is a directory, a device or
            a pipe.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist; "
            "create it first or choose another output path"
        )
    if path.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: it is a directory; give a file name")
    if path.exists() and not path.is_file():
        # Renaming over a device or a pipe would replace it (as root, even /dev/null).
        raise ValueError(
            f"cannot write {str(path)!r}: it is not a regular file (a device or a pipe); "
            "give a file name"
        )
    return path


# Writes in progress hold this lock (re-entrant: a save on interrupt writes files too), so a
# signal watcher that takes it knows no other thread is between creating a temporary file and
# renaming it into place.
_WRITING = threading.RLock()
# Temporary files being written right now, removed by `end_interrupted`.
_PARTIAL: set[str] = set()
# Saves to run before an interrupted command exits (a checkpoint's final save).
_ON_INTERRUPT: list[Callable[[], None]] = []


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    The data goes to a temporary file in the same directory, which is then renamed over
    `path`; a failure part-way leaves no partial or stale file behind.

    Raises:
        ValueError: the file cannot be written (one sentence naming `path`, never the
            temporary file).
    """
    path = check_output_path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    with _WRITING:
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        except OSError as e:
            raise ValueError(f"cannot write {str(path)!r}: {_reason(e)}") from None
        _PARTIAL.add(tmp)
        try:
            with os.fdopen(fd, mode) as f:
                f.write(data)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
            os.replace(tmp, path)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise ValueError(f"cannot write {str(path)!r}: {_reason(e)}") from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        finally:
            _PARTIAL.discard(tmp)
    return path


@contextmanager
def saved_on_interrupt(save: Callable[[], None]) -> Iterator[None]:
    """Within this block, an interrupted command calls `save()` before it exits.

    `save` runs on the CLI's signal-watcher thread while the main thread is stopped at an
    arbitrary point, so it must only write state that is consistent at every moment.
    """
    with _WRITING:
        _ON_INTERRUPT.append(save)
    try:
        yield
    finally:
        with _WRITING:
            _ON_INTERRUPT.remove(save)


class OutputLock:
    """An exclusive lock on an output path, held while one process writes it.

    The lock is `fcntl.flock` on a hidden file beside the output (`.NAME.lock`, holding the
    writer's process id): the system releases it when the process ends in any way, so a
    killed writer never leaves a stale lock, and the file is removed on release.
    """

    def __init__(self, path: Path, fd: int | None):
        self.path, self.fd = path, fd

    @classmethod
    def acquire(cls, output: str | os.PathLike) -> OutputLock:
        """Lock `output` (a file or folder to write).

        Raises:
            ValueError: another process holds the lock (one sentence with its process id).
        """
        output = Path(output)
        parent = output.parent if str(output.parent) else Path(".")
        lock = parent / f".{output.name}.lock"
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no lock
            return cls(lock, None)
        for _ in range(10):  # retry when a releasing holder removed the file we opened
            try:
                fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
            except OSError:
                return cls(lock, None)  # a folder we cannot write: the write itself will say
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
                os.close(fd)
                raise ValueError(
                    f"another schedopt process (pid {holder}) is writing {str(output)!r}; wait "
                    "for it to finish, or give another --out"
                ) from None
            try:
                same = os.fstat(fd).st_ino == os.stat(lock).st_ino
            except OSError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
                _PARTIAL.add(str(lock))  # removed too if the process must exit at once
                return cls(lock, fd)
            os.close(fd)
        return cls(lock, None)

    def release(self) -> None:
        """Remove the lock file and let the next writer in."""
        if self.fd is None:
            return
        # Unlinked before it leaves _PARTIAL: an interrupt watcher that ends the process
        # between the two steps still removes it.
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        _PARTIAL.discard(str(self.path))
        os.close(self.fd)
        self.fd = None


def end_interrupted(*, wait_s: float = 10.0) -> None:
    """Prepare an immediate exit: run the registered saves, then delete partial files.

    Waits up to `wait_s` seconds for a write in progress on another thread to finish, and
    keeps the write lock (the process is about to end), so no new write can begin.
    """
    _WRITING.acquire(timeout=wait_s)
    for save in list(_ON_INTERRUPT):
        try:
            save()
        except Exception:  # noqa: BLE001 - a failed save must not stop the exit
            pass
    for tmp in list(_PARTIAL):
        try:
            os.unlink(tmp)
        except OSError:
            pass
        _PARTIAL.discard(tmp)


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """`path` as a Path after checking that it is a regular file that can be read.

    Args:
        path: the file.
        what: what it should hold, for the message ("profile", "schedule").

    Raises:
        ValueError: missing, a directory, a device or pipe (reading one would block or
            give nothing), or unreadable; one sentence naming the file.
    """
    path = Path(path)
    try:
        st = path.stat()
    except OSError as e:
        if not path.exists():
            raise ValueError(f"{what} file {str(path)!r} does not exist; check the path") from None
        raise ValueError(f"cannot read {what} file {str(path)!r}: {_reason(e)}") from None
    if stat.S_ISDIR(st.st_mode):
        raise ValueError(f"{what} file {str(path)!r} is a directory; give the path of a file")
    if not stat.S_ISREG(st.st_mode):
        raise ValueError(
            f"{what} file {str(path)!r} is not a regular file (a device or a pipe); give the "
            "path of a saved file"
        )
    if not os.access(path, os.R_OK):
        raise ValueError(f"cannot read {what} file {str(path)!r}: permission denied")
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON (floats keep all their digits)."""
    return atomic_write(path, dumps(obj, indent=1) + "\n")


def dumps(obj: Any, indent: int | None = None) -> str:
    """`obj` as strict JSON: infinite or NaN floats become null.

    Python's json writes `Infinity` and `NaN`, which strict parsers (jq, JavaScript,
    Go) refuse; null is what they all read as "no finite value".
    """
    return json.dumps(_finite_or_null(obj), indent=indent, allow_nan=False)


def _finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float | np.floating):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_null(v) for v in obj]
    return obj


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file, turning a missing or malformed file into one clear sentence.

    Args:
        path: the file to read.
        what: what the file should hold, for the message ("profile", "schedule").
    """
    path = check_input_file(path, what)
    try:
        text = path.read_text()
    except OSError as e:
        raise ValueError(f"cannot read {what} file {str(path)!r}: {_reason(e)}") from None
    except UnicodeDecodeError:
        raise ValueError(
            f"{what} file {str(path)!r} is not text (not UTF-8); give a JSON file"
        ) from None
    return parse_json(text, path, what)


def parse_json(text: str, path: str | os.PathLike, what: str) -> Any:
    """JSON text read from `path` (for messages), refusing a key given twice in an object."""
    try:
        return json.loads(text, object_pairs_hook=lambda pairs: _unique_keys(pairs, path, what))
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{what} file {str(path)!r} is not valid JSON ({e}); "
            f"regenerate it or fix the syntax"
        ) from None
    except RecursionError:
        raise ValueError(
            f"{what} file {str(path)!r} is nested too deeply to be a schedopt file; "
            "regenerate it"
        ) from None


def _unique_keys(pairs: list[tuple[str, Any]], path: str | os.PathLike, what: str) -> dict:
    """A JSON object as a dict, refusing a key given twice (json keeps the last silently)."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(
                f"{what} file {str(path)!r} gives the key {key!r} twice; keep one of them"
            )
        obj[key] = value
    return obj


def number_array(
    value: Any,
    what: str,
    *,
    ndim: int = 1,
    whole: bool = False,
    nonnegative: bool = False,
) -> np.ndarray:
    """A JSON list (nested `ndim` deep) of finite numbers as a numpy array.

    Refuses what `np.asarray` would silently accept or change: strings ("1.5"), booleans,
    null, fractions where whole numbers are needed (which a cast would truncate), numbers
    too large to be exact (1e20 as a count), NaN and infinities, and ragged lists.

    Args:
        value: the loaded JSON value.
        what: its name for messages ("'p.json': revealed").
        ndim: how deeply the lists nest (1: a list of numbers).
        whole: require whole numbers (returned as int64, else float64).
        nonnegative: require values >= 0.

    Raises:
        ValueError: one sentence naming `what` and the first bad entry.
    """
    kind = "whole numbers" if whole else "numbers"
    shape = "a list" if ndim == 1 else f"a {ndim}-level nested list"

    def walk(v: Any, depth: int, where: str) -> None:
        if depth < ndim:
            if not isinstance(v, list):
                raise ValueError(f"{what}{where} must be {shape} of {kind}, got {shown(v)}")
            for i, item in enumerate(v):
                walk(item, depth + 1, f"{where}[{i}]")
            return
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise ValueError(f"{what}{where} is {shown(v)}; give {kind}, not text or true/false")
        try:
            finite = math.isfinite(v)
        except OverflowError:  # an integer beyond any float (2^1100)
            finite = False
        if not finite:
            raise ValueError(f"{what}{where} is {shown(v)}; every value must be a finite number")
        if whole and (v != int(v) or abs(v) > LARGEST_WHOLE):
            raise ValueError(f"{what}{where} is {v!r}; give a whole number below 2^53")
        if nonnegative and v < 0:
            raise ValueError(f"{what}{where} is {v!r}; it must be >= 0")

    walk(value, 0, "")
    try:
        array = np.asarray(value, dtype=np.int64 if whole else np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"{what} must be a rectangular {shape} of {kind}") from None
    if array.ndim != ndim:
        raise ValueError(f"{what} must be a rectangular {shape} of {kind}")
    return array


def _reason(e: OSError) -> str:
    """An OSError as plain words without file names ("permission denied")."""
    return (e.strerror or type(e).__name__).lower()


def header(fmt: str, version: int) -> dict:
    """The first keys of every schedopt JSON file, in the order `check_format` reads them."""
    return {"format": fmt, "version": version}


def check_format(obj: Any, path: str | os.PathLike, fmt: str, version: int) -> dict:
    """Check the `format` and `version` keys of a loaded file and return it as a dict."""
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(
            f"{str(path)!r} is not a {fmt} file (format {got!r}); "
            f"pass a file written by schedopt with format {fmt!r}"
        )
    if not is_version(obj.get("version"), version):
        raise ValueError(
            f"{str(path)!r} has {fmt} version {obj.get('version')!r}, but this schedopt reads "
            f"version {version} only; regenerate the file with this version"
        )
    return obj


def is_version(value: Any, version: int) -> bool:
    """Whether a file's `version` value is `version` (1 or 1.0, but not true, which == 1)."""
    return not isinstance(value, bool) and isinstance(value, int | float) and value == version


# The fields of each schedule-like file (docs/formats.md, docs/export.md); any other field is
# refused, so that a misspelt key is not silently ignored.
PROFILE_FIELDS = ("format", "version", "n", "unit", "revealed", "entropy", "stderr", "meta")
SCHEDULE_FIELDS = ("format", "version", "n", "steps", "tokens_per_step", "expected_kl", "unit",
                   "method", "meta", "certified_optimal", "lower_bound")
TIME_GRID_FIELDS = ("format", "version", "n", "steps", "alpha", "expected_kl", "unit", "sampler",
                    "method", "meta")
BLOCK_PROFILES_FIELDS = ("format", "version", "n", "block_length", "num_blocks", "unit", "entropy",
                         "stderr", "meta")
EXPORT_FIELDS = ("format", "version", "kind", "n", "steps", "sampler", "method", "expected_kl",
                 "block_length", "num_blocks", "steps_per_block", "counts", "mask_ratio",
                 "alpha", "t", "dt", "alpha_schedule", "eps", "convention")


def check_fields(obj: dict, path: str | os.PathLike | None, known: tuple[str, ...],
                 what: str) -> None:
    """Refuse fields `known` does not list: a misspelt key would otherwise be ignored."""
    unknown = [k for k in obj if k not in known]
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        where = "" if path is None else f"{str(path)!r} has "
        raise ValueError(
            f"{where or 'the file has '}the unknown field(s) {names} for a {what}; the fields "
            f"are {', '.join(known)}: remove or rename them"
        )


def meta_field(obj: dict, path: str | os.PathLike) -> dict:
    """The free-form `meta` object of a file ({} when absent or null)."""
    meta = obj.get("meta")
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise ValueError(
            f"{str(path)!r}: meta must be a JSON object of notes ({{\"key\": value}}), got "
            f"{shown(meta)}; wrap it in an object or drop it"
        )
    return dict(meta)


def require_keys(obj: dict, path: str | os.PathLike, keys: tuple[str, ...]) -> None:
    """Raise a clear error naming the first key of `keys` missing from `obj`."""
    for key in keys:
        if key not in obj:
            raise ValueError(f"{str(path)!r} lacks the required key {key!r}; regenerate the file")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
