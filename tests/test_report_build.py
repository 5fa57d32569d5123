"""The report on a realistic fake grid run directory: contents, determinism, missing parts, planted effects.

``make_grid_run`` writes a valid grid run directory (docs/contracts.md section 8) whose per-subject scores
carry a planted effect: with ``effect=+1`` the rationale arms discriminate worse than label-only (as in the
study), with ``effect=-1`` better.
"""

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from rationale_sft.cli import main
from rationale_sft.config import build
from rationale_sft.config.report import ReportConfig
from rationale_sft.errors import InputError
from rationale_sft.report import write_report
from rationale_sft.rundir import write_json, write_parquet, write_text

MODELS = (("llama", "15M", "llama-15M", "instruct"), ("qwen", "20M", "qwen-20M", "instruct"),
          ("qwen", "20M", "qwen-20M-r", "reasoning"))
SCALES = (200, 800)
SEEDS = (0, 1, 2)
# signal strength of each arm's score (effect=+1): label-only discriminates best, as in the study
STRENGTH = {"label_only": 1.3, "freeform": 0.45, "stepwise": 0.35, "weighted": 1.2,
            # mechanism arms: mitigations recover, content controls lose more, format controls match freeform
            "segment_norm": 1.2, "answer_stage": 1.1, "shuffled_rationale": 0.1, "flipped_rationale": -0.3,
            "padded_label_only": 0.45, "blind_rationale": 0.45}


def _cohort(g, n):
    z = g.normal(size=n)
    label = g.random(n) < 1 / (1 + np.exp(-(1.6 * z - 1.8)))
    return pl.DataFrame({"subject_id": np.arange(1000, 1000 + n, dtype=np.int64),
                         "prediction_time": [datetime(2010, 1, 1) + timedelta(days=int(d))
                                             for d in g.integers(0, 900, n)],
                         "boolean_value": label, "split": ["held_out"] * n, "age": g.uniform(40, 70, n).round(1),
                         "sex": g.choice(["F", "M"], n)}), z


def _scores(g, labels, z, strength, arm):
    n = labels.height
    logit = strength * z + g.normal(size=n) * 0.9 - 1.5
    p = 1 / (1 + np.exp(-logit))
    rationale = arm != "label_only" and not arm.startswith("fewshot_label")
    conclusion = np.where(p > 0.3, "Yes", "No") if rationale else [None] * n
    return pl.DataFrame({
        "subject_id": labels["subject_id"], "prediction_time": labels["prediction_time"],
        "label": labels["boolean_value"], "p_yes": p, "label_mass": g.uniform(0.6, 1.0, n),
        "p_direct": np.full(n, np.nan) if arm == "label_only"
        else 1 / (1 + np.exp(-(0.8 * z + g.normal(size=n) - 1.5))),
        "conclusion": conclusion,
        "marker_found": [rationale] * n,
        "generated_text": [f"History shows items; risk {'elevated' if c == 'Yes' else 'low'}." if rationale else ""
                           for c in conclusion],
        "n_prompt_tokens": g.integers(200, 400, n), "n_generated_tokens": g.integers(60, 120, n) if rationale
        else np.ones(n, dtype=np.int64)})


def _train_log(g, arm):
    steps = np.arange(1, 21)
    label_loss = 0.7 * np.exp(-steps / (8 if arm == "label_only" else 30)) + 0.3 + g.normal(size=20) * 0.01
    rationale_loss = None if arm == "label_only" else 3.0 * np.exp(-steps / 6) + 1.0
    share = 1.0 if arm == "label_only" else 0.012
    return pl.DataFrame({"step": steps, "loss": label_loss if rationale_loss is None else rationale_loss,
                         "label_loss": label_loss, "rationale_loss": rationale_loss,
                         "label_token_share": np.full(20, share),
                         "n_target_tokens": np.full(20, 64 if share == 1 else 5000),
                         "lr": np.full(20, 3e-4), "tokens_per_s": np.full(20, 1000.0)},
                        schema_overrides={"rationale_loss": pl.Float64})


