"""Bad input and faults on the command line: one line and exit 2, or a correct result.

Every case here was once a traceback, a silently wrong result or a misleading message.
The CLI runs in-process (`schedopt.cli.main`) except where a real process is the point
(Ctrl-C, a closed pipe).
"""

import contextlib
import io
import json
import math
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from processes import cli_argv

from schedopt._internal import io as _io
from schedopt.cli import main
from schedopt.curve import EntropyProfile
from schedopt.distributions import MarkovChain

N = 12
CHAIN = MarkovChain(0.8 * np.eye(3) + 0.2 / 3, N)


def run(argv):
    """(exit code, stdout, stderr) of the CLI run in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in argv])
        except SystemExit as e:  # argparse usage errors
            code = e.code
    return code, out.getvalue(), err.getvalue()


def assert_one_line(code, err, match=None):
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert "Traceback" not in err and "unexpected" not in err, err
    if match is not None:
        assert match in lines[0], lines[0]


@pytest.fixture
def files(tmp_path):
    good = CHAIN.profile()
    good.save(tmp_path / "good.json")
    base = json.loads((tmp_path / "good.json").read_text())

    def variant(name, **changes):
        obj = {**base, **changes}
        (tmp_path / name).write_text(json.dumps(obj))
        return tmp_path / name

    from schedopt.schedule import uniform

    uniform(good, 3).save(tmp_path / "s.json")
    return tmp_path, base, variant


# --------------------------------------------------------------------------- tracebacks
def test_profile_fields_of_the_wrong_type_or_size(files):
    tmp, base, variant = files
    n = base["n"]
    cases = {
        "entropy must be a list": variant("a.json", entropy=5),
        "revealed[1] is 1e+20": variant("b.json", revealed=[0, 1e20]),
        f"revealed[{n}] is 1e+30": variant("c.json", revealed=base["revealed"][:-1] + [1e30]),
        "revealed[1] is 1.5": variant("d.json", revealed=[0, 1.5, *base["revealed"][2:]]),
        'entropy[0] is "0.0"': variant("e.json", entropy=[str(h) for h in base["entropy"]]),
        "revealed[1] is true": variant("f.json", revealed=[0, True, *base["revealed"][2:]]),
        "stderr[0] is -0.1": variant("g.json", stderr=[-0.1] * (n + 1)),
        "n must be a whole number of tokens >= 1, got true": variant("h.json", n=True),
        "entropy[1] is nan": variant("i.json", entropy=[0.0] + [math.nan] * n),
        "entropy[2] is inf": variant("j.json", entropy=[0.0, 1.0] + [math.inf] * (n - 1)),
    }
    for match, path in cases.items():
        for extra in ([], ["--regularize"]):  # --regularize must not let NaN through
            code, out, err = run(["evaluate", "--profile", path, "--schedule",
                                  tmp / "s.json", *extra])
            assert_one_line(code, err, match)


def test_deeply_nested_json(tmp_path):
    (tmp_path / "deep.json").write_text("[" * 100000 + "]" * 100000)
    code, _, err = run(["frontier", "--profile", tmp_path / "deep.json", "--max-steps", 2])
    assert_one_line(code, err, "nested too deeply")


def test_corrupt_npz_schedule(files):
    tmp, _, _ = files
    (tmp / "bad.npz").write_bytes(b"PK\x03\x04" + b"garbage" * 20)
    code, _, err = run(["evaluate", "--profile", tmp / "good.json", "--schedule",
                        tmp / "bad.npz"])
    assert_one_line(code, err, "not a readable .npz")


def test_plot_refuses_a_single_token_profile(tmp_path):
    EntropyProfile.from_entropy([0.0, 0.7]).save(tmp_path / "p.json")
    (tmp_path / "s.json").write_text(json.dumps(
        {"format": "schedopt.schedule", "version": 1, "n": 1, "tokens_per_step": [1]}))
    code, _, err = run(["plot", "--profile", tmp_path / "p.json", "--schedule",
                        tmp_path / "s.json", "--out", tmp_path / "x.png"])
    assert_one_line(code, err, "n >= 2")
    assert not (tmp_path / "x.png").exists()


@pytest.mark.parametrize("steps", ["Infinity", "-Infinity", "NaN", "1e400", "true", '"4"'])
def test_manifest_steps_that_are_not_counts(files, steps):
    tmp, _, _ = files
    (tmp / "m.json").write_text('{"jobs": [{"profile": "good.json", "steps": ' + steps + "}]}")
    code, _, err = run(["batch", tmp / "m.json", "--out", tmp / "out"])
    assert_one_line(code, err, "has steps")


def test_block_profiles_with_too_few_stderr_rows(tmp_path):
    from schedopt.curve import BlockProfiles

    blocks = BlockProfiles.from_sequence_profile(CHAIN.profile(), 4)
    obj = blocks.to_json()
    obj["stderr"] = [[0.01] * 4]  # one row for three blocks
    (tmp_path / "b.json").write_text(json.dumps(obj))
    code, _, err = run(["optimize", "--profile", tmp_path / "b.json", "--steps", 6,
                        "--block-length", 4, "--out", tmp_path / "o.json"])
    assert_one_line(code, err, "stderr")


# --------------------------------------------------------------------------- silently wrong
def test_batch_results_are_keyed_by_content(files):
    """A rerun recomputes a job whose profile changed but kept its name and n."""
    tmp, _, _ = files
    (tmp / "m.json").write_text(json.dumps({"jobs": [{"profile": "p.json", "steps": 3}]}))
    first, second = CHAIN.profile(), MarkovChain(0.5 * np.eye(3) + 0.5 / 3, N).profile()
    rows = []
    for profile in (first, first, second):
        profile.save(tmp / "p.json")
        assert run(["batch", tmp / "m.json", "--out", tmp / "out"])[0] == 0
        rows.append((tmp / "out" / "summary.csv").read_text().splitlines()[1])
    assert rows[0].endswith("computed") and rows[1].endswith("skipped")
    assert rows[2].endswith("computed"), rows[2]
    # The stored schedule is the new profile's exact optimum (brute force over compositions).
    stored = json.loads((tmp / "out" / "p.T3.json").read_text())
    h = np.asarray(second.entropy)
    g = np.diff(h)

    def kl(sizes):
        ends = np.cumsum(sizes)
        return sum(s * g[e - s] - (h[e] - h[e - s]) for s, e in zip(sizes, ends, strict=True))

    best = min(kl([a, b, N - a - b]) for a in range(1, N) for b in range(1, N - a))
    assert stored["expected_kl"] == pytest.approx(best, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("weights,match", [([0.3, 0.3], "sums to 0.6"), ([0, 0], "sums to 0")])
def test_mixture_weights_must_sum_to_one(tmp_path, weights, match):
    (tmp_path / "w.json").write_text(json.dumps(weights))
    np.save(tmp_path / "m.npy", np.full((2, 4, 2), 0.5))
    code, _, err = run(["profile", "--distribution", "mixture", "--weights", tmp_path / "w.json",
                        "--marginals", tmp_path / "m.npy", "--out", tmp_path / "p.json"])
    assert_one_line(code, err, match)


def test_compare_json_is_strict(tmp_path):
    """g piecewise constant in two pieces: the exact 2-step KL is 0, cosine's is not, so the
    ratio to the exact KL is infinite; the JSON must still parse strictly."""
    g = np.array([1.0] * 6 + [0.5] * 6)
    EntropyProfile.from_entropy(np.concatenate([[0], np.cumsum(g)])).save(tmp_path / "p.json")
    code, out, err = run(["compare", "--profile", tmp_path / "p.json", "--steps", 2, "--json"])
    assert code == 0, err

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    rows = json.loads(out, parse_constant=refuse)["schedules"]
    assert any(r["ratio_to_exact"] is None for r in rows)  # infinite -> null


def _schedule_file(tmp, **fields):
    obj = {"format": "schedopt.schedule", "version": 1, "n": N, "tokens_per_step": [4, 4, 4],
           **fields}
    (tmp / "x.json").write_text(json.dumps(obj))
    return tmp / "x.json"


def test_schedule_steps_field_must_match_its_tokens(files):
    tmp, _, _ = files
    code, _, err = run(["evaluate", "--profile", tmp / "good.json", "--schedule",
                        _schedule_file(tmp, steps=5)])
    assert_one_line(code, err, "steps")


def test_schedule_tokens_must_not_be_booleans(files):
    tmp, _, _ = files
    n_true = _schedule_file(tmp, n=3, tokens_per_step=[True, True, True])
    EntropyProfile.from_entropy([0.0, 1.0, 1.5, 1.8]).save(tmp / "p3.json")
    code, _, err = run(["evaluate", "--profile", tmp / "p3.json", "--schedule", n_true])
    assert_one_line(code, err, "true")


def test_constant_curve_gives_exactly_zero_kl(tmp_path):
    """g constant (a product law): every schedule's KL is exactly 0, never negative."""
    EntropyProfile.from_entropy(0.3 * np.arange(101)).save(tmp_path / "p.json")
    (tmp_path / "s.json").write_text(json.dumps(
        {"format": "schedopt.schedule", "version": 1, "n": 100, "tokens_per_step": [50, 50]}))
    code, out, err = run(["evaluate", "--profile", tmp_path / "p.json", "--schedule",
                          tmp_path / "s.json", "--json"])
    assert code == 0, err
    assert json.loads(out)["expected_kl"] == 0.0


