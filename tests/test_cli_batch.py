"""`schedopt batch` (manifest, outputs, summary, resuming, errors) and `schedopt frontier`."""

import csv
import json
import math

import numpy as np
import pytest
from helpers import brute_force_optimum, compositions, kl_from_curve, markov_entropy_curve

from schedopt import EntropyProfile
from schedopt.cli import main

CHAIN = markov_entropy_curve(np.asarray([[0.9, 0.1], [0.2, 0.8]]), 12)
CURVE = np.concatenate([[0.0], np.cumsum(1.0 / (1.0 + np.arange(12)) ** 1.5)])
# A target between the chain's 5- and 6-step optima: its job must get T = 6.
TARGET = 0.5 * (brute_force_optimum(CHAIN, 5) + brute_force_optimum(CHAIN, 6))
JOBS = [
    {"profile": "profiles/chain.json", "steps": 5},
    {"profile": "profiles/curve.json", "steps": 7},
    {"profile": "profiles/chain.json", "target_kl": TARGET},
    {"profile": "profiles/curve.json", "steps": 12},
]


@pytest.fixture
def manifest(tmp_path):
    (tmp_path / "profiles").mkdir()
    EntropyProfile.from_entropy(CHAIN).save(tmp_path / "profiles" / "chain.json")
    EntropyProfile.from_entropy(CURVE).save(tmp_path / "profiles" / "curve.json")
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"jobs": JOBS}))
    return path


def _summary(folder):
    with open(folder / "summary.csv") as f:
        return list(csv.DictReader(f))


