"""Two processes on localhost (2 simulated CPU devices each, Gloo collectives) against one.

Each test starts real `schedopt` processes joined by JAX's multi-controller runtime on a free
port, as a user would on two workstations, and compares what they write with the result of
one ordinary process (for `batch`, also with the enumerated optimum).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from helpers import brute_force_optimum, kl_from_curve, markov_entropy_curve

from schedopt import EntropyProfile
from schedopt.cli import main
from schedopt.distributed import _runtime as distributed

ROOT = Path(__file__).resolve().parents[1]
CHAIN = markov_entropy_curve(np.asarray([[0.9, 0.1], [0.2, 0.8]]), 12)
CURVE = np.concatenate([[0.0], np.cumsum(1.0 / (1.0 + np.arange(12)) ** 1.5)])
LONG = np.concatenate([[0.0], np.cumsum(1.0 / (1.0 + np.arange(14)) ** 0.7)])
CURVES = {"chain.json": CHAIN, "curve.json": CURVE, "long.json": LONG}
# One compiled group (n = 12, budgets 5..8), with a target job that must get T = 6.
JOBS = [
    {"profile": "chain.json", "steps": 5},
    {"profile": "chain.json", "steps": 7},
    {"profile": "chain.json", "target_kl": 0.5 * (brute_force_optimum(CHAIN, 5)
                                                  + brute_force_optimum(CHAIN, 6))},
    {"profile": "curve.json", "steps": 5},
    {"profile": "curve.json", "steps": 8},
]
# A second group (n = 14) needs its own compiled solver: a moment in which process 0 has
# written files and still needs process 1, for the kill test.
TWO_GROUPS = [*JOBS, {"profile": "long.json", "steps": 5}]
TIMEOUT = 150  # seconds for one multi-process command; the runs take 10-30 s


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(spawn, argv: list[str], processes: int = 2, *, change=None) -> list[subprocess.Popen]:
    """`schedopt ARGV` in each of `processes` processes joined on a free local port;
    `change(i, argv)` may give process i other arguments. `spawn` is conftest's fixture."""
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
           "JAX_PLATFORMS": "cpu", "SCHEDOPT_CACHE_DIR": "off",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    port = _free_port()
    procs = []
    for i in range(processes):
        args = change(i, list(argv)) if change else argv
        procs.append(spawn(
            [sys.executable, "-m", "schedopt", "--quiet", *args, "--coordinator",
             f"127.0.0.1:{port}", "--num-processes", str(processes), "--process-id", str(i),
             "--init-timeout", "60"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        ))
    return procs


def _finish(procs: list[subprocess.Popen]) -> list[tuple[int, str, str]]:
    """(exit code, stdout, stderr) of each process; all are killed on a timeout."""
    deadline = time.monotonic() + TIMEOUT
    results = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            results.append((p.returncode, out, err))
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        logs = [p.communicate()[1][-2000:] for p in procs]
        pytest.fail(f"the processes did not finish within {TIMEOUT} s; stderr: {logs}")
    return results


def _run(spawn, argv: list[str], *, change=None) -> list[tuple[int, str, str]]:
    results = _finish(_start(spawn, argv, change=change))
    for i, (code, _, err) in enumerate(results):
        assert code == 0, f"process {i} exited with {code}: {err[-2000:]}"
    return results


def _manifest(folder: Path, jobs: list[dict]) -> Path:
    for name, entropy in CURVES.items():
        EntropyProfile.from_entropy(entropy).save(folder / name)
    path = folder / "manifest.json"
    path.write_text(json.dumps({"jobs": jobs}))
    return path


@pytest.fixture
def manifest(tmp_path):
    return _manifest(tmp_path, JOBS)


def _results(folder: Path) -> list[dict]:
    """summary.csv's rows, each with its schedule file's contents."""
    import csv

    with open(folder / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    return [{**row, "file": json.loads((folder / row["schedule"]).read_text())} for row in rows]


def _check_optimal(rows: list[dict], jobs: list[dict]) -> None:
    assert int(rows[2]["steps"]) == 6  # the target job
    for job, row in zip(jobs, rows, strict=True):
        entropy, steps = CURVES[job["profile"]], int(row["steps"])
        tokens = row["file"]["tokens_per_step"]
        assert float(row["expected_kl"]) == pytest.approx(
            kl_from_curve(entropy, tokens), rel=1e-9, abs=1e-12)
        assert float(row["expected_kl"]) == pytest.approx(
            brute_force_optimum(entropy, steps), rel=1e-9, abs=1e-12)


# --------------------------------------------------------------------------- batch
def test_two_processes_write_what_one_process_writes(manifest, tmp_path, spawn):
    def change(i, argv):  # process 1 is told another folder: it must not write at all
        return [str(tmp_path / "elsewhere") if a == str(tmp_path / "two") and i == 1 else a
                for a in argv]

    (code0, out0, _), (_, out1, _) = _run(
        spawn,
        ["batch", str(manifest), "--out", str(tmp_path / "two")], change=change)
    assert not (tmp_path / "elsewhere").exists()
    # Process 0 alone reports and writes; Gloo's connection notes stay off stdout.
    assert out0.strip() == f"5 computed, 0 skipped -> {tmp_path / 'two' / 'summary.csv'}"
    assert out1 == ""
    assert main(["--quiet", "batch", str(manifest), "--out", str(tmp_path / "one")]) == 0
    two, one = _results(tmp_path / "two"), _results(tmp_path / "one")
    assert [r["job"] for r in two] == [str(i) for i in range(len(JOBS))]  # one row per job
    for a, b in zip(two, one, strict=True):
        assert a["file"]["tokens_per_step"] == b["file"]["tokens_per_step"]
        assert float(a["expected_kl"]) == pytest.approx(float(b["expected_kl"]), rel=1e-12,
                                                        abs=1e-12)
    _check_optimal(two, JOBS)


def test_a_rerun_after_a_killed_process_resumes_and_completes(tmp_path, spawn):
    manifest, out = _manifest(tmp_path, TWO_GROUPS), tmp_path / "out"
    procs = _start(spawn, ["batch", str(manifest), "--out", str(out)])
    deadline = time.monotonic() + TIMEOUT
    while not list(out.glob("*.json")) and procs[0].poll() is None:
        assert time.monotonic() < deadline, "process 0 wrote nothing"
        time.sleep(0.02)
    procs[1].send_signal(signal.SIGKILL)
    (code0, _, err0), (code1, _, _) = _finish(procs)
    assert code1 == -signal.SIGKILL
    written = {p.name for p in out.glob("*.json")}
    if not (out / "summary.csv").exists():  # killed mid-run (the usual case)
        # Process 0 stops at once (not after JAX's 100 s heartbeat), with one line: from the
        # peer watch ("process 1 of 2 stopped before the end") or from the collective that
        # lost its peer ("process 0 of 2: ... Gloo AllGather failed: Connection closed").
        assert code0 == 2 and "Traceback" not in err0
        last = err0.strip().splitlines()[-1]
        assert last.startswith("schedopt batch: error: process ") and "rerun" in last
        assert 0 < len(written) < len(TWO_GROUPS)
    else:  # process 0 had finished before the kill landed
        assert code0 == 0
    (_, out0, _), _ = _run(spawn, ["batch", str(manifest), "--out", str(out)])
    # Every file written before the kill is complete (atomic writes) and kept.
    computed = len(TWO_GROUPS) - len(written)
    assert f"{computed} computed, {len(written)} skipped" in out0
    rows = _results(out)
    assert [r["job"] for r in rows] == [str(i) for i in range(len(TWO_GROUPS))]
    assert sorted(r["status"] for r in rows) == sorted(
        ["skipped"] * len(written) + ["computed"] * computed)
    _check_optimal(rows, TWO_GROUPS)


def test_processes_with_different_inputs_stop_together(manifest, tmp_path, spawn):
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"jobs": JOBS[:2]}))

    def change(i, argv):  # process 1 reads another manifest
        return [str(other) if a == str(manifest) and i == 1 else a for a in argv]

    procs = _start(spawn, ["batch", str(manifest), "--out", str(tmp_path / "out")], change=change)
    for code, _, err in _finish(procs):
        assert code == 2 and "Traceback" not in err
        assert err.strip().splitlines()[-1].endswith(
            "the manifest and its profiles differ between process 0 and process(es) [1]; "
            "give every process the same files and arguments")
    assert not (tmp_path / "out").exists()