# --------------------------------------------------------------------------- messages
def test_inputs_that_are_not_regular_files(files):
    tmp, _, _ = files
    (tmp / "adir").mkdir()
    os.mkfifo(tmp / "fifo")
    for path, match in [(tmp / "adir", "is a directory"), ("/dev/null", "not a regular file"),
                        (tmp / "fifo", "not a regular file"), (tmp / "nope", "does not exist")]:
        code, _, err = run(["evaluate", "--profile", path, "--schedule", tmp / "s.json"])
        assert_one_line(code, err, match)


def test_outputs_that_are_not_regular_files(files):
    tmp, _, _ = files
    (tmp / "adir").mkdir()
    os.mkfifo(tmp / "fifo")
    for path, match in [(tmp / "adir", "is a directory"), ("/dev/null", "not a regular file"),
                        (tmp / "fifo", "not a regular file")]:
        code, _, err = run(["optimize", "--profile", tmp / "good.json", "--steps", 2,
                            "--method", "exact", "--out", path])
        assert_one_line(code, err, match)
    with pytest.raises(ValueError, match="not a regular file"):
        _io.write_json("/dev/null", {})
    assert Path("/dev/null").is_char_device()


def test_write_errors_name_the_file_not_the_temporary(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path / ".out.json.x1y2.tmp"))

    monkeypatch.setattr(_io.tempfile, "mkstemp", refuse)
    with pytest.raises(ValueError) as info:
        _io.write_json(tmp_path / "out.json", {"a": 1})
    assert str(info.value) == f"cannot write {str(tmp_path / 'out.json')!r}: permission denied"


