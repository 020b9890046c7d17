"""Export formats: each file, read by the target sampler's own rounding rule, gives the schedule.

The sampler rules are written out here from their documented formulas (LLaDA's
get_num_transfer_tokens, MaskGIT's decode / diffusers aMUSEd, dllm's deterministic transfer
counts, MD4's MaskingSchedule, MDLM/SEDD's log-linear noise), in float32 where those samplers
compute in float32, never with schedopt's own helpers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

import schedopt
from schedopt import export
from schedopt.cli import main
from schedopt.schedule import TimeGrid


# --------------------------------------------------------------------------- sampler rules
def llada_uniform_counts(masked: int, steps: int) -> list[int]:
    """LLaDA get_num_transfer_tokens: masked // steps each, the remainder to the first steps."""
    base, remainder = divmod(masked, steps)
    return [base + (1 if i < remainder else 0) for i in range(steps)]


def maskgit_counts(ratio, n: int, dtype) -> list[int]:
    """MaskGIT decode / aMUSEd step: keep max(1, min(unknown - 1, floor(n r))) masked; the
    last step samples every position."""
    unknown, counts = n, []
    for k, r in enumerate(ratio):
        if k == len(ratio) - 1:
            counts.append(unknown)
            break
        mask_len = int(np.floor(dtype(n) * dtype(r)))
        mask_len = max(1, min(unknown - 1, mask_len))
        counts.append(unknown - mask_len)
        unknown = mask_len
    return counts


def dllm_counts(alpha, n: int) -> list[int]:
    """dllm deterministic transfer counts: round(masked * (1 - (1 - a_s) / (1 - a_t))) with
    alpha in float32 (its BaseAlphaScheduler), the product in float64."""
    a = np.asarray(alpha, dtype=np.float32)
    masked, counts = n, []
    for j in range(len(a) - 1):
        keep = np.float64((np.float32(1) - a[j + 1]) / (np.float32(1) - a[j]))
        c = min(int(np.round(masked * (1.0 - keep))), masked)
        counts.append(c)
        masked -= c
    return counts


def md4_alpha(t, family: str, eps: float, dtype=np.float32):
    """MD4 MaskingSchedule.alpha: (1 - 2 eps) a(t) + eps; a(t) = 1 - t, 1 - cos(pi/2 (1 - t)),
    or 1 - t^k."""
    t = np.asarray(t, dtype=dtype)
    if family == "linear":
        a = 1 - t
    elif family == "cosine":
        a = 1 - np.cos(dtype(np.pi / 2) * (1 - t))
    else:
        a = 1 - t ** dtype(float(family[4:]))
    return (1 - 2 * dtype(eps)) * a + dtype(eps)


def loglinear_alpha(t, family: str, eps: float):
    """MDLM/SEDD log-linear: move chance (1 - eps) t, i.e. 1 - alpha = (1 - eps)(1 - a(t))."""
    a = 1 - md4_alpha(t, family, 0.0, np.float64)  # 1 - a(t) with no offset
    return 1 - (1 - eps) * a


def revealed_from_start(alpha_t, alpha_start):
    """Started fully masked where alpha = alpha_start, each step unmasking with probability
    (alpha_s - alpha_t) / (1 - alpha_t): the masked fraction telescopes to
    (1 - alpha_t) / (1 - alpha_start)."""
    return 1 - (1 - np.asarray(alpha_t, np.float64)) / (1 - np.float64(alpha_start))


def counts_from_revealed_fractions(alpha_inner, n: int) -> list[int]:
    """A random-count sampler's expected revealed counts n alpha(t_k), rounded."""
    cumulative = np.concatenate([[0], np.round(n * np.asarray(alpha_inner, np.float64)), [n]])
    return np.diff(cumulative).astype(int).tolist()


# --------------------------------------------------------------------------- schedules
def composition(rng: np.random.Generator, n: int, steps: int) -> list[int]:
    cuts = np.sort(rng.choice(np.arange(1, n), size=steps - 1, replace=False))
    return np.diff(np.concatenate([[0], cuts, [n]])).tolist()