def _baselines(root, g, labels, z, scale):
    rel = f"shared/baselines-{scale:04d}"
    metrics = {}
    for model, strength in (("age_sex_lr", 0.4), ("lr", 1.0), ("lightgbm", 1.1), ("oracle", 1.6)):
        p = 1 / (1 + np.exp(-(strength * z + (0 if model == "oracle" else g.normal(size=z.size)) - 1.5)))
        write_parquet(labels.select("subject_id", "prediction_time", "boolean_value").with_columns(
            pl.Series("predicted_boolean_value", p > 0.5), pl.Series("predicted_boolean_probability", p)),
            root / rel / "predictions" / f"{model}.parquet")
        metrics[model] = {"auroc": 0.0, "auprc": 0.0, "n": labels.height, "n_pos": int(labels["boolean_value"].sum())}
    write_json(root / rel / "metrics.json", metrics)
    return rel


def _prompts(g, z):
    items = ["Essential hypertension", "Senile cataract", "Type 2 diabetes", "Depressive episode", "Gout"]
    prompts = []
    for zi in z:
        chosen = [it for k, it in enumerate(items) if g.random() < (0.6 if k == 0 and zi > 0.5 else 0.25)]
        prompts.append("Sex: female\nDiagnoses before the assessment (first occurrence, oldest first):\n"
                       + "".join(f"- 200{k}-0{k + 1} ({9 - k} years before assessment): {it}\n"
                                 for k, it in enumerate(chosen)) + "Question: ADRD within 5 years?")
    return prompts


def _row(run_id, arm, model, scale, seed, scores):
    fam, size, name, base = model
    return {"run_id": run_id, "arm": arm, "family": fam, "size": size, "model": name, "base": base, "scale": scale,
            "seed": seed, "status": "ok", "n_test": scores.height, "auroc": None, "auprc": None, "brier": None,
            "auroc_direct": None, "conclusion_yes_rate": None, "run_path": f"runs/{run_id}"}


def make_grid_run(root: Path, effect: int = 1, fewshot: bool = True, probe: bool = False, extras: bool = True,
                  n: int = 300, arms: tuple[str, ...] = ("label_only", "freeform", "stepwise"),
                  scales: tuple[int, ...] = SCALES) -> Path:
    """Write a finished grid run directory with a planted effect; return its path."""
    from rationale_sft.stats import auroc, average_precision, brier

    g = np.random.default_rng(20260 + effect)
    labels, z = _cohort(g, n)
    # effect -1 swaps the order (rationale arms best); effect 0 gives every arm the same signal
    strength = {a: STRENGTH[a] if effect > 0 else 1.75 - STRENGTH[a] if effect < 0 else 0.9 for a in STRENGTH}
    rows = []
    for model in MODELS:
        for scale in scales:
            for seed in SEEDS:
                for arm in arms:
                    run_id = f"{arm[:4]}-{model[2]}-{scale}-{seed}"
                    sc = _scores(g, labels, z, strength[arm] * (1 + 0.1 * (scale == 800)), arm)
                    write_parquet(sc, root / "runs" / run_id / "scores.parquet")
                    write_parquet(_train_log(g, arm), root / "runs" / run_id / "train_log.parquet")
                    write_text(root / "runs" / run_id / "DONE", "")
                    rows.append(_row(run_id, arm, model, scale, seed, sc))
            if fewshot:
                for demos in ("label_only", "freeform"):
                    run_id = f"fs-{demos[:4]}-{model[2]}"
                    if scale == scales[0]:
                        sc = _scores(g, labels, z, 0.6 if demos == "label_only" else 0.9, f"fewshot_{demos}")
                        write_parquet(sc, root / "runs" / run_id / "scores.parquet")
                        rows.append({**_row(run_id, f"fewshot_{demos}", model, None, 0, sc), "k_shot": 4})
    for r in rows:
        sc = pl.read_parquet(root / r["run_path"] / "scores.parquet")
        y, s = sc["label"].to_numpy(), sc["p_yes"].to_numpy()
        r.update(auroc=auroc(y, s), auprc=average_precision(y, s), brier=brier(y, s))
        if probe:
            r["auroc_probe"] = 0.7
    rows.append({**rows[0], "run_id": "zz-failed", "status": "failed", "auroc": None})
    results = pl.DataFrame(rows, infer_schema_length=None)
    write_parquet(results, root / "results.parquet")
    index = {"cohort": "shared/cohort-x"}
    if extras:
        write_parquet(labels, root / "shared/labels-1/LABELS.parquet")
        write_parquet(labels.select("subject_id", "prediction_time", pl.lit(12).alias("n_history_items"),
                                    pl.lit(False).alias("truncated")).with_columns(pl.Series("prompt", _prompts(g, z))),
                      root / "shared/render-1/examples.parquet")
        write_json(root / "shared/rationales-1/quality.json",
                   {"overall": {"n": 600, "label_agreement": 0.8, "words_mean": 170.9, "teacher_auroc": None},
                    "groups": [{"set": "knowledge/freeform", "style": "freeform", "n": 300, "label_agreement": 0.81},
                               {"set": "knowledge/stepwise", "style": "stepwise", "n": 300, "label_agreement": 0.78}]})
        index |= {"labels": "shared/labels-1", "examples": "shared/render-1/examples.parquet",
                  "rationale_quality": "shared/rationales-1/quality.json",
                  "baselines": {str(s): _baselines(root, g, labels, z, s) for s in scales}}
    write_json(root / "index.json", index)
    write_json(root / "failures.json", [{"job_id": "zz-failed", "error": "CUDA out of memory"}])
    write_text(root / "DONE", "")
    return root


