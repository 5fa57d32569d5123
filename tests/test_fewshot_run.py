"""Few-shot arm on a real tiny model: never uses scored subjects, selection modes, budget truncation."""

import polars as pl
import pytest

from rationale_sft.config.fewshot import FewshotConfig
from rationale_sft.config.score import ScoreConfig
from rationale_sft.errors import InputError
from rationale_sft.fewshot import fewshot
from rationale_sft.fewshot.stage import render_fewshot
from rationale_sft.fewshot.select import select_demos
from rationale_sft.train.toy import toy_data, toy_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    ex, rat = toy_data(n=40, seed=9)
    base = toy_model(tmp_path_factory.mktemp("fs") / "base", ex["prompt"].to_list() + rat["text"].to_list(),
                     vocab_size=500)
    return ex, rat, base


@pytest.mark.parametrize("selection", ["random", "balanced", "nearest"])
def test_demonstrations_come_only_from_the_training_split(setup, tmp_path, selection):
    ex, rat, base = setup
    out = fewshot(FewshotConfig(k=4, selection=selection), tmp_path, ex, rat, base, ScoreConfig(batch_size=8))
    demos = pl.read_parquet(tmp_path / "fewshot_demos.parquet")
    train_ids = set(ex.filter(pl.col("split") == "train")["subject_id"].to_list())
    test_ids = set(ex.filter(pl.col("split") == "held_out")["subject_id"].to_list())
    used = {s for ids in demos["demo_subject_ids"].to_list() for s in ids}
    assert used and used <= train_ids and used.isdisjoint(test_ids)
    assert set(demos["subject_id"].to_list()) == test_ids == set(
        pl.read_parquet(tmp_path / "scores.parquet")["subject_id"].to_list())
    assert (demos["n_demos_used"] <= 4).all() and out["n"] == len(test_ids)


def test_overlapping_pool_is_rejected(setup, tmp_path):
    ex, rat, base = setup
    leaky = ex.with_columns(split=pl.lit("held_out"))
    with pytest.raises(InputError, match="scored subjects"):
        fewshot(FewshotConfig(pool_split="held_out"), tmp_path, leaky, rat, base)


def test_budget_drops_demonstrations_first_and_records_it(setup, tmp_path):
    ex, rat, base = setup
    fewshot(FewshotConfig(k=6, selection="random", with_rationales=True, max_len=520), tmp_path, ex, rat, base,
            ScoreConfig(batch_size=8, max_new_tokens=8))
    demos = pl.read_parquet(tmp_path / "fewshot_demos.parquet")
    assert (demos["n_demos_used"] < demos["n_demos_selected"]).any()
    assert (pl.read_parquet(tmp_path / "scores.parquet")["n_prompt_tokens"] <= 520 - 16).all()


def test_balanced_and_nearest_selection(setup):
    ex, _, _ = setup
    pool, q = ex.filter(pl.col("split") == "train"), ex.filter(pl.col("split") == "held_out")
    for picks in select_demos(pool, q, k=4, selection="balanced", seed=1):
        assert sorted(pool["label"][picks].to_list()) == [False, False, True, True]
    near = select_demos(pool, pool.head(3).with_columns(pl.col("subject_id") + 10_000), k=1, selection="nearest", seed=0)
    assert [p[0] for p in near] == [0, 1, 2]  # a copy of a pool prompt is nearest to itself


def test_rendered_demonstrations_end_with_the_query():
    text = render_fewshot(None, [("P1\nAnswer:", None, True), ("P2\nAnswer:", "Old.", False)], "Q\nAnswer:",
                          chat=False, marker="Answer:")
    assert text == "P1\nAnswer: Yes\n\nP2\nAnswer: Old.\nAnswer: No\n\nQ\nAnswer:"


def test_bfloat16_runs_only_where_the_device_has_it(setup, tmp_path, bf16_cases):
    ex, rat, base = setup

    def run(name, bf16):
        out = fewshot(FewshotConfig(k=2, dtype="bfloat16" if bf16 else "float32"), tmp_path / name, ex, rat, base,
                      ScoreConfig(batch_size=8))
        return out, pl.read_parquet(tmp_path / name / "scores.parquet")

    (fp32, s32), (emulated, s_emu), (native, s_nat) = bf16_cases(run)
    assert fp32["dtype"] == emulated["dtype"] == "float32" and native["dtype"] == "bfloat16"
    assert s_emu["p_yes"].to_list() == s32["p_yes"].to_list()
    assert s_nat["p_yes"].to_list() != s32["p_yes"].to_list()


def test_fewshot_scoring_reports_progress_and_its_batch_size(setup, tmp_path, capsys, monkeypatch):
    from rationale_sft import progress

    monkeypatch.setattr(progress, "LOG_EVERY_S", 0.0)
    ex, rat, base = setup
    out = fewshot(FewshotConfig(k=2), tmp_path, ex, rat, base, ScoreConfig(batch_size=0))
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("fewshot:")]
    n = out["n"]
    assert out["batch_size"] == 8 and len(lines) == -(-n // 8) and lines[-1].startswith(f"fewshot: {n}/{n} texts")
