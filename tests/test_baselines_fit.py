"""The baselines stage on a cohort with a planted code signal: files, schema, metrics, oracle, resume, errors."""

from __future__ import annotations

import datetime as dt
import shutil

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from rationale_sft import rundir
from rationale_sft.baselines.fit import PREDICTION_SCHEMA, fit_baselines
from rationale_sft.cli import main
from rationale_sft.cohort import meds_io
from rationale_sft.cohort.extract import extract
from rationale_sft.cohort.task import load_task
from rationale_sft.config import build
from rationale_sft.config.baselines import BaselinesConfig
from rationale_sft.errors import InputError

YEAR = dt.timedelta(days=365.25)
TASK = ["trigger_code=VISIT", "outcome_prefixes=[OUTCOME]", "name=planted"]
FAST = BaselinesConfig(min_code_count=5, lightgbm=build(BaselinesConfig, {}, ["lightgbm.n_estimators=200",
                                                                           "lightgbm.learning_rate=0.1"]).lightgbm)


def planted_cohort(n: int, seed: int = 0) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """Events, splits and true risks: the outcome depends mostly on code SIG and a high LAB value."""
    g = np.random.default_rng(seed)
    rows, truth = [], []
    for sid in range(n):
        pt = dt.datetime(2010, 1, 1, 23, 59, 59) + dt.timedelta(days=int(g.integers(0, 700)))
        age = g.uniform(55, 75)
        sig, lab = g.random() < 0.3, g.normal()
        logit = -2.6 + 0.03 * (age - 65) + 2.8 * sig + 1.5 * (lab > 0.8) - 0.4 * (sig and lab > 0.8)
        risk = 1 / (1 + np.exp(-logit))
        rows += [(sid, None, "SEX//" + "FM"[sid % 2], None), (sid, pt - age * YEAR, "MEDS_BIRTH", None),
                 (sid, pt - dt.timedelta(days=2), "LAB", lab), (sid, pt, "VISIT", None),
                 (sid, pt + 6 * YEAR, "FOLLOWUP", None)]
        rows += [(sid, pt - g.uniform(0.1, 8) * YEAR, f"NOISE{j}", None) for j in range(6) if g.random() < 0.3]
        if sig:
            rows.append((sid, pt - g.uniform(0.1, 8) * YEAR, "SIG", None))
        if g.random() < risk:
            rows.append((sid, pt + g.uniform(0.01, 4.9) * YEAR, "OUTCOME", None))
        truth.append((sid, pt, risk))
    ev = pl.DataFrame(rows, schema={"subject_id": pl.Int64, "time": pl.Datetime("us"), "code": pl.String,
                                    "numeric_value": pl.Float32}, orient="row")
    splits = pl.DataFrame({"subject_id": list(range(n)),
                           "split": [("train", "train", "train", "tuning", "held_out")[i % 5] for i in range(n)]})
    risk = pl.DataFrame(truth, schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                       "risk": pl.Float64}, orient="row")
    return ev, splits, risk


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    ev, splits, risk = planted_cohort(1500)
    meds_dir = meds_io.write_meds(root / "meds", ev, splits, n_shards=3)
    rundir.write_parquet(risk, meds_dir / "truth" / "risk.parquet")
    labels = root / "labels.parquet"
    extract(load_task(None, TASK), meds_dir, labels, scales=(100, 400), subset_seed=0)
    return meds_dir, labels


@pytest.fixture(scope="module")
def fitted(cohort, tmp_path_factory):
    meds_dir, labels = cohort
    out = tmp_path_factory.mktemp("fit") / "baselines"
    return out, fit_baselines(FAST, labels, meds_dir, out)


@pytest.mark.slow
def test_files_and_prediction_schema(cohort, fitted):
    out, metrics = fitted
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert files == ["DONE", "config.yaml", "manifest.json", "metrics.json", "predictions/age_sex_lr.parquet",
                     "predictions/lightgbm.parquet", "predictions/lr.parquet", "predictions/oracle.parquet",
                     "vocab.json"]
    held_out = pl.read_parquet(cohort[1]).filter(pl.col("split") == "held_out")
    for model in metrics:
        pred = pl.read_parquet(out / "predictions" / f"{model}.parquet")
        assert pred.schema == pl.Schema(PREDICTION_SCHEMA)
        assert pred["subject_id"].to_list() == held_out["subject_id"].to_list()
        assert pred["predicted_boolean_probability"].is_between(0, 1).all()


