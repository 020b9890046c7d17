"""Ctrl-C and SIGTERM end a command at any moment: exit 128 + signal, one line, no traceback,
no partial or replaced output, and a checkpointed estimate saved so that --resume finishes it.

Each child is started as the installed program starts (`processes.cli_argv`), and the signal is
sent at a delay counted from the moment the program holds its signals, which /proc shows: the
kernel's SigCgt mask gains SIGTERM (Python itself does not catch it) at the entry point's first
instruction. A delay of 0 lands in the import of JAX; later ones in compilation and computation.
"""

from __future__ import annotations

import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from processes import cli_argv

from schedopt.cli import main

WORDS = {signal.SIGINT: "interrupted", signal.SIGTERM: "terminated"}

pytestmark = pytest.mark.skipif(not Path("/proc/self/status").exists(),
                                reason="needs Linux's /proc to see when signals are held")


def _wait_until_signals_are_held(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    status = Path(f"/proc/{proc.pid}/status")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the command ended before it held its signals"
        for line in status.read_text().splitlines():
            if line.startswith("SigCgt:") and int(line.split()[1], 16) >> (signal.SIGTERM - 1) & 1:
                return
        time.sleep(0.002)
    pytest.fail(f"the command did not hold SIGTERM within {timeout} s")


@pytest.mark.parametrize("sig, delay", [
    (signal.SIGINT, 0.0), (signal.SIGINT, 0.4), (signal.SIGINT, 1.5), (signal.SIGINT, 4.0),
    (signal.SIGTERM, 0.0), (signal.SIGTERM, 2.0),
])
def test_a_signal_at_any_moment_ends_the_command_in_one_line(tmp_path, spawn, sig, delay):
    """`profile --model digits` runs about 30 s: importing JAX, loading the model, compiling
    and estimating are each interrupted by one of the delays."""
    out = tmp_path / "p.json"
    out.write_text("previous results\n")
    proc = spawn(cli_argv(["--quiet", "profile", "--model", "digits", "--out", out]),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_until_signals_are_held(proc)
    time.sleep(delay)
    assert proc.poll() is None, "the command finished before it could be interrupted"
    proc.send_signal(sig)
    stdout, stderr = proc.communicate(timeout=30)  # promptly: no computation is waited for
    assert proc.returncode == 128 + sig, stderr.decode()
    assert stderr.decode() == f"schedopt: {WORDS[sig]}\n"
    assert stdout == b""
    assert out.read_text() == "previous results\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.json"]


# --------------------------------------------------------------------------- checkpoints
TRANSITION = np.asarray([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.25, 0.25, 0.5]])

# Appended to the Markov model's modeling file: each forward pass adds a byte to a file, so
# the test can interrupt after some batches have finished, as a user would mid-run.
TRACE = '''
import functools as _functools

_untraced = MarkovChainModel.forward


@_functools.wraps(_untraced)
def _traced(self, *args, **kwargs):
    out = _untraced(self, *args, **kwargs)
    with open({calls!r}, "a") as f:
        f.write(".")
    return out


MarkovChainModel.forward = _traced
'''


@pytest.fixture
def traced_model(tmp_path):
    pytest.importorskip("transformers")
    import tiny_hf

    model = tiny_hf.save_markov_model(tmp_path / "model", TRANSITION)
    calls = tmp_path / "calls"
    modeling = model / "modeling_markov.py"
    modeling.write_text(modeling.read_text() + TRACE.format(calls=str(calls)))
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 3, size=48)
    chains = tiny_hf.sample_chain(TRANSITION, lengths + 6, seed=1)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt_ids": c[:k].tolist(), "answer_ids": c[k:].tolist()})
                            + "\n" for c, k in zip(chains, lengths, strict=True)))
    return model, data, calls


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_profile_saves_its_checkpoint_and_resumes_to_the_same_curve(
        traced_model, tmp_path, spawn, sig):
    model, data, calls = traced_model
    args = ["profile", "--hf-model", model, "--trust-remote-code", "--mask-id", "3",
            "--data", data, "--batch-size", "4", "--seed", "3"]
    out = tmp_path / "p.json"
    proc = spawn(cli_argv(["--quiet", *args, "--out", out]),
                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while not (calls.exists() and len(calls.read_text()) >= 6):  # some batches are done
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, "no forward pass within 120 s"
        time.sleep(0.01)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr.decode()
    assert stderr.decode() == f"schedopt: {WORDS[sig]}\n"
    assert not out.exists()
    with np.load(f"{out}.partial.npz") as saved:  # saved at the signal, not 30 s before
        batches = [k for k in saved.files if k != "fingerprint"]
    assert batches, "the checkpoint holds no finished batch"
    interrupted = len(calls.read_text())

    whole = tmp_path / "whole.json"
    assert main(["--quiet", *map(str, args), "--out", str(whole)]) == 0
    fresh = len(calls.read_text()) - interrupted
    assert main(["--quiet", *map(str, args), "--out", str(out), "--resume"]) == 0
    resumed = len(calls.read_text()) - interrupted - fresh
    assert resumed < fresh <= resumed + interrupted  # the saved batches were not redone
    assert json.loads(out.read_text())["entropy"] == json.loads(whole.read_text())["entropy"]
    assert not Path(f"{out}.partial.npz").exists() and not Path(f"{out}.partial.json").exists()
