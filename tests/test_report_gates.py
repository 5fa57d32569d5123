"""Quality gates: generated-rationale quality on hand-made score tables, the gates they fail, the verdict.

Teacher rationales of the fixture subjects stand in for a student that writes what the teacher writes;
each test plants one defect (a loop, a missing marker, a wrong age, a wrong sex, low label mass) and checks
that exactly the matching gate fails.
"""

from __future__ import annotations

import json

import polars as pl
import pytest

from rationale_sft.cohort.meds_io import read_labels
from rationale_sft.config import build
from rationale_sft.config.report import ReportConfig
from rationale_sft.experiment.runs import result_metrics
from rationale_sft.rationales.facts import facts_for_labels
from rationale_sft.rationales.knowledge import write_rationale
from rationale_sft.report import write_report
from rationale_sft.report.gates import RATIONALE_GATES, failed_gates, gate_table, gated_verdict
from rationale_sft.rundir import read_json, write_json, write_parquet
from rationale_sft.score import quality
from rationale_sft.score.stage import SCORE_SCHEMA
from test_render_fixtures import write_labels, write_meds
from test_report_build import make_grid_run

CFG = build(ReportConfig, {"n_boot": 200})


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("gates")
    meds = write_meds(root / "meds")
    labels = read_labels(write_labels(root / "labels.parquet"))
    facts = facts_for_labels(meds, labels)
    return {"meds": meds, "labels": labels, "facts": facts, "root": root}


def teacher_texts(world, seed: int = 0, style: str = "freeform") -> dict[int, str]:
    return {sid: write_rationale(f, style, "blind", None, seed).text for sid, f in sorted(world["facts"].items())}


def scores(world, texts: dict[int, str], marker: bool | list[bool] = True, mass: float = 0.97) -> pl.DataFrame:
    labels = world["labels"].sort("subject_id")
    n = labels.height
    return pl.DataFrame({
        "subject_id": labels["subject_id"], "prediction_time": labels["prediction_time"],
        "label": labels["boolean_value"], "p_yes": [0.2 + 0.1 * i for i in range(n)], "label_mass": [mass] * n,
        "p_direct": [0.5] * n, "conclusion": ["No"] * n,
        "marker_found": marker if isinstance(marker, list) else [marker] * n,
        "generated_text": [texts[s] for s in labels["subject_id"]], "rationale_conclusion": [None] * n,
        "n_prompt_tokens": [100] * n, "n_generated_tokens": [80] * n, "n_history_dropped": [0] * n,
    }, schema=SCORE_SCHEMA)


def run_gates(world, tmp_path, table: pl.DataFrame) -> dict[str, bool]:
    """The rationale-arm gates of one run scored as ``table``: ``{gate: passed}``."""
    write_parquet(table, tmp_path / "scores.parquet")
    rows = quality.generation_quality(table, world["meds"], world["labels"])
    row = {"run_id": "r", "arm": "freeform", "model": "m", "scale": 10, "seed": 0, **result_metrics(tmp_path),
           **quality.summarise(rows)}
    t = gate_table(pl.DataFrame([row]), CFG, {})
    return dict(zip(t["gate"].to_list(), t["passed"].to_list()))


def test_teacher_rationales_pass_every_generation_gate(world, tmp_path):
    for seed in range(6):  # every opening of the writer
        for style in ("freeform", "stepwise"):
            rows = quality.generation_quality(scores(world, teacher_texts(world, seed, style)), world["meds"],
                                              world["labels"])
            assert rows["age_correct"].all() and rows["sex_correct"].all() and not rows["loops"].any(), (seed, style)
            assert quality.summarise(rows)["gen_grounding_rate"] == 1.0
    assert all(run_gates(world, tmp_path, scores(world, teacher_texts(world))).values())


def test_reversed_factor_directions_are_counted_but_not_gated(world, tmp_path):
    texts = teacher_texts(world)
    right = quality.summarise(quality.generation_quality(scores(world, texts), world["meds"], world["labels"]))
    flipped = {sid: t.replace(" raises ", " lowers ") for sid, t in texts.items()}
    assert flipped != texts
    rows = quality.generation_quality(scores(world, flipped), world["meds"], world["labels"])
    wrong = quality.summarise(rows)
    assert right["gen_direction_accuracy"] == 1.0
    assert int(rows["n_direction_checked"].sum()) > 0 and wrong["gen_direction_accuracy"] < 1.0
    assert run_gates(world, tmp_path, scores(world, flipped)) == run_gates(world, tmp_path, scores(world, texts))


def test_looping_generation_fails_the_loop_gate(world, tmp_path):
    texts = teacher_texts(world)
    texts[2] += " and the estimated risk is high" * 4
    assert run_gates(world, tmp_path, scores(world, texts)) == {**dict.fromkeys(RATIONALE_GATES, True), "loops": False}