def test_batch_writes_optimal_schedules_and_a_summary(manifest, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--quiet", "batch", str(manifest), "--out", str(out)]) == 0
    assert "4 computed, 0 skipped" in capsys.readouterr().out
    rows = _summary(out)
    assert {"profile", "steps", "expected_kl"} <= set(rows[0])
    assert [r["profile"] for r in rows] == [job["profile"] for job in JOBS]
    curves = {"profiles/chain.json": CHAIN, "profiles/curve.json": CURVE}
    for job, row in zip(JOBS, rows, strict=True):
        entropy = curves[job["profile"]]
        steps = job.get("steps") or next(  # the fewest steps whose optimum reaches the target
            t for t in range(1, 13) if brute_force_optimum(entropy, t) <= job["target_kl"]
        )
        schedule = json.loads((out / row["schedule"]).read_text())
        assert schedule["format"] == "schedopt.schedule" and schedule["steps"] == steps
        assert int(row["steps"]) == steps
        kl = kl_from_curve(entropy, schedule["tokens_per_step"])
        assert float(row["expected_kl"]) == pytest.approx(kl, rel=1e-9, abs=1e-12)
        assert kl == pytest.approx(brute_force_optimum(entropy, steps), rel=1e-9, abs=1e-12)
    assert int(rows[2]["steps"]) == 6 and float(rows[2]["expected_kl"]) <= TARGET


def test_batch_resumes_by_skipping_finished_jobs(manifest, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--quiet", "batch", str(manifest), "--out", str(out)]) == 0
    first = _summary(out)
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}
    capsys.readouterr()
    assert main(["--quiet", "batch", str(manifest), "--out", str(out)]) == 0
    assert "0 computed, 4 skipped" in capsys.readouterr().out
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == stamps
    again = _summary(out)
    assert [r["status"] for r in again] == ["skipped"] * 4
    assert [r["expected_kl"] for r in again] == [r["expected_kl"] for r in first]
    (out / first[1]["schedule"]).unlink()  # as if the run had stopped before job 1
    assert main(["--quiet", "batch", str(manifest), "--out", str(out)]) == 0
    assert "1 computed, 3 skipped" in capsys.readouterr().out
    assert [r["status"] for r in _summary(out)] == ["skipped", "computed", "skipped", "skipped"]


def test_a_rerun_after_a_profile_changed_recomputes_its_jobs(manifest, tmp_path, capsys):
    """Finished files are skipped only for the profile they were computed from: a changed
    curve (the file's digest differs) recomputes its jobs, against the brute-force optimum."""
    out = tmp_path / "out"
    assert main(["--quiet", "batch", str(manifest), "--out", str(out)]) == 0
    other = np.concatenate([[0.0], np.cumsum(1.0 / (1.0 + np.arange(12)) ** 0.6)])
    EntropyProfile.from_entropy(other).save(tmp_path / "profiles" / "curve.json")
    capsys.readouterr()
    assert main(["--quiet", "batch", str(manifest), "--out", str(out)]) == 0
    assert "2 computed, 2 skipped" in capsys.readouterr().out
    rows = _summary(out)
    assert [r["status"] for r in rows] == ["skipped", "computed", "skipped", "computed"]
    for job, row in zip(JOBS, rows, strict=True):
        entropy = other if "curve" in job["profile"] else CHAIN
        assert float(row["expected_kl"]) == pytest.approx(
            brute_force_optimum(entropy, int(row["steps"])), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "jobs, message",
    [
        ("not a list", 'non-empty "jobs" list'),
        ([{"profile": "profiles/chain.json", "steps": 4}, "p.json"],
         "manifest entry 1 (jobs[1]) is"),
        ([{"steps": 4}], 'manifest entry 0 (jobs[0]) needs "profile"'),
        ([{"profile": "profiles/chain.json", "steps": 4, "target_kl": 1.0}], "exactly one of"),
        ([{"profile": "profiles/chain.json"}], "exactly one of"),
        ([{"profile": "profiles/chain.json", "steps": 0}], "has steps 0"),
        ([{"profile": "profiles/chain.json", "steps": 2.5}], "has steps 2.5"),
        ([{"profile": "profiles/chain.json", "target_kl": -1}], "has target_kl -1"),
        ([{"profile": "profiles/chain.json", "stpes": 4}], "unknown key(s) ['stpes']"),
        ([{"profile": "profiles/chain.json", "steps": 4},
          {"profile": "profiles/absent.json", "steps": 4}], "manifest entry 1 (jobs[1]): profile"),
        ([{"profile": "profiles/chain.json", "steps": 13}], "has steps 13 but its profile has n"),
        ([{"profile": "profiles/chain.json", "steps": 4},
          {"profile": "profiles/chain.json", "steps": 4}], "entries 0 and 1 would both write"),
    ],
)
def test_bad_manifests_name_the_entry(manifest, tmp_path, capsys, jobs, message):
    manifest.write_text(json.dumps({"jobs": jobs}))
    out = tmp_path / "out"
    assert main(["batch", str(manifest), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (out / "summary.csv").exists()


# --------------------------------------------------------------------------- frontier
def _uniform(n, t):  # LLaDA's rule, written out
    return [n // t + (k < n % t) for k in range(t)]


def _cosine(n, t):  # MaskGIT's rule (theory §5), written out
    masked = [n]
    for k in range(1, t + 1):
        m = math.floor(n * math.cos(math.pi / 2 * k / t))
        masked.append(min(max(m, t - k), masked[-1] - 1))
    return [masked[k] - masked[k + 1] for k in range(t)]


def test_frontier_json_against_enumeration(tmp_path, capsys):
    entropy = CHAIN[:11]  # n = 10
    EntropyProfile.from_entropy(entropy).save(tmp_path / "p.json")
    target = 0.3
    assert main(["frontier", "--profile", str(tmp_path / "p.json"), "--max-steps", "10",
                 "--target-kl", str(target), "--out", str(tmp_path / "f.json")]) == 0
    assert "fewest steps" in capsys.readouterr().out
    result = json.loads((tmp_path / "f.json").read_text())
    assert result["steps"] == list(range(1, 11))
    every = list(compositions(10))
    for t in range(1, 11):
        best = min(kl_from_curve(entropy, s) for s in every if len(s) == t)
        assert result["optimal_kl"][t - 1] == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert result["uniform_kl"][t - 1] == pytest.approx(
            kl_from_curve(entropy, _uniform(10, t)), rel=1e-9, abs=1e-12)
        assert result["cosine_kl"][t - 1] == pytest.approx(
            kl_from_curve(entropy, _cosine(10, t)), rel=1e-9, abs=1e-12)
        assert result["tc_steps"][t - 1] <= t and result["dtc_steps"][t - 1] <= t
        assert result["tc_kl"][t - 1] >= best - 1e-12 and result["dtc_kl"][t - 1] >= best - 1e-12
    fewest = result["fewest_steps"]
    for method, rule in (("uniform", _uniform), ("cosine", _cosine)):
        assert fewest[method] == next(
            t for t in range(1, 11) if kl_from_curve(entropy, rule(10, t)) <= target)
    assert fewest["optimal"] == next(
        t for t in range(1, 11) if result["optimal_kl"][t - 1] <= target)
    assert fewest["optimal"] <= min(fewest.values())


def test_frontier_csv_and_bad_output(tmp_path, capsys):
    EntropyProfile.from_entropy(CHAIN[:11]).save(tmp_path / "p.json")
    args = ["frontier", "--profile", str(tmp_path / "p.json"), "--max-steps", "10", "--out"]
    assert main([*args, str(tmp_path / "f.csv")]) == 0
    lines = (tmp_path / "f.csv").read_text().splitlines()
    assert lines[0].startswith("# schedopt.frontier n=10 max_steps=10")
    table = list(csv.DictReader(lines[1:]))
    assert [int(r["steps"]) for r in table] == list(range(1, 11))
    assert float(table[-1]["optimal_kl"]) == 0.0  # one token per step
    capsys.readouterr()
    assert main([*args, str(tmp_path / "f.txt")]) == 2
    assert "name it .json or .csv" in capsys.readouterr().err