def schedules():
    rng = np.random.default_rng(0)
    out = [[1], [5], [1, 1, 1, 1], [1, 63], [63, 1], [3, 7, 12, 16, 19, 23, 24, 24]]
    for n, steps in [(16, 5), (256, 16), (1000, 37), (4096, 64), (32768, 512), (32768, 3)]:
        out.append(composition(rng, n, steps))
    return out


SCHEDULES = schedules()
IDS = [f"n{sum(s)}-T{len(s)}" for s in SCHEDULES]


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("tokens", SCHEDULES, ids=IDS)
def test_counts_are_the_schedule_and_uniform_is_lladas_rule(tokens):
    data = export.export_schedule(tokens, "counts")
    assert data["counts"] == tokens and data["n"] == sum(tokens)
    n, steps = sum(tokens), len(tokens)
    uniform = export.export_schedule(schedopt.schedule.uniform_tokens(n, steps), "counts")
    assert uniform["counts"] == llada_uniform_counts(n, steps)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("tokens", SCHEDULES, ids=IDS)
def test_maskgit_ratios_reproduce_the_counts_under_floor(tokens, dtype):
    data = export.export_schedule(tokens, "maskgit")
    assert len(data["mask_ratio"]) == len(tokens)
    assert maskgit_counts(data["mask_ratio"], sum(tokens), dtype) == tokens


@pytest.mark.parametrize("tokens", SCHEDULES, ids=IDS)
def test_alpha_reproduces_the_counts_for_dllm_and_in_expectation(tokens):
    n = sum(tokens)
    alpha = export.export_schedule(tokens, "alpha")["alpha"]
    assert alpha[0] == 0.0 and alpha[-1] == 1.0 and len(alpha) == len(tokens) + 1
    assert dllm_counts(alpha, n) == tokens
    assert counts_from_revealed_fractions(alpha[1:-1], n) == tokens


@pytest.mark.parametrize("family", ["linear", "cosine", "poly2", "poly0.5"])
@pytest.mark.parametrize("tokens", SCHEDULES, ids=IDS)
def test_md4_timesteps_reproduce_the_revealed_counts(tokens, family):
    n = sum(tokens)
    eps = 1e-4 if min(tokens[0], tokens[-1]) / n > 1e-4 else 1e-7
    data = export.export_schedule(tokens, "timesteps", alpha_schedule=family, eps=eps)
    t, dt = np.asarray(data["t"]), np.asarray(data["dt"])
    assert t[0] == 1.0 and t[-1] == 0.0 and np.all(dt > 0)
    np.testing.assert_allclose(dt, -np.diff(t), rtol=0, atol=0)
    alpha = md4_alpha(t[1:-1], family, eps)
    revealed = revealed_from_start(alpha, md4_alpha(1.0, family, eps))
    assert counts_from_revealed_fractions(revealed, n) == tokens
    # MD4's get_sampling_grid pairs (s, t) = (t_{i+1}, t_i): every step moves time forward.
    assert np.all(
        md4_alpha(t[1:], family, eps, np.float64) > md4_alpha(t[:-1], family, eps, np.float64)
    )


@pytest.mark.parametrize("family", ["linear", "cosine", "poly3"])
@pytest.mark.parametrize("tokens", SCHEDULES[5:9], ids=IDS[5:9])
def test_loglinear_timesteps_reproduce_the_revealed_counts(tokens, family):
    n, eps = sum(tokens), 1e-5
    data = export.export_schedule(
        tokens, "timesteps", alpha_schedule=family, eps=eps, convention="loglinear"
    )
    alpha = loglinear_alpha(np.asarray(data["t"])[1:-1], family, eps)
    revealed = revealed_from_start(alpha, loglinear_alpha(1.0, family, eps))
    assert counts_from_revealed_fractions(revealed, n) == tokens


