"""The history frame: what a record shows before each prediction time, built once for prompts and for facts.

One function decides which events count and how: codes are diagnoses or measurements by their prefixes
(a code matching both is a diagnosis), excluded codes and untimed events are left out, a diagnosis is its
first occurrence, a measurement its last value before the prediction time, and every code gets its
metadata (name, unit, display order, ICD-10 chapter) from ``vocab.code_meta``. ``render.frame`` formats the
frame into prompt lines; ``rationales.facts`` reads the teacher's and the checker's facts from it, so what a
rationale is checked against is what the prompt shows.

>>> import datetime as dt
>>> pt = dt.datetime(2009, 6, 15)
>>> ev = pl.DataFrame({"subject_id": [1, 1, 1, 1, 1], "time": [dt.datetime(2002, 3, 10), dt.datetime(2004, 1, 2),
...     dt.datetime(2008, 1, 1), dt.datetime(2009, 1, 1), dt.datetime(2012, 1, 1)],
...     "code": ["ICD10//I10", "ICD10//I10", "UKB//LDL", "UKB//LDL", "ICD10//F03"],
...     "numeric_value": [None, None, 3.9, 4.6, None]})
>>> times = pl.DataFrame({"subject_id": [1], "prediction_time": [pt]})
>>> h = history_frame(ev, pl.DataFrame(schema={"code": pl.String, "description": pl.String}), times, RenderConfig())
>>> h.diagnoses.select("code", "days", "before").rows(), h.measurements.select("code", "numeric_value").rows()
([('ICD10//I10', 2654, True)], [('UKB//LDL', 4.6)])
>>> history_frame(ev, pl.DataFrame(schema={"code": pl.String, "description": pl.String}), times, RenderConfig(),
...               include_later=True).diagnoses["code"].to_list()
['ICD10//I10', 'ICD10//F03']
"""

from __future__ import annotations

from typing import NamedTuple

import polars as pl

from rationale_sft.config.render import RenderConfig
from rationale_sft.render.vocab import code_meta

KEYS = ["subject_id", "prediction_time"]


class HistoryFrame(NamedTuple):
    """Per (subject_id, prediction_time): first diagnoses and last measurement values, with code metadata."""

    diagnoses: pl.DataFrame
    """First occurrence per code: time, days (whole days to the prediction time; negative after it), before
    (earlier than the prediction time) and the code's metadata; oldest first (ties by code)."""
    measurements: pl.DataFrame
    """Last value per measurement code before the prediction time (numeric_value, null for an item without
    a value) and the code's metadata; in codes.parquet order."""


def kinds(cfg: RenderConfig) -> tuple[pl.Expr, pl.Expr]:
    """Expressions telling diagnoses and measurements apart by code prefix (a code matching both is a diagnosis)."""
    is_diag = pl.any_horizontal([pl.col("code").str.starts_with(p) for p in cfg.diagnosis_prefixes])
    is_meas = pl.any_horizontal([pl.col("code").str.starts_with(p) for p in cfg.measurement_prefixes]) \
        if cfg.measurement_prefixes else pl.lit(False)
    return is_diag, is_meas & ~is_diag


def history_frame(events: pl.DataFrame | pl.LazyFrame, codes: pl.DataFrame, times: pl.DataFrame,
                  cfg: RenderConfig, include_later: bool = False) -> HistoryFrame:
    """The history frame of every row of ``times`` (subject_id, prediction_time) from MEDS ``events``.

    ``include_later`` also keeps diagnoses first seen at or after the prediction time (``before`` False),
    which the rationale checker needs to recognise claims that leak the future; prompts never show them.
    """
    is_diag, is_meas = kinds(cfg)
    ev = (events.lazy().join(times.lazy().select(KEYS), on="subject_id", how="inner")
          .filter(pl.col("time").is_not_null() & ~pl.col("code").is_in(list(cfg.exclude_codes)))
          .with_columns(before=pl.col("time") < pl.col("prediction_time"), is_diag=is_diag, is_meas=is_meas)
          .filter(pl.col("before") | (pl.lit(include_later) & pl.col("is_diag")))
          .filter(pl.col("is_diag") | pl.col("is_meas")).collect())
    meta = code_meta(codes, ev["code"].unique().to_list(), cfg.diagnosis_prefixes, cfg.measurement_prefixes,
                     cfg.description_drop)
    diag = (ev.filter("is_diag").group_by([*KEYS, "code"]).agg(pl.col("time").min())
            .with_columns(days=(pl.col("prediction_time") - pl.col("time")).dt.total_days(),
                          before=pl.col("time") < pl.col("prediction_time"))
            .join(meta, on="code", how="left").sort([*KEYS, "time", "code"]))
    meas = (ev.filter("is_meas").group_by([*KEYS, "code"]).agg(pl.col("numeric_value").sort_by("time").last())
            .join(meta, on="code", how="left").sort([*KEYS, "order", "code"]))
    return HistoryFrame(diag, meas)