@pytest.mark.slow
def test_metrics_recomputed_from_predictions(fitted):
    out, metrics = fitted
    assert rundir.read_json(out / "metrics.json") == metrics
    for model, m in metrics.items():
        pred = pl.read_parquet(out / "predictions" / f"{model}.parquet")
        y, p = pred["boolean_value"].to_numpy(), pred["predicted_boolean_probability"].to_numpy()
        assert m["auroc"] == pytest.approx(roc_auc_score(y, p), abs=1e-12)
        assert m["auprc"] == pytest.approx(average_precision_score(y, p), abs=1e-12)
        assert (m["n"], m["n_pos"]) == (len(y), int(y.sum()))


@pytest.mark.slow
def test_planted_signal_is_found(fitted):
    _, m = fitted
    assert m["lightgbm"]["auroc"] > m["age_sex_lr"]["auroc"] + 0.15
    assert m["lr"]["auroc"] > m["age_sex_lr"]["auroc"] + 0.15
    assert m["oracle"]["auroc"] >= m["lightgbm"]["auroc"] - 0.05  # the truth is (nearly) the ceiling


@pytest.mark.slow
def test_resume_skips_and_reruns_are_identical(cohort, fitted, tmp_path):
    out, metrics = fitted
    stamp = (out / "DONE").read_text()
    assert fit_baselines(FAST, cohort[1], cohort[0], out) == metrics and (out / "DONE").read_text() == stamp
    again = tmp_path / "again"
    fit_baselines(FAST, cohort[1], cohort[0], again)
    for model in metrics:
        assert pl.read_parquet(again / "predictions" / f"{model}.parquet").equals(
            pl.read_parquet(out / "predictions" / f"{model}.parquet"))


@pytest.mark.slow
def test_oracle_only_with_truth_and_subset_training(cohort, tmp_path):
    meds_dir, labels = cohort
    bare = tmp_path / "bare"
    shutil.copytree(meds_dir, bare, ignore=shutil.ignore_patterns("truth"))
    cfg = build(BaselinesConfig, {"models": ["age_sex_lr", "oracle"], "min_code_count": 5})
    subsets = pl.read_parquet(labels.with_name("labels.subsets.parquet"))
    ids = subsets.filter(pl.col("scale") == 400)["subject_id"].to_list()
    metrics = fit_baselines(cfg, labels, bare, tmp_path / "out", train_ids=ids)
    assert list(metrics) == ["age_sex_lr"]
    manifest = rundir.read_json(tmp_path / "out" / "manifest.json")
    assert manifest["n_train"] == 400 and "no truth" in manifest["models"]["oracle"]["source"]


def test_cli_with_subsets_and_errors(cohort, tmp_path, capsys):
    meds_dir, labels = cohort
    subsets = labels.with_name("labels.subsets.parquet")
    base = ["baselines", "--labels", str(labels), "--meds", str(meds_dir), "--out", str(tmp_path / "b")]
    assert main([*base, "--train-subsets", str(subsets), "--scale", "100", "models=[age_sex_lr, oracle]"]) == 0
    assert "age_sex_lr" in capsys.readouterr().out
    assert main([*base, "--train-subsets", str(subsets), "--scale", "7"]) == 2
    assert "available scales: 100, 400" in capsys.readouterr().err
    assert main([*base, "models=[xgb]"]) == 2
    assert "unknown model(s) ['xgb']" in capsys.readouterr().err


@pytest.mark.parametrize("mutate, match", [
    (lambda df: df.drop("split"), "missing column 'split'"),
    (lambda df: df.with_columns(pl.col("age").cast(pl.Float32)), "column 'age' is Float32, must be Float64"),
    (lambda df: df.with_columns(split=pl.lit("test")), r"split must be one of train, tuning, held_out"),
    (lambda df: df.with_columns(boolean_value=pl.lit(False)), "the train rows need both classes"),
    (lambda df: df.head(0), "has no rows"),
])
def test_bad_labels(cohort, tmp_path, mutate, match):
    bad = tmp_path / "bad.parquet"
    mutate(pl.read_parquet(cohort[1])).write_parquet(bad)
    with pytest.raises(InputError, match=match):
        fit_baselines(FAST, bad, cohort[0], tmp_path / "out")
    assert not (tmp_path / "out" / "DONE").exists()


def test_train_ids_outside_the_train_split(cohort, tmp_path):
    held = pl.read_parquet(cohort[1]).filter(pl.col("split") == "held_out")["subject_id"][0]
    with pytest.raises(InputError, match=f"e.g. {held}.*not in the train split"):
        fit_baselines(FAST, cohort[1], cohort[0], tmp_path / "out", train_ids=[held])