@pytest.mark.parametrize("convention", ["md4", "loglinear"])
def test_time_grid_timesteps_give_back_its_alpha(convention):
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(64)))
    grid = TimeGrid.from_alpha(profile, [0.0, 0.1, 0.35, 0.7, 1.0])
    data = export.export_schedule(
        grid, "timesteps", alpha_schedule="cosine", eps=1e-3, convention=convention
    )
    t = np.asarray(data["t"])
    if convention == "md4":
        back = md4_alpha(t[1:-1], "cosine", 1e-3, np.float64)
        back = revealed_from_start(back, md4_alpha(1.0, "cosine", 1e-3, np.float64))
    else:
        back = loglinear_alpha(t[1:-1], "cosine", 1e-3)
        back = revealed_from_start(back, loglinear_alpha(1.0, "cosine", 1e-3))
    np.testing.assert_allclose(back, [0.1, 0.35, 0.7], rtol=0, atol=1e-13)
    assert data["sampler"] == "binomial" and data["expected_kl"] == float(grid.expected_kl)


def test_block_counts_matrix_is_what_llada_runs_per_block():
    """LLaDA decodes block b with num_transfer_tokens = row b; rows are zero-padded on the
    right when blocks get different step counts, and steps_per_block says how many are real."""
    tokens = [2, 2, 4, 3, 5, 8]  # blocks of 8: [2, 2, 4], [3, 5], [8]
    data = export.export_schedule(tokens, "counts", block_length=8)
    assert data["counts"] == [[2, 2, 4], [3, 5, 0], [8, 0, 0]]
    assert data["steps_per_block"] == [3, 2, 1] and data["num_blocks"] == 3
    for row, steps in zip(data["counts"], data["steps_per_block"], strict=True):
        assert sum(row[:steps]) == 8 and all(c > 0 for c in row[:steps])
    # An equal split (LLaDA's steps % num_blocks == 0) is a full matrix.
    equal = export.export_schedule(llada_uniform_counts(8, 2) * 3, "counts", block_length=8)
    assert equal["counts"] == [[4, 4]] * 3


# --------------------------------------------------------------------------- containers
@pytest.mark.parametrize("suffix", [".json", ".csv", ".npz"])
@pytest.mark.parametrize("fmt", ["counts", "maskgit", "alpha", "timesteps"])
def test_containers_read_back_to_the_same_schedule(tmp_path, fmt, suffix):
    tokens = [3, 7, 12, 16, 19, 23, 24, 24]
    data = export.export_schedule(tokens, fmt, alpha_schedule="poly2", eps=1e-3)
    export.write_export(tmp_path / f"s{suffix}", data)
    back = export.read_schedule_file(tmp_path / f"s{suffix}", 128)
    assert back.tokens_per_step.tolist() == tokens and back.steps == len(tokens)
    np.testing.assert_allclose(back.alpha, np.cumsum([0] + tokens) / 128, rtol=0, atol=1e-12)
    assert back.sampler == ("fixed" if fmt in ("counts", "maskgit") else "binomial")


@pytest.mark.parametrize("suffix", [".json", ".csv", ".npz"])
def test_block_matrix_reads_back(tmp_path, suffix):
    data = export.export_schedule([2, 2, 4, 3, 5, 8], "counts", block_length=8)
    export.write_export(tmp_path / f"b{suffix}", data)
    back = export.read_schedule_file(tmp_path / f"b{suffix}", 24)
    assert back.tokens_per_step.tolist() == [2, 2, 4, 3, 5, 8]
    assert back.block_length == 8 and back.steps == 6