def test_missing_marker_fails_the_marker_gate(world, tmp_path):
    table = scores(world, teacher_texts(world), marker=[True, True, False, True, True])
    assert run_gates(world, tmp_path, table) == {**dict.fromkeys(RATIONALE_GATES, True), "marker": False}


def test_wrong_age_fails_the_age_gate(world, tmp_path):
    texts = teacher_texts(world)
    texts[3] = "At 81, the baseline risk is set by age. " + texts[3]  # subject 3 is 66
    got = run_gates(world, tmp_path, scores(world, texts))
    assert got == {**dict.fromkeys(RATIONALE_GATES, True), "age_correct": False}


def test_wrong_sex_fails_the_sex_gate(world, tmp_path):
    texts = teacher_texts(world)
    texts[1] += " This man is at risk."  # subject 1 is a woman
    got = run_gates(world, tmp_path, scores(world, texts))
    assert got == {**dict.fromkeys(RATIONALE_GATES, True), "sex_correct": False}
    rows = quality.generation_quality(scores(world, texts), world["meds"], world["labels"])
    assert rows.filter(pl.col("subject_id") == 1)["sex_correct"].to_list() == [False]


def test_low_label_mass_and_silent_generation_fail_their_gates(world, tmp_path):
    assert run_gates(world, tmp_path, scores(world, teacher_texts(world), mass=0.5))["label_mass"] is False
    silent = run_gates(world, tmp_path, scores(world, dict.fromkeys(world["facts"], "Risk is hard to say.")))
    assert not silent["grounding"] and not silent["age_correct"] and not silent["sex_correct"] and silent["loops"]


def test_label_only_gate_against_lr_and_line_count():
    runs = pl.DataFrame({"run_id": ["a", "b", "c"], "arm": ["label_only"] * 3, "model": ["m"] * 3,
                         "scale": [300, 900, 900], "seed": [0, 0, 1], "auroc": [0.5, 0.72, 0.70]})
    refs = {"b": {"lr": 0.77, "lines": 0.735}, "c": {"lr": 0.75, "lines": 0.735}}
    t = gate_table(runs, CFG, refs)
    assert t["scale"].to_list() == [900, 900] and t["run_id"].null_count() == 2  # largest scale only, per model
    got = {r["gate"]: (round(r["value"], 4), r["passed"]) for r in t.iter_rows(named=True)}
    assert got == {"auroc_vs_lr": (-0.05, False), "auroc_vs_lines": (-0.025, False)}
    good = gate_table(runs, CFG, {"b": {"lr": 0.70, "lines": 0.68}, "c": {"lr": 0.69, "lines": 0.66}})
    assert good["passed"].to_list() == [True, True]
    assert round(good.filter(pl.col("gate") == "auroc_vs_lines")["value"][0], 4) == 0.04  # 0.71 - 0.67 >= 0.03
    close = gate_table(runs, CFG, {"b": {"lr": 0.70, "lines": 0.69}, "c": {"lr": 0.69, "lines": 0.69}})
    assert close["passed"].to_list() == [True, False]  # above the line count, but by less than 0.03
    unmeasured = gate_table(runs, CFG, {})
    assert unmeasured["passed"].to_list() == [None, None]


def test_controls_are_not_held_to_the_gates_their_manipulation_fails():
    row = {"model": ["m"] * 3, "scale": [600] * 3, "seed": [0] * 3, "marker_found_rate": [1.0] * 3,
           "mean_label_mass": [1.0] * 3, "gen_grounding_rate": [0.55] * 3, "gen_age_correct_rate": [0.25] * 3,
           "gen_sex_correct_rate": [0.5] * 3, "gen_loop_rate": [0.0, 0.0, 1.0]}
    runs = pl.DataFrame({"run_id": ["s", "f", "p"], "arm": ["shuffled_rationale", "freeform", "padded_label_only"],
                         **row})
    t = gate_table(runs, CFG, {})
    shuffled, freeform, padded = (dict(zip(p["gate"], p["passed"])) for p in (t.filter(pl.col("run_id") == i)
                                                                               for i in "sfp"))
    assert shuffled == {"marker": True, "label_mass": True, "loops": True}  # its facts are another subject's
    assert padded == {"marker": True, "label_mass": True}  # it writes " . . ." by design
    from rationale_sft.report.gates import _rule_text

    rule = _rule_text(CFG)
    assert "{" not in rule and "The reference arm (label_only) at the largest scale" in rule
    assert "padded_label_only, trained to write neutral padding, to the marker and label-mass gates only" in rule
    assert freeform == {"marker": True, "label_mass": True, "grounding": False, "age_correct": False,
                        "sex_correct": False, "loops": True}


