"""Reading and validating MEDS input: data shards, subject splits and (synthetic only) true risks.

The ``meds`` package's schemas are the contract: ``subject_id`` Int64, ``time`` Datetime(us) (null for
static events), ``code`` String, ``numeric_value`` Float32 (optional); each subject in one shard, its
rows contiguous and sorted by time. Everything is read through polars lazy scans, one shard at a time
where a check allows it, so that millions of events never sit in memory whole.
"""

from __future__ import annotations

from pathlib import Path

import meds
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from rationale_sft.errors import InputError
from rationale_sft.tables import read_parquet, unreadable

SPLITS = (meds.train_split, meds.tuning_split, meds.held_out_split)
TRUTH_PATH = Path("truth") / "risk.parquet"


def data_files(meds_dir: str | Path) -> list[Path]:
    """The data shards of a MEDS directory (``data/**/*.parquet``, sorted).

    >>> data_files("/nonexistent")
    Traceback (most recent call last):
    ...
    rationale_sft.errors.InputError: /nonexistent: not a MEDS directory (no data/ folder); pass the folder that holds data/ and metadata/
    """
    root = Path(meds_dir)
    if not (root / meds.data_subdirectory).is_dir():
        raise InputError(f"{root}: not a MEDS directory (no data/ folder); pass the folder that holds "
                         "data/ and metadata/")
    files = sorted(p for p in (root / meds.data_subdirectory).rglob("*.parquet") if not p.name.startswith("."))
    if not files:
        raise InputError(f"{root / meds.data_subdirectory}: no parquet shards found")
    return files


def check_data_schema(path: Path) -> list[str]:
    """Check one shard's columns and types against the MEDS data schema; return its column names.

    Integer subject ids and timestamps of any unit without a time zone are accepted (they are cast);
    anything else names the file, the column, what was found and what is allowed.
    """
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise InputError(f"{path}: not a readable parquet file ({exc})") from None
    allowed = {"subject_id": (pa.types.is_integer, "an integer (Int64)"),
               "time": (lambda t: pa.types.is_timestamp(t) and t.tz is None, "a timestamp without time zone"),
               "code": (lambda t: pa.types.is_string(t) or pa.types.is_large_string(t)
                        or pa.types.is_dictionary(t), "a string")}
    for name, (ok, what) in allowed.items():
        if name not in schema.names:
            raise InputError(f"{path}: missing column {name!r}; MEDS data needs subject_id, time, code "
                             f"(found {', '.join(schema.names)})")
        if not ok(schema.field(name).type):
            raise InputError(f"{path}: column {name!r} is {schema.field(name).type}, must be {what}")
    if "numeric_value" in schema.names and not (pa.types.is_floating(schema.field("numeric_value").type)
                                                or pa.types.is_integer(schema.field("numeric_value").type)
                                                or pa.types.is_null(schema.field("numeric_value").type)):
        raise InputError(f"{path}: column 'numeric_value' is {schema.field('numeric_value').type}, "
                         "must be a float (Float32)")
    return list(schema.names)


def scan_shard(path: Path) -> pl.LazyFrame:
    """One checked shard as a lazy frame in the contract's types: subject_id, time, code, numeric_value."""
    names = check_data_schema(path)
    value = pl.col("numeric_value").cast(pl.Float64) if "numeric_value" in names \
        else pl.lit(None, dtype=pl.Float64).alias("numeric_value")
    return pl.scan_parquet(path).select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
                                        pl.col("code").cast(pl.String), value)


def scan_events(meds_dir: str | Path) -> pl.LazyFrame:
    """All events of a MEDS directory as one lazy frame (see ``scan_shard``)."""
    return pl.concat([scan_shard(path) for path in data_files(meds_dir)], how="vertical")


