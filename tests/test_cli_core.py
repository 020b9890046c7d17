"""`schedopt optimize`, `evaluate`, `compare`: results, exit codes, atomic outputs."""

import json

import numpy as np
import pytest
from helpers import brute_force_optimum, kl_from_curve, markov_entropy_curve

from schedopt import EntropyProfile
from schedopt.cli import main

ENTROPY = markov_entropy_curve(0.8 * np.eye(4) + 0.05, 128)


@pytest.fixture
def profile_path(tmp_path):
    EntropyProfile.from_entropy(ENTROPY).save(tmp_path / "p.json")
    return tmp_path / "p.json"


@pytest.mark.parametrize("method", ["optax", "exact"])
def test_optimize_then_evaluate(profile_path, tmp_path, capsys, method):
    out = tmp_path / "s.json"
    assert main(["optimize", "--profile", str(profile_path), "--steps", "8",
                 "--method", method, "--out", str(out)]) == 0
    schedule = json.loads(out.read_text())
    assert schedule["format"] == "schedopt.schedule" and schedule["steps"] == 8
    assert schedule["tokens_per_step"] == [8, 9, 11, 13, 16, 19, 23, 29]  # theory §10
    capsys.readouterr()
    assert main(["evaluate", "--profile", str(profile_path), "--schedule", str(out),
                 "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["expected_kl"] == pytest.approx(
        kl_from_curve(ENTROPY, schedule["tokens_per_step"]), rel=1e-12
    )


def test_compare_table_and_target(profile_path, capsys):
    assert main(["compare", "--profile", str(profile_path), "--steps", "8",
                 "--target-kl", "5", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {r["method"]: r for r in result["schedules"]}
    assert rows["optimal"]["expected_kl"] == pytest.approx(7.176410, abs=1e-6)
    assert rows["uniform"]["expected_kl"] == pytest.approx(8.867725, abs=1e-6)
    assert rows["cosine"]["expected_kl"] == pytest.approx(7.857830, abs=1e-6)
    fewest = result["fewest_steps"]
    # Independent check: the first uniform budget reaching 5 nats, by a plain loop.
    def uniform(n, t):
        return [n // t + (k < n % t) for k in range(t)]
    want = next(t for t in range(1, 129) if kl_from_curve(ENTROPY, uniform(128, t)) <= 5)
    assert fewest["uniform"] == want
    assert fewest["optimal"] <= fewest["cosine"] <= fewest["uniform"]
    assert fewest["optimized"] == fewest["optimal"]
    # The text table prints the same numbers (theory §10's 8-step values, 6 digits).
    assert main(["compare", "--profile", str(profile_path), "--steps", "8"]) == 0
    rows = {line.split("  ")[0]: line.split() for line in capsys.readouterr().out.splitlines()}
    assert rows["uniform (LLaDA stock)"][4] == "8.86772"
    assert rows["exact optimum (DP)"][4] == "7.17641"
    assert {"EDS", "pyramid"} <= set(rows)


@pytest.mark.parametrize(
    "extra, why",
    [(["--block-length", "32"], "--block-length"),
     (["--sampler", "binomial"], "--sampler binomial")],
)
@pytest.mark.parametrize("method", ["optax", "exact"])
def test_method_is_refused_where_it_cannot_apply(profile_path, tmp_path, capsys, extra, why,
                                                 method):
    # Before, --method optax --block-length 32 wrote an exact-blocks schedule silently.
    out = tmp_path / "s.json"
    code = main(["optimize", "--profile", str(profile_path), "--steps", "8", "--method", method,
                 *extra, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and f"--method does not apply to {why}" in err and "drop --method" in err
    assert len(err.strip().splitlines()) == 1 and not out.exists()
    assert main(["optimize", "--profile", str(profile_path), "--steps", "8", *extra,
                 "--out", str(out)]) == 0  # without --method it runs


@pytest.mark.parametrize(
    "args, message",
    [
        (["--steps", "0"], "steps must be between 1 and n = 128"),
        (["--steps", "129"], "steps must be between 1 and n = 128"),
        (["--steps", "2.5"], "expected a whole number"),
    ],
)
def test_bad_steps(profile_path, tmp_path, capsys, args, message):
    out = tmp_path / "s.json"
    argv = ["optimize", "--profile", str(profile_path), "--out", str(out), *args]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own usage errors
        code = e.code
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert not out.exists()


@pytest.mark.parametrize(
    "content, message",
    [
        ("{broken", "not valid JSON"),
        (json.dumps({"format": "schedopt.profile", "version": 7}), "version 7"),
        (json.dumps({"format": "schedopt.profile", "version": 1, "n": 2, "revealed": [0, 1, 2],
                     "entropy": [0, 1, 2.5]}), "not concave"),
    ],
)
def test_bad_profiles_exit_2_with_one_line(tmp_path, capsys, content, message):
    bad = tmp_path / "p.json"
    bad.write_text(content)
    out = tmp_path / "s.json"
    code = main(["optimize", "--profile", str(bad), "--steps", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()


def test_regularize_flag_rescues_a_noisy_profile(tmp_path):
    # g = 1.0, 0.6, 0.7, 0.3, 0.35, 0.1 rises twice; unweighted PAV pools each rising pair
    # into its mean (worked by hand), giving a non-increasing curve to optimize on.
    g_noisy = [1.0, 0.6, 0.7, 0.3, 0.35, 0.1]
    g_pooled = [1.0, 0.65, 0.65, 0.325, 0.325, 0.1]
    entropy = np.concatenate([[0.0], np.cumsum(g_noisy)])
    bad = tmp_path / "p.json"
    bad.write_text(json.dumps({"format": "schedopt.profile", "version": 1, "n": 6,
                               "revealed": list(range(7)), "entropy": entropy.tolist()}))
    out = tmp_path / "s.json"
    assert main(["optimize", "--profile", str(bad), "--steps", "3", "--out", str(out)]) == 2
    assert not out.exists()
    assert main(["optimize", "--profile", str(bad), "--regularize", "--steps", "3",
                 "--out", str(out)]) == 0
    schedule = json.loads(out.read_text())
    pooled = np.concatenate([[0.0], np.cumsum(g_pooled)])
    best = brute_force_optimum(pooled, 3)
    assert best > 0.1  # the pooled curve still has a real optimum to find
    assert kl_from_curve(pooled, schedule["tokens_per_step"]) == pytest.approx(best, abs=1e-12)
    assert schedule["expected_kl"] == pytest.approx(best, abs=1e-9)


def test_missing_inputs_and_output_directories(profile_path, tmp_path, capsys):
    code = main(["optimize", "--profile", str(tmp_path / "absent.json"), "--steps", "2",
                 "--out", str(tmp_path / "s.json")])
    assert code == 2 and "does not exist" in capsys.readouterr().err
    code = main(["optimize", "--profile", str(profile_path), "--steps", "2",
                 "--out", str(tmp_path / "missing" / "s.json")])
    assert code == 2 and "directory" in capsys.readouterr().err


def test_schedule_of_another_length_is_refused(profile_path, tmp_path, capsys):
    s = tmp_path / "s.json"
    s.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": 10, "steps": 2,
                             "tokens_per_step": [5, 5]}))
    code = main(["evaluate", "--profile", str(profile_path), "--schedule", str(s)])
    assert code == 2 and "n = 10 tokens but the profile has n = 128" in capsys.readouterr().err
    s.write_text(json.dumps({"format": "schedopt.schedule", "version": 1, "n": 128, "steps": 2,
                             "tokens_per_step": [5, 5]}))
    code = main(["evaluate", "--profile", str(profile_path), "--schedule", str(s)])
    assert code == 2 and "sums to 10" in capsys.readouterr().err


def test_failed_write_leaves_the_old_file(profile_path, tmp_path, monkeypatch):
    out = tmp_path / "s.json"
    out.write_text("old")
    import schedopt._internal.io as io

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)  # fail after the data is written
    code = main(["optimize", "--profile", str(profile_path), "--steps", "3", "--out", str(out)])
    assert code == 2 and out.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".s.json")] == []
