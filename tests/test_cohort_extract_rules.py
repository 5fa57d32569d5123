"""Cohort extraction on hand-made MEDS fixtures: window edges, exclusion and follow-up rules, output files."""

from __future__ import annotations

import datetime as dt
import json

import polars as pl
import pytest
from meds_cases import BASE, END, PT, fixture_rows, make, subject

from rationale_sft.cohort.extract import RULES, extract, extract_labels, input_events, sidecar_paths
from rationale_sft.cohort.task import load_task
from rationale_sft.config.task import TaskConfig


def test_window_edges_and_rules(tmp_path):
    meds_dir = make(tmp_path, fixture_rows())
    labels, summary = extract_labels(load_task(None, BASE), meds_dir)
    got = dict(zip(labels["subject_id"], labels["boolean_value"]))
    assert got == {2: True, 3: True, 4: False, 8: True, 9: False}
    assert summary["excluded"] == {"no_split": 0, "no_prediction_time": 1, "age_out_of_range": 0,
                                   "prior_outcome": 2, "no_followup": 1, "censored": 1}
    assert summary["n"] + sum(summary["excluded"].values()) == summary["n_subjects_in_data"] == 10
    assert summary["n_pos"] == 3 and summary["prevalence"] == pytest.approx(3 / 5)
    assert labels.filter(pl.col("subject_id") == 9)["sex"].item() == "M"
    assert labels["age"][0] == pytest.approx((PT - dt.datetime(1950, 1, 1)).total_seconds() / 86400 / 365.25)


def test_keep_censored_and_keep_prior(tmp_path):
    meds_dir = make(tmp_path, fixture_rows())
    labels, s = extract_labels(load_task(None, BASE + ["drop_censored=false", "exclude_prior_outcome=false"]),
                               meds_dir)
    got = dict(zip(labels["subject_id"], labels["boolean_value"]))
    assert got[5] is False and 1 in got and 10 in got  # censored kept as negative; prior outcomes kept
    assert s["excluded"]["censored"] == 0 and s["excluded"]["prior_outcome"] == 0


def test_data_end_caps_window_and_follow_up(tmp_path):
    rows = (subject(1, (PT + dt.timedelta(days=1000), "ICD10//G30"), (END, "X")) + subject(2, (END, "X"))
            + subject(3, (PT + dt.timedelta(days=100), "ICD10//G30"), (END, "X")))
    meds_dir = make(tmp_path, rows)
    end = (PT + dt.timedelta(days=500)).date().isoformat()
    labels, s = extract_labels(load_task(None, BASE + [f"data_end={end}"]), meds_dir)
    assert labels["subject_id"].to_list() == [3] and s["excluded"]["censored"] == 2
    kept, _ = extract_labels(load_task(None, BASE + [f"data_end={end}", "drop_censored=false"]), meds_dir)
    # an outcome after the administrative end is outside the observed window: a negative, not a case
    assert dict(zip(kept["subject_id"], kept["boolean_value"])) == {1: False, 2: False, 3: True}


def test_end_of_data_defaults_to_last_event(tmp_path):
    rows = (subject(1, (PT + dt.timedelta(days=3 * 365), "X")) + subject(2, (PT + dt.timedelta(days=6 * 365), "X"))
            + subject(3, (PT + dt.timedelta(days=9), "ICD10//G30")))
    labels, s = extract_labels(load_task(None, BASE), make(tmp_path, rows))
    assert labels["subject_id"].to_list() == [2, 3] and s["excluded"]["censored"] == 1


def test_age_trigger_and_age_limits(tmp_path):
    rows = (subject(1, (dt.datetime(2026, 1, 1), "X"), birth=dt.datetime(1960, 1, 1))
            + subject(2, (dt.datetime(2012, 1, 1), "ICD10//F00"), (END, "X"), birth=dt.datetime(1950, 1, 1)))
    meds_dir = make(tmp_path, rows)
    labels, _ = extract_labels(load_task(None, ["trigger_age_years=60", "outcome_prefixes=[ICD10//F00]"]),
                               meds_dir)
    assert labels["age"].to_list() == pytest.approx([60.0, 60.0])
    assert labels["prediction_time"][0] == dt.datetime(1960, 1, 1) + dt.timedelta(days=60 * 365.25)
    assert labels["boolean_value"].to_list() == [False, True]
    limited, s = extract_labels(load_task(None, BASE + ["min_age_years=55"]), meds_dir)
    assert limited["subject_id"].to_list() == [2] and s["excluded"]["age_out_of_range"] == 1


def test_subject_without_split_is_excluded(tmp_path):
    splits = pl.DataFrame({"subject_id": [2, 3], "split": ["train", "held_out"]})
    labels, s = extract_labels(load_task(None, BASE), make(tmp_path, fixture_rows([2, 3, 9]), splits))
    assert labels["split"].to_list() == ["train", "held_out"] and s["excluded"]["no_split"] == 1


def test_input_events_are_strictly_before_prediction_time(tmp_path):
    meds_dir = make(tmp_path, fixture_rows(), n_shards=3)
    labels, _ = extract_labels(load_task(None, BASE), meds_dir)
    inputs = input_events(meds_dir, labels).collect()
    assert inputs.filter(pl.col("time") >= pl.col("prediction_time")).height == 0
    assert "VISIT" not in inputs["code"].to_list()  # the trigger sits at the prediction time itself
    assert set(inputs.filter(pl.col("time").is_null())["code"]) == {"SEX//F", "SEX//M"}
    assert set(inputs["subject_id"]) == set(labels["subject_id"])


def test_extract_writes_labels_summary_and_subsets(tmp_path):
    meds_dir = make(tmp_path, fixture_rows())
    out = tmp_path / "out" / "labels.parquet"
    summary = extract(load_task(None, BASE), meds_dir, out, scales=(2, 4), subset_seed=1)
    labels = pl.read_parquet(out)
    assert labels.schema == pl.Schema({"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                       "boolean_value": pl.Boolean, "split": pl.String, "age": pl.Float64,
                                       "sex": pl.String})
    assert json.loads(sidecar_paths(out)["summary"].read_text()) == json.loads(json.dumps(summary, default=str))
    subsets = pl.read_parquet(sidecar_paths(out)["subsets"])
    assert subsets.group_by("scale").len().sort("scale")["len"].to_list() == [2, 4]
    assert sorted(p.name for p in out.parent.iterdir()) == ["labels.parquet", "labels.subsets.parquet",
                                                            "labels.summary.json"]
    assert list(summary["excluded"]) == list(RULES)


def test_shipped_adrd_task_parses():
    task = load_task("configs/tasks/adrd_5y.yaml")
    assert task == TaskConfig(name="adrd_5y", trigger_code="UKB//ASSESSMENT", horizon_years=5.0,
                              outcome_prefixes=("ICD10//F00", "ICD10//F01", "ICD10//F02", "ICD10//F03",
                                                "ICD10//G30"),
                              censor_codes=("MEDS_DEATH", "UKB//LOST_TO_FOLLOWUP"), data_end="2022-10-31")
