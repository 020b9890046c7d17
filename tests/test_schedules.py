"""Baselines: docs/theory.md §5's formulas and guarantees."""

import math

import numpy as np
import pytest
from helpers import kl_from_curve, markov_entropy_curve
from hypothesis import given, settings
from hypothesis import strategies as st

import schedopt
from schedopt import EntropyProfile, Schedule
from schedopt.schedule import cosine_tokens, uniform_tokens

MARKOV = EntropyProfile.from_entropy(markov_entropy_curve(0.8 * np.eye(4) + 0.05, 128))


def test_uniform_is_llada_get_num_transfer_tokens():
    # LLaDA: base = n // T each, the first n % T steps get one more.
    assert uniform_tokens(10, 4).tolist() == [3, 3, 2, 2]
    assert uniform_tokens(128, 8).tolist() == [16] * 8


def test_cosine_matches_theory_worked_example():
    assert cosine_tokens(128, 8).tolist() == [3, 7, 12, 16, 19, 23, 24, 24]
    assert float(schedopt.cosine(MARKOV, 8).expected_kl) == pytest.approx(7.857830, abs=1e-6)


@given(st.integers(1, 300), st.data())
def test_cosine_always_unmasks_at_least_one_token_per_step(n, data):
    steps = data.draw(st.integers(1, n))
    s = cosine_tokens(n, steps)
    assert s.size == steps and s.sum() == n and s.min() >= 1


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 50.0), st.floats(1.0, 3.0), st.sampled_from(["tc", "dtc"]))
def test_tc_and_dtc_schedules_keep_their_guarantee(eps, slack, kind):
    # Any bound >= the true correlation guarantees E KL <= eps, in at most
    # 2 + (1 + log n)(1 + ceil(bound / eps)) steps.
    make = schedopt.tc_schedule if kind == "tc" else schedopt.dtc_schedule
    true = MARKOV.total_correlation if kind == "tc" else MARKOV.dual_total_correlation
    schedule = make(MARKOV, eps, true * slack)
    assert schedule.n == 128
    assert float(schedule.expected_kl) <= eps * (1 + 1e-9)
    assert schedule.steps <= 2 + (1 + math.log(128)) * (1 + math.ceil(true * slack / eps))


def test_tc_schedule_takes_big_steps_first_and_dtc_last():
    tc = np.asarray(schedopt.tc_schedule(MARKOV, 5.0).tokens_per_step)
    dtc = np.asarray(schedopt.dtc_schedule(MARKOV, 5.0).tokens_per_step)
    assert tc[0] == tc.max() and tc[-1] == 1
    assert dtc[0] == 1 and dtc[-1] == dtc.max()


def test_schedule_file_round_trip(tmp_path):
    schedule = Schedule.from_tokens(MARKOV, [8, 9, 11, 13, 16, 19, 23, 29], "handmade")
    schedule.save(tmp_path / "s.json")
    back = Schedule.load(tmp_path / "s.json", profile=MARKOV)
    assert back.tokens_per_step.tolist() == [8, 9, 11, 13, 16, 19, 23, 29]
    assert float(back.expected_kl) == pytest.approx(
        kl_from_curve(np.asarray(MARKOV.entropy), back.tokens_per_step), rel=1e-12
    )
    assert back.method == "handmade"


def test_schedule_for_another_length_is_refused(tmp_path):
    Schedule.from_tokens(
        EntropyProfile.from_entropy(np.log(2) * np.arange(11)), [5, 5]
    ).save(tmp_path / "s.json")
    with pytest.raises(ValueError, match="n = 10 tokens but the profile has n = 128"):
        Schedule.load(tmp_path / "s.json", profile=MARKOV)
