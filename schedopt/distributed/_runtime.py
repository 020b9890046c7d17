"""One program over several processes (hosts): JAX's multi-controller runtime, made safe to use.

JAX runs a multi-host job as one copy of the same program per process ("multi-controller"):
after `jax.distributed.initialize`, `jax.devices()` lists the devices of every process, a
computation sharded over a `Mesh` of them runs on all at once, and each process feeds and
holds only its own devices' shards. schedopt's batched solver (`schedopt.optimize_batch`) and
curve estimator (`schedopt.estimate_curves`) shard their batch axis over `jax.devices()`, so
they split their work over every device of every process once this runtime is up; results are
gathered back to every process with `to_host`.

This module adds what a command-line run over several machines needs around that:

- `initialize`: the three values a workstation cluster must give (coordinator HOST:PORT,
  process count, process id), or none of them for JAX's cluster auto-detection (TPU pods,
  SLURM, Open MPI); CPU collectives over TCP (Gloo) when the devices are CPUs; and a bounded
  wait: a process that cannot reach the coordinator, or whose peers never join, stops after
  `timeout` seconds with one line on stderr and exit code 2 instead of hanging (JAX itself
  would abort the process with a C++ stack trace).
- `same_everywhere`: every process must compute on the same inputs (or the sharded calls
  would not match up); this reads them on each process and checks that they agree.
- `broadcast` and `is_writer`: process 0 alone decides what is left to do and writes every
  output file (one writer per file, written atomically by `schedopt._internal.io`).
- `exit_on_error`: an error in one process ends it at once with one line, skipping JAX's
  shutdown barrier, which would otherwise wait for the failed peers and then abort.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

import jax
import numpy as np

DEFAULT_TIMEOUT = 300.0  # seconds to wait for every process to join (JAX's default too)
# JAX's own deadline is set this much later, so that the one-line timeout below fires first.
_JAX_GRACE = 30

T = TypeVar("T")

_STOPPING = threading.Lock()  # held by the thread that ends the process: one line, one exit
# After a peer's connection drops, wait this long before blaming it: when every process stops
# on the same error, each should report its own error, not the others' exits.
_PEER_GRACE = 2.0
_SUCCEEDED = threading.Event()  # this process's command has finished with exit code 0
# On process 0: the peers' open watch connections, whether more may still connect, and
# whether it is stopping on an error; `_WATCHED` guards them and is notified on each change.
_PEERS: set[socket.socket] = set()
_WATCH = {"accepting": False, "releasing": False}
_WATCHED = threading.Condition()


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    label: str = "schedopt",
) -> None:
    """Join this process to a multi-process JAX run; call it before any JAX computation.

    Args:
        coordinator: "HOST:PORT" of process 0, which hosts the coordinator (any free port,
            the same on every process), or None to take it from the cluster (TPU pod,
            SLURM, Open MPI) or $JAX_COORDINATOR_ADDRESS.
        num_processes: the number of processes N, or None to take it from the cluster.
        process_id: this process's id in 0..N-1, or None to take it from the cluster.
        timeout: seconds to wait for all N processes to join. Past it, this process prints
            one line "LABEL: error: ..." on stderr and exits with code 2.
        label: the prefix of that line (the CLI passes "schedopt COMMAND").

    Once joined, the processes watch each other: when one dies (killed, or stopped by an
    error), the others stop within about 2 s with one line and exit code 2, instead of
    waiting in their next collective for JAX's 100 s heartbeat timeout.

    Raises:
        ValueError: a malformed argument, no cluster found to take missing values from, or
            JAX already started in this process.

    Example (two workstations; the second runs the same with process_id=1):
        >>> schedopt.distributed.initialize("10.0.0.1:12345", 2, 0)  # doctest: +SKIP
    """
    host_port = _check_arguments(coordinator, num_processes, process_id, timeout)
    # Cross-process collectives between CPU devices go over TCP (Gloo); the setting only
    # concerns the CPU client, so it is safe to make before knowing the platform. An
    # explicit choice (MPI) is kept.
    if getattr(jax.config, "jax_cpu_collectives_implementation", "gloo") in (None, "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    joined = threading.Event()
    watchdog = threading.Thread(
        target=_stop_unless_joined,
        args=(joined, timeout, host_port, num_processes, process_id, label),
        daemon=True,
    )
    watchdog.start()
    try:
        jax.distributed.initialize(
            coordinator_address=coordinator,
            num_processes=num_processes,
            process_id=process_id,
            initialization_timeout=math.ceil(timeout) + _JAX_GRACE,
        )
    except ValueError as e:  # auto-detection found no cluster to take the values from
        raise ValueError(
            f"no cluster (TPU pod, SLURM, Open MPI) to take the run's layout from ({e}); "
            "pass the coordinator HOST:PORT, the number of processes and this process's id"
        ) from None
    except RuntimeError as e:
        raise ValueError(
            f"cannot start the multi-process runtime ({str(e).strip().splitlines()[0]}); "
            "initialize it once, before any JAX computation"
        ) from None
    finally:
        joined.set()
    if jax.process_count() > 1:
        _watch_peers(coordinator or _detected_coordinator(), label)


def is_writer() -> bool:
    """True on the one process (process 0) that writes the output files."""
    return jax.process_index() == 0


def to_host(x: jax.Array) -> np.ndarray:
    """The whole of a (possibly multi-process) array as a NumPy array, on every process.

    An array sharded over devices of several processes is all-gathered (every process gets
    every row); any other array is copied as it is.
    """
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils

        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def broadcast(values: np.ndarray) -> np.ndarray:
    """Process 0's `values` (a NumPy array of the same shape and dtype on every process)."""
    values = np.asarray(values)
    if jax.process_count() == 1:
        return values
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(values)).astype(values.dtype)