def test_a_multi_process_run_whose_output_is_being_written_stops_at_once(manifest, tmp_path,
                                                                         spawn):
    """Another writer holds --out (its lock): process 0 refuses in one line naming it, process 1
    stops with it, and nothing is written."""
    from schedopt._internal import io as _io

    out = tmp_path / "out"
    held = _io.OutputLock.acquire(out)  # this test process is the other writer
    try:
        procs = _start(spawn, ["batch", str(manifest), "--out", str(out)])
        results = _finish(procs)
    finally:
        held.release()
    for code, _, err in results:  # no abort from JAX's runtime on process 1
        assert code == 2 and "Traceback" not in err and "Check failure" not in err, err[-2000:]
    # Gloo's C++ note on connecting may come before or after the error line
    last0, last1 = ([line for line in err.splitlines() if line.startswith("schedopt")][-1]
                    for _, _, err in results)
    assert last0.startswith("schedopt batch: error: process 0 of 2: another schedopt process "
                            f"(pid {os.getpid()}) is writing {str(out)!r}")
    assert last1 == ("schedopt batch: error: process 0 of 2 stopped on an error (see its own "
                     "output); rerun the command on every process")
    assert not out.exists()


# --------------------------------------------------------------------------- model curve
def test_two_processes_estimate_the_digits_model_curve_as_one_does(tmp_path, spawn):
    argv = ["profile", "--model", "digits", "--sequences", "6", "--seed", "3"]
    (_, out0, _), (_, out1, _) = _run(spawn, [*argv, "--out", str(tmp_path / "two.json")])
    assert json.loads(out0)["out"] == str(tmp_path / "two.json") and out1 == ""
    assert main(["--quiet", *argv, "--out", str(tmp_path / "one.json")]) == 0
    two = json.loads((tmp_path / "two.json").read_text())
    one = json.loads((tmp_path / "one.json").read_text())
    assert two["meta"]["forward_passes"] == one["meta"]["forward_passes"] == 6 * 64
    # The model computes in float32, whose rounding may depend on the rows per device (1
    # device here, 4 there): compare to 1e-6 (measured: identical). A row scored for the
    # wrong sequence or revealed count moves these by 1e-3 or more; the per-sequence
    # spreads (the stderrs) catch rows swapped between sequences.
    for key in ("raw_conditional_entropy", "joint_entropy_stderr", "calibration_gap"):
        np.testing.assert_allclose(two["meta"][key], one["meta"][key], rtol=1e-6)
    for key in ("entropy", "stderr"):
        np.testing.assert_allclose(two[key], one[key], rtol=1e-6, atol=1e-9)


