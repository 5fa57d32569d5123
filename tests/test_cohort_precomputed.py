"""`cohort extract --labels` and a grid's `data.labels`: labels computed elsewhere in the MEDS label schema are
completed with split, age and sex from the MEDS data (as `--task` would write them), and every malformed labels
file fails naming it."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl
import pytest

from rationale_sft import config, fingerprint
from rationale_sft.cli import main
from rationale_sft.cohort.extract import LABEL_COLUMNS, extract_labels, sidecar_paths
from rationale_sft.cohort.precomputed import labels_from_file
from rationale_sft.cohort.task import load_task
from rationale_sft.config.experiment import ExperimentConfig
from rationale_sft.errors import InputError
from rationale_sft.experiment import jobs
from rationale_sft.experiment.plan import plan
from meds_cases import BASE, END, PT, US, make, subject

ROWS = [*subject(1, (PT + US, "ICD10//G30"), (END, "X")), *subject(2, (END, "X"), sex="M"),
        *subject(3, (END, "X"), birth=dt.datetime(1940, 3, 1)), *subject(4, (PT + US, "ICD10//F00"), (END, "X"))]
SPLITS = pl.DataFrame({"subject_id": [1, 2, 3, 4], "split": ["train", "train", "tuning", "held_out"]})


@pytest.fixture
def meds(tmp_path):
    return make(tmp_path, ROWS, SPLITS, n_shards=2)


def label_file(tmp_path, df: pl.DataFrame, name: str = "given.parquet"):
    path = tmp_path / name
    df.write_parquet(path)
    return path


def meds_labels(**columns) -> pl.DataFrame:
    """A MEDS label table of subjects 1-4 at PT (1 and 4 positive), with ``columns`` replaced."""
    base = {"subject_id": [1, 2, 3, 4], "prediction_time": [PT] * 4, "boolean_value": [True, False, False, True],
            "integer_value": pl.Series([None] * 4, dtype=pl.Int64)}
    return pl.DataFrame(base | columns)


def test_labels_from_a_task_come_back_identical(meds, tmp_path):
    from_task, _ = extract_labels(load_task(None, BASE), meds)
    given = from_task.select("subject_id", "prediction_time", "boolean_value").sample(fraction=1.0, shuffle=True, seed=0)
    labels, summary = labels_from_file(label_file(tmp_path, given), meds)
    assert labels.equals(from_task)
    assert summary["n"] == 4 and summary["n_pos"] == 2 and summary["excluded"] == {"no_split": 0}
    assert summary["by_split"]["train"] == {"n": 2, "n_pos": 1}


def test_cli_writes_labels_summary_and_subsets(meds, tmp_path, capsys):
    out = tmp_path / "out" / "labels.parquet"
    path = label_file(tmp_path, meds_labels(prediction_time=[PT - dt.timedelta(days=i) for i in range(4)]))
    assert main(["cohort", "extract", "--meds", str(meds), "--labels", str(path), "--out", str(out),
                 "--scales", "2"]) == 0
    labels = pl.read_parquet(out)
    assert labels.columns == list(LABEL_COLUMNS)
    age = (PT - dt.timedelta(days=2) - dt.datetime(1940, 3, 1)).total_seconds() / 86_400 / 365.25
    assert labels["age"][2] == pytest.approx(age, rel=1e-12)
    assert labels["sex"].to_list() == ["F", "M", "F", "F"] and labels["split"][3] == "held_out"
    summary = json.loads(sidecar_paths(out)["summary"].read_text())
    assert summary["task"] == "labels:given.parquet" and summary["subsets"]["sizes"] == [2]
    assert pl.read_parquet(sidecar_paths(out)["subsets"])["subject_id"].sort().to_list() == [1, 2]
    assert '"n_pos": 2' in capsys.readouterr().out


def test_subjects_without_a_split_are_dropped_and_counted(tmp_path):
    meds = make(tmp_path, ROWS, SPLITS.filter(pl.col("subject_id") != 2))
    labels, summary = labels_from_file(label_file(tmp_path, meds_labels()), meds)
    assert labels["subject_id"].to_list() == [1, 3, 4] and summary["excluded"] == {"no_split": 1}


BAD = [
    (meds_labels().drop("boolean_value"), "missing column 'boolean_value'; labels need subject_id, prediction_time"),
    (meds_labels(boolean_value=[1, 0, 0, 1]), "column 'boolean_value' is Int64, must be a boolean"),
    (meds_labels(subject_id=["1", "2", "3", "4"]), "column 'subject_id' is String, must be an integer"),
    (meds_labels().with_columns(pl.col("prediction_time").dt.replace_time_zone("UTC")),
     "column 'prediction_time' is Datetime.*UTC.*must be a timestamp without time zone"),
    (meds_labels(boolean_value=[True, None, False, True]), "1 row\\(s\\) have a null boolean_value \\(e.g. subject 2\\)"),
    (pl.concat([meds_labels(), meds_labels().head(1)]), "subject 1 has more than one row at 2010-06-01 23:59:59"),
    (pl.concat([meds_labels(), meds_labels(prediction_time=[PT + US] * 4).tail(1)]),
     "subject 4 has 2 prediction times .*keep one row per subject"),
    (meds_labels(subject_id=[1, 2, 3, 99]), "1 labelled subject\\(s\\) have no events in .* \\(e.g. subject 99\\)"),
    (meds_labels().head(0), "labels file has no rows"),
]


@pytest.mark.parametrize("df, message", BAD)
def test_malformed_labels_fail_naming_the_problem(meds, tmp_path, df, message):
    with pytest.raises(InputError, match=message):
        labels_from_file(label_file(tmp_path, df), meds)


def test_labels_and_a_task_do_not_mix(meds, tmp_path, capsys):
    path = label_file(tmp_path, meds_labels())
    assert main(["cohort", "extract", "--meds", str(meds), "--labels", str(path), "--out", str(tmp_path / "x.parquet"),
                 "horizon_years=3"]) == 2
    assert "--labels takes labels computed elsewhere: drop --task" in capsys.readouterr().err
    assert not (tmp_path / "x.parquet").exists()
    with pytest.raises(InputError, match="labels file not found"):
        labels_from_file(tmp_path / "missing.parquet", meds)


def test_a_grid_takes_precomputed_labels(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(fingerprint.CACHE_ENV, str(tmp_path / "cache"))
    ids = list(range(1, 61))
    splits = pl.DataFrame({"subject_id": ids, "split": ["train"] * 40 + ["tuning"] * 10 + ["held_out"] * 10})
    meds = make(tmp_path, [r for i in ids for r in subject(i, (END, "X"))], splits)
    given = pl.DataFrame({"subject_id": ids, "prediction_time": [PT] * 60, "boolean_value": [i % 3 == 0 for i in ids]})
    path = label_file(tmp_path, given)
    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"
    overrides = [f"data.meds_dir={meds}", f"data.labels={path}", "grid.scales=[12]", "grid.seeds=[0]"]
    first = plan(config.load(ExperimentConfig, smoke, overrides), smoke.parent)
    job = next(j for j in first.jobs if j.function == "labels")
    assert job.kwargs["task"] is None and job.kwargs["labels_file"] == str(path.resolve())
    root = tmp_path / "grid"
    summary = jobs.labels(str(root / job.out_dir), str(root), **job.kwargs)
    assert summary["task"] == "labels:given.parquet" and summary["n_pos"] == 20
    assert pl.read_parquet(root / job.out_dir / jobs.LABELS).equals(labels_from_file(path, meds)[0])

    label_file(tmp_path, given.with_columns(boolean_value=~pl.col("boolean_value")))  # same path, new content
    changed = plan(config.load(ExperimentConfig, smoke, overrides), smoke.parent)
    assert {j.id for j in first.runs}.isdisjoint({j.id for j in changed.runs})
    assert main(["validate", str(smoke), *overrides]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok"
    with pytest.raises(config.ConfigError, match="data.labels needs data.meds_dir"):
        config.load(ExperimentConfig, smoke, [f"data.labels={path}"])
