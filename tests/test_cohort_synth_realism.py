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


def test_logh_textbook_is_a_linear_function_of_the_observed_history(cohort):
    """Rebuild the textbook features from the MEDS rows alone; they explain logh_textbook exactly."""
    from rationale_sft.cohort.synth_hazard import FEATURE_CODES

    data, people = cohort
    pre = data.join(people.select("subject_id", "prediction_time"), on="subject_id").filter(
        pl.col("time") < pl.col("prediction_time"))
    value = {c: pre.filter(pl.col("code") == f"UKB//{c}").sort("subject_id")["numeric_value"].to_numpy()
             for c in ("APOE_E4_ALLELES", "EDUCATION_YEARS", "HEARING_DIFFICULTY", "LDL", "MET_MIN_WEEK", "HBA1C",
                       "SBP", "BMI", "ALCOHOL_UNITS_WEEK", "SOCIAL_ISOLATION", "PM25", "VISION_PROBLEM")}
    has = {k: np.isin(people["subject_id"].to_numpy(),
                      pre.filter(pl.col("code").is_in([f"ICD10//{c}" for c in codes]))["subject_id"].to_numpy())
           for k, codes in FEATURE_CODES.items()}
    current = np.isin(people["subject_id"].to_numpy(),
                      pre.filter(pl.col("code") == "UKB//SMOKING//CURRENT")["subject_id"].to_numpy())
    x = [value["APOE_E4_ALLELES"] == 1, value["APOE_E4_ALLELES"] == 2, value["EDUCATION_YEARS"] <= 10,
         (value["HEARING_DIFFICULTY"] == 1) | has["hearing_loss"], value["LDL"] > 3, value["MET_MIN_WEEK"] < 600,
         has["diabetes"] | (value["HBA1C"] >= 48), has["hypertension"] | (value["SBP"] >= 140),
         has["obesity"] | (value["BMI"] >= 30), has["alcohol"] | (value["ALCOHOL_UNITS_WEEK"] > 21),
         value["SOCIAL_ISOLATION"] >= 2, np.maximum(value["PM25"] - 10, 0),
         (value["VISION_PROBLEM"] == 1) | has["vision_loss"], current, people["age"].to_numpy(),
         (people["subject_id"].is_in(data.filter(pl.col("code") == "SEX//F")["subject_id"])).to_numpy(),
         *(has[k] for k in FEATURE_CODES if k not in ("hearing_loss", "diabetes", "hypertension", "obesity",
                                                       "alcohol", "vision_loss"))]
    design = np.column_stack([np.ones(people.height), *(np.asarray(v, float) for v in x)])
    y = people["logh_textbook"].to_numpy()
    fit, *_ = np.linalg.lstsq(design, y, rcond=None)
    assert np.abs(design @ fit - y).max() < 1e-4
    assert np.abs(design[:, :-1] @ np.linalg.lstsq(design[:, :-1], y, rcond=None)[0] - y).max() > 0.01


def test_memory_complaints_precede_incident_dementia(cohort):
    data, people = cohort
    adrd = ("ICD10//F00", "ICD10//F01", "ICD10//F02", "ICD10//F03", "ICD10//G30")
    onset = (data.filter(pl.col("code").is_in(adrd)).group_by("subject_id").agg(onset=pl.col("time").min())
             .join(people, on="subject_id").filter(pl.col("onset") > pl.col("prediction_time")))
    r41 = data.filter(pl.col("code") == "ICD10//R41").join(people, on="subject_id").filter(
        pl.col("time") > pl.col("prediction_time")).select("subject_id", r41="time")
    cases = onset.join(r41, on="subject_id", how="left")
    before = cases.filter(pl.col("r41") < pl.col("onset")).height / cases.height
    others = r41.filter(~pl.col("subject_id").is_in(onset["subject_id"].implode())).height / people.height
    assert cases.height > 20 and before > 0.15 and before > 5 * others
