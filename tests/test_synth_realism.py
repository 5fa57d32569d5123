"""The synthetic cohort looks like a cohort: comorbidity, age gradients, heavy tails, textbook links."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rationale_sft import config
from rationale_sft.cohort.synth import synthesize
from rationale_sft.config.synth import SynthConfig


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    out = tmp_path_factory.mktemp("synth_realism")
    synthesize(config.build(SynthConfig, {"n_subjects": 10000, "calibration_n": 5000}), out)
    data = pl.read_parquet(out / "data" / "*.parquet")
    truth = pl.read_parquet(out / "truth" / "risk.parquet")
    birth = data.filter(pl.col("code") == "MEDS_BIRTH").select("subject_id", birth="time")
    people = truth.join(birth, on="subject_id").with_columns(
        age=(pl.col("prediction_time") - pl.col("birth")).dt.total_days() / 365.25)
    return data, people


def _has(data: pl.DataFrame, people: pl.DataFrame, code: str) -> np.ndarray:
    ids = set(data.filter(pl.col("code") == code)["subject_id"])
    return people["subject_id"].is_in(list(ids)).to_numpy()


def test_comorbidity_cardiometabolic_codes_cluster(cohort):
    data, people = cohort
    diabetes, hypertension, asthma = (_has(data, people, f"ICD10//{c}") for c in ("E11", "I10", "J45"))
    assert hypertension[diabetes].mean() > 1.3 * hypertension[~diabetes].mean()
    # across body systems the link is weaker than within
    ratio_within = hypertension[diabetes].mean() / hypertension[~diabetes].mean()
    ratio_across = asthma[diabetes].mean() / max(asthma[~diabetes].mean(), 1e-9)
    assert ratio_within > ratio_across


def test_older_people_have_more_diagnoses_before_the_assessment(cohort):
    data, people = cohort
    pre = (data.filter(pl.col("code").str.starts_with("ICD10//")).join(people, on="subject_id")
           .filter(pl.col("time") < pl.col("prediction_time")).group_by("subject_id").len())
    counts = people.join(pre, on="subject_id", how="left").with_columns(pl.col("len").fill_null(0))
    young = counts.filter(pl.col("age") < 50)["len"].mean()
    old = counts.filter(pl.col("age") >= 60)["len"].mean()
    assert old > 1.2 * young


def test_prevalences_are_heavy_tailed(cohort):
    data, people = cohort
    prev = (data.filter(pl.col("code").str.starts_with("ICD10//")).group_by("code").len()
            .with_columns(share=pl.col("len") / people.height).sort("share", descending=True))
    assert prev["code"][0] in ("ICD10//I10", "ICD10//E78") and prev["share"][0] > 0.15
    assert prev.filter(pl.col("share") >= 0.05).height < 60  # a few common codes ...
    assert prev.filter(pl.col("share") < 0.001).height > 300  # ... and a long tail of rare ones


def test_measured_risk_factors_drive_their_codes_and_adrd_risk(cohort):
    data, people = cohort
    sbp = data.filter(pl.col("code") == "UKB//SBP").select("subject_id", sbp="numeric_value")
    apoe = data.filter(pl.col("code") == "UKB//APOE_E4_ALLELES").select("subject_id", apoe="numeric_value")
    p = people.join(sbp, on="subject_id").join(apoe, on="subject_id").sort("subject_id")
    hypertension = _has(data, p, "ICD10//I10")
    high = p["sbp"].to_numpy() >= 160
    assert hypertension[high].mean() > 1.5 * hypertension[p["sbp"].to_numpy() < 120].mean()
    risk = p["risk"].to_numpy()
    assert np.median(risk[p["apoe"].to_numpy() == 1]) > 1.5 * np.median(risk[p["apoe"].to_numpy() == 0])