# --------------------------------------------------------------------------- start-up
@pytest.mark.parametrize("process_id, message", [
    (1, "cannot reach the coordinator at 127.0.0.1:{port} within 2 s"),
    (0, "not all 2 processes joined within 2 s"),
])
def test_a_missing_coordinator_or_peer_fails_in_bounded_time(tmp_path, process_id, message):
    port = _free_port()  # nothing listens there
    env = {**os.environ, "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "schedopt", "--quiet", "profile", "--model", "digits",
         "--out", str(tmp_path / "p.json"), "--coordinator", f"127.0.0.1:{port}",
         "--num-processes", "2", "--process-id", str(process_id), "--init-timeout", "2"],
        env=env, capture_output=True, text=True, timeout=TIMEOUT,
    )
    assert run.returncode == 2 and time.monotonic() - start < 60
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "schedopt profile: error: " + message.format(port=port))
    assert not (tmp_path / "p.json").exists()


@pytest.mark.parametrize("kwargs, match", [
    ({"coordinator": "localhost"}, "coordinator must be HOST:PORT"),
    ({"coordinator": "localhost:http"}, "coordinator must be HOST:PORT"),
    ({"num_processes": 0}, "num_processes must be a whole number >= 1, got 0"),
    ({"num_processes": 2, "process_id": 2}, "process_id must be below num_processes = 2"),
    ({"process_id": -1}, "process_id must be a whole number >= 0"),
    ({"timeout": 0}, "timeout must be a positive number of seconds"),
])
def test_bad_arguments_are_refused_before_starting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.initialize(**kwargs)
