"""Integration on the synthetic cohort: render, knowledge rationales and their check, end to end."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from rationale_sft import config
from rationale_sft.cli import main
from rationale_sft.cohort.extract import extract
from rationale_sft.cohort.meds_io import read_labels, scan_events
from rationale_sft.cohort.synth import synthesize
from rationale_sft.cohort.task import load_task
from rationale_sft.config.synth import SynthConfig
from rationale_sft.rationales.facts import facts_for_labels
from rationale_sft.rationales.knowledge import write_rationale

TASK = Path(__file__).resolve().parents[1] / "configs" / "tasks" / "adrd_5y.yaml"


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    synthesize(config.build(SynthConfig, {}, ["n_subjects=600"]), root / "meds")
    extract(load_task(TASK), root / "meds", root / "labels.parquet")
    return root


@pytest.mark.parametrize("template", ["chronological", "by_system", "recap", "recap_factors"])
def test_render_synthetic_cohort_without_post_index_events(synthetic, tmp_path, template):
    out = tmp_path / "render"
    assert main(["render", "--meds", str(synthetic / "meds"), "--labels", str(synthetic / "labels.parquet"),
                 "--out", str(out), "--template", template]) == 0
    ex = pl.read_parquet(out / "examples.parquet")
    labels = read_labels(synthetic / "labels.parquet")
    assert ex.height == labels.height and ex["prompt"].str.ends_with("\nAnswer:").all()
    # every diagnosis month shown in a prompt is strictly before that subject's prediction month
    # (recap_factors: the factors line cites diagnoses as "(YYYY-MM, N years before assessment)")
    months = ex.select("subject_id", pl.col("prompt").str.extract_all(r"(\n *- \d{4}-\d\d \(|\(\d{4}-\d\d, )")
                       .alias("m")).explode("m")
    months = months.drop_nulls().with_columns(pl.col("m").str.extract(r"(\d{4}-\d\d)"))
    joined = months.join(labels.select("subject_id", pl.col("prediction_time").dt.strftime("%Y-%m").alias("pm")),
                         on="subject_id")
    assert joined.height > ex.height and (joined["m"] <= joined["pm"]).all()
    # and no first diagnosis made at or after the prediction time is listed
    ev = scan_events(synthetic / "meds").filter(pl.col("code").str.starts_with("ICD10//")).collect()
    first = ev.group_by("subject_id", "code").agg(pl.col("time").min()).join(labels.select("subject_id", "prediction_time"),
                                                                               on="subject_id")
    later = first.filter(pl.col("time") >= pl.col("prediction_time"))
    assert later.height > 0
    n_before = first.filter(pl.col("time") < pl.col("prediction_time")).group_by("subject_id").len()
    counts = ex.join(n_before, on="subject_id", how="left").with_columns(pl.col("len").fill_null(0))
    assert (counts["n_history_items"] == counts["len"]).all()


def test_knowledge_rationales_on_synthetic_cohort_are_grounded(synthetic, tmp_path):
    labels = read_labels(synthetic / "labels.parquet").head(80)
    facts = facts_for_labels(synthetic / "meds", labels)
    y = dict(zip(labels["subject_id"], labels["boolean_value"]))
    rows = [{"subject_id": sid, "style": s, "mode": m, "backend": "knowledge", "model": "kb", "text": r.text,
             "conclusion": r.conclusion, "teacher_risk": r.teacher_risk}
            for sid, f in facts.items() for s in ("freeform", "stepwise") for m in ("conditioned", "blind")
            for r in [write_rationale(f, s, m, y[sid] if m == "conditioned" else None, 0)]]
    path = tmp_path / "rationales.parquet"
    pl.DataFrame(rows).write_parquet(path)
    assert main(["rationales", "check", "--rationales", str(path), "--meds", str(synthetic / "meds"),
                 "--labels", str(synthetic / "labels.parquet"), "--out", str(tmp_path / "q")]) == 0
    quality = pl.read_parquet(tmp_path / "q" / "rows.parquet")
    assert quality.height == 320 and quality["n_claims"].sum() > 320 * 5
    assert quality["n_ungrounded"].sum() == 0 and quality["n_future"].sum() == 0
    assert quality["n_contradicted"].sum() == 0 and quality["n_direction_wrong"].sum() == 0
