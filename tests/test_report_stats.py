"""Report statistics on a fake grid run: pooled intervals, oracle and chance, age bands, history strata, scale
budget, few-shot pairing on a subset of the test subjects."""

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml

from rationale_sft.report import write_report
from rationale_sft.report.analysis import analyse
from rationale_sft.report.history import WITHIN, strata_table
from rationale_sft.report.load import open_run_dir, read_baselines
from rationale_sft.rundir import write_json, write_parquet
from rationale_sft.stats import auroc
from test_report_build import CFG, make_grid_run


@pytest.fixture(scope="module")
def grid(tmp_path_factory):
    root = make_grid_run(tmp_path_factory.mktemp("stats"))
    results = pl.read_parquet(root / "results.parquet")
    # the few-shot label-demonstration runs scored only a fixed subset of 120 test subjects
    for row in results.filter(pl.col("arm") == "fewshot_label_only").iter_rows(named=True):
        path = root / row["run_path"] / "scores.parquet"
        write_parquet(pl.read_parquet(path).sort("subject_id").head(120), path)
    # a fixed step budget: every fine-tuned run took 40 steps
    (root / "config.yaml").write_text(yaml.safe_dump({"name": "t", "train": {"steps": 40, "epochs": 1}}))
    for row in results.filter(~pl.col("arm").str.starts_with("fewshot")).iter_rows(named=True):
        write_json(root / row["run_path"] / "train.json", {"steps": 40})
    write_report(CFG, root)
    return root


def test_pooled_intervals_resample_subjects_and_configurations(grid):
    stats = json.loads((grid / "report" / "stats.json").read_text())
    overall = [f for f in stats["factors"] if f["factor"] == "overall"]
    assert overall and all("bootstrap over test subjects and configurations" in f["method"] for f in overall)
    assert all(f["lo"] < f["mean"] < f["hi"] and f["t_lo"] < f["mean"] < f["t_hi"] for f in overall)
    for arm in stats["verdict"]["arms"].values():
        assert arm["interval"].startswith("bootstrap over test subjects and configurations (200 replicates")
    md = (grid / "report" / "report.md").read_text()
    assert "bootstrap over test subjects and configurations (200 replicates, 95%), seed 0" in md


def test_oracle_and_chance_on_auroc_figures_and_age_bands_from_the_cohort(grid):
    stats = json.loads((grid / "report" / "stats.json").read_text())
    oracle = read_baselines(open_run_dir(grid))["200"]["oracle"]
    assert stats["oracle_auroc"] == pytest.approx(auroc(oracle["boolean_value"].to_numpy(),
                                                        oracle["predicted_boolean_probability"].to_numpy()))
    md = (grid / "report" / "report.md").read_text()
    assert "dotted: chance 0.5; dashed: the oracle on the same test subjects" in md
    assert "the oracle (true risk, dashed)" in md
    assert "quartiles of the test subjects' ages in whole years, within their range 40-70" in md
    assert "| age 40-" in md and "| age <50 |" not in md


def test_history_strata_expose_a_line_counter(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False)
    rd = open_run_dir(root)
    an = analyse(rd, CFG)
    first = next(iter(an.scores.values()))
    g = np.random.default_rng(0)
    y = first["label"].to_numpy()
    lines = pl.DataFrame({"subject_id": first["subject_id"], "n_history_items": g.poisson(np.where(y, 14, 8))})
    counter = {r: s.join(lines, on="subject_id").with_columns(pl.col("n_history_items").cast(pl.Float64)
                                                              .alias("p_yes")) for r, s in an.scores.items()}
    reads = strata_table(an, an.runs.filter(pl.col("arm") == "label_only"), lines, read_baselines(rd))
    an.scores = counter
    counts = strata_table(an, an.runs.filter(pl.col("arm") == "label_only"), lines, read_baselines(rd))
    pooled = pl.col("history lines") == WITHIN
    all_rows = pl.col("history lines") == "all"
    # a line counter matches the line count overall and falls to about chance within strata
    overall = counts.filter(all_rows)
    assert overall["label-only AUROC"].to_list() == overall["line-count AUROC"].to_list()
    drop = counts.filter(all_rows)["label-only AUROC"] - counts.filter(pooled)["label-only AUROC"]
    assert (counts.filter(pooled)["label-only AUROC"] == counts.filter(pooled)["line-count AUROC"]).all()
    assert (drop > 0.1).all(), drop.to_list()
    # a model that reads the history keeps its AUROC within strata
    kept = reads.filter(all_rows)["label-only AUROC"] - reads.filter(pooled)["label-only AUROC"]
    assert (kept.abs() < 0.05).all(), kept.to_list()
    assert reads["scale"].unique().sort().to_list() == ["200", "800"] and reads["LR AUROC"].null_count() == 0


def test_history_section_in_the_report(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False)
    path = root / "shared/render-1/examples.parquet"
    ex = pl.read_parquet(path)
    write_parquet(ex.with_columns(pl.Series("n_history_items", np.arange(ex.height) % 17)), path)
    write_report(CFG, root)
    md = (root / "report" / "report.md").read_text()
    assert "## Label-only within strata of history length" in md and "| 800 | within strata (pooled) |" in md
    assert (root / "report" / "auroc_by_history_length.png").is_file()


def test_scale_paragraph_says_data_at_a_fixed_step_budget(grid):
    md = (grid / "report" / "report.md").read_text()
    assert "Training budget rule: a fixed budget of train.steps = 40 optimizer steps" in md
    assert "Every fine-tuned run took 40 optimizer steps, so the trend is a data effect at a fixed step budget." in md
    assert "freeform: gap at scale 200: " in md and "change " in md
    budget = json.loads((grid / "report" / "stats.json").read_text())["budget"]
    assert budget["rule"]["fixed"] is True and {r["steps"] for r in budget["runs"]} == {40}
    assert len(budget["runs"]) == 54 and len(budget["gap_by_scale"]) == 2


def test_scale_paragraph_warns_when_steps_grow_with_scale(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False)
    (root / "config.yaml").write_text(yaml.safe_dump({"train": {"steps": 0, "epochs": 1}}))
    for row in pl.read_parquet(root / "results.parquet").iter_rows(named=True):
        write_json(root / row["run_path"] / "train.json", {"steps": int(row["scale"]) // 8})
    write_report(CFG, root)
    md = (root / "report" / "report.md").read_text()
    assert "Warning: under this rule a trend with scale confounds data with optimizer steps." in md
    assert "Optimizer steps differ across scales (200: 25; 800: 100), so the trend confounds data with steps." in md


def test_fewshot_comparison_is_paired_on_the_scored_subset(grid):
    md = (grid / "report" / "report.md").read_text()
    assert "over 3 pair(s) on the 120 test subjects every run of the comparison scored (of 300)" in md
    rows = [line for line in md.splitlines() if line.startswith("| fewshot_freeform | llama")]
    assert rows and "| 120 |" in rows[0]