def test_verdict_is_not_evaluable_when_either_side_fails():
    verdict = {"overall": "reproduced", "rule": "r", "arms": {"freeform": {"n": 9, "call": "reproduced"},
                                                              "stepwise": {"n": 9, "call": "reproduced"}}}
    runs = pl.DataFrame({"run_id": ["f", "s"], "arm": ["freeform", "stepwise"], "model": ["m"] * 2,
                         "scale": [900] * 2, "seed": [0] * 2, **{c: [1.0, 1.0] for c, *_ in RATIONALE_GATES.values()},
                         "gen_loop_rate": [0.0, 0.0]})
    ok = gated_verdict(verdict, gate_table(runs, CFG, {}), CFG)
    assert ok["overall"] == "reproduced" and ok["arms"]["freeform"]["failed_gates"] == []
    bad = gated_verdict(verdict, gate_table(runs.with_columns(pl.Series("gen_loop_rate", [0.0, 0.3])), CFG, {}), CFG)
    assert bad["overall"] == "not evaluable" and bad["arms"]["freeform"]["call"] == "reproduced"
    assert [f["gate"] for f in bad["arms"]["stepwise"]["failed_gates"]] == ["loops"]
    ref = pl.DataFrame({"run_id": ["l"], "arm": ["label_only"], "model": ["m"], "scale": [900], "seed": [0],
                        "auroc": [0.6]})
    both = gate_table(pl.concat([runs, ref], how="diagonal"), CFG, {"l": {"lr": 0.7, "lines": 0.5}})
    worse = gated_verdict(verdict, both, CFG)
    assert {a["call"] for a in worse["arms"].values()} == {"not evaluable"}
    assert failed_gates(both, ["label_only"])[0]["gate"] == "auroc_vs_lr"


def _gated_grid(tmp_path, **overrides):
    root = make_grid_run(tmp_path / "g", scales=(400,))
    index = read_json(root / "index.json")
    index["baselines_by_seed"] = {f"400/{s}": index["baselines"]["400"] for s in (0, 1, 2)}
    write_json(root / "index.json", index)
    results = pl.read_parquet(root / "results.parquet")
    rationale = pl.col("arm").is_in(["freeform", "stepwise"])
    cols = {"marker_found_rate": 0.99, "gen_grounding_rate": 0.95, "gen_age_correct_rate": 0.97,
            "gen_sex_correct_rate": 1.0, "gen_loop_rate": 0.0}
    results = results.with_columns(
        *[pl.when(rationale).then(pl.lit(v)).alias(c) for c, v in cols.items()],
        pl.lit(0.95).alias("mean_label_mass"), pl.lit(0.0).alias("truncated_rate"))
    for col, (arm, value) in overrides.items():
        results = results.with_columns(pl.when(pl.col("arm") == arm).then(pl.lit(value)).otherwise(pl.col(col))
                                       .alias(col))
    write_parquet(results, root / "results.parquet")
    write_report(CFG, root)
    return root, json.loads((root / "report" / "stats.json").read_text()), \
        (root / "report" / "index.html").read_text()


def test_report_verdict_when_every_gate_passes(tmp_path):
    root, stats, html = _gated_grid(tmp_path)
    assert stats["verdict"]["overall"] == "reproduced"
    assert all(g["passed"] for g in stats["gates"])
    assert {g["gate"] for g in stats["gates"] if g["arm"] == "label_only"} == {"auroc_vs_lr", "auroc_vs_lines"}
    assert 'id="gates"' in html and "<details>" in html and "Not evaluable" not in html


def test_report_verdict_not_evaluable_names_the_failed_gate(tmp_path):
    root, stats, html = _gated_grid(tmp_path, marker_found_rate=("stepwise", 0.27),
                                    mean_label_mass=("fewshot_freeform", 0.001))
    v = stats["verdict"]
    assert v["overall"] == "not evaluable"
    assert v["arms"]["stepwise"]["call"] == "not evaluable" and v["arms"]["freeform"]["call"] == "reproduced"
    assert "Step-by-step rationale vs label only: not evaluable. Failed quality gates: stepwise: answer marker " \
           "reached 0.270 (needs &gt;= 0.950; 9 of 9 runs fail)" in html
    assert "Rationale demonstrations vs label-only demonstrations: not evaluable" in html
    assert [f["gate"] for f in v["fewshot_failed_gates"]] == ["fewshot_label_mass"]


@pytest.mark.parametrize("kwargs", [dict(arms=("label_only",)), dict(arms=("label_only", "freeform"), fewshot=False),
                                    dict(fewshot=False, extras=False)])
def test_report_builds_without_rationale_arms_fewshot_or_baselines(tmp_path, kwargs):
    root = make_grid_run(tmp_path / "g", scales=(400,), **kwargs)
    write_report(CFG, root)
    html = (root / "report" / "index.html").read_text()
    assert 'id="gates"' in html
