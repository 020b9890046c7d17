"""`schedopt.check` and `schedopt plot`: the shaded area is the KL, the files are real PNGs."""

import json

import matplotlib.image
import numpy as np
import pytest
from helpers import (
    brute_force_expected_kl,
    compositions,
    entropy_curve_from_table,
    kl_from_curve,
    markov_entropy_curve,
    random_table,
)

from schedopt import EntropyProfile, Schedule
from schedopt.check import _plot as splot
from schedopt.cli import main
from schedopt.solve import budget_table

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
CHAIN = markov_entropy_curve(0.8 * np.eye(4) + 0.05, 128)
# theory §10's worked example: schedules with their expected KL, computed there independently.
THEORY_10 = [
    ([42, 86], 37.246122),
    ([17, 24, 35, 52], 15.937679),
    ([8, 9, 11, 13, 16, 19, 23, 29], 7.176410),
    ([16] * 8, 8.867725),
    ([3, 7, 12, 16, 19, 23, 24, 24], 7.857830),
]


@pytest.fixture(scope="module")
def chain():
    return EntropyProfile.from_entropy(CHAIN)


def _png_size(path) -> tuple[int, int]:
    """(width, height) in pixels, after checking the file is a PNG that reads back."""
    with open(path, "rb") as f:
        assert f.read(8) == PNG_SIGNATURE
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[2] in (3, 4)
    assert np.ptp(image[..., :3]) > 0.5  # not blank
    return image.shape[1], image.shape[0]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("xscale", ["linear", "symlog"])
def test_shaded_area_is_the_brute_force_kl(seed, xscale):
    """Every schedule of 4 tokens on a random table: area of the drawn polygons = E KL."""
    joint = random_table(np.random.default_rng(seed), 4, 2)
    profile = EntropyProfile.from_entropy(entropy_curve_from_table(joint))
    schedules = [list(c) for c in compositions(4)]
    drawn = splot.plot_profile(profile, schedules, xscale=xscale)
    want = [brute_force_expected_kl(joint, s) for s in schedules]
    np.testing.assert_allclose(drawn.areas, want, rtol=1e-9, atol=1e-12)


def test_shaded_area_on_the_worked_example(chain):
    schedules = [Schedule.from_tokens(chain, s, "custom") for s, _ in THEORY_10]
    drawn = splot.plot_profile(chain, schedules)
    np.testing.assert_allclose(drawn.areas, [kl for _, kl in THEORY_10], atol=1e-6)
    np.testing.assert_allclose(drawn.areas, [float(s.expected_kl) for s in schedules],
                               rtol=1e-10)
    assert len(drawn.ax.get_legend().get_texts()) == len(schedules)


def test_budget_table_on_the_worked_example(chain):
    curves = budget_table(chain, 16)
    steps, kl = curves["optimal"]
    assert steps.tolist() == list(range(1, 17))
    np.testing.assert_allclose(kl[[1, 3, 7, 15]], [37.246122, 15.937679, 7.176410, 3.199746],
                               atol=1e-6)
    assert curves["uniform"][1][7] == pytest.approx(8.867725, abs=1e-6)
    assert curves["cosine"][1][7] == pytest.approx(7.857830, abs=1e-6)
    for name in ("uniform", "cosine", "eds", "pyramid", "tc", "dtc"):
        steps, kl = curves[name]
        assert np.all(steps <= 16)
        # An independent score of each baseline schedule is not available here, but none
        # may beat the optimum at its own step count.
        assert np.all(kl >= curves["optimal"][1][steps - 1] - 1e-9), name
        for t in (1, 5, 16):  # against the curve formula of the test helpers
            assert kl[t - 1] == pytest.approx(kl_from_curve(CHAIN, tokens(name, t)), rel=1e-10)
    assert curves["tc"][1][0] == pytest.approx(kl_from_curve(CHAIN, [128]), rel=1e-12)


def tokens(name, steps):
    from schedopt.schedule import (
        correlation_tokens_within,
        cosine_tokens,
        eds_tokens,
        pyramid_tokens,
        uniform_tokens,
    )

    if name in ("tc", "dtc"):
        return correlation_tokens_within(128, steps, name)[0]
    if name == "eds":
        return eds_tokens(CHAIN, steps)
    if name == "pyramid":
        return pyramid_tokens(128, steps)[0]
    return (uniform_tokens if name == "uniform" else cosine_tokens)(128, steps)


