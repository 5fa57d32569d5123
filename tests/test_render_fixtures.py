"""Hand-built MEDS fixtures for render, knowledge and check tests (imported by those test modules)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

PT = dt.datetime(2009, 6, 15, 23, 59, 59)
VISIT = dt.datetime(2009, 6, 15, 10, 0, 0)

CODES = {
    "MEDS_BIRTH": "Birth", "SEX//F": "Female", "SEX//M": "Male",
    "UKB//ASSESSMENT": "Baseline assessment visit (end)",
    "UKB//EDUCATION_YEARS": "Years of full-time education (years)",
    "UKB//APOE_E4_ALLELES": "Number of APOE e4 alleles",
    "UKB//SMOKING//CURRENT": "Current smoker",
    "UKB//BMI": "Body mass index (kg/m2)", "UKB//LDL": "LDL cholesterol (mmol/L)",
    "UKB//SBP": "Systolic blood pressure (mmHg)", "UKB//HBA1C": "HbA1c (mmol/mol)",
    "UKB//HEARING_DIFFICULTY": "Hearing difficulty",
    "ICD10//I10": "Essential (primary) hypertension", "ICD10//E11": "Type 2 diabetes mellitus",
    "ICD10//R41": "Other symptoms and signs involving cognitive functions and awareness",
    "ICD10//F03": "Unspecified dementia", "ICD10//G30": "Alzheimer's disease",
    "ICD10//G47": "Sleep disorders", "ICD10//F32": "Depressive episode",
    "ICD10//J45": "Asthma", "ICD10//M17": "Gonarthrosis [arthrosis of knee]", "ICD10//K21": "Gastro-oesophageal reflux disease",
    "ICD10//H91": "Other hearing loss", "ICD10//I48": "Atrial fibrillation and flutter",
    "ICD10//E78": "Disorders of lipoprotein metabolism and other lipidaemias", "ICD10//S06": "Intracranial injury",
}


def _ev(sid, time, code, value=None):
    return {"subject_id": sid, "time": time, "code": code, "numeric_value": value}


def _d(y, m, d=1):
    return dt.datetime(y, m, d, 12, 0, 0)


def subject_events() -> list[dict]:
    """Events of five subjects; subject 1 has future (post-assessment) diagnoses and one at the assessment."""
    rows = [_ev(1, None, "SEX//F"), _ev(1, _d(1942, 5), "MEDS_BIRTH"),
            _ev(1, _d(2002, 3, 10), "ICD10//I10"), _ev(1, _d(2005, 1), "ICD10//E11"),
            _ev(1, _d(2008, 12), "ICD10//R41"),
            _ev(1, VISIT, "UKB//EDUCATION_YEARS", 10.0), _ev(1, VISIT, "UKB//APOE_E4_ALLELES", 1.0),
            _ev(1, VISIT, "UKB//BMI", 31.2), _ev(1, VISIT, "UKB//LDL", 4.6), _ev(1, VISIT, "UKB//SMOKING//CURRENT"),
            _ev(1, VISIT, "UKB//SBP", 152.0), _ev(1, PT, "UKB//ASSESSMENT"), _ev(1, PT, "ICD10//G47"),
            _ev(1, _d(2010, 2), "ICD10//I10"), _ev(1, _d(2011, 4), "ICD10//F32"), _ev(1, _d(2012, 1), "ICD10//F03")]
    rows += [_ev(2, None, "SEX//M"), _ev(2, _d(1950, 2), "MEDS_BIRTH"),
             _ev(2, VISIT, "UKB//EDUCATION_YEARS", 17.0), _ev(2, VISIT, "UKB//APOE_E4_ALLELES", 0.0),
             _ev(2, VISIT, "UKB//BMI", 24.0), _ev(2, VISIT, "UKB//LDL", 2.9), _ev(2, PT, "UKB//ASSESSMENT")]
    many = ["J45", "M17", "K21", "H91", "I48", "E78", "S06", "F32", "I10", "E11", "G47", "R41"]
    rows += [_ev(3, None, "SEX//M"), _ev(3, _d(1943, 1), "MEDS_BIRTH")]
    rows += [_ev(3, _d(1990 + i, 1 + i % 12), f"ICD10//{c}") for i, c in enumerate(many)]
    rows += [_ev(3, VISIT, "UKB//EDUCATION_YEARS", 9.0), _ev(3, VISIT, "UKB//APOE_E4_ALLELES", 2.0),
             _ev(3, PT, "UKB//ASSESSMENT")]
    rows += [_ev(4, None, "SEX//F"), _ev(4, _d(1945, 7), "MEDS_BIRTH"), _ev(4, _d(2001, 3), "ICD10//J45"),
             _ev(4, _d(2003, 5), "ICD10//I10"), _ev(4, _d(2006, 9), "ICD10//H91"), _ev(4, _d(2008, 2), "ICD10//I48"),
             _ev(4, _d(2009, 5, 1), "ICD10//R41"), _ev(4, VISIT, "UKB//HBA1C", 41.0), _ev(4, PT, "UKB//ASSESSMENT")]
    rows += [_ev(5, None, "SEX//F"), _ev(5, _d(1940, 1), "MEDS_BIRTH"), _ev(5, PT, "UKB//ASSESSMENT"),
             _ev(5, _d(2011, 1), "ICD10//G30")]
    return rows


def write_meds(root: Path, events: list[dict] | None = None, codes: dict[str, str] | None = None) -> Path:
    """A MEDS directory (data, codes, dataset.json, splits) at ``root``; returns ``root``."""
    ev = pl.DataFrame(events or subject_events(), schema={"subject_id": pl.Int64, "time": pl.Datetime("us"),
                                                          "code": pl.String, "numeric_value": pl.Float32})
    ev = ev.sort(["subject_id", "time"], nulls_last=False)
    (root / "data").mkdir(parents=True, exist_ok=True)
    (root / "metadata").mkdir(parents=True, exist_ok=True)
    ev.write_parquet(root / "data" / "0.parquet")
    codes = CODES if codes is None else codes
    pl.DataFrame({"code": list(codes), "description": list(codes.values()),
                  "parent_codes": [[] for _ in codes]},
                 schema={"code": pl.String, "description": pl.String, "parent_codes": pl.List(pl.String)}
                 ).write_parquet(root / "metadata" / "codes.parquet")
    (root / "metadata" / "dataset.json").write_text(json.dumps({"dataset_name": "fixture", "meds_version": "0.3"}))
    sids = sorted(set(ev["subject_id"].to_list()))
    pl.DataFrame({"subject_id": sids, "split": ["train" if s % 2 else "held_out" for s in sids]}).write_parquet(
        root / "metadata" / "subject_splits.parquet")
    return root


def write_labels(path: Path, subjects: tuple[int, ...] = (1, 2, 3, 4, 5)) -> Path:
    """A labels parquet (contract section 2) for the fixture subjects, all at the same prediction time."""
    info = {1: (True, 67.1, "F"), 2: (False, 59.3, "M"), 3: (False, 66.4, "M"), 4: (False, 63.9, "F"),
            5: (True, 69.4, "F")}
    pl.DataFrame({"subject_id": list(subjects), "prediction_time": [PT] * len(subjects),
                  "boolean_value": [info[s][0] for s in subjects],
                  "split": ["train" if s % 2 else "held_out" for s in subjects],
                  "age": [info[s][1] for s in subjects], "sex": [info[s][2] for s in subjects]},
                 schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"), "boolean_value": pl.Boolean,
                         "split": pl.String, "age": pl.Float64, "sex": pl.String}).write_parquet(path)
    return path


def test_fixture_is_sorted_meds(tmp_path):
    root = write_meds(tmp_path / "meds")
    ev = pl.read_parquet(root / "data" / "0.parquet")
    assert ev.schema["numeric_value"] == pl.Float32
    assert ev["subject_id"].is_sorted()
    assert pl.read_parquet(write_labels(tmp_path / "labels.parquet"))["boolean_value"].sum() == 2
