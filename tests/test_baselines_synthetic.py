"""Integration: synthetic cohort -> cohort extract (shipped adrd_5y task) -> baselines with the oracle."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from rationale_sft import config
from rationale_sft.baselines.fit import fit_baselines
from rationale_sft.cohort.extract import extract
from rationale_sft.cohort.synth import synthesize
from rationale_sft.cohort.task import load_task
from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.config.synth import SynthConfig


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    # an older cohort so that a few thousand subjects hold enough incident cases
    synthesize(config.build(SynthConfig, {"n_subjects": 3000, "seed": 1, "age_min": 60, "age_max": 80}),
               root / "meds")
    summary = extract(load_task("configs/tasks/adrd_5y.yaml"), root / "meds", root / "labels.parquet",
                      scales=(40, 160), subset_seed=0, case_ratio=3.0)
    return root, summary


@pytest.mark.slow
def test_labels_match_the_generative_truth(synthetic):
    root, summary = synthetic
    labels = pl.read_parquet(root / "labels.parquet")
    truth = pl.read_parquet(root / "meds" / "truth" / "risk.parquet")
    joined = labels.join(truth, on=["subject_id", "prediction_time"], how="left")
    assert joined["label"].null_count() == 0  # prediction time = the assessment, as in the truth file
    assert joined["boolean_value"].to_list() == joined["label"].to_list()
    assert summary["excluded"]["prior_outcome"] == int(truth["prevalent_adrd"].sum())
    assert summary["excluded"]["no_prediction_time"] == 0 and summary["n_pos"] > 30
    subsets = pl.read_parquet(root / "labels.subsets.parquet").join(labels, on="subject_id")
    per_scale = subsets.group_by("scale").agg(pl.col("boolean_value").sum()).sort("scale")
    assert per_scale["boolean_value"].to_list() == [10, 40]  # 1:3 case:control enrichment


@pytest.mark.slow
def test_baselines_with_oracle_on_synthetic(synthetic, tmp_path):
    root, _ = synthetic
    cfg = config.build(BaselinesConfig, {"min_code_count": 20}, ["lightgbm.n_estimators=150",
                                                                  "lightgbm.learning_rate=0.1"])
    metrics = fit_baselines(cfg, root / "labels.parquet", root / "meds", tmp_path / "bl")
    assert sorted(metrics) == ["age_sex_lr", "lightgbm", "lr", "oracle"]
    oracle = pl.read_parquet(tmp_path / "bl" / "predictions" / "oracle.parquet")
    truth = pl.read_parquet(root / "meds" / "truth" / "risk.parquet")
    risk = oracle.join(truth, on=["subject_id", "prediction_time"])["risk"].to_numpy()
    assert np.array_equal(oracle["predicted_boolean_probability"].to_numpy(), risk)
    assert metrics["oracle"]["auroc"] > 0.65 and all(0 <= m["auroc"] <= 1 for m in metrics.values())
