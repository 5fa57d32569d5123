"""The report's Mechanism section on hand-made grid run directories: present only with mechanism data, its
comparisons and paragraph follow the planted effects, and arms that fail a gate are not evaluable."""

import json

import numpy as np
import polars as pl
import pytest

from rationale_sft.report import write_report
from rationale_sft.rundir import write_parquet
from test_report_build import CFG, make_grid_run

ARMS = ("label_only", "freeform", "segment_norm", "answer_stage", "weighted", "shuffled_rationale",
        "flipped_rationale", "padded_label_only", "blind_rationale")


def add_mechanism_files(root):
    """Gradient conflict (negative cosine, tiny label share in freeform), layer probes and K samples per run."""
    results = pl.read_parquet(root / "results.parquet").filter(pl.col("status") == "ok")
    g = np.random.default_rng(7)
    for r in results.iter_rows(named=True):
        run = root / r["run_path"]
        log = pl.read_parquet(run / "train_log.parquet")
        measured = (log["step"] % 5 == 0).to_numpy()
        generating = r["arm"] != "label_only"
        cos = np.where(measured & generating, -0.3 + g.normal(size=log.height) * 0.05, np.nan)
        log = log.with_columns(pl.Series("grad_cos", cos).fill_nan(None),
                               pl.Series("grad_norm_ratio", np.where(measured & generating, 4.0, np.nan))
                               .fill_nan(None))
        write_parquet(log, run / "train_log.parquet")
        steps = log.filter(pl.col("grad_cos").is_not_null())["step"].to_list()
        write_parquet(pl.DataFrame({"step": steps, "group": ["all"] * len(steps), "cos": [-0.3] * len(steps),
                                    "norm_ratio": [4.0] * len(steps), "label_norm": [4.0] * len(steps),
                                    "rationale_norm": [1.0] * len(steps)}), run / "grad_conflict.parquet")
        probes = [{"step": s, "checkpoint": "checkpoint", "slot": slot, "measure": "probe", "layer": layer,
                   "auroc": 0.55 + 0.03 * layer + 0.001 * s, "n": 300, "n_pos": 60}
                  for s in (10, 20) for slot in ("direct", "after") for layer in range(4)]
        write_parquet(pl.DataFrame(probes), run / "probe_layers.parquet")
        if generating:
            scores = pl.read_parquet(run / "scores.parquet")
            k = 2
            noise = g.normal(size=(k, scores.height)) * 0.05
            noisy = np.clip(np.repeat(scores["p_yes"].to_numpy()[None], k, 0) + noise, 0, 1)
            write_parquet(pl.DataFrame({"subject_id": np.tile(scores["subject_id"].to_numpy(), k),
                                        "sample": np.repeat(np.arange(k), scores.height), "p_yes": noisy.ravel(),
                                        "marker_found": [True] * (k * scores.height)}), run / "samples.parquet")
    return root


@pytest.fixture(scope="module")
def mech(tmp_path_factory):
    root = add_mechanism_files(make_grid_run(tmp_path_factory.mktemp("mech"), fewshot=False, scales=(400,), arms=ARMS))
    write_report(CFG, root)
    return root, json.loads((root / "report" / "stats.json").read_text()), (root / "report" / "index.html").read_text()


def test_section_reads_the_planted_mechanism(mech):
    root, stats, html = mech
    m = stats["mechanism"]
    calls = {(c["arm"], c["versus"]): c["call"] for c in m["comparisons"]}
    assert calls[("segment_norm", "freeform")] == calls[("weighted", "freeform")] == "higher"
    assert calls[("flipped_rationale", "freeform")] == "lower"
    assert calls[("freeform", "label_only")] == "lower"
    assert all(c["n"] == 9 for c in m["comparisons"])  # 3 models x 3 seeds, paired
    assert m["explanations"]["dilution"]["status"] == "supported"
    assert m["explanations"]["content"]["status"] == "supported"
    assert m["explanations"]["format"]["status"] != "supported"  # same strength, but intervals wider than 0.02
    grads = {g["arm"]: g for g in m["gradients"]}
    assert grads["freeform"]["cos"][2] < 0 and grads["freeform"]["label_share"] < 0.1
    for png in ("mechanism_conflict.png", "mechanism_probes.png", "mechanism_k.png"):
        assert (root / "report" / png).is_file() and f'src="{png}"' in html
    assert 'id="mechanism"' in html and "This run supports dilution and content" in html
    assert "bootstrap over test subjects and configurations" in html
    assert "How strongly: weakly" not in html  # 9 paired configurations


def test_one_run_per_arm_is_called_weak(tmp_path):
    root = make_grid_run(tmp_path / "one", fewshot=False, scales=(400,), arms=ARMS)
    results = pl.read_parquet(root / "results.parquet")
    keep = results.filter((pl.col("seed") == results["seed"].min()) & (pl.col("model") == results["model"].min()))
    keep.write_parquet(root / "results.parquet")
    write_report(CFG, add_mechanism_files(root))
    m = json.loads((root / "report" / "stats.json").read_text())["mechanism"]
    assert {c["n"] for c in m["comparisons"]} == {1}
    assert "How strongly: weakly. Each comparison rests on one training run per arm (one seed)" in (
        root / "report" / "index.html").read_text()


def test_arms_failing_a_gate_are_not_evaluable_and_support_nothing(tmp_path):
    root = add_mechanism_files(make_grid_run(tmp_path / "g", fewshot=False, scales=(400,), arms=ARMS, extras=False))
    results = pl.read_parquet(root / "results.parquet")
    generating = pl.col("arm") != "label_only"
    bad = pl.col("arm").is_in(["segment_norm", "answer_stage", "weighted"])
    write_parquet(results.with_columns(pl.when(bad).then(0.2).when(generating).then(0.99).alias("marker_found_rate")),
                  root / "results.parquet")
    write_report(CFG, root)
    m = json.loads((root / "report" / "stats.json").read_text())["mechanism"]
    assert m["explanations"]["dilution"]["status"] == "not evaluable"
    assert {c["call"] for c in m["comparisons"] if c["arm"] in ("segment_norm", "answer_stage", "weighted")} == \
        {"not evaluable"}
    html = (root / "report" / "index.html").read_text()
    assert "Dilution: not evaluable (a quality gate fails" in html and "answer marker reached 0.200" in html


def test_no_mechanism_data_no_section(tmp_path):
    root = make_grid_run(tmp_path / "g", fewshot=False, extras=False, scales=(400,))
    write_report(CFG, root)
    assert 'id="mechanism"' not in (root / "report" / "index.html").read_text()
    assert "mechanism" not in json.loads((root / "report" / "stats.json").read_text())