def same_everywhere(read: Callable[[], T], fingerprint: Callable[[T], bytes], what: str) -> T:
    """`read()` on every process, checked to give the same result everywhere.

    Every process must hold the same inputs: the sharded calls that follow only line up when
    every process makes the same calls with the same shapes. Each process digests its
    result (SHA-256 of `fingerprint(result)`), the digests are exchanged, and every process
    stops with the same kind of error when one failed or differs, instead of some processes
    going on alone and waiting for the others forever.

    Args:
        read: reads this process's inputs; may raise ValueError or OSError.
        fingerprint: bytes that identify a result (same bytes for the same inputs).
        what: the inputs, for the error message ("the manifest and its profiles").

    Returns:
        `read()`'s result.

    Raises:
        ValueError or OSError: this process's own error; or ValueError naming the processes
            that failed, or that read something else than process 0.
    """
    if jax.process_count() == 1:
        return read()
    from jax.experimental import multihost_utils

    error: Exception | None = None
    digest = np.zeros(8, np.uint32)
    try:
        result = read()
        digest = np.frombuffer(hashlib.sha256(fingerprint(result)).digest(), np.uint32)
    except (ValueError, OSError) as e:
        error = e
    row = np.concatenate([[error is not None], digest.view(np.int32)]).astype(np.int32)
    rows = np.asarray(multihost_utils.process_allgather(row))  # [processes, 9]
    if error is not None:
        raise error
    failed = [int(i) for i in np.nonzero(rows[:, 0])[0]]
    if failed:
        raise ValueError(
            f"process(es) {failed} of {len(rows)} could not read {what} (see their own "
            "error); every process must see the same files"
        )
    differ = [int(i) for i in np.nonzero(np.any(rows[:, 1:] != rows[0, 1:], axis=1))[0]]
    if differ:
        raise ValueError(
            f"{what} differ between process 0 and process(es) {differ}; give every process "
            "the same files and arguments"
        )
    return result


def succeeded() -> None:
    """Say that this process's command has finished, with exit code 0.

    A peer that dies after this (during JAX's shutdown barrier, say) no longer fails the
    finished work: the process ends at once with exit code 0 instead of the peer's error.
    """
    _SUCCEEDED.set()


