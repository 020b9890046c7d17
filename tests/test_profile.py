"""EntropyProfile: curves, checks, regularisation and the file format."""

import json

import numpy as np
import pytest
from helpers import entropy_curve_from_table, entropy_nats, random_table
from scipy.optimize import isotonic_regression

from schedopt import EntropyProfile
from schedopt.curve import isotonic_nonincreasing


def test_curves_match_their_definitions_on_a_table():
    joint = random_table(np.random.default_rng(0), 4, 3)
    profile = EntropyProfile.from_entropy(entropy_curve_from_table(joint))
    marginals = [entropy_nats(joint.sum(axis=tuple(k for k in range(4) if k != i)))
                 for i in range(4)]
    joint_h = entropy_nats(joint)
    # H(X_i | X_-i) = H(X) - H(X_-i).
    conditionals = [joint_h - entropy_nats(joint.sum(axis=i)) for i in range(4)]
    assert profile.n == 4
    assert profile.joint_entropy == pytest.approx(joint_h, rel=1e-12)
    assert profile.total_correlation == pytest.approx(sum(marginals) - joint_h, rel=1e-10)
    assert profile.dual_total_correlation == pytest.approx(
        joint_h - sum(conditionals), rel=1e-10
    )
    g = np.asarray(profile.conditional_entropy)
    assert np.all(np.diff(g) <= 1e-12)  # Han's inequality
    z = np.asarray(profile.information_curve)
    assert z[0] == 0 and np.allclose(z, g[0] - g)


def test_partial_grid_is_interpolated_concavely():
    profile = EntropyProfile.from_entropy([0.0, 4.0, 6.0, 7.0], revealed=[0, 2, 6, 10])
    assert profile.n == 10
    np.testing.assert_allclose(
        np.asarray(profile.conditional_entropy), [2, 2, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]
    )


@pytest.mark.parametrize(
    "entropy, revealed, message",
    [
        ([0.0, 1.0, np.nan, 2.0], None, "finite"),
        ([0.0, 1.0, np.inf, 2.0], None, "finite"),
        ([0.5, 1.0, 1.5], None, "H_0 must be 0"),
        ([0.0, 1.0, 0.8], None, "decreases at revealed count 2"),
        ([0.0, 1.0, 1.5, 2.5], None, "not concave at revealed count 2"),
        ([0.0, 1.0, 2.0], [1, 2, 3], "must start at 0"),
        ([0.0, 1.0, 2.0], [0, 2, 2], "strictly increasing"),
        ([0.0], None, "at least 2 values"),
    ],
)
def test_bad_curves_get_one_clear_sentence(entropy, revealed, message):
    with pytest.raises(ValueError, match=message):
        EntropyProfile.from_entropy(entropy, revealed)


def test_regularize_is_the_weighted_isotonic_projection():
    rng = np.random.default_rng(1)
    truth = np.sort(rng.exponential(size=30))[::-1]
    stderr = rng.uniform(0.01, 0.3, size=30)
    noisy = truth + stderr * rng.normal(size=30)
    profile = EntropyProfile.from_conditional_entropy(noisy, stderr=stderr, check=False)
    got = np.asarray(profile.regularize().conditional_entropy)
    want = isotonic_regression(noisy, weights=1 / stderr**2, increasing=False).x
    np.testing.assert_allclose(got, np.maximum(want, 0), atol=1e-10)
    EntropyProfile.from_entropy(profile.regularize().entropy)  # now passes the checks


def test_isotonic_without_weights_matches_scipy():
    y = np.random.default_rng(2).normal(size=200)
    want = isotonic_regression(y, increasing=False).x
    np.testing.assert_allclose(isotonic_nonincreasing(y), want, atol=1e-12)


def test_file_round_trip_keeps_every_digit(tmp_path):
    entropy = np.concatenate([[0], np.cumsum(np.sort(np.random.default_rng(3).random(17))[::-1])])
    profile = EntropyProfile.from_entropy(entropy, meta={"source": "test"})
    profile.save(tmp_path / "p.json")
    back = EntropyProfile.load(tmp_path / "p.json")
    assert np.array_equal(np.asarray(back.entropy), entropy)
    assert back.meta == {"source": "test"}


def _write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        ({"format": "something.else", "version": 1}, "not a schedopt.profile file"),
        ({"format": "schedopt.profile", "version": 2, "n": 2}, "version 2"),
        ({"format": "schedopt.profile", "version": 1, "n": 2, "revealed": [0, 1],
          "entropy": [0, 1]}, "must end at n = 2"),
        ({"format": "schedopt.profile", "version": 1, "n": 2, "revealed": [0, 1, 2],
          "entropy": [0, 1]}, "2 entropy values for 3 revealed counts"),
        ({"format": "schedopt.profile", "version": 1, "n": 2}, "lacks the required key"),
        ({"format": "schedopt.profile", "version": 1, "n": 2, "revealed": [0, 1, 2],
          "entropy": [0, 1, 1.5], "std_err": [0.1, 0.1, 0]},
         "unknown field.s. 'std_err' for a schedopt.profile file"),
    ],
)
def test_bad_files_get_one_clear_sentence(tmp_path, content, message):
    with pytest.raises(ValueError, match=message):
        EntropyProfile.load(_write(tmp_path / "p.json", content))


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        EntropyProfile.load(tmp_path / "absent.json")