def test_tokens_bars_and_frontier_panel(chain):
    ax = splot.plot_tokens([[1, 2, 125], [64, 64]], labels=["a", "b"])
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [1, 2, 64, 64, 125]
    assert ax.get_yscale() == "log"  # 125 > 20 * 1
    ax = splot.plot_frontier(chain, 16, schedules=[[16] * 8])
    assert ax.get_yscale() == "log" and ax.get_ylabel() == "expected KL (nats)"


def test_frontier_of_independent_tokens_has_no_log_axis():
    flat = EntropyProfile.from_entropy(np.arange(9.0))  # g = 1 nat exactly: KL 0
    ax = splot.plot_frontier(flat, 4)
    assert ax.get_yscale() == "linear"


@pytest.mark.parametrize("xscale", ["auto", "linear", "symlog"])
def test_report_is_a_png_of_sensible_size(chain, tmp_path, xscale):
    schedules = [Schedule.from_tokens(chain, s, "custom") for s, _ in THEORY_10[2:]]
    out = tmp_path / "report.png"
    areas = splot.plot_report(chain, schedules, out, xscale=xscale, title="sticky chain")
    width, height = _png_size(out)
    assert 1200 <= width <= 2600 and 350 <= height <= 900
    np.testing.assert_allclose(areas, [kl for _, kl in THEORY_10[2:]], atol=1e-6)
    assert [p.name for p in tmp_path.iterdir()] == ["report.png"]  # no temporary left


@pytest.mark.parametrize(
    "schedules, kwargs, match",
    [
        ([[64, 63]], {}, "unmasks 127 tokens"),
        ([[128]], {"labels": ["a", "b"]}, "one name per schedule"),
        ([[128]], {"xscale": "log"}, "xscale"),
        ([], {}, "empty"),
    ],
)
def test_bad_input_leaves_no_file(chain, tmp_path, schedules, kwargs, match):
    out = tmp_path / "r.png"
    with pytest.raises(ValueError, match=match):
        splot.plot_report(chain, schedules, out, **kwargs)
    assert not out.exists()


def test_report_refuses_other_extensions(chain, tmp_path):
    with pytest.raises(ValueError, match=r"\.png"):
        splot.plot_report(chain, [[128]], tmp_path / "r.jpg")


# --------------------------------------------------------------------------- CLI
@pytest.fixture
def files(tmp_path, chain):
    chain.save(tmp_path / "p.json")
    for tokens, _ in THEORY_10[2:4]:
        name = "opt8" if tokens[0] == 8 else "uniform8"
        Schedule.from_tokens(chain, tokens, "custom").save(tmp_path / f"{name}.json")
    EntropyProfile.from_entropy(CHAIN[:65]).save(tmp_path / "short.json")
    return tmp_path


def test_cli_writes_png_and_reports_areas(files, capsys):
    out = files / "f.png"
    assert main(["--quiet", "plot", "--profile", str(files / "p.json"),
                 "--schedule", str(files / "opt8.json"),
                 "--schedule", str(files / "uniform8.json"), "--out", str(out)]) == 0
    result = json.loads(capsys.readouterr().out)  # stdout is one JSON object
    assert result["out"] == str(out)
    rows = result["schedules"]
    assert [r["steps"] for r in rows] == [8, 8]
    for row, want in zip(rows, (7.176410, 8.867725), strict=True):
        assert row["expected_kl"] == pytest.approx(want, abs=1e-6)
        assert row["shaded_area"] == pytest.approx(want, abs=1e-6)
    width, height = _png_size(out)
    assert 1200 <= width <= 2600 and 350 <= height <= 900


@pytest.mark.parametrize(
    "args, out_name, match",
    [
        (["--schedule", "missing.json"], "f.png", "does not exist"),
        (["--schedule", "opt8.json"], "f.jpg", ".png"),
        (["--schedule", "opt8.json"], "nodir/f.png", "does not exist"),
        (["--schedule", "opt8.json", "--max-steps", "500"], "f.png", "--max-steps"),
        (["--schedule", "opt8.json", "--profile", "short.json"], "f.png", "n = 64"),
        (["--schedule", "p.json"], "f.png", "schedopt.schedule"),
    ],
)
def test_cli_bad_input_one_line_exit_2(files, capsys, monkeypatch, args, out_name, match):
    monkeypatch.chdir(files)
    argv = ["plot", "--profile", "p.json", *args, "--out", out_name]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and match in lines[0], captured.err
    assert not (files / out_name).exists()
    assert not any(p.suffix in (".png", ".jpg", ".tmp") for p in files.iterdir())
