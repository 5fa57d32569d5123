"""The few-shot arm's fixed test subset (seeded, stratified, shared by every run) and SmolLM2's label mass."""

import json

import polars as pl
import pytest

from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.score import ScoreConfig
from rationale_sft.fewshot import fewshot
from rationale_sft.fewshot.stage import render_fewshot
from rationale_sft.fewshot.select import draw_subset
from rationale_sft.train.toy import toy_data, toy_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ex, rat = toy_data(n=60, seed=4)
    base = toy_model(tmp_path_factory.mktemp("fs") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                     vocab_size=500)
    return ex, rat, base


def test_subset_is_fixed_by_its_seed_and_stratified():
    q = pl.DataFrame({"subject_id": range(200), "label": [i % 5 == 0 for i in range(200)]})
    a, b = draw_subset(q, 30, seed=3), draw_subset(q.sample(fraction=1.0, shuffle=True, seed=1), 30, seed=3)
    assert a.equals(b) and a.height == 30 and int(a["label"].sum()) == 6  # prevalence 0.2 kept
    assert not a.equals(draw_subset(q, 30, seed=4))
    assert draw_subset(q.filter(~pl.col("label") | (pl.col("subject_id") == 0)), 5, seed=0)["label"].sum() == 1


def test_every_demo_kind_and_demo_seed_scores_the_same_subjects(setup, tmp_path):
    ex, rat, base = setup
    score_cfg = ScoreConfig(batch_size=8, max_new_tokens=8)
    runs = {"label": FewshotConfig(k=2, subset=7, seed=0),
            "rationale": FewshotConfig(k=2, subset=7, seed=1, with_rationales=True)}
    ids = {}
    for name, cfg in runs.items():
        fewshot(cfg, tmp_path / name, ex, rat, base, score_cfg)
        ids[name] = pl.read_parquet(tmp_path / name / "scores.parquet")["subject_id"].to_list()
        recorded = json.loads((tmp_path / name / "fewshot.json").read_text())["subset"]
        assert recorded["subject_ids"] == ids[name] and recorded["n"] == 7
    test = ex.filter(pl.col("split") == "held_out")
    expected = draw_subset(test, 7, seed=0)
    assert ids["label"] == ids["rationale"] == expected["subject_id"].to_list()
    assert 0 < int(expected["label"].sum()) < 7


def test_empty_system_turn_replaces_the_template_default():
    from rationale_sft.models import load_tokenizer

    hub = pytest.importorskip("rationale_sft.models.hub")
    tok = load_tokenizer(hub.resolve(hub.SMOLLM2))
    text = render_fewshot(tok, [("P\nAnswer:", None, True)], "Q\nAnswer:", chat=True, marker="Answer:")
    assert "SmolLM" not in text and text.endswith("<|im_start|>assistant\n")
    assert "Yes<|im_end|>" in text and " Yes<|im_end|>" not in text  # same label token as at the slot
    default = render_fewshot(tok, [], "Q", chat=True, marker="Answer:", system=None)
    assert "You are a helpful AI assistant named SmolLM" in default


@pytest.mark.slow
def test_smollm2_puts_most_mass_on_the_label_words_with_label_demos(tmp_path):
    hub = pytest.importorskip("rationale_sft.models.hub")
    ex, _ = toy_data(n=40, seed=2)
    out = fewshot(FewshotConfig(k=2, subset=4), tmp_path, ex, None, hub.resolve(hub.SMOLLM2),
                  ScoreConfig(batch_size=4))
    scores = pl.read_parquet(tmp_path / "scores.parquet")
    assert out["chat"] and scores.height == 4
    assert scores["label_mass"].mean() >= 0.5 and scores["label_mass"].min() >= 0.3
