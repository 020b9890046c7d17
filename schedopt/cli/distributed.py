"""--distributed and its options, shared by `batch`, `profile` and `nll`."""

from __future__ import annotations

import argparse


def add_distributed_arguments(parser: argparse.ArgumentParser) -> None:
    """--distributed, --coordinator, --num-processes, --process-id, --init-timeout."""
    from ..distributed import DEFAULT_TIMEOUT

    group = parser.add_argument_group(
        "several processes (--distributed)",
        "Run the same command on every process (host) with the same files; the work is "
        "split over the devices of all of them and process 0 writes the results. On a TPU "
        "pod, under SLURM or Open MPI, --distributed alone finds the others; elsewhere give "
        "the three values below (any of them implies --distributed).",
    )
    group.add_argument(
        "--distributed", action="store_true",
        help="join a multi-process JAX run (jax.distributed.initialize) before computing",
    )
    group.add_argument(
        "--coordinator", metavar="HOST:PORT",
        help="process 0's address and a free port, the same on every process",
    )
    group.add_argument("--num-processes", type=int, metavar="N", help="number of processes")
    group.add_argument("--process-id", type=int, metavar="I",
                       help="this process's id, 0 to N-1 (0 hosts the coordinator)")
    group.add_argument(
        "--init-timeout", type=float, default=DEFAULT_TIMEOUT, metavar="S",
        help=f"seconds to wait for every process to join before failing with exit code 2 "
        f"(default {DEFAULT_TIMEOUT:g})",
    )


_STARTED = False  # set by `start` when this process joined a run of several


def succeeded() -> None:
    """The command returned 0: a peer dying from now on must not fail this process."""
    if _STARTED:
        from ..distributed import succeeded as done

        done()


def start(args: argparse.Namespace) -> bool:
    """Join the multi-process run the arguments ask for; True when there is one.

    Call it first in a command, before any JAX computation. Processes other than 0 draw no
    progress bars, and text that the runtime's C++ libraries print on stdout (Gloo's
    "connected to N peer ranks") goes to stderr, so that stdout holds only the command's
    own output.
    """
    global _STARTED
    wanted = args.distributed or any(
        getattr(args, name) is not None for name in ("coordinator", "num_processes", "process_id")
    )
    if not wanted:
        return False
    import jax

    from ..distributed import initialize

    _stdout_for_python_only()
    initialize(args.coordinator, args.num_processes, args.process_id,
               timeout=args.init_timeout, label=f"schedopt {args.command}")
    _STARTED = True
    if jax.process_index() != 0:
        args.quiet = True  # one progress bar: the writer's
    else:  # the one writer locks the outputs; a failure stops every process at once
        from ..distributed import exit_on_error
        from .outputs import lock_outputs

        with exit_on_error(f"schedopt {args.command}"):
            lock_outputs(args)
    return True


def _stdout_for_python_only() -> None:
    import os
    import sys

    sys.stdout.flush()
    python_stdout = os.dup(1)
    os.dup2(2, 1)  # file descriptor 1 (C and C++ code) now writes to stderr
    sys.stdout = open(python_stdout, "w", buffering=1, encoding=sys.stdout.encoding,  # noqa: SIM115
                      errors=sys.stdout.errors, closefd=True)