CFG = build(ReportConfig, {"n_boot": 200})


@pytest.fixture(scope="module")
def grid_report(tmp_path_factory):
    root = make_grid_run(tmp_path_factory.mktemp("grid"))
    write_report(CFG, root)
    return root


def test_report_files_and_main_table(grid_report):
    out = grid_report / "report"
    names = sorted(p.name for p in out.iterdir())
    assert {"index.html", "report.md", "results.parquet", "stats.json"} <= set(names)
    pngs = [n for n in names if n.endswith(".png")]
    assert len(pngs) >= 6
    html = (out / "index.html").read_text()
    for png in pngs:
        assert f'src="{png}"' in html
    assert "http://" not in html and "https://" not in html
    stats = json.loads((out / "stats.json").read_text())
    arms = [a["arm"] for a in stats["arms"]]
    assert arms == ["label_only", "freeform", "stepwise", "fewshot_freeform", "fewshot_label_only"]
    assert stats["arms"][0]["study_auroc"] == 0.734
    assert stats["verdict"]["overall"] == "reproduced"
    md = (out / "report.md").read_text()
    assert "| label_agreement | 0.8 | 0.81 | 0.78 |" in md
    assert "| freeform | Essential hypertension |" in md  # history items of the lost subjects
    assert all(a["hi"] < 0 for a in stats["verdict"]["arms"].values())
    results = pl.read_parquet(out / "results.parquet")
    assert results.height == 3 * 2 * 3 * 3 + 6
    paired = results.filter(pl.col("delta_auroc").is_not_null())
    assert paired.height == 36 and (paired["delta_lo"] <= paired["delta_auroc"]).all()


@pytest.mark.slow
def test_report_is_byte_identical_when_rerun(grid_report, tmp_path):
    out = grid_report / "report"
    before = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    write_report(CFG, grid_report)
    again = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert before.keys() == again.keys()
    assert [n for n in before if before[n] != again[n]] == []
    # a fresh process with another hash seed: no dependence on set/dict order or process state
    code = f"from rationale_sft.cli import main; main(['report', {str(grid_report)!r}, 'n_boot=200'])"
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, capture_output=True)
    fresh = {p.name: p.read_bytes() for p in sorted(out.iterdir())}
    assert [n for n in before if before[n] != fresh.get(n)] == [] and fresh.keys() == before.keys()


def test_verdict_flips_with_reversed_effect(tmp_path):
    root = make_grid_run(tmp_path / "rev", effect=-1, fewshot=False, extras=False)
    write_report(CFG, root)
    stats = json.loads((root / "report" / "stats.json").read_text())
    assert stats["verdict"]["overall"] == "reversed"
    assert all(a["lo"] > 0 for a in stats["verdict"]["arms"].values())
    html = (root / "report" / "index.html").read_text()
    assert "does not reproduce" in html or "opposite" in html


