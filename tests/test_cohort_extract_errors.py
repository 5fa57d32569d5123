"""Bad MEDS input and bad task configs fail with one-line InputErrors and leave no output behind."""

from __future__ import annotations

import shutil

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rationale_sft.cli import main
from rationale_sft.cohort.extract import extract
from rationale_sft.cohort.task import load_task
from rationale_sft.config import ConfigError
from rationale_sft.errors import InputError
from meds_cases import BASE, fixture_rows, make


@pytest.fixture
def meds_dir(tmp_path):
    return make(tmp_path, fixture_rows(), n_shards=2)


def shard(meds_dir, i=0):
    return meds_dir / "data" / f"{i}.parquet"


def rewrite(path, fn):
    pq.write_table(fn(pl.read_parquet(path)).to_arrow(), path)


def run_extract(meds_dir, out, *overrides, scales=()):
    return extract(load_task(None, [*BASE, *overrides]), meds_dir, out, scales=scales)


@pytest.mark.parametrize("mutate, match", [
    (lambda df: df.drop("code"), r"0\.parquet: missing column 'code'"),
    (lambda df: df.with_columns(pl.col("time").cast(pl.String)), r"column 'time' is (large_)?string, must be a timestamp"),
    (lambda df: df.with_columns(pl.col("code").cast(pl.Categorical).to_physical()), r"column 'code' is uint32"),
    (lambda df: df.with_columns(pl.col("numeric_value").cast(pl.String)), r"'numeric_value' is (large_)?string, must be a float"),
    (lambda df: df.reverse(), r"0\.parquet: events of subject \d+ are not sorted by time"),
    (lambda df: pl.concat([df.tail(2), df.head(df.height - 2)]), r"0\.parquet: events of subject \d+ are not contiguous"),
    (lambda df: pl.concat([df, df.head(3).tail(1)]).sort("subject_id", "time", nulls_last=False),
     r"repeated event\(s\), e\.g\. subject \d+ code 'LAB//LDL' at 2010-05-02"),
])
def test_bad_data_shards(meds_dir, tmp_path, mutate, match):
    rewrite(shard(meds_dir), mutate)
    out = tmp_path / "out" / "labels.parquet"
    with pytest.raises(InputError, match=match):
        run_extract(meds_dir, out)
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_duplicates_can_be_dropped(meds_dir, tmp_path):
    rewrite(shard(meds_dir), lambda df: pl.concat([df, df.head(3).tail(1)]).sort("subject_id", "time",
                                                                                 nulls_last=False))
    summary = run_extract(meds_dir, tmp_path / "l.parquet", "on_duplicate_events=drop")
    assert summary["n_duplicate_events"] == 1 and summary["n"] == 5


def test_subject_split_across_shards(meds_dir, tmp_path):
    first = pl.read_parquet(shard(meds_dir, 0))["subject_id"][0]
    moved = pl.read_parquet(shard(meds_dir, 0)).filter(pl.col("subject_id") == first).tail(1)
    rewrite(shard(meds_dir, 1), lambda df: pl.concat([moved, df]))
    with pytest.raises(InputError, match=f"subject {first} appears in more than one data shard"):
        run_extract(meds_dir, tmp_path / "l.parquet")


def test_unknown_split_and_missing_splits(meds_dir, tmp_path):
    path = meds_dir / "metadata" / "subject_splits.parquet"
    rewrite(path, lambda df: df.with_columns(split=pl.lit("test")))
    with pytest.raises(InputError, match=r"unknown split value\(s\) \['test'\]; allowed: train, tuning, held_out"):
        run_extract(meds_dir, tmp_path / "l.parquet")
    path.unlink()
    with pytest.raises(InputError, match="subject_splits.parquet: missing"):
        run_extract(meds_dir, tmp_path / "l.parquet")


def test_not_a_meds_dir(tmp_path):
    with pytest.raises(InputError, match="not a MEDS directory"):
        run_extract(tmp_path, tmp_path / "l.parquet")