@pytest.mark.parametrize("where", ["before", "after", "both"])
def test_quiet_before_or_after_the_subcommand(files, where):
    tmp, _, _ = files
    argv = ["frontier", "--profile", tmp / "good.json", "--max-steps", 3]
    argv = {"before": ["--quiet", *argv], "after": [*argv, "--quiet"],
            "both": ["--quiet", *argv, "--quiet"]}[where]
    code, out, err = run(argv)
    assert code == 0 and err == "" and "optimal" in out


def test_closed_pipe_exits_quietly(files, spawn):
    """`schedopt frontier | head -1`: the reader has left; no error message, exit 0."""
    tmp, _, _ = files
    proc = spawn(cli_argv(["--quiet", "frontier", "--profile", tmp / "good.json",
                           "--max-steps", 4]), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()  # before the CLI has even started: every write meets a closed pipe
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert err.decode() == ""


# --------------------------------------------------------------------------- fuzz
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=4),
    st.sampled_from([0, 1, 2, 5, 6, -1, 0.5, 1e20, 1e308, "6", "nats", "bits"]),
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)
_ARG = st.one_of(
    st.sampled_from(["1", "2", "3", "6", "0", "-1", "1.5", "1e30", "nan", "inf", "abc", ""]),
    st.integers(-3, 40).map(str),
)


def _valid_profile(n):
    g = np.sort(np.random.default_rng(n).uniform(0.1, 1.5, n))[::-1]
    return EntropyProfile.from_entropy(np.concatenate([[0], np.cumsum(g)])).to_json()


@st.composite
def _mutated(draw, obj):
    """A valid file's dict with a few fields replaced, removed, or edited in place."""
    obj = json.loads(json.dumps(obj))
    for _ in range(draw(st.integers(1, 3)) if draw(st.booleans()) else 0):
        key = draw(st.sampled_from(sorted(obj) + ["extra"]))
        action = draw(st.sampled_from(["replace", "delete", "element", "truncate"]))
        if action == "delete":
            obj.pop(key, None)
        elif action == "replace" or not isinstance(obj.get(key), list) or not obj[key]:
            obj[key] = draw(_JSON)
        elif action == "element":
            obj[key][draw(st.integers(0, len(obj[key]) - 1))] = draw(_SCALARS)
        else:
            obj[key] = obj[key][: draw(st.integers(0, len(obj[key])))]
    return obj


@st.composite
def _mutated_matrix(draw, matrix):
    """A parameter matrix with one entry replaced by any JSON scalar."""
    matrix = json.loads(json.dumps(matrix))
    row = draw(st.integers(0, len(matrix) - 1))
    matrix[row][draw(st.integers(0, len(matrix[row]) - 1))] = draw(_SCALARS)
    return matrix