@contextlib.contextmanager
def exit_on_error(label: str, note: str = "") -> Iterator[None]:
    """In a run of several processes, end this process at once on any error.

    The error is printed as one line "LABEL: error: process I of N: MESSAGE[; NOTE]" (the
    note, say how to resume, follows failures other than bad input) and the process exits
    with code 2 (130 on Ctrl-C) without JAX's shutdown barrier, which waits up to minutes
    for peers that have failed and then aborts with a C++ stack trace; the peers see the
    exit at once (`initialize` keeps them watching) and stop too. With one process this
    does nothing: errors propagate as usual.
    """
    try:
        yield
    except (Exception, KeyboardInterrupt) as e:
        if not jax.distributed.is_initialized() or jax.process_count() == 1:
            raise
        text = str(e).strip()
        message = text.splitlines()[0] if text else type(e).__name__
        where = f"process {jax.process_index()} of {jax.process_count()}"
        if isinstance(e, ValueError):  # bad input: the fix is in the message, not a rerun
            note = ""
        _stop(f"{label}: error: {where}: {message}{'; ' + note if note else ''}",
              130 if isinstance(e, KeyboardInterrupt) else 2)


# --------------------------------------------------------------------------- internals
def _check_arguments(coordinator, num_processes, process_id, timeout) -> tuple | None:
    """(host, port) of the coordinator (None when not given), after checking every value."""
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
        math.isfinite(timeout) and timeout > 0
    ):
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    for name, value, low in (("num_processes", num_processes, 1), ("process_id", process_id, 0)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < low):
            raise ValueError(f"{name} must be a whole number >= {low}, got {value!r}")
    if num_processes is not None and process_id is not None and process_id >= num_processes:
        raise ValueError(
            f"process_id must be below num_processes = {num_processes} (ids run from 0 to "
            f"{num_processes - 1}), got {process_id}"
        )
    if coordinator is None:
        return None
    host, _, port = str(coordinator).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"coordinator must be HOST:PORT (process 0's address and a free port, e.g. "
            f"10.0.0.1:12345), got {coordinator!r}"
        )
    return host.strip("[]"), int(port)


def _stop_unless_joined(joined, timeout, host_port, num_processes, process_id, label) -> None:
    if joined.wait(timeout):
        return
    everyone = f"all {num_processes} processes" if num_processes else "all processes"
    if host_port is not None and process_id != 0 and not _reachable(*host_port):
        where = f"{host_port[0]}:{host_port[1]}"
        message = (f"cannot reach the coordinator at {where} within {timeout:g} s; start "
                   "process 0 on that host first, and check the address and that the port "
                   "is open")
    else:
        message = (f"not {everyone} joined within {timeout:g} s; start the same command on "
                   "every process, each with its own process id")
    _stop(f"{label}: error: {message}", 2)


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return True
    except OSError:
        return False


def _stop(line: str, code: int) -> None:
    """Print `line` on stderr and end the process now (no atexit, no shutdown barrier).

    Process 0 first lets its peers go (`_release_peers`): it hosts JAX's coordination
    service, and a peer that loses it aborts with a C++ stack trace.
    """
    if not _STOPPING.acquire(blocking=threading.current_thread() is threading.main_thread()):
        return  # another thread is already ending the process
    if line:
        print(line, file=sys.stderr, flush=True)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    if code != 0:
        _release_peers()
    os._exit(code)


def _release_peers() -> None:
    """On process 0: tell every connected peer to stop, and wait until they have gone.

    Each peer stops with its own error if it has one (within `_PEER_GRACE`), else with one
    line naming process 0; the wait is bounded, so a stuck peer cannot hold process 0.
    """
    with _WATCHED:
        _WATCH["releasing"] = True  # a peer that connects from now on is told at once
        peers = list(_PEERS)
    for conn in peers:
        with contextlib.suppress(OSError):
            conn.sendall(b"stop")
    deadline = time.monotonic() + _PEER_GRACE + 3.0
    with _WATCHED:
        while (_PEERS or _WATCH["accepting"]) and _WATCHED.wait(
                max(0.0, deadline - time.monotonic())):
            pass


