"""Labels computed elsewhere (ACES, MEDS-DEV, another pipeline) in the MEDS label schema, completed from a MEDS
dataset with split, age and sex into the labels `cohort extract` writes (docs/task.md, "Precomputed labels").

The labels are taken as given: no rule of a task is applied to them, except that subjects without a split
are dropped and counted under ``no_split``, as ``cohort extract --task`` does.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import polars as pl

from rationale_sft.cohort import meds_io
from rationale_sft.cohort.extract import LABEL_COLUMNS, YEAR_US, summarize
from rationale_sft.config.task import TaskConfig
from rationale_sft.errors import InputError
from rationale_sft.tables import read_parquet

REQUIRED = {"subject_id": "an integer (Int64)", "prediction_time": "a timestamp without time zone",
            "boolean_value": "a boolean"}
_TASK_DEFAULTS = {f.name: f.default for f in dataclasses.fields(TaskConfig)}


def _type_ok(name: str, dtype: pl.DataType) -> bool:
    if name == "subject_id":
        return dtype.is_integer()
    if name == "prediction_time":
        return isinstance(dtype, pl.Datetime) and dtype.time_zone is None
    return dtype == pl.Boolean


def read_label_file(path: str | Path) -> pl.DataFrame:
    """A MEDS label parquet (subject_id, prediction_time, boolean_value; other columns ignored), checked:
    types, no nulls, no repeated (subject, time) and one prediction time per subject."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: labels file not found; pass a parquet in the MEDS label schema "
                         "(subject_id, prediction_time, boolean_value)")
    df = read_parquet(path)
    for name, what in REQUIRED.items():
        if name not in df.columns:
            raise InputError(f"{path}: missing column {name!r}; labels need subject_id, prediction_time and "
                             f"boolean_value (MEDS label schema), found {', '.join(df.columns)}")
        if not _type_ok(name, df.schema[name]):
            raise InputError(f"{path}: column {name!r} is {df.schema[name]}, must be {what}")
    df = df.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")),
                   "boolean_value")
    if df.height == 0:
        raise InputError(f"{path}: labels file has no rows")
    for name in REQUIRED:
        nulls = df.filter(pl.col(name).is_null())
        if nulls.height:
            raise InputError(f"{path}: {nulls.height} row(s) have a null {name} (e.g. subject "
                             f"{nulls['subject_id'][0]}); every label needs subject_id, prediction_time and "
                             "boolean_value")
    _check_one_row_per_subject(df, path)
    return df


def _check_one_row_per_subject(df: pl.DataFrame, path: Path) -> None:
    counts = df.group_by("subject_id").agg(n=pl.len(), times=pl.col("prediction_time").n_unique()).sort("subject_id")
    dup = counts.filter(pl.col("n") > pl.col("times"))
    if dup.height:
        row = df.filter(pl.col("subject_id") == dup["subject_id"][0]).filter(pl.col("prediction_time").is_duplicated())
        raise InputError(f"{path}: subject {dup['subject_id'][0]} has more than one row at {row['prediction_time'][0]} "
                         f"({dup.height} subject(s) with repeated (subject_id, prediction_time) rows); keep one label "
                         "per subject and time")
    many = counts.filter(pl.col("n") > 1)
    if many.height:
        raise InputError(f"{path}: subject {many['subject_id'][0]} has {many['n'][0]} prediction times "
                         f"({many.height} subject(s) with several); rationale-sft predicts once per subject: keep "
                         "one row per subject (e.g. the first prediction time)")


def subject_facts(meds_dir: str | Path, birth_code: str, sex_prefix: str) -> pl.DataFrame:
    """subject_id, birth (first ``birth_code`` event) and sex (rest of the ``sex_prefix`` code) of every subject."""
    code, t = pl.col("code"), pl.col("time")
    return pl.concat([meds_io.scan_shard(p).group_by("subject_id").agg(
        birth=t.filter(code == birth_code).min(),
        sex=code.filter(code.str.starts_with(sex_prefix)).first().str.strip_prefix(sex_prefix)).collect()
        for p in meds_io.data_files(meds_dir)])


def labels_from_file(path: str | Path, meds_dir: str | Path) -> tuple[pl.DataFrame, dict]:
    """Labels of ``path`` completed with split, age and sex from ``meds_dir``, and their summary."""
    meds_dir = Path(meds_dir)
    checks = meds_io.validate_events(meds_dir)
    splits = meds_io.read_splits(meds_dir)
    given = read_label_file(path)
    facts = subject_facts(meds_dir, _TASK_DEFAULTS["birth_code"], _TASK_DEFAULTS["sex_prefix"])
    absent = given.join(facts, on="subject_id", how="anti").sort("subject_id")
    if absent.height:
        raise InputError(f"{path}: {absent.height} labelled subject(s) have no events in {meds_dir} (e.g. subject "
                         f"{absent['subject_id'][0]}); the labels must come from this MEDS dataset (check --meds)")
    df = given.join(facts, on="subject_id").join(splits, on="subject_id", how="left").with_columns(
        age=(pl.col("prediction_time") - pl.col("birth")).dt.total_microseconds() / YEAR_US)
    excluded = {"no_split": int(df["split"].null_count())}
    labels = df.filter(pl.col("split").is_not_null()).select(
        "subject_id", "prediction_time", "boolean_value", "split", pl.col("age").cast(pl.Float64),
        pl.col("sex").cast(pl.String)).select(LABEL_COLUMNS).sort("subject_id")
    if labels.height == 0:
        raise InputError(f"{path}: no labelled subject is in {meds_dir / 'metadata' / 'subject_splits.parquet'}; "
                         "add the subjects' splits")
    summary = summarize(f"labels:{Path(path).name}", labels, excluded, checks)
    return labels, summary | {"labels_file": str(Path(path).resolve())}