@st.composite
def _command(draw):
    n = draw(st.sampled_from([5, 6]))
    profile = draw(_mutated(_valid_profile(n)))
    steps = [1] * (n - 3) + [3]
    schedule = draw(_mutated({"format": "schedopt.schedule", "version": 1, "n": n,
                              "steps": len(steps), "tokens_per_step": steps}))
    command = draw(st.sampled_from(["evaluate", "frontier", "optimize", "batch", "profile"]))
    extra = draw(st.lists(st.sampled_from(["--regularize", "--quiet"]), max_size=2, unique=True))
    if command == "evaluate":
        argv = ["evaluate", "--profile", "{p}", "--schedule", "{s}", "--json", *extra]
    elif command == "frontier":
        argv = ["frontier", "--profile", "{p}", "--max-steps", draw(_ARG), "--out",
                draw(st.sampled_from(["{o}.json", "{o}.csv"])), *extra]
        if draw(st.booleans()):
            argv += ["--target-kl", draw(_ARG)]
    elif command == "optimize":
        argv = ["optimize", "--profile", "{p}", "--steps", draw(_ARG), "--method", "exact",
                "--out", "{o}.json", *extra]
    elif command == "profile":  # known laws with exact profiles, parameters from a file
        law = draw(st.sampled_from(["markov", "product"]))
        if law == "markov":
            valid = (0.7 * np.eye(3) + 0.1).tolist()
            flag = ["--transition", "{m}", "--length", draw(_ARG)]
        else:
            valid = np.full((n, 2), 0.5).tolist()
            flag = ["--marginals", "{m}"]
        parameters = draw(st.one_of(st.just(valid), _JSON, _mutated_matrix(valid)))
        argv = ["profile", "--distribution", law, *flag, "--out", "{o}.json", *extra]
        return profile, schedule, parameters, argv
    else:
        job = draw(st.one_of(
            st.fixed_dictionaries({"profile": st.just("p.json"), "steps": _SCALARS}),
            st.fixed_dictionaries({"profile": st.just("p.json"), "target_kl": _SCALARS}),
            _JSON,
        ))
        argv = ["batch", "{m}", "--out", "{d}", *extra]
        return profile, schedule, {"jobs": [job]}, argv
    return profile, schedule, None, argv


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
@given(_command())
def test_fuzz_files_and_arguments(case):
    """Any file content and argument: exit 0 with a valid output, or exit 2 with one line,
    never a traceback; an existing output file is untouched on failure."""
    import tempfile

    profile, schedule, manifest, argv = case
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "p.json").write_text(json.dumps(profile))
        (tmp / "s.json").write_text(json.dumps(schedule))
        (tmp / "m.json").write_text(json.dumps(manifest))
        names = {"p": tmp / "p.json", "s": tmp / "s.json", "m": tmp / "m.json",
                 "o": tmp / "out", "d": tmp / "results"}
        argv = [a.format(**names) if isinstance(a, str) else a for a in argv]
        outputs = [Path(a) for a in argv if str(a).startswith(str(tmp / "out"))]
        for path in outputs:
            path.write_text("previous\n")
        code, out, err = run(argv)
        event(f"{argv[0]} exit {code}")
        if code == 2:
            assert_one_line(code, err)
            for path in outputs:
                assert path.read_text() == "previous\n"
            return
        assert code == 0, (argv, code, err)
        assert "Traceback" not in err
        def refuse(constant):
            raise AssertionError(f"{constant} written")

        for path in outputs:
            text = path.read_text()
            if path.suffix == ".json":
                json.loads(text, parse_constant=refuse)
            else:
                assert text.startswith("# schedopt.frontier") and "nan" not in text.lower()
        if argv[0] == "evaluate":
            row = json.loads(out, parse_constant=lambda c: pytest.fail(f"{c} printed"))
            assert row["expected_kl"] >= -1e-9  # a KL is never negative


@pytest.mark.parametrize("second", [["--model", "digits"], ["--hf-model", "some/model"],
                                    ["--from-loss-curve", "loss.csv", "--length", "12"]])
def test_profile_takes_one_source_of_the_curve(tmp_path, second):
    """The sources are one exclusive choice: argparse names the two in one line, exit 2."""
    code, out, err = run(["profile", "--distribution", "product", "--marginals", "m.json",
                          *second, "--out", tmp_path / "p.json"])
    assert_one_line(code, err, match=f"argument {second[0]}: not allowed with argument "
                                      "--distribution")
    assert not (tmp_path / "p.json").exists()