def test_user_files_without_metadata_are_read(tmp_path):
    (tmp_path / "c.json").write_text(json.dumps({"counts": [0, 4, 4, 8]}))
    back = export.read_schedule_file(tmp_path / "c.json", 16)
    assert back.tokens_per_step.tolist() == [4, 4, 8] and back.steps == 4  # empty step: no KL
    (tmp_path / "a.csv").write_text("alpha\n0\n0.3\n1\n")
    back = export.read_schedule_file(tmp_path / "a.csv", 10)
    assert back.sampler == "binomial" and back.alpha.tolist() == [0.0, 0.3, 1.0]
    assert back.tokens_per_step.tolist() == [3, 7]


def test_one_reader_for_schedopt_files_and_block_schedules(tmp_path):
    """schedopt.schedule and schedopt.time_grid files come back through the same reader as
    exports; a block schedule keeps its blocks (the per-block counts sliced independently)."""
    blocks = schedopt.block_profiles_from_table(
        schedopt.distributions.MarkovChain([[0.9, 0.1], [0.2, 0.8]], 8), 4)
    best = schedopt.optimize_blocks(blocks, 5)
    best.save(tmp_path / "b.json")
    back = export.read_schedule_file(tmp_path / "b.json")  # n comes from the file
    tokens = [int(t) for t in best.tokens_per_step]
    ends = np.cumsum(tokens)
    split = [sum(1 for e in ends if 4 * b < e <= 4 * (b + 1)) for b in range(2)]
    assert back.kind == "schedule" and back.sampler == "fixed" and back.n == 8
    assert back.block_length == 4 and back.steps_per_block.tolist() == split
    assert back.block_counts(0).tolist() == tokens[: split[0]]
    assert back.block_counts(1).tolist() == tokens[split[0]:]
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(16)))
    schedopt.TimeGrid.from_alpha(profile, [0.0, 0.25, 1.0]).save(tmp_path / "g.json")
    grid = export.read_schedule_file(tmp_path / "g.json", 16)
    assert grid.kind == "time_grid" and grid.sampler == "binomial"
    assert grid.alpha.tolist() == [0.0, 0.25, 1.0] and grid.tokens_per_step.tolist() == [4, 12]
    with pytest.raises(ValueError, match="the counts sum to 8 tokens but n = 9"):
        export.read_schedule_file(tmp_path / "b.json", 9)


def test_a_bad_file_names_its_path_once(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"counts": [3, 4]}))
    with pytest.raises(ValueError) as info:
        export.read_schedule_file(path, 8)
    assert str(info.value).count(str(path)) == 1 and str(info.value).startswith(repr(str(path)))


def test_scores_both_ways_of_running_a_grid(tmp_path):
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(32)))
    export.write_export(tmp_path / "a.json", export.export_schedule([4, 8, 20], "alpha"))
    scores = export.score_imported(profile, export.read_schedule_file(tmp_path / "a.json", 32))
    assert scores["expected_kl"] == pytest.approx(
        float(schedopt.objective.expected_kl_binomial(profile, [0, 4 / 32, 12 / 32, 1]))
    )
    assert scores["expected_kl_fixed"] == pytest.approx(
        float(schedopt.expected_kl(profile, [4, 8, 20]))
    )


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"schedule": [3, 4], "fmt": "counts", "n": 8}, "sum to 7 tokens but n = 8"),
        ({"schedule": [3, 0, 5], "fmt": "maskgit"}, "step 2 unmasks 0 tokens.*MaskGIT"),
        ({"schedule": [3, 0, 5], "fmt": "alpha"}, "step 2 unmasks 0 tokens"),
        ({"schedule": [3, 0, 5], "fmt": "timesteps"}, "step 2 unmasks 0 tokens"),
        ({"schedule": [4, 4], "fmt": "timesteps", "eps": 0.0}, r"eps must lie in \(0, 0.5\)"),
        ({"schedule": [4, 4], "fmt": "timesteps", "eps": 0.5}, r"eps must lie in \(0, 0.5\)"),
        ({"schedule": [4, 4], "fmt": "timesteps", "eps": -1}, r"eps must lie in \(0, 0.5\)"),
        ({"schedule": [4, 4], "fmt": "counts", "block_length": 3}, "does not divide"),
        ({"schedule": [3, 5], "fmt": "counts", "block_length": 4}, "across the block boundary"),
        ({"schedule": [4, 4], "fmt": "alpha", "block_length": 4}, "counts only"),
        ({"schedule": [4, 4], "fmt": "mdlm"}, "format 'mdlm' is unknown"),
        ({"schedule": [4, 4], "fmt": "timesteps", "alpha_schedule": "poly0"}, "polyK"),
        ({"schedule": [99999, 1], "fmt": "timesteps"}, "pass a smaller eps"),
        ({"schedule": [4, -1, 5], "fmt": "counts"}, ">= 0"),
    ],
)
def test_bad_export_input_is_one_clear_error(kwargs, message):
    schedule, fmt = kwargs.pop("schedule"), kwargs.pop("fmt")
    with pytest.raises(ValueError, match=message):
        export.export_schedule(schedule, fmt, **kwargs)