@pytest.mark.parametrize("overrides, match", [
    (["outcome_prefixes=[ICD9//290]"], "no code starts with any outcome prefix"),
    (["trigger_code=VISITT"], r"trigger_code 'VISITT' never occurs in the data \(did you mean 'VISIT'\?\)"),
    (["horizon_years=0.000001", "data_end=2000-01-01"], "empty cohort"),
])
def test_task_that_does_not_fit_the_data(meds_dir, tmp_path, overrides, match):
    out = tmp_path / "out" / "labels.parquet"
    with pytest.raises(InputError, match=match):
        run_extract(meds_dir, out, *overrides)
    assert not out.parent.exists()


@pytest.mark.parametrize("overrides, match", [
    (["horizon_years=-1"], "horizon_years must be > 0"),
    (["horizon_years=0"], "horizon_years must be > 0"),
    (["outcome_prefix=[X]"], "unknown key 'outcome_prefix' \\(did you mean 'outcome_prefixes'"),
    (["trigger_age_years=60"], "set exactly one of trigger_code"),
    (["data_end=31/10/2022"], "data_end must be a date YYYY-MM-DD"),
    (["drop_censored=maybe"], "'drop_censored' must be bool"),
])
def test_bad_task_config(overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_task(None, [*BASE, *overrides])


def test_scales_larger_than_available_leave_no_output(meds_dir, tmp_path):
    out = tmp_path / "out" / "labels.parquet"
    with pytest.raises(InputError, match=r"scale 50 needs .* use sizes <= 5"):
        run_extract(meds_dir, out, scales=(2, 50))
    assert not out.parent.exists()


def test_failed_rerun_keeps_previous_output_intact(meds_dir, tmp_path):
    out = tmp_path / "labels.parquet"
    run_extract(meds_dir, out)
    before = out.read_bytes()
    with pytest.raises(InputError):
        run_extract(meds_dir, out, "trigger_code=NOPE")
    assert out.read_bytes() == before and not list(tmp_path.glob(".*.tmp"))


def test_cli_reports_one_line_error_and_exit_code(meds_dir, tmp_path, capsys):
    shutil.rmtree(meds_dir / "metadata")
    code = main(["cohort", "extract", "--meds", str(meds_dir), "--out", str(tmp_path / "l.parquet"), *BASE])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "subject_splits.parquet: missing" in err


def test_cli_writes_labels_and_prints_summary(meds_dir, tmp_path, capsys):
    out = tmp_path / "l.parquet"
    code = main(["cohort", "extract", "--meds", str(meds_dir), "--out", str(out), "--scales", "2,4",
                 "--case-ratio", "1:1", "--subset-seed", "3", *BASE])
    printed = capsys.readouterr().out
    assert code == 0 and '"n_pos": 3' in printed and out.is_file()
    subsets = pl.read_parquet(tmp_path / "l.subsets.parquet")
    labels = pl.read_parquet(out).join(subsets, on="subject_id")
    assert labels.filter(pl.col("scale") == 4)["boolean_value"].sum() == 2  # 1:1 -> half cases


def test_timestamps_of_other_units_are_accepted(meds_dir, tmp_path):
    def to_ns(df):
        return df.with_columns(pl.col("time").cast(pl.Datetime("ns")))
    for i in (0, 1):
        rewrite(shard(meds_dir, i), to_ns)
    assert pq.read_schema(shard(meds_dir)).field("time").type == pa.timestamp("ns")
    assert run_extract(meds_dir, tmp_path / "l.parquet")["n"] == 5


def test_subjects_may_come_in_any_order_within_a_shard(meds_dir, tmp_path):
    before = run_extract(meds_dir, tmp_path / "a.parquet")
    rewrite(shard(meds_dir), lambda df: df.sort("subject_id", descending=True, maintain_order=True))
    assert run_extract(meds_dir, tmp_path / "b.parquet")["n"] == before["n"]
    assert pl.read_parquet(tmp_path / "a.parquet").equals(pl.read_parquet(tmp_path / "b.parquet"))


def test_null_codes_are_refused_with_file_and_count(meds_dir, tmp_path):
    rewrite(shard(meds_dir, 1), lambda df: df.with_columns(
        code=pl.when(pl.int_range(pl.len()) < 2).then(None).otherwise(pl.col("code"))))
    with pytest.raises(InputError, match=r"1\.parquet: 2 event\(s\) have a null code \(e\.g\. subject \d+\)"):
        run_extract(meds_dir, tmp_path / "out" / "labels.parquet")
    assert not (tmp_path / "out").exists()
