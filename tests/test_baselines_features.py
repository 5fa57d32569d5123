"""Baseline features: only events strictly before the prediction time, exact recency and last values."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from rationale_sft.baselines.features import build_features
from rationale_sft.cohort import meds_io

PT = dt.datetime(2015, 3, 1, 23, 59, 59)
YEAR = dt.timedelta(days=365.25)


@pytest.fixture
def meds_dir(tmp_path):
    rows = [
        (1, None, "SEX//F", None), (1, PT - 2 * YEAR, "A", None), (1, PT - YEAR, "A", None),
        (1, PT - YEAR, "LAB", 5.0), (1, PT - dt.timedelta(days=1), "LAB", 7.0), (1, PT, "LAB", 99.0),
        (1, PT, "AT_PT", None), (1, PT + YEAR, "AFTER", None), (1, PT + YEAR, "LAB", 100.0),
        (2, None, "SEX//M", None), (2, PT - 3 * YEAR, "A", None), (2, PT - YEAR, "LAB", None),
        (2, PT, "AT_PT", None), (2, PT + YEAR, "AFTER", None),
        (3, PT - YEAR, "RARE", None), (3, PT + YEAR, "AFTER", None),
    ]
    ev = pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                    "numeric_value": pl.Float32}, orient="row")
    splits = pl.DataFrame({"subject_id": [1, 2, 3], "split": ["train", "train", "held_out"]})
    return meds_io.write_meds(tmp_path / "meds", ev, splits, n_shards=2)


def labels_for(ids, sexes=("F", "M", None)):
    return pl.DataFrame({"subject_id": ids, "prediction_time": [PT] * len(ids), "boolean_value": [True] * len(ids),
                         "split": ["train"] * len(ids), "age": [70.0 + i for i in range(len(ids))],
                         "sex": list(sexes[:len(ids)])},
                        schema=meds_io.LABEL_SCHEMA)


def dense(X, names, row, name):
    return X[row, names.index(name)]


def test_only_events_strictly_before_prediction_time(meds_dir):
    X, names, vocab = build_features(labels_for([1, 2, 3]), meds_dir, min_count=1)
    assert vocab["codes"] == ["A", "LAB", "RARE", "SEX//F", "SEX//M"]  # no AT_PT, no AFTER
    assert vocab["numeric_codes"] == ["LAB"]
    X = X.toarray()
    assert dense(X, names, 0, "A:years_since_first") == pytest.approx(2.0)
    assert dense(X, names, 1, "A:years_since_first") == pytest.approx(3.0)
    assert dense(X, names, 0, "LAB:last_value") == pytest.approx(7.0)  # not the values at or after pt
    assert dense(X, names, 1, "LAB:present") == 1 and dense(X, names, 1, "LAB:last_value") == 0
    assert dense(X, names, 0, "SEX//F:years_since_first") == 0  # static codes have no recency
    assert X[:, :3].tolist() == [[70.0, 1, 0], [71.0, 0, 1], [72.0, 0, 0]]


def test_vocab_is_learnt_once_and_reused(meds_dir):
    X_train, names, vocab = build_features(labels_for([1, 2]), meds_dir, min_count=2)
    assert vocab["codes"] == ["A", "LAB"] and vocab["numeric_codes"] == []
    X_test, names_test, vocab_test = build_features(labels_for([3]), meds_dir, vocab)
    assert names_test == names and vocab_test is vocab and X_test.shape == (1, X_train.shape[1])
    assert X_test[:, 3:].nnz == 0  # subject 3 only has RARE, which is not in the training vocabulary


def test_row_order_follows_labels(meds_dir):
    a = build_features(labels_for([1, 2, 3]), meds_dir, min_count=1)[0].toarray()
    b = build_features(labels_for([3, 2, 1], ("F", "M", None)[::-1]), meds_dir, min_count=1)[0].toarray()
    assert np.array_equal(a[::-1, 1:], b[:, 1:])
