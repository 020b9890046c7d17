"""Two writers of one output, and `--resume` under changed options: one clear line each.

The first writer is a real `schedopt` process, started as a user starts it (`processes.cli_argv`),
that holds the lock on its output (`.NAME.lock`, `schedopt._internal.io.OutputLock`) while it
works; the second runs in-process. A checkpoint written under one set of options is resumed
under another.
"""

from __future__ import annotations

import contextlib
import io
import json
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from processes import cli_argv

from schedopt.cli import main
from schedopt.distributions import MarkovChain


def run(argv):
    """(exit code, stdout, stderr) of the CLI run in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        assert proc.poll() is None, proc.communicate()[1].decode()
        assert time.monotonic() < deadline, f"{path.name} did not appear within {timeout} s"
        time.sleep(0.01)


def test_a_second_writer_of_the_same_output_is_refused(tmp_path, spawn):
    """`profile --model digits` runs about 30 s, holding its --out; a second command given the
    same --out stops at once, names the first one's process id, and writes nothing."""
    out = tmp_path / "p.json"
    lock = tmp_path / ".p.json.lock"
    first = spawn(cli_argv(["--quiet", "profile", "--model", "digits", "--out", out]),
                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(lock, first)
    assert lock.read_text().strip() == str(first.pid)

    MarkovChain(0.8 * np.eye(3) + 0.2 / 3, 8).profile().save(tmp_path / "chain.json")
    code, stdout, err = run(["--quiet", "optimize", "--profile", tmp_path / "chain.json",
                             "--steps", 3, "--method", "exact", "--out", out])
    assert code == 2 and stdout == ""
    assert err == (f"schedopt optimize: error: another schedopt process (pid {first.pid}) is "
                   f"writing {str(out)!r}; wait for it to finish, or give another --out\n")
    assert not out.exists() and lock.exists()  # the first still holds it

    first.send_signal(signal.SIGTERM)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.json"]  # lock gone, no output

    # With the first writer gone, the output is free again; the lock goes when it is done.
    code, _, err = run(["--quiet", "optimize", "--profile", tmp_path / "chain.json", "--steps", 3,
                        "--method", "exact", "--out", out])
    assert code == 0, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chain.json", "p.json"]


def test_the_lock_is_gone_after_a_refused_command(tmp_path):
    """A command that fails on its input still releases the output it claimed."""
    (tmp_path / "bad.json").write_text("{")
    code, _, err = run(["--quiet", "optimize", "--profile", tmp_path / "bad.json", "--steps", 2,
                        "--out", tmp_path / "o.json"])
    assert code == 2 and "not valid JSON" in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.json"]


# --------------------------------------------------------------------------- --resume
TRANSITION = np.asarray([[0.8, 0.1, 0.1], [0.2, 0.6, 0.2], [0.25, 0.25, 0.5]])


@pytest.fixture
def hf_run(tmp_path):
    """(argv of `profile --hf-model` on a tiny Markov model, its --out)."""
    pytest.importorskip("transformers")
    import tiny_hf

    model = tiny_hf.save_markov_model(tmp_path / "model", TRANSITION)
    chains = tiny_hf.sample_chain(TRANSITION, [6] * 8, seed=1)
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps({"prompt_ids": c[:1].tolist(),
                                        "answer_ids": c[1:].tolist()}) + "\n" for c in chains))
    out = tmp_path / "p.json"
    argv = ["--quiet", "profile", "--hf-model", model, "--trust-remote-code", "--mask-id", "3",
            "--data", data, "--batch-size", "4", "--out", out]
    return argv, out


def _checkpoint(out: Path, **options) -> None:
    """The checkpoint files an interrupted run with these options leaves (batches: none)."""
    np.savez(f"{out}.partial.npz", fingerprint=np.zeros(1))
    Path(f"{out}.partial.json").write_text(json.dumps(options))


@pytest.mark.parametrize("changed, saved", [
    ("mask_id", {"mask_id": 2}),
    ("block_length, kind", {"kind": "model", "block_length": 3}),
])
def test_resume_with_changed_options_is_refused_naming_them(hf_run, changed, saved):
    argv, out = hf_run
    model = argv[argv.index("--hf-model") + 1]
    options = {"hf_model": str(model), "kind": "data", "dtype": None, "block_length": None,
               "trust_remote_code": True, "mask_id": 3}
    _checkpoint(out, **{**options, **saved})
    code, stdout, err = run([*argv, "--resume"])
    assert code == 2 and stdout == ""
    assert err == (f"schedopt profile: error: {str(out) + '.partial.npz'!r} was written for other "
                   f"options (changed: {changed}); drop --resume to start afresh\n")
    assert not out.exists() and Path(f"{out}.partial.npz").exists()  # the checkpoint is kept
    assert not list(out.parent.glob(".*"))  # no lock or temporary file left


def test_resume_with_the_same_options_runs(hf_run):
    argv, out = hf_run
    assert run(argv)[0] == 0
    whole = json.loads(out.read_text())["entropy"]
    out.unlink()
    code, _, err = run([*argv, "--resume"])  # no checkpoint left: it starts afresh
    assert code == 0, err
    assert json.loads(out.read_text())["entropy"] == whole


def test_resume_after_the_data_changed_is_refused(hf_run, spawn):
    """Interrupted as a user would (SIGTERM once the estimate runs), then resumed on a data
    file that has changed since: refused, and the checkpoint is kept."""
    argv, out = hf_run
    data = Path(argv[argv.index("--data") + 1])
    data.write_text(data.read_text() * 200)  # enough batches to be interrupted mid-way
    proc = spawn(cli_argv(argv), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(Path(f"{out}.partial.json"), proc)  # written just before the first batch
    time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    if proc.returncode == 0 or out.exists():  # (a signal at exit, after the output, is -15)
        pytest.skip("the estimate finished before it could be interrupted")
    assert proc.returncode == 128 + signal.SIGTERM, stderr.decode()
    assert Path(f"{out}.partial.npz").exists()

    lines = data.read_text().splitlines()
    data.write_text("\n".join(lines[1:] + lines[:1]) + "\n")  # the same pairs, reordered
    code, stdout, err = run([*argv, "--resume"])
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and "other arguments" in err and "model data" in err, err
    assert not out.exists() and Path(f"{out}.partial.npz").exists()
