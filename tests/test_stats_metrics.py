"""Metrics against scikit-learn and hand-computed values."""

import warnings

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from sklearn.calibration import calibration_curve
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from rationale_sft.errors import InputError
from rationale_sft.stats import metrics as M


def _data(seed, n=300, ties=True):
    g = np.random.default_rng(seed)
    y = g.random(n) < 0.3
    s = g.random(n) + 0.4 * y
    return y, (np.round(s, 1) if ties else s)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("ties", [True, False])
def test_auroc_and_ap_match_sklearn(seed, ties):
    y, s = _data(seed, ties=ties)
    assert M.auroc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert M.average_precision(y, s) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert M.brier(y, s.clip(0, 1)) == pytest.approx(brier_score_loss(y, s.clip(0, 1)), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_weighted_metrics_match_sklearn_sample_weight(seed):
    y, s = _data(seed)
    w = np.random.default_rng(seed + 10).integers(0, 4, y.size).astype(float)
    assert float(M.weighted_auroc(y, s, w)) == pytest.approx(roc_auc_score(y, s, sample_weight=w), abs=1e-12)
    assert float(M.weighted_average_precision(y, s, w)) == pytest.approx(
        average_precision_score(y, s, sample_weight=w), abs=1e-12)
    # a (B, n) weight matrix evaluates row by row
    W = np.stack([w, np.ones_like(w)])
    np.testing.assert_allclose(M.weighted_auroc(y, s, W), [roc_auc_score(y, s, sample_weight=w), M.auroc(y, s)])


def test_auroc_hand_values():
    assert M.auroc(np.array([0, 1]), np.array([0.3, 0.3])) == 0.5
    assert M.auroc(np.array([0, 0, 1]), np.array([0.1, 0.5, 0.3])) == 0.5
    assert M.auroc(np.array([1, 0]), np.array([0.9, 0.1])) == 1.0


def test_reliability_uniform_matches_sklearn_calibration_curve():
    y, s = _data(1, n=2000, ties=False)
    s = s / s.max() * 0.999
    table = M.reliability_curve(y, s, 10, "uniform")
    frac, mean = calibration_curve(y, s, n_bins=10, strategy="uniform")
    np.testing.assert_allclose(table["frac_pos"].to_numpy(), frac)
    np.testing.assert_allclose(table["mean_pred"].to_numpy(), mean)


def test_reliability_quantile_has_equal_mass_bins_and_ece_by_hand():
    y, s = _data(2, n=1000, ties=False)
    table = M.reliability_curve(y, s, 8, "quantile")
    assert table["n"].to_list() == [125] * 8
    # hand: bins {0.1, 0.3} (mean .2, rate 0) and {0.6, 0.8} (mean .7, rate .5): ECE = (.2 + .2) / 2
    ece = M.expected_calibration_error(np.array([0, 0, 1, 0]), np.array([0.1, 0.3, 0.6, 0.8]), 2, "quantile")
    assert ece == pytest.approx(0.2)


def test_auroc_by_group_and_age_bands():
    y = np.array([0, 1, 0, 1, 0, 0])
    s = np.array([0.1, 0.9, 0.8, 0.2, 0.3, 0.4])
    bands = M.age_bands(np.array([45, 47, 62, 66, 70, 71.0]), (50, 65))
    table = M.auroc_by_group(y, s, bands, M.band_names((50, 65)))
    assert table.rows() == [("<50", 2, 1, 1.0), ("50-65", 1, 0, None), (">=65", 3, 1, 0.0)]
    assert M.auroc_by_group(y, s, bands)["group"].to_list() == ["50-65", "<50", ">=65"]


def test_input_errors_name_the_problem():
    with pytest.raises(InputError, match="NaN"):
        M.auroc(np.array([0, 1]), np.array([0.1, np.nan]))
    with pytest.raises(InputError, match="both classes"):
        M.average_precision(np.array([0, 0]), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="equal length"):
        M.auroc(np.array([0, 1, 1]), np.array([0.1, 0.2]))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.integers(0, 6), st.integers(0, 3)), min_size=2, max_size=40))
def test_integer_weights_equal_repeating_subjects(rows):
    """Weight k must mean 'this subject drawn k times': compare with the metrics on the repeated data."""
    y = np.array([r[0] for r in rows])
    s = np.array([r[1] / 6 for r in rows])
    w = np.array([r[2] for r in rows], dtype=float)
    rep_y, rep_s = np.repeat(y, w.astype(int)), np.repeat(s, w.astype(int))
    assume(0 < rep_y.sum() < rep_y.size)
    auc, ap = M.weighted_rank_metrics(y, s, w)
    assert float(auc) == pytest.approx(M.auroc(rep_y, rep_s), abs=1e-12)
    assert float(ap) == pytest.approx(average_precision_score(rep_y, rep_s), abs=1e-12)


def test_a_resample_without_one_class_is_nan_without_a_warning():
    y, s = np.array([0, 1, 0, 1]), np.array([0.1, 0.8, 0.3, 0.6])
    w = np.array([[1.0, 1, 1, 1], [2, 0, 2, 0], [0, 2, 0, 2]])  # rows 2 and 3 drew one class only
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        auc, ap = M.weighted_rank_metrics(y, s, w)
    assert auc[0] == 1.0 and np.isnan(auc[1:]).all() and ap[0] == 1.0 and np.isnan(ap[1])
