"""scripts/make_figure.py: the README caption shows the numbers the script computes, and it draws.

The caption's schedule and KLs are checked against an independent route too: the exact DP's
optimum (`optimal_schedule`) for the optimized schedule, and theory §3's formula summed by hand
(`helpers.kl_from_curve`) for every KL.
"""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import kl_from_curve

import schedopt

ROOT = Path(__file__).resolve().parent.parent


def _script():
    path = ROOT / "scripts" / "make_figure.py"
    spec = importlib.util.spec_from_file_location("make_figure", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["make_figure"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def computed():
    script = _script()
    return script, [(t, p, x, script.schedules_of(p)) for t, p, x in script.rows()]


def test_readme_caption_shows_the_scripts_numbers(computed):
    script, rows = computed
    readme = " ".join((ROOT / "README.md").read_text().split())
    sentence = script.caption(rows[0][3], rows[1][3])
    assert sentence in readme, f"README caption differs from the script's: {sentence}"


def test_caption_numbers_agree_with_the_exact_dp_and_the_formula(computed):
    _, rows = computed
    for _, profile, _, schedules in rows:
        entropy = np.asarray(profile.entropy)
        exact = schedopt.optimal_schedule(profile, 8)
        assert float(schedules[0].expected_kl) == pytest.approx(float(exact.expected_kl), rel=1e-9)
        for s in schedules:
            want = kl_from_curve(entropy, np.asarray(s.tokens_per_step).tolist())
            assert float(s.expected_kl) == pytest.approx(want, rel=1e-9)


def test_the_script_draws_a_png(computed, tmp_path, capsys):
    script, rows = computed
    out = tmp_path / "figure.png"
    script.draw(rows, str(out))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "shaded areas" in capsys.readouterr().out