def test_a_time_grid_has_no_counts():
    profile = schedopt.EntropyProfile.from_conditional_entropy(np.ones(8))
    grid = TimeGrid.from_alpha(profile, [0.0, 0.5, 1.0])
    for fmt in ("counts", "maskgit"):
        with pytest.raises(ValueError, match="random-count time grid has no fixed counts"):
            export.export_schedule(grid, fmt)


@pytest.mark.parametrize(
    "content, n, message",
    [
        ({"counts": [3, 4]}, 8, "sum to 7 tokens but n = 8"),
        ({"counts": [[4, 4], [4, 3]]}, 15, "cannot split n = 15 tokens equally"),
        ({"counts": [[4, 5], [4, 3]]}, 16, "block 0 unmasks 9 tokens"),
        ({"alpha": [0, 0.6, 0.5, 1]}, 8, "strictly increasing"),
        ({"alpha": [0, 1.5, 1]}, 8, r"outside \[0, 1\]"),
        ({"mask_ratio": [0.5, 0.2, 0.1, 0.0]}, 3, "cannot unmask n = 3 tokens"),
        ({"t": [1.0, 0.5, 0.7, 0.0]}, 8, "decrease strictly"),
        ({"t": [1.0, 0.5, 0.0], "eps": 0.7}, 8, r"eps must lie in \(0, 0.5\)"),
        ({"steps": [1, 2]}, 3, "holds no schedule"),
    ],
)
def test_bad_files_are_one_clear_error(tmp_path, content, n, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ValueError, match=message):
        export.read_schedule_file(path, n)


def test_unknown_container_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"name the output .json, .csv or .npz"):
        export.write_export(tmp_path / "s.txt", export.export_schedule([1, 1], "counts"))


# --------------------------------------------------------------------------- command line
def _schedule_file(tmp_path, tokens):
    profile = schedopt.EntropyProfile.from_conditional_entropy(1.0 / (1.0 + np.arange(sum(tokens))))
    schedopt.Schedule.from_tokens(profile, tokens, "exact").save(tmp_path / "s.json")
    return tmp_path / "s.json"