def test_missing_parts_are_reported_not_fatal(tmp_path):
    root = make_grid_run(tmp_path / "bare", fewshot=False, extras=False)
    write_report(CFG, root)
    html = (root / "report" / "index.html").read_text()
    for absent in ("No few-shot runs", "No baselines", "No rationale quality", "No linear-probe"):
        assert absent in html


def test_bad_run_dir_raises_input_error_naming_the_file(tmp_path):
    with pytest.raises(InputError, match="results.parquet"):
        write_report(CFG, tmp_path)
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False)
    (root / "DONE").unlink()
    with pytest.raises(InputError, match="DONE"):
        write_report(CFG, root)
    write_text(root / "DONE", "")
    results = pl.read_parquet(root / "results.parquet")
    scores_path = root / results["run_path"][0] / "scores.parquet"
    scores = pl.read_parquet(scores_path)
    write_parquet(scores.with_columns(pl.lit(None, pl.Float64).alias("p_yes")), scores_path)
    with pytest.raises(InputError, match=r"scores.parquet: 300 scores are NaN"):
        write_report(CFG, root)
    write_parquet(results.with_columns(pl.lit("failed").alias("status")), root / "results.parquet")
    with pytest.raises(InputError, match="no run with status 'ok' .statuses present: failed"):
        write_report(CFG, root)


def test_no_planted_effect_is_not_called_reproduced(tmp_path):
    root = make_grid_run(tmp_path / "null", effect=0, fewshot=False, extras=False, scales=(400,))
    write_report(CFG, root)
    stats = json.loads((root / "report" / "stats.json").read_text())
    assert stats["verdict"]["overall"] == "not reproduced"
    assert {a["call"] for a in stats["verdict"]["arms"].values()} == {"inconclusive"}
    assert "Fewer than two data scales" in (root / "report" / "index.html").read_text()


def test_inconsistent_or_missing_run_files_become_notes(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False, scales=(400,))
    results = pl.read_parquet(root / "results.parquet")
    tampered = results.with_columns(pl.when(pl.col("run_id") == results["run_id"][1]).then(0.99)
                                    .otherwise(pl.col("auroc")).alias("auroc"))
    write_parquet(tampered, root / "results.parquet")
    (root / results["run_path"][2] / "scores.parquet").unlink()
    write_report(CFG, root)
    stats = json.loads((root / "report" / "stats.json").read_text())
    notes = " ".join(stats["notes"])
    assert "1 run(s) whose results.parquet AUROC differs" in notes and "scores.parquet missing" in notes
    assert pl.read_parquet(root / "report" / "results.parquet").height == results.height - 2  # failed + missing


def test_grid_without_reference_arm_reports_no_comparison(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False, scales=(400,), arms=("freeform", "stepwise"))
    write_report(CFG, root)
    stats = json.loads((root / "report" / "stats.json").read_text())
    assert stats["verdict"]["overall"] == "no data"
    html = (root / "report" / "index.html").read_text()
    assert "No paired comparisons" in html and "no runs of the reference arm" in html


def test_stale_figures_are_removed_and_cli_runs(tmp_path, capsys):
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False)
    (root / "report").mkdir()
    (root / "report" / "old_figure.png").write_bytes(b"not a figure")
    assert main(["report", str(root), "n_boot=150", "seed=3"]) == 0
    assert capsys.readouterr().out.strip() == str(root / "report" / "index.html")
    assert not (root / "report" / "old_figure.png").exists()
    assert json.loads((root / "report" / "stats.json").read_text())["config"]["seed"] == 3
    assert main(["report", str(tmp_path / "nowhere")]) == 2
    assert "results.parquet not found" in capsys.readouterr().err


def test_ablation_arms_are_compared_but_not_judged(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False,
                         arms=("label_only", "freeform", "stepwise", "weighted"))
    write_report(CFG, root)
    stats = json.loads((root / "report" / "stats.json").read_text())
    assert [a["arm"] for a in stats["arms"]] == ["label_only", "freeform", "stepwise", "weighted"]
    assert sorted(stats["verdict"]["arms"]) == ["freeform", "stepwise"]
    weighted = [f for f in stats["factors"] if f["arm"] == "weighted" and f["factor"] == "overall"]
    assert len(weighted) == 1 and weighted[0]["n"] == 18
    assert "arm=weighted" in [t["term"] for t in stats["gap_model"]["terms"]]