def _check_shard(path: Path) -> tuple[pl.DataFrame, dict]:
    """Order and duplicates of one shard (both are per-shard properties, so memory stays per shard).

    MEDS asks for each subject's rows to be contiguous and sorted by time (static rows first); the
    subjects themselves may come in any order.
    """
    ev = scan_shard(path)
    _check_null_codes(ev, path)
    same, prev_t = pl.col("subject_id") == pl.col("subject_id").shift(1), pl.col("time").shift(1)
    unsorted = ev.filter(same & prev_t.is_not_null() & (pl.col("time").is_null() | (pl.col("time") < prev_t)))
    runs = ev.select("subject_id", run=(~same.fill_null(False)).cum_sum())
    split_up = runs.group_by("subject_id").agg(pl.col("run").n_unique()).filter(pl.col("run") > 1)
    dups = ev.group_by("subject_id", "time", "code", "numeric_value").len().filter(pl.col("len") > 1)
    ids, n = ev.select(pl.col("subject_id").unique()), ev.select(pl.len())
    try:
        unsorted, split_up, dups, ids, n = pl.collect_all([unsorted.select("subject_id").head(1),
                                                           split_up.sort("subject_id").head(1), dups, ids, n])
    except pl.exceptions.ComputeError as exc:  # a footer that reads but pages that do not
        raise unreadable(path, exc) from None
    for bad, what in ((unsorted, "not sorted by time (static null-time events first)"),
                      (split_up, "not contiguous")):
        if bad.height:
            raise InputError(f"{path}: events of subject {bad['subject_id'][0]} are {what}; sort each shard "
                             "by subject_id, time")
    first = dups.sort("subject_id", "time").row(0, named=True) if dups.height else None
    return ids.with_columns(file=pl.lit(str(path))), {"n_events": n.item(), "n_duplicates": int((dups["len"] - 1).sum()),
                                                      "first_duplicate": first}


def _check_null_codes(ev: pl.LazyFrame, path: Path) -> None:
    """MEDS requires a code on every event; a null one would vanish from prompts and features unnoticed."""
    try:
        nulls = ev.filter(pl.col("code").is_null()).select(pl.len(), pl.col("subject_id").first()).collect()
    except pl.exceptions.ComputeError as exc:
        raise unreadable(path, exc) from None
    if nulls["len"][0]:
        raise InputError(f"{path}: {nulls['len'][0]} event(s) have a null code (e.g. subject "
                         f"{nulls['subject_id'][0]}); every MEDS event needs a code: drop those rows or fill in "
                         "their codes")


def validate_events(meds_dir: str | Path) -> dict:
    """Check shard order (subject, then time; static events first), one shard per subject, duplicates.

    Returns ``{"n_events", "n_subjects", "n_duplicates", "first_duplicate"}``; raises InputError on the
    first violation, naming the file and subject.
    """
    ids, out = [], {"n_events": 0, "n_duplicates": 0, "first_duplicate": None}
    for path in data_files(meds_dir):
        shard_ids, stats = _check_shard(path)
        ids.append(shard_ids)
        out["n_events"] += stats["n_events"]
        out["n_duplicates"] += stats["n_duplicates"]
        out["first_duplicate"] = out["first_duplicate"] or stats["first_duplicate"]
    ids = pl.concat(ids)
    twice = ids.filter(pl.col("subject_id").is_duplicated())
    if twice.height:
        raise InputError(f"{meds_dir}: subject {twice['subject_id'][0]} appears in more than one data shard "
                         f"({', '.join(twice['file'].head(2))}); MEDS keeps each subject in exactly one shard")
    out["n_subjects"] = ids.height
    return out


def read_splits(meds_dir: str | Path) -> pl.DataFrame:
    """``metadata/subject_splits.parquet`` as (subject_id Int64, split String), checked."""
    path = Path(meds_dir) / meds.subject_splits_filepath
    if not path.is_file():
        raise InputError(f"{path}: missing; a MEDS dataset for prediction needs subject splits "
                         f"(subject_id, split in {{{', '.join(SPLITS)}}})")
    df = read_parquet(path)
    for col in ("subject_id", "split"):
        if col not in df.columns:
            raise InputError(f"{path}: missing column {col!r} (found {', '.join(df.columns)})")
    if not df.schema["subject_id"].is_integer() or df.schema["split"] not in (pl.String, pl.Categorical):
        raise InputError(f"{path}: subject_id must be Int64 and split String, got "
                         f"{df.schema['subject_id']} and {df.schema['split']}")
    df = df.select(pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String))
    unknown = sorted(set(df["split"].unique().to_list()) - set(SPLITS), key=str)
    if unknown:
        raise InputError(f"{path}: unknown split value(s) {unknown}; allowed: {', '.join(SPLITS)} "
                         "(rename them, e.g. test -> held_out, val -> tuning)")
    dup = df.filter(pl.col("subject_id").is_duplicated())
    if dup.height:
        raise InputError(f"{path}: subject {dup['subject_id'][0]} is listed in more than one row; "
                         "each subject belongs to exactly one split")
    return df


