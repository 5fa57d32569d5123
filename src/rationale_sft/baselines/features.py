"""Sparse tabular features from each subject's events strictly before its prediction time.

Columns: ``age``, ``sex=F``, ``sex=M``; per vocabulary code ``<code>:present`` (1) and
``<code>:years_since_first`` (years from its first occurrence to the prediction time, 0 for static
codes); per numeric code ``<code>:last_value`` (the last value before the prediction time). The vocabulary
(codes seen in at least ``min_count`` rows) is learnt on the rows passed without a vocabulary, normally
the training subjects, and reused unchanged for every other split. All work is one polars aggregation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import scipy.sparse as sp

from rationale_sft.cohort.extract import YEAR_US, input_events
from rationale_sft.errors import InputError

BASE_FEATURES = ("age", "sex=F", "sex=M")


def code_stats(labels: pl.DataFrame, meds_dir: str | Path) -> pl.DataFrame:
    """Per labelled row and code: first time (years before prediction), whether valued, last value."""
    ev = input_events(meds_dir, labels)
    last_value = pl.col("numeric_value").sort_by("time", nulls_last=False, maintain_order=True).drop_nulls().last()
    return ev.group_by("subject_id", "prediction_time", "code").agg(
        years_since_first=((pl.col("prediction_time").first() - pl.col("time").min()).dt.total_microseconds()
                           / YEAR_US).fill_null(0.0),
        last_value=last_value,
    ).collect()


def learn_vocab(stats: pl.DataFrame, min_count: int) -> dict:
    """Codes present in at least ``min_count`` rows, and those of them with values in as many rows.

    >>> s = pl.DataFrame({"code": ["A", "A", "B", "C", "C"], "last_value": [1.0, 2.0, None, None, 3.0]})
    >>> learn_vocab(s, 2)
    {'codes': ['A', 'C'], 'numeric_codes': ['A'], 'min_count': 2}
    """
    per_code = stats.group_by("code").agg(n=pl.len(), n_valued=pl.col("last_value").is_not_null().sum())
    keep = per_code.filter(pl.col("n") >= min_count).sort("code")
    return {"codes": keep["code"].to_list(),
            "numeric_codes": keep.filter(pl.col("n_valued") >= min_count)["code"].to_list(),
            "min_count": min_count}


def feature_names(vocab: dict) -> list[str]:
    """Column names of the feature matrix for ``vocab``.

    >>> feature_names({"codes": ["A"], "numeric_codes": ["A"]})
    ['age', 'sex=F', 'sex=M', 'A:present', 'A:years_since_first', 'A:last_value']
    """
    names = list(BASE_FEATURES)
    for code in vocab["codes"]:
        names += [f"{code}:present", f"{code}:years_since_first"]
    return names + [f"{code}:last_value" for code in vocab["numeric_codes"]]


def build_features(labels: pl.DataFrame, meds_dir: str | Path, vocab: dict | None = None,
                   min_count: int = 10) -> tuple[sp.csr_matrix, list[str], dict]:
    """Feature matrix (one row per label row, in order), its column names and the vocabulary used."""
    if labels.height == 0:
        raise InputError("build_features got no labelled rows")
    stats = code_stats(labels, meds_dir)
    vocab = vocab if vocab is not None else learn_vocab(stats, min_count)
    rows = labels.select("subject_id", "prediction_time").with_row_index("row")
    stats = stats.join(rows, on=["subject_id", "prediction_time"])
    k = len(vocab["codes"])
    schema = {"code": pl.String, "col": pl.Int64}
    code_col = pl.DataFrame({"code": vocab["codes"], "col": np.arange(k) * 2 + len(BASE_FEATURES)}, schema=schema)
    num_col = pl.DataFrame({"code": vocab["numeric_codes"],
                            "col": np.arange(len(vocab["numeric_codes"])) + len(BASE_FEATURES) + 2 * k}, schema=schema)
    present = stats.join(code_col, on="code")
    valued = stats.join(num_col, on="code").filter(pl.col("last_value").is_not_null())
    r = [present["row"], present["row"], valued["row"]]
    c = [present["col"], present["col"] + 1, valued["col"]]
    v = [np.ones(present.height), present["years_since_first"], valued["last_value"]]
    r, c, v = _base_entries(labels, r, c, v)
    shape = (labels.height, len(BASE_FEATURES) + 2 * k + len(vocab["numeric_codes"]))
    X = sp.coo_matrix((np.concatenate(v).astype(np.float64), (np.concatenate(r), np.concatenate(c))), shape=shape)
    return X.tocsr(), feature_names(vocab), vocab


def _base_entries(labels: pl.DataFrame, r: list, c: list, v: list) -> tuple[list, list, list]:
    idx = np.arange(labels.height)
    age = labels["age"].fill_null(0.0).to_numpy()  # age is missing only where the data has no birth event
    sex = labels["sex"].to_numpy()
    for col, mask in ((1, sex == "F"), (2, sex == "M")):
        r.append(idx[mask]); c.append(np.full(mask.sum(), col)); v.append(np.ones(mask.sum()))  # noqa: E702
    r.append(idx); c.append(np.zeros(labels.height, dtype=np.int64)); v.append(age)  # noqa: E702
    return [np.asarray(x, dtype=np.int64) for x in r], [np.asarray(x, dtype=np.int64) for x in c], \
        [np.asarray(x, dtype=np.float64) for x in v]