def test_cli_export_writes_every_format(tmp_path, capsys):
    path = _schedule_file(tmp_path, [2, 6, 8])
    for fmt, key in [("counts", "counts"), ("maskgit", "mask_ratio"), ("alpha", "alpha")]:
        out = tmp_path / f"{fmt}.json"
        assert main(["export", "--schedule", str(path), "--format", fmt, "--out", str(out)]) == 0
        assert key in json.loads(out.read_text())
        assert json.loads(capsys.readouterr().out.strip())["kind"] == fmt
    out = tmp_path / "t.npz"
    argv = [
        "export",
        "--schedule",
        str(path),
        "--format",
        "timesteps",
        "--alpha-schedule",
        "cosine",
        "--eps",
        "1e-3",
        "--convention",
        "loglinear",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    with np.load(out) as z:
        assert z["t"].shape == (4,) and z["dt"].shape == (3,)
        info = json.loads(str(z["info"]))
    assert info["convention"] == "loglinear" and info["alpha_schedule"] == "cosine"
    out = tmp_path / "b.csv"
    argv = [
        "export",
        "--schedule",
        str(path),
        "--format",
        "counts",
        "--block-length",
        "8",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    assert "block,steps,step_1,step_2" in out.read_text()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--format", "counts", "--block-length", "5"], "does not divide"),
        (["--format", "timesteps", "--eps", "0.6"], "eps must lie in"),
        (["--format", "timesteps", "--alpha-schedule", "sigmoid"], "alpha schedule 'sigmoid'"),
    ],
)
def test_cli_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, extra, message):
    path = _schedule_file(tmp_path, [2, 6, 8])
    out = tmp_path / "o.json"
    assert main(["export", "--schedule", str(path), *extra, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err
    assert not out.exists()


def test_cli_refuses_an_unknown_extension_before_work(tmp_path, capsys):
    path = _schedule_file(tmp_path, [2, 6, 8])
    code = main(
        ["export", "--schedule", str(path), "--format", "counts", "--out", str(tmp_path / "o.yaml")]
    )
    assert code == 2 and ".json, .csv or .npz" in capsys.readouterr().err


def test_cli_evaluate_scores_exported_and_foreign_files(tmp_path, capsys):
    g = 1.0 / (1.0 + np.arange(32))
    profile = schedopt.EntropyProfile.from_conditional_entropy(g)
    profile.save(tmp_path / "P.json")
    tokens = [2, 6, 8, 16]
    fixed = float(schedopt.expected_kl(profile, tokens))
    random = float(schedopt.objective.expected_kl_binomial(profile, np.cumsum([0] + tokens) / 32))
    # MD4 reaches 1 - eps / (1 - eps) at t = 0 and its decode reveals the rest: one more step.
    md4_grid = np.concatenate([np.cumsum([0] + tokens[:-1]) / 32, [1 - 1e-4 / (1 - 1e-4), 1]])
    md4 = float(schedopt.objective.expected_kl_binomial(profile, md4_grid))
    cases = [
        ("counts", ".csv", fixed, "expected_kl_random", random),
        ("maskgit", ".json", fixed, "expected_kl_random", random),
        ("alpha", ".npz", random, "expected_kl_fixed", fixed),
        ("timesteps", ".json", md4, "expected_kl_fixed", fixed),
    ]
    for fmt, suffix, primary, other_key, other in cases:
        path = tmp_path / f"{fmt}{suffix}"
        export.write_export(path, export.export_schedule(tokens, fmt))
        argv = ["evaluate", "--profile", str(tmp_path / "P.json"), "--schedule", str(path)]
        assert main([*argv, "--json"]) == 0
        scores = json.loads(capsys.readouterr().out)
        assert scores["expected_kl"] == pytest.approx(primary, rel=1e-12)
        assert scores[other_key] == pytest.approx(other, rel=1e-12)
        if fmt == "alpha":
            assert scores["expected_tokens_per_step"] == pytest.approx(tokens, abs=1e-12)
        if fmt == "timesteps":
            assert scores["expected_tokens_per_step"] == pytest.approx(
                [*tokens[:-1], 16 - 32e-4 / (1 - 1e-4), 32e-4 / (1 - 1e-4)], abs=1e-12
            )
            # MD4's decode is one more step: the output says how many the sampler runs.
            assert (scores["steps"], scores["sampler_steps"]) == (len(tokens), len(tokens) + 1)
        assert main(argv) == 0
        assert "expected KL" in capsys.readouterr().out
    (tmp_path / "bad.json").write_text(json.dumps({"counts": [2, 6, 8]}))
    argv = ["evaluate", "--profile", str(tmp_path / "P.json"), "--schedule"]
    assert main([*argv, str(tmp_path / "bad.json")]) == 2
    assert "sum to 16 tokens but n = 32" in capsys.readouterr().err