def read_truth(meds_dir: str | Path) -> pl.DataFrame | None:
    """``truth/risk.parquet`` (synthetic cohorts only) as subject_id, prediction_time, risk; else None."""
    path = Path(meds_dir) / TRUTH_PATH
    if not path.is_file():
        return None
    df = read_parquet(path)
    missing = [c for c in ("subject_id", "prediction_time", "risk") if c not in df.columns]
    if missing:
        raise InputError(f"{path}: missing column(s) {', '.join(missing)} (needs subject_id, prediction_time, "
                         "risk)")
    return df.select(pl.col("subject_id").cast(pl.Int64), pl.col("prediction_time").cast(pl.Datetime("us")),
                     pl.col("risk").cast(pl.Float64))


def read_parquet_checked(path: str | Path, columns: dict, what: str = "file") -> pl.DataFrame:
    """Read a parquet file that must hold ``columns`` (name -> polars dtype) and at least one row."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: {what} not found")
    df = read_parquet(path)
    for col, dtype in columns.items():
        if col not in df.columns:
            raise InputError(f"{path}: missing column {col!r}; a {what} needs {', '.join(columns)}")
        if df.schema[col] != dtype:
            raise InputError(f"{path}: column {col!r} is {df.schema[col]}, must be {dtype}")
    if df.height == 0:
        raise InputError(f"{path}: {what} has no rows")
    return df


LABEL_SCHEMA = {"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "boolean_value": pl.Boolean,
                "split": pl.String, "age": pl.Float64, "sex": pl.String}


def read_labels(path: str | Path) -> pl.DataFrame:
    """A labels parquet written by ``cohort extract`` (contract section 2), checked."""
    df = read_parquet_checked(path, LABEL_SCHEMA, "labels file (from `rationale-sft cohort extract`)")
    unknown = sorted(set(df["split"].drop_nulls().unique()) - set(SPLITS))
    if unknown or df["split"].null_count() or df["boolean_value"].null_count():
        raise InputError(f"{path}: split must be one of {', '.join(SPLITS)} and boolean_value non-null "
                         f"(found splits {unknown or 'null'}); re-extract the labels")
    return df


def write_meds(out_dir: str | Path, events: pl.DataFrame, splits: pl.DataFrame, *, n_shards: int = 1,
               codes: pl.DataFrame | None = None, dataset_name: str = "meds") -> Path:
    """Write a small MEDS dataset (sorted, sharded by subject) with its metadata; for fixtures and examples.

    ``events`` needs subject_id, time, code and optionally numeric_value; ``splits`` subject_id, split.
    """
    import datetime as dt
    import json

    from rationale_sft import rundir

    out = Path(out_dir)
    ev = events.select(pl.col("subject_id").cast(pl.Int64), pl.col("time").cast(pl.Datetime("us")),
                       pl.col("code").cast(pl.String),
                       (pl.col("numeric_value") if "numeric_value" in events.columns else pl.lit(None))
                       .cast(pl.Float32).alias("numeric_value"))
    ev = ev.sort("subject_id", "time", nulls_last=False)
    shard = (pl.col("subject_id").rank("dense") - 1) % max(n_shards, 1)
    for i, part in ev.with_columns(shard=shard).partition_by("shard", as_dict=True, include_key=False).items():
        rundir.write_parquet(part, out / meds.data_subdirectory / f"{i[0]}.parquet")
    if codes is None:
        codes = ev.select(pl.col("code").unique().sort(), description=pl.lit(None, pl.String),
                          parent_codes=pl.lit(None, pl.List(pl.String)))
    rundir.write_parquet(codes, out / meds.code_metadata_filepath)
    rundir.write_parquet(splits.select(pl.col("subject_id").cast(pl.Int64), pl.col("split").cast(pl.String)),
                         out / meds.subject_splits_filepath)
    meta = {"dataset_name": dataset_name, "dataset_version": "0", "etl_name": "rationale_sft",
            "etl_version": "0", "meds_version": meds.__version__, "created_at": dt.datetime.now().isoformat()}
    rundir.write_text(out / meds.dataset_metadata_filepath, json.dumps(meta, indent=2) + "\n")
    return out