def _detected_coordinator() -> str | None:
    """The coordinator address JAX found by itself (a TPU pod, SLURM), when it says."""
    from jax._src import distributed as jax_distributed  # no public accessor for this

    return getattr(getattr(jax_distributed, "global_state", None), "coordinator_address", None)


def _watch_peers(coordinator: str | None, label: str) -> None:
    """Stop this process at once, with one line, when another process dies.

    JAX notices a dead process only after its heartbeat timeout (100 s), and then aborts the
    others with a C++ stack trace; meanwhile they wait inside collectives with the dead peer
    (measured here: a killed process left its peer waiting until that abort). So every
    process keeps a TCP connection to process 0, on a port process 0 opens and broadcasts:
    the operating system closes a process's connections when it dies, which the others see
    at once. A process that ends normally says so first ("bye" at exit), which is not a
    failure. Where the connection cannot be made (a firewall), JAX's heartbeat remains.
    """
    import atexit

    n, me = jax.process_count(), jax.process_index()
    server = None
    if me == 0:  # on every interface, IPv6 too where the system has it
        dual = socket.has_dualstack_ipv6()
        server = socket.create_server(("", 0), family=socket.AF_INET6 if dual else
                                      socket.AF_INET, dualstack_ipv6=dual)
    port = int(broadcast(np.asarray(server.getsockname()[1] if server else 0, np.int32)))
    if me == 0:
        def accept() -> None:
            server.settimeout(60)
            with contextlib.suppress(OSError):
                for _ in range(n - 1):
                    conn, _ = server.accept()
                    conn.settimeout(None)
                    with _WATCHED:
                        _PEERS.add(conn)
                        if _WATCH["releasing"]:
                            with contextlib.suppress(OSError):
                                conn.sendall(b"stop")
                    threading.Thread(target=_await_bye, args=(conn, None, n, label),
                                     daemon=True).start()
            server.close()
            with _WATCHED:
                _WATCH["accepting"] = False
                _WATCHED.notify_all()

        _WATCH["accepting"] = True
        threading.Thread(target=accept, daemon=True).start()
        atexit.register(_say_bye_to_peers)
        return
    if coordinator is None:
        return
    host = coordinator.rpartition(":")[0].strip("[]")
    try:
        conn = socket.create_connection((host, port), timeout=10)
    except OSError:
        return
    conn.settimeout(None)
    with contextlib.suppress(OSError):
        conn.sendall(f"{me}\n".encode())
    threading.Thread(target=_await_bye, args=(conn, 0, n, label), daemon=True).start()
    atexit.register(_say_bye, conn)


def _await_bye(conn: socket.socket, peer: int | None, n: int, label: str) -> None:
    """Wait for the peer's goodbye; a connection that drops without one means it died.

    A peer first sends its process id and a newline (process 0 learns who it is), then
    "bye" when it ends normally. Process 0 sends "stop" when it ends on an error.
    """
    data = b""
    with contextlib.suppress(OSError):
        while b"bye" not in data and b"stop" not in data:
            chunk = conn.recv(64)
            if not chunk:
                break
            data += chunk
    if peer is None:  # on process 0: this peer has gone (or is going)
        with _WATCHED:
            _PEERS.discard(conn)
            _WATCHED.notify_all()
    if b"bye" in data:
        return
    head = data.split(b"\n", 1)[0]
    if peer is None and b"\n" in data and head.isdigit():
        peer = int(head)
    time.sleep(_PEER_GRACE)
    if _SUCCEEDED.is_set():  # our work is done and written: skip the barrier with the dead
        _stop("", 0)
    who = f"process {peer} of {n}" if peer is not None else f"one of the {n} processes"
    why = ("stopped on an error (see its own output)" if b"stop" in data
           else "stopped before the end (killed or failed; see its own output)")
    _stop(f"{label}: error: {who} {why}; rerun the command on every process", 2)


def _say_bye_to_peers() -> None:
    """On process 0 at a normal exit: "bye" to every peer still connected."""
    with _WATCHED:
        peers = list(_PEERS)
    for conn in peers:
        _say_bye(conn)


def _say_bye(conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        conn.sendall(b"bye")
