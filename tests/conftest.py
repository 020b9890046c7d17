"""Test-session settings and fixtures shared by every test module."""

import os
import signal
import subprocess

import jax
import pytest
from processes import child_env

# The CLI keeps compiled programs on disk between runs; tests call its main() in-process and
# must neither depend on nor fill a user's cache.
os.environ["SCHEDOPT_CACHE_DIR"] = "off"

# Strict dtype promotion: an int32 meeting an int64, or an int meeting a float, is an error in
# the tests instead of a silent widening (the library casts explicitly where it mixes them).
jax.config.update("jax_numpy_dtype_promotion", "strict")

@pytest.fixture
def spawn():
    """`spawn(argv, **popen_kwargs)` starts a process that cannot outlive the test.

    Each process leads its own process group; when the test ends (passed, failed or timed
    out) any that still runs is killed with its whole group and its pipes are closed, so one
    slow or stuck test cannot leave work running under the rest of the suite.
    """
    started: list[subprocess.Popen] = []

    def start(argv, **kwargs) -> subprocess.Popen:
        kwargs.setdefault("env", child_env())
        proc = subprocess.Popen(argv, start_new_session=True, **kwargs)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.wait()
        for stream in (proc.stdin, proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


_OPTIONAL = ('importorskip("torch"', 'importorskip("transformers"')


def pytest_collection_modifyitems(items):
    """Tests in files that need torch or transformers get the `torch` marker, so that CI can
    run just them again (`pytest -m torch`) once those optional extras are installed; without
    them the files skip at import, saying why."""
    needs = {}
    for item in items:
        path = item.path
        if path not in needs:
            needs[path] = any(s in path.read_text() for s in _OPTIONAL)
        if needs[path]:
            item.add_marker(pytest.mark.torch)
