"""File helpers shared by every reader and writer: clear errors, atomic writes."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def check_output_path(path: str | os.PathLike) -> Path:
    """Return `path` as a Path after checking that its directory exists.

    Raises:
        ValueError: the parent directory is missing.
    """
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise ValueError(
            f"cannot write {str(path)!r}: directory {str(parent)!r} does not exist; "
            "create it first or choose another output path"
        )
    return path


def atomic_write(path: str | os.PathLike, data: str | bytes) -> Path:
    """Write `data` to `path` so that readers see either the old file or the whole new one.

    The data goes to a temporary file in the same directory, which is then renamed over
    `path`; a failure part-way leaves no partial or stale file behind.
    """
    path = check_output_path(path)
    mode = "wb" if isinstance(data, bytes) else "w"
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode) as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_json(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically write `obj` as indented JSON (floats keep all their digits)."""
    return atomic_write(path, json.dumps(obj, indent=1) + "\n")


def read_json(path: str | os.PathLike, what: str) -> Any:
    """Read a JSON file, turning a missing or malformed file into one clear sentence.

    Args:
        path: the file to read.
        what: what the file should hold, for the message ("profile", "schedule").
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist; check the path")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(
            f"{what} file {str(path)!r} is not valid JSON ({e}); "
            f"regenerate it or fix the syntax"
        ) from None


def check_format(obj: Any, path: str | os.PathLike, fmt: str, version: int) -> dict:
    """Check the `format` and `version` keys of a loaded file and return it as a dict."""
    if not isinstance(obj, dict) or obj.get("format") != fmt:
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise ValueError(
            f"{str(path)!r} is not a {fmt} file (format {got!r}); "
            f"pass a file written by schedopt with format {fmt!r}"
        )
    if obj.get("version") != version:
        raise ValueError(
            f"{str(path)!r} has {fmt} version {obj.get('version')!r}, but this schedopt reads "
            f"version {version} only; regenerate the file with this version"
        )
    return obj


def require_keys(obj: dict, path: str | os.PathLike, keys: tuple[str, ...]) -> None:
    """Raise a clear error naming the first key of `keys` missing from `obj`."""
    for key in keys:
        if key not in obj:
            raise ValueError(f"{str(path)!r} lacks the required key {key!r}; regenerate the file")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
